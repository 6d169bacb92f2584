"""Residual EDM diffusion: p(HR | LR) as a denoiser of the residual over a deterministic base.

The residual r = y - mu is taken over the interpolated LR field (Anemoi) or over the mean of a
trained regression model (CorrDiff). The network sees the noisy residual, the conditioning and
mu itself. Sampling (``finescale.generate``) solves the EDM probability-flow ODE (or SDE, with
churn) from pure noise with this denoiser and adds mu back.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from finescale.config import EDMConfig
from finescale.diffusion import edm
from finescale.models.regression import RegressionModel
from finescale.nn.unet import UNet, UNetSettings


class DiffusionModel(nn.Module):
    """Denoiser D(r; sigma, cond) of the residual over ``mu`` (interpolation or regression mean)."""

    def __init__(
        self,
        net: UNetSettings,
        settings: EDMConfig,
        channel_weights: Tensor,
        regression: RegressionModel | None = None,
    ):
        super().__init__()
        self.net = UNet(net)
        self.settings = edm.EDMSettings(sigma_data=settings.sigma_data, P_mean=settings.P_mean, P_std=settings.P_std)
        self.register_buffer("channel_weights", channel_weights.float())
        self.regression = regression
        if regression is not None:
            regression.requires_grad_(False).eval()

    def mu(self, cond: Tensor, base: Tensor) -> Tensor:
        """The deterministic part the residual is taken over (B, C_out, H, W)."""
        if self.regression is None:
            return base
        with torch.no_grad():
            return self.regression(cond, base)

    def denoise(self, r: Tensor, sigma: Tensor | float, cond: Tensor, mu: Tensor) -> Tensor:
        """D(r; sigma): the denoised residual, conditioned on cond and mu."""
        return edm.denoise(self.net, r, sigma, torch.cat([cond, mu], dim=1), self.settings.sigma_data)

    def loss(self, batch: dict[str, Tensor], generator: torch.Generator | None = None) -> Tensor:
        """EDM loss on the residual, weighted by variable and area."""
        mu = self.mu(batch["cond"], batch["base"])
        return edm.edm_loss(
            self.net,
            batch["target"] - mu,
            torch.cat([batch["cond"], mu], dim=1),
            self.settings,
            generator=generator,
            channel_weights=self.channel_weights,
            area_weights=batch.get("area"),
        ).loss

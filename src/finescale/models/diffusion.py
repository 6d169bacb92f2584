"""Residual EDM diffusion: p(HR | LR) as a denoiser of the residual over a deterministic base.

The residual r = y - mu is taken over the interpolated LR field (Anemoi) or over the mean of a
trained regression model (CorrDiff). Each variable's residual is divided by its scale s (its RMS
on training patches, see ``finescale.training``): residuals of very different size (a t2m residual
is a tenth of a standardised unit, a wind residual nearly one) then share one sigma_data and one
noise schedule. The network sees the noisy scaled residual, the conditioning and mu itself.
Sampling (``finescale.generation``) solves the EDM probability-flow ODE (or SDE, with churn) from
pure noise with this denoiser and returns mu + s z.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from finescale.diffusion import edm
from finescale.diffusion.settings import EDMSettings
from finescale.models.regression import RegressionModel
from finescale.nn.settings import UNetSettings
from finescale.nn.unet import UNet


class DiffusionModel(nn.Module):
    """Denoiser D(r; sigma, cond) of the residual over ``mu`` (interpolation or regression mean)."""

    def __init__(
        self,
        net: UNetSettings,
        settings: EDMSettings,
        channel_weights: Tensor,
        regression: RegressionModel | None = None,
    ):
        super().__init__()
        self.net = UNet(net)
        self.settings = settings
        self.register_buffer("channel_weights", channel_weights.float())
        # s per variable (C,): set once before training, saved with the weights
        self.register_buffer(
            "residual_scale", torch.ones_like(channel_weights, dtype=torch.float32)
        )
        self.regression = regression
        if regression is not None:
            regression.requires_grad_(False).eval()

    def mu(self, cond: Tensor, base: Tensor) -> Tensor:
        """The deterministic part the residual is taken over (B, C_out, H, W)."""
        if self.regression is None:
            return base
        with torch.no_grad():
            return self.regression(cond, base)

    def scaled_residual(self, y: Tensor, mu: Tensor) -> Tensor:
        """z = (y - mu) / s, the quantity the diffusion models (B, C_out, H, W)."""
        return (y - mu) / self.residual_scale[:, None, None]

    def combine(self, z: Tensor, mu: Tensor) -> Tensor:
        """y = mu + s z: a sample in standardised space from a sampled scaled residual."""
        return mu + z * self.residual_scale[:, None, None].to(z)

    def denoise(self, z: Tensor, sigma: Tensor | float, cond: Tensor, mu: Tensor) -> Tensor:
        """D(z; sigma): the denoised scaled residual, conditioned on cond and mu."""
        return edm.denoise(
            self.net, z, sigma, torch.cat([cond, mu], dim=1), self.settings.sigma_data
        )

    def loss(self, batch: dict[str, Tensor], generator: torch.Generator | None = None) -> Tensor:
        """EDM loss on the scaled residual, weighted by variable and area."""
        mu = self.mu(batch["cond"], batch["base"])
        return edm.edm_loss(
            self.net,
            self.scaled_residual(batch["target"], mu),
            torch.cat([batch["cond"], mu], dim=1),
            self.settings,
            generator=generator,
            channel_weights=self.channel_weights,
            area_weights=batch.get("area"),
        ).loss

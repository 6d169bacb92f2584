"""Residual EDM diffusion: p(HR | LR) as a denoiser of the residual over a deterministic base.

The residual r = y - mu is taken over the interpolated LR field (Anemoi) or over the mean of a
trained regression model (CorrDiff). Each variable's residual is divided by its scale s (its RMS
on training patches, see ``finescale.training``): residuals of very different size (a t2m residual
is a tenth of a standardised unit, a wind residual nearly one) then share one sigma_data and one
noise schedule. For intermittent variables (``model.local_scale``: precipitation) s is instead a
function of the variable's own mu at each point (:mod:`finescale.models.local_scale`), so the
scaled residual has unit RMS where it rains as where it is dry; for the winds' components, of the
speed of mu's wind (``model.local_scale_key``), so gusts scale with the wind. ``model.noise_scale``
k_v then brings a variable's scaled residual to RMS 1 / k_v, with sigma_data / k_v in its
preconditioning: one noise schedule reaches k_v times further relative to that variable (a
heavy-tailed precipitation residual needs noise from higher up than t2m). The network sees the
noisy scaled residual, the conditioning and mu itself. Sampling (``finescale.generation``) solves
the EDM probability-flow ODE (or SDE, with churn) from pure noise with this denoiser and returns
mu + s z.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from finescale.diffusion import edm
from finescale.diffusion.settings import EDMSettings
from finescale.models.local_scale import LocalScale
from finescale.models.regression import RegressionModel
from finescale.nn.settings import UNetSettings
from finescale.nn.unet import UNet


class DiffusionModel(nn.Module):
    """Denoiser D(r; sigma, cond) of the residual over ``mu`` (interpolation or regression mean).

    ``local_scale``: the target channels whose residual scale follows their mu (none: each
    variable's residual is divided by one number, ``residual_scale``); ``local_scale_key``: per
    such channel, the channels whose mu sets it (None: its own; :class:`LocalScale`).
    ``noise_scale``: k per target channel (None: all 1), multiplying the residual scale and
    dividing sigma_data.
    """

    def __init__(
        self,
        net: UNetSettings,
        settings: EDMSettings,
        channel_weights: Tensor,
        regression: RegressionModel | None = None,
        local_scale: Sequence[int] = (),
        noise_scale: Sequence[float] | None = None,
        local_scale_key: Sequence[Sequence[int]] | None = None,
    ):
        super().__init__()
        self.net = UNet(net)
        self.settings = settings
        self.register_buffer("channel_weights", channel_weights.float())
        # s per variable (C,): set once before training, saved with the weights
        self.register_buffer(
            "residual_scale", torch.ones_like(channel_weights, dtype=torch.float32)
        )
        # s_v(mu_v) of the channels of model.local_scale, fitted with residual_scale; absent when
        # none is listed, so that checkpoints written before it load (and sample) as they did
        self.local_scale = LocalScale(local_scale, local_scale_key) if local_scale else None
        # k per channel comes from the config, so it is rebuilt with the model, not saved: a
        # checkpoint written before it loads as it did
        ones = [1.0] * len(channel_weights)
        k = torch.tensor(ones if noise_scale is None else list(noise_scale))
        if k.shape != self.residual_scale.shape or not bool((k > 0).all()):
            raise ValueError(
                f"noise_scale: one positive number per target channel, got {k.tolist()}"
            )
        self.register_buffer("noise_scale", k.float(), persistent=False)
        self.regression = regression
        if regression is not None:
            regression.requires_grad_(False).eval()

    def mu(self, cond: Tensor, base: Tensor) -> Tensor:
        """The deterministic part the residual is taken over (B, C_out, H, W)."""
        if self.regression is None:
            return base
        with torch.no_grad():
            return self.regression(cond, base)

    @property
    def local_channels(self) -> tuple[int, ...]:
        """The target channels whose residual scale follows their mu (``model.local_scale``)."""
        return () if self.local_scale is None else self.local_scale.channels

    @property
    def sigma_data(self) -> Tensor:
        """sigma_data of each target channel's preconditioning, (C_out, 1, 1)."""
        return (self.settings.sigma_data / self.noise_scale)[:, None, None]

    def scale(self, mu: Tensor) -> Tensor:
        """s k: (C_out, 1, 1) per variable, or (B, C_out, H, W) (float32 at least) where some
        variables' s follows their mu (B, C_out, H, W)."""
        s = self.residual_scale[:, None, None]
        if self.local_scale is not None:
            local = self.local_scale(mu)
            s = s.to(local).expand(*mu.shape).clone()
            s[:, list(self.local_scale.channels)] = local
        return s * self.noise_scale[:, None, None]

    def scaled_residual(self, y: Tensor, mu: Tensor) -> Tensor:
        """z = (y - mu) / (s k), the quantity the diffusion models (B, C_out, H, W)."""
        return (y - mu) / self.scale(mu)

    def combine(self, z: Tensor, mu: Tensor) -> Tensor:
        """y = mu + s k z: a sample in standardised space from a sampled scaled residual."""
        return mu + z * self.scale(mu).to(z)

    def denoise(self, z: Tensor, sigma: Tensor | float, cond: Tensor, mu: Tensor) -> Tensor:
        """D(z; sigma): the denoised scaled residual, conditioned on cond and mu."""
        return edm.denoise(self.net, z, sigma, torch.cat([cond, mu], dim=1), self.sigma_data)

    def loss(self, batch: dict[str, Tensor], generator: torch.Generator | None = None) -> Tensor:
        """EDM loss on the scaled residual, weighted by variable and area."""
        mu = self.mu(batch["cond"], batch["base"])
        return edm.edm_loss(
            self.net,
            self.scaled_residual(batch["target"], mu),
            torch.cat([batch["cond"], mu], dim=1),
            self.settings,
            generator=generator,
            sigma_data=self.sigma_data,
            channel_weights=self.channel_weights,
            area_weights=batch.get("area"),
        ).loss

"""Regression model: the conditional mean of the HR fields, the debugging step and a reference.

In standardised space the model predicts a residual over the interpolated LR field:
mean = base + s F(base, cond), trained with an area- and variable-weighted MSE of the error
divided by s. s is each variable's RMS of (y - base) on training patches (see
``finescale.training``): without it a variable whose residual is small in standardised units (t2m,
whose standard deviation is dominated by elevation) hardly enters the loss and is left at
interpolation skill. The output is smooth (it averages over every HR state compatible with the
LR input): that is the point.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from finescale.nn.settings import UNetSettings
from finescale.nn.unet import UNet


def weighted_mse(error: Tensor, channel_weights: Tensor, area: Tensor | None = None) -> Tensor:
    """Mean of error^2 weighted by channel (C,) and area (B, 1, H, W) weights; error (B, C, H, W).

    Weights all zero (a batch whose targets are all missing) give 0, with zero gradients.
    """
    w = channel_weights.to(error)[None, :, None, None]
    if area is not None:
        w = w * area
    # the floor only acts on weights all zero: 0, not 0 / 0
    return (w * error**2).mean() / w.mean().clamp_min(torch.finfo(w.dtype).tiny)


class RegressionModel(nn.Module):
    """mean = base + F(base, cond) in standardised space."""

    def __init__(self, net: UNetSettings, channel_weights: Tensor):
        super().__init__()
        if net.use_noise:
            raise ValueError("the regression network takes no noise level: use_noise must be False")
        self.net = UNet(net)
        self.register_buffer("channel_weights", channel_weights.float())
        # s per variable (C,): set once before training, saved with the weights
        self.register_buffer(
            "residual_scale", torch.ones_like(channel_weights, dtype=torch.float32)
        )

    def mu(self, cond: Tensor, base: Tensor) -> Tensor:
        """What the residual scale is measured over: the interpolated LR field."""
        return base

    def forward(self, cond: Tensor, base: Tensor) -> Tensor:
        """cond (B, C_cond, H, W), base (B, C_out, H, W) -> conditional mean (B, C_out, H, W)."""
        return base + self.residual_scale[:, None, None] * self.net(base, None, cond)

    def loss(self, batch: dict[str, Tensor], generator: torch.Generator | None = None) -> Tensor:
        """Weighted MSE of the scaled error (``generator`` unused: the loss is deterministic)."""
        error = (self(batch["cond"], batch["base"]) - batch["target"]) / self.residual_scale[
            :, None, None
        ]
        return weighted_mse(error, self.channel_weights, batch.get("area"))

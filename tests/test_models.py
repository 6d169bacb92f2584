"""The models do what they are for: regression learns the conditional mean, diffusion samples
the conditional distribution, on toy problems whose answers are known."""

from __future__ import annotations

import pytest
import torch

from finescale.config import EDMConfig, NetworkConfig, SampleConfig
from finescale.generate import draw
from finescale.models.diffusion import DiffusionModel
from finescale.models.regression import RegressionModel
from finescale.nn.unet import UNetSettings

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = NetworkConfig(base_width=16, channel_mult=(1, 2), blocks_per_level=1).model_dump()


def _toy_batch(generator: torch.Generator, batch: int = 32, size: int = 8, noise: float = 0.5) -> dict:
    """y = 2c + noise * eps per pixel, with c a smooth random field: p(y | c) = N(2c, noise^2)."""
    c = torch.randn(batch, 1, 2, 2, generator=generator)
    c = torch.nn.functional.interpolate(c, size=(size, size), mode="bilinear", align_corners=False)
    y = 2 * c + noise * torch.randn(batch, 1, size, size, generator=generator)
    return {"cond": c, "base": torch.zeros_like(c), "target": y}


def _fit(model: torch.nn.Module, steps: int, lr: float = 3e-3) -> None:
    generator = torch.Generator().manual_seed(0)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = model.loss(_toy_batch(generator))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()


def test_regression_learns_the_conditional_mean():
    torch.manual_seed(0)
    settings = UNetSettings(in_channels=1, cond_channels=1, out_channels=1, use_noise=False, **SMALL)
    model = RegressionModel(settings, torch.ones(1))
    batch = _toy_batch(torch.Generator().manual_seed(99), batch=64)
    before = ((model(batch["cond"], batch["base"]) - 2 * batch["cond"]) ** 2).mean().item()
    _fit(model, 300)
    with torch.no_grad():
        after = ((model(batch["cond"], batch["base"]) - 2 * batch["cond"]) ** 2).mean().item()
    assert after < 0.05 * before  # close to the mean 2c, not to the noisy samples
    assert after < 0.02


def test_diffusion_samples_the_conditional_distribution():
    torch.manual_seed(0)
    settings = UNetSettings(in_channels=1, cond_channels=2, out_channels=1, use_noise=True, **SMALL)
    model = DiffusionModel(settings, EDMConfig(P_mean=-0.5), torch.ones(1))
    _fit(model, 600)
    model.eval()
    batch = _toy_batch(torch.Generator().manual_seed(7), batch=64)
    sample = SampleConfig(solver="heun", steps=40)
    y = draw(model, batch["cond"], batch["base"], sample, torch.Generator().manual_seed(1))
    residual = y - 2 * batch["cond"]
    assert abs(residual.mean().item()) < 0.1
    assert 0.4 < residual.std().item() < 0.6  # the noise the data have: 0.5
    # members of the same input differ, as a distribution's draws must
    y2 = draw(model, batch["cond"], batch["base"], sample, torch.Generator().manual_seed(2))
    assert 0.5 < (y - y2).std().item() / (2**0.5 * 0.5) < 1.5

"""model.noise_scale: a variable's noise levels k times the shared schedule's, in one network."""

from __future__ import annotations

import pytest
import torch
from conftest import precipitation_run
from pydantic import ValidationError
from torch import Tensor, nn

from finescale.checkpoints import load_checkpoint
from finescale.config import ModelConfig, SampleConfig
from finescale.data.channels import Layout
from finescale.diffusion.settings import EDMSettings
from finescale.generation import draw
from finescale.models.build import build_model
from finescale.models.consistency import ConsistencyModel
from finescale.models.diffusion import DiffusionModel
from finescale.nn.settings import UNetArchitecture, UNetSettings

pytestmark = pytest.mark.usefixtures("one_thread")

NET = UNetSettings(
    in_channels=1,
    cond_channels=2,
    out_channels=1,
    use_noise=True,
    **UNetArchitecture(base_width=8, channel_mult=(1,), blocks_per_level=1).model_dump(),
)


class Blind(nn.Module):
    """F(x_in, c_noise, cond) that ignores c_noise: the one part of the denoiser that k changes
    beyond a rescaling (the embedding sees the shared sigma, not k sigma)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 3, padding=1)

    def forward(self, x: Tensor, c_noise: Tensor, cond: Tensor) -> Tensor:
        return torch.tanh(self.conv(torch.cat([x, cond], dim=1)))


def pair(k: float) -> tuple[DiffusionModel, DiffusionModel]:
    """One-channel models with noise_scale k and 1, the same residual scale and network."""
    torch.manual_seed(0)
    scaled = DiffusionModel(NET, EDMSettings(), torch.ones(1), noise_scale=[k])
    unit = DiffusionModel(NET, EDMSettings(), torch.ones(1))
    scaled.net = unit.net = Blind()
    for model in (scaled, unit):
        model.residual_scale.fill_(0.3)
    return scaled, unit


def test_noise_scale_k_is_the_unit_model_sampled_from_k_times_the_noise():
    k = 2.5
    scaled, unit = pair(k)
    g = torch.Generator().manual_seed(1)
    cond, mu, y = (torch.randn(4, 1, 8, 8, generator=g) for _ in range(3))
    # the scaled residual has 1 / k of the unit one's size, and sigma_data 1 / k
    torch.testing.assert_close(scaled.scaled_residual(y, mu), unit.scaled_residual(y, mu) / k)
    torch.testing.assert_close(scaled.combine(scaled.scaled_residual(y, mu), mu), y)
    assert float(scaled.sigma_data) == pytest.approx(1 / k)
    # the denoiser at sigma is the unit denoiser at k sigma, in the unit model's frame
    z = torch.randn(4, 1, 8, 8, generator=g)
    for sigma in (0.01, 0.7, 8.0):
        torch.testing.assert_close(
            k * scaled.denoise(z, sigma, cond, mu), unit.denoise(k * z, k * sigma, cond, mu)
        )
    # so the members from sigma_max 8 are the unit model's from 20 (same noise, same schedule
    # shape): one network, a per-variable sigma_max
    members = {
        name: draw(
            model,
            cond,
            mu,
            SampleConfig(solver="heun", steps=12, sigma_max=top, sigma_min=0.002 * top / 8),
            torch.Generator().manual_seed(2),
        )
        for name, model, top in (("scaled", scaled, 8.0), ("unit", unit, 8.0 * k))
    }
    torch.testing.assert_close(members["scaled"], members["unit"], rtol=1e-4, atol=1e-5)


def test_the_loss_weights_each_channel_by_its_own_sigma_data():
    # lambda(sigma) and the preconditioning use sigma_data / k: the scaled model's loss is the
    # unit model's with sigma drawn k times larger, the same number where the network ignores
    # the noise level (D is k times smaller, lambda k^2 times larger)
    k = 3.0
    scaled, unit = pair(k)
    g = torch.Generator().manual_seed(4)
    batch = {name: torch.randn(8, 1, 8, 8, generator=g) for name in ("cond", "base", "target")}
    scaled_loss = scaled.loss(batch, generator=torch.Generator().manual_seed(5))
    # the unit model trained with sigma drawn k times larger: P_mean shifted by ln k
    unit.settings = EDMSettings(P_mean=EDMSettings().P_mean + float(torch.tensor(k).log()))
    unit_loss = unit.loss(batch, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(scaled_loss, unit_loss)


def test_noise_scale_names_target_variables_and_is_positive():
    with pytest.raises(ValidationError, match=r"noise_scale: tp not among the target variables"):
        ModelConfig(target_variables=["t2m", "u10"], noise_scale={"tp": 2.0})
    with pytest.raises(ValidationError, match="noise_scale must be positive"):
        ModelConfig(noise_scale={"tp": 0.0})
    layout = Layout(("t2m",), (), ("t2m", "u10"), position=False, time=False)
    with pytest.raises(ValueError, match=r"model.noise_scale: tp not among the model's target"):
        build_model(ModelConfig(noise_scale={"tp": 2.0}), layout, False)
    model = build_model(ModelConfig(noise_scale={"u10": 2.0}), layout, False)
    torch.testing.assert_close(model.noise_scale, torch.tensor([1.0, 2.0]))
    # rebuilt from the config, not saved: a checkpoint's weights are the same names as before
    assert not any("noise_scale" in key for key in model.state_dict())


def test_a_student_keeps_its_teachers_noise_scale():
    teacher = DiffusionModel(NET, EDMSettings(), torch.ones(1), noise_scale=[2.5])
    student = ConsistencyModel.of(teacher, 0.002, 8.0)
    torch.testing.assert_close(student.noise_scale, teacher.noise_scale)
    torch.testing.assert_close(student.sigma_data, teacher.sigma_data)


def test_noise_scale_travels_with_the_checkpoint_config(small_pair, tmp_path):
    checkpoint = precipitation_run(small_pair, tmp_path, noise_scale={"tp": 2.5})
    loaded = load_checkpoint(checkpoint)
    assert loaded.config.model.noise_scale == {"tp": 2.5}
    torch.testing.assert_close(loaded.model.noise_scale, torch.tensor([1.0, 2.5]))

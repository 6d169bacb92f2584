"""bf16-mixed precision, channels-last memory order and torch.compile give the scores of float32.

A tiny regression model is trained through ``finescale.training.fit`` on a toy problem whose
conditional mean is known (target = 2c + noise, tests/ddp_fit.py), once per switch from the same
initial weights and samples, and scored by the RMS error of its prediction against 2c. And the
switches are applied at inference to the same trained weights. Tolerances:

- channels-last: the same arithmetic in another memory order, so float rounding only:
  predictions within 1e-5 of float32 at inference (1e-6 seen), scores after training within
  1e-3 relative (1e-7 seen);
- bf16-mixed: bfloat16 keeps 8 significant bits (relative rounding 2^-9 = 0.2 % per operation):
  predictions within 2 % (RMS, relative to the prediction's RMS; 0.3 % seen) at inference;
  after training, where those differences steer every step, the score within 5 % of float32's
  (0.04 % seen);
- compile: the same operations fused, within 1e-4 at inference and 1e-3 relative after
  training. It compiles C++ kernels (g++ here) for a minute or more on a small CPU: marked slow.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from ddp_fit import ToySamples  # tests/ddp_fit.py: the toy samples of the DDP test

from finescale.config import TrainConfig
from finescale.diffusion.edm import denoise
from finescale.models.regression import RegressionModel
from finescale.nn.unet import UNet, UNetSettings
from finescale.training import compile_networks, fit

pytestmark = pytest.mark.usefixtures("one_thread")
NET = {
    "base_width": 8,
    "channel_mult": (1, 2),
    "blocks_per_level": 1,
    "attention_levels": (1,),
    "attention_heads": 2,
}
STEPS = 40


def _model() -> RegressionModel:
    torch.manual_seed(0)
    settings = UNetSettings(in_channels=1, cond_channels=1, out_channels=1, use_noise=False, **NET)
    return RegressionModel(settings, torch.ones(1))


def _train(out: Path, **switches: Any) -> RegressionModel:
    """A model trained for STEPS steps with the given trainer switches, its weights loaded back into
    float32."""
    t = TrainConfig(
        out=out,
        batch_size=8,
        max_steps=STEPS,
        learning_rate=3e-3,
        warmup_steps=5,
        val_every_steps=STEPS,
        val_batches=1,
        accelerator="cpu",
        num_workers=0,  # tiny samples made in memory: no loader processes
        **switches,
    )
    fit(
        _model(),
        t,
        {"kind": "test"},
        ToySamples(STEPS * t.batch_size, seed=0),
        ToySamples(t.batch_size, seed=1),
    )
    state = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    model = _model()
    model.load_state_dict(
        {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    )
    return model.eval()


@pytest.fixture(scope="module")
def held_out() -> dict[str, torch.Tensor]:
    samples = ToySamples(64, seed=2)
    return torch.utils.data.default_collate([samples[i] for i in range(len(samples))])


@torch.no_grad()
def _predict(model: RegressionModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(batch["cond"], batch["base"])


def _score(model: RegressionModel, batch: dict[str, torch.Tensor]) -> float:
    """RMS error against the known conditional mean 2c."""
    return float(((_predict(model, batch) - 2 * batch["cond"]) ** 2).mean().sqrt())


@pytest.fixture(scope="module")
def float32(tmp_path_factory) -> RegressionModel:
    return _train(tmp_path_factory.mktemp("fp32"))


def test_float32_training_learns_the_mean(float32, held_out):
    assert _score(float32, held_out) < 0.5 * _score(_model(), held_out)


def test_channels_last_inference_matches_float32(float32, held_out):
    reference = _predict(float32, held_out)
    model = copy.deepcopy(float32).to(memory_format=torch.channels_last)
    batch = {
        k: v.contiguous(memory_format=torch.channels_last) if v.ndim == 4 else v
        for k, v in held_out.items()
    }
    assert model.net.stem.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(_predict(model, batch), reference, rtol=0, atol=1e-5)


def test_bf16_inference_matches_float32_within_two_percent(float32, held_out):
    reference = _predict(float32, held_out)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = _predict(float32, held_out)
    assert (
        low.dtype == torch.float32
    )  # the network runs in bf16, its output comes back in the input's dtype
    relative = float((low - reference).pow(2).mean().sqrt() / reference.pow(2).mean().sqrt())
    assert 0 < relative < 2e-2  # > 0: autocast did lower the precision


def test_bf16_denoiser_matches_float32_within_two_percent():
    torch.manual_seed(1)
    net = UNet(UNetSettings(in_channels=2, cond_channels=3, out_channels=2, **NET)).eval()
    torch.nn.init.normal_(net.output.weight, std=0.05)  # a trained output layer is not zero
    x, cond = 3.0 * torch.randn(4, 2, 16, 16), torch.randn(4, 3, 16, 16)
    sigma = torch.tensor([0.05, 0.5, 3.0, 30.0])
    with torch.no_grad():
        reference = denoise(net, x, sigma, cond, 1.0)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = denoise(net, x, sigma, cond, 1.0)
    error = (low - reference).pow(2).mean(dim=(1, 2, 3)).sqrt() / reference.pow(2).mean(
        dim=(1, 2, 3)
    ).sqrt()
    assert float(error.max()) < 2e-2


def test_channels_last_training_scores_like_float32(float32, held_out, tmp_path):
    model = _train(tmp_path, channels_last=True)
    assert _score(model, held_out) == pytest.approx(_score(float32, held_out), rel=1e-3)


def test_bf16_training_scores_like_float32(float32, held_out, tmp_path):
    model = _train(tmp_path, precision="bf16-mixed")
    reference = _score(float32, held_out)
    assert _score(model, held_out) == pytest.approx(reference, rel=0.05)
    assert not torch.equal(
        _predict(model, held_out), _predict(float32, held_out)
    )  # it did train in bf16


@pytest.mark.slow
def test_compile_inference_and_training_match_float32(float32, held_out, tmp_path):
    compiled = copy.deepcopy(float32)
    assert compile_networks(compiled) == 1
    torch.testing.assert_close(
        _predict(compiled, held_out), _predict(float32, held_out), rtol=0, atol=1e-4
    )
    model = _train(tmp_path, compile=True)
    assert _score(model, held_out) == pytest.approx(_score(float32, held_out), rel=1e-3)

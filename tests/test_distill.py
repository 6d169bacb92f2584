"""Consistency students (finescale distill): they learn a known distribution through the training
code, load without Lightning, downscale through the CLI and the API, and resume exactly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from conftest import diffusion_over_regression
from test_consistency import P_UP, WIDTH, draw_data, exact_denoiser
from torch import nn
from typer.testing import CliRunner

import finescale
from finescale.checkpoints import (
    DIGEST_KEY,
    STUDENT_WEIGHTS,
    load_checkpoint,
    read_checkpoint,
    weights_digest,
)
from finescale.cli import app
from finescale.config import ConfigError, DistillConfig, SampleConfig, TrainConfig
from finescale.diffusion.consistency import distillation_levels
from finescale.diffusion.settings import EDMSettings
from finescale.generation import draw
from finescale.generation.members import student_levels
from finescale.models.consistency import ConsistencyModel
from finescale.models.diffusion import DiffusionModel
from finescale.nn.settings import UNetSettings
from finescale.training.distill import Distillation
from finescale.training.loop import fit

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")
SPAN = "2020-01-01T06..2020-01-01T09"
#: a few steps of a small learning rate: the student stays near its teacher
STEPS = ["--set", "steps=4", "--set", "warmup_steps=1", "--set", "levels=6"]


def _text(result) -> str:
    return " ".join(result.output.split())


def _distill(teacher: Path, out: Path, *extra: str):
    args = ["distill", "--checkpoint", str(teacher), "--out", str(out), *STEPS, *extra]
    return runner.invoke(app, args)


def _downscale(checkpoint: Path, folder: Path, out: Path, *extra: str):
    args = ["downscale", "--checkpoint", str(checkpoint), "--lr", str(folder / "lr.nc")]
    args += ["--static", str(folder / "static.nc"), "--out", str(out), "--times", SPAN]
    return runner.invoke(app, [*args, *extra])


@pytest.fixture(scope="module")
def student(tiny_models, tmp_path_factory) -> Path:
    """A student of the tiny diffusion model (trained with the static field orog), 4 steps."""
    out = tmp_path_factory.mktemp("student")
    result = _distill(tiny_models["diffusion"], out)
    assert result.exit_code == 0, result.output
    return out / "checkpoints" / "last.ckpt"


def test_the_checkpoint_says_what_it_is_and_whose_student(student, tiny_models):
    raw = torch.load(student, weights_only=True)  # plain data and tensors
    assert raw["global_step"] == 4
    meta = read_checkpoint(student).meta
    teacher = load_checkpoint(tiny_models["diffusion"])
    described = meta["student"]
    assert described["kind"] == "consistency"
    assert described["teacher"] == {
        "path": str(tiny_models["diffusion"].resolve()),
        "sha256": teacher.sha256,
    }
    sample = teacher.config.sample
    assert (described["sigma_min"], described["sigma_max"]) == (sample.sigma_min, sample.sigma_max)
    assert described["levels"] == pytest.approx(
        distillation_levels(6, sample.sigma_min, sample.sigma_max).tolist()
    )
    # 2 calls by default: sigma_max, then the middle of 3 Karras levels down to sigma_min
    assert described["sampler"]["calls"] == 2
    assert described["sampler"]["levels"][0] == sample.sigma_max
    assert sample.sigma_min < described["sampler"]["levels"][1] < sample.sigma_max
    loaded = load_checkpoint(student)
    assert isinstance(loaded.model, ConsistencyModel)
    assert loaded.config.sample.calls == 2 and loaded.config.train.max_steps == 4
    assert loaded.stats == teacher.stats and loaded.layout == teacher.layout


def test_a_student_starts_from_its_teacher(student, tiny_models):
    # the same network with the same weight names, started from the teacher's weights: after 4
    # Adam steps of at most about 1e-4 each, every weight is within 1e-3 of the teacher's, and
    # some moved; a network of fresh weights is nowhere near (the tiny teacher, trained 2 steps,
    # is no better than its initial weights, so its outputs could not tell these apart)
    teacher = load_checkpoint(tiny_models["diffusion"]).model
    learned = load_checkpoint(student).model.state_dict()
    assert learned.keys() == teacher.state_dict().keys()

    def largest_difference(state: dict[str, torch.Tensor]) -> float:
        return max(float((learned[k] - v).abs().max()) for k, v in state.items())

    torch.manual_seed(1)
    fresh = type(teacher)(teacher.net.settings, teacher.settings, teacher.channel_weights, None)
    assert 0 < largest_difference(teacher.state_dict()) < 1e-3
    assert largest_difference(fresh.state_dict()) > 0.05


def test_the_student_downscales_through_the_cli_and_the_api_alike(student, tiny_models, tmp_path):
    folder = tiny_models["folder"]
    result = _downscale(student, folder, tmp_path / "s.zarr", "--members", "3")
    assert result.exit_code == 0, result.output
    cli = xr.open_zarr(tmp_path / "s.zarr").load()
    assert list(cli.data_vars) == ["t2m"] and cli.t2m.dims == ("member", "time", "y", "x")
    assert cli.sizes["member"] == 3 and cli.sizes["time"] == 4
    assert np.isfinite(cli.t2m.values).all()
    sampler = __import__("json").loads(cli.attrs["sampler"])
    assert sampler["calls"] == 2 and "solver" not in sampler and "steps" not in sampler
    model = finescale.load(student)
    assert "consistency student (2 calls)" in repr(model)
    api = model.downscale(xr.open_dataset(folder / "lr.nc"), folder / "static.nc", 3, SPAN)
    api.attrs.pop("lr_source"), cli.attrs.pop("lr_source")
    xr.testing.assert_identical(api, cli)  # the same members bit for bit: seeded per block
    members = cli.t2m.values
    assert not np.array_equal(members[0], members[1])  # independent draws
    # members differ from one seed to another and from one number of calls to another
    other_seed = model.downscale(folder / "lr.nc", folder / "static.nc", 3, SPAN, seed=1)
    one_call = model.downscale(folder / "lr.nc", folder / "static.nc", 3, SPAN, calls=1)
    for other in (other_seed, one_call):
        assert not np.allclose(other.t2m.values, members)
    assert __import__("json").loads(one_call.attrs["sampler"])["calls"] == 1
    # on tiles of 16 x 16 (the grid is 32 x 40) the same members, blended without seams: when
    # written, at most 0.014 K from the untiled ones, whose spread is 0.27 K
    tiled = model.downscale(
        folder / "lr.nc", folder / "static.nc", 3, SPAN, tile_size=16, tile_overlap=8
    )
    gap = np.abs(tiled.t2m.values - members)
    assert 0 < gap.max() < 0.2 * float(cli.t2m.std("member").mean())


def test_settings_a_model_does_not_read_are_refused(student, tiny_models, tmp_path):
    folder = tiny_models["folder"]
    result = _downscale(student, folder, tmp_path / "a.zarr", "--steps", "12")
    assert result.exit_code == 2
    assert "sample.steps: a consistency student draws each member in sample.calls" in _text(result)
    with pytest.raises(ConfigError, match=r"sample.sigma_max, sample.solver: a consistency"):
        finescale.load(student).downscale(folder / "lr.nc", solver="heun", sigma_max=80.0)
    result = _downscale(
        tiny_models["diffusion"], folder, tmp_path / "b.zarr", "--set", "sample.calls=1"
    )
    assert result.exit_code == 2
    assert "sample.calls: only a consistency student (finescale distill) reads" in _text(result)
    assert not (tmp_path / "a.zarr").exists() and not (tmp_path / "b.zarr").exists()
    with pytest.raises(ConfigError, match=r"'renoise': .*2 levels where calls=2 needs 1"):
        finescale.load(student).downscale(folder / "lr.nc", renoise=[1.0, 0.1])


def test_distill_refuses_what_it_cannot_distil(student, tiny_models, tmp_path):
    result = _distill(student, tmp_path / "s2")
    assert result.exit_code == 2 and "a consistency student already" in _text(result)
    result = _distill(tiny_models["regression"], tmp_path / "s3")
    assert result.exit_code == 2
    assert "a regression model; only a diffusion model can be distilled" in _text(result)
    result = _distill(tiny_models["diffusion"], tmp_path / "s4", "--set", "train.max_steps=9")
    assert result.exit_code == 2 and "max_steps: set steps of the distillation" in _text(result)
    result = _distill(
        tiny_models["diffusion"], tmp_path / "s5", "--set", "calls=3", "--set", "renoise=[1.0]"
    )
    assert result.exit_code == 2 and "1 levels where calls=3 needs 2" in _text(result)
    assert not any(tmp_path.glob("s*/checkpoints/*.ckpt"))  # refused before training


def test_a_student_of_a_diffusion_model_over_a_regression_needs_no_regression_file(
    tiny_models, tmp_path
):
    """The student keeps its teacher's mu: the regression network travels in its checkpoint
    (described as in the teacher's, its weights among the student's own)."""
    from finescale.training.distill import distill

    folder = tiny_models["folder"]
    teacher, regression = diffusion_over_regression(tiny_models, tmp_path)
    student = distill(DistillConfig(out=tmp_path / "student", steps=2, levels=4), teacher)
    regression.unlink()
    loaded, taught = load_checkpoint(student), load_checkpoint(teacher)
    assert (
        read_checkpoint(student).meta["regression"] == read_checkpoint(teacher).meta["regression"]
    )
    cond = torch.randn(2, taught.layout.cond_channels, 32, 40)
    base = torch.randn(2, 1, 32, 40)
    assert torch.equal(loaded.model.mu(cond, base), taught.model.mu(cond, base))
    ensemble = finescale.load(student).downscale(folder / "lr.nc", members=2, times=SPAN)
    assert ensemble.t2m.shape == (2, 4, 32, 40) and np.isfinite(ensemble.t2m.values).all()


LOADS = """
import sys
import finescale
from finescale.generation import downscale

checkpoint, lr, static, out = sys.argv[1:5]
downscale(checkpoint, lr, static, out, sample={"members": 2, "calls": 1}, times=slice(None, "2020-01-01T01"))
model = finescale.load(checkpoint)
ensemble = model.downscale(lr, static, members=2, times="2020-01-01T00..2020-01-01T01")
assert ensemble.t2m.shape == (2, 2, 32, 40), ensemble.t2m.shape
print("loaded:", sorted(n for n in sys.modules if "lightning" in n or n.startswith("finescale.training")))
"""  # noqa: E501 (Python code the test runs)


def test_a_student_loads_and_downscales_without_lightning(student, tiny_models, tmp_path):
    folder = tiny_models["folder"]
    args = [str(student), str(folder / "lr.nc"), str(folder / "static.nc"), str(tmp_path / "e")]
    result = subprocess.run(
        [sys.executable, "-c", LOADS, *args],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "loaded: []" in result.stdout


def test_a_resumed_distillation_continues_exactly(student, tiny_models, tmp_path, monkeypatch):
    # a run that dies after its checkpoint at step 2 (the teacher's train.val_every_steps),
    # resumed, ends with the weights, target and average of the run never stopped (`student`)
    out = tmp_path / "resumed"
    loss, calls = Distillation.loss, []

    def dies_at_the_third_step(self, batch, generator=None):
        calls.append(self.training)
        if calls.count(True) == 3:
            raise RuntimeError("killed")
        return loss(self, batch, generator)

    monkeypatch.setattr(Distillation, "loss", dies_at_the_third_step)
    result = _distill(tiny_models["diffusion"], out)
    assert isinstance(result.exception, RuntimeError)
    last = out / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 2
    monkeypatch.setattr(Distillation, "loss", loss)
    result = _distill(tiny_models["diffusion"], out, "--resume")
    assert result.exit_code == 0, result.output
    resumed = torch.load(last, weights_only=True)
    never_stopped = torch.load(student, weights_only=True)
    assert resumed["global_step"] == 4
    state, reference = resumed["state_dict"], never_stopped["state_dict"]
    assert state.keys() == reference.keys()
    assert any(k.startswith("model.target.") for k in state)
    for key, value in reference.items():
        assert torch.equal(state[key], value), key
    # a run of another teacher's student is not resumed
    other = tmp_path / "other.ckpt"
    raw = torch.load(tiny_models["diffusion"], weights_only=True)
    next(iter(raw["state_dict"].values())).add_(1.0)
    raw[DIGEST_KEY] = weights_digest(raw)
    torch.save(raw, other)
    result = _distill(other, out, "--resume")
    assert result.exit_code == 2  # the terminal wraps the message anywhere
    assert f"{last}:notastudentof{other}" in "".join(result.output.split())


# --- a known answer through the training code: the +-1 modes of test_consistency.py ---------


class PointNet(nn.Module):
    """F(x_in, c_noise, [cond, mu]) of fields of one point: an MLP of the scaled input, the noise
    level and the condition, in place of the UNet (which would take minutes to learn this)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(3, 64), nn.SiLU(), nn.Linear(64, 64), nn.SiLU(), nn.Linear(64, 1)
        )

    def forward(self, x_in, c_noise, cond):
        inputs = torch.cat([x_in.flatten(1), c_noise[:, None], cond[:, :1].flatten(1)], dim=1)
        return self.net(inputs).reshape(x_in.shape)


class ExactTeacher(DiffusionModel):
    """A teacher whose denoiser is exact for the toy's two modes (``cond`` sets their weights)."""

    def denoise(self, z, sigma, cond, mu):
        return exact_denoiser(z, sigma, cond.flatten())


class Toy(torch.utils.data.Dataset):
    """Patches of one point: cond 0 or 1, base 0, the target drawn from the toy's modes."""

    def __init__(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        cond = (torch.rand(n, generator=g) < 0.5).long()
        self.cond = cond.float().reshape(n, 1, 1, 1)
        self.target = draw_data(n, cond, g).reshape(n, 1, 1, 1)
        self.base = torch.zeros(1, 1, 1)

    def __len__(self) -> int:
        return self.cond.shape[0]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"cond": self.cond[i], "base": self.base, "target": self.target[i]}


def test_distillation_learns_both_modes_through_the_training_code(tmp_path):
    """The student, its target, the loop (EMA, schedule, checkpoint) and the sampler of
    generation, with a point network on the toy: distilled from scratch in 1500 steps (about
    15 s of one core), 1 and 2 calls give each condition's mode weights and samples at the
    modes. When written: weights within 0.03, 0.62 of the samples within 3 widths of a mode
    with 1 call, 0.83 with 2 (test_consistency.py's student, 5000 steps: 0.85 and 0.91); a
    student regressing to the mean would sit at +-0.5, one ignoring the condition at 0.5
    weights."""
    sigma_min, sigma_max, steps, batch = 0.002, 80.0, 1500, 256
    net = UNetSettings(in_channels=1, cond_channels=2, out_channels=1, base_width=4)
    torch.manual_seed(0)
    student = ConsistencyModel(net, EDMSettings(), torch.ones(1), None, sigma_min, sigma_max)
    student.net = PointNet()
    teacher = ExactTeacher(net, EDMSettings(), torch.ones(1), None)
    levels = distillation_levels(18, sigma_min, sigma_max)
    t = TrainConfig(
        out=tmp_path,
        max_steps=steps,
        batch_size=batch,
        learning_rate=3e-3,
        warmup_steps=0,
        ema_decay=0.99,
        val_every_steps=steps,
        val_batches=1,
        accelerator="cpu",
        num_workers=0,
    )
    last = fit(
        Distillation(student, teacher, levels, target_decay=0.95),
        t,
        {"kind": "downscaling"},
        Toy(steps * batch, 1),
        Toy(batch, 2),
    )
    size = len(STUDENT_WEIGHTS)
    weights = read_checkpoint(last).weights
    student.load_state_dict(
        {k[size:]: v for k, v in weights.items() if k[:size] == STUDENT_WEIGHTS}
    )
    student.eval()
    cond = torch.tensor([0.0, 1.0]).repeat_interleave(4000).reshape(-1, 1, 1, 1)
    for calls, renoise, at_modes in [(1, None, 0.55), (2, [0.8], 0.75)]:
        sample = SampleConfig(calls=calls, renoise=renoise, sigma_max=sigma_max)
        assert student_levels(student, sample)[0] == sigma_max
        y = draw(student, cond, torch.zeros_like(cond), sample, torch.Generator().manual_seed(2))
        y, c = y.flatten(), cond.flatten()
        for condition, p in P_UP.items():  # each condition's weights: draws, not one answer
            assert (y[c == condition] > 0).float().mean() == pytest.approx(p, abs=0.05)
        assert ((y.abs() - 1).abs() < 3 * WIDTH).float().mean() > at_modes


# --- benchmarks/distill.py at toy size ---------------------------------------------------------

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


@pytest.mark.slow
def test_the_benchmark_runs_at_toy_size_and_reuses_its_stages(tmp_path):
    """A skill run in miniature (an alps-small development world with a teacher of 6 steps, one
    held-out world), distilled 2 steps and scored: every ensemble of the issue's table, the goals
    with their numbers, and a rerun that reuses every stage."""
    import json

    import yaml

    from finescale.data.world import preset, simulate

    run, out = tmp_path / "run", tmp_path / "out"
    params = preset("alps-small").model_copy(update={"days": 6.0})
    simulate(run / "dev" / "world", params, seed=2)
    simulate(run / "heldout" / "seed5-shipped" / "world", params, seed=5)
    tiny = {
        "max_steps": 6,
        "batch_size": 4,
        "patch_size": 32,
        "val_every_steps": 3,
        "val_batches": 1,
        "warmup_steps": 2,
        "accelerator": "cpu",
        "num_workers": 0,
        "out": str(run / "dev" / "diffusion"),
    }
    args = ["train", "--config", str(run / "dev" / "world" / "finescale.yaml")]
    for key, value in tiny.items():
        args += ["--set", f"train.{key}={value}"]
    args += ["--set", "model.network.base_width=8", "--set", "model.network.channel_mult=[1, 2]"]
    result = runner.invoke(app, [*args, "--set", "sample.sigma_max=20.0"])
    assert result.exit_code == 0, result.output
    (run / "dev" / "timings.json").write_text(json.dumps({"train diffusion": 1.0}))
    skill = {
        "heldout": [{"seed": 5, "terrain": "shipped"}],
        "score": {"members": 2, "every": 9, "block_days": 1, "resamples": 20},
    }
    (tmp_path / "skill.yaml").write_text(yaml.safe_dump(skill))
    spec = {
        "skill": "skill.yaml",
        "sample": {"sigma_max": 20.0, "zero_below": 0.003},
        "distill": {"levels": 4, "steps": 2, "warmup_steps": 1},
    }
    (tmp_path / "distill.yaml").write_text(yaml.safe_dump(spec))
    command = [sys.executable, "distill.py", "--run", str(run), "--out", str(out)]
    command += ["--config", str(tmp_path / "distill.yaml"), "--json", str(tmp_path / "r.json")]

    def bench() -> tuple[str, dict]:
        done = subprocess.run(
            command,
            cwd=BENCHMARKS,
            capture_output=True,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            timeout=900,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout, json.loads((tmp_path / "r.json").read_text())

    _, first = bench()
    names = ["teacher_heun40", "teacher_dpmpp8", "teacher_dpmpp12"]
    assert list(first["ensembles"]) == [*names, "student1", "student2", "student4"]
    heun = first["ensembles"]["teacher_heun40"]
    assert heun["network_calls"] == 79 and heun["wall_s_per_member"] > 0
    for key in ("crps_oracle_ratio", "ssr", "edge_ratio", "spectral"):
        assert np.isfinite(heun["variables"]["tp"][key]["value"]), key
    goal = first["goals"]["student_2_calls"]["variables"]["t2m"]["crps_ratio"]
    assert goal["bound"] == 1.02 and goal["met"] == (goal["value"] <= 1.02)
    assert first["goals"]["distillation_cost"]["student"]["steps"] == 2
    assert first["goals"]["distillation_cost"]["teacher"] == {
        "steps": 6,
        "wall_s": 1.0,
        "s_per_step": 1.0 / 6,
    }
    assert first["student"]["description"]["sampler"]["calls"] == 2
    ensembles = xr.open_zarr(out / "heldout" / "seed5-shipped" / "student1.zarr")
    assert ensembles.sizes["member"] == 2 and json.loads(ensembles.attrs["sampler"])["calls"] == 1
    rain = ensembles.tp.values
    assert rain.min() >= 0 and not ((rain > 0) & (rain < 0.003)).any()  # sample.zero_below
    stdout, second = bench()
    assert "distil: reusing" in stdout and "downscale student4: reusing" in stdout
    assert second["ensembles"] == first["ensembles"]

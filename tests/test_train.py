"""Training and generation end to end on a small Alps world, through the command line."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from typer.testing import CliRunner

from finescale.checkpoints import load_checkpoint
from finescale.cli import app
from finescale.data.world import preset, simulate

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")
TINY = [
    "train.max_steps=6",
    "train.batch_size=4",
    "train.patch_size=32",
    "train.val_every_steps=3",
    "train.val_batches=1",
    "train.warmup_steps=2",
    "model.network.base_width=8",
    "model.network.channel_mult=[1, 2]",
    "model.conditioning.lr_variables=[t2m, u10, v10, tp, kindex]",
]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "world"
    simulate(out, preset("alps-small").model_copy(update={"days": 6.0}), seed=2)
    return out


def _train(world, out, *extra: str, resume: bool = False):
    args = ["train", "--config", str(world / "finescale.yaml"), *(["--resume"] if resume else [])]
    for item in [*TINY, f"train.out={out}", *extra]:
        args += ["--set", item]
    return runner.invoke(app, args)


@pytest.fixture(scope="module")
def regression(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("regression")
    result = _train(world, out, "model.kind=regression")
    assert result.exit_code == 0, result.output
    return out / "checkpoints" / "last.ckpt"


def test_checkpoint_is_safe_and_self_describing(regression):
    raw = torch.load(regression, weights_only=True)  # no code can run from it
    assert raw["global_step"] == 6
    loaded = load_checkpoint(regression)
    assert loaded.layout.target_variables == ("t2m", "u10", "v10", "tp")
    assert loaded.grid["hr_shape"] == [80, 200] and loaded.config.model.kind == "regression"
    assert "t2m" in loaded.stats and len(loaded.sha256) == 64


def test_corrupt_checkpoint_is_a_clear_error(regression, tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(regression.read_bytes()[:1000])
    with pytest.raises(ValueError, match="bad.ckpt: not a readable finescale checkpoint"):
        load_checkpoint(bad)


def test_regression_downscales_one_member(regression, world, tmp_path):
    out = tmp_path / "reg.zarr"
    result = runner.invoke(
        app,
        [
            "downscale",
            "--checkpoint",
            str(regression),
            "--lr",
            str(world / "lr.zarr"),
            "--static",
            str(world / "static.zarr"),
            "--out",
            str(out),
            "--times",
            "test",
        ],
    )
    assert result.exit_code == 0, result.output
    ens = xr.open_zarr(out)
    assert ens.sizes["member"] == 1 and ens.t2m.dims == ("member", "time", "y", "x")
    assert float(ens.tp.min()) >= 0.0  # precipitation comes back non-negative
    truth = xr.open_zarr(world / "hr.zarr").t2m.sel(time=ens.time)
    # back in kelvin with the right offset: 6 steps keep the model near its base, whose bias is
    # nil (measured -0.02 K; a destandardisation off by half a std, 3.4 K, fails)
    assert abs(float((ens.t2m[0] - truth).mean())) < 1.0
    assert ens.attrs["checkpoint_sha256"] == load_checkpoint(regression).sha256


def test_diffusion_trains_resumes_and_samples_members(world, regression, tmp_path):
    out = tmp_path / "diffusion"
    result = _train(
        world,
        out,
        "model.kind=diffusion",
        "model.residual=regression",
        f"model.regression_checkpoint={regression}",
    )
    assert result.exit_code == 0, result.output
    checkpoint = out / "checkpoints" / "last.ckpt"
    result = _train(
        world,
        out,
        "model.kind=diffusion",
        "model.residual=regression",
        f"model.regression_checkpoint={regression}",
        "train.max_steps=9",
    )
    assert result.exit_code == 0, result.output
    result = _train(
        world,
        out,
        "model.kind=diffusion",
        "model.residual=regression",
        f"model.regression_checkpoint={regression}",
        "train.max_steps=12",
        resume=True,
    )
    assert result.exit_code == 0, result.output
    assert (
        torch.load(checkpoint, weights_only=True)["global_step"] == 12
    )  # continued, not restarted
    lr = xr.open_zarr(world / "lr.zarr")
    span = (
        f"{np.datetime_as_string(lr.time.values[100], 'h')}.."
        f"{np.datetime_as_string(lr.time.values[101], 'h')}"
    )

    def downscale(model: Path, name: str, *options: str) -> xr.Dataset:
        result = runner.invoke(
            app,
            [
                "downscale",
                "--checkpoint",
                str(model),
                "--lr",
                str(world / "lr.zarr"),
                "--static",
                str(world / "static.zarr"),
                "--out",
                str(tmp_path / name),
                "--times",
                span,
                *options,
            ],
        )
        assert result.exit_code == 0, result.output
        return xr.open_zarr(tmp_path / name).load()

    # the demo's solver (DPM-Solver++ 2M on log-uniform levels); tiles smaller than the grid
    ens = downscale(
        checkpoint,
        "ens.zarr",
        "--members",
        "3",
        "--steps",
        "6",
        "--set",
        "sample.solver=dpmpp_2m",
        "--set",
        "sample.schedule=log_uniform",
        "--set",
        "sample.tile_size=48",
    )
    assert ens.sizes["member"] == 3 and ens.sizes["time"] == 2
    assert np.isfinite(ens.t2m).all() and float(ens.tp.min()) >= 0.0
    mean = downscale(regression, "mean.zarr").isel(member=0)
    truth = xr.open_zarr(world / "hr.zarr").sel(time=ens.time).load()
    # members are draws around the regression mean, spread like the truth's departure from it,
    # and as an ensemble score a lower fair CRPS than the mean's absolute error (measured, per
    # variable, in units of those references: offsets up to 0.07, spreads 0.38-1.84, CRPS
    # 0.76-0.81). 12 steps teach no fine-scale structure (the members' departures are white
    # noise; 150 steps at 10x the rate reach a lag-1 correlation of 0.17-0.35 against the
    # truth's 0.58-0.76), so this checks the wiring: residual over the mean, its scale, the
    # sampler, the destandardisation; test_models.py checks what training learns
    for name in ("t2m", "u10", "v10", "tp"):
        x, y, mu = ens[name].values, truth[name].values, mean[name].values
        departure = np.sqrt(np.mean((y - mu) ** 2))
        assert abs(np.mean(x - mu)) < 0.15 * departure, name
        assert 0.25 * departure < np.std(x - mu) < 2.5 * departure, name
        pairs = np.abs(x[:, None] - x[None]).sum(axis=(0, 1)) / (3 * 2)
        fair_crps = np.mean(np.abs(x - y).mean(axis=0) - pairs / 2)
        assert fair_crps < 0.95 * np.mean(np.abs(mu - y)), name


def test_a_zero_validation_fraction_is_refused_before_reading(world, tmp_path):
    # validating on the test block instead would tune the run on the hours it is scored on
    out = tmp_path / "run"
    result = _train(
        world,
        out,
        "model.kind=regression",
        "data.splits={train: 0.85, validation: 0.0, test: 0.15}",
    )
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())  # the console wraps long lines
    assert "data.splits.validation is 0" in message and "positive fraction" in message
    assert not (out / "checkpoints").exists() or not any((out / "checkpoints").iterdir())


def test_data_on_another_grid_is_refused(regression, world, tmp_path):
    other = tmp_path / "static.zarr"
    shutil.copytree(world / "static.zarr", other)
    small = xr.open_zarr(other).isel(y=slice(0, 40)).load()
    shutil.rmtree(other)
    small.to_zarr(other, zarr_format=2)
    result = runner.invoke(
        app,
        [
            "downscale",
            "--checkpoint",
            str(regression),
            "--lr",
            str(world / "lr.zarr"),
            "--static",
            str(other),
            "--out",
            str(tmp_path / "x.zarr"),
        ],
    )
    assert result.exit_code == 2 and "differs from the checkpoint" in result.output
    assert not (tmp_path / "x.zarr").exists()


def test_demo_stages_chain_and_their_yaml_reloads(world, tmp_path):
    import yaml

    from finescale.config import load_config
    from finescale.pipeline import demo_configs

    regression, diffusion = demo_configs(world, tmp_path / "demo", members=5)
    assert diffusion.sample.members == 5
    assert (
        diffusion.model.regression_checkpoint
        == Path(regression.train.out) / "checkpoints" / "last.ckpt"
    )
    assert (regression.model.kind, diffusion.model.kind) == ("regression", "diffusion")
    assert diffusion.data == regression.data  # both on the world's data section
    # the YAML the demo writes beside each stage is a config `finescale train` accepts as it is
    path = tmp_path / "diffusion.yaml"
    path.write_text(yaml.safe_dump(diffusion.model_dump(mode="json"), sort_keys=False))
    assert load_config(path) == diffusion


def test_ema_warms_up_then_decays_at_the_configured_rate():
    from torch.optim.swa_utils import AveragedModel

    from finescale.training import ema_update

    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    ema = AveragedModel(model, multi_avg_fn=ema_update(0.999), use_buffers=True)
    ema.update_parameters(model)  # the first update copies the weights
    with torch.no_grad():
        model.weight.fill_(1.0)
    for _ in range(100):
        ema.update_parameters(model)
    # a constant decay would have kept 0.999^100 = 90 % of the initial 0; warmed up, none is left
    assert ema.module.weight.item() > 0.99
    for _ in range(20_000):
        ema.update_parameters(model)
    with torch.no_grad():
        model.weight.fill_(2.0)
    ema.update_parameters(model)
    assert ema.module.weight.item() == pytest.approx(
        1.0 + 0.001, abs=1e-6
    )  # late: the configured decay


def test_the_bars_count_training_steps_and_downscaling_blocks(tiny_models, tmp_path):
    """The training bar counts optimisation steps (not Lightning's 'Epoch 0/-2'), a resumed run
    from the checkpoint's step; the downscaling bar knows its total before drawing."""
    folder = tiny_models["folder"]
    train = [
        "train",
        "--config",
        str(folder / "nostatic.yaml"),
        "--set",
        f"train.out={tmp_path / 'run'}",
    ]
    result = runner.invoke(app, [*train, "--set", "train.max_steps=3"])
    assert result.exit_code == 0, result.output
    assert "train step" in result.output and "3/3" in result.output and "Epoch" not in result.output
    result = runner.invoke(app, [*train, "--set", "train.max_steps=5", "--resume"])
    assert result.exit_code == 0 and "5/5" in result.output, result.output
    checkpoint = tmp_path / "run" / "checkpoints" / "last.ckpt"
    args = [
        "downscale",
        "--checkpoint",
        str(checkpoint),
        "--lr",
        str(folder / "lr.nc"),
        "--out",
        str(tmp_path / "ens.zarr"),
        "--times",
        "2020-01-01T00..2020-01-01T09",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "10/10" in result.output and "/?" not in result.output  # 10 times x 1 batch of the mean


def test_compile_networks_compiles_the_modules_of_the_types_given_in_place():
    from torch import nn

    from finescale.nn.settings import UNetArchitecture, UNetSettings
    from finescale.nn.unet import UNet
    from finescale.training import compile_networks

    def model() -> nn.ModuleDict:
        settings = UNetSettings(
            in_channels=1,
            cond_channels=1,
            out_channels=1,
            use_noise=False,
            **UNetArchitecture(base_width=8, channel_mult=(1,)).model_dump(),
        )
        return nn.ModuleDict({"net": UNet(settings), "head": nn.Linear(2, 2)})

    default, linear = model(), model()
    names = [name for name, _ in default.named_parameters()]
    assert compile_networks(default) == 1  # the downscaling backbone (the UNet) by default
    assert default["net"]._compiled_call_impl is not None
    assert default["head"]._compiled_call_impl is None
    assert [name for name, _ in default.named_parameters()] == names  # in place: names unchanged
    assert compile_networks(linear, (nn.Linear,)) == 1  # as AtmoRep passes its encoder's class
    assert linear["head"]._compiled_call_impl is not None
    assert linear["net"]._compiled_call_impl is None

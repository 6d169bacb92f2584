"""AtmoRep end to end on a small Alps world: pre-train through the command line, fine-tune from the
checkpoint, predict a task as an ensemble on disk, its references, and scoring with evaluate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
import yaml
from typer.testing import CliRunner

from finescale.atmorep.attention import attention_maps
from finescale.atmorep.checkpoint import load_atmorep
from finescale.atmorep.model import AtmoRep
from finescale.atmorep.predict import open_series, predict
from finescale.atmorep.references import advection, known_hours, linear_in_time, persistence
from finescale.atmorep.settings import AtmoRepConfig
from finescale.atmorep.tokens import CubeDataset, FixedCubes
from finescale.atmorep.train import open_blocks, take_over
from finescale.checkpoints import load_checkpoint
from finescale.cli import app
from finescale.config import ConfigError, load_config, validate
from finescale.data.world import preset, simulate
from finescale.evaluation import run_evaluate
from finescale.io.atomic import write_zarr
from finescale.pipeline import world_config

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {
    "name": "tiny",
    "fields": {
        "t2m": {"source": "hr"},
        "tp": {"source": "hr"},
        "u": {"source": "lr", "variables": ["u850", "u500"]},
        "orog": {"source": "static", "predict": False},
    },
    "token": {"time": 2, "y": 8, "x": 8},
    "neighbourhood": {"time": 3, "y": 2, "x": 3},
    "network": {
        "width": 16,
        "heads": 2,
        "encoder_layers": 1,
        "decoder_layers": 1,
        "tail_layers": 1,
    },
    "ensemble": {"members": 4, "noise_dim": 8},
    "masking": {"strategies": {"bert": 0.5, "interpolation": 0.5}},
    # 150 steps: enough to beat linear interpolation and persistence in t2m (60 steps: not yet)
    "train": {
        "batch_size": 4,
        "max_steps": 150,
        "learning_rate": 3.0e-3,
        "warmup_steps": 5,
        "val_every_steps": 50,
        "val_batches": 2,
    },
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("atmorep") / "world"
    simulate(out, preset("alps-small").model_copy(update={"days": 8.0}), seed=4)
    return out


@pytest.fixture(scope="module")
def pretrained(world, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pretrain")
    config = folder / "atmorep.yaml"
    config.write_text(yaml.safe_dump(TINY))
    result = runner.invoke(
        app,
        [
            "pretrain",
            "--config",
            str(config),
            "--world",
            str(world),
            "--set",
            f"train.out={folder / 'run'}",
        ],
    )
    assert result.exit_code == 0, result.output
    return folder / "run"


def _validation_loss(model: AtmoRep, cfg: AtmoRepConfig) -> float:
    """The validation loss as training logs it: the same samples, a generator seeded by batch
    index."""
    t = cfg.train
    series = open_blocks(cfg, ("validation",)).series["validation"]
    samples = CubeDataset(series, cfg, t.val_batches * t.batch_size, t.seed + 1)
    model.eval()
    with torch.no_grad():
        losses = [
            model.loss(batch, generator=torch.Generator().manual_seed(i)).item()
            for i, batch in enumerate(torch.utils.data.DataLoader(samples, t.batch_size))
        ]
    return float(np.mean(losses))


def test_pretraining_loss_falls_below_the_fill_and_checkpoint_is_safe(pretrained):
    logs = pd.read_csv(pretrained / "logs" / "version_0" / "metrics.csv")
    val = logs["val_loss"].dropna().to_numpy()
    assert val.size == 3 and val[-1] < val[0]  # fixed validation samples and noise: comparable
    last = pretrained / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 150
    loaded = load_atmorep(last)
    # the logged loss is the checkpoint's on these samples, and over 10 % below the untrained
    # model's: zero heads predict the fill of the hidden tokens (linear in time, persistence, token
    # mean or 0), every member alike (measured 0.410 against 0.570)
    assert _validation_loss(loaded.model, loaded.config) == pytest.approx(val[-1], rel=1e-4)
    fill = _validation_loss(AtmoRep(loaded.config, loaded.levels), loaded.config)
    assert val[-1] < 0.9 * fill
    assert loaded.levels == {"t2m": 1, "tp": 1, "u": 2, "orog": 1}
    assert loaded.grid["shape"] == [80, 200] and not loaded.model.training
    with pytest.raises(ValueError, match="kind 'atmorep', where 'downscaling' is needed"):
        load_checkpoint(last)


def test_fine_tuning_takes_over_matching_weights(pretrained, world):
    loaded = load_atmorep(pretrained / "checkpoints" / "last.ckpt")
    tree = loaded.config.model_dump(mode="json")
    tree["fields"]["v"] = {"source": "lr", "variables": ["v850", "v500"]}  # a new field
    tree["masking"] = {"strategies": {"forecast": 1.0}}
    cfg = AtmoRepConfig.model_validate(tree)
    model = AtmoRep(cfg, {**loaded.levels, "v": 2})
    fresh = take_over(model, pretrained / "checkpoints" / "last.ckpt")
    assert fresh and all("v" in name.split(".") for name in fresh), (
        fresh
    )  # only the new field starts fresh
    # a weight of a kept field came over unchanged
    assert torch.equal(model.embed["t2m"].weight, loaded.model.embed["t2m"].weight)


def test_predicted_interpolation_is_an_ensemble_that_evaluate_scores(pretrained, world, tmp_path):
    out = predict(
        pretrained / "checkpoints" / "last.ckpt",
        tmp_path / "interp.zarr",
        "interpolation",
        members=3,
    )
    ds = xr.open_zarr(out)
    assert ds.sizes["member"] == 3 and set(ds.data_vars) == {"t2m", "tp", "u850", "u500"}
    assert json.loads(ds.attrs["hidden_hours"]) == [2, 3]  # the middle time token of 3
    assert (ds.tp >= 0).all() and np.isfinite(ds.t2m).all()
    truth = xr.open_zarr(world / "hr.zarr")
    before, after = known_hours(ds)
    assert np.all(after - before == np.timedelta64(3, "h"))
    linear = linear_in_time(ds, truth, ["t2m", "tp"])
    # halfway between the known hours the linear reference is their mean
    t = ds.time.values[0].astype("datetime64[h]")  # one hour after the last known: weights 2/3, 1/3
    manual = (2 * truth.t2m.sel(time=before[0]) + truth.t2m.sel(time=after[0])) / 3
    assert t - before[0] == np.timedelta64(1, "h")
    assert np.allclose(linear.t2m.sel(time=t)[0], manual, atol=1e-4)
    write_zarr(linear, tmp_path / "linear.zarr")
    report = run_evaluate(
        out,
        world / "hr.zarr",
        tmp_path / "eval",
        references={"linear": tmp_path / "linear.zarr"},
        variables=["t2m", "tp"],
        name="atmorep",
    )
    metrics = json.loads((report / "metrics.json").read_text())
    # the model's fair CRPS beats linear interpolation's absolute error (one member: its CRPS) in
    # t2m by over 7 % (measured 0.608 against 0.705 K); untrained it would equal it: its fill is
    # linear in time. Not tp: the 12 hours predicted are nearly dry (0.0002 mm/h on average), and
    # the fill, linear in log1p(tp), already scores below the linear reference
    model = metrics["forecast"]["t2m"]["crps_fair"]
    linear = metrics["references"]["linear"]["t2m"]["crps_fair"]
    assert model < 0.93 * linear, (model, linear)


def _fair_crps(members: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Fair CRPS of members (M, ...) against truth (...), point by point: the mean absolute error of
    the members less half their mean absolute difference over the M (M - 1) pairs."""
    m = members.shape[0]
    pairs = np.abs(members[:, None] - members[None]).sum(axis=(0, 1)) / (m * (m - 1))
    return np.abs(members - truth).mean(axis=0) - pairs / 2


def test_forecast_lead_and_its_references(pretrained, world, tmp_path):
    ckpt = pretrained / "checkpoints" / "last.ckpt"
    with pytest.raises(ValueError, match="forecast task only"):
        predict(ckpt, tmp_path / "x.zarr", "interpolation", lead=1)
    with pytest.raises(ValueError, match="lead 3 outside 1..2"):
        predict(ckpt, tmp_path / "x.zarr", "forecast", lead=3)
    assert not (tmp_path / "x.zarr").exists()
    out = predict(ckpt, tmp_path / "lead1.zarr", "forecast", lead=1, members=2)
    ds = xr.open_zarr(out)
    truth = xr.open_zarr(world / "hr.zarr")
    before, _ = known_hours(ds)
    assert np.all(ds.time.values.astype("datetime64[h]") - before == np.timedelta64(1, "h"))
    still = persistence(ds, truth, ["t2m"])
    assert np.allclose(still.t2m[0, 0], truth.t2m.sel(time=before[0]))
    # the model's fair CRPS beats persistence's absolute error in t2m by over 7 % (measured 1.180
    # against 1.378 K); untrained it would equal it: its fill is persistence
    y = truth.t2m.sel(time=ds.time).values
    model, still_mae = _fair_crps(ds.t2m.values, y).mean(), np.abs(still.t2m.values[0] - y).mean()
    assert model < 0.93 * still_mae, (model, still_mae)
    # with no wind, advection is persistence; with a uniform eastward wind the field moves east
    zero = xr.zeros_like(truth.t2m)
    assert np.allclose(advection(ds, truth, zero, zero, ["t2m"]).t2m, still.t2m)
    spacing = 6_371_000.0 * np.deg2rad(float(truth.lon[0, 1] - truth.lon[0, 0]))
    lat0 = np.deg2rad(float(truth.lat[40, 0]))
    east = xr.full_like(
        truth.t2m, 2 * spacing * np.cos(lat0) / 3600.0
    )  # two cells per hour at row 40
    moved = advection(ds, truth, east, zero, ["t2m"]).t2m[0, 0].values
    last = truth.t2m.sel(time=before[0]).values
    assert np.allclose(moved[40, 10:], last[40, 8:-2], atol=1e-3)
    assert ds.attrs["lead_hours"] == "1"


def test_a_refused_value_in_the_predicted_block_fails_before_drawing(
    pretrained, world, tmp_path, monkeypatch
):
    import finescale.atmorep.predict as module

    copy = tmp_path / "world"
    shutil.copytree(world, copy)
    checkpoint = pretrained / "checkpoints" / "last.ckpt"
    # u850 is LR only, so the pair's alignment check (which reads the variables LR and HR share)
    # does not see it: the last hour of the test block is first read when its neighbourhood is drawn
    bad_time = open_series(load_atmorep(checkpoint), "test", "x").times[-1]
    lr = xr.open_zarr(copy / "lr.zarr")
    hour = int(np.flatnonzero(lr.time.values.astype("datetime64[h]") == bad_time)[0])
    u = lr.u.isel(time=slice(hour, hour + 1)).load()  # u850 is level 850 of u
    u.loc[{"level": 850.0}][0, 3, 4] = np.nan
    u.to_dataset().drop_vars([c for c in u.coords if c != "time"]).to_zarr(
        copy / "lr.zarr", region={"time": slice(hour, hour + 1)}
    )
    real = module.open_pair

    def on_the_copy(data):
        moved = {
            k: getattr(data, k).model_copy(update={"path": copy / Path(getattr(data, k).path).name})
            for k in ("lr", "hr", "static")
        }
        return real(data.model_copy(update=moved))

    monkeypatch.setattr(module, "open_pair", on_the_copy)
    with pytest.raises(ValueError, match=f"lr.zarr: variable 'u' holds NaN.*{str(bad_time)[:13]}"):
        predict(checkpoint, tmp_path / "x.zarr", "interpolation", members=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "world"
    ]  # no output, not even a partial one


def test_shipped_configs_validate_on_a_world(world, tmp_path):
    root = Path(__file__).parents[1]
    sections = {"data": world_config(world).data.model_dump(mode="json")}
    cfg = load_config(root / "configs" / "atmorep-pretrain.yaml", [], AtmoRepConfig, sections)
    assert cfg.variables_of("u") == ["u850", "u700", "u500"] and not cfg.fields["orog"].predict
    assert set(cfg.partners_of("t2m")) == set(cfg.fields) - {"t2m"}
    for name in ("atmorep-downscale", "atmorep-bias"):
        tuned = load_config(root / "configs" / f"{name}.yaml", [], AtmoRepConfig, sections)
        assert tuned.fields["tp"].base == "tp_lr"
    for machine in ("heldout-cpu", "gpu", "quick"):
        bench = yaml.safe_load(
            (root / "benchmarks" / "configs" / f"atmorep-{machine}.yaml").read_text()
        )
        for stage in ("pretrain", "downscale", "bias"):
            validate({**sections, **bench[stage]}, AtmoRepConfig)
    own = tmp_path / "own.yaml"
    own.write_text(yaml.safe_dump({**TINY, **sections}))
    with pytest.raises(ConfigError, match="has its own 'data' section"):
        load_config(own, [], AtmoRepConfig, sections)


def test_attention_maps_sum_to_one_and_are_drawn(pretrained, tmp_path):
    ckpt = pretrained / "checkpoints" / "last.ckpt"
    result = runner.invoke(
        app,
        [
            "attention",
            "--checkpoint",
            str(ckpt),
            "--field",
            "tp",
            "--token",
            "0,2,1,1",
            "--out",
            str(tmp_path / "tp.png"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "tp.png").read_bytes()[:4] == b"\x89PNG"
    loaded = load_atmorep(ckpt)
    series = open_series(loaded, "test", "test")
    batch = torch.utils.data.default_collate(
        [FixedCubes(series, loaded.config, [(0, 0, 0)], "forecast")[0]]
    )
    maps = attention_maps(loaded, batch, "tp", (0, 2, 1, 1), layer=0)
    assert set(maps) == {"tp", "t2m", "u", "orog"}
    assert maps["u"].shape == (2, 3, 2, 3) and maps["tp"].shape == (1, 3, 2, 3)
    assert np.isclose(maps["tp"].sum(), 1.0, atol=1e-5)  # self-attention over its own tokens
    assert np.isclose(
        sum(maps[p].sum() for p in ("t2m", "u", "orog")), 1.0, atol=1e-5
    )  # cross over partners
    bad = runner.invoke(
        app,
        [
            "attention",
            "--checkpoint",
            str(ckpt),
            "--field",
            "tp",
            "--token",
            "0,9,1,1",
            "--out",
            str(tmp_path / "bad.png"),
        ],
    )
    assert (
        bad.exit_code == 2
        and "outside the field's tokens" in bad.output
        and not (tmp_path / "bad.png").exists()
    )


def test_a_zero_validation_fraction_is_refused_before_reading(world):
    """Pre-training validates on its own block, never on the test block it is scored on."""
    tree = {
        **TINY,
        "data": {
            **load_config(world / "finescale.yaml").data.model_dump(mode="json"),
            "splits": {"train": 0.7, "validation": 0.0, "test": 0.3},
        },
    }
    with pytest.raises(ConfigError, match="data.splits.validation is 0"):
        open_blocks(AtmoRepConfig.model_validate(tree))

"""benchmarks/atmorep.py, the AtmoRep benchmark under the held-out protocol: its configs build every
training they name, its scores equal the formulas computed directly, the goals and the selection
rule, prediction on a world the model never saw, and (slow) the smoke config end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # the scripts import their neighbours by name

from atmorep_models import SECTION, merge, scratch_section
from atmorep_scores import (
    EDGES,
    bias_figures,
    choose,
    day_sums,
    ensemble_figures,
    goal_checks,
    histogram,
    histogram_quantile,
    pretraining_pays,
)
from atmorep_tasks import REFERENCES

from finescale.atmorep.settings import AtmoRepConfig
from finescale.config import validate
from finescale.verify import intervals

CONFIGS = sorted((BENCHMARKS / "configs").glob("atmorep-*.yaml"))
DATA = {
    "lr": {"path": "lr.zarr", "variables": {"t2m": "t2m"}},
    "hr": {"path": "hr.zarr", "variables": {"t2m": "t2m"}},
}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_configs_build_every_training_they_name(path):
    spec = yaml.safe_load(path.read_text())
    assert {"development", "heldout", "select", "goals", "scratch", "pretrain", "bias"} <= set(spec)

    def check(section: dict, where: str) -> AtmoRepConfig:
        return validate({"data": DATA, **section}, AtmoRepConfig, source=f"{path.name}: {where}")

    check(spec["pretrain"], "pretrain")
    check(spec["bias"], "bias")
    for task, select in spec["select"].items():
        if task in ("rule", "every"):
            continue
        # the score the rule ranks by is a figure the task produces
        assert select["score"] in {f"crps_{ref}_ratio" for ref in REFERENCES[task]}
        for name, overrides in select["candidates"].items():
            if overrides is None:
                assert SECTION[task] == "pretrain"  # only the pre-trained model predicts as it is
            else:
                check(merge(spec[SECTION[task]], overrides), f"{task} {name}")
            scratch = scratch_section(spec, task, overrides)
            cfg = check(scratch, f"scratch {task} after {name}")
            tuned = 0 if overrides is None else merge(spec[SECTION[task]], overrides)
            tuned = 0 if tuned == 0 else tuned["train"]["max_steps"]
            assert cfg.train.max_steps == spec["pretrain"]["train"]["max_steps"] + tuned
            if task != "downscale":  # from scratch on the task alone
                alone = {"interpolation": "interpolation", "nowcast": "forecast"}[task]
                assert cfg.masking.strategies == {alone: 1.0}


def _write(path: Path, values: np.ndarray, times: np.ndarray, lat: np.ndarray) -> Path:
    """A (member, time, y, x) store of t2m and tp with 2-D lat."""
    dims = ("member", "time", "y", "x")
    ds = xr.Dataset(
        {"t2m": (dims, values), "tp": (dims, np.abs(values))},
        coords={"time": times, "lat": (("y", "x"), lat)},
    )
    ds.to_zarr(path, mode="w")
    return path


def _fair_crps(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fair CRPS per point, by its definition (x: members first)."""
    m = x.shape[0]
    skill = np.abs(x - y).mean(axis=0)
    if m == 1:
        return skill
    return skill - np.abs(x[:, None] - x[None]).sum(axis=(0, 1)) / (2 * m * (m - 1))


def test_figures_equal_the_scores_computed_directly(tmp_path):
    rng = np.random.default_rng(3)
    times = np.arange("2021-01-01T00", "2021-01-04T00", 4, dtype="datetime64[h]").astype(
        "datetime64[ns]"
    )  # 18 times on 3 days
    lat = np.repeat(np.linspace(40.0, 60.0, 6)[:, None], 7, axis=1)
    truth = rng.normal(size=(1, times.size, 6, 7))
    stores = {
        "ours": _write(
            tmp_path / "o.zarr", truth + rng.normal(size=(5, *truth.shape[1:])), times, lat
        ),
        "scratch": _write(
            tmp_path / "s.zarr", truth + 2 * rng.normal(size=(5, *truth.shape[1:])), times, lat
        ),
        "linear": _write(tmp_path / "l.zarr", truth + 0.8, times, lat),
    }
    truth_ds = xr.Dataset(
        {"t2m": (("time", "y", "x"), truth[0]), "tp": (("time", "y", "x"), np.abs(truth[0]))},
        coords={"time": times, "lat": (("y", "x"), lat)},
    )
    sums, days = day_sums(stores, truth_ds, ["t2m"], times, chunk=5)
    assert days.size == 3 and sums["hours"].sum() == 18
    counts = intervals.bootstrap_counts(np.zeros(days.size), 1, 500)
    fig = ensemble_figures(sums, counts, "t2m", 5, ["linear"])

    w = np.cos(np.deg2rad(lat))  # area weights: normalised, so only ratios are compared
    x = {name: xr.open_zarr(p)["t2m"].values for name, p in stores.items()}
    crps = {name: (_fair_crps(v, truth[0]) * w).sum() for name, v in x.items()}
    assert fig["ours"]["crps_linear_ratio"]["value"] == pytest.approx(
        crps["ours"] / crps["linear"], rel=1e-10
    )
    assert fig["ours_scratch_crps_ratio"]["value"] == pytest.approx(
        crps["ours"] / crps["scratch"], rel=1e-10
    )
    spread = (x["scratch"].var(axis=0, ddof=1) * w).sum()
    error = ((x["scratch"].mean(axis=0) - truth[0]) ** 2 * w).sum()
    assert fig["scratch"]["ssr"]["value"] == pytest.approx(np.sqrt(6 / 5 * spread / error))
    lo, hi = fig["ours"]["crps_linear_ratio"]["ci95"]
    assert lo < fig["ours"]["crps_linear_ratio"]["value"] < hi  # three days: a real interval


def test_bias_figures_on_known_errors(tmp_path):
    rng = np.random.default_rng(5)
    times = np.arange("2021-01-01T00", "2021-01-03T00", 2, dtype="datetime64[h]").astype(
        "datetime64[ns]"
    )
    lat = np.repeat(np.linspace(44.0, 48.0, 8)[:, None], 9, axis=1)
    tp = rng.gamma(0.5, 2.0, size=(1, times.size, 8, 9)) * (rng.random((1, times.size, 8, 9)) > 0.4)
    truth = xr.Dataset(
        {"tp": (("time", "y", "x"), tp[0])}, coords={"time": times, "lat": (("y", "x"), lat)}
    )
    stores = {
        "ours": _write(tmp_path / "o.zarr", np.repeat(1.1 * tp, 3, axis=0), times, lat),
        "qm": _write(tmp_path / "q.zarr", tp, times, lat),
    }
    w = np.cos(np.deg2rad(lat))
    q99 = 3.0
    sums, days = day_sums(stores, truth, ["tp"], times, thresholds={"tp": {"q99": q99}}, bias=True)
    counts = intervals.bootstrap_counts(np.zeros(days.size), 1, 200)
    fig = bias_figures(sums, counts, ("ours", "qm"))
    assert fig["ours"]["mean_rel_error"]["value"] == pytest.approx(0.1, rel=1e-9)
    assert fig["qm"]["mean_rel_error"]["value"] == pytest.approx(0.0, abs=1e-12)
    assert fig["ours"]["q99_rel_error"]["value"] == pytest.approx(0.1, abs=0.004)  # 0.3 % bins
    assert fig["qm"]["q99_rel_error"]["value"] == 0.0
    # Brier of ours: members all say yes where 1.1 tp > q99, the truth where tp > q99
    wrong = ((1.1 * tp[0] > q99) != (tp[0] > q99)) * w
    assert fig["ours"]["brier_q99"]["value"] == pytest.approx(wrong.sum() / (w.sum() * times.size))
    assert fig["qm"]["brier_q99"]["value"] == 0.0
    assert fig["brier_ratio_qm"]["ci95"] is None  # over a zero Brier score: undefined, withheld


def test_histogram_quantiles_are_those_of_the_values_and_add_up_by_day():
    rng = np.random.default_rng(1)
    values = rng.gamma(0.7, 1.5, size=40000) * (rng.random(40000) > 0.3)
    weights = rng.random(40000)
    exact = np.quantile(values, 0.99, weights=weights, method="inverted_cdf")
    h = histogram(values, weights)
    assert h.shape == (EDGES.size - 1,) and h.sum() == pytest.approx(weights.sum())
    assert histogram_quantile(h, 0.99) == pytest.approx(exact, rel=0.005)
    halves = np.stack(
        [histogram(values[:25000], weights[:25000]), histogram(values[25000:], weights[25000:])]
    )
    assert histogram_quantile(halves.sum(axis=0), 0.99) == histogram_quantile(h, 0.99)
    assert histogram_quantile(halves, 0.99).shape == (2,)  # one per resample row


def fig(x: float) -> dict:
    return {"value": x, "ci95": [x - 0.01, x + 0.01]}


def test_goals_pretraining_and_the_selection_rule():
    goals = yaml.safe_load((BENCHMARKS / "configs" / "atmorep-heldout-cpu.yaml").read_text())[
        "goals"
    ]
    nowcast = {
        "1h": {"t2m": {"ours": {"ssr": fig(0.95), "crps_persistence_ratio": fig(0.5)}}},
        "2h": {"t2m": {"ours": {"ssr": fig(0.85)}, "ours_scratch_crps_ratio": fig(1.02)}},
    }
    assert goal_checks("nowcast", nowcast, goals) == {
        "1h.t2m.ssr": True,
        "1h.t2m.crps_persistence_ratio": True,
        "2h.t2m.ssr": False,
    }
    downscale = {
        "tp": {"ours": {"ssr": fig(1.0), "spectral": fig(0.2), "crps_oracle_ratio": fig(1.1)}}
    }
    assert goal_checks("downscale", downscale, goals) == {
        "tp.crps_diffusion_ratio": None,  # no diffusion ensemble: not measured, not failed
        "tp.spectral": False,
        "tp.ssr": True,
    }
    bias = {"ours": {"mean_rel_error": fig(-0.019), "q99_rel_error": fig(0.021)}}
    assert goal_checks("bias", bias, goals) == {"mean_rel_error": True, "q99_rel_error": False}
    pays = pretraining_pays("nowcast", nowcast)
    assert list(pays) == ["2h.t2m"] and not pays["2h.t2m"]["holds"]
    pays = pretraining_pays("interpolation", {"u10": {"ours_scratch_crps_ratio": fig(0.995)}})
    assert pays["u10"]["holds"] and not pays["u10"]["clear"]  # its interval reaches above 1
    candidates = [
        {"name": "a", "goals_met": 3, "score": 0.9},
        {"name": "b", "goals_met": 4, "score": 1.2},
        {"name": "c", "goals_met": 4, "score": 1.1},
    ]
    assert choose(candidates) == "c"  # most goals first, then the lowest score


def test_prediction_on_a_world_never_trained_on(tmp_path):
    """``predict(data=...)``: the held-out worlds' hours and fields, not the training world's."""
    from finescale.atmorep.predict import predict
    from finescale.atmorep.train import pretrain
    from finescale.data.world import preset, simulate
    from finescale.pipeline import world_config

    params = preset("alps-small").model_copy(update={"days": 6.0})
    home, away = tmp_path / "a", tmp_path / "b"
    simulate(home, params, seed=0)
    simulate(away, params, seed=7)
    tiny = {
        "data": world_config(home).data.model_dump(mode="json"),
        "fields": {"t2m": {"source": "hr"}, "orog": {"source": "static", "predict": False}},
        "token": {"time": 1, "y": 8, "x": 8},
        "neighbourhood": {"time": 3, "y": 2, "x": 3},
        "network": {"width": 8, "heads": 2, "encoder_layers": 1, "tail_layers": 1},
        "ensemble": {"members": 2, "noise_dim": 4},
        "masking": {"strategies": {"interpolation": 1.0}},
        "train": {
            "batch_size": 2,
            "max_steps": 2,
            "val_every_steps": 2,
            "val_batches": 1,
            "num_workers": 0,
            "out": str(tmp_path / "run"),
        },
    }
    checkpoint = pretrain(validate(tiny, AtmoRepConfig))
    data = world_config(away).data
    store = predict(checkpoint, tmp_path / "away.zarr", "interpolation", members=2, data=data)
    ds = xr.open_zarr(store)
    assert json.loads(ds.attrs["config"])["data"]["hr"]["path"] == str(data.hr.path)
    mean = ds["t2m"].mean("member")
    # the hidden hours start from linear interpolation of the known ones: of the world predicted on
    errors = {
        name: float(np.abs(mean - xr.open_zarr(world / "hr.zarr")["t2m"].sel(time=ds.time)).mean())
        for name, world in (("away", away), ("home", home))
    }
    assert errors["away"] < 0.3 * errors["home"], errors


@pytest.mark.slow
def test_the_smoke_config_runs_end_to_end(tmp_path):
    out = tmp_path / "run"
    command = [
        sys.executable,
        "atmorep.py",
        "--config",
        "configs/atmorep-quick.yaml",
        "--out",
        str(out),
    ]
    subprocess.run(command, cwd=BENCHMARKS, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    result = json.loads((out / "atmorep-heldout.json").read_text())
    assert result["selected_on"] == "validation"
    spec = result["config"]
    for task, record in result["selection"].items():
        assert record["chosen"] in spec["select"][task]["candidates"]
        assert len(record["candidates"]) == len(spec["select"][task]["candidates"])
    assert [w["seed"] for w in result["heldout_worlds"]] == [h["seed"] for h in spec["heldout"]]
    for task in ("interpolation", "nowcast", "downscale"):
        assert result["pretraining_pays"][task]
        chosen = spec["select"][task]["candidates"][result["selection"][task]["chosen"]]
        tuned = 0 if chosen is None else merge(spec[SECTION[task]], chosen)["train"]["max_steps"]
        assert result["scratch"][task]["steps"] == spec["pretrain"]["train"]["max_steps"] + tuned
    figures = result["pooled"]["figures"]
    assert set(figures) == {"interpolation", "nowcast", "downscale", "bias"}
    assert set(figures["nowcast"]) == {"1h", "2h", "3h"}
    t2m = figures["downscale"]["t2m"]
    assert {"crps_oracle_ratio", "ssr", "spectral"} <= set(t2m["ours"]) and "band_km" in t2m[
        "ours"
    ]["spectral"]
    assert result["goals"]["downscale"]["t2m.crps_diffusion_ratio"] is None  # no skill run
    for w in result["heldout_worlds"]:  # every held-out store was predicted on its own world
        ds = xr.open_zarr(out / "heldout" / w["label"] / "downscale-ours.zarr")
        assert json.loads(ds.attrs["config"])["data"]["hr"]["path"].startswith(w["path"])

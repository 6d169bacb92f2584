"""Baselines: interpolation, quantile mapping and BCSD, on a summer Alps world and synthetic
pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from finescale import baselines
from finescale.baselines import fit_quantile_mapping, quantiles, run_baseline
from finescale.cli import app
from finescale.config import DataConfig, load_config
from finescale.data import grids, regrid
from finescale.data.pairs import open_pair, split_times
from finescale.data.world import preset, simulate
from finescale.io.atomic import ZARR_FORMAT

SPLITS = "data.splits={train: 0.6, validation: 0.0, test: 0.4, gap_hours: 0}"
VARIABLES = ("t2m", "u10", "v10", "tp")
WET = baselines.WET_THRESHOLD[0]  # mm/h: the world's tp is in mm h-1


# --------------------------------------------------------------------------------------------
# a summer Alps world (convective rain) and the baselines run on it, each once


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("baselines") / "world"
    params = preset("alps-small").model_copy(update={"days": 8.0, "start": "2021-07-01T00:00"})
    return simulate(out, params, seed=0)


@pytest.fixture(scope="module")
def cfg(world) -> DataConfig:
    return load_config(world / "finescale.yaml", [SPLITS]).data


@pytest.fixture(scope="module")
def truth(cfg) -> dict[str, xr.Dataset]:
    """The HR truth of each split, loaded."""
    hr = open_pair(cfg).hr
    blocks = split_times(hr.time.values, cfg.splits)
    return {name: hr.sel(time=blocks[name]).load() for name in ("train", "test")}


@pytest.fixture(scope="module")
def run(cfg, tmp_path_factory):
    """run(method, split) -> the written forecast, loaded; each baseline runs once."""
    folder = tmp_path_factory.mktemp("forecasts")
    done: dict[tuple[str, str], xr.Dataset] = {}

    def get(method: str, split: str = "test") -> xr.Dataset:
        if (method, split) not in done:
            path = run_baseline(cfg, method, folder / f"{method}-{split}.zarr", split=split)
            done[method, split] = xr.open_zarr(path).load()
        return done[method, split]

    return get


def pooled(ds: xr.Dataset, name: str) -> np.ndarray:
    return np.asarray(ds[name].values, dtype=float).ravel()


# --------------------------------------------------------------------------------------------
# interpolation


def test_bilinear_is_the_interpolation_of_lr(cfg, run):
    pair = open_pair(cfg)
    fc = run("bilinear")
    lr = pair.lr.sel(time=fc.time.values)
    expected = regrid.interpolate(lr.t2m, pair.hr.lat, pair.hr.lon, method="bilinear")
    np.testing.assert_array_equal(fc.t2m.isel(member=0).values, expected.values)
    # block means of the bilinear field give the LR back, up to curvature (interior cells;
    # at the edge the field is held constant over the outer half cells)
    back = grids.coarsen(fc.t2m.isel(member=0), round(pair.ratio)).values[:, 1:-1, 1:-1]
    lr_inner = lr.t2m.values[:, 1:-1, 1:-1]
    assert np.abs(back - lr_inner).mean() < 0.1 * lr_inner.std()
    assert np.corrcoef(back.ravel(), lr_inner.ravel())[0, 1] > 0.99


def test_bicubic_precipitation_is_clipped_at_zero(cfg, run):
    pair = open_pair(cfg)
    fc = run("bicubic")
    raw = regrid.interpolate(
        pair.lr.tp.sel(time=fc.time.values), pair.hr.lat, pair.hr.lon, method="bicubic"
    )
    assert float(raw.min()) < 0  # the spline undershoots near showers ...
    assert float(fc.tp.min()) >= 0  # ... and the baseline clips it
    np.testing.assert_allclose(fc.tp.isel(member=0).values, raw.clip(min=0).values)


# --------------------------------------------------------------------------------------------
# quantile mapping and BCSD on the world


def test_quantile_mapping_brings_the_tails_to_the_truth(run, truth):
    test = truth["test"]
    interp, qm, bcsd = run("bilinear"), run("qm"), run("bcsd")
    for q in (0.99, 0.999):
        true = np.quantile(pooled(test, "tp"), q)
        err = {
            k: abs(np.quantile(pooled(f, "tp"), q) - true)
            for k, f in (("interp", interp), ("qm", qm), ("bcsd", bcsd))
        }
        assert err["qm"] < 0.5 * err["interp"], (q, err)
        assert err["bcsd"] < err["interp"], (q, err)
    # cold tail of t2m: valleys are colder than the LR cell mean
    true = np.quantile(pooled(test, "t2m"), 0.01)
    err_interp = abs(np.quantile(pooled(interp, "t2m"), 0.01) - true)
    err_qm = abs(np.quantile(pooled(qm, "t2m"), 0.01) - true)
    assert err_interp > 1.0 and err_qm < 0.2 * err_interp


def test_quantile_mapping_reproduces_the_training_distribution(cfg, truth):
    # in sample, each point's distribution is the truth's: so is the pooled one (precipitation,
    # with its dry zeros, is the hard case)
    pair = open_pair(cfg)
    train = truth["train"][["tp"]]
    source = baselines.interpolation(pair.lr[["tp"]].sel(time=train.time), pair.hr)
    mapped = fit_quantile_mapping(source, train).apply(source)
    for q in (0.7, 0.9, 0.99, 0.999):
        true = np.quantile(pooled(train, "tp"), q)
        assert abs(np.quantile(pooled(mapped, "tp"), q) - true) < 0.05 * true + 0.01, q
    wet = (pooled(mapped, "tp") >= WET).mean()
    assert abs(wet - (pooled(train, "tp") >= WET).mean()) < 0.005


def test_precipitation_drizzle_becomes_exact_zeros(run, truth):
    test = truth["test"]
    true_wet = (pooled(test, "tp") >= WET).mean()
    interp = pooled(run("bilinear"), "tp")
    assert (interp == 0).mean() == 0  # LR drizzles everywhere
    wet = {"interp": (interp >= WET).mean()}
    for method in ("qm", "bcsd"):
        tp = pooled(run(method), "tp")
        assert tp.min() >= 0
        assert (tp == 0).mean() > 0.4  # excess drizzle mapped onto exact zeros
        assert np.all((tp == 0) | (tp >= WET))  # no trace values left
        wet[method] = (tp >= WET).mean()
    assert abs(wet["qm"] - true_wet) < 0.5 * abs(wet["interp"] - true_wet), (true_wet, wet)
    assert abs(wet["bcsd"] - true_wet) < abs(wet["interp"] - true_wet), (true_wet, wet)


def test_quantile_mapping_does_not_look_at_the_test_truth(world, cfg, run, tmp_path):
    hr = xr.open_zarr(world / "hr.zarr").load()
    test_times = split_times(hr.time.values, cfg.splits)["test"]
    in_test = hr.time.isin(test_times)
    changed = hr.assign(t2m=hr.t2m + 2.0 * in_test, tp=hr.tp * (1 + 2 * in_test))
    for name, variable in changed.variables.items():
        variable.encoding = {}
        if name in hr.data_vars:
            variable.attrs = hr[name].attrs
    changed.to_zarr(world / "hr_changed.zarr", mode="w", **ZARR_FORMAT)
    config = world / "changed.yaml"  # beside the world: its relative paths still resolve
    config.write_text((world / "finescale.yaml").read_text().replace("hr.zarr", "hr_changed.zarr"))
    other = load_config(config, [SPLITS]).data
    out = xr.open_zarr(run_baseline(other, "qm", tmp_path / "qm.zarr")).load()
    original = run("qm")
    for name in VARIABLES:
        np.testing.assert_array_equal(out[name].values, original[name].values)
    assert out.attrs["fit_period"] == original.attrs["fit_period"]
    assert out.attrs["fit_period"].startswith("train: ")


def test_bcsd_reproduces_the_hr_climatology_on_the_training_period(run, truth):
    train = truth["train"]
    bcsd, interp = run("bcsd", "train"), run("bilinear", "train")
    for name, tolerance in (("t2m", 0.2), ("u10", 0.05), ("v10", 0.05)):
        error = np.abs(bcsd[name].mean(("member", "time")) - train[name].mean("time"))
        assert float(error.max()) < tolerance, name
    true = train.tp.mean("time")
    rms = {
        k: float(np.sqrt(((f.tp.mean(("member", "time")) - true) ** 2).mean()))
        for k, f in (("bcsd", bcsd), ("interp", interp))
    }
    assert rms["bcsd"] < 0.05 * float(true.std()) and rms["bcsd"] < 0.1 * rms["interp"], rms
    assert abs(float(bcsd.tp.mean() / train.tp.mean()) - 1) < 0.02


# --------------------------------------------------------------------------------------------
# exactness on synthetic data


def test_quantile_mapping_removes_an_additive_bias_exactly():
    rng = np.random.default_rng(1)
    truth = xr.Dataset({"t2m": (("time", "y", "x"), 280 + 5 * rng.standard_normal((300, 3, 4)))})
    biased = truth + 1.7 + xr.DataArray(rng.standard_normal((3, 4)), dims=("y", "x"))
    qm = fit_quantile_mapping(biased.isel(time=slice(0, 200)), truth.isel(time=slice(0, 200)))
    # later times, widened beyond the training range: additive extrapolation keeps it exact
    later = truth.isel(time=slice(200, None))
    later = later + 3 * (later - 280)
    source = later + (biased - truth).isel(time=0, drop=True)
    np.testing.assert_allclose(qm.apply(source).t2m.values, later.t2m.values, atol=1e-3)


def test_quantile_mapping_of_ties_takes_the_middle():
    # 60% of the source is one value (a dry LR): it maps onto the middle of the target's ranks.
    source = xr.Dataset(
        {"tp": (("time", "y", "x"), np.r_[np.zeros(60), np.arange(1.0, 41)][:, None, None])}
    )
    target = xr.Dataset({"tp": (("time", "y", "x"), np.arange(100.0)[:, None, None])})
    target.tp.attrs["units"] = "mm h-1"
    out = fit_quantile_mapping(source, target).apply(source.isel(time=[0, 99]))
    np.testing.assert_allclose(out.tp.values.ravel(), [0.0, 99.0])  # input 0 stays 0
    t2m = fit_quantile_mapping(source.rename(tp="t2m"), target.rename(tp="t2m"))
    np.testing.assert_allclose(
        t2m.apply(source.rename(tp="t2m").isel(time=[0])).t2m, 29.5, atol=0.6
    )


def _synthetic_pair(folder: Path, bias: float) -> DataConfig:
    """NetCDF LR/HR with HR = a(t) + s(y, x) and LR = block mean of HR + bias (K)."""
    rng = np.random.default_rng(2)
    ratio, nt = 4, 120
    hr_lat = 45.0 + 0.1 * (np.arange(16) + 0.5)
    hr_lon = 7.0 + 0.1 * (np.arange(24) + 0.5)
    lr_lat, lr_lon = hr_lat.reshape(-1, ratio).mean(1), hr_lon.reshape(-1, ratio).mean(1)
    times = np.datetime64("2020-01-01T00", "ns") + np.arange(nt) * np.timedelta64(1, "h")
    # weather that warms through the period, so the test period leaves the training range
    weather = (
        270
        + 0.1 * np.arange(nt)
        + np.cumsum(rng.standard_normal(nt))
        + 4 * np.sin(2 * np.pi * np.arange(nt) / 24)
    )
    pattern = 3 * rng.standard_normal((16, 24))
    hr = weather[:, None, None] + pattern
    lr = hr.reshape(nt, 4, ratio, 6, ratio).mean(axis=(2, 4)) + bias
    attrs = {"units": "K", "long_name": "2 metre temperature"}
    for name, values, lat, lon in (("hr", hr, hr_lat, hr_lon), ("lr", lr, lr_lat, lr_lon)):
        xr.Dataset(
            {"t2m": (("time", "lat", "lon"), values.astype(np.float32), attrs)},
            coords={"time": times, "lat": lat, "lon": lon},
        ).to_netcdf(folder / f"{name}.nc")
    return DataConfig.model_validate(
        {
            "lr": {"path": folder / "lr.nc", "variables": {"t2m": "t2m"}},
            "hr": {"path": folder / "hr.nc", "variables": {"t2m": "t2m"}},
            "splits": {"train": 0.5, "validation": 0.0, "test": 0.5},
        }
    )


def test_an_additive_lr_bias_is_removed_exactly_end_to_end(tmp_path):
    cfg = _synthetic_pair(tmp_path, bias=2.0)
    truth = xr.open_dataset(tmp_path / "hr.nc").t2m.isel(time=slice(60, None)).values
    interp = xr.open_zarr(run_baseline(cfg, "bilinear", tmp_path / "bilinear.zarr")).t2m
    assert abs(float(interp.mean()) - truth.mean() - 2.0) < 0.05  # the bias is kept ...
    for method in ("qm", "bcsd"):  # ... and removed exactly, beyond the training range too
        fc = xr.open_zarr(run_baseline(cfg, method, tmp_path / f"{method}.zarr")).t2m
        np.testing.assert_allclose(fc.isel(member=0).values, truth, atol=2e-3, err_msg=method)


# --------------------------------------------------------------------------------------------
# the format on disk, atomic writes, errors


def test_forecast_format(world, run, truth):
    hr = xr.open_zarr(world / "hr.zarr")
    for method in ("bilinear", "qm", "bcsd"):
        fc = run(method)
        assert set(fc.data_vars) == set(VARIABLES)
        assert fc.sizes["member"] == 1
        np.testing.assert_array_equal(fc.time.values, truth["test"].time.values)
        for name in VARIABLES:
            assert fc[name].dims == ("member", "time", "y", "x")
            assert fc[name].dtype == np.float32
            for key in ("units", "long_name", "standard_name"):
                assert fc[name].attrs[key] == hr[name].attrs[key]
        assert fc.lat.dims == ("y", "x") and fc.lon.dims == ("y", "x")
        np.testing.assert_array_equal(fc.lat.values, hr.lat.values)
        assert fc.attrs["method"] == method
        assert fc.attrs["forecast_period"].startswith("test: ")
        assert fc.attrs["hr_source"].endswith("hr.zarr") and fc.attrs["lr_source"].endswith(
            "lr.zarr"
        )
        assert fc.attrs["fit_period"].startswith("train: " if method != "bilinear" else "none")


def test_a_failed_run_leaves_nothing_behind(cfg, tmp_path, monkeypatch):
    out = tmp_path / "bcsd.zarr"
    run_baseline(cfg, "bilinear", out)
    calls = []

    def broken(*args, **kwargs):
        calls.append(1)
        if len(calls) > 2:  # fail part-way through writing
            raise RuntimeError("disk on fire")
        return original(*args, **kwargs)

    original = quantiles.map_block
    monkeypatch.setattr(quantiles, "map_block", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        run_baseline(cfg, "bcsd", out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bcsd.zarr"]  # no temporary store left
    assert xr.open_zarr(out).attrs["method"] == "bilinear"  # the earlier result is untouched
    with pytest.raises(ValueError, match="bilinear, bicubic, qm, bcsd"):
        run_baseline(cfg, "kriging", tmp_path / "k.zarr")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="validation"):
        run_baseline(cfg, "bilinear", tmp_path / "k.zarr", split="spring")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bcsd.zarr"]


# --------------------------------------------------------------------------------------------
# command line

runner = CliRunner()


def test_cli_help_shows_examples():
    result = runner.invoke(app, ["baseline", "--help"])
    assert result.exit_code == 0
    assert "Examples" in result.output and "finescale baseline --method" in result.output


def test_cli_writes_a_store(world, tmp_path):
    out = tmp_path / "bicubic.zarr"
    args = [
        "baseline",
        "--method",
        "bicubic",
        "--config",
        str(world / "finescale.yaml"),
        "--out",
        str(out),
        "--set",
        SPLITS,
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert xr.open_zarr(out).t2m.dims == ("member", "time", "y", "x")


def test_cli_unknown_method(world, tmp_path):
    out = tmp_path / "k.zarr"
    args = [
        "baseline",
        "--method",
        "kriging",
        "--config",
        str(world / "finescale.yaml"),
        "--out",
        str(out),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    for name in ("kriging", "bilinear", "bicubic", "qm", "bcsd"):
        assert name in result.output
    assert not out.exists()

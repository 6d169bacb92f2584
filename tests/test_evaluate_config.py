"""`finescale evaluate --config`: the truth read through the data layer, as training reads it.

An ERA5-like HR NetCDF (latitude north->south, GRIB short name ``2t`` in degC, ``tp`` in m
accumulated over an hour) and the same numbers written by hand in finescale's layout (south->
north, ``t2m`` in K, ``tp`` in mm h-1): the scores of one forecast against either truth agree,
so the config's names, units, accumulation and orientation were applied; every step is a note.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
import yaml
from typer.testing import CliRunner

from finescale.cli import app
from finescale.config import load_config
from finescale.data.pairs import split_times
from finescale.evaluation import run_evaluate
from finescale.io.atomic import write_zarr

MEMBERS = 4
TIMES = np.arange(
    np.datetime64("2020-07-01T00"), np.datetime64("2020-07-03T00"), np.timedelta64(1, "h")
)
LAT = np.linspace(50.0, 42.5, 16)  # north -> south, as ERA5 stores it
LON = np.linspace(0.0, 9.5, 20)
runner = CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate_config")
    rng = np.random.default_rng(0)
    shape = (TIMES.size, LAT.size, LON.size)
    t_celsius = (15.0 + 5.0 * rng.standard_normal(shape)).astype(np.float32)
    tp_metres = (np.maximum(rng.standard_normal(shape), 0.0) * 1e-3).astype(np.float32)
    coords = {"time": TIMES, "latitude": LAT, "longitude": LON}
    dims = ("time", "latitude", "longitude")
    hr = xr.Dataset(
        {"2t": (dims, t_celsius, {"units": "degC"}), "tp": (dims, tp_metres, {"units": "m"})},
        coords=coords,
    )
    hr.to_netcdf(root / "era5_hr.nc")
    lr = hr.coarsen(latitude=2, longitude=2).mean()
    lr = lr.assign(
        {"2t": lr["2t"].assign_attrs(units="degC"), "tp": lr["tp"].assign_attrs(units="m")}
    )
    lr.to_netcdf(root / "era5_lr.nc")
    variables = {
        "t2m": {"name": "2t", "units": "K"},
        "tp": {"name": "tp", "units": "mm h-1", "accumulation": "1h"},
    }
    source = {"variables": variables, "lat": "latitude", "lon": "longitude"}
    data = {
        "lr": {"path": "era5_lr.nc", **source},
        "hr": {"path": "era5_hr.nc", **source},
        "splits": {"train": 0.5, "validation": 0.25, "test": 0.25, "gap_hours": 0},
    }
    (root / "era5.yaml").write_text(yaml.safe_dump({"data": data}))
    only_tp = {**data, "hr": {**data["hr"], "variables": {"tp": variables["tp"]}}}
    (root / "tp-only.yaml").write_text(yaml.safe_dump({"data": only_tp}))

    # the same truth by hand in finescale's layout: south -> north, K, mm h-1
    lat2, lon2 = np.meshgrid(LAT[::-1], LON, indexing="ij")
    grid = {"time": TIMES, "lat": (("y", "x"), lat2), "lon": (("y", "x"), lon2)}
    t_kelvin = t_celsius[:, ::-1].astype(np.float64) + 273.15
    tp_rate = tp_metres[:, ::-1].astype(np.float64) * 1000.0
    truth = xr.Dataset(
        {
            "t2m": (("time", "y", "x"), t_kelvin.astype(np.float32), {"units": "K"}),
            "tp": (("time", "y", "x"), tp_rate.astype(np.float32), {"units": "mm h-1"}),
        },
        coords=grid,
    )
    write_zarr(truth, root / "truth.zarr")
    noise = rng.standard_normal((MEMBERS, *shape))
    forecast = xr.Dataset(
        {
            "t2m": (
                ("member", "time", "y", "x"),
                (t_kelvin + 2.0 * noise).astype(np.float32),
                {"units": "K"},
            ),
            "tp": (
                ("member", "time", "y", "x"),
                np.maximum(tp_rate + noise, 0).astype(np.float32),
                {"units": "mm h-1"},
            ),
        },
        coords=grid,
    )
    write_zarr(forecast, root / "forecast.zarr")
    return root


def _metrics(out) -> dict:
    return json.loads((out / "metrics.json").read_text())


def test_config_truth_scores_like_the_same_truth_in_finescale_layout(files):
    cfg = load_config(files / "era5.yaml")
    by_config = _metrics(
        run_evaluate(files / "forecast.zarr", None, files / "by-config", config=cfg)
    )
    by_hand = _metrics(
        run_evaluate(
            files / "forecast.zarr",
            files / "truth.zarr",
            files / "by-hand",
            lr_path=files / "era5_lr.nc",
        )
    )
    assert (
        by_config["meta"]["variables"] == ["t2m", "tp"]
        and by_config["meta"]["times"]["scored"] == TIMES.size
    )
    for name in ("t2m", "tp"):
        for key, value in by_hand["forecast"][name].items():
            # float32 round-off of the converted values (1e-5 K at 290 K) is all that differs
            assert by_config["forecast"][name][key] == pytest.approx(value, rel=1e-5, abs=1e-4), (
                name,
                key,
            )
    # the crps is not trivially equal: the forecast is a real ensemble with errors
    assert by_config["forecast"]["t2m"]["crps_fair"] > 0.3
    notes = "\n".join(by_config["meta"]["notes"])
    assert "latitude stored north->south, read south->north" in notes
    assert "t2m is file variable '2t', converted from degC to K" in notes
    assert "tp is converted from m to mm h-1, accumulation period 1 h" in notes or (
        "tp is" in notes and "accumulation period" in notes
    ), notes
    assert by_config["meta"]["sources"]["truth"].endswith("era5_hr.nc via config")
    assert by_config["meta"]["accumulation_period"].get("tp")


def test_split_takes_the_configs_test_block(files):
    cfg = load_config(files / "era5.yaml")
    metrics = _metrics(
        run_evaluate(files / "forecast.zarr", None, files / "split", config=cfg, split="test")
    )
    test = split_times(TIMES, cfg.data.splits)["test"]
    assert metrics["meta"]["times"]["scored"] == test.size == TIMES.size // 4
    assert metrics["meta"]["times"]["first"] == str(np.datetime_as_string(test[0], unit="m"))
    assert any(n.startswith("test split: 12 of the 48 times") for n in metrics["meta"]["notes"])


def test_cli_prints_every_note_before_the_table(files):
    out = files / "cli"
    args = [
        "evaluate",
        "--config",
        str(files / "era5.yaml"),
        "--split",
        "test",
        "--forecast",
        str(files / "forecast.zarr"),
        "--out",
        str(out),
    ]
    result = runner.invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    notes = _metrics(out)["meta"]["notes"]
    printed = [
        line.removeprefix("note: ")
        for line in result.output.splitlines()
        if line.startswith("note: ")
    ]
    assert printed == notes and len(notes) >= 4
    assert result.output.index("note: ") < result.output.index("CRPS")


def test_a_truth_without_a_forecast_variable_fails_naming_it(files):
    args = [
        "evaluate",
        "--config",
        str(files / "tp-only.yaml"),
        "--forecast",
        str(files / "forecast.zarr"),
        "--out",
        str(files / "never"),
    ]
    result = runner.invoke(app, args, terminal_width=400)
    assert result.exit_code == 2
    assert f"truth ({files / 'era5_hr.nc'} via config) has no 't2m'; it has tp" in " ".join(
        result.output.split()
    )
    assert not (files / "never").exists()
    # with --variable the user opts out explicitly: tp alone is scored, t2m listed as not asked for
    ok = runner.invoke(app, [*args[:-1], str(files / "tp-only"), "--variable", "tp"])
    assert ok.exit_code == 0, ok.output
    metrics = _metrics(files / "tp-only")
    assert list(metrics["forecast"]) == ["tp"]
    assert metrics["meta"]["skipped_variables"] == {"t2m": "not asked for (--variable)"}


def test_times_window_with_a_truth_store(files):
    out = files / "window"
    args = [
        "evaluate",
        "--truth",
        str(files / "truth.zarr"),
        "--forecast",
        str(files / "forecast.zarr"),
        "--times",
        "2020-07-01T06..2020-07-01T11",
        "--unweighted",
        "--out",
        str(out),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    meta = _metrics(out)["meta"]
    assert meta["times"]["scored"] == 6 and meta["times"]["first"] == "2020-07-01T06:00"
    assert meta["weighting"] == "none"
    split = runner.invoke(app, [*args[:-2], "--split", "test", "--out", str(out)])
    assert split.exit_code == 2 and "needs --config" in split.output


def test_a_glob_of_files_is_known_to_be_north_to_south(files):
    hr = xr.load_dataset(files / "era5_hr.nc")
    for day, part in hr.groupby("time.day"):
        part.to_netcdf(files / f"era5_hr_day{day}.nc")
    cfg = load_config(files / "era5.yaml", ["data.hr.path=era5_hr_day*.nc"])
    metrics = _metrics(run_evaluate(files / "forecast.zarr", None, files / "glob", config=cfg))
    assert metrics["meta"]["times"]["scored"] == TIMES.size
    assert any(
        "latitude stored north->south, read south->north" in n for n in metrics["meta"]["notes"]
    )

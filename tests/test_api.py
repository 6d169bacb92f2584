"""The Python API: the page's example runs; Model.downscale gives the CLI's ensemble bit for bit."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

import finescale
from finescale.cli import app

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")
PAGE = Path(__file__).parents[1] / "docs" / "python-api.md"
SPAN = "2020-01-01T06..2020-01-01T11"


def _cli(checkpoint: Path, folder: Path, out: Path, *extra: str) -> xr.Dataset:
    args = [
        "downscale",
        "--checkpoint",
        str(checkpoint),
        "--lr",
        str(folder / "lr.nc"),
        "--out",
        str(out),
        *extra,
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return xr.open_zarr(out).load()


def _identical(api: xr.Dataset, cli: xr.Dataset) -> None:
    """Values, coordinates, dims and attributes equal bit for bit, but for the LR's source."""
    assert api.attrs.pop("lr_source") == "in-memory dataset"
    assert cli.attrs.pop("lr_source").endswith("lr.nc")
    xr.testing.assert_identical(api, cli)
    for name in cli.data_vars:
        assert api[name].dtype == cli[name].dtype
        assert np.array_equal(api[name].values, cli[name].values)  # not merely close


def test_the_pages_example_runs(tiny_models, tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.DOTALL)
    example = blocks[0]
    folder = tiny_models["folder"]
    for name in ("lr.nc", "static.nc", "hr.nc"):
        shutil.copy(folder / name, tmp_path / name)
    checkpoint = tmp_path / "runs" / "diffusion" / "checkpoints" / "last.ckpt"
    checkpoint.parent.mkdir(parents=True)
    shutil.copy(tiny_models["diffusion"], checkpoint)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(example, str(PAGE), "exec"), scope)  # noqa: S102 - the documentation's own code
    assert scope["ensemble"].t2m.shape == (8, 6, 32, 40)
    crps = scope["metrics"]["forecast"]["t2m"]["crps_fair"]
    assert math.isfinite(crps) and 0 < crps < 10  # K, on a field a few K from the truth


def test_the_api_ensemble_is_the_clis_bit_for_bit(tiny_models, tmp_path):
    folder = tiny_models["folder"]
    # members in two batches (two seeds) over six times
    cli = _cli(
        tiny_models["diffusion"],
        folder,
        tmp_path / "ens.zarr",
        "--static",
        str(folder / "static.nc"),
        "--members",
        "3",
        "--times",
        SPAN,
        "--set",
        "sample.batch_size=2",
    )
    model = finescale.load(tiny_models["diffusion"])
    api = model.downscale(
        xr.open_dataset(folder / "lr.nc"),
        xr.open_dataset(folder / "static.nc"),
        members=3,
        times=SPAN,
        batch_size=2,
    )
    assert float(api.t2m.std("member").min()) > 0  # members differ: the seeds matter
    _identical(api, cli)


def test_a_model_without_static_fields_needs_none(tiny_models, tmp_path):
    folder = tiny_models["folder"]
    cli = _cli(tiny_models["regression"], folder, tmp_path / "reg.zarr")
    model = finescale.load(tiny_models["regression"])
    assert model.static_variables == () and model.variables == ("t2m",)
    assert "t2m" in repr(model) and "HR grid from the checkpoint" in repr(model)
    # members=2: the config's, which the CLI takes by default (a regression model draws one)
    api = model.downscale(xr.open_dataset(folder / "lr.nc"), members=2)
    _identical(api, cli)


def test_inputs_are_read_through_the_models_config(tiny_models):
    """A dataset is standardised as its file would be: flipped latitudes and times given as a slice
    or an array give the same ensemble as the file's layout and the text span."""
    folder = tiny_models["folder"]
    model = finescale.load(tiny_models["diffusion"])
    lr, static = xr.open_dataset(folder / "lr.nc"), xr.open_dataset(folder / "static.nc")
    reference = model.downscale(lr, static, members=2, times=SPAN)
    start, end = (np.datetime64(t) for t in SPAN.split(".."))
    flipped = model.downscale(
        lr.isel(lat=slice(None, None, -1)), static, members=2, times=slice(start, end)
    )
    xr.testing.assert_identical(flipped, reference)
    some = model.downscale(lr, static, members=2, times=reference.time.values[[1, 4]])
    xr.testing.assert_identical(some, reference.isel(time=[1, 4]))
    with pytest.raises(ValueError, match="static fields 'orog'"):
        model.downscale(lr, members=2, times=SPAN)


def test_import_finescale_stays_light():
    code = (
        "import sys, finescale; print('torch' in sys.modules); finescale.load; finescale.evaluate"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.stdout.strip() == "False"

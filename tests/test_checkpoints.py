"""Checkpoints read without Lightning, the HR grid they store, static fields optional."""

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
from typer.testing import CliRunner

from finescale.checkpoints import DIGEST_KEY, GRID_KEY, load_checkpoint, weights_digest
from finescale.cli import app
from finescale.config import load_config
from finescale.data.sources import open_source

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")


def _downscale(checkpoint: Path, folder: Path, out: Path, *extra: str):
    args = [
        "downscale",
        "--checkpoint",
        str(checkpoint),
        "--lr",
        str(folder / "lr.nc"),
        "--out",
        str(out),
        "--members",
        "2",
        *extra,
    ]
    return runner.invoke(app, args)


def _text(result) -> str:
    """The command's output on one line (the terminal wraps long errors)."""
    return " ".join(result.output.split())


def _rewrite(checkpoint: Path, to: Path, change) -> Path:
    """A copy of ``checkpoint`` changed by ``change(dict)``, its digest written again (as a writer
    of that content would have)."""
    raw = torch.load(checkpoint, weights_only=True)
    change(raw)
    raw.pop(DIGEST_KEY, None)
    torch.save({**raw, DIGEST_KEY: weights_digest(raw)}, to)
    return to


def test_checkpoint_stores_the_hr_grid_under_its_digest(tiny_models, tmp_path):
    folder = tiny_models["folder"]
    hr = open_source(load_config(folder / "nostatic.yaml").data.hr)
    raw = torch.load(tiny_models["regression"], weights_only=True)
    lat, lon = raw[GRID_KEY]["lat"], raw[GRID_KEY]["lon"]
    assert lat.dtype == lon.dtype == torch.float64 and lat.shape == (32, 40)
    np.testing.assert_array_equal(lat.numpy(), hr.lat.values)
    np.testing.assert_array_equal(lon.numpy(), hr.lon.values)
    loaded = load_checkpoint(tiny_models["regression"])
    np.testing.assert_array_equal(loaded.hr_grid[0], hr.lat.values)
    # one coordinate changed after writing: the digest reveals it
    raw[GRID_KEY]["lat"][3, 4] += 0.25
    torch.save(raw, tmp_path / "moved.ckpt")
    with pytest.raises(ValueError, match="moved.ckpt is corrupt"):
        load_checkpoint(tmp_path / "moved.ckpt")


def test_model_without_static_fields_downscales_without_static(tiny_models, tmp_path):
    folder = tiny_models["folder"]
    out = tmp_path / "ens.zarr"
    result = _downscale(tiny_models["regression"], folder, out)
    assert result.exit_code == 0, result.output
    ens = xr.open_zarr(out).load()
    hr = open_source(load_config(folder / "nostatic.yaml").data.hr)
    np.testing.assert_array_equal(ens.lat.values, hr.lat.values)  # the training HR source's grid
    np.testing.assert_array_equal(ens.lon.values, hr.lon.values)
    assert ens.t2m.shape == (1, 24, 32, 40) and np.isfinite(ens.t2m).all()
    # the regression mean is near the truth, on the right points (a shifted grid would not be)
    assert float(np.abs(ens.t2m[0] - hr.t2m).mean()) < 5.0


def test_static_fields_are_asked_for_by_name_or_refused(tiny_models, tmp_path):
    folder = tiny_models["folder"]
    result = _downscale(tiny_models["diffusion"], folder, tmp_path / "a.zarr")
    assert result.exit_code == 2
    assert "trained with the static fields 'orog'" in _text(result) and "--static" in _text(result)
    result = _downscale(
        tiny_models["regression"],
        folder,
        tmp_path / "b.zarr",
        "--static",
        str(folder / "static.nc"),
    )
    assert result.exit_code == 2 and "trained without static fields" in _text(result)
    assert not (tmp_path / "a.zarr").exists() and not (tmp_path / "b.zarr").exists()


def test_checkpoints_without_a_stored_grid_need_static_fields(tiny_models, tmp_path):
    folder = tiny_models["folder"]
    old = _rewrite(tiny_models["diffusion"], tmp_path / "old.ckpt", lambda raw: raw.pop(GRID_KEY))
    assert load_checkpoint(old).hr_grid is None
    result = _downscale(old, folder, tmp_path / "ens.zarr", "--static", str(folder / "static.nc"))
    assert result.exit_code == 0, result.output  # as before the grid was stored
    old = _rewrite(
        tiny_models["regression"], tmp_path / "old-reg.ckpt", lambda raw: raw.pop(GRID_KEY)
    )
    result = _downscale(old, folder, tmp_path / "reg.zarr")
    assert result.exit_code == 2 and "written before checkpoints stored the HR grid" in _text(
        result
    )


def test_a_static_file_on_another_domain_is_still_refused(tiny_models, tmp_path):
    folder = tiny_models["folder"]
    static = xr.open_dataset(folder / "static.nc").load()
    static = static.assign_coords(lat=static.lat + 3.0)
    static.to_netcdf(tmp_path / "static.nc")
    result = _downscale(
        tiny_models["diffusion"],
        folder,
        tmp_path / "ens.zarr",
        "--static",
        str(tmp_path / "static.nc"),
    )
    assert result.exit_code == 2 and "another domain than the model was trained on" in _text(result)


SCRIPT = """
import sys
import xarray as xr
import finescale
import finescale.atmorep.attention  # AtmoRep's prediction and attention maps load their models too
import finescale.atmorep.predict
from finescale.generation import downscale

checkpoint, lr, out = sys.argv[1:4]
downscale(checkpoint, lr, None, out, sample={"members": 2})
ensemble = finescale.load(checkpoint).downscale(xr.open_dataset(lr), members=2)
assert ensemble.t2m.shape == xr.open_zarr(out).t2m.shape
loaded = sorted(name for name in sys.modules
                if "lightning" in name or name.endswith(".train") or name.startswith("finescale.training"))
print("loaded:", loaded)
"""  # noqa: E501 (Python code the test runs: its lines are kept as they are)


def test_generation_and_the_python_api_import_no_lightning(tiny_models, tmp_path):
    folder = tiny_models["folder"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            SCRIPT,
            str(tiny_models["regression"]),
            str(folder / "lr.nc"),
            str(tmp_path / "e.zarr"),
        ],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    # no lightning, pytorch_lightning, finescale.training or finescale.atmorep.train
    assert "loaded: []" in result.stdout


def test_a_diffusion_model_over_a_regression_loads_without_the_regression_file(
    tiny_models, tmp_path
):
    """The regression network's description travels in the diffusion checkpoint (its weights are
    the diffusion model's own), so the checkpoint works where the regression file is not."""
    checkpoint, regression = diffusion_over_regression(tiny_models, tmp_path)
    before = load_checkpoint(checkpoint)
    assert torch.load(checkpoint, weights_only=True)["finescale"]["regression"]["model"][
        "kind"
    ] == ("regression")
    regression.unlink()
    after = load_checkpoint(checkpoint)
    weights = after.model.state_dict()
    assert any(k.startswith("regression.") for k in weights)
    for key, value in before.model.state_dict().items():
        assert torch.equal(weights[key], value), key

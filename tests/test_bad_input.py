"""Bad input through the command line: a clear message, exit code 2, nothing half-written.

Every case starts from a copy of the good small pair (conftest.small_pair), spoils one thing and
runs the command a user would run on it. The message must name the file, the variable (where
there is one) and what is wrong; no traceback; and the tree the command ran in must be left as it
was, so no output, temporary or statistics file survives a refusal. The security checks at the
end load checkpoints that would run code, scan the source for unsafe calls, and check that the
commands write only where they are told. docs/reliability.md lists the cases with their messages.
"""

from __future__ import annotations

import ast
import builtins
import re
import shutil
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cftime
import numpy as np
import pytest
import torch
import xarray as xr
import yaml
from test_pairs import hours, make_pair, regular_axes, to_file_dataset, weather, write
from typer.testing import CliRunner

import finescale
from finescale.checkpoints import DIGEST_KEY, load_checkpoint
from finescale.cli import app
from finescale.cli.common import err_console
from finescale.config import load_config
from finescale.data.channels import make_layout
from finescale.data.lr_to_hr import LRToHR
from finescale.data.normalisation import compute_stats
from finescale.data.pairs import open_pair
from finescale.data.patches import PatchDataset, load_fields

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")
SRC = Path(finescale.__file__).parent


# --------------------------------------------------------------------------------------------
# a trained model, an ensemble and a truth from the good pair


@pytest.fixture(scope="module")
def good(small_pair, tmp_path_factory) -> dict[str, Path]:
    """The good pair's checkpoint (a tiny regression model), an ensemble from it and its truth."""
    root = tmp_path_factory.mktemp("good")
    data = root / "data"
    shutil.copytree(small_pair, data)
    result = run("train", "--config", data / "finescale.yaml", "--set", f"train.out={root / 'run'}")
    assert result.exit_code == 0, result.output
    checkpoint = root / "run" / "checkpoints" / "last.ckpt"
    forecast = root / "forecast.zarr"
    result = run(
        "downscale",
        "--checkpoint",
        checkpoint,
        "--lr",
        data / "lr.nc",
        "--static",
        data / "static.nc",
        "--out",
        forecast,
    )
    assert result.exit_code == 0, result.output
    truth = root / "truth.zarr"
    open_pair(load_config(data / "finescale.yaml").data).hr.load().to_zarr(truth, zarr_format=2)
    return {"checkpoint": checkpoint, "forecast": forecast, "truth": truth}


def run(*args: object):
    """``finescale ARGS`` in this process; errors are printed on one (very long) line."""
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(autouse=True)
def _wide_errors(monkeypatch):
    # rich wraps at 80 columns in the runner and may cut a long path in two: keep messages whole
    monkeypatch.setattr(err_console, "width", 1000)


def tree(root: Path) -> set[str]:
    """Every path under ``root``, relative: what a command left behind."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# --------------------------------------------------------------------------------------------
# the cases


@dataclass
class Bad:
    """A command on spoilt input, the words its message must hold, the outputs it must not leave."""

    args: list[object]
    expect: list[str]
    outputs: list[Path] = field(default_factory=list)


def _edit(path: Path, change: Callable[[xr.Dataset], xr.Dataset]) -> Path:
    """Rewrite a NetCDF file of the pair as ``change`` makes it."""
    ds = xr.load_dataset(path)
    path.unlink()
    change(ds).to_netcdf(path)
    return path


def _set(ds: xr.Dataset, name: str, index: tuple, value: float) -> xr.Dataset:
    values = ds[name].values.copy()
    values[index] = value
    return ds.assign({name: (ds[name].dims, values, ds[name].attrs)})


def _check(d: Path, *extra: str) -> list[object]:
    return [
        "pairs",
        "check",
        "--config",
        d / "finescale.yaml",
        *[a for s in extra for a in ("--set", s)],
    ]


def _train(d: Path, *extra: str) -> tuple[list[object], Path]:
    out = d.parent / "run"
    args = ["train", "--config", d / "finescale.yaml", "--set", f"train.out={out}"]
    return args + [a for s in extra for a in ("--set", s)], out


def _downscale(d: Path, checkpoint: Path) -> tuple[list[object], Path]:
    out = d.parent / "ens.zarr"
    lr, static = d / "lr.nc", d / "static.nc"
    return [
        "downscale",
        "--checkpoint",
        checkpoint,
        "--lr",
        lr,
        "--static",
        static,
        "--out",
        out,
    ], out


def missing_file(d: Path, good: dict) -> Bad:
    lr = d / "lr.nc"
    lr.unlink()
    return Bad(_check(d), [f"{lr}: no such file"])


def missing_checkpoint(d: Path, good: dict) -> Bad:
    args, out = _downscale(d, d / "none.ckpt")
    return Bad(args, [f"{d / 'none.ckpt'}: checkpoint not found"], [out])


def missing_forecast(d: Path, good: dict) -> Bad:
    out = d.parent / "evaluation"
    args = ["evaluate", "--forecast", d / "none.zarr", "--truth", good["truth"], "--out", out]
    return Bad(args, [f"forecast {d / 'none.zarr'}: no such file"], [out])


def truncated_netcdf(d: Path, good: dict) -> Bad:
    lr = d / "lr.nc"
    lr.write_bytes(lr.read_bytes()[: lr.stat().st_size // 2])
    return Bad(_check(d), [f"{lr}: cannot be read as netcdf"])


def corrupt_zarr_chunk(d: Path, good: dict) -> Bad:
    store = d / "lr.zarr"
    xr.load_dataset(d / "lr.nc").to_zarr(store, zarr_format=2)
    chunk = store / "t2m" / "0.0.0"
    # cut short, and its blosc header's format version made one from the future: blosc trusts
    # the header's length and may read past the end of a merely truncated chunk (numcodecs
    # issue 228), decoding garbage now and then, while a bad header is refused before any read
    damaged = bytearray(chunk.read_bytes()[: chunk.stat().st_size // 2])
    damaged[0] = 0xFF
    chunk.write_bytes(bytes(damaged))
    args, out = _train(d, f"data.lr.path={store}")
    return Bad(args, [f"{store}: variable 't2m' cannot be read", "truncated or corrupt"], [out])


def unreadable_truth(d: Path, good: dict) -> Bad:
    truth = d / "truth.nc"
    truth.write_bytes(np.random.default_rng(0).bytes(4096))
    out = d.parent / "evaluation"
    args = ["evaluate", "--forecast", good["forecast"], "--truth", truth, "--out", out]
    return Bad(args, [f"truth {truth}: cannot be opened"], [out])


def truth_lacks_a_forecast_variable(d: Path, good: dict) -> Bad:
    # the config's HR maps only 'tp' (as "precip"): its truth lacks t2m, the forecast's variable
    cfg = yaml.safe_load((d / "finescale.yaml").read_text())
    cfg["data"]["hr"]["variables"] = {"precip": {"name": "tp"}}
    config = d / "tp-only.yaml"
    config.write_text(yaml.safe_dump(cfg))
    out = d.parent / "evaluation"
    args = ["evaluate", "--forecast", good["forecast"], "--config", config, "--out", out]
    expect = [f"truth ({d / 'hr.nc'} via config) has no 't2m'; it has precip (file 'tp')"]
    return Bad(args, expect, [out])


def truth_and_config(d: Path, good: dict) -> Bad:
    out = d.parent / "evaluation"
    args = [
        "evaluate",
        "--forecast",
        good["forecast"],
        "--truth",
        good["truth"],
        "--config",
        d / "finescale.yaml",
        "--out",
        out,
    ]
    return Bad(args, ["give exactly one of --truth", "and --config"], [out])


def forecast_on_another_grid(d: Path, good: dict) -> Bad:
    truth = d / "shifted.zarr"
    ds = xr.open_zarr(good["truth"])
    ds.assign_coords(lat=ds["lat"] + 1.0).to_zarr(truth, zarr_format=2)
    out = d.parent / "evaluation"
    args = ["evaluate", "--forecast", good["forecast"], "--truth", truth, "--out", out]
    expect = [
        f"forecast ({good['forecast']}): lat differs from the truth's ({truth})",
        "not the same grid points in any order",
    ]
    return Bad(args, expect, [out])


def missing_variable(d: Path, good: dict) -> Bad:
    lr = _edit(d / "lr.nc", lambda ds: ds.rename(t2m="temp"))
    return Bad(_check(d), [f"{lr}: variable 't2m'", "not found", "the file has: temp, tp"])


def variable_without_grid(d: Path, good: dict) -> Bad:
    lr = _edit(d / "lr.nc", lambda ds: ds.assign(t2m=ds.t2m.mean(("lat", "lon"))))
    return Bad(_check(d), [f"{lr}: variable 't2m' has dims ('time',), not the grid dims"])


def nan_in_hr(d: Path, good: dict) -> Bad:
    hr = _edit(d / "hr.nc", lambda ds: _set(ds, "t2m", (5, 3, 4), np.nan))
    args, out = _train(d)
    return Bad(
        args,
        [f"{hr}: variable 't2m' holds NaN", "at time 2020-01-01T05:00", "missing: mask"],
        [out],
    )


def inf_in_lr(d: Path, good: dict) -> Bad:
    lr = _edit(d / "lr.nc", lambda ds: _set(ds, "t2m", (20, 1, 1), np.inf))
    args, out = _downscale(d, good["checkpoint"])
    return Bad(
        args, [f"{lr}: variable 't2m' holds inf at time 2020-01-01T20:00", "missing: mask"], [out]
    )


def constant_field(d: Path, good: dict) -> Bad:
    hr = _edit(d / "hr.nc", lambda ds: ds.assign(t2m=ds.t2m * 0 + 280.0))
    args, out = _train(d)
    return Bad(args, [f"{hr}: variable 't2m' (hr) is constant", "std 0"], [out])


def unknown_units(d: Path, good: dict) -> Bad:
    lr = _edit(d / "lr.nc", lambda ds: ds.assign(t2m=ds.t2m.assign_attrs(units="furlongs")))
    return Bad(_check(d), [f"{lr}: variable 't2m'", "'furlongs'"])


def _refused_pair(d: Path, change: Callable[[xr.Dataset], xr.Dataset], *expect: str) -> Bad:
    lr = _edit(d / "lr.nc", change)
    return Bad(_check(d), [f"LR {lr} vs HR {d / 'hr.nc'}", *expect])


def flipped_latitude(d: Path, good: dict) -> Bad:
    return _refused_pair(
        d,
        lambda ds: ds.assign(t2m=ds.t2m.copy(data=ds.t2m.values[:, ::-1])),
        "LR latitude appears flipped ('t2m')",
    )


def swapped_axes(d: Path, good: dict) -> Bad:
    lr, hr = make_pair(ny=8, nx=8)  # a square grid: swapped axes keep their shape
    (d / "lr.nc").unlink()
    (d / "hr.nc").unlink()
    write(lr.assign(t2m=lr.t2m.copy(data=lr.t2m.values.transpose(0, 2, 1))), d / "lr.nc")
    write(hr, d / "hr.nc")
    return Bad(
        _check(d, "data.static=null"), [f"LR {d / 'lr.nc'} vs HR", "axes appear swapped ('t2m')"]
    )


def _times(d: Path, change: Callable[[np.ndarray], np.ndarray]) -> Path:
    """Give ``lr.nc`` the times ``change`` makes of its own."""
    return _edit(d / "lr.nc", lambda ds: ds.assign_coords(time=change(ds.time.values)))


def non_monotonic_times(d: Path, good: dict) -> Bad:
    lr = _times(d, lambda t: t[np.r_[0:7, 8, 7, 9 : t.size]])
    return Bad(
        _check(d),
        [f"{lr}: times must be strictly increasing", "(index 8) comes after 2020-01-01T08:00"],
    )


def duplicated_times(d: Path, good: dict) -> Bad:
    lr = _times(d, lambda t: t[np.r_[0:5, 4, 6 : t.size]])
    return Bad(
        _check(d),
        [f"{lr}: times must be strictly increasing", "2020-01-01T04:00 (index 5) repeats"],
    )


def no_common_time(d: Path, good: dict) -> Bad:
    lr = _times(d, lambda t: t + np.timedelta64(100, "h"))
    return Bad(
        _check(d),
        [
            "LR and HR have no time in common",
            f"LR ({lr}) covers 2020-01-05T04:00",
            f"HR ({d / 'hr.nc'}) covers 2020-01-01T00:00",
        ],
    )


def different_domains(d: Path, good: dict) -> Bad:
    return _refused_pair(
        d,
        lambda ds: ds.assign_coords(lat=ds.lat + 3.0),
        "LR and HR cover different domains",
        "LR lat 43.000..51.000",
    )


def lr_on_another_domain_at_downscale(d: Path, good: dict) -> Bad:
    lr = _edit(d / "lr.nc", lambda ds: ds.assign_coords(lon=ds.lon + 20.0))
    args, out = _downscale(d, good["checkpoint"])
    return Bad(
        args, [f"LR {lr} vs HR {d / 'static.nc'}", "the HR grid is not inside the LR domain"], [out]
    )


def lr_finer_than_hr(d: Path, good: dict) -> Bad:
    (d / "lr.nc").rename(d / "coarse.nc")
    (d / "hr.nc").rename(d / "lr.nc")
    (d / "coarse.nc").rename(d / "hr.nc")
    return Bad(_check(d), [f"LR {d / 'lr.nc'} vs HR {d / 'hr.nc'}", "LR grid is finer than HR"])


def non_integer_ratio(d: Path, good: dict) -> Bad:
    lat, lon = regular_axes(20, 25, 0.4)
    fields = weather(*np.meshgrid(lat, lon, indexing="ij"), 24)
    (d / "hr.nc").unlink()
    write(to_file_dataset(fields, lat, lon, hours(24)), d / "hr.nc")
    return Bad(
        _check(d),
        [f"LR {d / 'lr.nc'} vs HR {d / 'hr.nc'}", "ratio is 2.5 in y and 2.5 in x, not one whole"],
    )


def mixed_calendars(d: Path, good: dict) -> Bad:
    noleap = [cftime.DatetimeNoLeap(2020, 1, 1, h) for h in range(24)]
    lr = _edit(d / "lr.nc", lambda ds: ds.assign_coords(time=noleap))
    return Bad(_check(d), [f"LR ({lr}) uses calendar 'noleap'", f"HR ({d / 'hr.nc'}) 'standard'"])


def truncated_checkpoint(d: Path, good: dict) -> Bad:
    bad = d / "truncated.ckpt"
    bad.write_bytes(good["checkpoint"].read_bytes()[: good["checkpoint"].stat().st_size // 2])
    args, out = _downscale(d, bad)
    return Bad(args, [f"{bad}: not a readable finescale checkpoint"], [out])


def random_bytes_checkpoint(d: Path, good: dict) -> Bad:
    bad = d / "random.ckpt"
    bad.write_bytes(np.random.default_rng(1).bytes(10_000))
    out = d.parent / "interp.zarr"
    args = ["predict", "--checkpoint", bad, "--task", "interpolation", "--out", out]
    return Bad(args, [f"{bad}: not a readable finescale checkpoint"], [out])


def tensor_data(checkpoint: Path) -> list[tuple[int, int]]:
    """(start, stop) byte offsets of the tensors' data in a checkpoint (a zip file: a stored member
    ``<archive>/data/<n>`` per tensor storage, its data after a local header of variable length)."""
    raw = checkpoint.read_bytes()
    spans = []
    for member in zipfile.ZipFile(checkpoint).infolist():
        if re.fullmatch(r"[^/]+/data/\d+", member.filename) and member.file_size:
            assert member.compress_type == zipfile.ZIP_STORED
            names, extra = struct.unpack_from("<HH", raw, member.header_offset + 26)
            start = member.header_offset + 30 + names + extra
            spans.append((start, start + member.file_size))
    return spans


def corrupted_tensor_bytes(d: Path, good: dict) -> Bad:
    bad = d / "corrupted.ckpt"
    raw = bytearray(good["checkpoint"].read_bytes())
    start, stop = max(tensor_data(good["checkpoint"]), key=lambda span: span[1] - span[0])
    for i in range(start + (stop - start) // 2, start + (stop - start) // 2 + 64):
        raw[i] ^= 0xFF  # 64 bytes in the middle of the largest tensor: the file still unpickles
    bad.write_bytes(bytes(raw))
    args, out = _downscale(d, bad)
    return Bad(
        args, [f"{bad} is corrupt: its weights do not match the digest written with them"], [out]
    )


def checkpoint_for_other_variables(d: Path, good: dict) -> Bad:
    lr = _edit(d / "lr.nc", lambda ds: ds.drop_vars("t2m"))
    args, out = _downscale(d, good["checkpoint"])
    return Bad(args, [f"{lr}: variable 't2m' (for 't2m') not found; the file has: tp"], [out])


def checkpoint_for_another_grid(d: Path, good: dict) -> Bad:
    static = _edit(d / "static.nc", lambda ds: ds.coarsen(lat=2, lon=2).mean())
    args, out = _downscale(d, good["checkpoint"])
    return Bad(args, [f"{static}: HR grid (16, 20) differs from the checkpoint's (32, 40)"], [out])


def checkpoint_for_another_domain(d: Path, good: dict) -> Bad:
    static = _edit(d / "static.nc", lambda ds: ds.assign_coords(lat=ds.lat - 10.0))
    args, out = _downscale(d, good["checkpoint"])
    return Bad(
        args,
        [
            f"{static}: HR grid spans lat 30.125..37.875",
            "another domain than the model was trained on",
        ],
        [out],
    )


def unknown_key(d: Path, good: dict) -> Bad:
    config = d / "finescale.yaml"
    tree = yaml.safe_load(config.read_text())
    tree["train"]["max_step"] = 3
    config.write_text(yaml.safe_dump(tree))
    args, out = _train(d)
    return Bad(
        args, [f"{config}: unknown key 'train.max_step'", "allowed keys:", "max_steps"], [out]
    )


def wrong_type(d: Path, good: dict) -> Bad:
    args, out = _train(d, "train.max_steps=many")
    return Bad(
        args,
        [f"{d / 'finescale.yaml'}: 'train.max_steps': Input should be a valid integer", "'many'"],
        [out],
    )


CASES = {
    "missing file (pairs check)": missing_file,
    "missing file (downscale: checkpoint)": missing_checkpoint,
    "missing file (evaluate: forecast)": missing_forecast,
    "truncated NetCDF": truncated_netcdf,
    "corrupt Zarr chunk": corrupt_zarr_chunk,
    "unreadable file (evaluate: truth)": unreadable_truth,
    "evaluate: truth lacks a forecast variable (config)": truth_lacks_a_forecast_variable,
    "evaluate: both --truth and --config": truth_and_config,
    "evaluate: forecast on another grid": forecast_on_another_grid,
    "missing variable": missing_variable,
    "wrong variable (no grid dims)": variable_without_grid,
    "NaN in HR": nan_in_hr,
    "Inf in LR": inf_in_lr,
    "constant field": constant_field,
    "unknown units": unknown_units,
    "latitude flipped": flipped_latitude,
    "dimensions swapped": swapped_axes,
    "non-monotonic times": non_monotonic_times,
    "duplicated times": duplicated_times,
    "no overlapping times": no_common_time,
    "different domains (pairs check)": different_domains,
    "different domains (downscale)": lr_on_another_domain_at_downscale,
    "LR finer than HR": lr_finer_than_hr,
    "non-integer ratio": non_integer_ratio,
    "mixed calendars": mixed_calendars,
    "truncated checkpoint": truncated_checkpoint,
    "corrupt checkpoint (predict)": random_bytes_checkpoint,
    "corrupted tensor bytes": corrupted_tensor_bytes,
    "checkpoint for other variables": checkpoint_for_other_variables,
    "checkpoint for another grid": checkpoint_for_another_grid,
    "checkpoint for another domain": checkpoint_for_another_domain,
    "config: unknown key": unknown_key,
    "config: wrong type": wrong_type,
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_refused_clearly(name, small_pair, good, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(small_pair, data)
    bad = CASES[name](data, good)
    before = tree(tmp_path)
    result = run(*bad.args)
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    message = lines[-1]  # after any progress bar
    assert [line for line in lines if line.startswith("error: ")] == [message], result.output
    for words in bad.expect:
        assert words in message
    for out in bad.outputs:
        assert not out.exists()
    # no output, temporary or statistics file left behind, nor a downscale's partial store
    # (io.fill_ensemble): its inputs are checked before it is created
    assert tree(tmp_path) - before == set()


def test_a_checkpoint_with_any_tensor_byte_changed_is_refused(good, tmp_path):
    raw = good["checkpoint"].read_bytes()
    spans = tensor_data(good["checkpoint"])
    assert sum(stop - start for start, stop in spans) > len(raw) / 2  # the bulk of the file
    rng = np.random.default_rng(7)
    # 20 offsets drawn uniformly over the bytes of every tensor (weights, EMA, optimiser state)
    sizes = np.array([stop - start for start, stop in spans])
    for n, k in enumerate(rng.choice(len(spans), size=20, p=sizes / sizes.sum())):
        start, stop = spans[k]
        changed = bytearray(raw)
        changed[int(rng.integers(start, stop))] ^= int(rng.integers(1, 256))
        bad = tmp_path / f"flipped-{n}.ckpt"
        bad.write_bytes(bytes(changed))
        with pytest.raises(ValueError) as refusal:
            load_checkpoint(bad)
        assert str(refusal.value).startswith(f"{bad} is corrupt") or str(refusal.value).startswith(
            f"{bad}: not a readable finescale checkpoint"
        ), str(refusal.value)


def test_a_checkpoint_without_a_digest_still_loads(good, tmp_path):
    checkpoint = torch.load(good["checkpoint"], weights_only=True)
    assert isinstance(checkpoint.pop(DIGEST_KEY), str)  # written with every checkpoint
    older = tmp_path / "older.ckpt"
    torch.save(checkpoint, older)
    assert list(load_checkpoint(older).layout.target_variables) == ["t2m"]


# --------------------------------------------------------------------------------------------
# missing values where the config allows them


def test_missing_values_are_masked_where_the_source_allows_it(small_pair, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(small_pair, data)
    gap = np.s_[:, 0:6, 0:8]  # every hour misses a corner, as a land-only field would
    _edit(data / "hr.nc", lambda ds: _set(ds, "t2m", gap, np.nan))
    _edit(data / "lr.nc", lambda ds: _set(ds, "t2m", (3, 7, 9), -np.inf))
    masked = ("data.hr.missing=mask", "data.lr.missing=mask")
    result = run(*_check(data, *masked))
    assert result.exit_code == 0, result.output
    args, out = _train(data, *masked)
    result = run(*args)
    assert result.exit_code == 0, result.output
    weights = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point())


def test_masked_targets_weigh_nothing_in_the_loss(small_pair):
    cfg = load_config(small_pair / "finescale.yaml")
    pair = open_pair(cfg.data)
    hr = pair.hr.load()
    hr["t2m"][:, :6, :8] = np.nan
    layout = make_layout(cfg.model, pair.lr, hr, pair.static)
    stats = compute_stats(hr, lr=pair.lr, static=pair.static)
    fields = load_fields(layout, stats, pair.lr, pair.static, hr.lat, hr.lon, hr=hr)
    to_hr = LRToHR(pair.lr.lat, pair.lr.lon, hr.lat, hr.lon)
    sample = PatchDataset(fields, layout, to_hr, 40, 1)[0]  # the whole 32 x 40 grid
    assert (sample["area"][0, :6, :8] == 0).all() and (sample["area"][0, 6:] > 0).all()
    assert torch.isfinite(sample["target"]).all()


# --------------------------------------------------------------------------------------------
# security: checkpoints cannot run code, no unsafe calls, outputs only where asked


class _Payload:
    """Pickles as a call to open(marker, "w"): unpickling it creates the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return builtins.open, (str(self.marker), "w")


def test_a_checkpoint_that_would_run_code_is_refused(small_pair, good, tmp_path):
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.ckpt"
    checkpoint = torch.load(good["checkpoint"], weights_only=True)
    checkpoint["payload"] = _Payload(marker)
    torch.save(checkpoint, evil)
    # the payload is real: an unsafe load runs it
    torch.load(evil, weights_only=False)["payload"].close()
    assert marker.exists()
    marker.unlink()
    commands = [
        [
            "downscale",
            "--checkpoint",
            evil,
            "--lr",
            small_pair / "lr.nc",
            "--static",
            small_pair / "static.nc",
            "--out",
            tmp_path / "ens.zarr",
        ],
        [
            "predict",
            "--checkpoint",
            evil,
            "--task",
            "interpolation",
            "--out",
            tmp_path / "interp.zarr",
        ],
        ["attention", "--checkpoint", evil, "--field", "t2m", "--out", tmp_path / "a.png"],
    ]
    for args in commands:
        result = run(*args)
        assert result.exit_code == 2, result.output
        assert f"{evil}: not a readable finescale checkpoint" in result.output
        assert "Unsupported global" in result.output
        assert not marker.exists()
    assert tree(tmp_path) == {"evil.ckpt"}


#: Calls that can run code from data or a shell: (module, function) or a bare builtin.
_UNSAFE = {
    ("pickle", "load"),
    ("pickle", "loads"),
    ("marshal", "loads"),
    ("dill", "load"),
    ("yaml", "unsafe_load"),
    ("os", "system"),
    ("os", "popen"),
}


def _owner_and_name(func: ast.expr) -> tuple[str, str]:
    """('torch', 'load') for ``torch.load(...)``, ('', 'eval') for ``eval(...)``."""
    if isinstance(func, ast.Name):
        return "", func.id
    if isinstance(func, ast.Attribute):
        return (func.value.id if isinstance(func.value, ast.Name) else "?"), func.attr
    return "?", "?"


def _is_true(call: ast.Call, key: str) -> bool:
    return any(
        k.arg == key and isinstance(k.value, ast.Constant) and k.value.value is True
        for k in call.keywords
    )


def _problem(call: ast.Call) -> str | None:
    """What is unsafe about one call (None: nothing)."""
    owner, name = _owner_and_name(call.func)
    if owner == "" and name in ("eval", "exec"):
        return f"{name}()"
    if (owner, name) in _UNSAFE:
        return f"{owner}.{name}()"
    if (owner, name) == ("torch", "load") and not _is_true(call, "weights_only"):
        return "torch.load() without weights_only=True"
    if (owner, name) == ("yaml", "load"):
        loaders = [k.value for k in call.keywords if k.arg == "Loader"] + call.args[1:2]
        if not any(
            isinstance(v, ast.Attribute) and v.attr in ("SafeLoader", "CSafeLoader")
            for v in loaders
        ):
            return "yaml.load() without a safe loader"
    if _is_true(call, "shell"):
        return "shell=True"
    if name == "load" and _is_true(call, "allow_pickle"):
        return "load(allow_pickle=True)"
    return None


def unsafe_calls(source: str) -> list[str]:
    """Unsafe calls in Python ``source``, as 'line: what' (empty: none found)."""
    calls = sorted(
        (n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call)), key=lambda n: n.lineno
    )
    return [f"{call.lineno}: {problem}" for call in calls if (problem := _problem(call))]


def test_the_source_makes_no_unsafe_call():
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 20
    found = {str(f.relative_to(SRC)): unsafe_calls(f.read_text()) for f in files}
    assert {k: v for k, v in found.items() if v} == {}


def test_the_unsafe_call_scan_finds_each_kind():
    source = """
import os, pickle, subprocess, torch, yaml, numpy as np
eval("1")
exec("x = 1")
pickle.loads(b"")
torch.load("a.ckpt")
torch.load("a.ckpt", weights_only=False)
yaml.load(text)
yaml.load(text, Loader=yaml.Loader)
subprocess.run("ls", shell=True)
os.system("ls")
np.load("a.npy", allow_pickle=True)
torch.load("a.ckpt", weights_only=True)
yaml.load(text, Loader=yaml.SafeLoader)
yaml.safe_load(text)
model.eval()
"""
    assert [line.split(": ")[0] for line in unsafe_calls(source)] == [str(n) for n in range(3, 13)]


def test_commands_write_only_where_they_are_told(small_pair, good, tmp_path, monkeypatch):
    data = tmp_path / "data"
    shutil.copytree(small_pair, data)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")  # anything written relative to where it runs shows up
    evaluation = tmp_path / "outputs" / "evaluation"  # a folder that does not exist yet
    evaluate = [
        "evaluate",
        "--forecast",
        good["forecast"],
        "--truth",
        good["truth"],
        "--out",
        evaluation,
    ]
    train, run_dir = _train(data)
    downscale, ensemble = _downscale(data, good["checkpoint"])
    runs = {
        "pairs check": (_check(data), []),
        # the documented exception: the statistics are written beside the HR data they describe
        "train": (train, [run_dir, data / "finescale-stats.json"]),
        "downscale": (downscale, [ensemble]),
        "evaluate": (evaluate, [evaluation.parent, evaluation]),
    }
    for name, (args, outputs) in runs.items():
        before = tree(tmp_path)
        result = run(*args)
        assert result.exit_code == 0, (name, result.output)
        assert all(out.exists() for out in outputs), name
        allowed = [str(out.relative_to(tmp_path)) for out in outputs]
        elsewhere = {
            p
            for p in tree(tmp_path) - before
            if not any(p == a or p.startswith(f"{a}/") for a in allowed)
        }
        assert elsewhere == set(), name

"""Crash and resume with real processes killed by SIGKILL: training continues as if never stopped,
generation draws only the missing blocks, two processes share one output, and an output that
cannot be written is refused before any work."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import xarray as xr
from typer.testing import CliRunner

from finescale.cli import app
from finescale.generation import downscale, memory
from finescale.pipeline import parse_times

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")
STEPS = 40
TRAIN = [
    "model.kind=diffusion",
    f"train.max_steps={STEPS}",
    "train.val_every_steps=2",
    "train.warmup_steps=4",
]
MEMBERS = 4
SAMPLE = {"members": MEMBERS, "batch_size": 1, "steps": 2, "solver": "euler"}  # a block per member
TIMES = "2020-01-01T02..2020-01-01T21"


def _env(**extra: str) -> dict[str, str]:
    """The environment of a child process: one thread as in the tests, no torchrun variables."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    return env | {"OMP_NUM_THREADS": "1", **extra}


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "finescale.cli", *args]


def _train_args(pair: Path, out: Path) -> list[str]:
    args = ["train", "--config", str(pair / "finescale.yaml")]
    for item in [*TRAIN, f"train.out={out}"]:
        args += ["--set", item]
    return args


def _kill_when(process: subprocess.Popen, ready, timeout: float = 120.0) -> None:
    """SIGKILL ``process`` as soon as ``ready()`` is true; fail if it ends first or takes too
    long."""
    end = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, (
            f"the process ended before it could be killed: {process.stderr.read()}"
        )
        assert time.monotonic() < end, "nothing to kill the process after"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL


def _losses(run: Path) -> dict[int, list[float]]:
    """step -> train losses logged at that step, over every CSV log of the run (a resumed run adds
    one)."""
    out: dict[int, list[float]] = {}
    for log in sorted((run / "logs").glob("version_*/metrics.csv")):
        with log.open() as f:
            for row in csv.DictReader(f):
                if row.get("train_loss"):
                    out.setdefault(int(row["step"]), []).append(float(row["train_loss"]))
    return out


@pytest.fixture(scope="module")
def uninterrupted(small_pair, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted")
    result = runner.invoke(app, _train_args(small_pair, out))
    assert result.exit_code == 0, result.output
    return out


def test_training_killed_mid_run_resumes_exactly(small_pair, uninterrupted, tmp_path):
    out = tmp_path / "run"
    last = out / "checkpoints" / "last.ckpt"
    process = subprocess.Popen(
        _command(*_train_args(small_pair, out)),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    _kill_when(process, last.exists)
    done = torch.load(last, weights_only=True)["global_step"]
    assert 0 < done < STEPS  # killed mid-run, after a checkpoint
    result = runner.invoke(app, [*_train_args(small_pair, out), "--resume"])
    assert result.exit_code == 0, result.output

    expected, found = _losses(uninterrupted), _losses(out)
    assert [s for s in expected if s >= done] == [
        s for s in found if s >= done
    ]  # every step after the resume
    for step, losses in found.items():
        assert losses == [expected[step][0]] * len(losses), (
            step
        )  # bit for bit, before and after the kill
    a = torch.load(uninterrupted / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(last, weights_only=True)
    assert a["global_step"] == b["global_step"] == STEPS
    for name, value in a["state_dict"].items():  # the weights and their moving average
        assert torch.equal(value, b["state_dict"][name]), name
    for x, y in zip(
        a["optimizer_states"][0]["state"].values(), b["optimizer_states"][0]["state"].values()
    ):
        assert all(torch.equal(x[k], y[k]) for k in x)


@pytest.fixture(scope="module")
def checkpoint(uninterrupted) -> Path:
    return uninterrupted / "checkpoints" / "last.ckpt"


def _downscale_args(pair: Path, checkpoint: Path, out: Path) -> list[str]:
    return [
        "downscale",
        "--checkpoint",
        str(checkpoint),
        "--lr",
        str(pair / "lr.nc"),
        "--static",
        str(pair / "static.nc"),
        "--out",
        str(out),
        "--times",
        TIMES,
        "--members",
        str(MEMBERS),
        "--steps",
        "2",
        "--solver",
        "euler",
        "--set",
        "sample.batch_size=1",
    ]


def _downscale(pair: Path, checkpoint: Path, out: Path, **kwargs) -> Path:
    """The Python call the command line makes with _downscale_args."""
    return downscale(
        checkpoint,
        pair / "lr.nc",
        pair / "static.nc",
        out,
        sample=SAMPLE,
        times=parse_times(TIMES, checkpoint),
        **kwargs,
    )


@pytest.fixture(scope="module")
def reference(small_pair, checkpoint, tmp_path_factory) -> xr.Dataset:
    out = tmp_path_factory.mktemp("reference") / "ens.zarr"
    assert _downscale(small_pair, checkpoint, out) == out
    return xr.open_zarr(out).load()


def test_downscaling_killed_part_way_generates_only_the_missing_blocks(
    small_pair, checkpoint, reference, tmp_path
):
    out = tmp_path / "ens.zarr"
    marks = tmp_path / ".ens.zarr.partial" / "done"
    process = subprocess.Popen(
        _command(*_downscale_args(small_pair, checkpoint, out)),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    _kill_when(process, lambda: marks.is_dir() and any(marks.iterdir()))
    written = len(list(marks.iterdir()))
    assert 1 <= written < MEMBERS and not out.exists()

    draws, notes, totals = [], [], []
    assert (
        _downscale(
            small_pair,
            checkpoint,
            out,
            progress=draws.append,
            note=notes.append,
            total=totals.append,
        )
        == out
    )
    times = reference.sizes["time"]
    assert len(draws) == (MEMBERS - written) * times  # only the missing blocks (one member each)
    assert totals == [len(draws)]  # the bar's total, told before drawing, counts those alone
    assert any(f"{written} of {MEMBERS} blocks already written" in text for text in notes)
    xr.testing.assert_identical(
        xr.open_zarr(out).load(), reference
    )  # bit for bit, attributes included
    assert sorted(os.listdir(tmp_path)) == ["ens.zarr"]


def test_two_processes_write_one_ensemble(small_pair, checkpoint, reference, tmp_path):
    out = tmp_path / "ens.zarr"
    args = _downscale_args(small_pair, checkpoint, out)
    # rank 1 in a child process, told by the variables torchrun sets; rank 0 here, by the options
    other = subprocess.Popen(
        _command(*args),
        env=_env(RANK="1", WORLD_SIZE="2"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    result = runner.invoke(app, [*args, "--rank", "0", "--world-size", "2"])
    output = other.communicate(timeout=300)[0]
    assert result.exit_code == 0 and other.returncode == 0, result.output + output
    # the last one to finish renames the store (here the child: it starts in seconds, rank 0 at
    # once)
    assert [_unwrapped(f"wrote {out}") in _unwrapped(o) for o in (result.output, output)] == [
        False,
        True,
    ]
    assert "rank 0 of 2: its blocks are written" in " ".join(result.output.split())
    xr.testing.assert_identical(xr.open_zarr(out).load(), reference)
    assert sorted(os.listdir(tmp_path)) == ["ens.zarr"]


def test_blocks_of_fewer_times_give_the_same_ensemble(
    small_pair, checkpoint, reference, tmp_path, monkeypatch
):
    # a budget of 3 times of this 32 x 40 domain (t2m, one member a block), as a 2048 x 2048
    # domain gets 2 times of the default budget
    monkeypatch.setattr(memory, "BLOCK_BUDGET_BYTES", 3 * 4 * 32 * 40)
    out = tmp_path / "ens.zarr"
    assert _downscale(small_pair, checkpoint, out) == out
    written = xr.open_zarr(out)
    assert written.t2m.encoding["chunks"] == (1, 3, 32, 40) and reference.sizes["time"] > 3
    xr.testing.assert_identical(written.load(), reference)


def test_a_run_above_the_memory_limit_is_refused_before_drawing(small_pair, checkpoint, tmp_path):
    out = tmp_path / "ens.zarr"
    result = runner.invoke(
        app, [*_downscale_args(small_pair, checkpoint, out), "--max-memory-gb", "0.1"]
    )
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert (
        "estimated peak memory" in text and "above --max-memory-gb 0.1: no batch size fits" in text
    )
    assert os.listdir(tmp_path) == []
    result = runner.invoke(
        app, [*_downscale_args(small_pair, checkpoint, out), "--max-memory-gb", "4"]
    )
    assert result.exit_code == 0, result.output
    assert "estimated peak memory" in " ".join(result.output.split())


def _unwritable_folders(tmp_path: Path) -> list[Path]:
    """Folders no output can go to: below a file, and one without write permission (where the user
    is bound by permissions: not root)."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        (locked / "probe").touch()
    except PermissionError:
        return [blocker / "sub", locked]
    (locked / "probe").unlink()
    return [blocker / "sub"]


def _unwrapped(text: str) -> str:
    return "".join(text.split())  # the console wraps long lines, even inside paths


@pytest.mark.parametrize("verb", ["downscale", "predict", "train"])
def test_an_unwritable_output_is_refused_before_any_work(verb, small_pair, tmp_path):
    for folder in _unwritable_folders(tmp_path):
        out = folder / "out.zarr"
        args = {
            # checkpoints that do not exist: the output is checked before anything is read
            "downscale": [
                "downscale",
                "--checkpoint",
                "missing.ckpt",
                "--lr",
                "lr.nc",
                "--static",
                "static.nc",
                "--out",
                str(out),
            ],
            "predict": [
                "predict",
                "--checkpoint",
                "missing.ckpt",
                "--task",
                "forecast",
                "--out",
                str(out),
            ],
            "train": _train_args(small_pair, out),  # the run's folder is the output
        }[verb]
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        named = out if verb == "train" else folder
        assert _unwrapped(f"{named}: cannot write here") in _unwrapped(result.output)
    (tmp_path / "locked").chmod(0o700)
    assert (
        sorted(os.listdir(tmp_path)) == ["file", "locked"] and os.listdir(tmp_path / "locked") == []
    )

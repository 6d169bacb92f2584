"""benchmarks/results.py: the header every benchmark's results JSON carries, and commands measured
alone in a child process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # scripts' folder

import results  # benchmarks/results.py, importable once its folder is on the path

HOLD = "import sys, time; block = b'x' * int(sys.argv[1]); time.sleep(0.2)"  # bytes, touched


def test_each_child_is_measured_alone():
    # this process holds hundreds of MB (torch, xarray): none of it may count for a child
    big = results.measure([sys.executable, "-c", HOLD, str(400_000_000)])
    small = results.measure([sys.executable, "-c", HOLD, str(1_000_000)])
    assert big["peak_rss_gb"] >= 0.4
    # RUSAGE_CHILDREN would report the big child's peak again here
    assert small["peak_rss_gb"] < 0.2
    assert small["wall_s"] >= 0.2 and len(small["load_average_1min"]) == 2


def test_a_failing_command_raises():
    with pytest.raises(subprocess.CalledProcessError):
        results.measure([sys.executable, "-c", "raise SystemExit(3)"])


def test_the_results_file_has_the_header_and_names_what_was_left_empty(tmp_path, capsys):
    run = results.begin()
    path = tmp_path / "out" / "bench.json"
    measured = {"rows": [{"wall_s": 1.5, "blocks": None}], "timings_s": {}}
    assert results.write_results(path, run, measured) == path
    record = json.loads(path.read_text())
    for key in ("command", "cwd", "date", "machine", "versions", "load_average", "empty_fields"):
        assert record[key], key
    assert record["command"].startswith("python ")
    assert set(record["versions"]) >= {"python", "numpy", "torch", "xarray", "zarr", "finescale"}
    assert None not in record["versions"].values()
    assert len(record["load_average"]["start"]) == 3 and len(record["load_average"]["end"]) == 3
    assert {"cpu", "cores", "memory_gib", "torch"} <= set(record["machine"])
    assert record["rows"] == [{"wall_s": 1.5, "blocks": None}]
    assert record["empty_fields"] == ["rows[0].blocks", "timings_s"]
    assert "rows[0].blocks, timings_s" in capsys.readouterr().err
    assert [p.name for p in path.parent.iterdir()] == ["bench.json"]  # no temporary left


def test_results_may_not_overwrite_the_header(tmp_path):
    with pytest.raises(ValueError, match="command"):
        results.write_results(tmp_path / "x.json", results.begin(), {"command": "mine"})
    assert not (tmp_path / "x.json").exists()


def test_undefined_scores_are_written_as_null_and_named(tmp_path):
    """A ratio over a zero sum is NaN or infinite; the file stays standard JSON (strict readers
    refuse ``NaN``) and the header names where."""
    path = tmp_path / "x.json"
    measured = {"tp": {"ratio": float("nan"), "ci95": [0.9, float("inf")]}, "t2m": 1.0}
    results.write_results(path, results.begin(), measured)
    record = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert record["tp"] == {"ratio": None, "ci95": [0.9, None]} and record["t2m"] == 1.0
    assert record["non_finite_fields"] == ["tp.ratio", "tp.ci95[1]"]

"""Benchmark: simulate the Alps world and report wall time and peak memory of the whole process.

Target (issue 2): one simulated year, hourly, of the `alps` preset (160 x 400 HR, 20 x 50 LR)
in at most 10 minutes on 2 cores, streamed to Zarr with peak resident memory under 2 GB.

    python benchmarks/world_speed.py --preset alps --days 365 \\
        --json docs/results/world-speed-cpu.json
    python benchmarks/world_speed.py --days 1 30           # several periods: a row each

Each period's `finescale world` runs in a child process, so its peak resident memory is its own
(results.measure). Prints a line per period and writes every row, with the machine, versions,
date, command and load average, to ``--json`` (default runs/benchmarks/world-speed-<preset>.json).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from machine import disk_gb  # benchmarks/machine.py (scripts run from their folder)
from results import RUNS, begin, measure, write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="alps")
    parser.add_argument("--days", type=float, nargs="+", default=[365.0], help="one run per value")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("/tmp/finescale-world-benchmark"),
        help="folder of the worlds (one <preset>-<days>d folder per run)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="results (default runs/benchmarks/world-speed-<preset>.json)",
    )
    parser.add_argument("--keep", action="store_true", help="Keep the worlds.")
    args = parser.parse_args()
    if any(days <= 0 for days in args.days):
        parser.error(f"--days: every period must be positive, got {args.days}")

    run = begin()
    finescale = Path(sys.executable).with_name("finescale")
    rows = []
    for days in args.days:
        out = args.out / f"{args.preset}-{days:g}d"
        shutil.rmtree(out, ignore_errors=True)  # a world is written whole, never resumed
        command = [
            str(finescale),
            "world",
            "--preset",
            args.preset,
            "--days",
            str(days),
            "--out",
            str(out),
        ]
        row = {
            "preset": args.preset,
            "days": days,
            "hours": round(days * 24),
            **measure(command, stdout=subprocess.DEVNULL),
        }
        row |= {
            "wall_min": round(row["wall_s"] / 60, 2),
            "output_gb": round(disk_gb(out), 3),
            "command": " ".join(command),
        }
        rows.append(row)
        print(
            f"preset {args.preset}, {days:g} days: wall {row['wall_min']:.2f} min, peak RSS "
            f"{row['peak_rss_gb']:.2f} GB, output {row['output_gb']:.2f} GB on disk, load "
            f"average {row['load_average_1min'][0]} / {row['load_average_1min'][1]}",
            flush=True,
        )
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)
    path = args.json or RUNS / f"world-speed-{args.preset}.json"
    target = {"days": 365, "wall_min": 10, "peak_rss_gb": 2}
    write_results(path, run, {"target": target, "rows": rows})


if __name__ == "__main__":
    main()

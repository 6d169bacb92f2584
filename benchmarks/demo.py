"""Benchmark: `finescale demo` (what `make demo` runs after the install), its time and its scores.

The README's demo numbers: the wall time of the whole demo on this machine and the table of fair
CRPS (diffusion beside the oracle, the regression and the baselines) with the diffusion
ensemble's spread-skill ratios, all from the demo's own ``evaluation/metrics.json``.

    python benchmarks/demo.py --out /tmp/finescale-demo-bench --json docs/results/demo-cpu.json

Runs ``finescale demo --out <out>`` in a child process (results.measure: wall time and its own
peak resident memory; its output goes to ``<out>.log``), then writes the header of results.py
(machine, versions, date, command, load average), the time, the scored hours (``scored_on``:
test) and the table to ``--json`` (default runs/benchmarks/demo.json). The demo always starts
from scratch: ``<out>`` is deleted first.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from results import RUNS, begin, measure, write_results  # benchmarks/results.py

SOURCES = (
    "diffusion",
    "oracle",
    "regression",
    "bcsd",
    "qm",
    "qdm",
    "bicubic",
)  # the README's columns


def table(path: Path) -> dict[str, Any]:
    """The README's table from a demo's ``metrics.json`` at ``path``: fair CRPS per variable (rows)
    and source (columns), the diffusion ensemble's spread-skill ratio and its CRPS over the
    oracle's, and the hours and weighting they were scored with."""
    metrics = json.loads(path.read_text())
    meta = metrics["meta"]
    variables = [v for v in ("t2m", "u10", "v10", "tp") if v in metrics["forecast"]]
    sources = {meta["forecast_name"]: metrics["forecast"], **metrics["references"]}
    missing = [name for name in SOURCES if name not in sources]
    if missing:
        raise ValueError(f"{path}: no scores of {', '.join(missing)} (it has {', '.join(sources)})")
    forecast = metrics["forecast"]
    return {
        "crps_fair": {
            v: {name: sources[name][v]["crps_fair"] for name in SOURCES} for v in variables
        },
        "ssr": {v: forecast[v]["ssr"] for v in variables},
        "crps_over_oracle": {
            v: forecast[v]["crps_fair"] / metrics["references"]["oracle"][v]["crps_fair"]
            for v in variables
        },
        "scored_hours": meta["times"]["scored"],
        "first_hour": meta["times"]["first"],
        "last_hour": meta["times"]["last"],
        "members": meta["members"],
        "weighting": meta["weighting"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("/tmp/finescale-demo-bench"),
        help="the demo's output folder (deleted first)",
    )
    parser.add_argument("--json", type=Path, default=RUNS / "demo.json", help="results JSON")
    args = parser.parse_args()

    run = begin()
    shutil.rmtree(args.out, ignore_errors=True)  # a demo reuses nothing: time all of it
    args.out.parent.mkdir(parents=True, exist_ok=True)
    log = args.out.with_name(args.out.name + ".log")
    command = [str(Path(sys.executable).with_name("finescale")), "demo", "--out", str(args.out)]
    with log.open("w") as output:
        measured = measure(command, stdout=output, stderr=output)
    world = json.loads((args.out / "world" / "world.json").read_text())
    result = {
        **measured,
        "wall_min": round(measured["wall_s"] / 60, 2),
        "demo_command": " ".join(command),
        "log": str(log),
        "scored_on": "test",
        # the demo's settings were chosen on validation hours: the sampler on this world's
        # (benchmarks/samplers.py), sigma_max and tp's dry threshold on the skill benchmark's
        # development world (the same seed); the test hours scored here chose none of them
        "selected_on": "validation",
        "world": {
            "path": str(args.out / "world"),
            "seed": world["seed"],
            "hr_shape": world["hr_shape"],
            "times": world["times"],
        },
        **table(args.out / "evaluation" / "metrics.json"),
    }
    write_results(args.json, run, result)
    m, s = divmod(round(measured["wall_s"]), 60)
    print(f"demo: {m} min {s} s, peak RSS {measured['peak_rss_gb']:.2f} GB")
    print("| fair CRPS | " + " | ".join(SOURCES) + " | SSR |")
    for v, row in result["crps_fair"].items():
        print(
            f"| {v} | "
            + " | ".join(f"{row[name]:.4g}" for name in SOURCES)
            + f" | {result['ssr'][v]:.2f} |"
        )


if __name__ == "__main__":
    main()

"""Benchmark: ensemble skill against network calls, for each solver and noise schedule.

Draws ``--members`` members at every ``--every``-th hour of the world's validation block (or
``--split test``) with a trained diffusion checkpoint, once per (solver, schedule, steps), always
from the same initial noise, and scores the fair CRPS of each variable against the HR truth.
The default sampler is chosen from this table, so it is scored on validation hours: the test
block stays for judging the chosen one. The reference is Heun with 40 steps on the Karras levels
(79 network calls). Target (issue 4): the fast solver within 2 % of the reference's CRPS with at
most 12 network calls.

    python benchmarks/samplers.py --checkpoint runs/demo/diffusion/checkpoints/last.ckpt \\
        --world runs/demo/world --plot docs/images/samplers.png \\
        --json docs/results/samplers-demo-cpu.json

Prints a markdown table (CRPS per variable relative to the reference, their mean, the spread
relative to the reference's, wall time) and writes the numbers to ``--json`` (default
runs/benchmarks/samplers.json) with the machine, versions, date, command, load average, the
split scored (``selected_on``), the world and its hours, and the sampling time in all
(``sampling_s``) and per row (``wall_s``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr
from results import RUNS, begin, write_results  # benchmarks/results.py (run from their folder)

from finescale.checkpoints import load_checkpoint
from finescale.data.world.simulate import WORLD_FILE
from finescale.diffusion import n_calls
from finescale.generation import downscale, sample_settings
from finescale.pipeline import world_split_times
from finescale.verify import intervals
from finescale.verify.scores import crps_fair

REFERENCE = ("heun", "karras", 40)
#: how the default sampler is chosen from the table (written before the validation run)
RULE = (
    "fewest network calls among the candidates whose fair CRPS is within 1 % of the "
    "reference's for every variable and whose mean spread is within 5 % of the reference's; "
    "ties: the lower mean CRPS ratio"
)
CRPS_TOLERANCE, SPREAD_TOLERANCE = 0.01, 0.05
BLOCK_DAYS = 3  # the worlds' large-scale anomalies e-fold in 72 h
CANDIDATES = [
    *(("heun", "karras", n) for n in (4, 6, 9, 18)),
    *(("euler", "karras", n) for n in (12, 32)),
    *(("dpmpp_2m", "karras", n) for n in (8, 12, 18)),
    *(("dpmpp_2m", "log_uniform", n) for n in (6, 8, 10, 12, 18)),
]


def score(
    ensemble: Path, truth: xr.Dataset
) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """Fair CRPS and mean ensemble std per variable of one ensemble store, and its per-day sums
    (:mod:`finescale.verify.intervals`, plain means as before) for the intervals."""
    ens = xr.open_zarr(ensemble).load()
    out, per_time = {}, [{} for _ in ens.time.values]
    for name in ens.data_vars:
        fc, obs = ens[name], truth[name].sel(time=ens.time)
        out[str(name)] = {
            "crps": float(crps_fair(fc, obs)),
            "spread": float(fc.std("member", ddof=1).mean()),
        }
        for i, t in enumerate(ens.time.values):
            y = obs.sel(time=t).transpose("y", "x").values.astype(np.float64)
            members = fc.sel(time=t).transpose("member", "y", "x").values.astype(np.float64)
            sums = intervals.time_sums(members, y, np.ones_like(y), np.random.default_rng(0))
            per_time[i][f"{name}.crps"] = sums["crps"]
    daily, _ = intervals.daily(per_time, ens.time.values)
    return out, daily


def choose(rows: list[dict]) -> dict | None:
    """The candidate :data:`RULE` picks from scored rows (the reference first), or None."""
    eligible = [
        row
        for row in rows[1:]
        if all(abs(r - 1) <= CRPS_TOLERANCE for r in row["crps_rel"].values())
        and abs(np.mean(list(row["spread_rel"].values())) - 1) <= SPREAD_TOLERANCE
    ]
    return min(eligible, key=lambda r: (r["calls"], r["crps_rel_mean"]), default=None)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--world", type=Path, help="the Alps world the checkpoint was trained on")
    parser.add_argument(
        "--from-json", type=Path, default=None, help="print and plot an earlier run's numbers"
    )
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument(
        "--split",
        choices=("validation", "test"),
        default="validation",
        help="the world's block whose hours are scored",
    )
    parser.add_argument("--every", type=int, default=6, help="score every n-th hour of the split")
    parser.add_argument(
        "--sigma-max", type=float, default=None, help="override the checkpoint's sigma_max"
    )
    parser.add_argument(
        "--out",
        "--json",
        dest="out",
        type=Path,
        default=RUNS / "samplers.json",
        help="results JSON",
    )
    parser.add_argument("--plot", type=Path, default=None, help="PNG of CRPS against network calls")
    args = parser.parse_args()
    if args.from_json:
        result = json.loads(args.from_json.read_text())
        report(result, args.plot)
        return
    if args.checkpoint is None or args.world is None:
        parser.error("--checkpoint and --world are needed (or --from-json)")

    run = begin()
    times = world_split_times(args.world, args.split)[:: args.every]
    if times.size == 0:
        parser.error(f"--world {args.world}: no {args.split} hours to score")
    truth = xr.open_zarr(args.world / "hr.zarr")
    override = {} if args.sigma_max is None else {"sigma_max": args.sigma_max}
    rows, daily = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for solver, schedule, steps in [REFERENCE, *CANDIDATES]:
            sample = {
                "solver": solver,
                "schedule": schedule,
                "steps": steps,
                "members": args.members,
                "batch_size": args.members,
            }
            sample |= override
            path = Path(tmp) / f"{solver}-{schedule}-{steps}.zarr"
            start = time.perf_counter()
            downscale(
                args.checkpoint,
                args.world / "lr.zarr",
                args.world / "static.zarr",
                path,
                sample=sample,
                times=times,
            )
            wall = time.perf_counter() - start
            scores, sums = score(path, truth)
            daily.append(sums)
            rows.append(
                {
                    "solver": solver,
                    "schedule": schedule,
                    "steps": steps,
                    "calls": n_calls(solver, steps),
                    "wall_s": wall,
                    "scores": scores,
                }
            )
            print(f"{solver:9s} {schedule:12s} {steps:3d} steps: {wall:6.1f} s", flush=True)

    ref = rows[0]["scores"]
    variables = list(ref)
    # 95 % intervals of each CRPS ratio: the same days resampled for both ensembles
    # (blocks of 3 days)
    counts = intervals.bootstrap_counts(
        np.zeros(daily[0][f"{variables[0]}.crps"].shape[0]), BLOCK_DAYS
    )
    for row, sums in zip(rows, daily, strict=True):
        paired = {
            **{f"row.{k}": v for k, v in sums.items()},
            **{f"ref.{k}": v for k, v in daily[0].items()},
        }
        row["crps_rel_ci95"] = {
            v: intervals.interval(intervals.crps_ratio(f"row.{v}", f"ref.{v}"), paired, counts).ci95
            for v in variables
        }
        row["crps_rel_mean_ci95"] = intervals.interval(
            lambda s: np.mean([s[f"row.{v}.crps"] / s[f"ref.{v}.crps"] for v in variables], axis=0),
            paired,
            counts,
        ).ci95
    for row in rows:
        row["crps_rel"] = {v: row["scores"][v]["crps"] / ref[v]["crps"] for v in variables}
        row["spread_rel"] = {v: row["scores"][v]["spread"] / ref[v]["spread"] for v in variables}
        row["crps_rel_mean"] = float(np.mean(list(row["crps_rel"].values())))
    world = json.loads((args.world / WORLD_FILE).read_text())
    result = {
        "checkpoint": str(args.checkpoint.absolute()),
        "selected_on": args.split,
        "world": {
            "path": str(args.world.absolute()),
            "seed": world["seed"],
            "hr_shape": world["hr_shape"],
            "times": world["times"],
        },
        "scored_times": [str(t) for t in times],
        "times": len(times),
        "members": args.members,
        "sigma_max": sample_settings(load_checkpoint(args.checkpoint), override).sigma_max,
        "sampling_s": round(sum(row["wall_s"] for row in rows), 1),
        "interval": {
            "method": "moving-block bootstrap over days, paired",
            "block_days": BLOCK_DAYS,
            "days": int(daily[0][f"{variables[0]}.crps"].shape[0]),
        },
        "rows": rows,
        "rule": RULE,
        "chosen": {k: chosen[k] for k in ("solver", "schedule", "steps", "calls")}
        if (chosen := choose(rows))
        else None,
    }
    report(json.loads(write_results(args.out, run, result).read_text()), args.plot)


def report(result: dict, plot_path: Path | None) -> None:
    """The markdown table, and the plot when asked."""
    rows, machine = result["rows"], result["machine"]
    ref = rows[0]["scores"]
    variables = list(ref)
    split = result.get("selected_on", "test")  # earlier runs, which did not record it, scored test
    print(
        f"\n{result['times']} {split} times x {result['members']} members; {machine['cpu']}, "
        f"{machine['threads']} threads"
    )
    print("reference fair CRPS: " + ", ".join(f"{v} {ref[v]['crps']:.4g}" for v in variables))
    head = "| solver | schedule | steps | calls | " + " | ".join(f"CRPS {v}" for v in variables)
    print(f"\n{head} | CRPS mean [95 %] | spread mean | wall (s) |")
    print("|" + "---|" * (len(variables) + 7))
    for row in rows:
        crps = " | ".join(f"{row['crps_rel'][v]:.3f}" for v in variables)
        spread = np.mean(list(row["spread_rel"].values()))
        # earlier runs have no intervals; None where too many resamples were undefined
        lo, hi = row.get("crps_rel_mean_ci95") or (np.nan, np.nan)
        print(
            f"| {row['solver']} | {row['schedule']} | {row['steps']} | {row['calls']} | {crps} | "
            f"{row['crps_rel_mean']:.3f} [{lo:.3f}, {hi:.3f}] | {spread:.3f} | "
            f"{row['wall_s']:.0f} |"
        )
    if "chosen" in result:
        chosen = result["chosen"]
        pick = "none" if chosen is None else " ".join(str(chosen[k]) for k in chosen)
        print(f"\nrule: {result['rule']}\nchosen on {split}: {pick}")
    if plot_path:
        plot(rows, plot_path)


def plot(rows: list[dict], path: Path) -> None:
    """CRPS and spread relative to the reference against network calls, a line per solver and
    schedule."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for key in dict.fromkeys((r["solver"], r["schedule"]) for r in rows[1:]):
        line = sorted(
            (r for r in rows[1:] if (r["solver"], r["schedule"]) == key), key=lambda r: r["calls"]
        )
        calls = [r["calls"] for r in line]
        axes[0].plot(calls, [r["crps_rel_mean"] for r in line], "o-", label=" / ".join(key))
        axes[1].plot(
            calls,
            [np.mean(list(r["spread_rel"].values())) for r in line],
            "o-",
            label=" / ".join(key),
        )
    axes[0].axhline(1.02, color="grey", ls="--", lw=1, label="reference + 2 %")
    axes[0].set_ylim(0.99, 1.1)
    axes[0].set_ylabel("fair CRPS / Heun-40 CRPS (mean over variables)")
    axes[1].axhline(1.0, color="grey", ls="--", lw=1)
    axes[1].set_ylim(0.7, 1.4)
    axes[1].set_ylabel("ensemble spread / Heun-40 spread")
    for ax in axes:
        ax.axvline(12, color="grey", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_xlabel("network calls per member")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()

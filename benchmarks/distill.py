"""Benchmark: a consistency student against its teacher under the held-out protocol (issue 18).

Takes a finished skill run (``benchmarks/skill.py --out RUN``): its teacher
``RUN/dev/diffusion/checkpoints/last.ckpt``, trained on the development world, and its held-out
worlds ``RUN/heldout/<seed>-<terrain>/world`` (with their oracle ensembles, reused when they hold
the hours scored here).

1. **Distil** the teacher on its own training data (``finescale distill`` with the config's
   ``distill`` section, resumable) into ``OUT/student``. Cost: steps x step time, beside the
   teacher's (its steps, and its training time as the skill run recorded it).
2. **Draw** ``score.members`` members on every ``score.every``-th hour of each held-out world's
   test block (the skill config's scoring): the teacher at 40 Heun steps (Karras levels, 79
   calls: converged), at DPM-Solver++(2M) 8 and 12 calls (log-uniform levels, as the skill run
   samples), and the student at 1, 2 and 4 calls; all with the ``sample`` settings the skill
   run selected on validation (``sigma_max``, ``zero_below``).
3. **Score** each against the truth with the oracle as reference: fair CRPS / oracle's, SSR,
   rank histogram outer bins over flat, the largest |log10| band-power ratio (spectral max), per
   variable, each with a 95 % moving-block bootstrap interval over days (skill.py's daily sums
   and ``finescale.verify.intervals``; worlds pooled), and wall time per member. The students
   against the converged teacher: CRPS ratio, SSR ratio, differences of rank edges and spectral
   max, each with its interval.
4. **Goals** (issue 18), met or not on the pooled values: 2 calls: fair CRPS <= 1.02 x the
   teacher's for every variable, SSR within 5 % of the teacher's, rank outer bins within 0.1,
   spectral max <= the teacher's + 0.05; 1 call: the same with CRPS <= 1.05 x; distillation
   no longer than the teacher's training (steps x step time).

    python benchmarks/distill.py --run runs/heldout-cpu --config benchmarks/configs/distill-cpu.yaml \\
        --out runs/distill-cpu --json docs/results/distill-heldout-cpu.json

Stages whose output exists are reused (delete it to redo it); their times are kept in
``OUT/timings.json`` and ``OUT/heldout/<world>/timings.json``.
"""  # noqa: E501 (the command line is kept whole)

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
import yaml
from results import begin, write_results  # benchmarks/results.py (scripts run from their folder)
from skill import VARIABLES, daily_sums, evaluate  # the skill benchmark's scoring, reused
from stages import Stages

from finescale.checkpoints import read_checkpoint
from finescale.config import DistillConfig, validate
from finescale.data.world.simulate import oracle
from finescale.generation import downscale
from finescale.pipeline import world_split_times
from finescale.training.distill import distill
from finescale.verify import intervals

#: the teacher's samplers: the converged reference first, then the fast solver at 8 and 12 calls
TEACHER = {
    "teacher_heun40": {"solver": "heun", "schedule": "karras", "steps": 40},
    "teacher_dpmpp8": {"solver": "dpmpp_2m", "schedule": "log_uniform", "steps": 8},
    "teacher_dpmpp12": {"solver": "dpmpp_2m", "schedule": "log_uniform", "steps": 12},
}
STUDENT_CALLS = (1, 2, 4)
REFERENCE = "teacher_heun40"
CALLS = {"teacher_heun40": 79, "teacher_dpmpp8": 8, "teacher_dpmpp12": 12} | {
    f"student{k}": k for k in STUDENT_CALLS
}
#: issue 18's goals for a student at k calls against the converged teacher
GOALS = {
    2: {"crps_ratio": 1.02, "ssr_ratio": 0.05, "edge_difference": 0.1, "spectral_difference": 0.05},
    1: {"crps_ratio": 1.05, "ssr_ratio": 0.05, "edge_difference": 0.1, "spectral_difference": 0.05},
}


def scored(name: str, v: str, members: int) -> dict[str, Any]:
    """One ensemble's scores of variable ``v`` as functions of the sums (verify.intervals)."""
    key = f"{name}.{v}"
    return {
        "crps_oracle_ratio": intervals.crps_ratio(key, f"oracle.{v}"),
        "ssr": intervals.spread_skill(key, members),
        "edge_ratio": intervals.rank_edges(key),
        "spectral": intervals.spectral_max(key),
    }


def against_teacher(name: str, v: str, members: int) -> dict[str, Any]:
    """A student's scores of ``v`` relative to the converged teacher's."""
    mine, ref = scored(name, v, members), scored(REFERENCE, v, members)
    return {
        "crps_ratio": intervals.crps_ratio(f"{name}.{v}", f"{REFERENCE}.{v}"),
        "ssr_ratio": lambda s: mine["ssr"](s) / ref["ssr"](s),
        "edge_difference": lambda s: mine["edge_ratio"](s) - ref["edge_ratio"](s),
        "spectral_difference": lambda s: mine["spectral"](s) - ref["spectral"](s),
    }


def met(goal: str, value: float, bound: float) -> bool:
    """Whether a student's value relative to the teacher meets the goal's bound."""
    if goal == "crps_ratio":
        return value <= bound
    if goal == "ssr_ratio":
        return abs(value - 1.0) <= bound
    if goal == "edge_difference":
        return abs(value) <= bound
    return value <= bound  # spectral max above the teacher's


def draw_world(
    folder: Path,
    world_dir: Path,
    oracle_store: Path,
    teacher: Path,
    student: Path,
    times: np.ndarray,
    members: int,
    sample: dict[str, Any],
) -> tuple[dict[str, Path], Stages]:
    """Every ensemble of one held-out world on ``times`` (drawn or reused), the oracle too."""
    timed = Stages(folder / "timings.json")
    lr, static = world_dir / "lr.zarr", world_dir / "static.zarr"
    paths = {name: folder / f"{name}.zarr" for name in CALLS}
    settings = {name: {**sample, **solver} for name, solver in TEACHER.items()}
    dry = {k: v for k, v in sample.items() if k == "zero_below"}  # a student has no sigma_max
    settings |= {f"student{k}": {**dry, "calls": k} for k in STUDENT_CALLS}
    for name, path in paths.items():
        checkpoint = student if name.startswith("student") else teacher
        timed(
            f"downscale {name}",
            path,
            lambda c=checkpoint, p=path, s={**settings[name], "members": members}: downscale(
                c, lr, static, p, sample=s, times=times
            ),
        )
    reused = oracle_store.exists() and np.array_equal(
        xr.open_zarr(oracle_store).time.values, times.astype("datetime64[ns]")
    )
    paths["oracle"] = oracle_store if reused else folder / "oracle.zarr"
    timed("oracle", paths["oracle"], lambda: oracle(world_dir, members, paths["oracle"], times))
    return paths, timed


def world_sums(
    paths: dict[str, Path], world_dir: Path, folder: Path, timed: Stages
) -> tuple[dict[str, np.ndarray], np.ndarray, list[tuple[float, float]]]:
    """Daily sums of every ensemble of one world (cached in ``folder/sums.npz``), its days and
    the spectral bands ``finescale evaluate`` used (its report on the converged teacher)."""
    # skill.py's helpers score the store named "diffusion" against the others
    as_skill = {"diffusion": paths[REFERENCE], "oracle": paths["oracle"]}
    metrics = evaluate(as_skill, world_dir, folder / "evaluation", timed)
    cache = folder / "sums.npz"

    def compute() -> None:
        stores = {"diffusion": paths[REFERENCE]} | {
            k: p for k, p in paths.items() if k != REFERENCE
        }
        sums, days = daily_sums(stores, world_dir, metrics)
        renamed = {k.replace("diffusion.", f"{REFERENCE}.", 1): v for k, v in sums.items()}
        partial = folder / "sums.partial.npz"
        np.savez(partial, days=days.astype("datetime64[D]").astype(np.int64), **renamed)
        partial.replace(cache)

    timed("daily sums", cache, compute)
    with np.load(cache) as saved:
        sums = {k: saved[k] for k in saved.files if k != "days"}
        days = saved["days"].astype("datetime64[D]")
    return sums, days, [tuple(b) for b in metrics["meta"]["spectral_bands_km"]]


def cost(run: Path, teacher: Path, student: Path, timed: Stages) -> dict[str, Any]:
    """Distillation against training: steps x seconds per step of each."""
    steps = {
        name: int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])
        for name, path in (("teacher", teacher), ("student", student))
    }
    skill_timings = run / "dev" / "timings.json"
    teacher_s = (
        json.loads(skill_timings.read_text()).get("train diffusion")
        if skill_timings.is_file()
        else None
    )
    student_s = timed.timings.get("distil")
    row = {
        "teacher": {"steps": steps["teacher"], "wall_s": teacher_s},
        "student": {"steps": steps["student"], "wall_s": student_s},
        "note": "wall times as the stages recorded them: a stage resumed after an interruption "
        "counts only its last part",
    }
    for name in ("teacher", "student"):
        wall = row[name]["wall_s"]
        row[name]["s_per_step"] = None if wall is None else wall / row[name]["steps"]
    row["met"] = None if None in (teacher_s, student_s) else student_s <= teacher_s
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, required=True, help="a finished skill.py --out")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--json", type=Path, help="results JSON (default: <out>/distill.json)")
    args = parser.parse_args()
    started = begin()
    spec = yaml.safe_load(args.config.read_text())
    skill_spec = yaml.safe_load((args.config.parent / spec["skill"]).read_text())
    score, sample = skill_spec["score"], spec["sample"]
    members = score["members"]
    run, out = args.run.absolute(), args.out.absolute()
    teacher = run / "dev" / "diffusion" / "checkpoints" / "last.ckpt"
    if not teacher.is_file():
        raise SystemExit(f"{teacher}: no teacher; run benchmarks/skill.py --out {args.run} first")
    top = read_checkpoint(teacher).meta["config"]["sample"]["sigma_max"]
    if top != sample["sigma_max"]:
        raise SystemExit(
            f"{teacher} samples from sigma_max {top}, the config selected {sample['sigma_max']}: "
            "its student would be distilled on another range than the teacher is scored with"
        )
    timed = Stages(out / "timings.json")

    # 1. distil, on the teacher's own training data
    cfg = validate({**spec["distill"], "out": str(out / "student")}, DistillConfig)
    student = out / "student" / "checkpoints" / "last.ckpt"
    timed("distil", student, lambda: distill(cfg, teacher, resume=True))
    described = read_checkpoint(student).meta["student"]

    # 2.-3. draw and sum every ensemble on each held-out world's scored hours
    worlds, daily, strata, walls = [], [], [], {name: [] for name in CALLS}
    for i, held in enumerate(skill_spec["heldout"]):
        label = f"seed{held['seed']}-{held['terrain']}"
        world_dir = run / "heldout" / label / "world"
        folder = out / "heldout" / label
        times = world_split_times(world_dir, "test")[:: score["every"]]
        paths, world_timed = draw_world(
            folder,
            world_dir,
            run / "heldout" / label / "oracle.zarr",
            teacher,
            student,
            times,
            members,
            sample,
        )
        sums, days, bands = world_sums(paths, world_dir, folder, world_timed)
        for name in CALLS:
            walls[name].append(world_timed.timings[f"downscale {name}"] / (members * times.size))
        worlds.append({"world": label, "scored_times": int(times.size), "days": int(days.size)})
        daily.append(sums)
        strata += [i] * days.size
    pooled = {k: np.concatenate([d[k] for d in daily]) for k in daily[0]}
    counts = intervals.bootstrap_counts(np.asarray(strata), score["block_days"], score["resamples"])

    def with_interval(score_fn: Any) -> dict[str, Any]:
        return intervals.interval(score_fn, pooled, counts).as_dict()

    table = {
        name: {
            "network_calls": CALLS[name],
            "wall_s_per_member": float(np.mean(walls[name])),
            "variables": {
                v: {k: with_interval(f) for k, f in scored(name, v, members).items()}
                for v in VARIABLES
            },
        }
        for name in CALLS
    }
    relative = {
        f"student{k}": {
            v: {g: with_interval(f) for g, f in against_teacher(f"student{k}", v, members).items()}
            for v in VARIABLES
        }
        for k in STUDENT_CALLS
    }
    goals: dict[str, Any] = {}
    for k, bounds in GOALS.items():
        rows = {
            v: {
                g: {**relative[f"student{k}"][v][g], "bound": b}
                | {"met": met(g, relative[f"student{k}"][v][g]["value"], b)}
                for g, b in bounds.items()
            }
            for v in VARIABLES
        }
        goals[f"student_{k}_calls"] = {
            "variables": rows,
            "met": all(r["met"] for row in rows.values() for r in row.values()),
        }
    goals["distillation_cost"] = cost(run, teacher, student, timed)

    result = {
        "config": spec,
        "skill_config": skill_spec,
        "teacher": described["teacher"],
        "student": {"checkpoint": str(student), "description": described},
        "heldout_worlds": worlds,
        "pooled": {
            "days": len(strata),
            "block_days": score["block_days"],
            "resamples": score["resamples"],
            "members": members,
            "spectral_bands_km": [list(b) for b in bands],
        },
        "ensembles": table,
        "wall_s_per_member": "each world's downscale stage (loading, drawing, writing) over its "
        "members x scored times, averaged over the worlds",
        "students_against_teacher": relative,
        "goals": goals,
        "goal_rules": "CRPS ratio <= bound; SSR ratio within bound of 1; rank outer bins "
        "(over flat) within bound of the teacher's; spectral max at most bound above the "
        "teacher's; on pooled values (the intervals beside them); the teacher is "
        f"{REFERENCE}. 1 call: as 2 calls with CRPS within 5 %",
        "timings_s": timed.timings,
    }
    write_results(args.json or out / "distill.json", started, result)

    print(f"\n{len(worlds)} held-out worlds, {len(strata)} days, 95 % intervals")
    print(
        "| ensemble | calls | s / member | " + " | ".join(f"{v} CRPS / oracle" for v in VARIABLES)
    )
    print("|---|---|---|" + "---|" * len(VARIABLES))

    def fmt(x: dict[str, Any]) -> str:
        ci = x["ci95"]
        return f"{x['value']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")

    for name, row in table.items():
        crps = " | ".join(fmt(row["variables"][v]["crps_oracle_ratio"]) for v in VARIABLES)
        print(f"| {name} | {row['network_calls']} | {row['wall_s_per_member']:.3f} | {crps} |")
    for name, goal in goals.items():
        print(f"{name}: {'met' if goal['met'] else 'not met'}")


if __name__ == "__main__":
    main()

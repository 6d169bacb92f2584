"""Benchmark: the AtmoRep model under the held-out protocol (docs/benchmarks.md), issue 19.

1. **Develop** on one world: pre-train on its training block (config ``pretrain``), and train
   every candidate of ``select`` from the pre-trained model (a candidate ``null`` is the
   pre-trained model itself; the others are overrides of ``pretrain`` for interpolation and
   nowcasting, of ``downscale`` for downscaling); the bias-correction fine-tune (``bias``).
2. **Select** on that world's *validation* block only, by the rule in the config: the candidate
   meeting the most goals (config ``goals``: those validation can measure; downscaling has no
   diffusion ensemble there and is scored against the oracle), then the lowest mean of the
   task's ``score``. The test block of the development world is never scored.
3. **From scratch**: for interpolation, nowcasting and downscaling, the chosen candidate's
   network trained from no initial weights on that task alone (config ``scratch``: its masks,
   a learning rate for a fresh start) for as many steps as ours took in all (pre-training plus
   the chosen fine-tune).
4. **Score once** on the held-out worlds' test blocks: interpolation against linear
   interpolation in time, nowcasts at every lead against persistence, downscaling beside the
   skill run's diffusion, regression, oracle and QDM ensembles on the same hours (paired), bias
   correction of LR precipitation against quantile mapping (fitted on each world's own training
   block) and the uncorrected LR. Every figure is ``{"value": x, "ci95": [lo, hi]}``, a moving
   block bootstrap over days (``score.block_days``) within each world, per world and pooled, with
   ours / scratch's fair CRPS as a paired ratio; then each goal of issue 19, met or not.

    cd benchmarks && python atmorep.py --config configs/atmorep-heldout-cpu.yaml \\
        --out ../runs/atmorep-heldout-cpu --skill ../runs/heldout-cpu \\
        --json ../docs/results/atmorep-heldout-cpu.json

``--skill``: the output folder of skill.py under the protocol (``dev/world``, ``heldout/<label>/``
with its world and ensembles), read only. Without it the worlds are simulated into
``<out>/worlds`` and downscaling is scored beside an oracle drawn here (no diffusion ensemble:
its ratios and goal are left unmeasured), as the smoke config ``configs/atmorep-quick.yaml`` does.
Stages whose output exists are reused (delete a folder to redo it); their times are kept in
``<out>/timings.json``. Prints the selection, the pooled figures and the goals.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
import yaml
from atmorep_models import SECTION, Run, World, merge, oracle_store, scratch_section, worlds
from atmorep_print import summary
from atmorep_scores import choose, goal_checks, mean_score, pool, pretraining_pays
from atmorep_tasks import (
    REFERENCES,
    Parts,
    figures,
    score_bias,
    score_downscale,
    score_in_time,
)
from results import begin, write_results  # benchmarks/results.py (scripts run from their folder)
from stages import Stages

from finescale.pipeline import world_split_times

TASKS = ("interpolation", "nowcast", "downscale")


def loss_falls(logs: Path) -> dict[str, Any]:
    """Train loss in ten windows of the run and the validation losses (every version of a
    resumed run, in order); 'steady' when every window's mean lies below the first window's and
    the last validation loss below the first."""
    versions = sorted(logs.glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    frame = pd.concat([pd.read_csv(p / "metrics.csv") for p in versions])
    train = frame["train_loss"].dropna().to_numpy()
    windows = [float(w.mean()) for w in np.array_split(train, min(10, train.size))]
    val = frame["val_loss"].dropna().to_list()
    steady = all(w < windows[0] for w in windows[1:]) and val[-1] < val[0]
    return {"train_windows": windows, "val": val, "steady": bool(steady)}


def one_world(parts: Parts) -> dict[str, tuple[Any, np.ndarray]]:
    """Parts of one world with every day in one stratum."""
    return {part: (sums, np.zeros(days.size)) for part, (sums, days) in parts.items()}


def hours(parts: Parts) -> int:
    """Hours scored (of the first part: every lead has as many)."""
    sums, _ = next(iter(parts.values()))
    return round(float(sums["hours"].sum()))


def select(
    task: str,
    spec: dict[str, Any],
    run: Run,
    dev: World,
    pretrained: Path,
    oracle: Path,
    times: np.ndarray,
) -> tuple[dict[str, Any], str, Path]:
    """Every candidate of ``task`` trained and scored on the development world's validation
    block; the record of the choice, the chosen candidate's name and checkpoint."""
    chosen_from = spec["select"][task]
    score, members = spec["score"], spec["members"]
    rows, checkpoints = [], {}
    for name, overrides in chosen_from["candidates"].items():
        if overrides is None and SECTION[task] != "pretrain":
            raise ValueError(
                f"select.{task}.candidates.{name}: null (no fine-tune) is not a {task}"
            )
        checkpoints[name] = (
            pretrained
            if overrides is None
            else run.train(f"{task}-{name}", merge(spec[SECTION[task]], overrides), pretrained)
        )
        folder, tag = run.out / "dev" / "select" / f"{task}-{name}", f"validation {task} {name}"
        models, bands = {"ours": checkpoints[name]}, None
        if task == "downscale":
            parts, bands = score_downscale(
                run, dev, models, "validation", times, {"oracle": oracle}, folder, tag
            )
        else:
            parts = score_in_time(
                task, run, dev, models, "validation", folder, tag, spec.get("stride")
            )
        found = figures(
            task, one_world(parts), members, score["block_days"], score["resamples"], bands
        )
        checks = goal_checks(task, found, spec["goals"])
        rows.append(
            {
                "name": name,
                "goals_met": sum(c is True for c in checks.values()),
                "goals_measured": sum(c is not None for c in checks.values()),
                "score": mean_score(task, found, chosen_from["score"]),
                "validation_hours": hours(parts),
                "checks": checks,
                "figures": found,
            }
        )
    chosen = choose(rows)
    record = {
        "rule": spec["select"]["rule"],
        "score": chosen_from["score"],
        "candidates": rows,
        "chosen": chosen,
    }
    return record, chosen, checkpoints[chosen]


def downscale_references(
    world: World, spec: dict[str, Any], run: Run
) -> tuple[np.ndarray, dict[str, Path]]:
    """The hours downscaling is scored on and the stores beside it: the skill run's ensembles
    on their hours, or (no skill run) an oracle drawn on every ``score.every``-th test hour."""
    if world.ensembles is not None:
        refs = {
            name: world.ensembles / f"{name}.zarr"
            for name in REFERENCES["downscale"]
            if (world.ensembles / f"{name}.zarr").exists()
        }
        if "diffusion" not in refs:
            raise FileNotFoundError(f"{world.ensembles}: no diffusion.zarr from the skill run")
        return xr.open_zarr(refs["diffusion"]).time.values, refs
    times = world_split_times(world.path, "test")[:: spec["score"]["every"]]
    path = world.folder / "oracle.zarr"
    return times, {"oracle": oracle_store(world, times, spec["members"], path, run.timed)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--skill", type=Path, help="output folder of skill.py: its worlds and ensembles (read only)"
    )
    parser.add_argument(
        "--json", type=Path, help="results JSON (default: <out>/atmorep-heldout.json)"
    )
    args = parser.parse_args()
    started = begin()
    spec = yaml.safe_load(args.config.read_text())
    out = args.out.resolve()
    skill = None if args.skill is None else args.skill.resolve()
    score, members = spec["score"], spec["members"]

    # 1. develop on the development world's training block
    dev, heldout = worlds(spec, out, skill)
    timed = Stages(out / "timings.json")
    run = Run(out, dev.data.model_dump(mode="json"), timed, members)
    pretrained = run.train("pretrain", spec["pretrain"])

    # 2. select on its validation block; the bias fine-tune has no candidates
    times = world_split_times(dev.path, "validation")[:: spec["select"]["every"]]
    oracle = oracle_store(dev, times, members, out / "dev" / "oracle-validation.zarr", timed)
    selection, chosen, ours = {}, {}, {}
    for task in TASKS:
        selection[task], chosen[task], ours[task] = select(
            task, spec, run, dev, pretrained, oracle, times
        )
    bias = run.train("bias", spec["bias"], pretrained)

    # 3. the chosen networks from scratch, on their task alone, for as many steps in all
    scratch = {}
    for task in TASKS:
        section = scratch_section(spec, task, spec["select"][task]["candidates"][chosen[task]])
        scratch[task] = {
            "checkpoint": run.train(f"scratch-{task}", section),
            "steps": section["train"]["max_steps"],
            "network_of": chosen[task],
            "section": section,
        }

    # 4. score once on the held-out worlds' test blocks
    per_world: dict[str, list[Parts]] = {task: [] for task in (*TASKS, "bias")}
    rows = []
    for world in heldout:
        models = {t: {"ours": ours[t], "scratch": scratch[t]["checkpoint"]} for t in TASKS}
        parts = {
            task: score_in_time(
                task,
                run,
                world,
                models[task],
                "test",
                world.folder,
                f"{world.label} {task}",
                spec.get("stride"),
            )
            for task in ("interpolation", "nowcast")
        }
        scored, refs = downscale_references(world, spec, run)
        parts["downscale"], bands = score_downscale(
            run,
            world,
            models["downscale"],
            "test",
            scored,
            refs,
            world.folder,
            f"{world.label} downscale",
        )
        parts["bias"], q99 = score_bias(run, world, bias, world.folder, f"{world.label} bias")
        found = {
            task: figures(
                task,
                one_world(p),
                members,
                score["block_days"],
                score["resamples"],
                bands if task == "downscale" else None,
            )
            for task, p in parts.items()
        }
        rows.append(
            {
                **world.describe(),
                "label": world.label,
                "days": {task: int(next(iter(p.values()))[1].size) for task, p in parts.items()},
                "hours": {task: hours(p) for task, p in parts.items()},
                "bias_brier_threshold_mm_h": q99,
                "figures": found,
            }
        )
        for task, p in parts.items():
            per_world[task].append(p)
    pooled = {}
    for task, worlds_parts in per_world.items():
        stacked = {part: pool([p[part] for p in worlds_parts]) for part in worlds_parts[0]}
        pooled[task] = figures(
            task,
            stacked,
            members,
            score["block_days"],
            score["resamples"],
            bands if task == "downscale" else None,
        )
    goals = {task: goal_checks(task, pooled[task], spec["goals"]) for task in pooled}
    pays = {task: pretraining_pays(task, pooled[task]) for task in TASKS}

    trainings = {k: v for k, v in timed.timings.items() if k.startswith("train ")}
    result = {
        "config": spec,
        "selected_on": "validation",
        **({"skill_run": str(skill)} if skill is not None else {}),
        "development_world": {**dev.describe(), "block": "train (training), validation (choice)"},
        "heldout_worlds": rows,
        "selection": selection,
        "scratch": {
            t: {k: v for k, v in s.items() if k != "checkpoint"} for t, s in scratch.items()
        },
        "pooled": {
            "days": {task: int(sum(r["days"][task] for r in rows)) for task in per_world},
            "block_days": score["block_days"],
            "resamples": score["resamples"],
            "figures": pooled,
        },
        "goals": goals,
        "pretraining_pays": pays,
        "loss": loss_falls(out / "pretrain" / "logs"),
        "timings_s": timed.timings,
        "training_wall_s": sum(trainings.values()),
    }
    path = write_results(args.json or out / "atmorep-heldout.json", started, result)
    print(summary(args.config, result, path))


if __name__ == "__main__":
    main()

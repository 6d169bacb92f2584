"""Benchmark: skill of the diffusion ensemble on the `alps` world against the oracle and the regression.

Target (issue 4), 16 members on the test period:
- fair CRPS <= 1.2 x the oracle's for t2m, u10, v10 and <= 1.3 x for tp, and <= 0.85 x the
  regression model's;
- spread-skill ratio in [0.8, 1.2]; rank histograms without a U or a dome (here: the two outer
  bins hold within 25 % of their flat share; chi-square per degree of freedom reported);
- spectral log10 ratio within +-0.15 in every band from 2 HR grid lengths to the LR grid length;
- 99.9th percentile of tp within 20 % of the truth's.

    python benchmarks/skill.py --config benchmarks/configs/skill-cpu.yaml --out runs/skill-cpu

The config (see benchmarks/configs/) names the world, how many members and test hours are
scored, and the `model` / `train` / `sample` sections of the regression and diffusion stages;
their `data` section is the world's. Stages whose output exists are reused (delete the folder
to start again). Prints the timings, the checks side by side and the machine, and writes them
to ``<out>/skill.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from machine import describe  # benchmarks/machine.py (scripts run from their folder)
from stages import Stages

from finescale.config import ExperimentConfig, validate
from finescale.data.world import preset, simulate
from finescale.data.world.simulate import WORLD_FILE, oracle
from finescale.evaluation import run_evaluate
from finescale.generate import downscale
from finescale.pipeline import world_config, world_split_times
from finescale.train import train

VARIABLES = ("t2m", "u10", "v10", "tp")
ORACLE_FACTOR = {"t2m": 1.2, "u10": 1.2, "v10": 1.2, "tp": 1.3}


def stage_config(world_dir: Path, stage: dict[str, Any], out: Path, name: str) -> ExperimentConfig:
    """A stage's model/train/sample sections on the world's data, training into ``out``/``name``."""
    tree = {"name": name, "data": world_config(world_dir).data.model_dump(mode="json"), **stage}
    tree["train"] = {**tree.get("train", {}), "out": str(out / name)}
    if tree["model"].get("residual") == "regression":
        tree["model"]["regression_checkpoint"] = str(out / "regression" / "checkpoints" / "last.ckpt")
    return validate(tree, ExperimentConfig, source=f"{name} stage")


def rank_shape(counts: list[float]) -> dict[str, float]:
    """Chi-square per degree of freedom of a rank histogram against flat, and its outer bins'
    share relative to flat (> 1: U, too little spread; < 1: dome, too much)."""
    c = np.asarray(counts, dtype=float)
    expected = c.sum() / c.size
    return {"chi2_per_dof": float(((c - expected) ** 2 / expected).sum() / (c.size - 1)),
            "edge_ratio": float((c[0] + c[-1]) / (2 * expected))}


def checks(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per variable with every number the target names and whether it is met."""
    rows = []
    for v in VARIABLES:
        fc, ref = metrics["forecast"][v], metrics["references"]
        shape = rank_shape(metrics["curves"]["rank_histogram"][v]["forecast"])
        row = {
            "variable": v,
            "crps": fc["crps_fair"],
            "crps_oracle_ratio": fc["crps_fair"] / ref["oracle"][v]["crps_fair"],
            "crps_regression_ratio": fc["crps_fair"] / ref["regression"][v]["crps_fair"],
            "ssr": fc["ssr"],
            **shape,
            "spectral": fc["spectral_log_ratio_max"],
            "spectral_regression": ref["regression"][v]["spectral_log_ratio_max"],
            "q999_rel_error": fc["q999_rel_error"],
        }
        row["pass"] = {
            "crps_oracle": row["crps_oracle_ratio"] <= ORACLE_FACTOR[v],
            "crps_regression": row["crps_regression_ratio"] <= 0.85,
            "ssr": 0.8 <= row["ssr"] <= 1.2,
            # no U (outer bins too full: too little spread) or dome (too empty): within 25 % of flat
            "rank": 0.8 <= row["edge_ratio"] <= 1.25,
            "spectral": row["spectral"] <= 0.15,
            **({"q999": abs(row["q999_rel_error"]) <= 0.2} if v == "tp" else {}),
        }
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    spec = yaml.safe_load(args.config.read_text())
    out = args.out.absolute()
    timed = Stages()
    timings = timed.timings

    world_dir = out / "world"
    world = spec["world"]
    params = preset(world["preset"]).model_copy(update={"days": float(world["days"])})
    timed("world", world_dir / WORLD_FILE, lambda: simulate(world_dir, params, seed=world.get("seed", 0)))
    for name in ("regression", "diffusion"):
        cfg = stage_config(world_dir, spec[name], out, name)
        timed(f"train {name}", out / name / "checkpoints" / "last.ckpt", lambda cfg=cfg: train(cfg))

    score = spec["score"]
    times = world_split_times(world_dir, "test")[:: score["every"]]
    paths = {name: out / f"{name}.zarr" for name in ("regression", "diffusion", "oracle")}
    for name in ("regression", "diffusion"):
        checkpoint = out / name / "checkpoints" / "last.ckpt"
        # the config's sample section, not only the one saved in a (possibly reused) checkpoint
        sample = {**spec[name].get("sample", {}), "members": score["members"]}
        timed(f"downscale {name}", paths[name], lambda c=checkpoint, p=paths[name], s=sample: downscale(
            c, world_dir / "lr.zarr", world_dir / "static.zarr", p, sample=s, times=times))
    timed("oracle", paths["oracle"], lambda: oracle(world_dir, score["members"], paths["oracle"], times=times))
    report = out / "evaluation"
    timed("evaluate", report / "metrics.json", lambda: run_evaluate(
        paths["diffusion"], world_dir / "hr.zarr", report, lr_path=world_dir / "lr.zarr",
        references={"oracle": paths["oracle"], "regression": paths["regression"]}, name="diffusion"))

    rows = checks(json.loads((report / "metrics.json").read_text()))
    machine = describe()
    (out / "skill.json").write_text(json.dumps({"config": spec, "timings_s": timings, "machine": machine,
                                                "test_times": int(times.size), "checks": rows}, indent=1))
    print(f"\n{args.config}: {times.size} test times x {score['members']} members; {machine}")
    print("timings (min): " + ", ".join(f"{k} {v / 60:.1f}" for k, v in timings.items()))
    print("\n| variable | CRPS | / oracle | / regression | SSR | rank chi2/dof | rank edges | "
          "spectral max (regression) | q99.9 error | all met |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variable']} | {r['crps']:.4g} | {r['crps_oracle_ratio']:.2f} | {r['crps_regression_ratio']:.2f} | "
              f"{r['ssr']:.2f} | {r['chi2_per_dof']:.0f} | {r['edge_ratio']:.2f} | {r['spectral']:.3f} "
              f"({r['spectral_regression']:.3f}) | {r['q999_rel_error']:+.2f} | "
              f"{'yes' if all(r['pass'].values()) else 'no: ' + ', '.join(k for k, ok in r['pass'].items() if not ok)} |")


if __name__ == "__main__":
    main()

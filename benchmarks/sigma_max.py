"""Benchmark: the skill checks against the sampler's largest noise level, on a finished skill run.

The diffusion checkpoint of a skill run (benchmarks/skill.py) samples 16 members on a subset of
its test hours with ``sample.sigma_max`` set to each value given, everything else as in the
config's sample section, and each ensemble is scored as the skill benchmark scores it (against
the run's oracle and regression ensembles, on the same hours).

    python benchmarks/sigma_max.py --run runs/skill-cpu --config benchmarks/configs/skill-cpu.yaml \
        --sigma-max 8 20 40 80 --every 4 --out runs/sigma-max

Ensembles and evaluations already in ``--out`` are reused. Prints one row per value and
variable, and writes them to ``<out>/sigma_max.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import xarray as xr
import yaml
from machine import describe  # benchmarks/machine.py (scripts run from their folder)
from skill import checks

from finescale.evaluation import run_evaluate
from finescale.generate import downscale
from finescale.io import write_zarr
from finescale.pipeline import world_split_times


def subset(source: Path, times: np.ndarray, out: Path) -> Path:
    """The ensemble ``source`` on ``times`` only, written once to ``out``."""
    if not out.exists():
        write_zarr(xr.open_zarr(source).sel(time=times.astype("datetime64[ns]")).load(), out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="folder of a finished skill run")
    parser.add_argument("--config", type=Path, required=True, help="the skill run's config")
    parser.add_argument("--sigma-max", type=float, nargs="+", required=True)
    parser.add_argument("--every", type=int, default=4, help="every n-th of the skill run's scored hours")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    spec = yaml.safe_load(args.config.read_text())
    run, out, world = args.run.absolute(), args.out.absolute(), args.run.absolute() / "world"
    out.mkdir(parents=True, exist_ok=True)
    score = spec["score"]
    times = world_split_times(world, "test")[:: score["every"]][:: args.every]
    references = {name: subset(run / f"{name}.zarr", times, out / f"{name}.zarr") for name in ("oracle", "regression")}
    rows, seconds = [], {}
    for sigma_max in args.sigma_max:
        ensemble, report = out / f"sigma_max_{sigma_max:g}.zarr", out / f"evaluation_{sigma_max:g}"
        if not ensemble.exists():
            sample = {**spec["diffusion"].get("sample", {}), "members": score["members"], "sigma_max": sigma_max}
            start = time.perf_counter()
            downscale(run / "diffusion" / "checkpoints" / "last.ckpt", world / "lr.zarr", world / "static.zarr",
                      ensemble, sample=sample, times=times)
            seconds[f"{sigma_max:g}"] = time.perf_counter() - start
        if not (report / "metrics.json").exists():
            run_evaluate(ensemble, world / "hr.zarr", report, lr_path=world / "lr.zarr", references=references,
                         name="diffusion")
        rows += [{"sigma_max": sigma_max, **row} for row in checks(json.loads((report / "metrics.json").read_text()))]
    machine = describe()
    (out / "sigma_max.json").write_text(json.dumps(
        {"run": str(run), "config": spec, "hours": int(times.size), "sampling_s": seconds, "machine": machine,
         "rows": rows}, indent=1))
    print(f"\n{run}: {times.size} test hours x {score['members']} members; {machine}")
    print("| sigma_max | variable | CRPS / oracle | SSR | rank edges | spectral max | q99.9 error | not met |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        failed = ", ".join(k for k, ok in r["pass"].items() if not ok) or "-"
        print(f"| {r['sigma_max']:g} | {r['variable']} | {r['crps_oracle_ratio']:.3f} | {r['ssr']:.2f} | "
              f"{r['edge_ratio']:.2f} | {r['spectral']:.3f} | {r['q999_rel_error']:+.3f} | {failed} |")


if __name__ == "__main__":
    main()

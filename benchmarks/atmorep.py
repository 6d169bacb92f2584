"""Benchmark: the AtmoRep model on the Alps world — pre-training, temporal interpolation, nowcasting.

Targets (issue 5), ensembles on the test period:
- temporal interpolation: fair CRPS <= 0.7 x the MAE of linear interpolation in time, every HR field;
- nowcasting 1 hour ahead: fair CRPS <= 0.8 x the MAE of persistence (advection by the 700 hPa
  wind reported beside it), and the 2- and 3-hour leads reported;
- spread-skill ratio in [0.8, 1.2] for each task;
- the pre-training loss falls steadily (train loss in ten windows of the run, each window's mean
  below the first's; validation loss on fixed samples at its last check below its first).

    python benchmarks/atmorep.py --config benchmarks/configs/atmorep-cpu.yaml --out runs/atmorep-cpu

The config names the world and, under `pretrain`, an AtmoRep config without its `data` section
(the world's is used). Stages whose output exists are reused (delete the folder to start
again). Prints the timings, the checks and the machine, and writes them to ``<out>/atmorep.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from machine import describe  # benchmarks/machine.py (scripts run from their folder)

from finescale.atmorep.predict import predict, write_references
from finescale.atmorep.train import pretrain
from finescale.config import AtmoRepConfig, validate
from finescale.data.world import preset, simulate
from finescale.data.world.simulate import WORLD_FILE
from finescale.pipeline import world_config
from finescale.verify.evaluate import run_evaluate

VARIABLES = ["t2m", "u10", "v10", "tp"]
TARGETS = {"interpolation": ("linear", 0.7), "forecast-1h": ("persistence", 0.8)}


def loss_falls(log: Path) -> dict[str, Any]:
    """Train loss in ten windows of the run and the validation losses; 'steady' when every window's
    mean lies below the first window's and the last validation loss below the first."""
    frame = pd.read_csv(log)
    train = frame["train_loss"].dropna().to_numpy()
    windows = [float(w.mean()) for w in np.array_split(train, min(10, train.size))]
    val = frame["val_loss"].dropna().to_list()
    steady = all(w < windows[0] for w in windows[1:]) and val[-1] < val[0]
    return {"train_windows": windows, "val": val, "steady": bool(steady)}


def task_rows(metrics: dict[str, Any], task: str, reference: str | None, factor: float | None) -> list[dict[str, Any]]:
    rows = []
    for v in VARIABLES:
        fc, refs = metrics["forecast"][v], metrics["references"]
        row: dict[str, Any] = {"task": task, "variable": v, "crps": fc["crps_fair"], "ssr": fc["ssr"]}
        for name, ref in refs.items():
            row[f"mae_{name}"] = ref[v]["crps_fair"]  # one member: the CRPS is the MAE
        row["pass"] = {"ssr": 0.8 <= fc["ssr"] <= 1.2}
        if reference is not None:
            row["ratio"] = fc["crps_fair"] / refs[reference][v]["crps_fair"]
            row["pass"]["crps"] = row["ratio"] <= factor
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    spec = yaml.safe_load(args.config.read_text())
    out = args.out.absolute()
    timings: dict[str, float] = {}

    def timed(name: str, done: Path, fn: Any) -> None:
        if done.exists():
            print(f"{name}: reusing {done}", flush=True)
            return
        start = time.perf_counter()
        fn()
        timings[name] = time.perf_counter() - start
        print(f"{name}: {timings[name] / 60:.1f} min", flush=True)

    world_dir = out / "world"
    world = spec["world"]
    params = preset(world["preset"]).model_copy(update={"days": float(world["days"])})
    timed("world", world_dir / WORLD_FILE, lambda: simulate(world_dir, params, seed=world.get("seed", 0)))
    tree = {"data": world_config(world_dir).data.model_dump(mode="json"), **spec["pretrain"]}
    tree["train"] = {**tree.get("train", {}), "out": str(out / "pretrain")}
    cfg = validate(tree, AtmoRepConfig, source="pretrain section")
    checkpoint = out / "pretrain" / "checkpoints" / "last.ckpt"
    timed("pretrain", checkpoint, lambda: pretrain(cfg))

    members = spec.get("members", 16)
    runs = {"interpolation": ("interpolation", None), **{f"forecast-{k}h": ("forecast", k) for k in (1, 2, 3)}}
    rows = []
    for name, (task, lead) in runs.items():
        store, refs = out / f"{name}.zarr", out / f"{name}-references"
        timed(f"predict {name}", store, lambda t=task, k=lead, s=store: predict(checkpoint, s, t, members=members, lead=k))
        if not refs.exists():
            write_references(checkpoint, store, refs)
        report = out / f"{name}-evaluation"
        timed(f"evaluate {name}", report / "metrics.json", lambda s=store, r=refs, e=report, n=name: run_evaluate(
            s, world_dir / "hr.zarr", e, lr_path=world_dir / "lr.zarr", variables=VARIABLES, name=f"atmorep {n}",
            references={p.stem: p for p in sorted(r.glob("*.zarr"))}))
        reference, factor = TARGETS.get(name, (None, None))
        rows += task_rows(json.loads((report / "metrics.json").read_text()), name, reference, factor)

    loss = loss_falls(out / "pretrain" / "logs" / "version_0" / "metrics.csv")
    machine = describe()
    (out / "atmorep.json").write_text(json.dumps({"config": spec, "timings_s": timings, "machine": machine,
                                                  "loss": loss, "checks": rows}, indent=1))
    print(f"\n{args.config}: {members} members; {machine}")
    print("timings (min): " + ", ".join(f"{k} {v / 60:.1f}" for k, v in timings.items()))
    print(f"pre-training loss in ten windows: {' '.join(f'{w:.3f}' for w in loss['train_windows'])}; "
          f"validation {' '.join(f'{v:.3f}' for v in loss['val'])}; steady: {loss['steady']}")
    print("\n| task | variable | fair CRPS | reference MAE | CRPS / MAE | SSR | met |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        refs = ", ".join(f"{k[4:]} {v:.4g}" for k, v in r.items() if k.startswith("mae_"))
        ratio = f"{r['ratio']:.2f}" if "ratio" in r else ""
        met = "yes" if all(r["pass"].values()) else "no: " + ", ".join(k for k, ok in r["pass"].items() if not ok)
        print(f"| {r['task']} | {r['variable']} | {r['crps']:.4g} | {refs} | {ratio} | {r['ssr']:.2f} | {met} |")


if __name__ == "__main__":
    main()

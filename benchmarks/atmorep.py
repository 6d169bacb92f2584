"""Benchmark: the AtmoRep model on the Alps world — pre-training, temporal interpolation,
nowcasting.

Targets (issue 5), ensembles on the test period:
- temporal interpolation: fair CRPS <= 0.7 x the MAE of linear interpolation in time, every HR
  field;
- nowcasting 1 hour ahead: fair CRPS <= 0.8 x the MAE of persistence (advection by the 700 hPa
  wind reported beside it), and the 2- and 3-hour leads reported;
- spread-skill ratio in [0.8, 1.2] for each task;
- the pre-training loss falls steadily (train loss in ten windows of the run, each window's mean
  below the first's; validation loss on fixed samples at its last check below its first);
- downscaling (fine-tuned, `downscale` section): scored in one report beside the diffusion
  model, the regression model and the oracle of the skill benchmark on the same test hours
  (needs `--skill`: that benchmark's output folder, whose world is then used);
- bias correction (fine-tuned, `bias` section, LR grid): mean precipitation within 5 % and the
  99th percentile within 10 % of the HR truth coarsened to the LR grid, beside quantile mapping
  (fitted on the training block) and the uncorrected LR precipitation.

    python benchmarks/atmorep.py --config benchmarks/configs/atmorep-cpu.yaml \
        --out runs/atmorep-cpu \
        [--skill runs/skill-cpu] [--json docs/results/atmorep-alps-cpu.json]

The config names the world (unless `--skill` gives one) and, under `pretrain`, `downscale` and
`bias`, AtmoRep configs without their `data` section (the world's is used; the fine-tunes start
from the pre-trained checkpoint); under `tune`, per task (interpolation, forecast), overrides of
the pretrain section for a task fine-tune that then predicts that task. Stages whose output
exists and whose time is kept in ``<out>/timings.json`` are reused (delete the folder to start
again; a folder from before that file runs every stage again, so every time reported was
measured). Prints the timings, the checks and the machine, and writes them with the header of
results.py (machine, versions, date, command, load average) and the block scored
(``scored_on``: test) to ``--json`` (default ``<out>/atmorep.json``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
import yaml
from results import begin, write_results  # benchmarks/results.py (scripts run from their folder)
from stages import Stages

from finescale.atmorep.predict import predict, write_references
from finescale.atmorep.settings import AtmoRepConfig
from finescale.atmorep.train import pretrain
from finescale.config import validate
from finescale.data.world import preset, simulate
from finescale.data.world.simulate import WORLD_FILE
from finescale.evaluation import run_evaluate
from finescale.io.atomic import write_zarr
from finescale.pipeline import world_config

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


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` laid over it, section by section (one level deep)."""
    return {
        key: {**base.get(key, {}), **value} if isinstance(value, dict) else value
        for key, value in {**base, **overrides}.items()
    }


def task_rows(
    metrics: dict[str, Any], task: str, reference: str | None, factor: float | None
) -> list[dict[str, Any]]:
    rows = []
    for v in VARIABLES:
        fc, refs = metrics["forecast"][v], metrics["references"]
        row: dict[str, Any] = {
            "task": task,
            "variable": v,
            "crps": fc["crps_fair"],
            "ssr": fc["ssr"],
        }
        for name, ref in refs.items():
            row[f"ref_{name}"] = ref[v]["crps_fair"]  # the CRPS (for one member the MAE)
        row["pass"] = {"ssr": 0.8 <= fc["ssr"] <= 1.2}
        if reference is not None:
            row["ratio"] = fc["crps_fair"] / refs[reference][v]["crps_fair"]
            row["pass"]["crps"] = row["ratio"] <= factor
        rows.append(row)
    return rows


def bias_correction(checkpoint: Path, out: Path, members: int, timed: Stages) -> dict[str, Any]:
    """Predict the bias-corrected LR precipitation of the test block, write its truth (HR coarsened
    to the LR grid), quantile mapping and the uncorrected LR beside it, score all, check the
    targets."""
    from finescale.atmorep.checkpoint import load_atmorep
    from finescale.baselines import fit_quantile_mapping
    from finescale.data.grids import coarsen
    from finescale.data.pairs import open_pair, split_times
    from finescale.io.stores import forecast_dataset

    store = out / "bias.zarr"
    timed("predict bias", store, lambda: predict(checkpoint, store, "targets", members=members))
    cfg = load_atmorep(checkpoint).config
    pair = open_pair(cfg.data)
    blocks = split_times(pair.hr.time.values, cfg.data.splits)
    lr = pair.lr[["tp"]]
    truth = coarsen(pair.hr.tp, round(pair.ratio)).to_dataset(name="tp")
    truth = truth.assign_coords(lat=lr.lat, lon=lr.lon)
    paths = {
        "truth": out / "bias-truth.zarr",
        "qm": out / "bias-qm.zarr",
        "uncorrected": out / "bias-lr.zarr",
    }
    test = xr.open_zarr(store).time.values
    if not paths["truth"].exists():
        write_zarr(truth.sel(time=test).compute(), paths["truth"])
        train = blocks["train"]
        qm = fit_quantile_mapping(lr.sel(time=train), truth.sel(time=train), fit_period="train")
        write_zarr(
            forecast_dataset(
                qm.apply(lr.sel(time=test)).compute(), truth, {"title": "quantile mapping"}
            ),
            paths["qm"],
        )
        write_zarr(
            forecast_dataset(lr.sel(time=test).compute(), truth, {"title": "uncorrected LR"}),
            paths["uncorrected"],
        )
    report = out / "bias-evaluation"
    timed(
        "evaluate bias",
        report / "metrics.json",
        lambda: run_evaluate(
            store,
            paths["truth"],
            report,
            variables=["tp"],
            name="atmorep bias correction",
            references={"qm": paths["qm"], "uncorrected": paths["uncorrected"]},
        ),
    )
    metrics = json.loads((report / "metrics.json").read_text())
    true_mean = float(xr.open_zarr(paths["truth"]).tp.mean())
    rows = []
    for name, m in {
        "atmorep": metrics["forecast"]["tp"],
        **{k: v["tp"] for k, v in metrics["references"].items()},
    }.items():
        row = {
            "task": "bias",
            "variable": f"tp ({name})",
            "crps": m["crps_fair"],
            "ssr": m["ssr"],
            "mean_rel_error": m["bias_mean"] / true_mean,
            "q99_rel_error": m["q99_rel_error"],
        }
        row["pass"] = {
            "mean": abs(row["mean_rel_error"]) <= 0.05,
            "q99": abs(row["q99_rel_error"]) <= 0.10,
        }
        if name == "atmorep":
            row["pass"]["ssr"] = 0.8 <= m["ssr"] <= 1.2
        rows.append(row)
    return {"rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--skill", type=Path, help="output folder of benchmarks/skill.py: its world and ensembles"
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="results (default <out>/atmorep.json)"
    )
    args = parser.parse_args()
    run = begin()
    spec = yaml.safe_load(args.config.read_text())
    out = args.out.absolute()
    timed = Stages(out / "timings.json")  # reused stages keep the time they took
    timings = timed.timings

    if args.skill is not None:
        world_dir = args.skill.absolute() / "world"
    else:
        world_dir = out / "world"
        world = spec["world"]
        params = preset(world["preset"]).model_copy(update={"days": float(world["days"])})
        timed(
            "world",
            world_dir / WORLD_FILE,
            lambda: simulate(world_dir, params, seed=world.get("seed", 0)),
        )
    data = world_config(world_dir).data.model_dump(mode="json")

    def stage(name: str, init: Path | None = None, section: dict[str, Any] | None = None) -> Path:
        section = spec[name] if section is None else section
        tree = {"data": data, **section, **({"init_checkpoint": str(init)} if init else {})}
        tree["train"] = {**tree.get("train", {}), "out": str(out / name)}
        cfg = validate(tree, AtmoRepConfig, source=f"{name} section")
        last = out / name / "checkpoints" / "last.ckpt"
        timed(name, last, lambda: pretrain(cfg))
        return last

    checkpoint = stage("pretrain")
    # a task fine-tune, where the config has one, is the pretrain section with its overrides
    tuned = {
        task: stage(f"tune-{task}", checkpoint, merge(spec["pretrain"], overrides))
        for task, overrides in spec.get("tune", {}).items()
    }

    members, stride = spec.get("members", 16), spec.get("stride")
    for task in ("interpolation", "forecast"):
        store, model = out / f"{task}.zarr", tuned.get(task, checkpoint)
        timed(
            f"predict {task}",
            store,
            lambda t=task, s=store, m=model: predict(m, s, t, members=members, stride=stride),
        )
    forecast = xr.open_zarr(out / "forecast.zarr")
    leads = len(json.loads(forecast.attrs["hidden_hours"]))
    for k in range(1, leads + 1):  # one store per lead: the k-th hidden hour of every neighbourhood
        if not (out / f"forecast-{k}h.zarr").exists():
            subset = forecast.isel(time=slice(k - 1, None, leads)).assign_attrs(lead_hours=str(k))
            for variable in subset.variables.values():
                variable.encoding = {}
            write_zarr(subset, out / f"forecast-{k}h.zarr")
    rows = []
    for name in ["interpolation", *(f"forecast-{k}h" for k in range(1, leads + 1))]:
        store, refs = out / f"{name}.zarr", out / f"{name}-references"
        if not refs.exists():
            write_references(checkpoint, store, refs)
        report = out / f"{name}-evaluation"
        timed(
            f"evaluate {name}",
            report / "metrics.json",
            lambda s=store, r=refs, e=report, n=name: run_evaluate(
                s,
                world_dir / "hr.zarr",
                e,
                lr_path=world_dir / "lr.zarr",
                variables=VARIABLES,
                name=f"atmorep {n}",
                references={p.stem: p for p in sorted(r.glob("*.zarr"))},
            ),
        )
        reference, factor = TARGETS.get(name, (None, None))
        rows += task_rows(
            json.loads((report / "metrics.json").read_text()), name, reference, factor
        )

    if "downscale" in spec and args.skill is not None:
        tuned = stage("downscale", checkpoint)
        store = out / "downscale.zarr"
        timed("predict downscale", store, lambda: predict(tuned, store, "targets", members=members))
        report = out / "downscale-evaluation"
        skill = args.skill.absolute()
        timed(
            "evaluate downscale",
            report / "metrics.json",
            lambda: run_evaluate(
                store,
                world_dir / "hr.zarr",
                report,
                lr_path=world_dir / "lr.zarr",
                variables=VARIABLES,
                name="atmorep downscaling",
                references={n: skill / f"{n}.zarr" for n in ("diffusion", "regression", "oracle")},
            ),
        )
        rows += task_rows(
            json.loads((report / "metrics.json").read_text()), "downscale", None, None
        )
    bias = None
    if "bias" in spec:
        tuned = stage("bias", checkpoint)
        bias = bias_correction(tuned, out, members, timed)
        rows += bias["rows"]

    loss = loss_falls(out / "pretrain" / "logs" / "version_0" / "metrics.csv")
    world_json = json.loads((world_dir / WORLD_FILE).read_text())
    path = write_results(
        args.json or out / "atmorep.json",
        run,
        {
            "config": spec,
            "timings_s": timings,
            "scored_on": "test",
            "world": {
                "path": str(world_dir),
                "seed": world_json["seed"],
                "times": world_json["times"],
            },
            "loss": loss,
            "checks": rows,
        },
    )
    machine = json.loads(path.read_text())["machine"]
    print(f"\n{args.config}: {members} members; {machine}")
    print("timings (min): " + ", ".join(f"{k} {v / 60:.1f}" for k, v in timings.items()))
    print(
        f"pre-training loss in ten windows: {' '.join(f'{w:.3f}' for w in loss['train_windows'])}; "
        f"validation {' '.join(f'{v:.3f}' for v in loss['val'])}; steady: {loss['steady']}"
    )
    print(
        "\n| task | variable | fair CRPS | references (CRPS; MAE for one member) | "
        "CRPS / target reference | SSR | met |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        refs = ", ".join(f"{k[4:]} {v:.4g}" for k, v in r.items() if k.startswith("ref_"))
        if "mean_rel_error" in r:
            refs = f"mean {r['mean_rel_error']:+.3f}, q99 {r['q99_rel_error']:+.3f}"
        ratio = f"{r['ratio']:.2f}" if "ratio" in r else ""
        met = (
            "yes"
            if all(r["pass"].values())
            else "no: " + ", ".join(k for k, ok in r["pass"].items() if not ok)
        )
        ssr = "" if r["ssr"] is None else f"{r['ssr']:.2f}"  # none for one member
        print(
            f"| {r['task']} | {r['variable']} | {r['crps']:.4g} | {refs} | {ratio} | {ssr} | "
            f"{met} |"
        )


if __name__ == "__main__":
    main()

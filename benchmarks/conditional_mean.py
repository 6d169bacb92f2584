"""Benchmark: how close the learned conditional mean is to the exact one (issue 17), on validation.

A diffusion ensemble's members are the regression's mu plus a learned residual, so where the
members put the rain starts from mu. The oracle's members are exact samples of p(HR | LR): their
variance over members is Var(y | LR), and its mean over points and times is the least squared
error any prediction of the HR field can reach (that of E[y | LR]). For the run's regression and
each variant (overrides of its config as its checkpoint stores it, trained with the same steps
and seed into ``OUT/<variant>``) this scores, per variable and in the space the networks learn
(after the variable's transform, e.g. log1p for precipitation, before standardisation):

    excess = MSE(mu, truth) / mean oracle variance     (1: the exact conditional mean)

with a 95 % moving-block bootstrap interval over days, in total and per elevation band of the
HR terrain (the config's ``elevation_edges_m``), on every ``every``-th hour of the world's
**validation** block (the test block is not read; the config's ``split: train`` scores hours of
the training block instead: a model that scores the same on hours it learned from is
underfitted rather than short of data). The config's ``ensembles`` (name: path of an
ensemble on the same hours, relative to where the script runs, e.g. a remedy screen's
``diffusion.zarr``) are scored the same way by their members' mean: where it stays at mu's score,
the residual model does not move the centre (an exact M-member ensemble's mean scores 1 + 1/M).

    cd benchmarks && python conditional_mean.py --run ../runs/teacher-cpu/dev \\
        --config configs/conditional-mean-teacher-cpu.yaml --out ../runs/conditional-mean \\
        --json ../docs/results/conditional-mean-teacher-cpu.json

Stages whose output exists are reused; their times are in ``OUT/timings.json``.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import yaml
from remedies import screen_arguments, variant_checkpoint
from results import begin, write_results  # benchmarks/results.py (scripts run from their folder)
from skill import VARIABLES
from stages import Stages

from finescale.data.transforms import forward_transform
from finescale.data.world.simulate import oracle
from finescale.generation import downscale
from finescale.pipeline import world_config, world_split_times
from finescale.verify import intervals
from finescale.verify.fields import area_weights


def daily_sums(
    predicted: xr.Dataset,
    members: xr.Dataset,
    truth: xr.Dataset,
    transforms: dict[str, Any],
    band: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per day and variable: the area-weighted squared error of ``predicted`` (its members'
    mean, taken in the transformed space) and the oracle ``members``' unbiased variance, both
    summed over points and the day's times, in each variable's transformed space.

    ``band``: an optional integer label per point (y, x), 0 to B - 1 (e.g. an elevation band);
    the same sums per label are kept as ``{v}.squared_error.by_band`` and
    ``{v}.variance.by_band``, arrays of B per day."""
    weights = np.asarray(area_weights(truth["lat"].values))
    n_bands = 0 if band is None else int(band.max()) + 1
    per_time = []
    for t in truth.time.values:
        sums = {}
        for v in VARIABLES:
            tf = transforms.get(v)
            y = forward_transform(truth[v].sel(time=t).values, tf, name=v)
            mu = forward_transform(predicted[v].sel(time=t).values, tf, name=v).mean(axis=0)
            ens = forward_transform(members[v].sel(time=t).values, tf, name=v)
            for key, field in (
                ("squared_error", weights * (mu - y) ** 2),
                ("variance", weights * ens.var(axis=0, ddof=1)),
            ):
                sums[f"{v}.{key}"] = np.sum(field, dtype=np.float64)
                if band is not None:
                    by_band = np.bincount(band.ravel(), field.ravel(), minlength=n_bands)
                    sums[f"{v}.{key}.by_band"] = by_band
        per_time.append(sums)
    return intervals.daily(per_time, truth.time.values)


def excess(v: str, band: int | None = None) -> Any:
    """Score: squared error of the prediction over the oracle's variance, variable ``v`` (over
    the points of one ``band`` where given)."""
    if band is None:
        return lambda s: s[f"{v}.squared_error"] / s[f"{v}.variance"]
    return lambda s: (
        s[f"{v}.squared_error.by_band"][..., band] / s[f"{v}.variance.by_band"][..., band]
    )


def main() -> None:
    args = screen_arguments(__doc__, "results.json")
    started = begin()
    spec = yaml.safe_load(args.config.read_text())
    run_dir, out = args.run.absolute(), args.out.absolute()
    world_dir = run_dir / "world"
    transforms = dict(world_config(world_dir).data.transforms)
    timed = Stages(out / "timings.json")
    split = spec.get("split", "validation")
    if split not in ("validation", "train"):
        raise ValueError(
            f"{args.config}: split {split!r} must be 'validation' or 'train' (the test block is "
            "scored once, by skill.py)"
        )
    times = world_split_times(world_dir, split)[:: spec["every"]]
    suffix = "" if split == "validation" else f"-{split}"  # beside the validation hours' stages

    oracle_path = out / "references" / f"oracle{suffix}.zarr"
    timed(
        f"oracle{suffix}",
        oracle_path,
        lambda: oracle(world_dir, spec["members"], oracle_path, times=times),
    )
    members = xr.open_zarr(oracle_path)
    truth = xr.open_zarr(world_dir / "hr.zarr")[list(VARIABLES)].sel(time=members.time).load()

    # elevation bands of the HR grid (m): where the orographic rain is, the error is
    edges = np.asarray(spec.get("elevation_edges_m", []), dtype=float)
    orog = xr.open_zarr(world_dir / "static.zarr")["orog"].values
    band = np.digitize(orog, edges)
    limits = [None, *edges.tolist(), None]  # open ends

    days = np.unique(members.time.values.astype("datetime64[D]"))
    counts = intervals.bootstrap_counts(np.zeros(days.size), spec["block_days"], spec["resamples"])

    def scored(name: str, path: Path) -> list[dict[str, Any]]:
        """Every variable's ratio with its interval, for the prediction at ``path``."""
        predicted = xr.open_zarr(path)
        missing = np.setdiff1d(members.time.values, predicted.time.values)
        if missing.size:
            raise ValueError(
                f"{path}: {missing.size} of the {members.time.size} scored {split} times are "
                f"missing (first {missing[0]}); it must be on every {spec['every']}th one"
            )
        sums, _ = daily_sums(predicted.load(), members, truth, transforms, band)
        rows = []
        for v in VARIABLES:
            ratio = intervals.interval(excess(v), sums, counts)
            by_elevation = [
                {  # an open end has no bound: the key is left out, not written as null
                    **({} if lo is None else {"from_m": lo}),
                    **({} if hi is None else {"to_m": hi}),
                    "excess": intervals.interval(excess(v, b), sums, counts).as_dict(),
                }
                for b, (lo, hi) in enumerate(pairwise(limits))
            ]
            rows.append({"variable": v, "excess": ratio.as_dict(), "by_elevation": by_elevation})
            ci = ratio.ci95 or (float("nan"), float("nan"))
            bands = ", ".join(f"{b['excess']['value']:.2f}" for b in by_elevation)
            print(
                f"{name} {v}: MSE / oracle variance {ratio.value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
                f"; by elevation band {bands}"
            )
        return rows

    results = []
    for name, overrides in spec["variants"].items():
        checkpoint = variant_checkpoint(
            run_dir, out, name, overrides or {}, timed, stage="regression"
        )
        path = out / name / f"regression{suffix}.zarr"
        timed(
            f"downscale {name}{suffix}",
            path,
            lambda c=checkpoint, p=path: downscale(
                c,
                world_dir / "lr.zarr",
                world_dir / "static.zarr",
                p,
                sample={"members": 1},
                times=times,
            ),
        )
        rows = scored(name, path)
        results.append({"variant": name, "overrides": overrides, "rows": rows})
    for name, path in spec.get("ensembles", {}).items():
        results.append({"ensemble": name, "path": path, "rows": scored(name, Path(path))})

    write_results(
        args.json or out / "results.json",
        started,
        {
            "config": spec,
            "selected_on": split,
            "world": str(world_dir),
            f"{split}_times": int(times.size),
            "days": int(days.size),
            "oracle_members": spec["members"],
            "space": "each variable's transform (log1p for precipitation), before standardisation",
            "results": results,
            "timings_s": timed.timings,
        },
    )


if __name__ == "__main__":
    main()

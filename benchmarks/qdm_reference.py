"""Benchmark: finescale's quantile delta mapping (QDM) against xsdba's, on a finished demo run.

Question: is the demo's QDM precipitation q99.9 (+38 % against the truth, QM -29 %) a bug in
``finescale.baselines.qdm`` or a documented choice? The same inputs as ``finescale baseline
--method qdm`` (:func:`finescale.baselines.run_baseline`): the LR bilinearly interpolated to the
HR grid on the training block (F_h) and on the test block (F_p, the values mapped), the HR truth
on the training block (F_o); every ``--stride``-th HR point in each direction (QDM is per point,
so a subsample gives exactly the values of the full run there, checked against the run's
``qdm.zarr``). The default, 1, is the whole grid (80 x 200 points on the demo; the three stages
take about two minutes on one thread): q99.9 over the 32 scored times rests on a few hundred
values and moves by some 10 points of percentage on every 4th point in each direction. Three
stages, because xsdba lives in its own virtual environment:

1. ``prepare`` (finescale's venv): the inputs and finescale's QDM and QM (read from the run's
   stores, and QDM recomputed on the subsample) saved to ``--work``/inputs.npz;
2. ``reference`` (xsdba's venv, ``--xsdba-python``): ``xsdba.QuantileDeltaMapping`` per point,
   group "time", kind "+" for t2m/u10/v10 and "*" for tp, as
   ``defaults`` (20 quantiles at (i + 0.5) / 20, nearest, constant extrapolation),
   ``q101_linear`` (101 quantiles at (i + 0.5) / 101, linear) and ``q101_ends_linear`` (101
   quantiles at k / 100, the minimum and maximum included as finescale's tables do, linear);
   written to ``--work``/xsdba.npz;
3. ``report`` (finescale's venv): per variable and method, the q99 / q99.9 relative error and
   the MAE against the test block's truth (all test times and the evaluation's scored times,
   pooled over the points, weighted by cos(latitude) as ``finescale evaluate``), the pointwise
   difference from finescale's QDM, and for tp the diagnosis of where they differ; written
   with :mod:`results` to ``--json``.

    .venv/bin/python benchmarks/qdm_reference.py --run outputs/demo \\
        --xsdba-python ENV/bin/python --json docs/results/qdm-reference-cpu.json

runs the three stages (the second in a child process of ``--xsdba-python``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

VARIABLES = ("t2m", "u10", "v10", "tp")
PRECIPITATION = "tp"
LEVELS = {"q99": 0.99, "q999": 0.999}
#: xsdba settings: name -> (train keywords, adjust keywords); nquantiles "ends" means
#: np.linspace(0, 1, 101), finescale's probabilities (minimum and maximum included).
XSDBA_VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "defaults": ({}, {}),
    "q101_linear": ({"nquantiles": 101}, {"interp": "linear"}),
    "q101_ends_linear": ({"nquantiles": "ends"}, {"interp": "linear"}),
}


# --------------------------------------------------------------------------------------------
# stage 1: finescale's inputs and outputs (finescale's venv)


def prepare(run: Path, stride: int, work: Path) -> None:
    """Save the subsampled QDM inputs, the test truth and finescale's QDM/QM to inputs.npz."""
    import xarray as xr

    from finescale.baselines import fit_quantile_delta_mapping
    from finescale.baselines.interpolation import interpolation
    from finescale.config import load_config
    from finescale.data.pairs import open_pair, split_block

    cfg = load_config(run / "world" / "finescale.yaml").data
    pair = open_pair(cfg)
    sub = {"y": slice(None, None, stride), "x": slice(None, None, stride)}
    lr, hr = pair.lr[list(VARIABLES)], pair.hr[list(VARIABLES)]
    all_times = hr["time"].values
    train = split_block(all_times, cfg.splits, "train")
    test = split_block(all_times, cfg.splits, "test")
    hr_sub = hr.isel(sub)
    # Bilinear interpolation is per target point: onto the subsampled HR grid it gives the
    # full grid's values there.
    model_train = interpolation(lr.sel(time=train), hr_sub).compute()
    model_test = interpolation(lr.sel(time=test), hr_sub).compute()
    truth_train = hr_sub.sel(time=train).compute()
    rerun = fit_quantile_delta_mapping(model_train, truth_train).apply(model_test)
    stores = {m: xr.open_zarr(run / f"{m}.zarr").isel(member=0, **sub) for m in ("qdm", "qm")}
    scored = xr.open_zarr(run / "diffusion.zarr")["time"].values  # the evaluation's times
    arrays: dict[str, np.ndarray] = {
        "train_times": train.astype("datetime64[ns]").astype(np.int64),
        "test_times": test.astype("datetime64[ns]").astype(np.int64),
        "scored": np.isin(test, scored),
        "weight": np.cos(np.deg2rad(hr_sub["lat"].values)).ravel(),  # area of a lat-lon cell
    }
    for name in VARIABLES:
        arrays[f"{name}.model_train"] = _flat(model_train[name])
        arrays[f"{name}.truth_train"] = _flat(truth_train[name])
        arrays[f"{name}.model_test"] = _flat(model_test[name])
        arrays[f"{name}.truth_test"] = _flat(hr_sub[name].sel(time=test))
        arrays[f"{name}.finescale_qdm_rerun"] = _flat(rerun[name])
        for method, ds in stores.items():
            arrays[f"{name}.finescale_{method}"] = _flat(ds[name].sel(time=test))
    units = {name: str(hr[name].attrs.get("units", "")) for name in VARIABLES}
    meta = {
        "run": str(run),
        "stride": stride,
        "grid": [hr.sizes["y"], hr.sizes["x"]],
        "points": int(arrays["tp.truth_test"].shape[1]),
        "units": units,
        "train": [str(train[0]), str(train[-1]), int(train.size)],
        "test": [str(test[0]), str(test[-1]), int(test.size)],
        "scored_times": int(arrays["scored"].sum()),
    }
    work.mkdir(parents=True, exist_ok=True)
    np.savez(work / "inputs.npz", meta=json.dumps(meta), **arrays)


def _flat(da: Any) -> np.ndarray:
    """(time, y, x) -> (time, points) float64."""
    values = np.asarray(da.transpose("time", "y", "x").values, dtype=np.float64)
    return values.reshape(values.shape[0], -1)


# --------------------------------------------------------------------------------------------
# stage 2: xsdba (its own venv)


def reference(work: Path) -> None:
    """xsdba's QDM of every variant in XSDBA_VARIANTS, from inputs.npz to xsdba.npz."""
    import warnings

    import xarray as xr
    import xsdba

    data = np.load(work / "inputs.npz")
    meta = json.loads(str(data["meta"]))
    out: dict[str, np.ndarray] = {}

    def series(values: np.ndarray, times: np.ndarray, units: str) -> xr.DataArray:
        return xr.DataArray(
            values,
            dims=("time", "site"),
            coords={"time": times.astype("datetime64[ns]")},
            attrs={"units": units},
        )

    for name in VARIABLES:
        units = meta["units"][name].replace("mm h-1", "mm/h")
        ref = series(data[f"{name}.truth_train"], data["train_times"], units)
        hist = series(data[f"{name}.model_train"], data["train_times"], units)
        sim = series(data[f"{name}.model_test"], data["test_times"], units)
        kind = "*" if name == PRECIPITATION else "+"
        for variant, (train_kw, adjust_kw) in XSDBA_VARIANTS.items():
            train_kw = dict(train_kw)
            if train_kw.get("nquantiles") == "ends":
                train_kw["nquantiles"] = np.linspace(0.0, 1.0, 101)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # 0/0 factors at dry quantiles
                qdm = xsdba.QuantileDeltaMapping.train(
                    ref, hist, kind=kind, group="time", **train_kw
                )
                scen = qdm.adjust(sim, **adjust_kw)
            out[f"{name}.xsdba_{variant}"] = np.asarray(
                scen.transpose("time", "site").values, dtype=np.float64
            )
    out["xsdba_version"] = np.asarray(xsdba.__version__)
    np.savez(work / "xsdba.npz", **out)


# --------------------------------------------------------------------------------------------
# stage 3: scores and diagnosis (finescale's venv)


def _weighted_quantile(values: np.ndarray, weights: np.ndarray, p: float) -> float:
    """The value where the weighted distribution of ``values`` reaches ``p`` (as metrics.json)."""
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative / cumulative[-1], p)])


def _scores(y: np.ndarray, truth: np.ndarray, weight: np.ndarray) -> dict[str, float]:
    """(time, points) -> relative error of the pooled q99 / q99.9 against the truth's, and the
    MAE, weighted by ``weight`` (points,) as the evaluation does; NaN skipped, counted."""
    ok = np.isfinite(y)
    w = np.broadcast_to(weight, y.shape)[ok]
    scores = {
        f"{key}_rel_error": _weighted_quantile(y[ok], w, p) / _weighted_quantile(truth[ok], w, p)
        - 1
        for key, p in LEVELS.items()
    }
    scores["mae"] = float(np.sum(w * np.abs(y[ok] - truth[ok])) / np.sum(w))
    scores["nan_values"] = int((~ok).sum())
    return scores


def _both(y: np.ndarray, truth: np.ndarray, data: Any) -> dict[str, dict[str, float]]:
    """Scores over every test time and over the evaluation's scored times."""
    scored, weight = data["scored"], data["weight"]
    return {
        "all_test_times": _scores(y, truth, weight),
        "scored_times": _scores(y[scored], truth[scored], weight),
    }


def _difference(y: np.ndarray, finescale: np.ndarray) -> dict[str, float]:
    """Pointwise difference y - finescale's QDM: mean, mean and max absolute, quantiles."""
    ok = np.isfinite(y) & np.isfinite(finescale)
    d = y[ok] - finescale[ok]
    a = np.abs(d)
    return {
        "mean": float(d.mean()),
        "mean_abs": float(a.mean()),
        "abs_q99": float(np.quantile(a, 0.99)),
        "max_abs": float(a.max()),
        "rms": float(np.sqrt(np.mean(d**2))),
    }


def report(work: Path, path: Path, run_header: dict[str, Any]) -> dict[str, Any]:
    """Scores of every method and the diagnosis; written to ``path`` with :mod:`results`."""
    from results import write_results

    data = np.load(work / "inputs.npz")
    ref = np.load(work / "xsdba.npz")
    meta = json.loads(str(data["meta"]))
    methods = ["finescale_qdm", *(f"xsdba_{v}" for v in XSDBA_VARIANTS), "finescale_qm"]
    table: dict[str, Any] = {}
    consistency: dict[str, Any] = {}
    for name in VARIABLES:
        truth = data[f"{name}.truth_test"]
        fs = data[f"{name}.finescale_qdm"]
        outputs = {
            m: data[f"{name}.{m}"] if m.startswith("finescale") else ref[f"{name}.{m}"]
            for m in methods
        }
        consistency[name] = float(np.nanmax(np.abs(data[f"{name}.finescale_qdm_rerun"] - fs)))
        table[name] = {
            m: {**_both(y, truth, data), "difference_from_finescale_qdm": _difference(y, fs)}
            for m, y in outputs.items()
        }
    results = {
        "setup": {
            **meta,
            "xsdba_version": str(ref["xsdba_version"]),
            "xsdba_variants": {
                k: {
                    "train": {
                        "nquantiles": t.get("nquantiles", 20),
                        "group": "time",
                        "kind": "* for tp, + otherwise",
                    },
                    "adjust": {"interp": a.get("interp", "nearest"), "extrapolation": "constant"},
                }
                for k, (t, a) in XSDBA_VARIANTS.items()
            },
            "nquantiles": "an integer n: xsdba's nodes (i + 0.5) / n, i = 0..n-1; 'ends': "
            "np.linspace(0, 1, 101), finescale's probabilities (training minimum and maximum "
            "included)",
            "percentiles": "pooled over the (subsampled) points and the times, each point "
            "weighted by cos(latitude) as in metrics.json: the value where the weighted "
            "distribution reaches the level",
            "max_abs_qdm_rerun_minus_store": consistency,
        },
        "scores": table,
        "diagnosis": diagnose(data),
    }
    write_results(path, run_header, results)
    return results


def diagnose(data: Any) -> dict[str, Any]:
    """Where the tp tails of the two implementations part: finescale's own QDM kernel run with
    tables at other probabilities (numpy 'linear' quantiles, as finescale's), and what the
    probability p = 1 (the training maxima) contributes."""
    from finescale.baselines.qdm import _delta_map_block
    from finescale.baselines.quantiles import WET_THRESHOLD

    meta = json.loads(str(data["meta"]))
    if meta["units"][PRECIPITATION] != WET_THRESHOLD[1]:
        raise ValueError(f"tp in {meta['units'][PRECIPITATION]}, the diagnosis expects mm h-1")
    threshold = WET_THRESHOLD[0]
    x, truth = data["tp.model_test"], data["tp.truth_test"]
    model_train, truth_train = data["tp.model_train"], data["tp.truth_train"]

    def kernel(probabilities: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """finescale's QDM of x with (points, K) tables at ``probabilities``."""
        p, h, o = (np.quantile(v, probabilities, axis=0).T for v in (x, model_train, truth_train))
        o = np.where(o < threshold, 0.0, o)  # dry truth quantiles, as fit_quantile_mapping
        y = _delta_map_block(x[:, None, :], p[None], h[None], o[None], threshold)[:, 0, :]
        return y.astype(np.float64), {"h": h, "o": o}

    k = 101
    same, tables = kernel(np.linspace(0.0, 1.0, k))
    h, o = tables["h"], tables["o"]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio_max = np.where(h[:, -1] > 0, o[:, -1] / h[:, -1], np.nan)
        ratio_q99 = np.where(h[:, 99] > 0, o[:, 99] / h[:, 99], np.nan)
    above = same > np.quantile(truth, 0.999)
    top = x == x.max(axis=0)  # tau = 1: read at the training maxima
    no_max, _ = kernel(np.linspace(0.0, 0.99, 100))
    mid_nodes, _ = kernel((np.arange(k) + 0.5) / k)
    return {
        "kernel_on_numpy_tables_minus_store_max_abs": float(
            np.nanmax(np.abs(same - data["tp.finescale_qdm"]))
        ),
        "values_above_truth_q999_all_times_unweighted": int(above.sum()),
        "share_of_them_at_their_points_test_maximum": float((above & top).sum() / above.sum()),
        "training_ratio_truth_over_model_at_p1": {
            "median": float(np.nanmedian(ratio_max)),
            "q90": float(np.nanquantile(ratio_max, 0.9)),
            "max": float(np.nanmax(ratio_max)),
        },
        "training_ratio_truth_over_model_at_p099_median": float(np.nanmedian(ratio_q99)),
        "finescale_kernel_p_0_to_0.99": _both(no_max, truth, data),
        "finescale_kernel_xsdba_nodes_101": _both(mid_nodes, truth, data),
    }


# --------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "stage", nargs="?", default="all", choices=["all", "prepare", "reference", "report"]
    )
    parser.add_argument(
        "--run",
        type=Path,
        default=Path("outputs/demo"),
        help="a finished `finescale demo` output folder (read only; default: make demo's)",
    )
    parser.add_argument("--stride", type=int, default=1, help="every n-th HR point in y and x")
    parser.add_argument(
        "--work",
        type=Path,
        default=Path("/tmp/qdm-reference"),
        help="folder of the intermediate .npz files",
    )
    parser.add_argument(
        "--xsdba-python",
        required=True,
        help="python of a separate virtual environment with xsdba installed "
        "(python3 -m venv ENV && ENV/bin/pip install xsdba)",
    )
    parser.add_argument("--json", type=Path, default=Path("runs/benchmarks/qdm-reference.json"))
    args = parser.parse_args()
    if args.stage == "reference":
        reference(args.work)
        return
    from results import begin

    header = begin()
    if args.stage in ("all", "prepare"):
        prepare(args.run, args.stride, args.work)
    if args.stage == "all":
        command = [args.xsdba_python, __file__, "reference", "--work", str(args.work)]
        subprocess.run(command, check=True, env={**os.environ, "PYTHONPATH": ""})
    if args.stage in ("all", "report"):
        results = report(args.work, args.json, header)
        print_table(results["scores"])


def print_table(scores: dict[str, Any]) -> None:
    """Markdown table: variable x method, q99 / q99.9 relative error and MAE over every test
    time and (in brackets) over the evaluation's scored times; mean |difference| from finescale's
    QDM."""
    print("| variable | method | q99 rel. error | q99.9 rel. error | MAE | mean abs diff |")
    print("|---|---|---|---|---|---|")
    for name, methods in scores.items():
        for method, s in methods.items():
            a, b = s["all_test_times"], s["scored_times"]
            cells = [
                f"{a[key]:+.3f} ({b[key]:+.3f})" for key in ("q99_rel_error", "q999_rel_error")
            ]
            diff = s["difference_from_finescale_qdm"]["mean_abs"]
            print(
                f"| {name} | {method} | {' | '.join(cells)} | {a['mae']:.4g} ({b['mae']:.4g}) "
                f"| {diff:.3g} |"
            )


if __name__ == "__main__":
    sys.exit(main())

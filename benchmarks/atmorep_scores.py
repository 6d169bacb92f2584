"""Scores of the AtmoRep held-out benchmark (benchmarks/atmorep.py): per-day sums of every source,
the figures with their block-bootstrap intervals (:mod:`finescale.verify.intervals`), the goals of
issue 19, and the rule that chooses between candidates on validation.

Sums are keyed ``<source>.<variable>.<sum>``; the sources of a task are ``ours`` (the AtmoRep model
chosen on validation), ``scratch`` (the same network trained from scratch on the task alone) and
the references (one-member stores score their MAE as the CRPS). A figure is
``{"value": x, "ci95": [lo, hi] or None}``: the score of all days and its 2.5-97.5 % range over
resamples of whole days (worlds as strata).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from finescale.verify import intervals
from finescale.verify.fields import area_weights

Sums = dict[str, np.ndarray]
#: edges (mm/h) of the histograms behind the precipitation quantiles of bias correction: [0, 1e-3)
#: then 4096 logarithmic bins up to 300 mm/h (0.3 % wide, values above counted in the last), so a
#: resample's quantile is a sum of daily histograms; linear within a bin, off by far less than 0.3 %
EDGES = np.concatenate([[0.0], np.geomspace(1e-3, 300.0, 4097)])


def histogram(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted counts of ``values`` (any shape, >= 0) in the bins of :data:`EDGES`."""
    index = np.clip(np.searchsorted(EDGES, values.ravel(), side="right") - 1, 0, EDGES.size - 2)
    return np.bincount(index, weights=weights.ravel(), minlength=EDGES.size - 1)


def histogram_quantile(counts: np.ndarray, q: float) -> np.ndarray:
    """Quantile ``q`` of weighted histograms on :data:`EDGES`, (..., bins) -> (...); the weight of
    a bin spread evenly across it."""
    cumulative = np.cumsum(counts, axis=-1)
    target = q * cumulative[..., -1:]
    b = np.minimum((cumulative < target).sum(axis=-1, keepdims=True), counts.shape[-1] - 1)
    inside = np.take_along_axis(counts, b, -1)
    below = np.take_along_axis(cumulative, b, -1) - inside
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = np.clip((target - below) / inside, 0.0, 1.0)
    value = EDGES[b] + fraction * (EDGES[b + 1] - EDGES[b])
    return value[..., 0]


def day_sums(
    stores: Mapping[str, Path],
    truth: xr.Dataset,
    variables: Sequence[str],
    times: np.ndarray,
    *,
    power: Callable[[np.ndarray], np.ndarray] | None = None,
    thresholds: Mapping[str, Mapping[str, float]] | None = None,
    bias: bool = False,
    seed: int = 0,
    chunk: int = 8,
) -> tuple[Sums, np.ndarray]:
    """Per-day sums of every store's ensemble against ``truth`` at ``times``.

    ``stores``: source name -> (member, time, y, x) store on the truth's grid; ``truth``: (time,
    y, x) fields with 2-D ``lat`` (degrees; cos-latitude area weights). ``power`` and
    ``thresholds`` (variable -> name -> value) as :func:`finescale.verify.intervals.time_sums`.
    ``bias``: also ``mean`` and ``mean_truth`` (weighted sums of the ensemble mean and of the
    truth) and ``hist`` and ``hist_truth`` (weighted histograms on :data:`EDGES`, members pooled,
    each member weighted 1 / M); ``hours``: the hours scored. Times are read ``chunk`` at a time.
    Returns the sums with a leading day axis and the days (datetime64[D]).
    """
    times = np.sort(np.asarray(times, dtype="datetime64[ns]"))
    opened = {name: xr.open_zarr(path) for name, path in stores.items()}
    weights = np.asarray(area_weights(np.asarray(truth["lat"].values, dtype=float)))
    rng = np.random.default_rng(seed)
    per_time: list[dict[str, np.ndarray]] = []
    for start in range(0, times.size, chunk):
        block = times[start : start + chunk]
        sums: list[dict[str, np.ndarray]] = [{} for _ in block]
        for v in variables:
            y = truth[v].sel(time=block).transpose("time", "y", "x").values.astype(np.float64)
            for name, ds in opened.items():
                x = ds[v].sel(time=block).transpose("member", "time", "y", "x").values
                x = x.astype(np.float64)
                for i in range(block.size):
                    found = intervals.time_sums(
                        x[:, i],
                        y[i],
                        weights,
                        rng,
                        band_power=power,
                        thresholds=None if thresholds is None else thresholds[v],
                    )
                    if bias:
                        m = x.shape[0]
                        found["mean"] = np.asarray(x[:, i].mean(axis=0).ravel() @ weights.ravel())
                        found["mean_truth"] = np.asarray(y[i].ravel() @ weights.ravel())
                        found["hist"] = histogram(
                            x[:, i], np.broadcast_to(weights / m, x[:, i].shape)
                        )
                        found["hist_truth"] = histogram(y[i], weights)
                    sums[i].update({f"{name}.{v}.{k}": value for k, value in found.items()})
        for s in sums:
            s["hours"] = np.asarray(1.0)  # hours scored per day, once summed
        per_time += sums
    return intervals.daily(per_time, times)


def save_sums(path: Path, sums: Sums, days: np.ndarray) -> None:
    """Write daily sums and their days to ``path`` (.npz), whole or not at all."""
    partial = path.with_name(path.name + ".partial.npz")
    np.savez(partial, days=days.astype("datetime64[D]").astype(np.int64), **sums)
    partial.replace(path)


def load_sums(path: Path) -> tuple[Sums, np.ndarray]:
    """Daily sums and days written by :func:`save_sums`."""
    with np.load(path) as f:
        sums = {k: f[k] for k in f.files if k != "days"}
        return sums, f["days"].astype("datetime64[D]")


def pool(parts: Sequence[tuple[Sums, np.ndarray]]) -> tuple[Sums, np.ndarray]:
    """Daily sums of several worlds stacked (keys every world has), and each day's world."""
    keys = set.intersection(*(set(s) for s, _ in parts))
    sums = {k: np.concatenate([s[k] for s, _ in parts]) for k in sorted(keys)}
    strata = np.concatenate([np.full(days.size, i) for i, (_, days) in enumerate(parts)])
    return sums, strata


def ci(score: Callable[[Sums], np.ndarray], sums: Sums, counts: np.ndarray, *names: str) -> dict:
    """``score``'s value and 95 % interval on the sums it reads alone: those named ``names``
    (a key, or every key under a prefix such as ``<source>.<variable>``), so a resample sums only
    what the score needs."""
    used = {k: v for k, v in sums.items() if any(k == n or k.startswith(f"{n}.") for n in names)}
    return intervals.interval(score, used, counts).as_dict()


def ensemble_figures(
    sums: Sums,
    counts: np.ndarray,
    v: str,
    members: int,
    references: Sequence[str],
    bands: Sequence[tuple[float, float]] | None = None,
) -> dict[str, Any]:
    """Per variable ``v``, for ``ours`` and (where summed) ``scratch``: fair CRPS over each
    reference's (``crps_<reference>_ratio``), the spread-skill ratio and, with ``bands`` (km),
    the largest |log10 band-power ratio| with its band; and ``ours_scratch_crps_ratio``."""
    out: dict[str, Any] = {}
    for source in ("ours", "scratch"):
        name = f"{source}.{v}"
        if f"{name}.crps" not in sums:
            continue
        fig = {
            f"crps_{ref}_ratio": ci(
                intervals.crps_ratio(name, f"{ref}.{v}"), sums, counts, name, f"{ref}.{v}"
            )
            for ref in references
            if f"{ref}.{v}.crps" in sums
        }
        fig["ssr"] = ci(intervals.spread_skill(name, members), sums, counts, name)
        if bands is not None:
            fig["spectral"] = ci(intervals.spectral_max(name), sums, counts, name)
            total = {k: s.sum(axis=0)[None] for k, s in sums.items() if k.startswith(name + ".")}
            worst = int(np.nanargmax(np.abs(intervals.band_log_ratio(name)(total)[0])))
            fig["spectral"]["band_km"] = list(bands[worst])
        out[source] = fig
    if "scratch" in out:
        out["ours_scratch_crps_ratio"] = ci(
            intervals.crps_ratio(f"ours.{v}", f"scratch.{v}"),
            sums,
            counts,
            f"ours.{v}",
            f"scratch.{v}",
        )
    return out


def bias_figures(sums: Sums, counts: np.ndarray, sources: Sequence[str]) -> dict[str, Any]:
    """Precipitation's bias correction: for each source the relative errors of the mean and of
    the 99th percentile against the truth's, and the mean Brier score of tp above the truth's
    99th percentile (``brier_q99``); ``brier_ratio_<source>``: ours over each other source's."""
    out: dict[str, Any] = {}
    for source in sources:
        name = f"{source}.tp"

        def mean_error(s: Sums, n: str = name) -> np.ndarray:
            return (s[f"{n}.mean"] - s[f"{n}.mean_truth"]) / s[f"{n}.mean_truth"]

        def q99_error(s: Sums, n: str = name) -> np.ndarray:
            truth = histogram_quantile(s[f"{n}.hist_truth"], 0.99)
            return (histogram_quantile(s[f"{n}.hist"], 0.99) - truth) / truth

        out[source] = {
            "mean_rel_error": ci(mean_error, sums, counts, f"{name}.mean", f"{name}.mean_truth"),
            "q99_rel_error": ci(q99_error, sums, counts, f"{name}.hist", f"{name}.hist_truth"),
            "brier_q99": ci(
                intervals.mean(name, "brier_q99"),
                sums,
                counts,
                f"{name}.brier_q99",
                f"{name}.weight",
            ),
        }
    for source in sources[1:]:
        out[f"brier_ratio_{source}"] = ci(
            intervals.crps_ratio("ours.tp", f"{source}.tp", "brier_q99"),
            sums,
            counts,
            "ours.tp.brier_q99",
            f"{source}.tp.brier_q99",
        )
    return out


def value(figure: dict[str, Any] | None) -> float | None:
    """A figure's value (None where not measured)."""
    return None if figure is None else figure["value"]


def within(x: float | None, lo: float | None, hi: float | None) -> bool | None:
    """Whether ``x`` lies in [lo, hi] (None bounds open); None where ``x`` was not measured."""
    if x is None or not np.isfinite(x):
        return None
    return (lo is None or x >= lo) and (hi is None or x <= hi)


def goal_checks(
    task: str, figures: dict[str, Any], goals: dict[str, Any]
) -> dict[str, bool | None]:
    """Each goal of issue 19 (``goals``: the config's) for ``ours`` on a task's figures:
    ``<variable>.<figure>`` (nowcast ``<lead>.<variable>.<figure>``) -> met, None where the
    figure was not measured (e.g. no diffusion ensemble on validation)."""
    g = goals[task]
    checks: dict[str, bool | None] = {}
    if task == "bias":
        for key in ("mean_rel_error", "q99_rel_error"):
            x = value(figures["ours"][key])
            checks[key] = within(None if x is None else abs(x), None, g[key])
        return checks
    if task == "nowcast":
        for lead, per_variable in figures.items():
            for v, fig in per_variable.items():
                checks[f"{lead}.{v}.ssr"] = within(value(fig["ours"]["ssr"]), *g["ssr"])
                if lead == "1h":
                    ratio = value(fig["ours"].get("crps_persistence_ratio"))
                    checks[f"{lead}.{v}.crps_persistence_ratio"] = within(ratio, None, g["crps_1h"])
        return checks
    for v, fig in figures.items():
        ours = fig["ours"]
        if task == "interpolation":
            checks[f"{v}.crps_linear_ratio"] = within(
                value(ours.get("crps_linear_ratio")), None, g["crps"]
            )
        else:  # downscale
            ratio = value(ours.get("crps_diffusion_ratio"))
            checks[f"{v}.crps_diffusion_ratio"] = within(ratio, None, g["crps_diffusion"])
            checks[f"{v}.spectral"] = within(value(ours["spectral"]), None, g["spectral"])
            checks[f"{v}.ssr"] = within(value(ours["ssr"]), *g["ssr"])
    return checks


def pretraining_pays(task: str, figures: dict[str, Any]) -> dict[str, Any]:
    """Ours over scratch's fair CRPS per variable (nowcast: per lead too), with ``holds``: ours
    better (ratio below 1) and ``clear``: the whole interval below 1."""
    rows = (
        figures.items()
        if task != "nowcast"
        else ((f"{lead}.{v}", fig) for lead, per in figures.items() for v, fig in per.items())
    )
    out = {}
    for key, fig in rows:
        ratio = fig.get("ours_scratch_crps_ratio")
        if ratio is None:
            continue
        out[key] = {
            **ratio,
            "holds": ratio["value"] < 1.0,
            "clear": ratio["ci95"] is not None and ratio["ci95"][1] < 1.0,
        }
    return out


def mean_score(task: str, figures: dict[str, Any], score: str) -> float:
    """The mean of ``ours``' figure ``score`` over the variables (nowcast: and the leads)."""
    per = (
        figures.values() if task != "nowcast" else [f for p in figures.values() for f in p.values()]
    )
    return float(np.mean([fig["ours"][score]["value"] for fig in per]))


def choose(candidates: list[dict[str, Any]]) -> str:
    """The rule written in the configs: the candidate meeting the most goals that validation can
    measure, ties broken by the lowest mean score (each candidate: name, goals_met, score)."""
    return min(candidates, key=lambda c: (-c["goals_met"], c["score"]))["name"]

"""The streaming scorer: every score of :mod:`finescale.verify` as running sums over blocks.

Memory stays bounded whatever the number of times: two passes (the truth's climatology, then
the scores) stream over blocks of times, about ``BLOCK_BYTES`` of input per source and block
(whole storage chunks when they fit), one block in use while the next one is read, the variables
of a block scored on parallel threads. Every score is a running (weighted) sum, or a histogram,
over slabs of about ``SLAB_VALUES`` forecast values, built on the kernels of
:mod:`finescale.verify.scores` (:func:`~finescale.verify.scores.crps_sorted_sum`,
:func:`~finescale.verify.ranks.truth_ranks`), so the blocks change nothing but the order of
float sums and the random tie breaks of the rank histogram.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import xarray as xr

from finescale.evaluation.prepare import Inputs, stored_for
from finescale.verify.extremes import QuantileHistogram
from finescale.verify.metrics import REGION_KEYS
from finescale.verify.ranks import truth_ranks
from finescale.verify.scores import crps_sorted_sum

THRESHOLDS = {"q99": 0.99, "q999": 0.999}
QQ_LEVELS = (
    0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99,
    0.995, 0.998, 0.999, 0.9995, 0.9999,
)  # fmt: skip
BLOCK_BYTES = 512 * 2**20  # input read per source and block of times
SLAB_VALUES = 4_000_000  # forecast values scored at once (temporaries: a few times this)
SPECTRA_MAX_TIMES = 128  # spectra average at most this many evenly spaced scored times
QUANTILE_BITS = 13  # QuantileHistogram resolution: bins 2**-13 of the value wide

Progress = Callable[[str], None]


def load_block(
    ds: xr.Dataset, names: Sequence[str], start: int, stop: int
) -> dict[str, np.ndarray]:
    """Variables ``names`` of ``ds`` at times ``start:stop`` in memory, dims ([member,] time, y, x).

    One compute for all of them (dask reads the chunks in parallel); ``wind_speed`` is derived
    from u10/v10 when not stored. float32 stays float32.
    """
    part = ds[stored_for(ds, list(names))].isel(time=slice(start, stop)).compute()
    out = {}
    for name in names:
        da = part[name] if name in part.data_vars else np.hypot(part["u10"], part["v10"])
        order = [d for d in ("member", "time", "y", "x") if d in da.dims]
        out[name] = np.ascontiguousarray(da.transpose(*order).values)
    return out


def finite(value: Any) -> float | None:
    """A JSON-safe float: NaN and infinities (undefined scores) become None (null)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def finite_list(values: Iterable[Any]) -> list[float | None]:
    return [finite(v) for v in np.asarray(values, dtype=float).ravel()]


def time_blocks(inputs: Inputs) -> list[tuple[int, int]]:
    """Blocks of times (start, stop) of at most ``BLOCK_BYTES`` per source, made of whole
    storage chunks of the forecast where they fit (a chunk read twice is decompressed twice)."""
    nt = inputs.truth.sizes["time"]
    per_time = 1
    for ds in (inputs.truth, *inputs.sources().values()):
        one = ds.isel(time=0)
        sizes = [one[v].nbytes for v in stored_for(ds, inputs.variables)]
        derived = sum(n not in ds.data_vars for n in inputs.variables)  # wind_speed from u10, v10
        per_time = max(per_time, sum(sizes) + derived * max(sizes))
    limit = max(1, BLOCK_BYTES // per_time)
    first = inputs.forecast[stored_for(inputs.forecast, inputs.variables)[0]]
    chunks = first.chunks[first.dims.index("time")] if first.chunks else (nt,)
    blocks: list[tuple[int, int]] = []
    start = end = 0
    for size in chunks:
        if end + size - start > limit and end > start:
            blocks.append((start, end))
            start = end
        if size > limit:  # a chunk larger than a block: read in pieces
            blocks += [(a, min(a + limit, end + size)) for a in range(end, end + size, limit)]
            start = end + size
        end += size
    if end > start:
        blocks.append((start, end))
    return blocks


def spectral_times(nt: int) -> np.ndarray:
    """Indices of the scored times the spectra average: all, or SPECTRA_MAX_TIMES evenly spaced."""
    if nt <= SPECTRA_MAX_TIMES:
        return np.arange(nt)
    return np.unique(np.round(np.linspace(0, nt - 1, SPECTRA_MAX_TIMES)).astype(int))


def prefetched(items: Sequence[Any], load: Callable[[Any], Any]) -> Iterator[tuple[Any, Any]]:
    """(item, load(item)) in order, loading the next item on a thread while the caller works."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(load, items[0]) if items else None
        for i, item in enumerate(items):
            data = future.result()
            future = pool.submit(load, items[i + 1]) if i + 1 < len(items) else None
            yield item, data


def _total(values: np.ndarray, w: np.ndarray | None) -> float:
    """sum(values) (float64) or sum(w * values)."""
    return float(values.sum(dtype=np.float64)) if w is None else float(values @ w)


class Sums:
    """Running (weighted) sums of the scores of one source, variable and region (any blocks).

    Without weights every sum is the plain one; with weights (one per point, e.g. cos(lat))
    each point's contribution is multiplied by its weight and the means divide by the total
    weight, the rank counts and exceedance counts are sums of weights and the quantiles those
    of the weighted distribution.
    """

    def __init__(
        self, members: int, thresholds: Mapping[str, float], seed: Sequence[int], weighted: bool
    ):
        self.members, self.weighted = members, weighted
        # float64 scalars: comparisons with float32 data happen in float64, at the exact threshold
        self.thresholds = {k: np.float64(v) for k, v in thresholds.items()}
        self.rng = np.random.default_rng(list(seed))  # rank-histogram tie breaks
        self.hist = QuantileHistogram(QUANTILE_BITS)  # every finite member value
        self.n = 0  # scored points (their total weight when weighted)
        self.crps = self.abs_error = self.sq_error = self.error = self.variance = 0.0
        zeros = dict.fromkeys(self.thresholds, 0.0)
        self.brier, self.twcrps = dict(zeros), dict(zeros)
        self.above_forecast, self.above_truth = dict(zeros), dict(zeros)
        self.ranks = np.zeros(members + 1, dtype=np.float64 if weighted else np.int64)

    def add(
        self, forecast: np.ndarray, truth: np.ndarray, weights: np.ndarray | None = None
    ) -> None:
        """Add points: ``forecast`` (M, ...), ``truth`` (...) and, when weighted, ``weights``
        (...) of the same trailing shape."""
        m = self.members
        s = np.sort(forecast.reshape(m, -1), axis=0)
        y = truth.reshape(-1)
        w = None if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
        if w is None:
            self.hist.add(s)
        else:
            self.hist.add(s, w)
        d = s - y  # sorted members minus the truth: every score below is a sum over it
        valid = ~np.isnan(d[-1])  # NaN sorts last: a missing member or truth leaves it there
        if not valid.all():
            s, d, y = s[:, valid], d[:, valid], y[valid]
            w = None if w is None else w[valid]
        if y.size == 0:
            return
        rows = d.sum(axis=1, dtype=np.float64) if w is None else d @ w
        error = d.mean(axis=0, dtype=np.float64)  # ensemble mean minus truth, per point
        self.n += y.size if w is None else float(w.sum())
        self.error += float(rows.sum()) / m
        self.abs_error += _total(np.abs(error), w)
        squared = float(error @ error) if w is None else float(np.square(error) @ w)
        self.sq_error += squared
        self.crps += crps_sorted_sum(d, w, rows=rows)
        if m > 1:
            # sum over points of the ensemble variance (ddof=1): (sum d^2 - M sum mean^2) / (M - 1)
            if w is None:
                summed = float(np.square(d).sum(dtype=np.float64))
            else:
                summed = float(np.square(d).sum(axis=0, dtype=np.float64) @ w)
            self.variance += (summed - m * squared) / (m - 1)
            counts = np.bincount(truth_ranks(d, self.rng), weights=w, minlength=m + 1)
            self.ranks += counts.astype(self.ranks.dtype)
        for key, t in self.thresholds.items():
            # elsewhere every member and the truth are <= t: Brier score and twCRPS are 0 there
            hit = np.flatnonzero((s[-1] > t) | (y > t))
            if hit.size == 0:
                continue
            sh, yh, wh = s[:, hit], y[hit], None if w is None else w[hit]
            above = np.count_nonzero(sh > t, axis=0)
            outcome = yh > t
            self.above_forecast[key] += _total(above, wh)
            self.above_truth[key] += _total(outcome.astype(np.float64), wh)
            self.brier[key] += _total(np.square(above / m - outcome), wh)
            chained = np.maximum(sh, t) - np.maximum(
                yh, t
            )  # twCRPS: the CRPS of max(value, t), float64
            self.twcrps[key] += crps_sorted_sum(chained, wh)

    def result(self, q_truth: np.ndarray) -> tuple[dict[str, float | None], np.ndarray]:
        """Every region metric (:data:`REGION_KEYS`) and the forecast quantiles at QQ_LEVELS."""
        m, n = self.members, (self.n or np.nan)
        q = self.hist.quantiles(QQ_LEVELS)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = {
                "crps_fair": self.crps / n,
                "mae_mean": self.abs_error / n,
                "rmse_mean": math.sqrt(self.sq_error / n),
                "bias_mean": self.error / n,
            }
            if m > 1:  # undefined for one member: null
                out["spread"] = math.sqrt(max(self.variance, 0.0) / n)
                spread_skill = np.sqrt(max(self.variance, 0.0) / np.float64(self.sq_error))
                out["ssr"] = math.sqrt((m + 1.0) / m) * spread_skill
            for key in self.thresholds:
                out[f"brier_{key}"] = self.brier[key] / n
                out[f"twcrps_{key}"] = self.twcrps[key] / n
                ratio = np.float64(self.above_forecast[key]) / (m * self.above_truth[key])
                out[f"exceedance_ratio_{key}"] = ratio
            for key, level in (("q99", 0.99), ("q999", 0.999), ("q9999", 0.9999)):
                i = QQ_LEVELS.index(level)
                out[f"{key}_rel_error"] = (
                    (q[i] - q_truth[i]) / abs(q_truth[i]) if q_truth[i] != 0 else None
                )
        return {k: finite(out.get(k)) for k, _, _ in REGION_KEYS}, q

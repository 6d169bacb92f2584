"""Confidence intervals for ensemble scores: per-time sums and a block bootstrap over days.

Every score the skill benchmarks report is a ratio of sums over times and points (fair CRPS
over the oracle's, spread over RMSE, band power over the truth's, rank counts over their total).
:func:`time_sums` gives those sums for one time; :func:`daily` adds them up per calendar day;
:func:`bootstrap_counts` draws how often each day enters a resample (moving blocks of whole days
within each world, since weather persists for days and worlds are independent); and
:func:`interval` evaluates a score on the full sample and on every resample, for the 2.5 and
97.5 percentiles. A resample is a matrix product (counts @ daily sums), so 2000 resamples of
any score cost next to nothing once the sums exist.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from finescale.verify.ranks import truth_ranks
from finescale.verify.scores import crps_sorted_sum

Sums = Mapping[str, np.ndarray]


def time_sums(
    members: np.ndarray,
    truth: np.ndarray,
    weights: np.ndarray,
    rng: np.random.Generator,
    *,
    band_power: Callable[[np.ndarray], np.ndarray] | None = None,
    thresholds: Mapping[str, float] | None = None,
) -> dict[str, np.ndarray]:
    """Additive sums of one time's scores over the points of a field, with weights.

    ``members``: (M, y, x) ensemble, ``truth``: (y, x), ``weights``: (y, x) area weights; no NaN.
    ``band_power``: fields (..., y, x) -> power per wavelength band (..., B) (see
    :func:`finescale.verify.bands.band_power`). Returns float64 arrays: ``weight`` (sum of
    weights), ``crps`` (weighted sum of the fair CRPS), ``variance`` (weighted sum of the
    members' variance, ddof 1; NaN for one member), ``squared_error`` (weighted sum of
    (ensemble mean - truth)^2), ``ranks`` (M + 1 weighted counts of the truth's rank, ties broken
    with ``rng``) and, with ``band_power``, ``power`` (B,) averaged over members and ``power_truth``
    (B,). With ``thresholds`` (name -> value, units of the data), for each name the weighted sums
    ``brier_<name>`` of the Brier score of the event value > threshold and ``twcrps_<name>`` of the
    fair threshold-weighted CRPS (the CRPS of max(value, threshold)), as
    :func:`finescale.verify.scores.brier_score` and :func:`~finescale.verify.scores.twcrps`.
    """
    m = members.shape[0]
    flat, y, w = members.reshape(m, -1), truth.reshape(-1), weights.reshape(-1).astype(np.float64)
    d = np.sort(flat, axis=0) - y
    mean_error = flat.mean(axis=0, dtype=np.float64) - y
    sums = {
        "weight": np.asarray(w.sum()),
        "crps": np.asarray(crps_sorted_sum(d, w)),
        "variance": np.asarray(flat.var(axis=0, ddof=1, dtype=np.float64) @ w if m > 1 else np.nan),
        "squared_error": np.asarray(mean_error**2 @ w),
        "ranks": np.bincount(truth_ranks(d, rng), weights=w, minlength=m + 1),
    }
    if band_power is not None:
        sums["power"] = np.asarray(band_power(members), dtype=np.float64).mean(axis=0)
        sums["power_truth"] = np.asarray(band_power(truth), dtype=np.float64)
    for key, t in (thresholds or {}).items():
        t = np.float64(t)  # compare float32 data with the exact threshold
        probability = (flat > t).mean(axis=0)
        sums[f"brier_{key}"] = np.asarray(np.square(probability - (y > t)) @ w)
        chained = np.sort(np.maximum(flat, t), axis=0) - np.maximum(y, t)
        sums[f"twcrps_{key}"] = np.asarray(crps_sorted_sum(chained, w))
    return sums


def daily(
    per_time: Sequence[Mapping[str, np.ndarray]], times: np.ndarray
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Sum per-time sums over each calendar day (UTC).

    ``per_time``: one mapping per time (the same keys); ``times``: datetime64 of each. Returns
    the sums stacked with a leading day axis, and the days (datetime64[D], sorted).
    """
    if len(per_time) != len(times):
        raise ValueError(f"{len(per_time)} sets of sums for {len(times)} times")
    day = np.asarray(times).astype("datetime64[D]")
    days, index = np.unique(day, return_inverse=True)
    out = {}
    for key in per_time[0]:
        stacked = np.stack([np.asarray(s[key], dtype=np.float64) for s in per_time])
        total = np.zeros((days.size, *stacked.shape[1:]))
        np.add.at(total, index, stacked)
        out[key] = total
    return out, days


def bootstrap_counts(
    strata: Sequence[int] | np.ndarray,
    block_days: int,
    resamples: int = 2000,
    seed: int = 0,
) -> np.ndarray:
    """How often each day is drawn in each resample of a moving-block bootstrap, (resamples, days).

    ``strata``: for each day (in order, consecutive days adjacent), the world it belongs to;
    each world is resampled on its own (worlds are independent draws) by concatenating
    blocks of ``block_days`` consecutive days, starting anywhere a whole block fits, until it
    has as many days as it had. Blocks keep the serial correlation of weather within the
    resample.
    """
    strata = np.asarray(strata)
    if block_days < 1:
        raise ValueError(f"block_days must be at least 1, got {block_days}")
    rng = np.random.default_rng(seed)
    counts = np.zeros((resamples, strata.size))
    for world in np.unique(strata):
        days = np.flatnonzero(strata == world)
        n, length = days.size, min(block_days, days.size)
        n_blocks = -(-n // length)
        starts = rng.integers(0, n - length + 1, size=(resamples, n_blocks))
        drawn = (starts[:, :, None] + np.arange(length)).reshape(resamples, -1)[:, :n]
        rows = np.repeat(np.arange(resamples), n)
        np.add.at(counts, (rows, days[drawn.ravel()]), 1.0)
    return counts


#: the largest share of resamples whose score may be undefined before the interval is withheld:
#: beyond it, where the undefined ones would rank decides the percentiles
UNDEFINED_SHARE = 0.025


@dataclass(frozen=True)
class Interval:
    """A score on the full sample and its 95 % bootstrap interval.

    ``undefined``: resamples whose score is not finite (e.g. a ratio whose denominator sums to
    zero over the days drawn: no exceedance of a threshold). The interval is over the others, and
    ``None`` when they are more than :data:`UNDEFINED_SHARE` of the resamples.
    """

    value: float
    ci95: tuple[float, float] | None
    undefined: int = 0

    def as_dict(self) -> dict[str, object]:
        """``{"value": x, "ci95": [lo, hi] or None}``, as the results JSON holds it, with
        ``"undefined_resamples"`` when some were."""
        out: dict[str, object] = {
            "value": self.value,
            "ci95": None if self.ci95 is None else list(self.ci95),
        }
        if self.undefined:
            out["undefined_resamples"] = self.undefined
        return out


def interval(
    score: Callable[[Sums], np.ndarray],
    sums: Sums,
    counts: np.ndarray,
) -> Interval:
    """``score`` of the summed daily ``sums`` and its 2.5-97.5 percentile range over resamples.

    ``score`` maps sums with a leading resample axis (R, ...) to (R,) values; ``sums`` have a
    leading day axis (D, ...); ``counts`` (R, D) from :func:`bootstrap_counts`. Resamples where
    the score is undefined (NaN or infinite) are counted, not silently dropped (see
    :class:`Interval`).
    """
    full = {k: v.sum(axis=0)[None] for k, v in sums.items()}
    resampled = {k: np.tensordot(counts, v, axes=1) for k, v in sums.items()}
    with np.errstate(divide="ignore", invalid="ignore"):
        values = np.asarray(score(resampled), dtype=float)
        value = float(np.asarray(score(full))[0])
    finite = np.isfinite(values)
    undefined = int(values.size - finite.sum())
    if undefined > UNDEFINED_SHARE * values.size:
        return Interval(value, None, undefined)
    lo, hi = np.percentile(values[finite], [2.5, 97.5])
    return Interval(value, (float(lo), float(hi)), undefined)


def crps_ratio(
    numerator: str, denominator: str, score: str = "crps"
) -> Callable[[Sums], np.ndarray]:
    """Score: weighted ``score`` sum of ``numerator`` over that of ``denominator`` (keys
    ``<name>.<score>``; the fair CRPS by default, or e.g. ``twcrps_q99``, ``brier_q99``)."""
    return lambda s: s[f"{numerator}.{score}"] / s[f"{denominator}.{score}"]


def mean(name: str, score: str) -> Callable[[Sums], np.ndarray]:
    """Score: the weighted mean of ``score`` of ``name`` (its weighted sum over the sum of
    weights)."""
    return lambda s: s[f"{name}.{score}"] / s[f"{name}.weight"]


def spread_skill(name: str, members: int) -> Callable[[Sums], np.ndarray]:
    """Score: sqrt((M+1)/M) * sqrt(mean variance / mean squared error) of ``name``'s ensemble."""
    factor = np.sqrt((members + 1.0) / members)
    return lambda s: factor * np.sqrt(s[f"{name}.variance"] / s[f"{name}.squared_error"])


def rank_edges(name: str) -> Callable[[Sums], np.ndarray]:
    """Score: the rank histogram's two outer bins over their flat share (> 1: U, < 1: dome)."""

    def edges(s: Sums) -> np.ndarray:
        ranks = s[f"{name}.ranks"]
        flat = ranks.sum(axis=-1) / ranks.shape[-1]
        return (ranks[..., 0] + ranks[..., -1]) / (2 * flat)

    return edges


def band_log_ratio(name: str) -> Callable[[Sums], np.ndarray]:
    """log10 of ``name``'s band power over the truth's, (R, B)."""
    return lambda s: np.log10(s[f"{name}.power"] / s[f"{name}.power_truth"])


def spectral_max(name: str) -> Callable[[Sums], np.ndarray]:
    """Score: the largest |log10 band-power ratio| over the bands."""
    return lambda s: np.nanmax(np.abs(band_log_ratio(name)(s)), axis=-1)

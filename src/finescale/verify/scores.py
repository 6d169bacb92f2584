"""Ensemble scores: fair CRPS, RMSE/MAE of the mean, spread-skill, rank histograms, Brier,
threshold-weighted CRPS, energy score, plus small helpers (area weights, boxes, wind speed).

Conventions shared by every function here
-----------------------------------------
* ``forecast`` is an :class:`xarray.DataArray` with a member dimension (``member_dim``, default
  ``"member"``) plus any of ``time``, ``y``, ``x``; ``truth`` has the same dims minus the member
  dim. Coordinates must agree exactly (xarray's ``join="exact"``), so a misaligned pair fails
  loudly instead of being scored on the intersection.
* Plain numpy is accepted too: members on axis 0 of ``forecast``, ``truth`` shaped like
  ``forecast[0]``; the axes are named ``dim_0, dim_1, ...`` (the axes of ``truth``) for
  ``dims``/``weights``/``mask``, and the result comes back as numpy (a float when 0-d).
* ``dims`` names the dims averaged over: ``...`` (the default) means all dims except the member
  dim, ``None`` means every dim, ``[]`` keeps every point (pointwise score).
* ``weights`` (e.g. :func:`area_weights`) multiply each point in the average; they need not be
  normalised (the average divides by the sum of weights actually used). They must use only dims
  of the data.
* ``mask`` is boolean; points where it is False are excluded. Points where the pointwise score
  is NaN (missing truth or any missing member) are excluded as well; an average over no valid
  point is NaN. With ``dims=[]`` excluded points come back as NaN.
* Scores carry the units of the data (CRPS, RMSE, MAE, spread, energy score) or are
  dimensionless (spread-skill ratio, Brier score, rank counts).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from types import EllipsisType

import numpy as np
import xarray as xr

ArrayLike = xr.DataArray | np.ndarray
Dims = str | Sequence[Hashable] | None | EllipsisType

__all__ = [
    "area_weights",
    "brier_score",
    "crps_fair",
    "crps_pointwise",
    "crps_sorted",
    "crps_sorted_sum",
    "energy_score",
    "mae",
    "rank_histogram",
    "region_mask",
    "rmse",
    "spread",
    "spread_skill_ratio",
    "truth_ranks",
    "twcrps",
    "weighted_mean",
    "wind_speed",
]


# --------------------------------------------------------------------------------------------
# Input handling shared by all scores
# --------------------------------------------------------------------------------------------


def _numpy_dims(ndim: int) -> list[str]:
    return [f"dim_{i}" for i in range(ndim)]


def as_pair(
    forecast: ArrayLike, truth: ArrayLike | None, member_dim: str
) -> tuple[xr.DataArray, xr.DataArray | None, bool]:
    """Wrap numpy inputs as DataArrays (members on axis 0); report whether we did."""
    numpy_mode = not isinstance(forecast, xr.DataArray)
    if numpy_mode:
        fc = np.asarray(forecast, dtype=float)
        forecast = xr.DataArray(fc, dims=[member_dim, *_numpy_dims(fc.ndim - 1)])
        if truth is not None:
            tr = np.asarray(truth, dtype=float)
            # the truth's axes line up with the trailing axes of forecast[0], as in numpy broadcasting
            names = _numpy_dims(fc.ndim - 1)[fc.ndim - 1 - tr.ndim :]
            truth = xr.DataArray(tr, dims=names)
    elif truth is not None and not isinstance(truth, xr.DataArray):
        raise TypeError("forecast is a DataArray, so truth must be one too")
    if member_dim not in forecast.dims:
        raise ValueError(f"forecast has no member dim {member_dim!r}; its dims are {forecast.dims}")
    if truth is not None and member_dim in truth.dims:
        raise ValueError(f"truth must not have the member dim {member_dim!r}")
    return forecast, truth, numpy_mode


def as_aux(aux: ArrayLike | None, name: str, like: xr.DataArray) -> xr.DataArray | None:
    """Wrap numpy weights/mask onto the trailing dims of ``like``; check DataArray dims."""
    if aux is None:
        return None
    if not isinstance(aux, xr.DataArray):
        arr = np.asarray(aux)
        aux = xr.DataArray(arr, dims=list(like.dims)[like.ndim - arr.ndim :] if arr.ndim else [])
    extra = set(aux.dims) - set(like.dims)
    if extra:
        raise ValueError(
            f"{name} has dims {sorted(map(str, extra))} that the data lacks {like.dims}"
        )
    return aux


def _resolve_dims(dims: Dims, available: Sequence[Hashable], member_dim: str) -> list[Hashable]:
    """Turn the ``dims`` argument into an explicit list of dims present in ``available``."""
    if dims is ...:
        return [d for d in available if d != member_dim]
    if dims is None:
        return list(available)
    if isinstance(dims, str):
        dims = [dims]
    dims = list(dims)
    unknown = set(dims) - set(available) - {member_dim}
    if unknown:
        raise ValueError(f"dims {sorted(map(str, unknown))} not in {tuple(available)}")
    # the member dim is already consumed by the ensemble score: asking to reduce it is a no-op
    return [d for d in dims if d != member_dim]


def unwrap(
    result: xr.DataArray,
    numpy_mode: bool,
    long_name: str | None = None,
    units: str | None = None,
) -> xr.DataArray | np.ndarray | float:
    """Label a DataArray result (CF-style attrs, never the input's), or hand back numpy."""
    if not numpy_mode:
        result.attrs = {"long_name": long_name} if long_name else {}
        if units:
            result.attrs["units"] = units
        return result
    values = np.asarray(result.values)
    return float(values) if values.ndim == 0 else values


def _point_weights(
    score: xr.DataArray, weights: xr.DataArray | None, mask: xr.DataArray | None
) -> xr.DataArray:
    """Weight of each point in an average: 0 where masked out or where the score is NaN."""
    valid = score.notnull()
    if mask is not None:
        valid = valid & mask.astype(bool)
    if weights is None:
        return valid
    return weights.where(valid, 0.0)


def weighted_mean(
    score: xr.DataArray,
    dims: Dims = ...,
    *,
    weights: xr.DataArray | None = None,
    mask: xr.DataArray | None = None,
    member_dim: str = "member",
) -> xr.DataArray:
    """Weighted average of a pointwise score over ``dims``, skipping masked and NaN points.

    ``sum(w * s) / sum(w)`` over the valid points, where ``w`` is ``weights`` (1 if None).
    Shape: ``score`` minus ``dims``; NaN where no valid point remains.
    """
    weights = as_aux(weights, "weights", score)
    mask = as_aux(mask, "mask", score)
    rdims = _resolve_dims(dims, score.dims, member_dim)
    w = _point_weights(score, weights, mask)
    total = (score.fillna(0.0) * w).sum(rdims)
    norm = w.sum(rdims)
    return total / norm.where(norm > 0)


def _single_chunk(da: xr.DataArray, dims: Sequence[Hashable]) -> xr.DataArray:
    """Core dims of an apply_ufunc must be one dask chunk; a no-op for numpy-backed arrays."""
    if da.chunks is None:
        return da
    return da.chunk({d: -1 for d in dims})


# --------------------------------------------------------------------------------------------
# CRPS
# --------------------------------------------------------------------------------------------


def _pair_coefficients(m: int) -> np.ndarray:
    """2i - M - 1 for i = 1..M: sum_i sum_j |x_i - x_j| = 2 sum_i (2i - M - 1) x_(i) (sorted)."""
    return 2.0 * np.arange(1, m + 1) - m - 1.0


def crps_sorted(d: np.ndarray, *, fair: bool = True) -> np.ndarray:
    """Pointwise ensemble CRPS from ``d`` = members sorted along axis 0 minus the truth.

    ``d``: (M, ...) sorted members x_(1) <= ... <= x_(M) minus the truth y at each point (any
    units). Returns (...): (1/M) sum_i |d_i| - sum_i (2i - M - 1) d_i / (M (M - 1)) (fair) or
    / M^2 (not fair), the sorted form of :func:`crps_fair` (y cancels in the spread term since
    sum_i (2i - M - 1) = 0); one member: |d_1|. NaN where any value is NaN.
    """
    m = d.shape[0]
    skill = np.abs(d).sum(axis=0) / m
    if m == 1:
        return skill
    norm = m * (m - 1) if fair else m * m
    return skill - np.tensordot(_pair_coefficients(m), d, axes=1) / norm


def crps_sorted_sum(
    d: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    rows: np.ndarray | None = None,
    fair: bool = True,
) -> float:
    """Sum over points of the (weighted) CRPS of :func:`crps_sorted`, in float64.

    ``d``: (M, P) sorted members minus the truth, no NaN; ``weights``: (P,) or None (1 each);
    ``rows``: ``d`` summed over points per member (weighted when ``weights`` is given), when the
    caller has it already. Equal to ``(crps_sorted(d) * weights).sum()`` up to float round-off,
    with the spread term summed over points first (one product per member, not per point):
    what a streaming scorer adds block by block.
    """
    m = d.shape[0]
    if weights is None:
        skill = float(np.abs(d).sum(dtype=np.float64)) / m
        if rows is None:
            rows = d.sum(axis=1, dtype=np.float64)
    else:
        skill = float((np.abs(d) @ weights).sum()) / m
        if rows is None:
            rows = d @ weights
    if m == 1:
        return skill
    norm = m * (m - 1) if fair else m * m
    return skill - float(_pair_coefficients(m) @ rows) / norm


def _crps_kernel(fc: np.ndarray, obs: np.ndarray, fair: bool) -> np.ndarray:
    """Pointwise ensemble CRPS, members on the last axis (:func:`crps_sorted` on sorted members)."""
    d = np.moveaxis(np.sort(fc, axis=-1), -1, 0) - obs
    # one member: the fair spread term 1/(2M(M-1)) is 0/0 and the biased one is 0; both reduce
    # to the absolute error, which is what a single deterministic forecast scores
    return crps_sorted(d, fair=fair)


def crps_pointwise(
    forecast: xr.DataArray,
    truth: xr.DataArray,
    member_dim: str = "member",
    *,
    fair: bool = True,
) -> xr.DataArray:
    """CRPS at every point (DataArray inputs), member dim reduced; units of the data.

    See :func:`crps_fair` for the estimator.
    """
    forecast = _single_chunk(forecast, [member_dim])
    return xr.apply_ufunc(
        _crps_kernel,
        forecast,
        truth,
        kwargs={"fair": fair},
        input_core_dims=[[member_dim], []],
        dask="parallelized",
        output_dtypes=[float],
    )


def crps_fair(
    forecast: ArrayLike,
    truth: ArrayLike,
    member_dim: str = "member",
    *,
    fair: bool = True,
    weights: ArrayLike | None = None,
    mask: ArrayLike | None = None,
    dims: Dims = ...,
) -> xr.DataArray | np.ndarray | float:
    """Ensemble CRPS (fair by default), averaged over ``dims``.

    For members x_1..x_M and truth y at one point::

        CRPS = (1/M) sum_i |x_i - y|  -  c * sum_i sum_j |x_i - x_j|
        c = 1 / (2 M (M - 1))   fair=True  (unbiased for the CRPS of the distribution the
                                            members are drawn from; scoringrules "fair")
        c = 1 / (2 M^2)         fair=False (CRPS of the empirical distribution; biased high
                                            for small M; scoringrules "nrg"/"qd")

    The double sum uses the sorted form 2 sum_i (2i - M - 1) x_(i), O(M log M) per point.
    With one member (M = 1) both forms return the absolute error |x_1 - y| (the fair spread
    term is undefined), so the average is the MAE.

    Args:
        forecast: ensemble, dims (member, ...), any units.
        truth: dims of forecast minus member, same units.
        member_dim: name of the ensemble dim.
        fair: fair (True) or biased (False) estimator.
        weights, mask, dims: see the module docstring; ``dims=[]`` gives the pointwise CRPS.

    Returns:
        CRPS in the units of the data, dims of truth minus ``dims``.
    """
    forecast, truth, numpy_mode = as_pair(forecast, truth, member_dim)
    score = crps_pointwise(forecast, truth, member_dim, fair=fair)
    result = _reduce(score, dims, weights, mask, member_dim)
    name = "fair CRPS" if fair else "CRPS"
    return unwrap(result, numpy_mode, name, truth.attrs.get("units"))


def _reduce(
    score: xr.DataArray,
    dims: Dims,
    weights: ArrayLike | None,
    mask: ArrayLike | None,
    member_dim: str,
) -> xr.DataArray:
    return weighted_mean(score, dims, weights=weights, mask=mask, member_dim=member_dim)


def twcrps(
    forecast: ArrayLike,
    truth: ArrayLike,
    threshold: float | xr.DataArray,
    member_dim: str = "member",
    *,
    fair: bool = True,
    weights: ArrayLike | None = None,
    mask: ArrayLike | None = None,
    dims: Dims = ...,
) -> xr.DataArray | np.ndarray | float:
    """Threshold-weighted CRPS: the CRPS of the values chained through v(z) = max(z, t).

    Equals the integral of (F(z) - 1{y <= z})^2 over z >= t only, so it scores the part of the
    forecast distribution above ``threshold`` (e.g. heavy precipitation). The fair estimator of
    :func:`crps_fair` is applied to v(x_i) and v(y). ``threshold`` is a scalar in the units of
    the data or a DataArray broadcastable against truth (e.g. a per-point climatological
    quantile). Units of the data.
    """
    forecast, truth, numpy_mode = as_pair(forecast, truth, member_dim)
    chained_fc = np.maximum(forecast, threshold)
    chained_truth = np.maximum(truth, threshold)
    score = crps_pointwise(chained_fc, chained_truth, member_dim, fair=fair)
    result = _reduce(score, dims, weights, mask, member_dim)
    return unwrap(result, numpy_mode, "threshold-weighted CRPS", truth.attrs.get("units"))


# --------------------------------------------------------------------------------------------
# Ensemble mean, spread, spread-skill
# --------------------------------------------------------------------------------------------


def _ensemble_mean_error(
    forecast: xr.DataArray, truth: xr.DataArray, member_dim: str
) -> xr.DataArray:
    # skipna=False: a missing member makes the point missing, as in the CRPS
    return forecast.mean(member_dim, skipna=False) - truth


def rmse(
    forecast: ArrayLike,
    truth: ArrayLike,
    member_dim: str = "member",
    *,
    weights: ArrayLike | None = None,
    mask: ArrayLike | None = None,
    dims: Dims = ...,
) -> xr.DataArray | np.ndarray | float:
    """Root mean square error of the ensemble mean: sqrt(mean over ``dims`` of (xbar - y)^2).

    The square root is taken after the (weighted) average. Units of the data.
    """
    forecast, truth, numpy_mode = as_pair(forecast, truth, member_dim)
    squared = _ensemble_mean_error(forecast, truth, member_dim) ** 2
    result = np.sqrt(_reduce(squared, dims, weights, mask, member_dim))
    return unwrap(result, numpy_mode, "RMSE of the ensemble mean", truth.attrs.get("units"))


def mae(
    forecast: ArrayLike,
    truth: ArrayLike,
    member_dim: str = "member",
    *,
    weights: ArrayLike | None = None,
    mask: ArrayLike | None = None,
    dims: Dims = ...,
) -> xr.DataArray | np.ndarray | float:
    """Mean absolute error of the ensemble mean: mean over ``dims`` of |xbar - y|. Units of the data."""
    forecast, truth, numpy_mode = as_pair(forecast, truth, member_dim)
    absolute = abs(_ensemble_mean_error(forecast, truth, member_dim))
    result = _reduce(absolute, dims, weights, mask, member_dim)
    return unwrap(result, numpy_mode, "MAE of the ensemble mean", truth.attrs.get("units"))


def _ensemble_variance(forecast: xr.DataArray, member_dim: str) -> xr.DataArray:
    m = forecast.sizes[member_dim]
    if m < 2:
        raise ValueError("the ensemble spread needs at least two members")
    return forecast.var(member_dim, ddof=1, skipna=False)


def spread(
    forecast: ArrayLike,
    member_dim: str = "member",
    *,
    weights: ArrayLike | None = None,
    mask: ArrayLike | None = None,
    dims: Dims = ...,
) -> xr.DataArray | np.ndarray | float:
    """Ensemble spread: sqrt(mean over ``dims`` of the ensemble variance with ddof=1).

    The square root comes after averaging the variance (averaging standard deviations would
    underestimate the spread that matches the RMSE). Needs M >= 2. Units of the data.
    """
    forecast, _, numpy_mode = as_pair(forecast, None, member_dim)
    variance = _ensemble_variance(forecast, member_dim)
    result = np.sqrt(_reduce(variance, dims, weights, mask, member_dim))
    return unwrap(result, numpy_mode, "ensemble spread", forecast.attrs.get("units"))


def spread_skill_ratio(
    forecast: ArrayLike,
    truth: ArrayLike,
    member_dim: str = "member",
    *,
    weights: ArrayLike | None = None,
    mask: ArrayLike | None = None,
    dims: Dims = ...,
) -> xr.DataArray | np.ndarray | float:
    """Spread-skill ratio sqrt((M+1)/M) * spread / RMSE(ensemble mean); 1 when calibrated.

    For exchangeable members and truth, E[(xbar - y)^2] = (M+1)/M * E[var_ddof1], hence the
    factor. Spread and RMSE are averaged over the same points: those where truth and every
    member are valid and ``mask`` is True. Dimensionless; < 1 means under-dispersive.
    """
    forecast, truth, numpy_mode = as_pair(forecast, truth, member_dim)
    m = forecast.sizes[member_dim]
    squared_error = _ensemble_mean_error(forecast, truth, member_dim) ** 2
    # variance only where the error is defined, so both averages cover the same points
    variance = _ensemble_variance(forecast, member_dim).where(squared_error.notnull())
    mse = _reduce(squared_error, dims, weights, mask, member_dim)
    mean_variance = _reduce(variance, dims, weights, mask, member_dim)
    ratio = np.sqrt((m + 1.0) / m) * np.sqrt(mean_variance / mse)
    return unwrap(ratio, numpy_mode, "spread-skill ratio", "1")


# --------------------------------------------------------------------------------------------
# Rank histogram
# --------------------------------------------------------------------------------------------


def truth_ranks(d: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rank of the truth among the members (0..M) from ``d`` = members sorted along axis 0
    minus the truth, (M, P) with no NaN; ties broken uniformly at random.

    With n_below members strictly below y and n_tied equal to y, the truth is equally likely to
    sit anywhere among the tied members: rank = n_below + U{0..n_tied}. Without this, values
    like zero precipitation would all pile into one bin. ``rng`` is drawn once per tied point
    only, in point order. Returns int64 (P,).
    """
    m = d.shape[0]
    below = np.count_nonzero(d < 0, axis=0)
    # members are sorted, so a member equals the truth only if the first one not below does
    ties = np.flatnonzero(d[np.minimum(below, m - 1), np.arange(below.size)] == 0)
    if ties.size:
        tied = np.count_nonzero(d[:, ties] == 0, axis=0)
        below[ties] += np.floor(rng.random(ties.size) * (tied + 1)).astype(below.dtype)
    return below


def _rank_kernel(fc: np.ndarray, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """:func:`truth_ranks` of members on the last axis, as floats; NaN where anything is missing."""
    d = np.moveaxis(np.sort(fc, axis=-1), -1, 0) - obs
    shape = d.shape[1:]
    d = d.reshape(d.shape[0], -1)
    missing = np.isnan(d).any(axis=0)
    rank = np.full(d.shape[1], np.nan)
    rank[~missing] = truth_ranks(d[:, ~missing], rng)
    return rank.reshape(shape)


def rank_histogram(
    forecast: ArrayLike,
    truth: ArrayLike,
    member_dim: str = "member",
    *,
    rng: np.random.Generator | int | None = None,
    weights: ArrayLike | None = None,
    mask: ArrayLike | None = None,
    dims: Dims = ...,
) -> xr.DataArray | np.ndarray:
    """Rank histogram (Talagrand diagram): counts of the truth's rank among M members.

    Returns counts over a new dim ``rank`` = 0..M (M+1 bins; rank k means k members lie
    below the truth), summed over ``dims``. Flat when the ensemble is calibrated; U-shaped when
    under-dispersive. Ties (e.g. zero precipitation in truth and members) are broken at random,
    so identical values give a flat histogram. ``rng`` is a Generator or a seed; None means
    seed 0 so reports are reproducible. With ``weights`` the counts are sums of weights
    (floats), otherwise integers. Masked and missing points are not counted. With dask inputs
    the tie-breaking draws depend on the chunking.
    """
    forecast, truth, numpy_mode = as_pair(forecast, truth, member_dim)
    generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng or 0)
    m = forecast.sizes[member_dim]
    forecast = _single_chunk(forecast, [member_dim])
    rank = xr.apply_ufunc(
        _rank_kernel,
        forecast,
        truth,
        kwargs={"rng": generator},
        input_core_dims=[[member_dim], []],
        dask="parallelized",
        output_dtypes=[float],
    )
    weights = as_aux(weights, "weights", rank)
    mask = as_aux(mask, "mask", rank)
    rdims = _resolve_dims(dims, rank.dims, member_dim)
    bins = xr.DataArray(np.arange(m + 1), dims="rank", coords={"rank": np.arange(m + 1)})
    counts = ((rank == bins) * _point_weights(rank, weights, mask)).sum(rdims)
    return unwrap(counts.transpose("rank", ...), numpy_mode, "rank histogram counts", "1")


# --------------------------------------------------------------------------------------------
# Brier score
# --------------------------------------------------------------------------------------------


def brier_score(
    forecast: ArrayLike,
    truth: ArrayLike,
    threshold: float | xr.DataArray,
    member_dim: str = "member",
    *,
    weights: ArrayLike | None = None,
    mask: ArrayLike | None = None,
    dims: Dims = ...,
) -> xr.DataArray | np.ndarray | float:
    """Brier score of the event ``value > threshold``: mean of (p - o)^2.

    p = fraction of members strictly above ``threshold``, o = 1 if truth is strictly above it,
    else 0. Dimensionless, in [0, 1]. ``threshold`` is a scalar or a DataArray broadcastable
    against truth.
    """
    forecast, truth, numpy_mode = as_pair(forecast, truth, member_dim)
    above = (forecast > threshold).astype(float).where(forecast.notnull())
    probability = above.mean(member_dim, skipna=False)
    outcome = (truth > threshold).astype(float).where(truth.notnull())
    score = (probability - outcome) ** 2
    result = _reduce(score, dims, weights, mask, member_dim)
    return unwrap(result, numpy_mode, "Brier score", "1")


# --------------------------------------------------------------------------------------------
# Energy score
# --------------------------------------------------------------------------------------------


def _weighted_norm(diff: np.ndarray, feature_weights: np.ndarray) -> np.ndarray:
    """sqrt(sum_k w_k d_k^2) over the last axis."""
    return np.sqrt(np.sum(feature_weights * diff * diff, axis=-1))


def _energy_kernel(
    fc: np.ndarray, obs: np.ndarray, feature_weights: np.ndarray, n_features: int, fair: bool
) -> np.ndarray:
    """Pointwise energy score; fc (..., M, F1.. Fn), obs and weights (..., F1.. Fn)."""
    lead = obs.shape[: obs.ndim - n_features]
    m = fc.shape[len(lead)]
    fc = fc.reshape(*lead, m, -1)
    obs = obs.reshape(*lead, 1, -1)
    fw = feature_weights.reshape(*lead, 1, -1)
    skill = _weighted_norm(fc - obs, fw).mean(axis=-1)
    if m == 1:
        return skill
    # the norm of a vector difference has no sorted shortcut: loop over i and take j > i, which
    # keeps memory at O(M * features) instead of O(M^2 * features)
    pair_sum = np.zeros(lead)
    for i in range(m - 1):
        pair_sum += _weighted_norm(fc[..., i + 1 :, :] - fc[..., i : i + 1, :], fw).sum(axis=-1)
    pair_sum *= 2.0  # both orders (i, j) and (j, i)
    norm = 2.0 * m * (m - 1) if fair else 2.0 * m * m
    return skill - pair_sum / norm


def energy_score(
    forecast: ArrayLike,
    truth: ArrayLike,
    member_dim: str = "member",
    *,
    feature_dims: str | Sequence[Hashable],
    fair: bool = True,
    feature_weights: ArrayLike | None = None,
    weights: ArrayLike | None = None,
    mask: ArrayLike | None = None,
    dims: Dims = ...,
) -> xr.DataArray | np.ndarray | float:
    """Energy score, the multivariate CRPS, over the vector spanned by ``feature_dims``.

    At each point of the remaining dims, with vectors x_1..x_M and y::

        ES = (1/M) sum_i ||x_i - y||  -  c * sum_i sum_j ||x_i - x_j||
        c = 1 / (2 M (M - 1))  fair=True (default; scoringrules estimator="fair")
        c = 1 / (2 M^2)        fair=False (scoringrules' default "nrg")

    ``||d|| = sqrt(sum_k w_k d_k^2)`` with ``feature_weights`` w (default 1), e.g. area weights
    when the features are grid points, or a per-variable scaling when they are variables (mix
    variables only after standardising them). One member gives the mean norm of the error.
    O(M^2 * features) operations per point.

    ``mask``: its parts along ``feature_dims`` drop features from the norm; a point of the
    remaining dims is excluded when no feature is left. ``weights``, ``dims``: the average over
    the remaining dims, as in the module docstring.
    """
    forecast, truth, numpy_mode = as_pair(forecast, truth, member_dim)
    fdims = [feature_dims] if isinstance(feature_dims, str) else list(feature_dims)
    missing = set(fdims) - set(truth.dims)
    if missing:
        raise ValueError(f"feature_dims {sorted(map(str, missing))} not in truth dims {truth.dims}")
    if isinstance(weights, xr.DataArray) and set(weights.dims) & set(fdims):
        raise ValueError("weights along feature_dims belong in feature_weights (inside the norm)")
    fw = as_aux(feature_weights, "feature_weights", truth)
    fw = xr.ones_like(truth) if fw is None else fw.broadcast_like(truth).astype(float)
    mask = as_aux(mask, "mask", truth)
    outer_mask = None
    if mask is not None:
        mask = mask.astype(bool)
        if set(mask.dims) & set(fdims):
            fw = fw.where(mask.broadcast_like(fw), 0.0)
            outer_mask = mask.any([d for d in fdims if d in mask.dims])
        else:
            outer_mask = mask
    forecast = _single_chunk(forecast, [member_dim, *fdims])
    truth = _single_chunk(truth, fdims)
    fw = _single_chunk(fw, fdims)
    score = xr.apply_ufunc(
        _energy_kernel,
        forecast,
        truth,
        fw,
        kwargs={"n_features": len(fdims), "fair": fair},
        input_core_dims=[[member_dim, *fdims], fdims, fdims],
        dask="parallelized",
        output_dtypes=[float],
    )
    result = _reduce(score, dims, weights, outer_mask, member_dim)
    name = "fair energy score" if fair else "energy score"
    return unwrap(result, numpy_mode, name, truth.attrs.get("units"))


# --------------------------------------------------------------------------------------------
# Helpers: weights, regions, derived variables
# --------------------------------------------------------------------------------------------


def area_weights(lat: ArrayLike) -> xr.DataArray | np.ndarray:
    """Area weights cos(lat) of a regular lat-lon grid, normalised to mean 1 over ``lat``.

    ``lat`` in degrees, any shape (1-D ``lat(y)`` or 2-D ``lat(y, x)``); returns the same
    shape/dims. Cells at the poles get weight 0 (never negative).
    """
    weights = np.clip(np.cos(np.deg2rad(lat)), 0.0, None)
    weights = weights / weights.mean()
    if isinstance(weights, xr.DataArray):
        weights.attrs = {"long_name": "area weight (cos latitude, mean 1)", "units": "1"}
    return weights


def region_mask(
    lat: ArrayLike,
    lon: ArrayLike,
    lat_min: float,
    lat_max: float,
    lon_min: float,
    lon_max: float,
) -> xr.DataArray | np.ndarray:
    """Boolean mask of the box lat_min <= lat <= lat_max, lon_min -> lon_max (degrees).

    Longitudes are compared modulo 360, so -180..180 and 0..360 conventions mix freely, and a
    box crossing the date line is given with lon_min > lon_max (e.g. 170 -> -170). A box of
    360 degrees or more in longitude covers every longitude. Same shape/dims as ``lat``.
    """
    in_lat = (lat >= lat_min) & (lat <= lat_max)
    width = lon_max - lon_min
    if width >= 360.0:
        return in_lat & np.isfinite(lon)  # every longitude, in the broadcast shape
    # eastward distance from the western edge, both taken modulo 360
    in_lon = np.mod(lon - lon_min, 360.0) <= np.mod(width, 360.0)
    return in_lat & in_lon


def wind_speed(u: ArrayLike, v: ArrayLike) -> xr.DataArray | np.ndarray:
    """Wind speed sqrt(u^2 + v^2) from the two horizontal components (same units, e.g. m s-1)."""
    speed = np.hypot(u, v)
    if isinstance(speed, xr.DataArray):
        speed.name = "wind_speed"
        units = getattr(u, "attrs", {}).get("units")
        speed.attrs = {"long_name": "wind speed", "standard_name": "wind_speed"}
        if units:
            speed.attrs["units"] = units
    return speed

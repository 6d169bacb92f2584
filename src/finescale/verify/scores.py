"""Ensemble scores: fair CRPS (also threshold-weighted), RMSE/MAE of the mean, spread,
spread-skill and the Brier score. The conventions they follow (member dim, ``dims``, ``weights``,
``mask``, numpy input) are in :mod:`finescale.verify.conventions`; rank histograms in
:mod:`~finescale.verify.ranks`, the energy score in :mod:`~finescale.verify.energy`, area weights,
regions and wind speed in :mod:`~finescale.verify.fields`.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from finescale.verify.conventions import (
    ArrayLike,
    Dims,
    as_pair,
    single_chunk,
    unwrap,
    weighted_mean,
)

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
    forecast = single_chunk(forecast, [member_dim])
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
    """Mean absolute error of the ensemble mean: mean over ``dims`` of |xbar - y|. Units of the
    data."""
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

"""Rank histograms: where the truth falls among the sorted members (conventions:
:mod:`finescale.verify.conventions`)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from finescale.verify.conventions import (
    ArrayLike,
    Dims,
    as_aux,
    as_pair,
    point_weights,
    resolve_dims,
    single_chunk,
    unwrap,
)


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
    forecast = single_chunk(forecast, [member_dim])
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
    rdims = resolve_dims(dims, rank.dims, member_dim)
    bins = xr.DataArray(np.arange(m + 1), dims="rank", coords={"rank": np.arange(m + 1)})
    counts = ((rank == bins) * point_weights(rank, weights, mask)).sum(rdims)
    return unwrap(counts.transpose("rank", ...), numpy_mode, "rank histogram counts", "1")

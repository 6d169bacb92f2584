"""The energy score: the multivariate CRPS of several variables scored together (conventions:
:mod:`finescale.verify.conventions`)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import xarray as xr

from finescale.verify.conventions import (
    ArrayLike,
    Dims,
    as_aux,
    as_pair,
    single_chunk,
    unwrap,
    weighted_mean,
)


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
    forecast = single_chunk(forecast, [member_dim, *fdims])
    truth = single_chunk(truth, fdims)
    fw = single_chunk(fw, fdims)
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
    result = weighted_mean(score, dims, weights=weights, mask=outer_mask, member_dim=member_dim)
    name = "fair energy score" if fair else "energy score"
    return unwrap(result, numpy_mode, name, truth.attrs.get("units"))

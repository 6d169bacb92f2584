"""The conventions every score of ``finescale.verify`` follows, and the input handling they share.

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


def numpy_dims(ndim: int) -> list[str]:
    return [f"dim_{i}" for i in range(ndim)]


def as_pair(
    forecast: ArrayLike, truth: ArrayLike | None, member_dim: str
) -> tuple[xr.DataArray, xr.DataArray | None, bool]:
    """Wrap numpy inputs as DataArrays (members on axis 0); report whether we did."""
    numpy_mode = not isinstance(forecast, xr.DataArray)
    if numpy_mode:
        fc = np.asarray(forecast, dtype=float)
        forecast = xr.DataArray(fc, dims=[member_dim, *numpy_dims(fc.ndim - 1)])
        if truth is not None:
            tr = np.asarray(truth, dtype=float)
            # the truth's axes line up with the trailing axes of forecast[0], as in numpy
            # broadcasting
            names = numpy_dims(fc.ndim - 1)[fc.ndim - 1 - tr.ndim :]
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


def resolve_dims(dims: Dims, available: Sequence[Hashable], member_dim: str) -> list[Hashable]:
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


def point_weights(
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
    rdims = resolve_dims(dims, score.dims, member_dim)
    w = point_weights(score, weights, mask)
    total = (score.fillna(0.0) * w).sum(rdims)
    norm = w.sum(rdims)
    return total / norm.where(norm > 0)


def single_chunk(da: xr.DataArray, dims: Sequence[Hashable]) -> xr.DataArray:
    """Core dims of an apply_ufunc must be one dask chunk; a no-op for numpy-backed arrays."""
    if da.chunks is None:
        return da
    return da.chunk({d: -1 for d in dims})

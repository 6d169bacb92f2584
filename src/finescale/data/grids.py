"""Grids: conservative coarsening, grid geometry (spacing, refinement) and the polar filter.

Conventions: horizontal dims ``y`` (south -> north) and ``x`` (west -> east) come last, any
leading dims (``time``, ``level``, ``member``) come first, and the grid is described by 2-D
coordinates ``lat(y, x)`` and ``lon(y, x)`` in degrees at cell centres. A grid is *regular*
when lat depends on y only and lon on x only; otherwise it is *curvilinear* (rotated pole,
Lambert, ...). Longitudes may use either the [-180, 180) or the [0, 360) convention and may
cross the seam. Interpolation from one grid to another is :mod:`finescale.data.regrid`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

HORIZONTAL = ("y", "x")


class GridError(ValueError):
    """A grid or field that cannot be used as asked; the message names the dim or coordinate."""


# --------------------------------------------------------------------------------------------
# coarsening


def coarsen(da: xr.DataArray, factor: int, *, weights: xr.DataArray | None = None) -> xr.DataArray:
    """Conservative block mean of ``da`` over ``factor x factor`` blocks of (y, x).

    da: (..., y, x), any units; dask-backed arrays stay lazy.
    weights: optional (y, x) (or (y,) / (x,)) non-negative weights such as cell area in m2 or
        cos(lat); the result is then the weighted block mean, so that the weighted integral
        sum(da * weights) is preserved by the coarse field with the block-summed weights.
        A block whose weights sum to 0 gives NaN.
    Returns (..., y / factor, x / factor) in the units of ``da``, with its attrs. A block that
    holds a NaN is NaN. Coordinates along y/x become block means; ``lon`` is averaged across the
    180/-180 (or 360/0) seam correctly.
    Raises GridError if y or x is not a multiple of ``factor``.
    """
    _check_blocks(da, factor)
    blocks = da.coarsen(y=factor, x=factor, coord_func={"lon": _mean_longitude})
    if weights is None:
        return blocks.reduce(np.mean).assign_attrs(da.attrs)
    w = _plain_weights(weights, da)
    weighted_sum = (da * w).coarsen(y=factor, x=factor, coord_func={"lon": _mean_longitude})
    weight_sum = w.coarsen(y=factor, x=factor).reduce(np.sum)
    return (weighted_sum.reduce(np.sum) / weight_sum).assign_attrs(da.attrs).rename(da.name)


def _check_blocks(da: xr.DataArray, factor: int) -> None:
    if not isinstance(factor, (int, np.integer)) or factor < 1:
        raise GridError(f"coarsening factor must be a positive integer, got {factor!r}")
    for dim in HORIZONTAL:
        if dim not in da.dims:
            raise GridError(f"field has dims {da.dims}; it needs a {dim!r} dim")
        if da.sizes[dim] % factor:
            raise GridError(
                f"dim {dim!r} has size {da.sizes[dim]}, which is not a multiple of the "
                f"coarsening factor {factor}"
            )


def _plain_weights(weights: xr.DataArray, da: xr.DataArray) -> xr.DataArray:
    """Weights without coordinates (so they cannot clash with da's), broadcast to (y, x)."""
    if not set(weights.dims) <= set(HORIZONTAL):
        raise GridError(f"weights have dims {weights.dims}; expected a subset of (y, x)")
    for dim in weights.dims:
        if weights.sizes[dim] != da.sizes[dim]:
            raise GridError(
                f"weights have {weights.sizes[dim]} points along {dim!r}, the field {da.sizes[dim]}"
            )
    w = xr.DataArray(weights.data, dims=weights.dims)
    missing = {dim: da.sizes[dim] for dim in HORIZONTAL if dim not in w.dims}
    return w.expand_dims(missing).transpose(*HORIZONTAL)


def _mean_longitude(lon, axis):
    """Block mean of longitudes, measured from the first of each block so the seam is harmless."""
    axes = (axis,) if np.ndim(axis) == 0 else tuple(axis)
    first = lon[tuple(slice(0, 1) if a in axes else slice(None) for a in range(lon.ndim))]
    mean = first + wrap180(lon - first).mean(axis=axes, keepdims=True)
    return np.where(np.min(lon) < 0, wrap180(mean), mean % 360).squeeze(axis=axes)


def wrap180(degrees: Any) -> Any:
    """Angles in degrees mapped into [-180, 180) (arrays, scalars or DataArrays)."""
    return (degrees + 180.0) % 360.0 - 180.0


# --------------------------------------------------------------------------------------------
# grid geometry


def is_global(lon: np.ndarray) -> bool:
    """A grid whose longitudes go round the globe (spacing included)."""
    row = np.unwrap(np.deg2rad(np.asarray(lon)[0]))
    span = np.rad2deg(abs(row[-1] - row[0]))
    step = span / max(row.size - 1, 1)
    return bool(span + step >= 359.5)


def grid_spacing(lat: xr.DataArray, lon: xr.DataArray) -> tuple[float, float]:
    """Median spacing (dy, dx) in degrees between neighbouring points along y and along x.

    lat, lon: (y, x) in degrees (1-D lat(y), lon(x) are broadcast). The distance between two
    neighbours is measured in the (lat, lon) plane, hypot(dlat, dlon), with dlon taken across
    the seam: a regular grid gives exactly its nominal (dlat, dlon); on a projected grid it is
    the length of the grid-line step in degrees (dlon is *not* shrunk by cos(lat)).
    """
    lat2, lon2 = lat_lon_arrays(lat, lon)
    if min(lat2.shape) < 2:
        raise GridError(f"grid_spacing needs at least 2 points along y and x, got {lat2.shape}")
    steps = [
        np.hypot(np.diff(lat2, axis=axis), wrap180(np.diff(lon2, axis=axis))) for axis in (0, 1)
    ]
    return float(np.median(steps[0])), float(np.median(steps[1]))


def refine_lat_lon(
    lat: xr.DataArray, lon: xr.DataArray, factor: int
) -> tuple[xr.DataArray, xr.DataArray]:
    """lat, lon of the grid refined ``factor`` times inside each cell of the given grid.

    lat, lon: (y, x) in degrees, at least 2 points along each dim. Returns two
    (y * factor, x * factor) DataArrays in degrees: the centres of the ``factor x factor``
    sub-cells, found by bilinear interpolation of the coordinates in index space (extrapolated
    by half a cell at the edges). For a uniformly spaced grid ``coarsen`` of the result gives
    back the input. Longitudes keep the input's convention ([-180, 180) or [0, 360)).
    """
    lat2, lon2 = lat_lon_arrays(lat, lon)
    if not isinstance(factor, (int, np.integer)) or factor < 1:
        raise GridError(f"refinement factor must be a positive integer, got {factor!r}")
    if min(lat2.shape) < 2:
        raise GridError(f"refine_lat_lon needs at least 2 points along y and x, got {lat2.shape}")
    unwrapped = np.unwrap(np.unwrap(lon2, period=360.0, axis=1), period=360.0, axis=0)
    fine_lat = _refine(lat2, factor)
    fine_lon = _refine(unwrapped, factor)
    fine_lon = wrap180(fine_lon) if lon2.min() < 0 else fine_lon % 360.0
    return (
        xr.DataArray(fine_lat, dims=HORIZONTAL, name="lat", attrs=lat.attrs),
        xr.DataArray(fine_lon, dims=HORIZONTAL, name="lon", attrs=lon.attrs),
    )


def _refine(values: np.ndarray, factor: int) -> np.ndarray:
    """Bilinear samples of a (y, x) array at the sub-cell centres, in index space."""
    for axis in (0, 1):
        n = values.shape[axis]
        position = (np.arange(n * factor) + 0.5) / factor - 0.5
        values = _linear_at(values, position, axis)
    return values


def _linear_at(values: np.ndarray, position: np.ndarray, axis: int) -> np.ndarray:
    """Piecewise-linear samples of ``values`` at fractional indices along ``axis``
    (extrapolated linearly beyond the ends)."""
    left = np.clip(np.floor(position), 0, values.shape[axis] - 2).astype(int)
    shape = [1] * values.ndim
    shape[axis] = -1
    frac = (position - left).reshape(shape)
    return np.take(values, left, axis) * (1 - frac) + np.take(values, left + 1, axis) * frac


def lat_lon_arrays(lat: xr.DataArray, lon: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    """lat, lon as float (y, x) numpy arrays; 1-D lat(y) and lon(x) are broadcast."""
    for name, coord in (("lat", lat), ("lon", lon)):
        if not isinstance(coord, xr.DataArray) or not set(coord.dims) <= set(HORIZONTAL):
            dims = getattr(coord, "dims", None)
            raise GridError(f"{name} must be a DataArray with dims (y, x), got dims {dims}")
    lat2, lon2 = xr.broadcast(lat.reset_coords(drop=True), lon.reset_coords(drop=True))
    if lat2.ndim != 2:
        raise GridError(f"lat and lon together must span (y, x), got dims {lat2.dims}")
    return (
        np.asarray(lat2.transpose(*HORIZONTAL).values, dtype=float),
        np.asarray(lon2.transpose(*HORIZONTAL).values, dtype=float),
    )


# --------------------------------------------------------------------------------------------
# polar filter

# Relative slack on the kept wavenumber bound, so that a bound which is an integer in exact
# arithmetic (e.g. 2.9999999996 for 3) is not floored one below by rounding.
_WAVENUMBER_SLACK = 1e-9


def polar_filter(
    values: np.ndarray, lat: np.ndarray, lat0: float = 60.0, keep: int = 0
) -> np.ndarray:
    """Classical polar filter of grid-point models: zonal Fourier truncation poleward of ``lat0``.

    On a global lat-lon grid the zonal spacing shrinks as cos(lat), so near the poles a field can
    hold zonal scales far finer than anywhere else. This keeps, in each row with
    |lat| > ``lat0``, only the zonal wavenumbers m <= floor((nx / 2) * cos(lat) / cos(lat0))
    (a real FFT along x, the rest set to zero), so the finest zonal scale there is no finer than
    the grid spacing at ``lat0``. The pole rows (cos(lat) ~ 0) keep only their zonal mean (m = 0),
    i.e. become constant along the row. Rows with |lat| <= ``lat0`` are returned bit for bit.
    The zonal mean of every row is preserved.

    Wavenumbers m <= ``keep`` are always kept, the pole rows included. A scalar's pole is one
    point (keep=0), but a vector's eastward/northward components at the pole vary along the pole
    row as a zonal wave 1 (u = -V sin(lon - lon0)), so components of a vector need keep=1.

    values: (..., ny, nx), any units, on a global grid periodic in x (x covers 360 degrees once,
        columns equally spaced). A NaN in a filtered row makes that whole row NaN.
    lat: latitude of each row in degrees, (ny,); or lat(y, x) of shape (ny, nx), of which each
        row's mean is taken.
    lat0: latitude in degrees, 0 <= lat0 < 90, poleward of which rows are filtered.
    keep: zonal wavenumber >= 0 up to which every row keeps its spectrum (0: only the zonal mean
        is guaranteed; 1: also wave 1, for the components of a vector such as a wind).
    Returns a new array of the shape of ``values``, in its units; floating dtypes are kept
    (float32 in, float32 out), others become float64.
    Raises GridError if the shapes do not match or a latitude is out of range.
    """
    values = np.asarray(values)
    if values.ndim < 2:
        raise GridError(f"polar_filter needs values of shape (..., ny, nx), got {values.shape}")
    ny, nx = values.shape[-2:]
    row_lat = _row_latitudes(np.asarray(lat, dtype=float), ny, nx)
    if not 0.0 <= lat0 < 90.0:
        raise GridError(f"polar_filter lat0 must be in [0, 90) degrees, got {lat0!r}")
    if isinstance(keep, bool) or not isinstance(keep, (int, np.integer)) or keep < 0:
        raise GridError(f"polar_filter keep must be a zonal wavenumber >= 0, got {keep!r}")
    dtype = values.dtype if np.issubdtype(values.dtype, np.floating) else np.dtype(np.float64)
    out = values.astype(dtype, copy=True)
    rows = np.flatnonzero(np.abs(row_lat) > lat0)
    if rows.size == 0:
        return out
    cos_ratio = np.clip(np.cos(np.deg2rad(row_lat[rows])), 0.0, None) / np.cos(np.deg2rad(lat0))
    kept = np.floor((nx / 2) * cos_ratio * (1 + _WAVENUMBER_SLACK)).astype(int)
    kept = np.maximum(kept, keep)
    spectrum = np.fft.rfft(out[..., rows, :], axis=-1)
    wavenumber = np.arange(spectrum.shape[-1])
    spectrum[..., wavenumber[None, :] > kept[:, None]] = 0
    out[..., rows, :] = np.fft.irfft(spectrum, n=nx, axis=-1)
    return out


def _row_latitudes(lat: np.ndarray, ny: int, nx: int) -> np.ndarray:
    """(ny,) latitude of each row from a (ny,) or (ny, nx) latitude array, in degrees."""
    if lat.shape == (ny, nx):
        lat = lat.mean(axis=1)
    elif lat.shape != (ny,):
        raise GridError(
            f"polar_filter needs lat of shape ({ny},) or ({ny}, {nx}) to match values' "
            f"(ny, nx), got {lat.shape}"
        )
    if not np.all(np.abs(lat) <= 90.0):
        raise GridError(
            f"polar_filter latitudes must lie in [-90, 90] degrees, got "
            f"{np.nanmin(lat):g} .. {np.nanmax(lat):g}"
        )
    return lat

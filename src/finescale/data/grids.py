"""Grids: conservative coarsening, interpolation between lat/lon grids, grid spacing.

Conventions: horizontal dims ``y`` (south -> north) and ``x`` (west -> east) come last, any
leading dims (``time``, ``level``, ``member``) come first, and the grid is described by 2-D
coordinates ``lat(y, x)`` and ``lon(y, x)`` in degrees at cell centres. A grid is *regular*
when lat depends on y only and lon on x only; otherwise it is *curvilinear* (rotated pole,
Lambert, ...). Longitudes may use either the [-180, 180) or the [0, 360) convention and may
cross the seam.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import xarray as xr
from scipy import ndimage
from scipy.spatial import cKDTree

HORIZONTAL = ("y", "x")

_SPLINE_ORDER = {"bilinear": 1, "bicubic": 3}
# Cells of padding around each field. The cubic spline prefilter's error from the (crude)
# boundary condition at the padded edge decays as 0.27**n inside it: 12 cells make it < 1e-6.
_PAD = {1: 1, 3: 12}
_NEWTON_STEPS = 30
_NEWTON_TOLERANCE = 1e-10  # in grid cells


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
    lat2, lon2 = _lat_lon_arrays(lat, lon)
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
    lat2, lon2 = _lat_lon_arrays(lat, lon)
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


def _lat_lon_arrays(lat: xr.DataArray, lon: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
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
# interpolation


def interpolate(
    da: xr.DataArray,
    lat: xr.DataArray,
    lon: xr.DataArray,
    *,
    method: Literal["bilinear", "bicubic"] = "bilinear",
    periodic_lon: bool = False,
) -> xr.DataArray:
    """Interpolate ``da`` from its own grid onto the target grid given by ``lat``, ``lon``.

    da: (..., y, x), any units, with coordinates lat(y, x), lon(y, x) in degrees on a regular
        or curvilinear grid (1-D lat(y), lon(x) also work).
    lat, lon: (y, x) of the target grid, degrees.
    Returns (..., y, x) on the target grid, in the units and attrs of ``da``, with the target
    lat/lon (and their y/x coordinates) as coordinates. Dask-backed ``da`` stays lazy (one task
    per chunk of the leading dims).

    Each target point is located in the source's index space: directly from the 1-D rows and
    columns of a regular grid, by Newton iterations on the bilinear lat/lon map of a curvilinear
    one (so bilinear interpolation reproduces any field linear in lat/lon). The field is then
    evaluated there by ``scipy.ndimage.map_coordinates``: order 1 (bilinear) or a cubic B-spline
    (bicubic).

    Edges: a target point beyond the outermost source cell centres (the half cell at the domain
    edge, or further) takes the value at the nearest edge position in index space (edge value
    extension, like map_coordinates mode "nearest"). With ``periodic_lon=True`` the x axis wraps
    instead (global grids whose last column neighbours the first); y never wraps.
    NaN: bilinear spreads a NaN to the target points in the cells around it; bicubic spreads it
    to the whole 2-D field, so use bilinear for masked fields.
    Precipitation: bicubic can undershoot below 0 near sharp gradients; the caller clips.
    """
    if method not in _SPLINE_ORDER:
        raise GridError(f"unknown interpolation method {method!r}; use one of {list(_SPLINE_ORDER)}")
    for dim in HORIZONTAL:
        if dim not in da.dims:
            raise GridError(f"field has dims {da.dims}; it needs a {dim!r} dim")
    if "lat" not in da.coords or "lon" not in da.coords:
        raise GridError("field needs 'lat' and 'lon' coordinates to be interpolated")
    source_lat, source_lon = _lat_lon_arrays(da.coords["lat"], da.coords["lon"])
    target_lat, target_lon = _lat_lon_arrays(lat, lon)
    rows, cols = _fractional_indices(source_lat, source_lon, target_lat, target_lon, periodic_lon)
    order = _SPLINE_ORDER[method]
    out = xr.apply_ufunc(
        _sample,
        da.transpose(..., *HORIZONTAL),
        kwargs={"rows": rows, "cols": cols, "order": order, "wrap": periodic_lon},
        input_core_dims=[list(HORIZONTAL)],
        output_core_dims=[["_target_y", "_target_x"]],
        dask="parallelized",
        output_dtypes=[np.result_type(da.dtype, np.float32)],
        dask_gufunc_kwargs={
            "output_sizes": {"_target_y": rows.shape[0], "_target_x": rows.shape[1]},
            "allow_rechunk": True,
        },
        keep_attrs=True,
    )
    out = out.rename({"_target_y": "y", "_target_x": "x"})
    return out.assign_coords(_target_coords(lat, lon))


def source_indices(
    source_lat: xr.DataArray,
    source_lon: xr.DataArray,
    lat: xr.DataArray,
    lon: xr.DataArray,
    *,
    periodic_lon: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Fractional (row, col) indices in the source grid of every target point, as (y, x) arrays.

    The same location step as :func:`interpolate` (regular or curvilinear source), exposed so
    that other samplers (``torch.nn.functional.grid_sample`` in the models) interpolate exactly
    where this module does. Rows are clipped to [0, ny - 1]; cols too, or wrapped to [0, nx)
    when ``periodic_lon``.
    """
    src_lat, src_lon = _lat_lon_arrays(source_lat, source_lon)
    target_lat, target_lon = _lat_lon_arrays(lat, lon)
    return _fractional_indices(src_lat, src_lon, target_lat, target_lon, periodic_lon)


def _target_coords(lat: xr.DataArray, lon: xr.DataArray) -> dict[str, xr.Variable]:
    """lat, lon and their own horizontal coordinates (e.g. projection x/y in metres)."""
    coords = {
        name: coord.variable
        for source in (lat, lon)
        for name, coord in source.coords.items()
        if set(coord.dims) <= set(HORIZONTAL)
    }
    coords["lat"] = lat.variable
    coords["lon"] = lon.variable
    return coords


def _sample(values: np.ndarray, rows: np.ndarray, cols: np.ndarray, order: int, wrap: bool):
    """map_coordinates of every leading-dim slice of (..., y, x) ``values`` at (rows, cols)."""
    fields = values.reshape(-1, *values.shape[-2:]).astype(np.result_type(values.dtype, np.float32))
    pad = _PAD[order]
    fields = _pad_axis(fields, 1, pad, "reflect")
    fields = _pad_axis(fields, 2, pad, "wrap" if wrap else "reflect")
    points = np.stack([rows.ravel(), cols.ravel()]) + pad
    out = np.empty((fields.shape[0], points.shape[1]), dtype=fields.dtype)
    for field, result in zip(fields, out):
        ndimage.map_coordinates(field, points, output=result, order=order, mode="nearest")
    return out.reshape(*values.shape[:-2], *rows.shape)


def _pad_axis(fields: np.ndarray, axis: int, pad: int, mode: str) -> np.ndarray:
    """Pad one axis by wrapping, or by odd reflection about the edge value (linear
    extrapolation): unlike edge replication it adds no kink, so a cubic spline stays accurate
    up to the edge."""
    widths = [(0, 0)] * fields.ndim
    widths[axis] = (pad, pad)
    if mode == "wrap":
        return np.pad(fields, widths, mode="wrap")
    return np.pad(fields, widths, mode="reflect", reflect_type="odd")


def _fractional_indices(
    source_lat: np.ndarray,
    source_lon: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    periodic: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Fractional (row, col) source indices of each target point, clipped to the source grid
    (or, periodic, with col in [0, nx))."""
    ny, nx = source_lat.shape
    if ny < 2 or nx < 2:
        raise GridError(f"source grid needs at least 2 points along y and x, got {(ny, nx)}")
    if _is_regular(source_lat, source_lon):
        rows = _index_along(source_lat[:, 0], lat, "lat")
        cols = _longitude_index(source_lon[0], lon, periodic)
    else:
        rows, cols = _invert_bilinear_map(source_lat, source_lon, lat, lon, periodic)
    rows = np.clip(rows, 0, ny - 1)
    cols = np.mod(cols, nx) if periodic else np.clip(cols, 0, nx - 1)
    return rows, cols


def _is_regular(lat: np.ndarray, lon: np.ndarray) -> bool:
    return bool(
        np.allclose(lat, lat[:, :1], rtol=0, atol=1e-6)
        and np.allclose(wrap180(lon - lon[:1, :]), 0, rtol=0, atol=1e-6)
    )


def _index_along(coord: np.ndarray, targets: np.ndarray, name: str) -> np.ndarray:
    """Fractional index of ``targets`` along a strictly monotonic 1-D ``coord`` (piecewise
    linear, so exact for the bilinear map; clamped to the ends)."""
    index = np.arange(coord.size, dtype=float)
    steps = np.diff(coord)
    if not (np.all(steps > 0) or np.all(steps < 0)):
        raise GridError(f"source {name} is not strictly monotonic along its grid lines")
    if steps[0] < 0:
        coord, index = coord[::-1], index[::-1]
    return np.interp(targets, coord, index)


def _longitude_index(lon: np.ndarray, targets: np.ndarray, periodic: bool) -> np.ndarray:
    """Fractional column of target longitudes on a regular grid with 1-D ``lon`` (degrees)."""
    lon = np.unwrap(lon, period=360.0)
    direction = np.sign(lon[-1] - lon[0])
    if periodic:
        spacing, span = np.max(np.abs(np.diff(lon))), abs(lon[-1] - lon[0])
        if not 0 < 360.0 - span <= 1.5 * spacing:
            raise GridError(
                f"periodic_lon=True needs source columns that go round the globe once (no "
                f"repeated column); lon spans {span:g} degrees with spacing {spacing:g}"
            )
        # column nx is column 0 one turn later; targets are put on that turn's branch
        lon = np.append(lon, lon[0] + 360.0 * direction)
        targets = lon[0] + direction * np.mod(direction * (targets - lon[0]), 360.0)
    else:
        middle = (lon[0] + lon[-1]) / 2
        targets = middle + wrap180(targets - middle)
    return _index_along(lon, targets, "lon")


def _invert_bilinear_map(
    source_lat: np.ndarray,
    source_lon: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    periodic: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Fractional (row, col) where the bilinear interpolation of the source lat/lon equals each
    target point: Newton iterations started at the nearest source point (on the sphere).

    Positions are kept within one cell beyond the edge, so far-away targets settle there and are
    later clipped onto the edge. The source grid must not fold or contain a pole.
    """
    ny, nx = source_lat.shape
    tree = cKDTree(_unit_vectors(source_lat, source_lon))
    _, nearest = tree.query(_unit_vectors(lat, lon))
    rows, cols = (index.astype(float) for index in np.divmod(nearest, nx))
    target_lat, target_lon = lat.ravel(), lon.ravel()
    for _ in range(_NEWTON_STEPS):
        d_row, d_col = _newton_step(source_lat, source_lon, target_lat, target_lon, rows, cols,
                                    periodic)
        new_rows = np.clip(rows - d_row, -1, ny)
        new_cols = cols - d_col if periodic else np.clip(cols - d_col, -1, nx)
        moved = max(np.max(np.abs(new_rows - rows)), np.max(np.abs(new_cols - cols)))
        rows, cols = new_rows, new_cols
        if moved < _NEWTON_TOLERANCE:
            break
    else:
        raise GridError(
            "could not locate the target points on the curvilinear source grid "
            "(does it fold, or contain a pole?)"
        )
    return rows.reshape(lat.shape), cols.reshape(lat.shape)


def _newton_step(source_lat, source_lon, target_lat, target_lon, rows, cols, periodic):
    """Newton step (d_row, d_col) for bilinear(lat, lon)(row, col) = target, cell by cell."""
    ny, nx = source_lat.shape
    r0 = np.clip(np.floor(rows), 0, ny - 2).astype(int)
    c_base = np.floor(cols) if periodic else np.clip(np.floor(cols), 0, nx - 2)
    s, t = rows - r0, cols - c_base
    c0 = c_base.astype(int) % nx
    c1 = (c0 + 1) % nx
    corners = [(r0, c0), (r0, c1), (r0 + 1, c0), (r0 + 1, c1)]
    f_lat, lat_s, lat_t = _bilinear_with_gradient(
        [source_lat[r, c] - target_lat for r, c in corners], s, t
    )
    f_lon, lon_s, lon_t = _bilinear_with_gradient(
        [wrap180(source_lon[r, c] - target_lon) for r, c in corners], s, t
    )
    det = lat_s * lon_t - lat_t * lon_s
    safe = np.where(det == 0, 1.0, det)
    d_row = np.where(det == 0, 0.0, (f_lat * lon_t - lat_t * f_lon) / safe)
    d_col = np.where(det == 0, 0.0, (lat_s * f_lon - f_lat * lon_s) / safe)
    return d_row, d_col


def _bilinear_with_gradient(corners, s, t):
    """Value and derivatives along s (rows) and t (cols) of the bilinear form with corner
    values (q00, q01, q10, q11) = (row, col) offsets (0, 0), (0, 1), (1, 0), (1, 1)."""
    q00, q01, q10, q11 = corners
    twist = q11 - q10 - q01 + q00
    value = q00 + (q10 - q00) * s + (q01 - q00) * t + twist * s * t
    return value, (q10 - q00) + twist * t, (q01 - q00) + twist * s


def _unit_vectors(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """(n, 3) points on the unit sphere, so nearest-neighbour search ignores the lon seam."""
    phi, lam = np.deg2rad(lat.ravel()), np.deg2rad(lon.ravel())
    return np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)], axis=1)


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
        raise GridError(f"polar_filter latitudes must lie in [-90, 90] degrees, got "
                        f"{np.nanmin(lat):g} .. {np.nanmax(lat):g}")
    return lat

"""Interpolation of fields from one lat/lon grid onto another (regular or curvilinear).

Every target point is located in the source grid's index space (fractional row and column),
then the field is sampled there. The location step is shared: :func:`interpolate` samples with
scipy, and :func:`source_indices` hands the same positions to other samplers (the models'
``grid_sample``), so both interpolate at exactly the same places. Apart from
:mod:`finescale.data.grids` because locating points on a curvilinear grid (Newton iterations on
the bilinear lat/lon map) is a subject of its own; the grid conventions are those of that module.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import xarray as xr
from scipy import ndimage
from scipy.spatial import cKDTree

from finescale.data.grids import HORIZONTAL, GridError, lat_lon_arrays, wrap180

_SPLINE_ORDER = {"bilinear": 1, "bicubic": 3}
# Cells of padding around each field. The cubic spline prefilter's error from the (crude)
# boundary condition at the padded edge decays as 0.27**n inside it: 12 cells make it < 1e-6.
_PAD = {1: 1, 3: 12}
_NEWTON_STEPS = 30
_NEWTON_TOLERANCE = 1e-10  # in grid cells


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
        raise GridError(
            f"unknown interpolation method {method!r}; use one of {list(_SPLINE_ORDER)}"
        )
    for dim in HORIZONTAL:
        if dim not in da.dims:
            raise GridError(f"field has dims {da.dims}; it needs a {dim!r} dim")
    if "lat" not in da.coords or "lon" not in da.coords:
        raise GridError("field needs 'lat' and 'lon' coordinates to be interpolated")
    source_lat, source_lon = lat_lon_arrays(da.coords["lat"], da.coords["lon"])
    target_lat, target_lon = lat_lon_arrays(lat, lon)
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
    src_lat, src_lon = lat_lon_arrays(source_lat, source_lon)
    target_lat, target_lon = lat_lon_arrays(lat, lon)
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
        d_row, d_col = _newton_step(
            source_lat, source_lon, target_lat, target_lon, rows, cols, periodic
        )
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

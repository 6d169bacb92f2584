"""Where a file keeps its grid, and turning the grid to finescale's orientation.

:func:`coordinate_name` and :func:`grid_dims` find a file's latitude and longitude and its
south-north and west-east dims, whatever they are called; :func:`attach_grid` gives a dataset
``lat(y, x)`` and ``lon(y, x)`` in degrees and flips it so that y runs south -> north and x
west -> east. Apart from :mod:`finescale.data.sources` as the geometry of a file, independent of
its variables and units.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from finescale.config import FileConfig
from finescale.data.errors import MissingVariableError, PairError
from finescale.data.grids import wrap180

__all__ = [
    "LAT_ALIASES",
    "LON_ALIASES",
    "attach_grid",
    "coordinate_name",
    "grid_dims",
    "load_coordinate",
]

LAT_ALIASES = ("lat", "latitude", "nav_lat", "XLAT")
LON_ALIASES = ("lon", "longitude", "nav_lon", "XLONG")


def coordinate_name(
    ds: xr.Dataset, wanted: str, aliases: Sequence[str], what: str, path: Path | str
) -> str:
    if wanted in ds.variables:
        return wanted
    if wanted in aliases:  # the default name: accept the usual spellings
        for alias in aliases:
            if alias in ds.variables:
                return alias
    names = ", ".join(sorted(str(v) for v in ds.variables))
    raise MissingVariableError(
        f"{path}: {what} coordinate '{wanted}' not found; the file has: {names}"
    )


def load_coordinate(raw: xr.Dataset, name: str, path: Path | str) -> xr.DataArray:
    try:
        return raw[name].load()
    except Exception as exc:  # decoders raise many types for a corrupt file
        raise PairError(
            f"{path}: coordinate '{name}' cannot be read ({type(exc).__name__}: {exc}); "
            "the file may be truncated or corrupt"
        ) from exc


def grid_dims(
    lat: xr.DataArray, lon: xr.DataArray, cfg: FileConfig, path: Path | str
) -> tuple[str, str]:
    """Names of the file's south-north and west-east dims."""
    if lat.ndim == 1 and lon.ndim == 1:
        return cfg.y or str(lat.dims[0]), cfg.x or str(lon.dims[0])
    if lat.ndim == 2 and lon.ndim == 2 and set(lat.dims) == set(lon.dims):
        a, b = (str(d) for d in lat.dims)
        if cfg.y and cfg.x:
            return cfg.y, cfg.x
        if cfg.y or cfg.x:
            given = cfg.y or cfg.x
            other = b if given == a else a
            return (cfg.y, other) if cfg.y else (other, cfg.x)  # type: ignore[return-value]
        # y is the dim along which latitude changes most.
        values = lat.values
        along_a = np.nanmean(np.abs(np.diff(values, axis=0)))
        along_b = np.nanmean(np.abs(np.diff(values, axis=1)))
        return (a, b) if along_a >= along_b else (b, a)
    raise PairError(
        f"{path}: latitude/longitude must both be 1-D or both 2-D on the same dims; got "
        f"lat{tuple(lat.dims)} and lon{tuple(lon.dims)}"
    )


def _is_monotonic(values: np.ndarray, increasing: bool) -> bool:
    steps = np.diff(values)
    return bool(np.all(steps > 0) if increasing else np.all(steps < 0))


def attach_grid(
    ds: xr.Dataset,
    lat: xr.DataArray,
    lon: xr.DataArray,
    y_dim: str,
    x_dim: str,
    path: Path | str,
) -> xr.Dataset:
    """Add lat(y, x), lon(y, x) and flip y/x so that y runs south->north and x west->east.

    What was changed is said in ``attrs["finescale_orientation"]`` (absent when nothing was), so
    that whoever reads the dataset can report it.
    """
    changes = []
    if lat.ndim == 1:
        lat1 = np.asarray(lat.values, dtype=float)
        lon1 = np.asarray(lon.values, dtype=float)
        if lat1.size > 1 and not (_is_monotonic(lat1, True) or _is_monotonic(lat1, False)):
            raise PairError(f"{path}: latitude is not monotonic along '{y_dim}'")
        if lon1.size > 1 and not (_is_monotonic(lon1, True) or _is_monotonic(lon1, False)):
            # A regional grid stored in [0, 360) across Greenwich wraps at 360 -> 0.
            wrapped = wrap180(lon1)
            if not (_is_monotonic(wrapped, True) or _is_monotonic(wrapped, False)):
                raise PairError(f"{path}: longitude is not monotonic along '{x_dim}'")
            lon1 = wrapped
            changes.append("longitudes 0..360 across Greenwich read as -180..180")
        lat2 = np.broadcast_to(lat1[:, None], (lat1.size, lon1.size)).copy()
        lon2 = np.broadcast_to(lon1[None, :], (lat1.size, lon1.size)).copy()
    else:
        lat2 = np.asarray(lat.transpose(y_dim, x_dim).values, dtype=float)
        lon2 = np.asarray(lon.transpose(y_dim, x_dim).values, dtype=float)
    flip_y = lat2.shape[0] > 1 and np.nanmedian(np.diff(lat2, axis=0)) < 0
    flip_x = lat2.shape[1] > 1 and np.nanmedian(wrap180(np.diff(lon2, axis=1))) < 0
    if flip_y:
        lat2, lon2 = lat2[::-1], lon2[::-1]
        ds = ds.isel(y=slice(None, None, -1))
        changes.append("latitude stored north->south, read south->north")
    if flip_x:
        lat2, lon2 = lat2[:, ::-1], lon2[:, ::-1]
        ds = ds.isel(x=slice(None, None, -1))
        changes.append("longitude stored east->west, read west->east")
    if changes:
        ds = ds.assign_attrs(finescale_orientation="; ".join(changes))
    return ds.assign_coords(
        lat=(("y", "x"), lat2, {"units": "degrees_north", "standard_name": "latitude"}),
        lon=(("y", "x"), lon2, {"units": "degrees_east", "standard_name": "longitude"}),
    )

"""What is scored where: area weights, region boxes and derived fields (wind speed)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from finescale.verify.conventions import (
    ArrayLike,
)


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

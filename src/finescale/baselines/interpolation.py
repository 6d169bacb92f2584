"""Interpolation baselines (``bilinear``, ``bicubic``): each LR variable on the HR grid."""

from __future__ import annotations

from typing import Literal

import xarray as xr

from finescale.data import grids, regrid, units

__all__ = ["grid_of", "interpolation"]


def interpolation(
    lr: xr.Dataset,
    hr_grid: xr.Dataset | xr.DataArray,
    method: Literal["bilinear", "bicubic"] = "bilinear",
) -> xr.Dataset:
    """Each LR variable interpolated to the HR grid.

    lr: variables (time, ..., y, x) with coordinates lat(y, x), lon(y, x) in degrees, any
        units. Variables without y/x are left out.
    hr_grid: anything with the HR coordinates lat(y, x), lon(y, x) (e.g. the HR dataset).
    method: ``bilinear`` or ``bicubic`` (see :func:`regrid.interpolate`); bicubic
        precipitation, which overshoots below 0 near showers, is clipped at 0.
    Returns (time, ..., y_hr, x_hr) per variable, lazy where ``lr`` is, in the units and attrs
    of ``lr``, with the HR lat/lon as coordinates.
    """
    if method not in ("bilinear", "bicubic"):
        raise ValueError(f"unknown interpolation method {method!r}; use 'bilinear' or 'bicubic'")
    lat, lon = grid_of(hr_grid)
    out = {}
    for name, da in lr.data_vars.items():
        if not set(grids.HORIZONTAL) <= set(da.dims):
            continue
        fine = regrid.interpolate(da, lat, lon, method=method)
        if method == "bicubic" and units.is_precipitation(str(name), da):
            fine = fine.clip(min=0).assign_attrs(da.attrs)
        out[name] = fine
    return xr.Dataset(out, attrs=lr.attrs)


def grid_of(grid: xr.Dataset | xr.DataArray) -> tuple[xr.DataArray, xr.DataArray]:
    """lat(y, x), lon(y, x) of a dataset or array, without other coordinates."""
    if "lat" not in grid.coords or "lon" not in grid.coords:
        raise ValueError("the HR grid needs 'lat' and 'lon' coordinates")
    return grid["lat"].reset_coords(drop=True), grid["lon"].reset_coords(drop=True)

"""Opening the sources of an evaluation and bringing them onto the truth's grid.

A forecast, a reference or a truth file is opened lazily (:func:`open_dataset`) and put in one
layout (:func:`standardise`: a ``member`` dim if any, grid dims (y, x), 2-D lat/lon). With a
config, the truth and the LR input are read through the data layer instead
(:func:`open_config`: the config's names, units, accumulation, orientation and missing-value
policy). A source on the truth's grid points stored in another order (latitude flipped,
longitudes rolled from 0..360 to -180..180) is reordered by its lat/lon
(:func:`match_grid`); a different grid is refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from finescale.data.grids import wrap180
from finescale.data.reading import NETCDF_SUFFIXES, checked_reads, disk_chunks

RESERVED_NAMES = ("forecast", "truth", "lr")
MEMBER_ALIASES = ("member", "number", "realization", "ensemble", "ens")
# 1-D coordinate dims of a regular grid, renamed to the (y, x) layout used everywhere here
GRID_ALIASES = (("lat", "lon"), ("latitude", "longitude"), ("rlat", "rlon"))
SAME_DEGREES = 1e-4  # lat/lon closer than this are the same grid point


def open_dataset(path: str | Path, role: str = "dataset") -> xr.Dataset:
    """Open a Zarr store or a NetCDF/GRIB file lazily (dask, chunked as stored), with errors
    naming ``role`` and path.

    A chunk that cannot be read later (a truncated or corrupt file) is an error naming the file
    and the variable (:func:`finescale.data.reading.checked_reads`); values are kept as they are
    (NaN: a missing member or truth value).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{role} {path}: no such file or directory")
    zarr_like = path.is_dir() or path.suffix == ".zarr"
    try:
        if zarr_like:
            ds = xr.open_dataset(path, engine="zarr", chunks=None, cache=False)
        else:
            # a NetCDF name is read as NetCDF: a corrupt file then says why, not "no engine matched"
            engine = "netcdf4" if path.suffix.lower() in NETCDF_SUFFIXES else None
            ds = xr.open_dataset(path, engine=engine, chunks=None, cache=False)
    except Exception as exc:  # every reader fails differently; one clear message is what helps
        kind = "a Zarr store" if zarr_like else "a file xarray can read"
        raise ValueError(
            f"{role} {path}: cannot be opened as {kind} ({type(exc).__name__}: {exc})"
        ) from exc
    names = {str(n) for n in ds.data_vars}
    time = "time" if "time" in ds.dims else None
    return disk_chunks(checked_reads(ds, names, path, "keep", time))


def parse_references(items: Iterable[str]) -> dict[str, Path]:
    """``["NAME=PATH", ...]`` -> ``{NAME: Path}``; names must be unique and not reserved."""
    out: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        name = name.strip()
        if not sep or not name or not path.strip():
            raise ValueError(
                f"reference {item!r}: expected NAME=PATH, e.g. bicubic=runs/bicubic.zarr"
            )
        check_reference_name(name)
        if name in out:
            raise ValueError(f"reference name {name!r} given twice")
        out[name] = Path(path.strip())
    return out


def check_reference_name(name: str) -> None:
    """Refuse a reference named like one of the roles (forecast, truth, lr)."""
    if name in RESERVED_NAMES:
        raise ValueError(f"reference name {name!r} is reserved; choose another")


def where(role: str, paths: Mapping[str, Any]) -> str:
    """'forecast (runs/x.zarr)' for messages; just the role when no path is known."""
    path = paths.get(role)
    return f"{role} ({path})" if path else role


def standardise(ds: xr.Dataset, where: str) -> xr.Dataset:
    """One layout for every source: a ``member`` dim if any, grid dims (y, x), 2-D lat/lon."""
    if "member" not in ds.dims:
        alias = next((a for a in MEMBER_ALIASES if a in ds.dims), None)
        if alias is not None:
            ds = ds.rename({alias: "member"})
    if not {"y", "x"} <= set(ds.dims):
        pair = next((p for p in GRID_ALIASES if set(p) <= set(ds.dims)), None)
        if pair is None:
            raise ValueError(
                f"{where}: no horizontal grid dims: expected (y, x) or (lat, lon), "
                f"found {tuple(ds.dims)}"
            )
        lat_name, lon_name = pair
        lat1, lon1 = ds[lat_name].values, ds[lon_name].values
        ds = ds.rename({lat_name: "y", lon_name: "x"}).drop_vars(["y", "x"], errors="ignore")
        lat2, lon2 = np.meshgrid(lat1, lon1, indexing="ij")
        ds = ds.assign_coords(lat=(("y", "x"), lat2), lon=(("y", "x"), lon2))
    for old, new in (("latitude", "lat"), ("longitude", "lon")):
        if old in ds.coords and new not in ds.coords:
            ds = ds.rename({old: new})
    # projected x/y index coordinates (metres, km, ...) are not compared: lat/lon are
    return ds.drop_vars([c for c in ("y", "x") if c in ds.coords])


def _worst(lat: np.ndarray, lon: np.ndarray, truth_lat: np.ndarray, truth_lon: np.ndarray):
    """Largest lat and lon differences in degrees (longitudes compared modulo 360)."""
    dlat = np.abs(lat - truth_lat)
    dlon = np.abs(wrap180(lon - truth_lon))
    return (float(np.nanmax(dlat)) if dlat.size else 0.0), (
        float(np.nanmax(dlon)) if dlon.size else 0.0
    )


def _reordering(
    lat: np.ndarray, lon: np.ndarray, truth_lat: np.ndarray, truth_lon: np.ndarray
) -> tuple[bool, bool, int] | None:
    """(flip y, flip x, roll x by k points) that puts (lat, lon) onto the truth's, or None.

    Tried: each flip, and every roll of x that brings a point onto the truth's first point
    (a longitude axis stored 0..360 against -180..180 is a roll of a global grid).
    """
    for flip_y, flip_x in ((False, False), (True, False), (False, True), (True, True)):
        a, b = lat[::-1] if flip_y else lat, lon[::-1] if flip_y else lon
        a, b = (a[:, ::-1], b[:, ::-1]) if flip_x else (a, b)
        first = np.abs(wrap180(b[0] - truth_lon[0, 0]))
        for k in np.flatnonzero(
            (first < SAME_DEGREES) & (np.abs(a[0] - truth_lat[0, 0]) < SAME_DEGREES)
        ):
            rolled = (np.roll(a, -int(k), axis=1), np.roll(b, -int(k), axis=1))
            if max(_worst(*rolled, truth_lat, truth_lon)) <= SAME_DEGREES:
                return flip_y, flip_x, int(k)
    return None


def match_grid(
    ds: xr.Dataset, truth: xr.Dataset, where: str, truth_where: str
) -> tuple[xr.Dataset, list[str]]:
    """``ds`` on the truth's grid points in the truth's order, and notes on what was done.

    ``where`` names ``ds`` in messages ("forecast (f.zarr)"), ``truth_where`` the truth's file.

    Same points in another order (flipped latitude or longitude, a rolled longitude axis) are
    reordered by lat/lon, with a note; a grid of another shape or other points is refused
    (ValueError naming both sources). Without lat/lon, ``ds`` is assumed on the truth's grid.
    """
    shape, truth_shape = (ds.sizes["y"], ds.sizes["x"]), (truth.sizes["y"], truth.sizes["x"])
    if shape != truth_shape:
        raise ValueError(
            f"{where}: grid of {shape[0]} x {shape[1]} points (y x x) differs from the truth's "
            f"{truth_shape[0]} x {truth_shape[1]} ({truth_where}); "
            "regrid it onto the truth grid first"
        )
    if not {"lat", "lon"} <= set(ds.coords):
        return ds, [f"{where} has no lat/lon coordinates: assumed to be on the truth's grid"]
    lat, lon = (np.asarray(ds[n].transpose("y", "x").values, dtype=float) for n in ("lat", "lon"))
    truth_lat = np.asarray(truth["lat"].transpose("y", "x").values, dtype=float)
    truth_lon = np.asarray(truth["lon"].transpose("y", "x").values, dtype=float)
    for name, a, b in (("lat", lat, truth_lat), ("lon", lon, truth_lon)):
        if a.shape != b.shape:
            raise ValueError(f"{where}: {name} has shape {a.shape}, the truth's {b.shape}")
    worst = _worst(lat, lon, truth_lat, truth_lon)
    if max(worst) <= SAME_DEGREES:
        return ds, []
    found = _reordering(lat, lon, truth_lat, truth_lon)
    if found is None:
        name, value = ("lat", worst[0]) if worst[0] > SAME_DEGREES else ("lon", worst[1])
        raise ValueError(
            f"{where}: {name} differs from the truth's ({truth_where}) by up to {value:.4g} "
            "degrees: not the same grid points in any order (shifted or another domain?)"
        )
    flip_y, flip_x, roll = found
    done = []
    if flip_y:
        ds = ds.isel(y=slice(None, None, -1))
        done.append("y flipped (latitude stored in the other direction)")
    if flip_x:
        ds = ds.isel(x=slice(None, None, -1))
        done.append("x flipped (longitude stored in the other direction)")
    if roll:
        ds = ds.roll(x=-roll, roll_coords=True)
        done.append(
            f"x rolled by {roll} points (another longitude origin, e.g. 0..360 vs -180..180)"
        )
    note = f"{where}: the truth's grid points in another order, reordered by lat/lon: " + "; ".join(
        done
    )
    return ds, [note]


def times_of(ds: xr.Dataset, where: str) -> np.ndarray:
    """The ``time`` values of ``ds``; ValueError when it has none or repeats one."""
    if "time" not in ds.dims:
        raise ValueError(f"{where}: no 'time' dim (dims {tuple(ds.dims)})")
    values = ds["time"].values
    if np.unique(values).size != values.size:
        raise ValueError(f"{where}: repeated times in its 'time' coordinate")
    return values

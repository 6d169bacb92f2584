"""Opening sources, first stage of the data pipeline (open -> align/check -> pair & split).

:func:`open_source` and :func:`open_static` read a file into finescale's layout;
:mod:`finescale.data.alignment` then aligns and checks the datasets, :mod:`finescale.data.pairs`
pairs and splits them. Here a source's variables are mapped, selected and converted; reading a
file chunk by chunk is :mod:`finescale.data.reading`, finding and orienting its grid
:mod:`finescale.data.layout`, checking its times :mod:`finescale.data.times`.

After :func:`open_source` every dataset follows one layout, whatever the file looked like:

* variables carry the canonical names of the config (the keys of ``variables``), converted to
  the units the config asks for (the file's units, where different, in ``attrs["source_units"]``;
  the period amounts were divided by in ``attrs["accumulation_period"]``);
* dims are ``time``, an optional ``level``, then ``y`` (south -> north) and ``x`` (west -> east),
  in that order; ``y`` and ``x`` carry no coordinate values, the grid is given by 2-D
  coordinates ``lat(y, x)`` and ``lon(y, x)`` in degrees (built from 1-D lat/lon for a regular
  grid, taken as they are for a projected one);
* times are strictly increasing and unique; variables without a time dim are static fields;
* data stay lazy (dask), read chunk by chunk.

Every chunk is checked as it is read (by whatever computes it: statistics, the alignment check,
training, generation), so a bad file is named wherever it is first read:

* a chunk that cannot be read (a truncated or corrupt file) is a PairError naming the file and
  the variable, not a decoder's traceback;
* missing values (NaN, also what a ``_FillValue`` decodes to) and infinities are refused, naming
  the file, the variable and the first bad time of the chunk, unless the source sets
  ``missing: mask``: then +-Inf become NaN too and NaN is a missing value (skipped by the
  statistics and the alignment check, given to the models as the variable's mean, left out of
  the training loss where it is in an HR target).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from finescale.config import (
    FileConfig,
    SourceConfig,
    StaticConfig,
    VariableSpec,
    duration_text,
)
from finescale.data import units
from finescale.data.errors import IN_MEMORY, MissingVariableError, PairError
from finescale.data.layout import (
    LAT_ALIASES,
    LON_ALIASES,
    attach_grid,
    coordinate_name,
    grid_dims,
    load_coordinate,
)
from finescale.data.reading import memory_raw, open_raw
from finescale.data.times import check_times, regular_step_seconds

__all__ = ["INFERRED", "STATED", "open_source", "open_static", "read_through"]

#: How the accumulation period was obtained (attrs["accumulation_period_source"]).
STATED, INFERRED = "stated", "inferred from the time step"
#: Target size of one dask chunk along time for sources that are not chunked on disk.
_CHUNK_BYTES = 64 * 2**20


def open_source(cfg: SourceConfig, dataset: xr.Dataset | None = None) -> xr.Dataset:
    """Open an LR or HR source in finescale's layout (see the module docstring).

    NetCDF (engine netcdf4), Zarr (a folder or ``*.zarr``) and GRIB (cfgrib, optional extra);
    ``engine: auto`` decides by suffix, a folder is a Zarr store; a path with ``*`` opens all
    matching NetCDF files as one dataset. Units are converted as the VariableSpec asks:
    accumulated amounts are divided by the period stated in ``accumulation`` or, with
    ``accumulation: true``, by the time step, which must then be regular; what was done is
    recorded in each variable's attrs (``source_units``, ``accumulation_period``,
    ``accumulation_period_source``). Variables without the time dim are kept as static fields
    (e.g. LR orography); at least one variable must have it.

    dataset: data already in memory (or lazily opened by the caller), decoded as xarray decodes
    a file, laid out as the file would be (the names, dims and coordinates ``cfg`` gives). It is
    used instead of reading ``cfg.path`` (then ignored) and goes through the same mapping,
    level selection, conversions and checks, chunk by chunk as it is read; errors name the
    "in-memory dataset". Dask-backed variables keep their chunks, NumPy-backed ones are
    chunked as a NetCDF file's.

    Raises SourceNotFoundError (path missing), MissingVariableError (a mapped variable is not in
    the file; lists those that are), units.UnitsError (unknown units, an amount to convert to a
    rate without a period) and PairError (wrong dims, times not strictly increasing or
    repeated, ``accumulation: true`` on irregular times, unknown format, GRIB without cfgrib).
    """
    return _open(cfg, time=cfg.time, level=cfg.level, dataset=dataset)


def open_static(cfg: StaticConfig, dataset: xr.Dataset | None = None) -> xr.Dataset:
    """Open time-independent HR fields (orography, land-sea mask, ...) in finescale's layout.

    Length-1 dims other than y/x (such as a single time of an ERA5 invariant file) are
    dropped; any other extra dim is an error. Same formats, ``dataset`` and errors as
    :func:`open_source`.
    """
    ds = _open(cfg, time=None, level="level", dataset=dataset)
    for name, da in ds.data_vars.items():
        extra = [d for d in da.dims if d not in ("y", "x")]
        if extra:
            raise PairError(
                f"{ds.attrs['finescale_source']}: static variable '{name}' has dims "
                f"{tuple(da.dims)}; only (y, x) is allowed (select a level in the config)"
            )
    return ds


def read_through(ds: xr.Dataset, names: Sequence[str]) -> None:
    """Read every value of the variables ``names`` once, chunk by chunk, keeping none of them.

    ``ds`` is (a selection of) a dataset opened here: the reads go through this module's checks,
    which refuse what the source's ``missing`` setting does not allow (NaN, Inf) and chunks that
    cannot be decoded, naming the file, the variable and the time. Done before a long run draws
    anything, a refusal comes before any output is created instead of part-way through it, at
    the cost of one more read.
    """
    ds[list(names)].count().compute()


def _open(
    cfg: FileConfig, *, time: str | None, level: str, dataset: xr.Dataset | None
) -> xr.Dataset:
    path: Path | str
    if dataset is None:
        path = Path(cfg.path)
        raw = open_raw(path, cfg, time)
    else:
        path = IN_MEMORY
        raw = memory_raw(dataset, cfg, time)
    lat_name = coordinate_name(raw, cfg.lat, LAT_ALIASES, "latitude", path)
    lon_name = coordinate_name(raw, cfg.lon, LON_ALIASES, "longitude", path)
    lat = load_coordinate(raw, lat_name, path)
    lon = load_coordinate(raw, lon_name, path)
    y_dim, x_dim = grid_dims(lat, lon, cfg, path)

    arrays = {}
    for name, spec in cfg.variables.items():
        da = _variable(raw, name, spec, path, level=level)
        missing = [d for d in (y_dim, x_dim) if d not in da.dims]
        if missing:
            raise PairError(
                f"{path}: variable '{spec.name}' has dims {tuple(da.dims)}, not the grid dims "
                f"({y_dim}, {x_dim}); set y/x in the config"
            )
        if time is None:
            # static: drop length-1 dims such as the single time of an invariant file
            singles = [d for d in da.dims if d not in (y_dim, x_dim) and da.sizes[d] == 1]
            da = da.isel({d: 0 for d in singles}, drop=True)
        renames = {y_dim: "y", x_dim: "x"}
        if time is not None and time in da.dims:
            renames[time] = "time"
        if spec.level is None and level in da.dims:
            renames[level] = "level"
        # y/x lose their 1-D coordinate values: lat/lon(y, x) describe the grid instead.
        da = da.reset_coords(drop=True).drop_vars([y_dim, x_dim], errors="ignore")
        arrays[name] = da.rename(renames)

    if time is not None and not any("time" in da.dims for da in arrays.values()):
        dims = sorted({str(d) for da in arrays.values() for d in da.dims})
        raise PairError(
            f"{path}: no variable has the time dim '{time}' (dims: {', '.join(dims)}); "
            "set 'time' in the source config"
        )
    ds = xr.Dataset(arrays)
    ds = _chunked(ds)
    ds = attach_grid(ds, lat, lon, y_dim, x_dim, path)
    ds = ds.transpose(*[d for d in ("time", "level") if d in ds.dims], ..., "y", "x")
    if "time" in ds.dims:
        check_times(ds["time"].values, path)

    for name, spec in cfg.variables.items():
        ds[name] = _convert_units(ds, spec, path, name)
    orientation = {k: v for k, v in ds.attrs.items() if k == "finescale_orientation"}
    ds.attrs = {**raw.attrs, "finescale_source": str(path), **orientation}
    return ds


def _variable(
    ds: xr.Dataset, name: str, spec: VariableSpec, path: Path | str, *, level: str
) -> xr.DataArray:
    """The mapped variable, at the requested level, with canonical name."""
    if spec.name not in ds.data_vars and spec.name not in ds.coords:
        have = ", ".join(sorted(str(v) for v in ds.data_vars)) or "none"
        raise MissingVariableError(
            f"{path}: variable '{spec.name}' (for '{name}') not found; the file has: {have}"
        )
    da = ds[spec.name]
    if spec.level is not None:
        if level not in da.dims:
            raise PairError(
                f"{path}: variable '{spec.name}' has no vertical dim '{level}' to select "
                f"level {spec.level:g} from (dims: {tuple(da.dims)})"
            )
        values = np.asarray(ds[level].values, dtype=float)
        hits = np.flatnonzero(np.isclose(values, spec.level, rtol=1e-6, atol=1e-9))
        if hits.size == 0:
            listed = ", ".join(f"{v:g}" for v in values)
            raise PairError(
                f"{path}: variable '{spec.name}' has no level {spec.level:g}; levels: {listed}"
            )
        da = da.isel({level: int(hits[0])}, drop=True).assign_attrs(level=spec.level)
    return da.rename(name)


def _chunked(ds: xr.Dataset) -> xr.Dataset:
    """Dask-backed data; unchunked sources are cut into ~64 MiB pieces along time."""
    if all(v.chunks is not None for v in ds.data_vars.values()):
        return ds
    if "time" not in ds.dims:
        return ds.chunk()
    per_step = max(
        (v.nbytes // v.sizes["time"] for v in ds.data_vars.values() if "time" in v.dims),
        default=1,
    )
    return ds.chunk({"time": max(1, _CHUNK_BYTES // max(per_step, 1))})


def _convert_units(ds: xr.Dataset, spec: VariableSpec, path: Path | str, name: str) -> xr.DataArray:
    """Variable ``name`` of ``ds`` in the units the spec asks for; the file's units are checked
    even when kept.

    What was done is recorded in its attrs, for ``pairs check`` to show: ``source_units`` (the
    file's units, where they differ from the result's), ``accumulation_period`` (e.g. "1 h")
    and ``accumulation_period_source`` (:data:`STATED` or :data:`INFERRED`).
    """
    da = ds[name]
    where = f"{path}: variable '{name}'"
    if spec.units is None:
        if spec.accumulation is not False:
            raise PairError(
                f"{where} is accumulated: give the rate units to convert it to, "
                "e.g. units: 'mm h-1'"
            )
        text = da.attrs.get("units", spec.source_units)
        if text is not None:
            units.parse_units(str(text), where=where)  # unknown units are an error all the same
            da = da.assign_attrs(units=text)
        return da
    text = da.attrs.get("units", spec.source_units)
    period: tuple[float, str] | None = None
    if text is not None and units.needs_period(str(text), spec.units, where=where):
        if spec.accumulation is False:
            raise units.UnitsError(
                f"{where}: converting {str(text)!r} to {spec.units!r} needs the period each value "
                "is accumulated over; set it on this variable, e.g. accumulation: 1h"
            )
        period = _accumulation_period(ds, spec, path, name)
    out = units.convert(
        da,
        spec.units,
        source_units=spec.source_units,
        accumulation_seconds=None if period is None else period[0],
        where=where,
    )
    done: dict[str, str] = {}
    if str(text) != spec.units:
        done["source_units"] = str(text)
    if period is not None:
        done["accumulation_period"] = duration_text(period[0])
        done["accumulation_period_source"] = period[1]
    elif spec.accumulation is not False:
        done["accumulation_period"] = "not applied"
        done["accumulation_period_source"] = f"the file's units {str(text)!r} are already a rate"
    return out.assign_attrs(done)


def _accumulation_period(
    ds: xr.Dataset, spec: VariableSpec, path: Path | str, name: str
) -> tuple[float, str]:
    """(length in s, how it was obtained) of the period the variable's values accumulate over."""
    if spec.accumulation is not True:
        return float(spec.accumulation), STATED
    return regular_step_seconds(ds, path, name), INFERRED

"""Opening sources, first stage of the data pipeline (open -> align/check -> pair & split).

:func:`open_source` and :func:`open_static` read a file into finescale's layout;
:mod:`finescale.data.alignment` then aligns and checks the datasets, :mod:`finescale.data.pairs`
pairs and splits them.

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

import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from xarray.backends import BackendArray
from xarray.core import indexing

from finescale.config import (
    FileConfig,
    SourceConfig,
    StaticConfig,
    VariableSpec,
    duration_text,
)
from finescale.data import units
from finescale.data.grids import wrap180

__all__ = [
    "MissingVariableError",
    "PairError",
    "SourceNotFoundError",
    "checked_reads",
    "disk_chunks",
    "open_source",
    "open_static",
]

NETCDF_SUFFIXES = {".nc", ".nc4", ".netcdf", ".cdf", ".h5", ".hdf5", ".he5"}
_GRIB_SUFFIXES = {".grib", ".grb", ".grib1", ".grib2", ".grb1", ".grb2"}
_ZARR_MARKERS = ("zarr.json", ".zgroup", ".zmetadata", ".zarray")
_ENGINES = {"netcdf": "netcdf4", "zarr": "zarr", "grib": "cfgrib"}
_LAT_ALIASES = ("lat", "latitude", "nav_lat", "XLAT")
_LON_ALIASES = ("lon", "longitude", "nav_lon", "XLONG")
#: What error messages name instead of a file for a dataset passed to :func:`open_source`.
IN_MEMORY = "in-memory dataset"
#: How the accumulation period was obtained (attrs["accumulation_period_source"]).
STATED, INFERRED = "stated", "inferred from the time step"
#: Target size of one dask chunk along time for sources that are not chunked on disk.
_CHUNK_BYTES = 64 * 2**20


# --------------------------------------------------------------------------------------------
# errors


class PairError(ValueError):
    """LR/HR data that cannot be opened or paired; the message names the file and variable."""


class SourceNotFoundError(PairError, FileNotFoundError):
    """A source path that does not exist (also a FileNotFoundError)."""


class MissingVariableError(PairError, KeyError):
    """A mapped variable that is not in its file (also a KeyError); lists the ones that are."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


# --------------------------------------------------------------------------------------------
# opening


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
        raw = _open_raw(path, cfg, time)
    else:
        path = IN_MEMORY
        raw = _memory_raw(dataset, cfg, time)
    lat_name = _coordinate_name(raw, cfg.lat, _LAT_ALIASES, "latitude", path)
    lon_name = _coordinate_name(raw, cfg.lon, _LON_ALIASES, "longitude", path)
    lat = _load_coordinate(raw, lat_name, path)
    lon = _load_coordinate(raw, lon_name, path)
    y_dim, x_dim = _grid_dims(lat, lon, cfg, path)

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
    ds = _attach_grid(ds, lat, lon, y_dim, x_dim, path)
    ds = ds.transpose(*[d for d in ("time", "level") if d in ds.dims], ..., "y", "x")
    if "time" in ds.dims:
        _check_times(ds["time"].values, path)

    for name, spec in cfg.variables.items():
        ds[name] = _convert_units(ds, spec, path, name)
    orientation = {k: v for k, v in ds.attrs.items() if k == "finescale_orientation"}
    ds.attrs = {**raw.attrs, "finescale_source": str(path), **orientation}
    return ds


def _open_raw(path: Path, cfg: FileConfig, time: str | None) -> xr.Dataset:
    """The file as xarray opens it, lazy, its mapped variables read through :class:`_CheckedReads`.

    Not yet chunked for a single NetCDF file; Zarr and multi-file sources are chunked as on disk.
    """
    names = {spec.name for spec in cfg.variables.values()}
    if any(ch in str(path) for ch in "*?["):
        files = sorted(path.parent.glob(path.name))
        if not files:
            raise SourceNotFoundError(f"{path}: no file matches this pattern")
        kind = _engine_for(files[0], cfg.engine)
        _check_reader(kind, path)

        def checked(ds: xr.Dataset) -> xr.Dataset:
            # each file on its own, so that an error names the file that holds the bad chunk
            one = Path(ds.encoding.get("source", path))
            return disk_chunks(checked_reads(ds, names, one, cfg.missing, time))

        try:
            return xr.open_mfdataset(
                files,
                engine=_ENGINES[kind],
                combine="by_coords",
                data_vars="minimal",
                coords="minimal",
                compat="override",
                chunks=None,
                cache=False,
                preprocess=checked,
            )
        except PairError:
            raise
        except Exception as exc:  # any reader error means this file cannot be used
            raise PairError(
                f"{path}: cannot open the matching files together: {type(exc).__name__}: {exc}"
            ) from exc
    if not path.exists():
        raise SourceNotFoundError(f"{path}: no such file or folder")
    kind = _engine_for(path, cfg.engine)
    _check_reader(kind, path)
    try:
        # Lazy but unchunked: chunking later reads each chunk's slice only, whereas chunks={}
        # would make one task of a whole contiguous NetCDF variable.
        if kind == "zarr":
            raw = xr.open_dataset(
                path, engine="zarr", chunks=None, cache=False, consolidated=_consolidated(path)
            )
        else:
            raw = xr.open_dataset(path, engine=_ENGINES[kind], cache=False)
    except Exception as exc:  # decoders raise many types for a corrupt file
        raise PairError(f"{path}: cannot be read as {kind}: {type(exc).__name__}: {exc}") from exc
    raw = checked_reads(raw, names, path, cfg.missing, time)
    return disk_chunks(raw) if kind == "zarr" else raw


def _memory_raw(dataset: xr.Dataset, cfg: FileConfig, time: str | None) -> xr.Dataset:
    """An in-memory ``dataset`` as :func:`_open_raw` gives a file: mapped variables checked."""
    names = {spec.name for spec in cfg.variables.values()}
    raw = checked_reads(dataset, names, IN_MEMORY, cfg.missing, time)
    # The caller's dask chunks are kept; NumPy-backed data are chunked later, as a NetCDF file's.
    dask = [n for n in raw.data_vars if n in names and dataset[n].chunks is not None]
    return raw.assign({n: raw[n].chunk(dataset[n].chunksizes) for n in dask})


def _load_coordinate(raw: xr.Dataset, name: str, path: Path | str) -> xr.DataArray:
    try:
        return raw[name].load()
    except Exception as exc:  # decoders raise many types for a corrupt file
        raise PairError(
            f"{path}: coordinate '{name}' cannot be read ({type(exc).__name__}: {exc}); "
            "the file may be truncated or corrupt"
        ) from exc


def disk_chunks(ds: xr.Dataset) -> xr.Dataset:
    """Dask chunks as on disk (Zarr chunks, NetCDF4 chunking; else whole variables)."""
    return ds.assign(
        {
            name: da.chunk(da.encoding.get("preferred_chunks") or {})
            for name, da in ds.data_vars.items()
        }
    )


# --------------------------------------------------------------------------------------------
# checked reads: corrupt chunks and missing values are named where they are read


class _CheckedReads(BackendArray):
    """One variable of a file, read lazily; each block read is checked before anyone sees it.

    A block that fails to read is a PairError naming the file and the variable. Non-finite
    values are a PairError naming the first bad time of the block (``missing="error"``) or, with
    ``missing="mask"``, +-Inf become NaN (NaN stays: a missing value); ``missing="keep"`` leaves
    values as they are. ``times``: the time values along the variable's axis ``time_axis`` (None:
    no time dim).
    """

    def __init__(
        self,
        variable: xr.Variable,
        path: Path | str,
        name: str,
        missing: str,
        time_axis: int | None,
        times: np.ndarray | None,
    ) -> None:
        self.variable, self.path, self.name, self.missing = variable, path, name, missing
        self.time_axis, self.times = time_axis, times
        self.shape, self.dtype = variable.shape, variable.dtype

    def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray:
        return indexing.explicit_indexing_adapter(
            key, self.shape, indexing.IndexingSupport.OUTER, self._read
        )

    def _read(self, key: tuple[Any, ...]) -> np.ndarray:
        try:
            values = np.asarray(self.variable[key].values)
        except Exception as exc:  # decoders raise many types for a corrupt chunk
            raise PairError(
                f"{self.path}: variable '{self.name}' cannot be read ({type(exc).__name__}: "
                f"{exc}); the file may be truncated or corrupt"
            ) from exc
        if self.missing == "keep" or values.dtype.kind not in "fc":
            return values
        finite = np.isfinite(values)
        if finite.all():
            return values
        if self.missing == "mask":
            return np.where(np.isinf(values), np.nan, values)
        raise PairError(self._bad_value(key, values, finite))

    def _bad_value(self, key: tuple[Any, ...], values: np.ndarray, finite: np.ndarray) -> str:
        """The message for the first non-finite value of a block read at ``key``."""
        first = tuple(np.argwhere(~finite)[0])
        index = _file_index(key, self.shape, first)
        where = ", ".join(f"{d}={i}" for d, i in zip(self.variable.dims, index, strict=True))
        value = values[first]
        what = "NaN (a missing value)" if np.isnan(value) else str(value)
        at = ""
        if self.time_axis is not None and self.times is not None:
            at = f" at time {time_text(self.times[index[self.time_axis]])}"
        return (
            f"{self.path}: variable '{self.name}' holds {what}{at} (first in the block read; "
            f"file indices {where}); set 'missing: mask' on this source to treat NaN and Inf "
            "as missing values"
        )


def _file_index(
    key: tuple[Any, ...], shape: tuple[int, ...], position: tuple[Any, ...]
) -> list[int]:
    """Indices in the file of ``position`` in a block read with the outer-indexing ``key``.

    An integer in ``key`` drops its axis from the block; a slice or an integer array keeps it.
    """
    axes = iter(position)
    index = []
    for k, n in zip(key, shape, strict=True):
        if isinstance(k, (int, np.integer)):
            index.append(int(k) % n)
        elif isinstance(k, slice):
            index.append(range(*k.indices(n))[int(next(axes))])
        else:
            index.append(int(np.asarray(k)[int(next(axes))]) % n)
    return index


def checked_reads(
    ds: xr.Dataset, names: set[str], path: Path | str, missing: str, time: str | None
) -> xr.Dataset:
    """``ds`` with its data variables ``names`` read through :class:`_CheckedReads`.

    ds: as opened lazily without dask (``chunks=None``, ``cache=False``); chunk it afterwards
    (e.g. :func:`disk_chunks`). path: the file named in errors. missing: ``"error"``, ``"mask"``
    or ``"keep"`` (see :class:`_CheckedReads`). time: name of the time dim (None: none).
    """
    times = ds[time].values if time is not None and time in ds.coords else None
    checked = {}
    for name in names & {str(n) for n in ds.data_vars}:
        var = ds[name].variable
        axis = var.dims.index(time) if time is not None and time in var.dims else None
        reads = _CheckedReads(var, path, name, missing, axis, times)
        checked[name] = xr.Variable(
            var.dims, indexing.LazilyIndexedArray(reads), var.attrs, var.encoding
        )
    return ds.assign(checked)


def _check_reader(kind: str, path: Path) -> None:
    """GRIB goes through cfgrib, an optional extra: say how to get it rather than fail later."""
    if kind == "grib" and importlib.util.find_spec("cfgrib") is None:
        raise PairError(
            f"{path}: reading GRIB needs the optional package cfgrib: "
            "pip install 'finescale[grib]' (and the eccodes library)"
        )


def _consolidated(path: Path) -> bool | None:
    """Whether a Zarr store has consolidated metadata (None: unknown, let zarr find out)."""
    if (path / ".zmetadata").is_file():
        return True
    meta = path / "zarr.json"
    if meta.is_file():
        try:
            return bool(json.loads(meta.read_text()).get("consolidated_metadata"))
        except (OSError, ValueError):
            return None
    return None


def _engine_for(path: Path, engine: str) -> str:
    if engine != "auto":
        return engine
    if path.is_dir():
        if path.suffix == ".zarr" or any((path / m).exists() for m in _ZARR_MARKERS):
            return "zarr"
        raise PairError(
            f"{path}: a folder that is not a Zarr store; for several NetCDF files give a "
            "pattern such as folder/*.nc"
        )
    suffix = path.suffix.lower()
    if suffix == ".zarr":
        return "zarr"
    if suffix in NETCDF_SUFFIXES:
        return "netcdf"
    if suffix in _GRIB_SUFFIXES:
        return "grib"
    raise PairError(
        f"{path}: cannot tell the format from the name; set engine: netcdf, zarr or grib"
    )


def _coordinate_name(
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


def _grid_dims(
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


def _is_monotonic(values: np.ndarray, increasing: bool) -> bool:
    steps = np.diff(values)
    return bool(np.all(steps > 0) if increasing else np.all(steps < 0))


def _attach_grid(
    ds: xr.Dataset, lat: xr.DataArray, lon: xr.DataArray, y_dim: str, x_dim: str, path: Path | str
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
    return _regular_step_seconds(ds, path, name), INFERRED


# --------------------------------------------------------------------------------------------
# time


def time_text(t: Any, unit: str = "m") -> str:
    """A time as ISO text to the minute (``unit`` "m") or second ("s"), for messages and
    records; datetime64, cftime or anything with ``strftime``; else ``str(t)``."""
    if isinstance(t, np.datetime64):
        return str(np.datetime_as_string(t, unit=unit))
    if hasattr(t, "strftime"):
        return str(t.strftime("%Y-%m-%dT%H:%M" if unit == "m" else "%Y-%m-%dT%H:%M:%S"))
    return str(t)


def _check_times(times: np.ndarray, path: Path | str) -> None:
    """Strictly increasing and unique, else PairError naming the first offending time."""
    if times.size < 2:
        return
    try:
        bad = np.flatnonzero(~(times[1:] > times[:-1]))
    except TypeError as exc:
        raise PairError(f"{path}: times cannot be compared ({exc})") from exc
    if bad.size:
        i = int(bad[0]) + 1
        how = "repeats" if times[i] == times[i - 1] else f"comes after {time_text(times[i - 1])}"
        raise PairError(
            f"{path}: times must be strictly increasing and unique; time {time_text(times[i])} "
            f"(index {i}) {how}"
        )


def hours_since(times: np.ndarray, ref: Any) -> np.ndarray:
    """Hours from ``ref`` to each of ``times`` (datetime64 or cftime)."""
    if times.dtype.kind == "M":
        return (times - ref) / np.timedelta64(1, "h")
    if times.dtype.kind in "iuf":
        raise PairError("times are plain numbers (no CF 'units' attribute); cannot measure hours")
    return np.array([(t - ref).total_seconds() / 3600.0 for t in times], dtype=float)


def _regular_step_seconds(ds: xr.Dataset, path: Path | str, name: str) -> float:
    """The time step in s, which must be the same throughout: the period of accumulated
    amounts when the config says ``accumulation: true``."""
    times = ds["time"].values if "time" in ds.coords else np.array([])
    if times.size < 2:
        raise PairError(
            f"{path}: variable '{name}' is accumulated but the file has a single time, so the "
            "accumulation period cannot be inferred; state it, e.g. accumulation: 1h"
        )
    if times.dtype.kind == "M":
        steps = np.diff(times) / np.timedelta64(1, "s")
    elif times.dtype.kind in "iuf":
        raise PairError(
            f"{path}: times are plain numbers (no CF 'units' attribute), so the accumulation "
            f"period of variable '{name}' cannot be inferred from them; state it, e.g. "
            "accumulation: 1h"
        )
    else:  # cftime
        steps = np.array([step.total_seconds() for step in np.diff(times)], dtype=float)
    lengths = [duration_text(float(s)) for s in np.unique(steps)]
    if len(lengths) > 1:
        seen = (
            ", ".join(lengths[:-1]) + f" and {lengths[-1]}"
            if len(lengths) <= 4
            else ", ".join(lengths[:4]) + f" and {len(lengths) - 4} more"
        )
        raise PairError(
            f"{path}: variable '{name}' has accumulation: true, but its times are not evenly "
            f"spaced (steps of {seen}), so the period each value is accumulated over cannot be "
            "inferred from the time step; state it in the config, e.g. accumulation: 1h for "
            "amounts accumulated over an hour"
        )
    return float(steps[0])

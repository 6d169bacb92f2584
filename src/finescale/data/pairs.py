"""LR/HR pairs: open the sources, align them in time, check that they describe the same state.

After :func:`open_source` every dataset follows one layout, whatever the file looked like:

* variables carry the canonical names of the config (the keys of ``variables``), converted to
  the units the config asks for;
* dims are ``time``, an optional ``level``, then ``y`` (south -> north) and ``x`` (west -> east),
  in that order; ``y`` and ``x`` carry no coordinate values, the grid is given by 2-D
  coordinates ``lat(y, x)`` and ``lon(y, x)`` in degrees (built from 1-D lat/lon for a regular
  grid, taken as they are for a projected one);
* times are strictly increasing and unique; variables without a time dim are static fields;
* data stay lazy (dask), read chunk by chunk.

:func:`open_pair` then intersects the times (:func:`align_time`) and refuses pairs that are
clearly misaligned (:func:`check_alignment`): LR finer than HR, a non-integer spacing ratio,
different domains, LR cell centres off the coarsened HR centres, or LR data that do not match
HR coarsened to the LR grid (a flipped, shifted or transposed LR is recognised and named).
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import xarray as xr
from rich.table import Table

from finescale.config import (
    AlignmentConfig,
    DataConfig,
    SourceConfig,
    SplitConfig,
    StaticConfig,
    VariableSpec,
    _FileConfig,
)
from finescale.data import grids, units

__all__ = [
    "AlignmentReport",
    "MisalignedError",
    "MissingVariableError",
    "Pair",
    "PairError",
    "SourceNotFoundError",
    "TimeReport",
    "VariableCheck",
    "align_time",
    "check_alignment",
    "open_pair",
    "open_source",
    "open_static",
    "report_table",
    "split_times",
]

_NETCDF_SUFFIXES = {".nc", ".nc4", ".netcdf", ".cdf", ".h5", ".hdf5", ".he5"}
_GRIB_SUFFIXES = {".grib", ".grb", ".grib1", ".grib2", ".grb1", ".grb2"}
_ZARR_MARKERS = ("zarr.json", ".zgroup", ".zmetadata", ".zarray")
_ENGINES = {"netcdf": "netcdf4", "zarr": "zarr", "grib": "cfgrib"}
_LAT_ALIASES = ("lat", "latitude", "nav_lat", "XLAT")
_LON_ALIASES = ("lon", "longitude", "nav_lon", "XLONG")
#: Target size of one dask chunk along time for sources that are not chunked on disk.
_CHUNK_BYTES = 64 * 2**20
#: Times sampled for the consistency check, and the most HR values loaded for it.
_CHECK_TIMES = 48
_CHECK_BYTES = 256 * 2**20
#: Fewest sampled times for which anomalies about the time mean are compared.
_MIN_ANOMALY_TIMES = 4
#: Share of an LR cell added to ``tolerance_deg`` when domain edges and centres are compared:
#: edges computed as centre +- half a spacing carry the rounding of the coordinates in the file.
_EDGE_FRACTION = 0.05
#: A spacing ratio within this of a whole number counts as whole.
_RATIO_TOLERANCE = 0.02
#: An alternative (flip, shift, transpose) is taken as the real layout of LR when it removes at
#: least this share of the decorrelation ``1 - r`` of the data as given ...
_ALTERNATIVE_GAIN = 0.5
#: ... and raises the correlation by at least this much.
_ALTERNATIVE_MARGIN = 0.02
_STANDARD_CALENDARS = {"standard", "gregorian", "proleptic_gregorian"}


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


class MisalignedError(PairError):
    """LR and HR that do not describe the same state on matching grids.

    ``report`` holds the checks done before the refusal (may be None).
    """

    def __init__(self, message: str, report: AlignmentReport | None = None) -> None:
        super().__init__(message)
        self.report = report


# --------------------------------------------------------------------------------------------
# opening


def open_source(cfg: SourceConfig) -> xr.Dataset:
    """Open an LR or HR source in finescale's layout (see the module docstring).

    NetCDF (engine netcdf4), Zarr (a folder or ``*.zarr``) and GRIB (cfgrib, optional extra);
    ``engine: auto`` decides by suffix, a folder is a Zarr store; a path with ``*`` opens all
    matching NetCDF files as one dataset. Units are converted as the VariableSpec asks
    (accumulated amounts are divided by the time step). Variables without the time dim are kept
    as static fields (e.g. LR orography); at least one variable must have it.

    Raises SourceNotFoundError (path missing), MissingVariableError (a mapped variable is not in
    the file; lists those that are), units.UnitsError (unknown units) and PairError (wrong dims,
    times not strictly increasing or repeated, unknown format, GRIB without cfgrib).
    """
    return _open(cfg, time=cfg.time, level=cfg.level)


def open_static(cfg: StaticConfig) -> xr.Dataset:
    """Open time-independent HR fields (orography, land-sea mask, ...) in finescale's layout.

    Length-1 dims other than y/x (such as a single time of an ERA5 invariant file) are
    dropped; any other extra dim is an error. Same formats and errors as :func:`open_source`.
    """
    ds = _open(cfg, time=None, level="level")
    for name, da in ds.data_vars.items():
        extra = [d for d in da.dims if d not in ("y", "x")]
        if extra:
            raise PairError(
                f"{cfg.path}: static variable '{name}' has dims {tuple(da.dims)}; "
                "only (y, x) is allowed (select a level in the config)"
            )
    return ds


def _open(cfg: _FileConfig, *, time: str | None, level: str) -> xr.Dataset:
    path = Path(cfg.path)
    raw = _open_raw(path, cfg.engine)
    lat_name = _coordinate_name(raw, cfg.lat, _LAT_ALIASES, "latitude", path)
    lon_name = _coordinate_name(raw, cfg.lon, _LON_ALIASES, "longitude", path)
    lat = raw[lat_name].load()
    lon = raw[lon_name].load()
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

    step = None
    for name, spec in cfg.variables.items():
        if spec.accumulation and step is None:
            step = _time_step_seconds(ds, path, name)
        ds[name] = _convert_units(ds[name], spec, path, name, step if spec.accumulation else None)
    ds.attrs = {**raw.attrs, "finescale_source": str(path)}
    return ds


def _open_raw(path: Path, engine: str) -> xr.Dataset:
    """The file as xarray opens it: lazy, not yet chunked (except Zarr and multi-file)."""
    if any(ch in str(path) for ch in "*?["):
        files = sorted(path.parent.glob(path.name))
        if not files:
            raise SourceNotFoundError(f"{path}: no file matches this pattern")
        kind = _engine_for(files[0], engine)
        _check_reader(kind, path)
        try:
            return xr.open_mfdataset(
                files,
                engine=_ENGINES[kind],
                combine="by_coords",
                data_vars="minimal",
                coords="minimal",
                compat="override",
                chunks={},
            )
        except (OSError, ValueError) as exc:
            raise PairError(f"{path}: cannot open the matching files together: {exc}") from exc
    if not path.exists():
        raise SourceNotFoundError(f"{path}: no such file or folder")
    kind = _engine_for(path, engine)
    _check_reader(kind, path)
    try:
        if kind == "zarr":
            return xr.open_zarr(path, chunks={}, consolidated=_consolidated(path))
        # Lazy but unchunked: chunking later reads each chunk's slice only, whereas chunks={}
        # would make one task of a whole contiguous NetCDF variable.
        return xr.open_dataset(path, engine=_ENGINES[kind], cache=False)
    except (OSError, ValueError, KeyError) as exc:
        raise PairError(f"{path}: cannot be read as {kind}: {exc}") from exc


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
    if suffix in _NETCDF_SUFFIXES:
        return "netcdf"
    if suffix in _GRIB_SUFFIXES:
        return "grib"
    raise PairError(
        f"{path}: cannot tell the format from the name; set engine: netcdf, zarr or grib"
    )


def _coordinate_name(
    ds: xr.Dataset, wanted: str, aliases: Sequence[str], what: str, path: Path
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
    lat: xr.DataArray, lon: xr.DataArray, cfg: _FileConfig, path: Path
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
    ds: xr.Dataset, name: str, spec: VariableSpec, path: Path, *, level: str
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
    ds: xr.Dataset, lat: xr.DataArray, lon: xr.DataArray, y_dim: str, x_dim: str, path: Path
) -> xr.Dataset:
    """Add lat(y, x), lon(y, x) and flip y/x so that y runs south->north and x west->east."""
    if lat.ndim == 1:
        lat1 = np.asarray(lat.values, dtype=float)
        lon1 = np.asarray(lon.values, dtype=float)
        if lat1.size > 1 and not (_is_monotonic(lat1, True) or _is_monotonic(lat1, False)):
            raise PairError(f"{path}: latitude is not monotonic along '{y_dim}'")
        if lon1.size > 1 and not (_is_monotonic(lon1, True) or _is_monotonic(lon1, False)):
            # A regional grid stored in [0, 360) across Greenwich wraps at 360 -> 0.
            wrapped = (lon1 + 180.0) % 360.0 - 180.0
            if not (_is_monotonic(wrapped, True) or _is_monotonic(wrapped, False)):
                raise PairError(f"{path}: longitude is not monotonic along '{x_dim}'")
            lon1 = wrapped
        lat2 = np.broadcast_to(lat1[:, None], (lat1.size, lon1.size)).copy()
        lon2 = np.broadcast_to(lon1[None, :], (lat1.size, lon1.size)).copy()
    else:
        lat2 = np.asarray(lat.transpose(y_dim, x_dim).values, dtype=float)
        lon2 = np.asarray(lon.transpose(y_dim, x_dim).values, dtype=float)
    flip_y = lat2.shape[0] > 1 and np.nanmedian(np.diff(lat2, axis=0)) < 0
    flip_x = lat2.shape[1] > 1 and np.nanmedian(_wrap180(np.diff(lon2, axis=1))) < 0
    if flip_y:
        lat2, lon2 = lat2[::-1], lon2[::-1]
        ds = ds.isel(y=slice(None, None, -1))
    if flip_x:
        lat2, lon2 = lat2[:, ::-1], lon2[:, ::-1]
        ds = ds.isel(x=slice(None, None, -1))
    return ds.assign_coords(
        lat=(("y", "x"), lat2, {"units": "degrees_north", "standard_name": "latitude"}),
        lon=(("y", "x"), lon2, {"units": "degrees_east", "standard_name": "longitude"}),
    )


def _wrap180(degrees: Any) -> Any:
    return (np.asarray(degrees) + 180.0) % 360.0 - 180.0


def _convert_units(
    da: xr.DataArray, spec: VariableSpec, path: Path, name: str, step_seconds: float | None
) -> xr.DataArray:
    """``da`` in the units the spec asks for; the file's units are checked even when kept."""
    where = f"{path}: variable '{name}'"
    if spec.units is None:
        if spec.accumulation:
            raise PairError(
                f"{where} is accumulated: give the rate units to convert it to, "
                "e.g. units: 'mm h-1'"
            )
        text = da.attrs.get("units", spec.source_units)
        if text is not None:
            units.parse_units(str(text), where=where)  # unknown units are an error all the same
            da = da.assign_attrs(units=text)
        return da
    return units.convert(
        da,
        spec.units,
        source_units=spec.source_units,
        accumulation_seconds=step_seconds,
        where=where,
    )


# --------------------------------------------------------------------------------------------
# time


def _time_text(t: Any) -> str:
    if isinstance(t, np.datetime64):
        return str(np.datetime_as_string(t, unit="m"))
    if hasattr(t, "strftime"):
        return str(t.strftime("%Y-%m-%dT%H:%M"))
    return str(t)


def _check_times(times: np.ndarray, path: Path) -> None:
    """Strictly increasing and unique, else PairError naming the first offending time."""
    if times.size < 2:
        return
    try:
        bad = np.flatnonzero(~(times[1:] > times[:-1]))
    except TypeError as exc:
        raise PairError(f"{path}: times cannot be compared ({exc})") from exc
    if bad.size:
        i = int(bad[0]) + 1
        how = "repeats" if times[i] == times[i - 1] else f"comes after {_time_text(times[i - 1])}"
        raise PairError(
            f"{path}: times must be strictly increasing and unique; time {_time_text(times[i])} "
            f"(index {i}) {how}"
        )


def _hours(times: np.ndarray, ref: Any) -> np.ndarray:
    """Hours from ``ref`` to each of ``times`` (datetime64 or cftime)."""
    if times.dtype.kind == "M":
        return (times - ref) / np.timedelta64(1, "h")
    if times.dtype.kind in "iuf":
        raise PairError("times are plain numbers (no CF 'units' attribute); cannot measure hours")
    return np.array([(t - ref).total_seconds() / 3600.0 for t in times], dtype=float)


def _time_step_seconds(ds: xr.Dataset, path: Path, name: str) -> float:
    """The usual (median) time step, the period of accumulated amounts."""
    times = ds["time"].values
    if times.size < 2:
        raise PairError(
            f"{path}: variable '{name}' is accumulated but the file has a single time, so the "
            "accumulation period cannot be inferred"
        )
    return float(np.median(np.diff(_hours(times, times[0])))) * 3600.0


def _calendar(times: np.ndarray) -> str:
    if times.dtype.kind == "M":
        return "standard"
    if times.size and hasattr(times[0], "calendar"):
        cal = str(times[0].calendar or "standard")
        return "standard" if cal in _STANDARD_CALENDARS else cal
    return "none"


def _as_datetime64(times: np.ndarray) -> np.ndarray:
    if times.dtype.kind == "M":
        return times
    return np.array([np.datetime64(t.isoformat()) for t in times], dtype="datetime64[ns]")


@dataclass(frozen=True)
class TimeReport:
    """How the LR and HR times were intersected. Times are ISO text (``YYYY-MM-DDTHH:MM``)."""

    lr_times: int
    hr_times: int
    kept: int
    lr_dropped: int
    hr_dropped: int
    first: str
    last: str
    lr_range: tuple[str, str]
    hr_range: tuple[str, str]
    lr_first_dropped: str | None = None
    lr_last_dropped: str | None = None
    hr_first_dropped: str | None = None
    hr_last_dropped: str | None = None
    calendar: str = "standard"


def align_time(lr: xr.Dataset, hr: xr.Dataset) -> tuple[xr.Dataset, xr.Dataset, TimeReport]:
    """Keep the times LR and HR have in common; say what was dropped on each side.

    Calendars must agree (standard, gregorian and proleptic_gregorian count as one; a
    standard-calendar cftime axis is turned into datetime64 to match the other side).
    Raises PairError for mixed calendars or when there is no common time (both ranges named).
    """
    for label, ds in (("LR", lr), ("HR", hr)):
        if "time" not in ds.coords:
            raise PairError(f"{label} ({_source(ds)}) has no time coordinate")
    lt, ht = lr["time"].values, hr["time"].values
    lcal, hcal = _calendar(lt), _calendar(ht)
    if lcal != hcal:
        raise PairError(
            f"LR ({_source(lr)}) uses calendar '{lcal}' and HR ({_source(hr)}) '{hcal}'; "
            "convert one of them (e.g. xarray's convert_calendar) before pairing"
        )
    if lt.dtype.kind != ht.dtype.kind:  # datetime64 on one side, standard cftime on the other
        lt, ht = _as_datetime64(lt), _as_datetime64(ht)
        lr, hr = lr.assign_coords(time=lt), hr.assign_coords(time=ht)
    common = np.intersect1d(lt, ht)
    lr_range = (_time_text(lt[0]), _time_text(lt[-1])) if lt.size else ("-", "-")
    hr_range = (_time_text(ht[0]), _time_text(ht[-1])) if ht.size else ("-", "-")
    if common.size == 0:
        overlap = lt.size and ht.size and lt[0] <= ht[-1] and ht[0] <= lt[-1]
        hint = (
            " The ranges overlap but no time matches exactly: check the time offsets "
            "(accumulations are often labelled at the end of their period)."
            if overlap
            else ""
        )
        raise PairError(
            f"LR and HR have no time in common: LR ({_source(lr)}) covers {lr_range[0]} .. "
            f"{lr_range[1]} ({lt.size} times), HR ({_source(hr)}) covers {hr_range[0]} .. "
            f"{hr_range[1]} ({ht.size} times).{hint}"
        )
    l_drop = lt[~np.isin(lt, common)]
    h_drop = ht[~np.isin(ht, common)]
    report = TimeReport(
        lr_times=int(lt.size),
        hr_times=int(ht.size),
        kept=int(common.size),
        lr_dropped=int(l_drop.size),
        hr_dropped=int(h_drop.size),
        first=_time_text(common[0]),
        last=_time_text(common[-1]),
        lr_range=lr_range,
        hr_range=hr_range,
        lr_first_dropped=_time_text(l_drop[0]) if l_drop.size else None,
        lr_last_dropped=_time_text(l_drop[-1]) if l_drop.size else None,
        hr_first_dropped=_time_text(h_drop[0]) if h_drop.size else None,
        hr_last_dropped=_time_text(h_drop[-1]) if h_drop.size else None,
        calendar=lcal,
    )
    return lr.sel(time=common), hr.sel(time=common), report


def _source(ds: xr.Dataset) -> str:
    return str(ds.attrs.get("finescale_source", "in memory"))


# --------------------------------------------------------------------------------------------
# spatial alignment


@dataclass(frozen=True)
class VariableCheck:
    """LR against HR brought to the LR grid, for one variable, over the sampled times.

    ``correlation``: Pearson correlation, over all sampled times and grid points together, of
    the anomalies about each point's mean over the sampled times (with fewer than 4 times, of
    the values themselves). Anomalies compare the weather, not the climatology any two states
    share, so LR and HR from different times correlate near 0 even where their mean fields
    agree. ``pattern_correlation``: the same for the values (climatology included).
    ``bias`` = mean(LR - HR) and ``rmse`` in ``units``. ``alternative`` names the
    flip/shift/transpose of LR that fits best and ``alternative_correlation`` its (anomaly)
    correlation.
    """

    name: str
    correlation: float
    pattern_correlation: float
    bias: float
    rmse: float
    units: str | None
    times: int
    alternative: str | None = None
    alternative_correlation: float | None = None


@dataclass(frozen=True)
class AlignmentReport:
    """What :func:`check_alignment` measured. Spacings and extents are in degrees.

    Extents are cell edges (south, north, west, east). ``ratio`` is LR spacing / HR spacing
    (mean of y and x); ``method`` says how HR was brought to the LR grid for the consistency
    check: ``coarsen`` (block means, nested grids) or ``interpolate`` (non-nested grids).
    Fields after a refusal may be missing (None / empty) in the report a MisalignedError holds.
    """

    lr_shape: tuple[int, int]
    hr_shape: tuple[int, int]
    lr_spacing: tuple[float, float]
    hr_spacing: tuple[float, float]
    ratio: float
    ratio_y: float
    ratio_x: float
    lr_extent: tuple[float, float, float, float] | None = None
    hr_extent: tuple[float, float, float, float] | None = None
    method: str | None = None
    variables: Mapping[str, VariableCheck] = field(default_factory=dict)
    static: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "variables", MappingProxyType(dict(self.variables)))


def _extent(lat: np.ndarray, lon: np.ndarray) -> tuple[float, float, float, float]:
    """Cell-edge extent (south, north, west, east) in degrees of a (y, x) grid of centres.

    The cell corners are found in index space, half a cell beyond the outermost centres (by
    linear extrapolation), so a regular grid gives its centres +- half a spacing and nested
    curvilinear grids give the same edges at both resolutions.
    """
    lon = np.unwrap(np.unwrap(lon, period=360.0, axis=1), period=360.0, axis=0)
    corners = [_corners(v) for v in (lat, lon)]
    return (
        float(np.nanmin(corners[0])),
        float(np.nanmax(corners[0])),
        float(np.nanmin(corners[1])),
        float(np.nanmax(corners[1])),
    )


def _corners(v: np.ndarray) -> np.ndarray:
    """(y + 1, x + 1) corner values of a (y, x) field of cell centres (bilinear in index space)."""
    for axis in (0, 1):
        first = 2 * np.take(v, [0], axis) - np.take(v, [1], axis)
        last = 2 * np.take(v, [-1], axis) - np.take(v, [-2], axis)
        v = np.concatenate([first, v, last], axis=axis)
    return (v[:-1, :-1] + v[1:, :-1] + v[:-1, 1:] + v[1:, 1:]) / 4


def _fmt_extent(e: Sequence[float]) -> str:
    return f"lat {e[0]:.3f}..{e[1]:.3f}, lon {e[2]:.3f}..{e[3]:.3f}"


def _block_mean(values: np.ndarray, r: int) -> np.ndarray:
    ny, nx = values.shape
    return values.reshape(ny // r, r, nx // r, r).mean(axis=(1, 3))


def check_alignment(
    lr: xr.Dataset,
    hr: xr.Dataset,
    cfg: AlignmentConfig,
    static: xr.Dataset | None = None,
) -> AlignmentReport:
    """Refuse LR/HR pairs that are clearly misaligned; measure how well they agree otherwise.

    Checks, in order (the first failure raises MisalignedError with a partial report):

    1. grids: LR must not be finer than HR; the spacing ratio must be a whole number, the same
       in y and x, when ``cfg.require_integer_ratio`` (nested grids);
    2. domains: nested grids must have the same cell-edge extents, and the LR cell centres must
       be the block means of the HR centres; non-nested grids need the HR domain inside the LR
       one. Tolerance: ``cfg.tolerance_deg`` plus 5 % of an LR cell;
    3. data: each variable in both LR and HR is compared with HR brought to the LR grid
       (``grids.coarsen`` for nested grids, bilinear ``grids.interpolate`` otherwise) on up to
       48 evenly spaced times, by the correlation of anomalies about each point's time mean
       (see :class:`VariableCheck`). The pair is refused when LR flipped in y/x, rotated,
       transposed or shifted by 1-2 LR cells fits clearly better than LR as given (correlation
       higher by 0.02 and ``1 - r`` at most half as large), which catches a shifted smooth
       field that still correlates well, or when the correlation is below
       ``cfg.min_correlation``. The message names the rearrangement that fits;
    4. static HR fields must be on the HR grid (shape, and lat/lon within the tolerance).
    """
    lr_lat, lr_lon = lr["lat"].values, lr["lon"].values
    hr_lat, hr_lon = hr["lat"].values, hr["lon"].values
    # compare longitudes in one convention: shift LR by whole turns towards HR
    lr_lon = lr_lon + 360.0 * np.round((np.nanmedian(hr_lon) - np.nanmedian(lr_lon)) / 360.0)
    lr_dy, lr_dx = grids.grid_spacing(lr["lat"], lr["lon"])
    hr_dy, hr_dx = grids.grid_spacing(hr["lat"], hr["lon"])
    ratio_y, ratio_x = lr_dy / hr_dy, lr_dx / hr_dx
    partial: dict[str, Any] = {
        "lr_shape": tuple(lr_lat.shape),
        "hr_shape": tuple(hr_lat.shape),
        "lr_spacing": (lr_dy, lr_dx),
        "hr_spacing": (hr_dy, hr_dx),
        "ratio": (ratio_y + ratio_x) / 2,
        "ratio_y": ratio_y,
        "ratio_x": ratio_x,
    }

    def refuse(message: str) -> MisalignedError:
        return MisalignedError(message, AlignmentReport(**partial))

    spacing = f"LR spacing {lr_dy:.4g}° x {lr_dx:.4g}°, HR {hr_dy:.4g}° x {hr_dx:.4g}°"
    if ratio_y < 1 - 1e-3 or ratio_x < 1 - 1e-3:
        raise refuse(f"LR grid is finer than HR ({spacing}): are lr and hr swapped in the config?")
    nested = cfg.require_integer_ratio
    ratio = round(partial["ratio"])
    if nested:
        whole = all(abs(r - round(r)) <= _RATIO_TOLERANCE for r in (ratio_y, ratio_x))
        if not whole or round(ratio_y) != round(ratio_x):
            raise refuse(
                f"LR/HR spacing ratio is {ratio_y:.3g} in y and {ratio_x:.3g} in x, not one whole "
                f"number ({spacing}); for grids that are not nested set "
                "alignment.require_integer_ratio: false"
            )
        partial["ratio"] = float(ratio)

    tol = cfg.tolerance_deg + _EDGE_FRACTION * min(lr_dy, lr_dx)
    lr_ext = _extent(lr_lat, lr_lon)
    hr_ext = _extent(hr_lat, hr_lon)
    partial.update(lr_extent=lr_ext, hr_extent=hr_ext)
    if nested:
        off = max(abs(a - b) for a, b in zip(lr_ext, hr_ext, strict=True))
        if off > tol:
            raise refuse(
                f"LR and HR cover different domains: LR {_fmt_extent(lr_ext)}; "
                f"HR {_fmt_extent(hr_ext)} (edges differ by up to {off:.3g}°, tolerance {tol:.3g}°)"
            )
        if hr_lat.shape != (lr_lat.shape[0] * ratio, lr_lat.shape[1] * ratio):
            raise refuse(
                f"HR grid {hr_lat.shape[0]} x {hr_lat.shape[1]} is not {ratio} times the LR grid "
                f"{lr_lat.shape[0]} x {lr_lat.shape[1]}"
            )
        d_lat = float(np.nanmax(np.abs(_block_mean(hr_lat, ratio) - lr_lat)))
        d_lon = float(np.nanmax(np.abs(_wrap180(_block_mean(hr_lon, ratio) - lr_lon))))
        if max(d_lat, d_lon) > tol:
            raise refuse(
                "LR cell centres are not the centres of the HR blocks they cover: off by up to "
                f"{d_lat:.3g}° in latitude and {d_lon:.3g}° in longitude (tolerance {tol:.3g}°; "
                f"half an LR cell is {lr_dy / 2:.3g}°: cell corners given as centres?)"
            )
    else:
        inside = (
            hr_ext[0] >= lr_ext[0] - tol
            and hr_ext[1] <= lr_ext[1] + tol
            and hr_ext[2] >= lr_ext[2] - tol
            and hr_ext[3] <= lr_ext[3] + tol
        )
        if not inside:
            raise refuse(
                f"the HR domain is not inside the LR domain: LR {_fmt_extent(lr_ext)}; "
                f"HR {_fmt_extent(hr_ext)} (tolerance {tol:.3g}°)"
            )
    partial["method"] = "coarsen" if nested else "interpolate"

    checks, problems, notes = _compare_variables(lr, hr, ratio if nested else None, cfg, lr_lon)
    partial.update(variables=checks, notes=tuple(notes))
    if problems:
        raise refuse("; ".join(problems))

    if static is not None:
        hr_tol = cfg.tolerance_deg + _EDGE_FRACTION * min(hr_dy, hr_dx)
        problems = list(_static_problems(static, hr, hr_tol))
        if problems:
            raise refuse("; ".join(problems))
        partial["static"] = tuple(str(n) for n in static.data_vars)
    return AlignmentReport(**partial)


def _sample_times(lr: xr.Dataset, hr: xr.Dataset, name: str) -> np.ndarray:
    """Up to 48 evenly spaced common times, fewer when HR fields are large."""
    common = np.intersect1d(lr["time"].values, hr["time"].values)
    per_time = max(1, hr[name].nbytes // max(1, hr.sizes["time"]))
    n = int(min(_CHECK_TIMES, max(1, _CHECK_BYTES // per_time), common.size))
    if n == 0:
        return common
    return common[np.unique(np.linspace(0, common.size - 1, n).round().astype(int))]


def _compare_variables(
    lr: xr.Dataset,
    hr: xr.Dataset,
    ratio: int | None,
    cfg: AlignmentConfig,
    lr_lon: np.ndarray,
) -> tuple[dict[str, VariableCheck], list[str], list[str]]:
    """Per-variable agreement of LR with HR on the LR grid: checks, problems, notes."""
    checks: dict[str, VariableCheck] = {}
    problems: list[str] = []
    notes: list[str] = []
    shared = [
        str(n)
        for n in hr.data_vars
        if n in lr.data_vars and "time" in hr[n].dims and "time" in lr[n].dims
    ]
    if not shared:
        notes.append("LR and HR share no time-dependent variable: data not compared")
    for name in shared:
        lr_units, hr_units = lr[name].attrs.get("units"), hr[name].attrs.get("units")
        if lr_units and hr_units and not units.same_units(lr_units, hr_units):
            raise PairError(
                f"variable '{name}' is in {lr_units} in LR but {hr_units} in HR; "
                "set the same 'units' for it in both sources"
            )
        times = _sample_times(lr, hr, name)
        if times.size == 0:
            continue
        a, b = _on_lr_grid(lr, hr, name, times, ratio, lr_lon)
        pattern, bias, rmse = _agreement(a, b)
        # Anomalies: the weather, without the climatology that any two states share.
        a, b = _anomalies(a), _anomalies(b)
        r, _, _ = _agreement(a, b)
        alt = _best_alternative(a, b)
        checks[name] = VariableCheck(
            name=name,
            correlation=r,
            pattern_correlation=pattern,
            bias=bias,
            rmse=rmse,
            units=hr_units,
            times=int(times.size),
            alternative=alt.key if alt else None,
            alternative_correlation=alt.correlation if alt else None,
        )
        if not np.isfinite(r):
            notes.append(f"'{name}' is constant in LR or HR: its correlation is undefined")
            continue
        if (
            alt is not None
            and alt.correlation - r >= _ALTERNATIVE_MARGIN
            and 1 - alt.correlation <= _ALTERNATIVE_GAIN * (1 - r)
        ):
            problems.append(
                f"{alt.text} ('{name}'): correlation {alt.correlation:.2f} when {alt.verb} "
                f"vs {r:.2f} as given"
            )
        elif r < cfg.min_correlation:
            tried = f" (best: {alt.key}, {alt.correlation:.2f})" if alt is not None else ""
            problems.append(
                f"LR and HR do not describe the same state: correlation of '{name}' with HR "
                f"brought to the LR grid is {r:.2f} (minimum {cfg.min_correlation:g}), and no "
                f"flip, shift or transpose of LR fits clearly better{tried}"
            )
    return checks, problems, notes


def _on_lr_grid(
    lr: xr.Dataset,
    hr: xr.Dataset,
    name: str,
    times: np.ndarray,
    ratio: int | None,
    lr_lon: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """LR and HR brought to the LR grid at ``times``, as (time, ..., y, x) float arrays."""
    h = hr[name].sel(time=times)
    if ratio is not None:
        h = grids.coarsen(h, ratio)
    else:
        target_lat = lr["lat"].reset_coords(drop=True)
        h = grids.interpolate(h, target_lat, xr.DataArray(lr_lon, dims=("y", "x")))
        # interpolation extends edge values outward: only LR points inside HR are comparable
        h = h.where(_inside(hr, target_lat.values, lr_lon))
    a = lr[name].sel(time=times).transpose("time", ..., "y", "x").values
    b = h.transpose("time", ..., "y", "x").values
    return np.asarray(a, dtype=float), np.asarray(b, dtype=float)


def _inside(hr: xr.Dataset, lat: np.ndarray, lon: np.ndarray) -> xr.DataArray:
    """Which points (lat, lon), shape (y, x), lie inside the polygon of HR's outer cell centres."""
    from matplotlib.path import Path as Polygon

    hlat, hlon = hr["lat"].values, hr["lon"].values
    ring = [(hlon[0, :], hlat[0, :]), (hlon[1:, -1], hlat[1:, -1]),
            (hlon[-1, -2::-1], hlat[-1, -2::-1]), (hlon[-2:0:-1, 0], hlat[-2:0:-1, 0])]
    vertices = np.column_stack([np.concatenate([r[0] for r in ring]), np.concatenate([r[1] for r in ring])])
    inside = Polygon(vertices).contains_points(np.column_stack([lon.ravel(), lat.ravel()]))
    return xr.DataArray(inside.reshape(lat.shape), dims=("y", "x"))


def _anomalies(v: np.ndarray) -> np.ndarray:
    """(time, ..., y, x) values minus their mean over time at each point, as (n, y, x).

    With fewer than ``_MIN_ANOMALY_TIMES`` times the values themselves are returned.
    """
    if v.shape[0] >= _MIN_ANOMALY_TIMES:
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN points (outside HR) stay NaN
            v = v - np.nanmean(v, axis=0, keepdims=True)
    return v.reshape(-1, *v.shape[-2:])


def _agreement(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Correlation, bias (mean a - b) and RMSE over the points finite in both."""
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return float("nan"), float("nan"), float("nan")
    x, y = a[ok], b[ok]
    d = x - y
    xa, ya = x - x.mean(), y - y.mean()
    denom = np.sqrt((xa * xa).sum() * (ya * ya).sum())
    r = float((xa * ya).sum() / denom) if denom > 0 else float("nan")
    return r, float(d.mean()), float(np.sqrt((d * d).mean()))


@dataclass(frozen=True)
class _Alternative:
    key: str  # short name, shown in the report
    text: str  # what it means, for the error message
    verb: str  # "correlation 0.97 when <verb>"
    correlation: float = float("nan")


def _alternatives(
    a: np.ndarray, b: np.ndarray
) -> Iterable[tuple[_Alternative, np.ndarray, np.ndarray]]:
    """Ways LR may have been mangled: (description, LR rearranged, matching part of HR)."""
    ny, nx = a.shape[-2:]
    yield _Alternative("flip_y", "LR latitude appears flipped", "flipped"), a[:, ::-1, :], b
    yield _Alternative("flip_x", "LR longitude appears flipped", "flipped"), a[:, :, ::-1], b
    yield (
        _Alternative("flip_yx", "LR appears rotated by 180° (flipped in y and x)", "rotated"),
        a[:, ::-1, ::-1],
        b,
    )
    if ny == nx:
        swapped = _Alternative(
            "transpose", "LR latitude and longitude axes appear swapped", "transposed"
        )
        yield swapped, a.transpose(0, 2, 1), b
    for s in (1, -1, 2, -2):
        # LR row j + s matching HR row j means the LR data sit s cells north of their coordinates.
        cells = f"{abs(s)} LR cell{'s' if abs(s) > 1 else ''}"
        if ny - abs(s) >= max(3, ny // 2):
            where = "north" if s > 0 else "south"
            alt = _Alternative(
                f"shift_y{s:+d}", f"LR data appear shifted {where} by {cells}", "shifted back"
            )
            yield alt, _shift(a, s, 1), _shift(b, -s, 1)
        if nx - abs(s) >= max(3, nx // 2):
            where = "east" if s > 0 else "west"
            alt = _Alternative(
                f"shift_x{s:+d}", f"LR data appear shifted {where} by {cells}", "shifted back"
            )
            yield alt, _shift(a, s, 2), _shift(b, -s, 2)


def _shift(v: np.ndarray, s: int, axis: int) -> np.ndarray:
    """Drop ``s`` leading (s > 0) or ``-s`` trailing (s < 0) entries along ``axis``."""
    index = [slice(None)] * v.ndim
    index[axis] = slice(s, None) if s > 0 else slice(None, s)
    return v[tuple(index)]


def _best_alternative(a: np.ndarray, b: np.ndarray) -> _Alternative | None:
    """The rearrangement of LR that correlates best with HR (None if none is defined)."""
    best: _Alternative | None = None
    for alt, aa, bb in _alternatives(a, b):
        r, _, _ = _agreement(aa, bb)
        if np.isfinite(r) and (best is None or r > best.correlation):
            best = _Alternative(alt.key, alt.text, alt.verb, r)
    return best


def _static_problems(static: xr.Dataset, hr: xr.Dataset, tol: float) -> Iterable[str]:
    hr_shape = (hr.sizes["y"], hr.sizes["x"])
    for name, da in static.data_vars.items():
        shape = (da.sizes.get("y"), da.sizes.get("x"))
        if shape != hr_shape:
            yield (
                f"static field '{name}' ({_source(static)}) is not on the HR grid: "
                f"{shape[0]} x {shape[1]} points vs HR {hr_shape[0]} x {hr_shape[1]}"
            )
            continue
        d_lat = float(np.nanmax(np.abs(static["lat"].values - hr["lat"].values)))
        d_lon = float(np.nanmax(np.abs(_wrap180(static["lon"].values - hr["lon"].values))))
        if max(d_lat, d_lon) > tol:
            yield (
                f"static field '{name}' ({_source(static)}) is not on the HR grid: lat/lon differ "
                f"by up to {d_lat:.3g}° / {d_lon:.3g}° (tolerance {tol:.3g}°)"
            )


# --------------------------------------------------------------------------------------------
# splits


def split_times(times: Any, cfg: SplitConfig) -> dict[str, np.ndarray]:
    """Contiguous ``train``, ``validation`` and ``test`` blocks of ``times``, in that order.

    times: strictly increasing 1-D times (datetime64 or cftime). Block boundaries fall at the
    cumulative fractions of the number of times; then the first times of the validation and test
    blocks that lie within ``gap_hours`` of the end of the previous block are dropped, so every
    block starts more than ``gap_hours`` after the last time of the block before it. Returns the
    time values of each block (``validation`` may be empty when its fraction is 0).
    Raises ValueError when a block with a non-zero fraction ends up empty.
    """
    times = np.asarray(times)
    n = times.size
    i1 = round(cfg.train * n)
    i2 = round((cfg.train + cfg.validation) * n)
    blocks = {"train": times[:i1], "validation": times[i1:i2], "test": times[i2:]}
    previous = blocks["train"]
    for name in ("validation", "test"):
        block = blocks[name]
        if cfg.gap_hours > 0 and previous.size and block.size:
            after = _hours(block, previous[-1])
            block = block[after > cfg.gap_hours]
            blocks[name] = block
        if block.size:
            previous = block
    wanted = {"train": cfg.train, "validation": cfg.validation, "test": cfg.test}
    for name, block in blocks.items():
        if wanted[name] > 0 and block.size == 0:
            raise ValueError(
                f"the {name} block is empty: {n} times split {cfg.train:g}/{cfg.validation:g}/"
                f"{cfg.test:g} with a gap of {cfg.gap_hours:g} h; use more times or a smaller gap"
            )
    return blocks


# --------------------------------------------------------------------------------------------
# the pair


@dataclass(frozen=True)
class Pair:
    """Aligned LR and HR data (and static HR fields), ready for sampling.

    lr, hr: datasets in finescale's layout, on the same times. static: time-independent HR
    fields on the HR grid, or None. ratio: LR spacing / HR spacing.
    """

    lr: xr.Dataset
    hr: xr.Dataset
    static: xr.Dataset | None
    ratio: float
    time_report: TimeReport
    alignment: AlignmentReport


def _match_longitudes(ds: xr.Dataset, ref: xr.Dataset) -> xr.Dataset:
    """``ds`` with longitudes shifted by whole turns into the convention of ``ref``."""
    turns = np.round((np.nanmedian(ref["lon"].values) - np.nanmedian(ds["lon"].values)) / 360.0)
    if turns == 0:
        return ds
    return ds.assign_coords(lon=ds["lon"] + 360.0 * turns)


def open_pair(cfg: DataConfig) -> Pair:
    """Open LR, HR and static sources, intersect their times and check their alignment.

    Longitudes of LR and static fields are put into the HR convention ([-180, 180) or
    [0, 360)). Raises PairError (or a subclass: SourceNotFoundError, MissingVariableError,
    MisalignedError) or units.UnitsError with a message naming the file and what is wrong.
    """
    hr = open_source(cfg.hr)
    lr = _match_longitudes(open_source(cfg.lr), hr)
    static = _match_longitudes(open_static(cfg.static), hr) if cfg.static is not None else None
    known = set(map(str, hr.data_vars)) | set(map(str, lr.data_vars))
    if static is not None:
        known |= set(map(str, static.data_vars))
    unknown = sorted(set(cfg.transforms) - known)
    if unknown:
        raise PairError(
            f"transforms are given for {', '.join(unknown)}, which no source provides "
            f"(variables: {', '.join(sorted(known))})"
        )
    lr, hr, time_report = align_time(lr, hr)
    alignment = check_alignment(lr, hr, cfg.alignment, static)
    return Pair(lr, hr, static, alignment.ratio, time_report, alignment)


# --------------------------------------------------------------------------------------------
# reporting


def _num(v: float | None, fmt: str = ".3g") -> str:
    return "-" if v is None or not np.isfinite(v) else format(v, fmt)


def report_tables(
    pair_or_reports: Pair | TimeReport | AlignmentReport | Iterable[TimeReport | AlignmentReport],
) -> list[Table]:
    """The tables of :func:`report_table`, separately: times, grids, variables (those known)."""
    if isinstance(pair_or_reports, Pair):
        items: list[Any] = [pair_or_reports.time_report, pair_or_reports.alignment]
    elif isinstance(pair_or_reports, (TimeReport, AlignmentReport)):
        items = [pair_or_reports]
    else:
        items = list(pair_or_reports)
    tables: list[Table] = []
    for item in items:
        if isinstance(item, TimeReport):
            tables.append(_time_table(item))
        elif isinstance(item, AlignmentReport):
            tables.append(_grid_table(item))
            if item.variables:
                tables.append(_variable_table(item))
    return tables


def report_table(
    pair_or_reports: Pair | TimeReport | AlignmentReport | Iterable[TimeReport | AlignmentReport],
) -> Table:
    """One rich table (for ``finescale pairs check``) holding the time report, the grids and
    ratio, and per-variable correlation, bias and RMSE."""
    outer = Table.grid(padding=(1, 0))
    for table in report_tables(pair_or_reports):
        outer.add_row(table)
    return outer


def _time_table(t: TimeReport) -> Table:
    table = Table(title="Times", title_justify="left")
    for col in ("", "LR", "HR"):
        table.add_column(col)
    table.add_row(
        "range", f"{t.lr_range[0]} .. {t.lr_range[1]}", f"{t.hr_range[0]} .. {t.hr_range[1]}"
    )
    table.add_row("times", str(t.lr_times), str(t.hr_times))
    table.add_row("kept", str(t.kept), str(t.kept))
    table.add_row("dropped", str(t.lr_dropped), str(t.hr_dropped))
    table.add_row("first dropped", t.lr_first_dropped or "-", t.hr_first_dropped or "-")
    table.add_row("last dropped", t.lr_last_dropped or "-", t.hr_last_dropped or "-")
    table.caption = f"kept {t.first} .. {t.last}, calendar {t.calendar}"
    return table


def _grid_table(a: AlignmentReport) -> Table:
    table = Table(title="Grids", title_justify="left")
    for col in ("", "LR", "HR"):
        table.add_column(col)
    table.add_row(
        "points (y x x)", f"{a.lr_shape[0]} x {a.lr_shape[1]}", f"{a.hr_shape[0]} x {a.hr_shape[1]}"
    )
    table.add_row(
        "spacing (deg)",
        f"{a.lr_spacing[0]:.4g} x {a.lr_spacing[1]:.4g}",
        f"{a.hr_spacing[0]:.4g} x {a.hr_spacing[1]:.4g}",
    )
    if a.lr_extent is not None and a.hr_extent is not None:
        table.add_row("extent (cell edges)", _fmt_extent(a.lr_extent), _fmt_extent(a.hr_extent))
    table.caption = (
        f"ratio {a.ratio:.3g} (y {a.ratio_y:.3g}, x {a.ratio_x:.3g}); HR brought to LR by "
        f"{a.method or '-'}"
        + (f"; static: {', '.join(a.static)}" if a.static else "")
        + ("".join(f"\n{n}" for n in a.notes))
    )
    return table


def _variable_table(a: AlignmentReport) -> Table:
    table = Table(title="LR vs HR on the LR grid", title_justify="left")
    numeric = ("times", "correlation", "pattern corr.", "bias", "RMSE")
    for col in ("variable", "units", *numeric, "best alternative"):
        table.add_column(col, justify="right" if col in numeric else "left")
    for v in a.variables.values():
        alt = (
            f"{v.alternative} ({_num(v.alternative_correlation, '.2f')})" if v.alternative else "-"
        )
        table.add_row(
            v.name,
            v.units or "-",
            str(v.times),
            _num(v.correlation, ".3f"),
            _num(v.pattern_correlation, ".3f"),
            _num(v.bias),
            _num(v.rmse),
            alt,
        )
    return table

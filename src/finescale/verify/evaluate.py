"""Score any ensemble on disk against a truth: open, align, compute metrics, write a report.

``finescale evaluate`` in Python. Nothing here knows about models: a forecast is any dataset
with the truth's grid and times, with a ``member`` dim (an ensemble) or without one (a
deterministic forecast, scored as a one-member ensemble).

Protocol, so that numbers from different runs stand in one table:

* Times: only those present in the forecast, the truth and every reference are scored (the
  counts left out are in ``meta.times``).
* Variables: those in both the forecast and the truth (or the ones asked for), plus
  ``wind_speed`` derived from ``u10``/``v10`` when both are scored. Every reference must hold
  every scored variable.
* Averages: unweighted means over the scored points: grid points and times where the truth
  and every member are defined. Forecast climatologies (quantiles, exceedances) pool all members.
* Extremes: thresholds are the truth's 99th and 99.9th percentiles over the scored times and
  points (``meta.thresholds``).
* Quantiles (q-q curves, thresholds, ``q*_rel_error``) come from a streaming histogram on the
  float32 bit pattern (:class:`~finescale.verify.extremes.QuantileHistogram`, 2**13 bins per
  power of two): numpy's "linear" quantile to within 2**-13 = 1.2e-4 of the value, whatever
  the size of the data (``meta.quantile_method``).
* Spectra: radially averaged PSD (Hann window), averaged over members and over at most
  ``SPECTRA_MAX_TIMES`` evenly spaced scored times (all of them when there are fewer;
  ``meta.spectra``); ``spectral_log_ratio_max`` is the largest |log10(forecast / truth band
  power)| over octave bands from 2 HR grid lengths up to the LR grid length (from ``lr``'s
  lat/lon spacing, else 8 HR grid lengths). A grid length is the geometric mean of the median
  neighbour distances along y and x (km, on a sphere of radius 6371 km).
* Regions (boxes or masks on the truth grid, ``meta.regions``): every score but the spectra
  again on the region's points alone, as if the data had been cropped to it (thresholds and
  quantiles from the region's own truth); spectra are for the whole domain only.

Memory stays bounded whatever the number of times: two passes (the truth's climatology, then
the scores) stream over blocks of times, about ``BLOCK_BYTES`` of input per source and block
(whole storage chunks when they fit), one block in use while the next one is read, the variables
of a block scored on parallel threads. Every score is a running sum (or a histogram of counts)
over slabs of about ``SLAB_VALUES`` forecast values, so the blocks change nothing but the order
of float sums and the random tie breaks of the rank histogram. The maps load single times.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from finescale.data.sources import _NETCDF_SUFFIXES, checked_reads, disk_chunks
from finescale.verify.extremes import QuantileHistogram
from finescale.verify.scores import region_mask
from finescale.verify.spectra import octave_bands, radial_psd, spectral_log_ratio

__all__ = [
    "FIGURES",
    "METRIC_KEYS",
    "REGION_KEYS",
    "Inputs",
    "evaluate",
    "grid_length_km",
    "load_block",
    "load_mask",
    "make_figures",
    "open_dataset",
    "parse_references",
    "parse_regions",
    "prepare",
    "run_evaluate",
    "score",
]

EARTH_RADIUS_KM = 6371.0
DEFAULT_RATIO = 8  # LR / HR grid length assumed when no LR input is given
RESERVED_NAMES = ("forecast", "truth", "lr")
MEMBER_ALIASES = ("member", "number", "realization", "ensemble", "ens")
# 1-D coordinate dims of a regular grid, renamed to the (y, x) layout used everywhere here
GRID_ALIASES = (("lat", "lon"), ("latitude", "longitude"), ("rlat", "rlon"))
PRECIP_NAMES = ("tp", "pr", "precip", "precipitation", "rain")
THRESHOLDS = {"q99": 0.99, "q999": 0.999}
QQ_LEVELS = (
    0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99,
    0.995, 0.998, 0.999, 0.9995, 0.9999,
)  # fmt: skip
BLOCK_BYTES = 512 * 2**20  # input read per source and block of times
SLAB_VALUES = 4_000_000  # forecast values scored at once (temporaries: a few times this)
SPECTRA_MAX_TIMES = 128  # spectra average at most this many evenly spaced scored times
QUANTILE_BITS = 13  # QuantileHistogram resolution: bins 2**-13 of the value wide

# Every scalar metric per variable, in table order: (key, what it is, what is better).
# "better": "lower", "one" (closest to 1), "zero" (closest to 0 in absolute value).
METRIC_KEYS: tuple[tuple[str, str, str], ...] = (
    ("crps_fair", "fair CRPS", "lower"),
    ("mae_mean", "MAE of the ensemble mean", "lower"),
    ("rmse_mean", "RMSE of the ensemble mean", "lower"),
    ("bias_mean", "mean bias (forecast - truth)", "zero"),
    ("spread", "ensemble spread", "none"),
    ("ssr", "spread-skill ratio", "one"),
    ("spectral_log_ratio_max", "max |log10 PSD ratio|, 2 dx to LR dx", "lower"),
    ("q99_rel_error", "relative error of the 99th percentile", "zero"),
    ("q999_rel_error", "relative error of the 99.9th percentile", "zero"),
    ("q9999_rel_error", "relative error of the 99.99th percentile", "zero"),
    ("brier_q99", "Brier score, > truth q99", "lower"),
    ("brier_q999", "Brier score, > truth q99.9", "lower"),
    ("twcrps_q99", "threshold-weighted CRPS, > truth q99", "lower"),
    ("twcrps_q999", "threshold-weighted CRPS, > truth q99.9", "lower"),
    ("exceedance_ratio_q99", "exceedance frequency ratio, > truth q99", "one"),
    ("exceedance_ratio_q999", "exceedance frequency ratio, > truth q99.9", "one"),
)
# The metrics also scored per region: all but the spectra (whole domain only).
REGION_KEYS: tuple[tuple[str, str, str], ...] = tuple(k for k in METRIC_KEYS if k[0] != "spectral_log_ratio_max")

# Figure files written by run_evaluate, in report order: (id, title).
FIGURES: tuple[tuple[str, str], ...] = (
    ("maps", "Maps"),
    ("maps_references", "Forecast and references side by side"),
    ("spectra", "Power spectra"),
    ("rank_histograms", "Rank histograms"),
    ("qq", "Quantile-quantile plots"),
    ("scores", "Scores against the references"),
    ("which_is_real", "Which one is real?"),
)

Progress = Callable[[str], None]


# --------------------------------------------------------------------------------------------
# Opening and standardising
# --------------------------------------------------------------------------------------------


def open_dataset(path: str | Path, role: str = "dataset") -> xr.Dataset:
    """Open a Zarr store or a NetCDF/GRIB file lazily (dask, chunked as stored), with errors naming ``role`` and path.

    A chunk that cannot be read later (a truncated or corrupt file) is an error naming the file
    and the variable (:func:`finescale.data.sources.checked_reads`); values are kept as they are
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
            engine = "netcdf4" if path.suffix.lower() in _NETCDF_SUFFIXES else None
            ds = xr.open_dataset(path, engine=engine, chunks=None, cache=False)
    except Exception as exc:  # every reader fails differently; one clear message is what helps
        kind = "a Zarr store" if zarr_like else "a file xarray can read"
        raise ValueError(f"{role} {path}: cannot be opened as {kind} ({type(exc).__name__}: {exc})") from exc
    names = {str(n) for n in ds.data_vars}
    return disk_chunks(checked_reads(ds, names, path, "keep", "time" if "time" in ds.dims else None))


def parse_references(items: Iterable[str]) -> dict[str, Path]:
    """``["NAME=PATH", ...]`` -> ``{NAME: Path}``; names must be unique and not reserved."""
    out: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        name = name.strip()
        if not sep or not name or not path.strip():
            raise ValueError(f"reference {item!r}: expected NAME=PATH, e.g. bicubic=runs/bicubic.zarr")
        _check_reference_name(name)
        if name in out:
            raise ValueError(f"reference name {name!r} given twice")
        out[name] = Path(path.strip())
    return out


def _check_reference_name(name: str) -> None:
    if name in RESERVED_NAMES:
        raise ValueError(f"reference name {name!r} is reserved; choose another")


def _where(role: str, paths: Mapping[str, Any]) -> str:
    """'forecast (runs/x.zarr)' for messages; just the role when no path is known."""
    path = paths.get(role)
    return f"{role} ({path})" if path else role


def _standardise(ds: xr.Dataset, where: str) -> xr.Dataset:
    """One layout for every source: a ``member`` dim if any, grid dims (y, x), 2-D lat/lon."""
    if "member" not in ds.dims:
        alias = next((a for a in MEMBER_ALIASES if a in ds.dims), None)
        if alias is not None:
            ds = ds.rename({alias: "member"})
    if not {"y", "x"} <= set(ds.dims):
        pair = next((p for p in GRID_ALIASES if set(p) <= set(ds.dims)), None)
        if pair is None:
            raise ValueError(
                f"{where}: no horizontal grid dims: expected (y, x) or (lat, lon), found {tuple(ds.dims)}"
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


def _check_grid(ds: xr.Dataset, truth: xr.Dataset, where: str, truth_where: str) -> list[str]:
    """Refuse a grid unlike the truth's; return notes (e.g. lat/lon taken from the truth)."""
    shape, truth_shape = (ds.sizes["y"], ds.sizes["x"]), (truth.sizes["y"], truth.sizes["x"])
    if shape != truth_shape:
        raise ValueError(
            f"{where}: grid of {shape[0]} x {shape[1]} points (y x x) differs from the truth's "
            f"{truth_shape[0]} x {truth_shape[1]} ({truth_where}); regrid it onto the truth grid first"
        )
    if not {"lat", "lon"} <= set(ds.coords):
        return [f"{where} has no lat/lon coordinates: assumed to be on the truth's grid"]
    for name in ("lat", "lon"):
        a = np.asarray(ds[name].values, dtype=float)
        b = np.asarray(truth[name].values, dtype=float)
        if a.shape != b.shape:
            raise ValueError(f"{where}: {name} has shape {a.shape}, the truth's {b.shape}")
        diff = np.abs(a - b)
        if name == "lon":
            diff = np.abs((diff + 180.0) % 360.0 - 180.0)
        worst = float(np.nanmax(diff)) if diff.size else 0.0
        if worst > 1e-4:
            raise ValueError(
                f"{where}: {name} differs from the truth's ({truth_where}) by up to {worst:.4g} "
                "degrees: not the same grid (flipped, shifted or another domain?)"
            )
    return []


def _times(ds: xr.Dataset, where: str) -> np.ndarray:
    if "time" not in ds.dims:
        raise ValueError(f"{where}: no 'time' dim (dims {tuple(ds.dims)})")
    values = ds["time"].values
    if np.unique(values).size != values.size:
        raise ValueError(f"{where}: repeated times in its 'time' coordinate")
    return values


def _time_text(t: Any) -> str:
    if isinstance(t, np.datetime64):
        return str(np.datetime_as_string(t, unit="m"))
    return str(t)


def grid_length_km(lat: xr.DataArray | np.ndarray, lon: xr.DataArray | np.ndarray) -> tuple[float, float, float]:
    """Grid spacing (dy, dx, effective) in km of a grid with 2-D (or 1-D) lat/lon in degrees.

    dy, dx: median distance between neighbours along y and along x (local equirectangular
    distance, exact enough at grid scale, on regular and projected grids alike). The effective
    grid length sqrt(dy * dx) is what the radial spectra use as their one spacing.
    """
    lat = np.asarray(lat, dtype=float)
    lon = np.asarray(lon, dtype=float)
    if lat.ndim == 1 and lon.ndim == 1:
        lat, lon = np.meshgrid(lat, lon, indexing="ij")
    if lat.ndim != 2 or min(lat.shape) < 2:
        raise ValueError(f"grid_length_km needs a 2-D grid of at least 2 x 2 points, got {lat.shape}")
    steps = []
    for axis in (0, 1):
        dlat = np.deg2rad(np.diff(lat, axis=axis))
        dlon = np.deg2rad((np.diff(lon, axis=axis) + 180.0) % 360.0 - 180.0)
        mid = np.deg2rad(0.5 * (lat[1:, :] + lat[:-1, :]) if axis == 0 else 0.5 * (lat[:, 1:] + lat[:, :-1]))
        steps.append(float(np.median(EARTH_RADIUS_KM * np.hypot(dlat, dlon * np.cos(mid)))))
    dy, dx = steps
    return dy, dx, math.sqrt(dy * dx)


# --------------------------------------------------------------------------------------------
# Aligning
# --------------------------------------------------------------------------------------------


@dataclass
class Inputs:
    """Sources aligned for scoring: same grid, the scored times only (still lazy)."""

    forecast: xr.Dataset  # dims (member, time, y, x)
    truth: xr.Dataset  # dims (time, y, x)
    lr: xr.Dataset | None
    references: dict[str, xr.Dataset]  # each (member, time, y, x)
    variables: list[str]  # scored, derived ones included
    meta: dict[str, Any] = field(default_factory=dict)
    regions: dict[str, np.ndarray] = field(default_factory=dict)  # name -> boolean (y, x) mask

    def sources(self) -> dict[str, xr.Dataset]:
        """The forecast (key "forecast") and the references, in report order."""
        return {"forecast": self.forecast, **self.references}


def _as_ensemble(ds: xr.Dataset) -> xr.Dataset:
    """A deterministic forecast becomes a one-member ensemble."""
    if "member" not in ds.dims:
        ds = ds.expand_dims(member=1)
    if "member" not in ds.coords:
        ds = ds.assign_coords(member=np.arange(ds.sizes["member"]))
    return ds


def _gridded(ds: xr.Dataset, name: str) -> bool:
    return name in ds.data_vars and {"time", "y", "x"} <= set(ds[name].dims)


def _has_wind_speed(ds: xr.Dataset) -> bool:
    """Whether ``ds`` stores wind_speed or both components it is derived from."""
    return _gridded(ds, "wind_speed") or (_gridded(ds, "u10") and _gridded(ds, "v10"))


def _stored_for(ds: xr.Dataset, names: list[str]) -> list[str]:
    """Variables of ``ds`` that scoring ``names`` reads (u10/v10 for a derived wind_speed)."""
    keep = set(names)
    if "wind_speed" in keep and "wind_speed" not in ds.data_vars:
        keep |= {"u10", "v10"}
    return sorted(v for v in keep if v in ds.data_vars)


def _choose_variables(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    requested: list[str] | None,
    paths: Mapping[str, Any],
) -> tuple[list[str], dict[str, str]]:
    """Scored variables (a derived wind_speed last) and the ones left out, with the reason."""
    skipped: dict[str, str] = {}
    if requested:
        for name in requested:
            for role, ds in (("forecast", forecast), ("truth", truth)):
                if name == "wind_speed" and _has_wind_speed(ds):
                    continue
                if name not in ds.data_vars:
                    what = "no variable 'wind_speed' nor u10 and v10" if name == "wind_speed" else f"no variable {name!r}"
                    raise KeyError(f"{_where(role, paths)}: {what} (it has {', '.join(map(str, ds.data_vars)) or 'none'})")
        names = list(dict.fromkeys(requested))
    else:
        names = [str(n) for n in forecast.data_vars if n in truth.data_vars]
    chosen = []
    for name in names:
        if name == "wind_speed" and not (name in forecast.data_vars and name in truth.data_vars):
            chosen.append(name)  # derived (checked above when requested)
            continue
        extra = (set(forecast[name].dims) | set(truth[name].dims)) - {"time", "y", "x", "member"}
        if not _gridded(truth, name) or not _gridded(forecast, name) or extra:
            reason = f"dims {forecast[name].dims} (forecast), {truth[name].dims} (truth): not ([member,] time, y, x)"
            if requested:
                raise ValueError(f"variable {name!r} cannot be scored: {reason}")
            skipped[name] = reason
        else:
            chosen.append(name)
    if not requested and {"u10", "v10"} <= set(chosen) and "wind_speed" not in chosen:
        chosen.append("wind_speed")  # derived from the components, scored like any variable
    if not chosen:
        raise ValueError(
            f"no variable to score: {_where('forecast', paths)} has "
            f"{', '.join(map(str, forecast.data_vars)) or 'none'}, {_where('truth', paths)} has "
            f"{', '.join(map(str, truth.data_vars)) or 'none'} (gridded (time, y, x) variables in both are scored)"
        )
    return chosen, skipped


def _convert_units(ds: xr.Dataset, truth: xr.Dataset, names: list[str], where: str, notes: list[str]) -> xr.Dataset:
    """Bring each variable to the truth's units (e.g. degC -> K); refuse incompatible ones."""
    from finescale.data.units import UnitsError, convert, same_units

    for name in names:
        if name not in ds.data_vars:
            continue
        want, have = truth[name].attrs.get("units"), ds[name].attrs.get("units")
        if not want or not have:
            continue
        try:
            if same_units(have, want):
                continue
            ds = ds.assign({name: convert(ds[name], want, where=f"{where}: {name}")})
        except UnitsError as exc:
            raise ValueError(f"{where}: variable {name!r} in {have!r} cannot be compared with the truth's {want!r} ({exc})") from exc
        notes.append(f"{where}: {name} converted from {have} to {want}")
    return ds


def prepare(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    lr: xr.Dataset | None = None,
    references: Mapping[str, xr.Dataset] | None = None,
    *,
    variables: list[str] | None = None,
    paths: Mapping[str, Any] | None = None,
    regions: Mapping[str, Region] | None = None,
) -> Inputs:
    """Check and align the sources: same grid as the truth, common times, scored variables.

    ``paths`` (role or reference name -> path) only makes messages and ``meta`` name files.
    ``regions``: name -> box ``(lat0, lat1, lon0, lon1)`` in degrees or a mask on the truth
    grid (see :func:`parse_regions`). Raises ValueError/KeyError naming the source and what is
    wrong.
    """
    paths = dict(paths or {})
    references = dict(references or {})
    for name in references:
        _check_reference_name(name)
    notes: list[str] = []
    truth = _standardise(truth, _where("truth", paths))
    forecast = _standardise(forecast, _where("forecast", paths))
    references = {n: _standardise(ds, _where(n, paths)) for n, ds in references.items()}
    if not {"lat", "lon"} <= set(truth.coords):
        raise ValueError(f"{_where('truth', paths)}: no lat/lon coordinates (needed for grid lengths and maps)")

    names, skipped = _choose_variables(forecast, truth, variables, paths)
    for name, ds in references.items():
        missing = [v for v in names if not (_gridded(ds, v) or (v == "wind_speed" and _has_wind_speed(ds)))]
        if missing:
            raise KeyError(
                f"{_where(name, paths)}: missing variable(s) {', '.join(missing)} that the forecast "
                f"and truth have (it has {', '.join(map(str, ds.data_vars)) or 'none'})"
            )

    members = {}
    for role, ds in (("forecast", forecast), *references.items()):
        notes += _check_grid(ds, truth, _where(role, paths), _where("truth", paths))
        members[role] = int(ds.sizes.get("member", 1))
        if "member" not in ds.dims:
            notes.append(f"{_where(role, paths)}: no member dim, scored as a 1-member (deterministic) forecast")

    all_times = {"truth": _times(truth, _where("truth", paths)), "forecast": _times(forecast, _where("forecast", paths))}
    all_times.update({n: _times(ds, _where(n, paths)) for n, ds in references.items()})
    common = all_times["truth"]
    for values in all_times.values():
        common = np.intersect1d(common, values)
    if common.size == 0:
        spans = "; ".join(
            f"{_where(r, paths)}: {_time_text(t.min())} .. {_time_text(t.max())}" if t.size else f"{_where(r, paths)}: none"
            for r, t in all_times.items()
        )
        raise ValueError(f"no time is in every source, nothing to score ({spans})")

    def select(ds: xr.Dataset, role: str) -> xr.Dataset:
        ds = _select_times(ds[_stored_for(ds, names)], common)
        ds = ds.assign_coords(lat=truth["lat"], lon=truth["lon"])
        return _convert_units(ds, truth, list(ds.data_vars), _where(role, paths), notes)

    truth_sel = _select_times(truth[_stored_for(truth, names)], common)
    region_masks, region_meta = _region_masks(regions or {}, truth)
    forecast_sel = _as_ensemble(select(forecast, "forecast"))
    refs_sel = {n: _as_ensemble(select(ds, n)) for n, ds in references.items()}

    lr_std = None
    if lr is not None:
        lr_std = _standardise(lr, _where("lr", paths))
        if not {"lat", "lon"} <= set(lr_std.coords):
            raise ValueError(f"{_where('lr', paths)}: no lat/lon coordinates (needed for its grid length and maps)")

    dy, dx, hr_km = grid_length_km(truth["lat"], truth["lon"])
    if lr_std is not None:
        lr_km = grid_length_km(lr_std["lat"], lr_std["lon"])[2]
        lr_source = f"spacing of {_where('lr', paths)}"
        if lr_km <= hr_km:
            raise ValueError(f"{_where('lr', paths)}: grid length {lr_km:.3g} km is not coarser than the truth's {hr_km:.3g} km")
    else:
        lr_km, lr_source = DEFAULT_RATIO * hr_km, f"assumed {DEFAULT_RATIO} HR grid lengths (no LR input given)"
    # at least one octave above the 2 dx limit, so a ratio-2 downscaling still gets one band
    bands = octave_bands(2.0 * hr_km, max(lr_km, 4.0 * hr_km))

    meta: dict[str, Any] = {
        "members": members,
        "variables": names,
        "derived": {"wind_speed": "hypot(u10, v10)"} if "wind_speed" in names and "wind_speed" not in forecast else {},
        "skipped_variables": skipped,
        "times": {
            "scored": int(common.size),
            "first": _time_text(common[0]),
            "last": _time_text(common[-1]),
            "dropped": {r: int(np.setdiff1d(t, common).size) for r, t in all_times.items()},
        },
        "grid": {
            "ny": int(truth.sizes["y"]),
            "nx": int(truth.sizes["x"]),
            "hr_spacing_km": [dy, dx],
            "hr_grid_length_km": hr_km,
            "lr_grid_length_km": lr_km,
            "lr_grid_length_from": lr_source,
        },
        "spectral_bands_km": [list(b) for b in bands],
        "units": {n: _units(truth, n) for n in names},
        "weighting": "unweighted mean over the scored points (grid points and times with the truth and every member defined)",
        "regions": region_meta,
        "notes": notes,
    }
    dropped = {r: n for r, n in meta["times"]["dropped"].items() if n}
    if dropped:
        notes.append(
            "times not in every source were left out: "
            + ", ".join(f"{n} of {_where(r, paths)}" for r, n in dropped.items())
        )
    return Inputs(forecast_sel, truth_sel, lr_std, refs_sel, names, meta, region_masks)


def _select_times(ds: xr.Dataset, times: np.ndarray) -> xr.Dataset:
    """``ds`` at ``times`` (all present); a slice when they are a contiguous run, which keeps
    the dask graph to plain slices of the stored chunks."""
    index = ds.indexes["time"].get_indexer(times)
    if index.size and np.all(np.diff(index) == 1):
        return ds.isel(time=slice(int(index[0]), int(index[-1]) + 1))
    return ds.isel(time=index)


def _units(ds: xr.Dataset, name: str) -> str:
    if name == "wind_speed" and name not in ds:
        return ds["u10"].attrs.get("units", "")
    return ds[name].attrs.get("units", "")


# --------------------------------------------------------------------------------------------
# Regions
# --------------------------------------------------------------------------------------------

Box = tuple[float, float, float, float]  # lat0, lat1, lon0, lon1 in degrees
Region = Box | Sequence[float] | xr.DataArray | np.ndarray  # a box, or a mask on the truth grid


def load_mask(path: str | Path, variable: str) -> xr.DataArray:
    """A region mask from a file: ``variable`` of a NetCDF/Zarr file, True or 1 inside.

    Read into memory (one 2-D field); checked against the truth grid by :func:`prepare`.
    """
    ds = open_dataset(path, "mask")
    if variable not in ds.data_vars:
        raise KeyError(f"mask {path}: no variable {variable!r} (it has {', '.join(map(str, ds.data_vars)) or 'none'})")
    mask = ds[variable].load()
    mask.attrs["source"] = f"{path}:{variable}"
    return mask


def parse_regions(boxes: Iterable[str] = (), masks: Iterable[str] = ()) -> dict[str, Region]:
    """Command-line regions -> ``{NAME: box or mask}`` for :func:`prepare`'s ``regions``.

    ``boxes``: ``NAME=LAT0,LAT1,LON0,LON1`` in degrees (LON0 > LON1 crosses the date line).
    ``masks``: ``NAME=PATH:VAR``, a 0/1 or boolean variable of a NetCDF/Zarr file on the truth
    grid (read at once). Names must be unique.
    """
    out: dict[str, Region] = {}

    def add(name: str, region: Region) -> None:
        if name in out:
            raise ValueError(f"region name {name!r} given twice")
        out[name] = region

    for item in boxes:
        name, sep, text = item.partition("=")
        try:
            box = tuple(float(v) for v in text.split(","))
        except ValueError:
            box = ()
        if not sep or not name.strip() or len(box) != 4:
            raise ValueError(f"region {item!r}: expected NAME=LAT0,LAT1,LON0,LON1, e.g. alps=45.5,47,7,10")
        add(name.strip(), box)
    for item in masks:
        name, sep, spec = item.partition("=")
        path, colon, variable = spec.strip().rpartition(":")
        if not sep or not name.strip() or not colon or not path or not variable:
            raise ValueError(f"mask {item!r}: expected NAME=PATH:VAR, e.g. land=static.zarr:land_sea_mask")
        add(name.strip(), load_mask(path, variable))
    return out


def _mask_values(mask: xr.DataArray | np.ndarray, truth: xr.Dataset, where: str) -> tuple[np.ndarray, dict[str, Any]]:
    """Boolean (y, x) array of a mask on the truth grid; NaN counts as outside."""
    shape = (truth.sizes["y"], truth.sizes["x"])
    info: dict[str, Any] = {"kind": "mask"}
    if isinstance(mask, xr.DataArray):
        if mask.attrs.get("source"):
            info["source"] = mask.attrs["source"]
        ds = _standardise(mask.rename("mask").to_dataset(), where)
        ds = ds.squeeze([d for d in ds["mask"].dims if d not in ("y", "x") and ds.sizes[d] == 1], drop=True)
        if set(ds["mask"].dims) != {"y", "x"}:
            raise ValueError(f"{where}: a mask needs dims (y, x) or (lat, lon), not {ds['mask'].dims}")
        _check_grid(ds, truth, where, "truth")
        values = np.asarray(ds["mask"].transpose("y", "x").values)
    else:
        values = np.asarray(mask)
        if values.shape != shape:
            raise ValueError(f"{where}: mask of shape {values.shape}, the truth grid is {shape}")
    if values.dtype != bool:
        numbers = values.astype(float)
        if not np.isin(numbers[np.isfinite(numbers)], (0.0, 1.0)).all():
            raise ValueError(f"{where}: a mask holds True/False or 0/1 (NaN: outside), found other values (a fraction such as a land-sea mask: threshold it first)")
        values = numbers == 1.0
    return values, info


def _region_masks(regions: Mapping[str, Region], truth: xr.Dataset) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Boolean (y, x) masks of the regions on the truth grid, and their description for meta."""
    masks, meta = {}, {}
    lat, lon = np.asarray(truth["lat"].values, dtype=float), np.asarray(truth["lon"].values, dtype=float)
    for name, region in regions.items():
        where = f"region {name!r}"
        if isinstance(region, (xr.DataArray, np.ndarray)):
            mask, info = _mask_values(region, truth, where)
        else:
            box = tuple(float(v) for v in region)
            if len(box) != 4 or not box[0] < box[1]:
                raise ValueError(f"{where}: a box is (lat0, lat1, lon0, lon1) with lat0 < lat1, got {region!r}")
            mask = np.asarray(region_mask(lat, lon, *box), dtype=bool)
            info = {"kind": "box", "lat": list(box[:2]), "lon": list(box[2:])}
        points = int(mask.sum())
        if points == 0:
            raise ValueError(
                f"{where}: covers no point of the truth grid (lat {lat.min():.3g} to {lat.max():.3g}, "
                f"lon {lon.min():.3g} to {lon.max():.3g})"
            )
        masks[name] = mask
        meta[name] = {**info, "points": points, "fraction": points / mask.size}
    return masks, meta


# --------------------------------------------------------------------------------------------
# Scoring: two streaming passes over blocks of times
# --------------------------------------------------------------------------------------------


def load_block(ds: xr.Dataset, names: Sequence[str], start: int, stop: int) -> dict[str, np.ndarray]:
    """Variables ``names`` of ``ds`` at times ``start:stop``, in memory, dims ([member,] time, y, x).

    One compute for all of them (dask reads the chunks in parallel); ``wind_speed`` is derived
    from u10/v10 when not stored. float32 stays float32.
    """
    part = ds[_stored_for(ds, list(names))].isel(time=slice(start, stop)).compute()
    out = {}
    for name in names:
        da = part[name] if name in part.data_vars else np.hypot(part["u10"], part["v10"])
        order = [d for d in ("member", "time", "y", "x") if d in da.dims]
        out[name] = np.ascontiguousarray(da.transpose(*order).values)
    return out


def _finite(value: Any) -> float | None:
    """A JSON-safe float: NaN and infinities (undefined scores) become None (null)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _finite_list(values: Iterable[Any]) -> list[float | None]:
    return [_finite(v) for v in np.asarray(values, dtype=float).ravel()]


def _time_blocks(inputs: Inputs) -> list[tuple[int, int]]:
    """Blocks of times (start, stop) of at most ``BLOCK_BYTES`` per source, made of whole
    storage chunks of the forecast where they fit (a chunk read twice is decompressed twice)."""
    nt = inputs.truth.sizes["time"]
    per_time = 1
    for ds in (inputs.truth, *inputs.sources().values()):
        one = ds.isel(time=0)
        sizes = [one[v].nbytes for v in _stored_for(ds, inputs.variables)]
        derived = sum(n not in ds.data_vars for n in inputs.variables)  # wind_speed from u10, v10
        per_time = max(per_time, sum(sizes) + derived * max(sizes))
    limit = max(1, BLOCK_BYTES // per_time)
    first = inputs.forecast[_stored_for(inputs.forecast, inputs.variables)[0]]
    chunks = first.chunks[first.dims.index("time")] if first.chunks else (nt,)
    blocks: list[tuple[int, int]] = []
    start = end = 0
    for size in chunks:
        if end + size - start > limit and end > start:
            blocks.append((start, end))
            start = end
        if size > limit:  # a chunk larger than a block: read in pieces
            blocks += [(a, min(a + limit, end + size)) for a in range(end, end + size, limit)]
            start = end + size
        end += size
    if end > start:
        blocks.append((start, end))
    return blocks


def _spectral_times(nt: int) -> np.ndarray:
    """Indices of the scored times the spectra average: all, or SPECTRA_MAX_TIMES evenly spaced."""
    if nt <= SPECTRA_MAX_TIMES:
        return np.arange(nt)
    return np.unique(np.round(np.linspace(0, nt - 1, SPECTRA_MAX_TIMES)).astype(int))


def _prefetched(items: Sequence[Any], load: Callable[[Any], Any]) -> Iterator[tuple[Any, Any]]:
    """(item, load(item)) in order, loading the next item on a thread while the caller works."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(load, items[0]) if items else None
        for i, item in enumerate(items):
            data = future.result()
            future = pool.submit(load, items[i + 1]) if i + 1 < len(items) else None
            yield item, data


def _crps_sum(d: np.ndarray, rows: np.ndarray) -> float:
    """Sum over points of the fair CRPS, from members sorted along axis 0 minus the truth.

    ``d`` (M, points): sorted members minus the truth at each point; ``rows``: its sums over
    points per member (float64). Per point, CRPS = (1/M) sum_i |d_i| - sum_i (2i - M - 1)
    d_i / (M (M - 1)), the sorted form of :func:`finescale.verify.scores.crps_fair` (the
    truth cancels in the spread term since sum_i (2i - M - 1) = 0); one member: |d_1|.
    """
    m = d.shape[0]
    skill = float(np.abs(d).sum(dtype=np.float64)) / m
    if m == 1:
        return skill
    weights = 2.0 * np.arange(1, m + 1) - m - 1.0
    return skill - float(weights @ rows) / (m * (m - 1))


class _Sums:
    """Running sums of the scores of one source, one variable, one region (exact, any blocks)."""

    def __init__(self, members: int, thresholds: Mapping[str, float], seed: Sequence[int]):
        self.members = members
        # float64 scalars: comparisons with float32 data then happen in float64, at the exact threshold
        self.thresholds = {k: np.float64(v) for k, v in thresholds.items()}
        self.rng = np.random.default_rng(list(seed))  # rank-histogram tie breaks
        self.hist = QuantileHistogram(QUANTILE_BITS)  # every finite member value
        self.n = 0  # scored points
        self.crps = self.abs_error = self.sq_error = self.error = self.variance = 0.0
        zeros = dict.fromkeys(self.thresholds, 0.0)
        self.brier, self.twcrps, self.above_forecast, self.above_truth = dict(zeros), dict(zeros), dict(zeros), dict(zeros)
        self.ranks = np.zeros(members + 1, dtype=np.int64)

    def add(self, forecast: np.ndarray, truth: np.ndarray) -> None:
        """Add points: ``forecast`` (M, ...) and ``truth`` (...) of the same trailing shape."""
        m = self.members
        s = np.sort(forecast.reshape(m, -1), axis=0)
        self.hist.add(s)
        y = truth.reshape(-1)
        d = s - y  # sorted members minus the truth: every score below is a sum over it
        valid = ~np.isnan(d[-1])  # NaN sorts last: a missing member or truth leaves it there
        if not valid.all():
            s, d, y = s[:, valid], d[:, valid], y[valid]
        if y.size == 0:
            return
        rows = d.sum(axis=1, dtype=np.float64)
        error = d.mean(axis=0, dtype=np.float64)  # ensemble mean minus truth, per point
        self.n += y.size
        self.error += float(rows.sum()) / m
        self.abs_error += float(np.abs(error).sum())
        self.sq_error += float(error @ error)
        self.crps += _crps_sum(d, rows)
        if m > 1:
            # sum over points of the ensemble variance (ddof=1): (sum d^2 - M sum mean^2) / (M - 1)
            self.variance += (float(np.square(d).sum(dtype=np.float64)) - m * float(error @ error)) / (m - 1)
            below = np.count_nonzero(d < 0, axis=0)
            # members are sorted, so a member equals the truth only if the first one not below does
            ties = np.flatnonzero(d[np.minimum(below, m - 1), np.arange(below.size)] == 0)
            if ties.size:  # ties (dry precipitation) are broken at random
                tied = np.count_nonzero(d[:, ties] == 0, axis=0)
                below[ties] += np.floor(self.rng.random(ties.size) * (tied + 1)).astype(below.dtype)
            self.ranks += np.bincount(below, minlength=m + 1)
        for key, t in self.thresholds.items():
            # elsewhere every member and the truth are <= t: Brier score and twCRPS are 0 there
            hit = np.flatnonzero((s[-1] > t) | (y > t))
            if hit.size == 0:
                continue
            sh, yh = s[:, hit], y[hit]
            above = np.count_nonzero(sh > t, axis=0)
            outcome = yh > t
            self.above_forecast[key] += float(above.sum())
            self.above_truth[key] += float(np.count_nonzero(outcome))
            self.brier[key] += float(np.square(above / m - outcome).sum())
            chained = np.maximum(sh, t) - np.maximum(yh, t)  # twCRPS: the CRPS of max(value, t), float64
            self.twcrps[key] += _crps_sum(chained, chained.sum(axis=1, dtype=np.float64))

    def result(self, q_truth: np.ndarray) -> tuple[dict[str, float | None], np.ndarray]:
        """Every region metric (:data:`REGION_KEYS`) and the forecast quantiles at QQ_LEVELS."""
        m, n = self.members, (self.n or np.nan)
        q = self.hist.quantiles(QQ_LEVELS)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = {
                "crps_fair": self.crps / n,
                "mae_mean": self.abs_error / n,
                "rmse_mean": math.sqrt(self.sq_error / n),
                "bias_mean": self.error / n,
            }
            if m > 1:  # undefined for one member: null
                out["spread"] = math.sqrt(max(self.variance, 0.0) / n)
                out["ssr"] = math.sqrt((m + 1.0) / m) * np.sqrt(max(self.variance, 0.0) / np.float64(self.sq_error))
            for key in self.thresholds:
                out[f"brier_{key}"] = self.brier[key] / n
                out[f"twcrps_{key}"] = self.twcrps[key] / n
                out[f"exceedance_ratio_{key}"] = np.float64(self.above_forecast[key]) / (m * self.above_truth[key])
            for key, level in (("q99", 0.99), ("q999", 0.999), ("q9999", 0.9999)):
                i = QQ_LEVELS.index(level)
                out[f"{key}_rel_error"] = (q[i] - q_truth[i]) / abs(q_truth[i]) if q_truth[i] != 0 else None
        return {k: _finite(out.get(k)) for k, _, _ in REGION_KEYS}, q


class _Spectrum:
    """Running mean of radially averaged PSDs (2-D fields with a NaN are left out)."""

    def __init__(self, dx_km: float):
        self.dx_km, self.total, self.count = dx_km, 0.0, 0

    def add(self, fields: np.ndarray) -> None:
        psd = radial_psd(fields, dx_km=self.dx_km).values
        psd = psd.reshape(-1, psd.shape[-1])
        ok = np.isfinite(psd).all(axis=1)
        self.total = self.total + psd[ok].sum(axis=0)
        self.count += int(ok.sum())

    def mean(self, template: xr.DataArray) -> xr.DataArray:
        values = self.total / self.count if self.count else np.full(template.shape, np.nan)
        return template.copy(data=np.broadcast_to(values, template.shape).copy())


def _map_time(truth: xr.Dataset, variables: list[str]) -> np.datetime64:
    """The most telling time for maps: the wettest (domain-mean precipitation), else the middle one."""
    precip = next((n for n in PRECIP_NAMES if n in variables and n in truth.data_vars), None)
    times = truth["time"].values
    if precip is None:
        return times[times.size // 2]
    domain_mean = truth[precip].mean(("y", "x")).values  # dask: streamed chunk by chunk
    return times[int(np.nanargmax(domain_mean))] if np.isfinite(domain_mean).any() else times[times.size // 2]


def score(inputs: Inputs, *, seed: int = 0, progress: Progress | None = None) -> dict[str, Any]:
    """Metrics of the forecast and every reference for aligned ``inputs`` (see :func:`prepare`).

    Returns the JSON-ready dict ``{"forecast": {VAR: {...}}, "references": {NAME: {VAR: {...}}},
    "regions": {REGION: {"forecast": ..., "references": ...}}, "curves": {...}, "meta": {...}}``;
    undefined values are None. Two passes over blocks of times (module docstring): the truth's
    quantiles fix the thresholds, then every source is scored against the truth.
    """
    meta = inputs.meta
    names = inputs.variables
    sources = inputs.sources()
    areas: dict[str | None, np.ndarray | None] = {None: None, **inputs.regions}  # None: whole domain
    dx_km = meta["grid"]["hr_grid_length_km"]
    bands = [tuple(b) for b in meta["spectral_bands_km"]]
    nt = inputs.truth.sizes["time"]
    blocks = _time_blocks(inputs)
    spectral = _spectral_times(nt)

    def cut(values: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        return values if mask is None else values[..., mask]

    def spectral_in(start: int, stop: int) -> np.ndarray:
        return spectral[(spectral >= start) & (spectral < stop)] - start

    # pass 1: the truth's climatology (quantiles, thresholds) and spectra
    truth_hist = {(n, a): QuantileHistogram(QUANTILE_BITS) for n in names for a in areas}
    truth_psd = {n: _Spectrum(dx_km) for n in names}
    for (start, stop), block in _prefetched(blocks, lambda b: load_block(inputs.truth, names, *b)):
        if progress:
            progress(f"truth climatology: times {start}-{stop} of {nt}")
        for name in names:
            for area, mask in areas.items():
                truth_hist[name, area].add(cut(block[name], mask))
            at = spectral_in(start, stop)
            if at.size:
                truth_psd[name].add(block[name][at])
    q_truth = {key: h.quantiles(QQ_LEVELS) for key, h in truth_hist.items()}
    thresholds = {key: {k: float(q[QQ_LEVELS.index(level)]) for k, level in THRESHOLDS.items()} for key, q in q_truth.items()}

    # pass 2: every source against the truth, the variables of a block on parallel threads
    sums = {
        (role, name, area): _Sums(int(ds.sizes["member"]), thresholds[name, area], (seed, r, v, a))
        for r, (role, ds) in enumerate(sources.items())
        for v, name in enumerate(names)
        for a, area in enumerate(areas)
    }
    psd = {(role, name): _Spectrum(dx_km) for role in sources for name in names}

    def score_variable(role: str, name: str, forecast: np.ndarray, truth: np.ndarray, start: int) -> None:
        per_time = forecast[:, 0].size
        step = max(1, SLAB_VALUES // per_time)
        for a in range(0, truth.shape[0], step):
            f, y = forecast[:, a : a + step], truth[a : a + step]
            for area, mask in areas.items():
                sums[role, name, area].add(cut(f, mask), cut(y, mask))
            at = spectral_in(start + a, start + a + f.shape[1])
            if at.size:
                psd[role, name].add(f[:, at])

    jobs = [(b, role) for b in blocks for role in ("truth", *sources)]

    def load(job: tuple[tuple[int, int], str]) -> dict[str, np.ndarray]:
        (start, stop), role = job
        return load_block(inputs.truth if role == "truth" else sources[role], names, start, stop)

    truth_block: dict[str, np.ndarray] = {}
    with ThreadPoolExecutor(max_workers=max(1, min(os.cpu_count() or 1, len(names)))) as pool:
        for ((start, stop), role), block in _prefetched(jobs, load):
            if role == "truth":
                truth_block = block
                continue
            if progress:
                progress(f"scoring {role}: times {start}-{stop} of {nt}")
            done = [pool.submit(score_variable, role, n, block[n], truth_block[n], start) for n in names]
            for future in done:
                future.result()

    template = radial_psd(np.zeros((inputs.truth.sizes["y"], inputs.truth.sizes["x"])), dx_km=dx_km)
    results: dict[str, dict[str, Any]] = {role: {} for role in sources}
    regions: dict[str, dict[str, dict[str, Any]]] = {area: {role: {} for role in sources} for area in inputs.regions}
    curves: dict[str, Any] = {"spectra": {}, "qq": {}, "rank_histogram": {}, "spectral_bands": {}}
    for name in names:
        psd_truth = truth_psd[name].mean(template)
        spectra = {"wavelength_km": _finite_list(psd_truth["wavelength"].values), "truth": _finite_list(psd_truth.values)}
        qq = {"levels": list(QQ_LEVELS), "truth": _finite_list(q_truth[name, None])}
        ranks: dict[str, list[int]] = {}
        band_ratios: dict[str, Any] = {"bands_km": [list(b) for b in bands]}
        for role in sources:
            total = sums[role, name, None]
            scalars, q_forecast = total.result(q_truth[name, None])
            psd_forecast = psd[role, name].mean(template)
            ratios = spectral_log_ratio(psd_forecast, psd_truth, bands).values
            scalars["spectral_log_ratio_max"] = _finite(np.nanmax(np.abs(ratios))) if np.isfinite(ratios).any() else None
            results[role][name] = {k: scalars.get(k) for k, _, _ in METRIC_KEYS}
            spectra[role] = _finite_list(psd_forecast.values)
            qq[role] = _finite_list(q_forecast)
            band_ratios[role] = _finite_list(ratios)
            if total.members > 1:
                ranks[role] = [int(c) for c in total.ranks]
            for area in inputs.regions:
                regions[area][role][name] = sums[role, name, area].result(q_truth[name, area])[0]
        curves["spectra"][name] = spectra
        curves["qq"][name] = qq
        curves["rank_histogram"][name] = ranks
        curves["spectral_bands"][name] = band_ratios

    region_meta = {
        area: dict(info, thresholds={n: {k: _finite(v) for k, v in thresholds[n, area].items()} for n in names})
        for area, info in meta.get("regions", {}).items()
    }
    meta = dict(
        meta,
        thresholds={n: {k: _finite(v) for k, v in thresholds[n, None].items()} for n in names},
        regions=region_meta,
        seed=seed,
        quantile_method=(
            f"streaming histogram on the float32 bit pattern, 2^{QUANTILE_BITS} bins per power of two: "
            f"numpy 'linear' quantiles to within 2^-{QUANTILE_BITS} (1.2e-4) of the value"
        ),
        spectra={
            "times": int(spectral.size),
            "of": int(nt),
            "method": "radially averaged PSD (Hann window), mean over members and "
            + ("every scored time" if spectral.size == nt else f"{spectral.size} evenly spaced scored times"),
            "regions": "whole domain only",
        },
        blocks={"count": len(blocks), "max_times": max(b - a for a, b in blocks)},
    )
    return {
        "forecast": results["forecast"],
        "references": {n: results[n] for n in inputs.references},
        "regions": {
            area: {"forecast": by_role["forecast"], "references": {n: by_role[n] for n in inputs.references}}
            for area, by_role in regions.items()
        },
        "curves": curves,
        "meta": meta,
    }


def evaluate(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    lr: xr.Dataset | None = None,
    references: Mapping[str, xr.Dataset] | None = None,
    *,
    name: str | None = None,
    variables: list[str] | None = None,
    paths: Mapping[str, Any] | None = None,
    regions: Mapping[str, Region] | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Metrics dict of ``forecast`` and each of ``references`` against ``truth`` (all xarray).

    ``lr`` sets the largest scale of the spectral score (its grid length); ``name`` labels the
    forecast (``meta.forecast_name``); ``regions``: name -> box ``(lat0, lat1, lon0, lon1)`` or
    mask, scored again alone (see :func:`prepare`). See the module docstring for the protocol
    and :func:`score` for the shape.
    """
    inputs = prepare(forecast, truth, lr, references, variables=variables, paths=paths, regions=regions)
    metrics = score(inputs, seed=seed, progress=progress)
    metrics["meta"].update(_provenance(name, paths))
    return metrics


def _provenance(name: str | None, paths: Mapping[str, Any] | None) -> dict[str, Any]:
    import finescale

    paths = dict(paths or {})
    sources = {k: str(paths[k]) if paths.get(k) else None for k in RESERVED_NAMES}
    sources["references"] = {k: str(v) for k, v in paths.items() if k not in RESERVED_NAMES}
    return {
        "forecast_name": name or "forecast",
        "sources": sources,
        "finescale_version": finescale.__version__,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


# --------------------------------------------------------------------------------------------
# From files to metrics.json, figures and report.html
# --------------------------------------------------------------------------------------------


def _json_safe(obj: Any) -> Any:
    """Strict JSON: NaN/inf -> None, numpy scalars -> Python (json would write bare NaN)."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return _finite(obj)
    return obj


def make_figures(inputs: Inputs, metrics: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """Every report figure (id -> matplotlib Figure), from the aligned inputs and the metrics."""
    from finescale.verify import figures

    names = {"forecast": metrics["meta"].get("forecast_name", "forecast")}
    map_time = _map_time(inputs.truth, inputs.variables)
    real_time = figures.which_is_real_time(inputs.truth["time"].values, map_time, seed)
    metrics["meta"]["map_time"] = _time_text(map_time)
    figs = {
        "maps": figures.maps(inputs.truth, inputs.forecast, map_time, inputs.variables, lr=inputs.lr, label=names["forecast"]),
        "maps_references": figures.reference_maps(
            inputs.truth, {names["forecast"]: inputs.forecast, **inputs.references}, map_time, inputs.variables
        ),
        "spectra": figures.spectra(metrics),
        "rank_histograms": figures.rank_histograms(metrics),
        "qq": figures.qq(metrics),
        "scores": figures.score_bars(metrics),
    }
    figs["which_is_real"] = figures.which_is_real(inputs.truth, inputs.forecast, real_time, inputs.variables, seed=seed)
    key = figures.which_is_real_key(inputs.variables, inputs.forecast.sizes["member"], seed)
    metrics["meta"]["which_is_real"] = {"time": _time_text(real_time), "key": key}
    return figs


def run_evaluate(
    forecast_path: str | Path,
    truth_path: str | Path,
    out: str | Path,
    lr_path: str | Path | None = None,
    references: Mapping[str, str | Path] | None = None,
    *,
    name: str | None = None,
    variables: list[str] | None = None,
    regions: Mapping[str, Region] | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> Path:
    """Score the forecast on disk and write ``out``/metrics.json, figures/*.png and report.html.

    ``references``: name -> path of other forecasts scored the same way (baselines, the
    oracle). ``regions``: name -> box ``(lat0, lat1, lon0, lon1)`` or mask (see
    :func:`parse_regions`), reported separately. Every file is written atomically. Returns ``out``.
    """
    import matplotlib.pyplot as plt

    from finescale.io import atomic_path, write_json
    from finescale.verify.report import write_report

    out = Path(out)
    references = dict(references or {})
    paths: dict[str, Any] = {"forecast": forecast_path, "truth": truth_path, "lr": lr_path, **references}
    if progress:
        progress("opening")
    fc = open_dataset(forecast_path, "forecast")
    truth = open_dataset(truth_path, "truth")
    lr = open_dataset(lr_path, "lr") if lr_path is not None else None
    refs = {n: open_dataset(p, f"reference {n}") for n, p in references.items()}
    inputs = prepare(fc, truth, lr, refs, variables=variables, paths=paths, regions=regions)
    metrics = score(inputs, seed=seed, progress=progress)
    metrics["meta"].update(_provenance(name or Path(forecast_path).name.split(".")[0], paths))

    figure_dir = out / "figures"
    figure_dir.mkdir(parents=True, exist_ok=True)
    if progress:
        progress("figures")
    figure_files: dict[str, Path] = {}
    for key, fig in make_figures(inputs, metrics, seed).items():
        path = figure_dir / f"{key}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=90)
        plt.close(fig)
        figure_files[key] = path
    metrics = _json_safe(metrics)
    write_json(metrics, out / "metrics.json")
    if progress:
        progress("report")
    write_report(metrics, figure_files, out / "report.html")
    return out

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
* Averages: unweighted means over all grid points and scored times; forecast climatologies
  (quantiles, exceedances) pool all members.
* Extremes: thresholds are the truth's 99th and 99.9th percentiles over the scored times and
  points (``meta.thresholds``).
* Spectra: radially averaged PSD (Hann window), averaged over members and times;
  ``spectral_log_ratio_max`` is the largest |log10(forecast / truth band power)| over octave
  bands from 2 HR grid lengths up to the LR grid length (from ``lr``'s lat/lon spacing, else 8
  HR grid lengths). A grid length is the geometric mean of the median neighbour distances
  along y and x (km, on a sphere of radius 6371 km).

Memory: one variable of one source is loaded at a time, for the scored times only (about
members x times x y x x x 4 bytes, plus a copy for the quantiles); the scores run over dask
blocks of a few times so their temporaries stay small.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import numpy as np
import xarray as xr

from finescale.verify.extremes import exceedance_ratio, quantiles
from finescale.verify.scores import (
    brier_score,
    crps_fair,
    mae,
    rank_histogram,
    rmse,
    spread,
    spread_skill_ratio,
    twcrps,
)
from finescale.verify.spectra import octave_bands, radial_psd, spectral_log_ratio

__all__ = [
    "FIGURES",
    "METRIC_KEYS",
    "Inputs",
    "evaluate",
    "grid_length_km",
    "load_variable",
    "make_figures",
    "open_dataset",
    "parse_references",
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
BLOCK_VALUES = 4_000_000  # forecast values per dask block (16 MB of float32)

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
    """Open a Zarr store or a NetCDF/GRIB file lazily (dask), with errors naming ``role`` and path."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{role} {path}: no such file or directory")
    zarr_like = path.is_dir() or path.suffix == ".zarr"
    try:
        if zarr_like:
            return xr.open_dataset(path, engine="zarr", chunks={})
        return xr.open_dataset(path, chunks={})
    except Exception as exc:  # every reader fails differently; one clear message is what helps
        kind = "a Zarr store" if zarr_like else "a file xarray can read"
        raise ValueError(f"{role} {path}: cannot be opened as {kind} ({exc})") from exc


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
) -> Inputs:
    """Check and align the sources: same grid as the truth, common times, scored variables.

    ``paths`` (role or reference name -> path) only makes messages and ``meta`` name files.
    Raises ValueError/KeyError naming the source and what is wrong.
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
        ds = ds[_stored_for(ds, names)].sel(time=common)
        ds = ds.assign_coords(lat=truth["lat"], lon=truth["lon"])
        return _convert_units(ds, truth, list(ds.data_vars), _where(role, paths), notes)

    truth_sel = truth[_stored_for(truth, names)].sel(time=common)
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
        "weighting": "unweighted mean over grid points and scored times",
        "notes": notes,
    }
    dropped = {r: n for r, n in meta["times"]["dropped"].items() if n}
    if dropped:
        notes.append(
            "times not in every source were left out: "
            + ", ".join(f"{n} of {_where(r, paths)}" for r, n in dropped.items())
        )
    return Inputs(forecast_sel, truth_sel, lr_std, refs_sel, names, meta)


def _units(ds: xr.Dataset, name: str) -> str:
    if name == "wind_speed" and name not in ds:
        return ds["u10"].attrs.get("units", "")
    return ds[name].attrs.get("units", "")


# --------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------


def load_variable(ds: xr.Dataset, name: str) -> xr.DataArray:
    """One variable in memory (float32 kept: half the memory), ``wind_speed`` derived if needed."""
    if name == "wind_speed" and name not in ds.data_vars:
        u, v = load_variable(ds, "u10"), load_variable(ds, "v10")
        speed = np.hypot(u, v)
        speed.attrs = {"long_name": "10 m wind speed (from u10, v10)", "units": u.attrs.get("units", "")}
        return speed.rename("wind_speed")
    da = ds[name]
    order = [d for d in ("member", "time", "y", "x") if d in da.dims]
    return da.transpose(*order).load()


def _finite(value: Any) -> float | None:
    """A JSON-safe float: NaN and infinities (undefined scores) become None (null)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _finite_list(values: Iterable[Any]) -> list[float | None]:
    return [_finite(v) for v in np.asarray(values, dtype=float).ravel()]


def _block(da: xr.DataArray) -> int:
    per_time = max(1, da.size // max(1, da.sizes.get("time", 1)))
    return max(1, min(da.sizes.get("time", 1), BLOCK_VALUES // per_time))


def _score_source(
    forecast: xr.DataArray,
    truth: xr.DataArray,
    thresholds: dict[str, float],
    q_truth: np.ndarray,
    psd_truth: xr.DataArray,
    dx_km: float,
    bands: list[tuple[float, float]],
    seed: int,
) -> tuple[dict[str, float | None], dict[str, Any]]:
    """Scalar metrics and plot data (spectrum, quantiles, rank counts) of one source, one variable."""
    m = forecast.sizes["member"]
    block = _block(forecast)
    fc, tc = forecast, truth
    if block < forecast.sizes["time"]:
        # dask blocks of a few times keep the temporaries small; one block would only add
        # graph overhead, so small data stays plain numpy
        fc = forecast.chunk({"member": -1, "time": block, "y": -1, "x": -1})
        tc = truth.chunk({"time": block, "y": -1, "x": -1})
    t_levels = list(thresholds.values())
    lazy: dict[str, Any] = {
        "crps_fair": crps_fair(fc, tc),
        "mae_mean": mae(fc, tc),
        "rmse_mean": rmse(fc, tc),
        "bias_mean": (fc.mean("member") - tc).mean(),
        "psd": radial_psd(fc, dx_km=dx_km, average_dims=...),
        "exceedance": exceedance_ratio(fc, tc, thresholds=t_levels),
    }
    for key, t in thresholds.items():
        lazy[f"brier_{key}"] = brier_score(fc, tc, t)
        lazy[f"twcrps_{key}"] = twcrps(fc, tc, t)
    if m > 1:
        lazy["spread"] = spread(fc)
        lazy["ssr"] = spread_skill_ratio(fc, tc)
    (values,) = dask.compute(lazy)

    out: dict[str, float | None] = {k: _finite(v) for k, v in values.items() if k not in ("psd", "exceedance")}
    out.setdefault("spread", None)  # undefined for one member, so null rather than absent
    out.setdefault("ssr", None)
    ratios = spectral_log_ratio(values["psd"], psd_truth, bands).values
    out["spectral_log_ratio_max"] = _finite(np.nanmax(np.abs(ratios))) if np.isfinite(ratios).any() else None
    for key, ratio in zip(thresholds, np.asarray(values["exceedance"].values).ravel()):
        out[f"exceedance_ratio_{key}"] = _finite(ratio)

    # pooled forecast climatology: every member counts as a sample of the same distribution
    q_forecast = np.asarray(quantiles(forecast, list(QQ_LEVELS), dims=None).values)
    for key, level in (("q99", 0.99), ("q999", 0.999), ("q9999", 0.9999)):
        i = QQ_LEVELS.index(level)
        out[f"{key}_rel_error"] = _finite((q_forecast[i] - q_truth[i]) / abs(q_truth[i])) if q_truth[i] != 0 else None

    curves: dict[str, Any] = {
        "psd": _finite_list(values["psd"].values),
        "band_log_ratio": _finite_list(ratios),
        "quantiles": _finite_list(q_forecast),
    }
    if m > 1:
        # synchronous: the tie-breaking draws then come in a fixed order, so reruns agree
        counts = rank_histogram(fc, tc, rng=seed)
        counts = counts.compute(scheduler="synchronous") if counts.chunks else counts
        curves["rank_histogram"] = [int(c) for c in counts.values]
    return {k: out.get(k) for k, _, _ in METRIC_KEYS}, curves


def _map_time(truth: xr.Dataset, variables: list[str]) -> np.datetime64:
    """The most telling time for maps: the wettest (domain-mean precipitation), else the middle one."""
    precip = next((n for n in PRECIP_NAMES if n in variables and n in truth.data_vars), None)
    times = truth["time"].values
    if precip is None:
        return times[times.size // 2]
    domain_mean = truth[precip].mean(("y", "x")).values
    return times[int(np.nanargmax(domain_mean))] if np.isfinite(domain_mean).any() else times[times.size // 2]


def score(inputs: Inputs, *, seed: int = 0, progress: Progress | None = None) -> dict[str, Any]:
    """Metrics of the forecast and every reference for aligned ``inputs`` (see :func:`prepare`).

    Returns the JSON-ready dict ``{"forecast": {VAR: {...}}, "references": {NAME: {VAR: {...}}},
    "curves": {...}, "meta": {...}}``; undefined values are None.
    """
    meta = inputs.meta
    grid = meta["grid"]
    bands = [tuple(b) for b in meta["spectral_bands_km"]]
    results: dict[str, dict[str, Any]] = {role: {} for role in inputs.sources()}
    curves: dict[str, Any] = {"spectra": {}, "qq": {}, "rank_histogram": {}, "spectral_bands": {}}
    thresholds_meta: dict[str, dict[str, float | None]] = {}
    for name in inputs.variables:
        if progress:
            progress(f"scoring {name}: truth")
        truth = load_variable(inputs.truth, name)
        levels = np.asarray(quantiles(truth, list(QQ_LEVELS), dims=None).values)
        thresholds = {k: float(levels[QQ_LEVELS.index(q)]) for k, q in THRESHOLDS.items()}
        thresholds_meta[name] = {k: _finite(v) for k, v in thresholds.items()}
        blocked = truth.chunk({"time": _block(truth)}) if _block(truth) < truth.sizes["time"] else truth
        psd_truth = radial_psd(blocked, dx_km=grid["hr_grid_length_km"], average_dims=...).compute()
        spectra = {"wavelength_km": _finite_list(psd_truth["wavelength"].values), "truth": _finite_list(psd_truth.values)}
        qq = {"levels": list(QQ_LEVELS), "truth": _finite_list(levels)}
        ranks: dict[str, list[int]] = {}
        band_ratios: dict[str, Any] = {"bands_km": [list(b) for b in bands]}
        for role, ds in inputs.sources().items():
            if progress:
                progress(f"scoring {name}: {role}")
            forecast = load_variable(ds, name)
            scalars, c = _score_source(
                forecast, truth, thresholds, levels, psd_truth, grid["hr_grid_length_km"], bands, seed
            )
            del forecast  # one source in memory at a time
            results[role][name] = scalars
            spectra[role] = c["psd"]
            qq[role] = c["quantiles"]
            band_ratios[role] = c["band_log_ratio"]
            if "rank_histogram" in c:
                ranks[role] = c["rank_histogram"]
        curves["spectra"][name] = spectra
        curves["qq"][name] = qq
        curves["rank_histogram"][name] = ranks
        curves["spectral_bands"][name] = band_ratios
    meta = dict(meta, thresholds=thresholds_meta, seed=seed)
    return {
        "forecast": results["forecast"],
        "references": {n: results[n] for n in inputs.references},
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
    seed: int = 0,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Metrics dict of ``forecast`` and each of ``references`` against ``truth`` (all xarray).

    ``lr`` sets the largest scale of the spectral score (its grid length); ``name`` labels the
    forecast (``meta.forecast_name``). See the module docstring for the protocol and
    :func:`score` for the shape.
    """
    inputs = prepare(forecast, truth, lr, references, variables=variables, paths=paths)
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
    seed: int = 0,
    progress: Progress | None = None,
) -> Path:
    """Score the forecast on disk and write ``out``/metrics.json, figures/*.png and report.html.

    ``references``: name -> path of other forecasts scored the same way (baselines, the
    oracle). Every file is written atomically. Returns ``out``.
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
    inputs = prepare(fc, truth, lr, refs, variables=variables, paths=paths)
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

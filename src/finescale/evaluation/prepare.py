"""Aligning the sources of an evaluation: grid, times, variables, units, weights and spectra.

:func:`prepare` checks every source against the truth and returns :class:`Inputs`, still lazy,
for :func:`finescale.evaluation.stream.score`. Nothing is left out silently: without an
explicit list of variables every forecast variable is scored or the call fails naming it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import xarray as xr

from finescale.data.grids import is_global
from finescale.data.times import time_text
from finescale.evaluation.open import (
    check_reference_name,
    match_grid,
    standardise,
    times_of,
    where,
)
from finescale.evaluation.regions import Region, region_masks
from finescale.verify.bands import octave_bands
from finescale.verify.fields import area_weights
from finescale.verify.spectra import EARTH_RADIUS_KM, grid_length_km

Weighting = Literal["area", "none"]
DEFAULT_RATIO = 8  # LR / HR grid length assumed when no LR input is given
SCORED_DIMS = {"member", "time", "y", "x"}
WEIGHTING_TEXT = {
    "area": "area-weighted: each grid point counts with cos(latitude) (the area of a lat-lon "
    "cell), normalised to mean 1 over the grid; quantiles, thresholds and rank counts too",
    "none": "unweighted: every grid point counts the same (plain means)",
}


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
    weights: np.ndarray | None = None  # (y, x) point weights, mean 1; None: unweighted

    def sources(self) -> dict[str, xr.Dataset]:
        """The forecast (key "forecast") and the references, in report order."""
        return {"forecast": self.forecast, **self.references}


def as_ensemble(ds: xr.Dataset) -> xr.Dataset:
    """A deterministic forecast becomes a one-member ensemble."""
    if "member" not in ds.dims:
        ds = ds.expand_dims(member=1)
    if "member" not in ds.coords:
        ds = ds.assign_coords(member=np.arange(ds.sizes["member"]))
    return ds


def gridded(ds: xr.Dataset, name: str) -> bool:
    """Whether ``name`` is a variable of ``ds`` with dims (time, y, x) at least."""
    return name in ds.data_vars and {"time", "y", "x"} <= set(ds[name].dims)


def has_wind_speed(ds: xr.Dataset) -> bool:
    """Whether ``ds`` stores wind_speed or both components it is derived from."""
    return gridded(ds, "wind_speed") or (gridded(ds, "u10") and gridded(ds, "v10"))


def stored_for(ds: xr.Dataset, names: list[str]) -> list[str]:
    """Variables of ``ds`` that scoring ``names`` reads (u10/v10 for a derived wind_speed)."""
    keep = set(names)
    if "wind_speed" in keep and "wind_speed" not in ds.data_vars:
        keep |= {"u10", "v10"}
    return sorted(v for v in keep if v in ds.data_vars)


def _listing(ds: xr.Dataset, file_names: Mapping[str, str] | None) -> str:
    """'t2m (file '2t'), tp' : the variables of ``ds``, with the file's names where they differ."""
    file_names = file_names or {}
    names = [str(n) for n in ds.data_vars]
    text = [f"{n} (file {file_names[n]!r})" if file_names.get(n, n) != n else n for n in names]
    return ", ".join(text) or "none"


def _has(ds: xr.Dataset, name: str) -> bool:
    return name in ds.data_vars or (name == "wind_speed" and has_wind_speed(ds))


def choose_variables(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    requested: list[str] | None,
    paths: Mapping[str, Any],
    truth_names: Mapping[str, str] | None = None,
) -> tuple[list[str], dict[str, str]]:
    """Scored variables (a derived wind_speed last) and the forecast's ones not asked for.

    Without ``requested`` every forecast variable must be scored: one the truth lacks, or one
    not laid out ([member,] time, y, x), is an error (KeyError/ValueError) naming it and the
    side that lacks it; ``truth_names`` (finescale name -> file variable) makes the message
    say what the truth's names map to.
    """
    names = list(dict.fromkeys(requested)) if requested else [str(n) for n in forecast.data_vars]
    hint = "" if requested else "; score only some variables with --variable (variables=[...])"
    for name in names:
        for role, ds in (("forecast", forecast), ("truth", truth)):
            if not _has(ds, name):
                what = "no 'wind_speed' nor u10 and v10" if name == "wind_speed" else f"no {name!r}"
                listing = _listing(ds, truth_names if role == "truth" else None)
                raise KeyError(f"{where(role, paths)} has {what}; it has {listing}{hint}")
    chosen = []
    for name in names:
        derived = name == "wind_speed" and not (
            name in forecast.data_vars and name in truth.data_vars
        )
        if not derived:
            extra = (set(forecast[name].dims) | set(truth[name].dims)) - SCORED_DIMS
            if not gridded(truth, name) or not gridded(forecast, name) or extra:
                raise ValueError(
                    f"variable {name!r} cannot be scored: dims {forecast[name].dims} (forecast), "
                    f"{truth[name].dims} (truth): not ([member,] time, y, x){hint}"
                )
        chosen.append(name)
    if not requested and {"u10", "v10"} <= set(chosen) and "wind_speed" not in chosen:
        chosen.append("wind_speed")  # derived from the components, scored like any variable
    if not chosen:
        raise ValueError(f"no variable to score: {where('forecast', paths)} has none")
    skipped = {
        str(n): "not asked for (--variable)"
        for n in forecast.data_vars
        if requested and n not in chosen
    }
    return chosen, skipped


def convert_units(
    ds: xr.Dataset, truth: xr.Dataset, names: list[str], where: str, notes: list[str]
) -> xr.Dataset:
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
            raise ValueError(
                f"{where}: variable {name!r} in {have!r} cannot be compared with the truth's "
                f"{want!r} ({exc})"
            ) from exc
        notes.append(f"{where}: {name} converted from {have} to {want}")
    return ds


def select_times(ds: xr.Dataset, times: np.ndarray) -> xr.Dataset:
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


def _common_times(sources: dict[str, xr.Dataset], paths: Mapping[str, Any]):
    """Times in every source, and each source's own times (role -> values)."""
    all_times = {role: times_of(ds, where(role, paths)) for role, ds in sources.items()}
    common = all_times["truth"]
    for values in all_times.values():
        common = np.intersect1d(common, values)
    if common.size == 0:
        spans = "; ".join(
            f"{where(r, paths)}: {time_text(t.min())} .. {time_text(t.max())}"
            if t.size
            else f"{where(r, paths)}: none"
            for r, t in all_times.items()
        )
        raise ValueError(f"no time is in every source, nothing to score ({spans})")
    return common, all_times


def spectral_setup(
    truth: xr.Dataset, lr: xr.Dataset | None, paths: Mapping[str, Any], notes: list[str]
) -> tuple[dict[str, Any], dict[str, Any], list[tuple[float, float]]]:
    """Grid meta, spectra meta and octave bands (km) for the truth's grid.

    Global grids (periodic longitude): zonal spectra along latitude circles, wavelengths at
    the equator (grid length 2 pi R / nx); regional grids: radially averaged PSD with one
    grid length sqrt(dy dx). The bands run from 2 HR grid lengths to the LR grid length (from
    ``lr``, else ``DEFAULT_RATIO`` HR grid lengths, with a note), in the same km as the spectra.
    """
    dy, dx, hr_km = grid_length_km(truth["lat"], truth["lon"])
    lon = np.asarray(truth["lon"].values, dtype=float)
    zonal = bool(is_global(lon))
    spectral_km = 2.0 * math.pi * EARTH_RADIUS_KM / truth.sizes["x"] if zonal else hr_km
    if lr is not None:
        lr_lon = np.asarray(lr["lon"].values, dtype=float)
        if zonal and is_global(lr_lon):
            lr_km = 2.0 * math.pi * EARTH_RADIUS_KM / lr.sizes["x"]
        else:
            lr_km = grid_length_km(lr["lat"], lr["lon"])[2]
        lr_source = f"spacing of {where('lr', paths)}"
        if lr_km <= spectral_km:
            raise ValueError(
                f"{where('lr', paths)}: grid length {lr_km:.3g} km is not coarser than the "
                f"truth's {spectral_km:.3g} km"
            )
    else:
        lr_km = DEFAULT_RATIO * spectral_km
        lr_source = f"assumed {DEFAULT_RATIO} HR grid lengths (no LR input given)"
        notes.append(
            f"no LR given: largest spectral scale assumed {DEFAULT_RATIO} HR grid lengths "
            f"({lr_km:.4g} km)"
        )
    # at least one octave above the 2 dx limit, so a ratio-2 downscaling still gets one band
    bands = octave_bands(2.0 * spectral_km, max(lr_km, 4.0 * spectral_km))
    grid = {
        "ny": int(truth.sizes["y"]),
        "nx": int(truth.sizes["x"]),
        "global": zonal,
        "hr_spacing_km": [dy, dx],
        "hr_grid_length_km": hr_km,
        "spectral_grid_length_km": spectral_km,
        "lr_grid_length_km": lr_km,
        "lr_grid_length_from": lr_source,
    }
    method = (
        "zonal spectra along latitude circles, cos-latitude weighted; wavelength at the equator "
        f"(equatorial grid length {spectral_km:.4g} km)"
        if zonal
        else f"radially averaged PSD, Hann window, one grid length of {spectral_km:.4g} km"
    )
    return grid, {"kind": "zonal" if zonal else "radial", "method": method}, bands


def prepare(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    lr: xr.Dataset | None = None,
    references: Mapping[str, xr.Dataset] | None = None,
    *,
    variables: list[str] | None = None,
    paths: Mapping[str, Any] | None = None,
    regions: Mapping[str, Region] | None = None,
    weighting: Weighting = "area",
    truth_names: Mapping[str, str] | None = None,
    notes: list[str] | None = None,
) -> Inputs:
    """Check and align the sources: same grid as the truth, common times, scored variables.

    ``paths`` (role or reference name -> path) only makes messages and ``meta`` name files.
    ``regions``: name -> box ``(lat0, lat1, lon0, lon1)`` in degrees or a mask on the truth
    grid (see :func:`finescale.evaluation.parse_regions`). ``weighting``: "area" (cos(lat)
    point weights) or "none". ``truth_names``: finescale name -> the truth file's variable, for
    messages; ``notes``: notes of the opening, kept first. Raises ValueError/KeyError naming
    the source and what is wrong.
    """
    if weighting not in WEIGHTING_TEXT:
        raise ValueError(f"weighting {weighting!r}: choose 'area' or 'none'")
    paths = dict(paths or {})
    references = dict(references or {})
    for name in references:
        check_reference_name(name)
    notes = list(notes or [])
    truth = standardise(truth, where("truth", paths))
    forecast = standardise(forecast, where("forecast", paths))
    references = {n: standardise(ds, where(n, paths)) for n, ds in references.items()}
    if not {"lat", "lon"} <= set(truth.coords):
        raise ValueError(
            f"{where('truth', paths)}: no lat/lon coordinates (needed for grid lengths and maps)"
        )

    names, skipped = choose_variables(forecast, truth, variables, paths, truth_names)
    for name, ds in references.items():
        missing = [
            v for v in names if not (gridded(ds, v) or (v == "wind_speed" and has_wind_speed(ds)))
        ]
        if missing:
            raise KeyError(
                f"{where(name, paths)}: missing variable(s) {', '.join(missing)} that the forecast "
                f"and truth have (it has {', '.join(map(str, ds.data_vars)) or 'none'})"
            )

    members = {}
    matched = {}
    for role, ds in (("forecast", forecast), *references.items()):
        truth_file = str(paths.get("truth") or "in memory")
        matched[role], more = match_grid(ds, truth, where(role, paths), truth_file)
        notes += more
        members[role] = int(ds.sizes.get("member", 1))
        if "member" not in ds.dims:
            notes.append(
                f"{where(role, paths)}: no member dim, "
                "scored as a 1-member (deterministic) forecast"
            )
    forecast, references = matched.pop("forecast"), matched

    common, all_times = _common_times({"truth": truth, "forecast": forecast, **references}, paths)

    def select(ds: xr.Dataset, role: str) -> xr.Dataset:
        ds = select_times(ds[stored_for(ds, names)], common)
        ds = ds.assign_coords(lat=truth["lat"], lon=truth["lon"])
        return convert_units(ds, truth, list(ds.data_vars), where(role, paths), notes)

    truth_sel = select_times(truth[stored_for(truth, names)], common)
    masks, region_meta = region_masks(regions or {}, truth)
    notes += [info["reordered"] for info in region_meta.values() if "reordered" in info]
    forecast_sel = as_ensemble(select(forecast, "forecast"))
    refs_sel = {n: as_ensemble(select(ds, n)) for n, ds in references.items()}

    lr_std = None
    if lr is not None:
        lr_std = standardise(lr, where("lr", paths))
        if not {"lat", "lon"} <= set(lr_std.coords):
            raise ValueError(
                f"{where('lr', paths)}: no lat/lon coordinates "
                "(needed for its grid length and maps)"
            )
    grid, spectra, bands = spectral_setup(truth, lr_std, paths, notes)
    weights = None
    if weighting == "area":
        weights = np.asarray(
            area_weights(np.asarray(truth["lat"].values, dtype=float)), dtype=float
        )

    periods = {
        n: str(truth[n].attrs["accumulation_period"])
        for n in names
        if n in truth.data_vars and truth[n].attrs.get("accumulation_period")
    }
    meta: dict[str, Any] = {
        "members": members,
        "variables": names,
        "derived": {"wind_speed": "hypot(u10, v10)"}
        if "wind_speed" in names and "wind_speed" not in forecast
        else {},
        "skipped_variables": skipped,
        "times": {
            "scored": int(common.size),
            "first": time_text(common[0]),
            "last": time_text(common[-1]),
            "dropped": {r: int(np.setdiff1d(t, common).size) for r, t in all_times.items()},
        },
        "grid": grid,
        "spectral_bands_km": [list(b) for b in bands],
        "spectra": spectra,
        "units": {n: _units(truth, n) for n in names},
        "accumulation_period": periods,
        "weighting": weighting,
        "averaging": WEIGHTING_TEXT[weighting]
        + " over the scored points (grid points and times with the truth and every member defined)",
        "regions": region_meta,
        "notes": notes,
    }
    dropped = {r: n for r, n in meta["times"]["dropped"].items() if n}
    if dropped:
        notes.append(
            "times not in every source were left out: "
            + ", ".join(f"{n} of {where(r, paths)}" for r, n in dropped.items())
        )
    return Inputs(forecast_sel, truth_sel, lr_std, refs_sel, names, meta, masks, weights)

"""The baselines users would pick today: interpolation, quantile mapping and BCSD.

Every baseline turns LR fields into HR fields deterministically, and :func:`run_baseline`
writes the result in finescale's forecast format (:func:`finescale.io.forecast_dataset`): a
one-member ensemble, so that the verification scores it like any other forecast.

* **interpolation** (``bilinear``, ``bicubic``): each LR variable interpolated to the HR grid
  with :func:`finescale.data.grids.interpolate`; bicubic precipitation is clipped at 0.
* **quantile mapping** (``qm``): empirical quantile mapping, per HR grid point and variable, of
  the bilinearly interpolated LR onto the HR truth, fitted on the training period only
  (:func:`fit_quantile_mapping`, :class:`QuantileMapping`).
* **BCSD** (``bcsd``): bias correction by quantile mapping at the LR scale (LR against HR
  coarsened to the LR grid), then spatial disaggregation of the anomaly from the coarse
  training climatology (:func:`fit_bcsd`, :class:`BCSD`).

Decisions
---------
Own numpy implementation, not xsdba. ``xsdba`` (0.7) would add 17 packages to the install,
among them numba/llvmlite (JIT compilation at first use), statsmodels, formulaic and pint, and
expects CF time grouping and pint-readable units. Empirical quantile mapping is small: a
quantile table per point and a vectorised search in it (a bisection over all points at once,
``_searchsorted_columns``), so we keep it here, lazy over time (dask) and tiled in space.

Quantile mapping. ``n_quantiles`` (default 101) probabilities ``p_k = k / (K - 1)`` from the
minimum to the maximum; the source value's position in the source table is found by linear
interpolation between the quantiles, and the target table is read at the same position. A
value equal to several tied source quantiles takes the middle of the tie (mid-rank), so a
constant LR value is not mapped onto one arbitrary end of the target distribution.
Extrapolation beyond the training extremes: *additive* for temperature, wind and every
variable that is not precipitation (the correction at the extreme quantile is kept, so a record
heat is still a record, and a constant bias is removed exactly even outside the training
range); *constant* for precipitation (the training maximum at the point: a multiplicative
extrapolation can explode where the training LR maximum is a drizzle).

Precipitation (recognised by its name or CF standard name, see :func:`finescale.data.units.is_precipitation`):
frequency adaptation comes from the mapping itself. Target quantiles below the wet threshold
(:data:`WET_THRESHOLD`, 0.01 mm/h, converted to the variable's units) are set to exactly 0,
so the LR drizzle that ranks within the truth's dry fraction at a point maps to an exact 0;
mapped values below the threshold (between a dry and a wet quantile) are set to 0 too, an
input of 0 stays 0, and the output is never negative.

Known limitation (measured, not a bug): quantile mapping assumes that the LR rank at a point
tells the HR rank there. Convective rain breaks that: the top HR quantiles of a point are the
peaks of small cells, and a test period whose LR rain is more intense than in training puts
those peaks over the whole area of the LR event. On a 60-day summer Alps world (default
splits) the tp q99 of the test period is 13.7 mm/h with QM, 5.9 with BCSD, 2.8 with bilinear
interpolation and 4.4 in the truth; on an 8-day world it is 2.27 (QM), 2.05 (BCSD), 1.13
(bilinear) against 2.77. QM reproduces the training distribution at every point by
construction, not the test period's.

BCSD climatology: the mean over the training period at every grid point, all hours together.
Temperature and winds: additive anomalies; precipitation: multiplicative ratios
(bias-corrected LR / coarse climatology, 0 where the coarse climatology is dry), interpolated
bilinearly and multiplied by the HR climatology, then trace values below the wet threshold set
to 0 as in quantile mapping. The coarse climatology is that of the HR truth coarsened to the LR
grid, which the bias-corrected LR reproduces by construction (as in Wood et al. 2004).
An hour-of-day climatology (``fit_bcsd(..., diurnal=["t2m"])``) was measured and is not the
default: on Alps worlds of 8, 20 and 60 summer days it lowers the t2m RMSE on the training
period (0.59 -> 0.57 K on 60 days) but raises it on the test period (0.604 -> 0.610 K on 60
days, 0.61 -> 0.63 K on 20 days): the hourly means of a few weeks are noisier than the
diurnal signal of the HR - LR difference they would add.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import xarray as xr

from finescale.config import DataConfig
from finescale.data import grids, units
from finescale.io import forecast_dataset, write_zarr
from finescale.version import __version__

__all__ = [
    "BCSD",
    "METHODS",
    "WET_THRESHOLD",
    "Method",
    "QuantileMapping",
    "check_method",
    "climatology",
    "fit_bcsd",
    "fit_quantile_mapping",
    "interpolation",
    "run_baseline",
    "wet_threshold",
]

Method = Literal["bilinear", "bicubic", "qm", "bcsd"]
METHODS: tuple[str, ...] = get_args(Method)

#: Precipitation below this rate counts as dry: (value, units). Well below the 0.1 mm/h of a
#: rain gauge, so the mapped distribution keeps the light rain that scores look at.
WET_THRESHOLD: tuple[float, str] = (0.01, "mm h-1")
#: Default size of the quantile tables: 101 probabilities, every percentile plus min and max.
N_QUANTILES = 101
#: Fewest training times at one hour of day for an hourly climatology value at that hour.
_MIN_PER_HOUR = 3
#: Hours of output per Zarr chunk.
_CHUNK_TIMES = 24
#: Rows of grid points whose training series are loaded together when quantiles are fitted.
_FIT_ROWS = 16

_DESCRIPTIONS = {
    "bilinear": "bilinear interpolation of the LR fields to the HR grid",
    "bicubic": "bicubic (cubic B-spline) interpolation of the LR fields to the HR grid, "
    "precipitation clipped at 0",
    "qm": "empirical quantile mapping, per HR grid point, of bilinearly interpolated LR onto "
    "the HR truth of the training period",
    "bcsd": "bias correction (quantile mapping at the LR scale against HR coarsened to the LR "
    "grid) and spatial disaggregation of anomalies from the training climatology",
}


# --------------------------------------------------------------------------------------------
# what a variable is


def wet_threshold(da: xr.DataArray) -> float:
    """:data:`WET_THRESHOLD` in the units of ``da`` (its ``units`` attribute).

    Without a units attribute the value is taken as mm/h. An amount per time step (e.g. 'mm')
    is handled with the step of ``da``'s time coordinate.
    """
    value, text = WET_THRESHOLD
    target = da.attrs.get("units")
    if not target:
        return value
    step = None
    if "time" in da.coords and da.sizes.get("time", 0) > 1:
        step = float(np.median(np.diff(da["time"].values)) / np.timedelta64(1, "s"))
    reference = xr.DataArray(value, attrs={"units": text})
    converted = units.convert(reference, str(target), accumulation_seconds=step,
                              where=f"wet threshold of '{da.name}'")
    return float(converted)


# --------------------------------------------------------------------------------------------
# interpolation


def interpolation(
    lr: xr.Dataset,
    hr_grid: xr.Dataset | xr.DataArray,
    method: Literal["bilinear", "bicubic"] = "bilinear",
) -> xr.Dataset:
    """Each LR variable interpolated to the HR grid.

    lr: variables (time, ..., y, x) with coordinates lat(y, x), lon(y, x) in degrees, any
        units. Variables without y/x are left out.
    hr_grid: anything with the HR coordinates lat(y, x), lon(y, x) (e.g. the HR dataset).
    method: ``bilinear`` or ``bicubic`` (see :func:`grids.interpolate`); bicubic
        precipitation, which overshoots below 0 near showers, is clipped at 0.
    Returns (time, ..., y_hr, x_hr) per variable, lazy where ``lr`` is, in the units and attrs
    of ``lr``, with the HR lat/lon as coordinates.
    """
    if method not in ("bilinear", "bicubic"):
        raise ValueError(f"unknown interpolation method {method!r}; use 'bilinear' or 'bicubic'")
    lat, lon = _grid_of(hr_grid)
    out = {}
    for name, da in lr.data_vars.items():
        if not set(grids.HORIZONTAL) <= set(da.dims):
            continue
        fine = grids.interpolate(da, lat, lon, method=method)
        if method == "bicubic" and units.is_precipitation(str(name), da):
            fine = fine.clip(min=0).assign_attrs(da.attrs)
        out[name] = fine
    return xr.Dataset(out, attrs=lr.attrs)


def _grid_of(grid: xr.Dataset | xr.DataArray) -> tuple[xr.DataArray, xr.DataArray]:
    """lat(y, x), lon(y, x) of a dataset or array, without other coordinates."""
    if "lat" not in grid.coords or "lon" not in grid.coords:
        raise ValueError("the HR grid needs 'lat' and 'lon' coordinates")
    return grid["lat"].reset_coords(drop=True), grid["lon"].reset_coords(drop=True)


# --------------------------------------------------------------------------------------------
# quantile mapping: the numerical core, on plain arrays


def _quantile_table(values: np.ndarray, n_quantiles: int) -> np.ndarray:
    """Quantiles of (..., time) ``values`` along time at p = 0, 1/(K-1), ..., 1, as (..., K).

    NaN anywhere in a series gives a NaN table for that point (no mapping there).
    """
    # Sorting once and reading the order statistics is numpy's "linear" quantile, but far
    # faster than np.quantile with a hundred probabilities (one partition per probability).
    ordered = np.sort(values.astype(np.float64), axis=-1)
    n = ordered.shape[-1]
    position = np.linspace(0.0, n - 1.0, n_quantiles)
    low = np.minimum(np.floor(position).astype(np.intp), max(n - 2, 0))
    weight = position - low
    high = np.minimum(low + 1, n - 1)
    table = ordered[..., low] * (1 - weight) + ordered[..., high] * weight
    return np.where(np.isnan(values).any(axis=-1, keepdims=True), np.nan, table)


def _gather(table: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``table[rows, cols]`` of a (K, N) table by flat indexing (several times faster than
    ``np.take_along_axis`` on these shapes)."""
    return table.ravel()[rows * table.shape[1] + cols]


def _searchsorted_columns(
    table: np.ndarray, values: np.ndarray, cols: np.ndarray, side: str
) -> np.ndarray:
    """``np.searchsorted(table[:, c], v, side)`` for every value v and its column c, at once.

    table: (K, N), each column sorted. values, cols: arrays of one shape. A branch-free
    bisection over all values together (ceil(log2(K + 1)) vectorised passes) instead of a
    Python loop over columns: the count of entries below v is built from the largest power
    of two down, on flat indices into the table padded with +inf rows.
    """
    k, n = table.shape
    step = 1 << int(np.floor(np.log2(k)))  # largest power of two <= K
    padded = np.concatenate([table, np.full((2 * step - k, n), np.inf)]).ravel()
    last = cols - n  # flat index of the last entry counted so far (row -1: none yet)
    while step:
        candidate = last + step * n
        pivot = padded[candidate]
        move = (pivot < values) if side == "left" else (pivot <= values)
        last = np.where(move, candidate, last)
        step //= 2
    return (last - cols) // n + 1


def _map_columns(
    x: np.ndarray, source: np.ndarray, target: np.ndarray, additive: bool
) -> np.ndarray:
    """Quantile mapping of (T, N) values through per-column tables (K, N) -> (T, N) float64.

    Position of x in ``source`` in fractional table index (mid-rank for ties, clamped to
    [0, K-1] beyond the ends), then ``target`` read linearly at that position. ``additive``:
    beyond the source extremes the difference x - source extreme is added (else constant).
    """
    k = source.shape[0]
    bad = np.isnan(x) | np.isnan(source).any(axis=0) | np.isnan(target).any(axis=0)
    source = np.where(np.isnan(source), 0.0, source)  # keeps the search defined; masked below
    cols = np.broadcast_to(np.arange(x.shape[1]), x.shape)
    left = _searchsorted_columns(source, x, cols, "left")  # entries < x
    below = _gather(source, np.clip(left - 1, 0, k - 1), cols)
    above = _gather(source, np.clip(left, 0, k - 1), cols)
    # Ties (x equal to table entries, e.g. dry zeros) are rare outside precipitation: find
    # where they end only for those values.
    tied = (above == x) & (left < k)
    right = left.copy()
    right[tied] = _searchsorted_columns(source, x[tied], cols[tied], "right")
    with np.errstate(invalid="ignore", divide="ignore"):
        between = (left - 1) + (x - below) / (above - below)
    position = np.where(tied, (left + right - 1) / 2.0, between)
    under, over = (left == 0) & ~tied, left == k  # beyond the training extremes
    position = np.clip(np.where(under, 0.0, np.where(over, k - 1.0, position)), 0, k - 1)
    low = np.clip(np.floor(position).astype(np.intp), 0, k - 2)
    weight = position - low
    y = _gather(target, low, cols) * (1 - weight) + _gather(target, low + 1, cols) * weight
    if additive:
        y = y + np.where(under, x - source[0], 0.0) + np.where(over, x - source[-1], 0.0)
    return np.where(bad, np.nan, y)


def _map_block(
    x: np.ndarray, source: np.ndarray, target: np.ndarray, additive: bool, threshold: float | None
) -> np.ndarray:
    """apply_ufunc kernel: x (..., *space), tables (*space, K) -> mapped x, float32.

    threshold: for precipitation, the wet threshold (mapped values below it and inputs <= 0
    become exactly 0); None for other variables.
    """
    space = source.shape[:-1]
    flat_x = x.reshape(-1, int(np.prod(space))).astype(np.float64)
    flat_source = source.reshape(-1, source.shape[-1]).T
    flat_target = target.reshape(-1, target.shape[-1]).T
    y = _map_columns(flat_x, flat_source, flat_target, additive)
    if threshold is not None:
        y = np.where((y < threshold) | (flat_x <= 0), 0.0, y)
    return y.reshape(x.shape).astype(np.float32)


# --------------------------------------------------------------------------------------------
# quantile mapping: fitted object


@dataclass(frozen=True)
class QuantileMapping:
    """Fitted empirical quantile mapping, per grid point and variable; applies to any period.

    source, target: quantile tables per variable, (quantile, *space) with ``space`` the
        non-time dims (y, x and any level), in the units of the data they were fitted on.
    precipitation: the variables treated as precipitation (constant extrapolation, zeros).
    thresholds: wet threshold per precipitation variable, in its units.
    fit_period: text naming the times the tables come from.
    """

    source: xr.Dataset
    target: xr.Dataset
    precipitation: frozenset[str]
    thresholds: Mapping[str, float] = field(default_factory=dict)
    fit_period: str = ""

    @property
    def variables(self) -> list[str]:
        return [str(v) for v in self.target.data_vars]

    def apply(self, x: xr.Dataset) -> xr.Dataset:
        """Map ``x`` (time, *space) per variable; lazy over time where ``x`` is dask-backed.

        x: on the grid the mapping was fitted on, the same variables (others are left out),
            in the same units. Returns float32 values with the attrs of ``x``.
        """
        out = {}
        for name in self.variables:
            if name not in x.data_vars:
                raise KeyError(f"quantile mapping was fitted on '{name}', which the input lacks")
            out[name] = self._apply_one(name, x[name])
        return xr.Dataset(out, attrs=x.attrs)

    def _apply_one(self, name: str, da: xr.DataArray) -> xr.DataArray:
        table_dims = [d for d in self.source[name].dims if d != "quantile"]
        if sorted(d for d in da.dims if d != "time") != sorted(table_dims):
            raise ValueError(
                f"'{name}' has dims {da.dims}; the mapping was fitted on (time, "
                f"{', '.join(table_dims)})"
            )
        precipitation = name in self.precipitation
        mapped = xr.apply_ufunc(
            _map_block,
            da,
            self.source[name],
            self.target[name],
            kwargs={
                "additive": not precipitation,
                "threshold": self.thresholds.get(name) if precipitation else None,
            },
            input_core_dims=[table_dims, [*table_dims, "quantile"], [*table_dims, "quantile"]],
            output_core_dims=[table_dims],
            dask="parallelized",
            output_dtypes=[np.float32],
        )
        return mapped.transpose(*da.dims).assign_attrs(da.attrs).rename(name)


def fit_quantile_mapping(
    source: xr.Dataset,
    target: xr.Dataset,
    n_quantiles: int = N_QUANTILES,
    fit_period: str = "",
) -> QuantileMapping:
    """Fit empirical quantile mapping of ``source`` onto ``target`` at every grid point.

    source, target: the same variables (those of ``target`` that ``source`` has are used) on
        the same grid and the same times, (time, *space); the training period only.
    n_quantiles: size of each quantile table (>= 2; 101 gives every percentile).
    Returns a :class:`QuantileMapping` holding the tables (computed here, so it no longer
    depends on the data it was fitted on).
    """
    if n_quantiles < 2:
        raise ValueError(f"n_quantiles must be at least 2, got {n_quantiles}")
    names = [str(v) for v in target.data_vars if v in source.data_vars]
    if not names:
        raise ValueError(
            f"no variable to fit: source has {', '.join(map(str, source.data_vars))}, target "
            f"{', '.join(map(str, target.data_vars))}"
        )
    source_tables, target_tables, thresholds = {}, {}, {}
    precipitation = {name for name in names if units.is_precipitation(name, target[name])}
    for name in names:
        source_tables[name] = _fit_table(source[name], n_quantiles)
        table = _fit_table(target[name], n_quantiles)
        if name in precipitation:
            thresholds[name] = wet_threshold(target[name])
            # Dry quantiles of the truth become exact zeros, so excess LR drizzle maps onto 0.
            table = table.where(~(table < thresholds[name]), 0.0)
        target_tables[name] = table
    return QuantileMapping(
        source=xr.Dataset(source_tables),
        target=xr.Dataset(target_tables),
        precipitation=frozenset(precipitation),
        thresholds=thresholds,
        fit_period=fit_period,
    )


def _fit_table(da: xr.DataArray, n_quantiles: int) -> xr.DataArray:
    """Quantile table (quantile, *space) of one variable along time, computed tile by tile."""
    if "time" not in da.dims:
        raise ValueError(f"'{da.name}' has no time dim to fit quantiles along")
    # Whole series per point, a few rows of points at a time: bounded memory on large grids.
    tiles = {"time": -1, **({"y": _FIT_ROWS} if "y" in da.dims else {})}
    table = xr.apply_ufunc(
        _quantile_table,
        da.chunk(tiles),
        kwargs={"n_quantiles": n_quantiles},
        input_core_dims=[["time"]],
        output_core_dims=[["quantile"]],
        dask="parallelized",
        output_dtypes=[np.float64],
        dask_gufunc_kwargs={"output_sizes": {"quantile": n_quantiles}},
    )
    table = table.assign_coords(quantile=np.linspace(0.0, 1.0, n_quantiles))
    return table.transpose("quantile", ...).compute()


# --------------------------------------------------------------------------------------------
# BCSD


def climatology(ds: xr.Dataset, diurnal: Iterable[str] = ()) -> xr.Dataset:
    """Mean over time at every grid point, per hour of day for the variables in ``diurnal``.

    ds: (time, *space) variables. Returns (*space) per variable, or (hour, *space) with hour
    0..23 for the diurnal ones; an hour with fewer than ``_MIN_PER_HOUR`` times takes the
    all-hours mean.
    """
    diurnal = set(diurnal)
    out = {}
    for name, da in ds.data_vars.items():
        overall = da.mean("time")
        if name not in diurnal:
            out[name] = overall
            continue
        hour = da["time"].dt.hour
        by_hour = da.groupby(hour).mean("time").reindex(hour=np.arange(24))
        counts = hour.groupby(hour).count().reindex(hour=np.arange(24), fill_value=0)
        out[name] = by_hour.where(counts >= _MIN_PER_HOUR, overall)
    return xr.Dataset(out).compute()


def _at_times(clim: xr.DataArray, times: xr.DataArray) -> xr.DataArray:
    """Climatology at each of ``times``: the hour's value for a diurnal one."""
    if "hour" not in clim.dims:
        return clim
    return clim.sel(hour=times.dt.hour).drop_vars("hour")


@dataclass(frozen=True)
class BCSD:
    """Fitted BCSD: LR-scale quantile mapping and the coarse and HR training climatologies.

    correction: quantile mapping of LR onto HR coarsened to the LR grid.
    coarse_climatology: training climatology of HR coarsened to the LR grid, (y_lr, x_lr) or
        (hour, y_lr, x_lr) per variable.
    hr_climatology: training climatology of HR, (y, x) or (hour, y, x).
    hr_lat, hr_lon: the HR grid, (y, x) degrees.
    """

    correction: QuantileMapping
    coarse_climatology: xr.Dataset
    hr_climatology: xr.Dataset
    hr_lat: xr.DataArray
    hr_lon: xr.DataArray

    def apply(self, lr: xr.Dataset) -> xr.Dataset:
        """Downscale ``lr`` (time, y_lr, x_lr) per variable to (time, y, x), float32.

        Additive variables: HR climatology + bilinear(bias-corrected LR - coarse climatology).
        Precipitation: HR climatology x bilinear(bias-corrected LR / coarse climatology), 0
        below the wet threshold.
        """
        corrected = self.correction.apply(lr)
        out = {}
        for name, bc in corrected.data_vars.items():
            coarse = _at_times(self.coarse_climatology[name], bc["time"])
            fine = _at_times(self.hr_climatology[name], bc["time"])
            if name in self.correction.precipitation:
                # 0 / 0 where the coarse climatology is dry: no rain to scale there.
                anomaly = xr.where(coarse > 0, bc / coarse.where(coarse > 0), 0.0)
            else:
                anomaly = bc - coarse
            anomaly = anomaly.astype(np.float32).assign_coords(lat=lr["lat"], lon=lr["lon"])
            spread = grids.interpolate(anomaly, self.hr_lat, self.hr_lon, method="bilinear")
            if name in self.correction.precipitation:
                value = fine.variable * spread
                value = value.where(value >= self.correction.thresholds[str(name)], 0.0)
            else:
                value = fine.variable + spread
            out[name] = value.astype(np.float32).transpose(*spread.dims).assign_attrs(bc.attrs)
        return xr.Dataset(out, attrs=lr.attrs)


def fit_bcsd(
    lr: xr.Dataset,
    hr: xr.Dataset,
    ratio: int,
    n_quantiles: int = N_QUANTILES,
    fit_period: str = "",
    diurnal: Iterable[str] = (),
) -> BCSD:
    """Fit BCSD on training LR (time, y_lr, x_lr) and HR (time, y, x) on the same times.

    ratio: LR spacing / HR spacing, a whole number; HR is block-averaged by it onto the LR
        grid (:func:`grids.coarsen`). The HR variables that LR also has are used.
    diurnal: variables whose climatologies are taken per hour of day (none by default, see
        the module docstring).
    """
    names = [str(v) for v in hr.data_vars if v in lr.data_vars]
    hr = hr[names]
    coarse = xr.Dataset({name: grids.coarsen(hr[name], int(ratio)) for name in names})
    correction = fit_quantile_mapping(lr[names], coarse, n_quantiles, fit_period)
    diurnal = [name for name in diurnal if name in names]
    lat, lon = _grid_of(hr)
    return BCSD(
        correction=correction,
        coarse_climatology=climatology(coarse, diurnal),
        hr_climatology=climatology(hr, diurnal),
        hr_lat=lat.compute(),
        hr_lon=lon.compute(),
    )


# --------------------------------------------------------------------------------------------
# the forecast on disk


def _period_text(split: str, times: np.ndarray) -> str:
    def text(t: np.datetime64) -> str:
        return str(np.datetime_as_string(np.datetime64(t, "m"))) if np.ndim(t) == 0 else str(t)

    return f"{split}: {text(times[0])} .. {text(times[-1])} ({times.size} times)"


def _forecast_attrs(
    method: str, cfg: DataConfig, split: str, times: np.ndarray, fit_period: str,
    parameters: Mapping[str, object],
) -> dict[str, str | int | float]:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "title": f"finescale baseline: {method}",
        "method": method,
        "method_description": _DESCRIPTIONS[method],
        "fit_period": fit_period or "none (no fitting)",
        "forecast_period": _period_text(split, times),
        "lr_source": str(cfg.lr.path),
        "hr_source": str(cfg.hr.path),
        "parameters": json.dumps(dict(parameters), sort_keys=True),
        "members": 1,
        "source": f"finescale {__version__}",
        "history": f"{now}: finescale baseline --method {method} --split {split}",
        "Conventions": "CF-1.8",
    }


# --------------------------------------------------------------------------------------------
# running a baseline


def check_method(method: str) -> Method:
    """``method`` if it names a baseline, else ValueError naming the allowed ones."""
    if method not in METHODS:
        raise ValueError(f"unknown baseline method '{method}'; choose from {', '.join(METHODS)}")
    return method  # type: ignore[return-value]


def _ratio(value: float, hr: xr.Dataset, lr: xr.Dataset) -> int:
    """The whole-number LR/HR spacing ratio that BCSD coarsens by, else ValueError."""
    ratio = round(float(value))
    fits = all(hr.sizes[d] == ratio * lr.sizes[d] for d in grids.HORIZONTAL)
    if ratio < 1 or abs(value - ratio) > 0.02 or not fits:
        raise ValueError(
            f"bcsd needs HR to cover the LR grid with whole blocks: spacing ratio {value:.3g}, "
            f"HR {hr.sizes['y']} x {hr.sizes['x']}, LR {lr.sizes['y']} x {lr.sizes['x']}"
        )
    return ratio


def run_baseline(
    cfg: DataConfig,
    method: Method,
    out: str | Path,
    split: str = "test",
    n_quantiles: int = N_QUANTILES,
) -> Path:
    """Downscale the ``split`` period with a baseline and write it as a one-member ensemble.

    cfg: the data section (LR, HR, splits). method: ``bilinear``, ``bicubic``, ``qm`` or
    ``bcsd``; qm and bcsd are fitted on the ``train`` split only, whatever ``split`` is.
    split: ``train``, ``validation``, ``test`` or ``all``.
    out: Zarr store written atomically (nothing is left behind on failure) in the format of
    :func:`finescale.io.forecast_dataset`, for the HR variables that LR also has. Returns ``out``.
    Raises ValueError for an unknown method or split, and what :func:`open_pair` raises.
    """
    from finescale.data.pairs import SPLITS, open_pair, split_block

    check_method(method)
    if split not in SPLITS:  # before the (slow) pair is opened
        raise ValueError(f"unknown split '{split}'; choose from {', '.join(SPLITS)}")
    pair = open_pair(cfg)
    names = [str(v) for v in pair.hr.data_vars if v in pair.lr.data_vars and "time" in pair.hr[v].dims]
    if not names:
        raise ValueError(
            f"LR ({cfg.lr.path}) and HR ({cfg.hr.path}) share no time-dependent variable; "
            "map them to the same names in the config"
        )
    lr, hr = pair.lr[names], pair.hr[names]
    all_times = hr["time"].values
    times = split_block(all_times, cfg.splits, split)
    train = split_block(all_times, cfg.splits, "train") if method in ("qm", "bcsd") else all_times[:0]
    fit_period = _period_text("train", train) if train.size else ""
    parameters: dict[str, object] = {}

    if method in ("bilinear", "bicubic"):
        fields = interpolation(lr.sel(time=times), hr, method)
    elif method == "qm":
        model = fit_quantile_mapping(
            interpolation(lr.sel(time=train), hr), hr.sel(time=train), n_quantiles, fit_period
        )
        fields = model.apply(interpolation(lr.sel(time=times), hr))
        parameters = {"n_quantiles": n_quantiles, "wet_threshold": dict(model.thresholds)}
    else:
        bcsd = fit_bcsd(lr.sel(time=train), hr.sel(time=train), _ratio(pair.ratio, hr, lr),
                        n_quantiles, fit_period)
        fields = bcsd.apply(lr.sel(time=times))
        parameters = {
            "n_quantiles": n_quantiles,
            "wet_threshold": dict(bcsd.correction.thresholds),
        }
    attrs = _forecast_attrs(method, cfg, split, times, fit_period, parameters)
    ds = forecast_dataset(fields, hr, attrs)
    ds = ds.chunk({"member": 1, "time": _CHUNK_TIMES, "y": -1, "x": -1})
    encoding = {name: {"chunks": [c[0] for c in ds[name].chunks]} for name in ds.data_vars}
    return write_zarr(ds, out, encoding=encoding)

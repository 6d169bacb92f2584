"""Whether LR and HR hold the same weather: LR compared with HR brought to the LR grid.

:func:`compare_variables` samples common times, brings HR to the LR grid (block means, HR values
at the LR points, or interpolation) and measures, per variable, the correlation of anomalies,
the bias and the RMSE (:class:`VariableCheck`); it also tries flips, shifts and a transpose of
LR and names the one that fits clearly better than LR as given. Apart from
:mod:`finescale.data.alignment`, which checks grids and domains first and reports all of it.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import xarray as xr

from finescale.config import AlignmentConfig
from finescale.data import grids, regrid, units
from finescale.data.errors import PairError, source_name

__all__ = ["VariableCheck", "compare_variables"]

#: Times sampled for the consistency check, and the most HR values loaded for it.
_CHECK_TIMES = 48
_CHECK_BYTES = 256 * 2**20
#: Fewest sampled times for which anomalies about the time mean are compared.
_MIN_ANOMALY_TIMES = 4

#: An alternative (flip, shift, transpose) is taken as the real layout of LR when it removes at
#: least this share of the decorrelation ``1 - r`` of the data as given ...
_ALTERNATIVE_GAIN = 0.5
#: ... and raises the correlation by at least this much.
_ALTERNATIVE_MARGIN = 0.02


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


def _sample_times(lr: xr.Dataset, hr: xr.Dataset, name: str) -> np.ndarray:
    """Up to 48 evenly spaced common times, fewer when HR fields are large."""
    common = np.intersect1d(lr["time"].values, hr["time"].values)
    per_time = max(1, hr[name].nbytes // max(1, hr.sizes["time"]))
    n = int(min(_CHECK_TIMES, max(1, _CHECK_BYTES // per_time), common.size))
    if n == 0:
        return common
    return common[np.unique(np.linspace(0, common.size - 1, n).round().astype(int))]


def compare_variables(
    lr: xr.Dataset,
    hr: xr.Dataset,
    layout: int | tuple[np.ndarray, np.ndarray] | None,
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
                f"variable '{name}' is in {lr_units} in LR ({source_name(lr)}) but {hr_units} "
                f"in HR ({source_name(hr)}); set the same 'units' for it in both sources"
            )
        times = _sample_times(lr, hr, name)
        if times.size == 0:
            continue
        a, b = _on_lr_grid(lr, hr, name, times, layout, lr_lon)
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
    layout: int | tuple[np.ndarray, np.ndarray] | None,
    lr_lon: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """LR and HR brought to the LR grid at ``times``, as (time, ..., y, x) float arrays.

    layout: the ratio of grids nested as cells (HR block means), the HR (rows, columns) of
    the LR points of grids nested as points (HR values there), or None (interpolation).
    """
    h = hr[name].sel(time=times)
    if isinstance(layout, tuple):
        h = h.isel(y=xr.DataArray(layout[0], dims="y"), x=xr.DataArray(layout[1], dims="x"))
    elif layout is not None:
        h = grids.coarsen(h, layout)
    else:
        target_lat = lr["lat"].reset_coords(drop=True)
        h = regrid.interpolate(h, target_lat, xr.DataArray(lr_lon, dims=("y", "x")))
        # interpolation extends edge values outward: only LR points inside HR are comparable
        h = h.where(_inside(hr, target_lat.values, lr_lon))
    a = lr[name].sel(time=times).transpose("time", ..., "y", "x").values
    b = h.transpose("time", ..., "y", "x").values
    return np.asarray(a, dtype=float), np.asarray(b, dtype=float)


def _inside(hr: xr.Dataset, lat: np.ndarray, lon: np.ndarray) -> xr.DataArray:
    """Which points (lat, lon), shape (y, x), lie inside the polygon of HR's outer cell centres."""
    from matplotlib.path import Path as Polygon

    hlat, hlon = hr["lat"].values, hr["lon"].values
    ring = [
        (hlon[0, :], hlat[0, :]),
        (hlon[1:, -1], hlat[1:, -1]),
        (hlon[-1, -2::-1], hlat[-1, -2::-1]),
        (hlon[-2:0:-1, 0], hlat[-2:0:-1, 0]),
    ]
    vertices = np.column_stack(
        [np.concatenate([r[0] for r in ring]), np.concatenate([r[1] for r in ring])]
    )
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
    yield (
        _Alternative("flip_y", "LR latitude appears flipped", "flipped"),
        a[:, ::-1, :],
        b,
    )
    yield (
        _Alternative("flip_x", "LR longitude appears flipped", "flipped"),
        a[:, :, ::-1],
        b,
    )
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
                f"shift_y{s:+d}",
                f"LR data appear shifted {where} by {cells}",
                "shifted back",
            )
            yield alt, _shift(a, s, 1), _shift(b, -s, 1)
        if nx - abs(s) >= max(3, nx // 2):
            where = "east" if s > 0 else "west"
            alt = _Alternative(
                f"shift_x{s:+d}",
                f"LR data appear shifted {where} by {cells}",
                "shifted back",
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

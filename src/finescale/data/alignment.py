"""Aligning and checking LR/HR, second stage of the pipeline (open -> align/check -> pair & split).

Works on the datasets :mod:`finescale.data.sources` opens; :func:`finescale.data.pairs.open_pair`
calls it. :func:`align_time` intersects the times of LR and HR, and :func:`check_alignment`
refuses pairs that are clearly misaligned: LR finer than HR, a non-integer spacing ratio,
different domains, LR cell centres off the coarsened HR centres, or LR data that do not match
HR coarsened to the LR grid (a flipped, shifted or transposed LR is recognised and named).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import xarray as xr

from finescale.config import AlignmentConfig
from finescale.data import grids, regrid, units
from finescale.data.sources import PairError, time_text

__all__ = [
    "AlignmentReport",
    "MisalignedError",
    "TimeReport",
    "VariableCheck",
    "align_time",
    "check_alignment",
    "check_covers",
]

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


class MisalignedError(PairError):
    """LR and HR that do not describe the same state on matching grids.

    ``report`` holds the checks done before the refusal (may be None).
    """

    def __init__(self, message: str, report: AlignmentReport | None = None) -> None:
        super().__init__(message)
        self.report = report


# --------------------------------------------------------------------------------------------
# time


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
    lr_range = (time_text(lt[0]), time_text(lt[-1])) if lt.size else ("-", "-")
    hr_range = (time_text(ht[0]), time_text(ht[-1])) if ht.size else ("-", "-")
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
        first=time_text(common[0]),
        last=time_text(common[-1]),
        lr_range=lr_range,
        hr_range=hr_range,
        lr_first_dropped=time_text(l_drop[0]) if l_drop.size else None,
        lr_last_dropped=time_text(l_drop[-1]) if l_drop.size else None,
        hr_first_dropped=time_text(h_drop[0]) if h_drop.size else None,
        hr_last_dropped=time_text(h_drop[-1]) if h_drop.size else None,
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

    Extents are cell edges (south, north, west, east), latitude clipped to +-90; on a grid that
    goes round the globe (``lr_periodic``/``hr_periodic``: longitude is periodic) east - west
    is 360. ``ratio`` is LR spacing / HR spacing (mean of y and x); ``method`` says how HR was
    brought to the LR grid for the consistency check: ``coarsen`` (block means, grids nested as
    cells), ``nodes`` (HR values at the LR points, grids nested as points: every LR point is an
    HR point) or ``interpolate`` (non-nested grids).
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
    lr_periodic: bool = False
    hr_periodic: bool = False
    variables: Mapping[str, VariableCheck] = field(default_factory=dict)
    static: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "variables", MappingProxyType(dict(self.variables)))


def _extent(lat: np.ndarray, lon: np.ndarray) -> tuple[float, float, float, float]:
    """Cell-edge extent (south, north, west, east) in degrees of a (y, x) grid of centres.

    The cell corners are found in index space, half a cell beyond the outermost centres (by
    linear extrapolation), so a regular grid gives its centres +- half a spacing and nested
    curvilinear grids give the same edges at both resolutions. Latitude edges are clipped to
    +-90 (the cell of a pole-inclusive grid ends at the pole).
    """
    lon = np.unwrap(np.unwrap(lon, period=360.0, axis=1), period=360.0, axis=0)
    corners = [_corners(v) for v in (lat, lon)]
    corners[0] = np.clip(corners[0], -90.0, 90.0)
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


def _lon_covers(inner: Sequence[float], outer: Sequence[float], tol: float) -> bool:
    """Whether the longitude interval (west, east) ``inner`` lies inside ``outer`` on the circle.

    Degrees, any convention (0..360, -180..180, unwrapped): a global ``outer`` covers every
    longitude; otherwise ``inner`` is moved by whole turns to start at or east of ``outer``'s
    west edge (within ``tol``) before its east edge is compared.
    """
    if outer[1] - outer[0] >= 360.0 - tol:
        return True
    west = outer[0] - tol + (inner[0] - outer[0] + tol) % 360.0
    return west + (inner[1] - inner[0]) <= outer[1] + tol


def _extent_offset(a: Sequence[float], b: Sequence[float], tol: float) -> float:
    """Largest difference (degrees) between the edges of extents ``a`` and ``b``.

    Longitude edges are compared on the circle, and two global grids have the same longitudes.
    """
    lat = max(abs(a[0] - b[0]), abs(a[1] - b[1]))
    if min(a[3] - a[2], b[3] - b[2]) >= 360.0 - tol:
        return lat
    lon = max(abs(float(grids.wrap180(a[i] - b[i]))) for i in (2, 3))
    return max(lat, lon)


def _node_index(
    lr_lat: np.ndarray,
    lr_lon: np.ndarray,
    hr_lat: np.ndarray,
    hr_lon: np.ndarray,
    r: int,
    periodic: bool,
) -> tuple[np.ndarray, np.ndarray] | None:
    """HR rows and columns of the LR points when the grids are nested as points, else None.

    Grids nested as points (pole-inclusive grids, e.g. 73 x 144 at 2.5° and 19 x 36 at 10°)
    have ``(n_hr - 1) = r (n_lr - 1)`` along a regional axis and ``n_hr = r n_lr`` along a
    periodic longitude, where the LR columns may start at any HR column (0..360 vs -180..180).
    Returns (rows (y_lr,), columns (x_lr,)) for the caller to check positions against.
    """
    (my, mx), (ny, nx) = lr_lat.shape, hr_lat.shape
    if r < 2 or (ny - 1) != r * (my - 1):  # ratio 1: the same grid, compared as cells
        return None
    rows = np.arange(my) * r
    if periodic and nx == r * mx:
        start = int(np.argmin(np.abs(grids.wrap180(hr_lon[0] - lr_lon[0, 0]))))
        return rows, (start + np.arange(mx) * r) % nx
    if (nx - 1) == r * (mx - 1):
        return rows, np.arange(mx) * r
    return None


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

    Checks, in order (the first failure raises MisalignedError with a partial report and a
    message that starts with the LR and HR sources):

    1. grids: LR must not be finer than HR; the spacing ratio must be a whole number, the same
       in y and x, when ``cfg.require_integer_ratio`` (nested grids);
    2. domains: nested grids must have the same cell-edge extents, and the LR cell centres must
       be the block means of the HR centres; non-nested grids need the HR domain inside the LR
       one. Tolerance: ``cfg.tolerance_deg`` plus 5 % of an LR cell;
    3. data: each variable in both LR and HR is compared with HR brought to the LR grid
       (``grids.coarsen`` for nested grids, bilinear ``regrid.interpolate`` otherwise) on up to
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
        files = f"LR {_source(lr)} vs HR {_source(hr)}: "
        return MisalignedError(files + message, AlignmentReport(**partial))

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
    partial.update(
        lr_extent=lr_ext,
        hr_extent=hr_ext,
        lr_periodic=grids.is_global(lr_lon),
        hr_periodic=grids.is_global(hr_lon),
    )
    nodes = None
    if nested:
        periodic = partial["lr_periodic"] and partial["hr_periodic"]
        nodes = _node_index(lr_lat, lr_lon, hr_lat, hr_lon, ratio, periodic)
        if nodes is not None:
            # Nested as points: every LR point must be the HR point it names (this also
            # checks the domains, whose cell edges differ by (ratio - 1) / 2 HR cells).
            at = np.ix_(*nodes)
            d_lat = float(np.nanmax(np.abs(hr_lat[at] - lr_lat)))
            d_lon = float(np.nanmax(np.abs(grids.wrap180(hr_lon[at] - lr_lon))))
            if max(d_lat, d_lon) > tol:
                nodes = None  # not nested as points: judged as nested cells below
    if nested and nodes is None:
        off = _extent_offset(lr_ext, hr_ext, tol)
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
        d_lon = float(np.nanmax(np.abs(grids.wrap180(_block_mean(hr_lon, ratio) - lr_lon))))
        if max(d_lat, d_lon) > tol:
            raise refuse(
                "LR cell centres are not the centres of the HR blocks they cover: off by up to "
                f"{d_lat:.3g}° in latitude and {d_lon:.3g}° in longitude (tolerance {tol:.3g}°; "
                f"half an LR cell is {lr_dy / 2:.3g}°: cell corners given as centres?)"
            )
    else:
        if not _extent_within(hr_ext, lr_ext, tol):
            raise refuse(
                f"the HR domain is not inside the LR domain: LR {_fmt_extent(lr_ext)}; "
                f"HR {_fmt_extent(hr_ext)} (tolerance {tol:.3g}°)"
            )
    partial["method"] = "nodes" if nodes is not None else "coarsen" if nested else "interpolate"

    layout: int | tuple[np.ndarray, np.ndarray] | None = (
        nodes if nodes is not None else ratio if nested else None
    )
    checks, problems, notes = _compare_variables(lr, hr, layout, cfg, lr_lon)
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


def _extent_within(inner: tuple[float, ...], outer: tuple[float, ...], tol: float) -> bool:
    """Whether extent ``inner`` (lat0, lat1, lon0, lon1; degrees) lies inside ``outer`` within
    ``tol``; longitudes are compared on the circle (see :func:`_lon_covers`)."""
    return (
        inner[0] >= outer[0] - tol
        and inner[1] <= outer[1] + tol
        and _lon_covers(inner[2:], outer[2:], tol)
    )


def check_covers(lr: xr.Dataset, hr: xr.Dataset, tolerance_deg: float) -> None:
    """Refuse LR that does not cover the HR grid (LR and HR on different domains).

    lr, hr: datasets with lat/lon(y, x) in degrees; ``hr`` may hold HR data or static fields.
    The HR cell-edge extent must lie inside the LR one, within ``tolerance_deg`` plus 5 % of an
    LR cell (as in :func:`check_alignment`). Raises MisalignedError naming both sources.
    """
    lr_lon = lr["lon"].values
    hr_lon = hr["lon"].values
    lr_lon = lr_lon + 360.0 * np.round((np.nanmedian(hr_lon) - np.nanmedian(lr_lon)) / 360.0)
    lr_ext = _extent(lr["lat"].values, lr_lon)
    hr_ext = _extent(hr["lat"].values, hr_lon)
    tol = tolerance_deg + _EDGE_FRACTION * min(grids.grid_spacing(lr["lat"], lr["lon"]))
    if not _extent_within(hr_ext, lr_ext, tol):
        raise MisalignedError(
            f"LR {_source(lr)} vs HR {_source(hr)}: the HR grid is not inside the LR domain: "
            f"LR {_fmt_extent(lr_ext)}; HR {_fmt_extent(hr_ext)} (tolerance {tol:.3g}°)"
        )


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
                f"variable '{name}' is in {lr_units} in LR ({_source(lr)}) but {hr_units} in HR "
                f"({_source(hr)}); set the same 'units' for it in both sources"
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
        d_lon = float(np.nanmax(np.abs(grids.wrap180(static["lon"].values - hr["lon"].values))))
        if max(d_lat, d_lon) > tol:
            yield (
                f"static field '{name}' ({_source(static)}) is not on the HR grid: lat/lon differ "
                f"by up to {d_lat:.3g}° / {d_lon:.3g}° (tolerance {tol:.3g}°)"
            )

"""Time axes of the opened datasets: times as text, their checks, steps, and the LR/HR intersection.

:func:`time_text` writes a time for messages and records; :func:`check_times` refuses times that
are not strictly increasing and unique, :func:`hours_since` and :func:`regular_step_seconds`
measure them, and :func:`align_time` keeps the times LR and HR have in common. Apart from
opening and from the spatial checks because every stage (opening, alignment, pairing,
evaluation) reads times the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from finescale.config import duration_text
from finescale.data.errors import PairError, source_name

__all__ = [
    "TimeReport",
    "align_time",
    "check_times",
    "hours_since",
    "regular_step_seconds",
    "time_text",
]

_STANDARD_CALENDARS = {"standard", "gregorian", "proleptic_gregorian"}


def time_text(t: Any, unit: str = "m") -> str:
    """A time as ISO text to the minute (``unit`` "m") or second ("s"), for messages and
    records; datetime64, cftime or anything with ``strftime``; else ``str(t)``."""
    if isinstance(t, np.datetime64):
        return str(np.datetime_as_string(t, unit=unit))
    if hasattr(t, "strftime"):
        return str(t.strftime("%Y-%m-%dT%H:%M" if unit == "m" else "%Y-%m-%dT%H:%M:%S"))
    return str(t)


def check_times(times: np.ndarray, path: Path | str) -> None:
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


def regular_step_seconds(ds: xr.Dataset, path: Path | str, name: str) -> float:
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
            raise PairError(f"{label} ({source_name(ds)}) has no time coordinate")
    lt, ht = lr["time"].values, hr["time"].values
    lcal, hcal = _calendar(lt), _calendar(ht)
    if lcal != hcal:
        raise PairError(
            f"LR ({source_name(lr)}) uses calendar '{lcal}' and HR ({source_name(hr)}) '{hcal}'; "
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
            f"LR and HR have no time in common: LR ({source_name(lr)}) covers {lr_range[0]} .. "
            f"{lr_range[1]} ({lt.size} times), HR ({source_name(hr)}) covers {hr_range[0]} .. "
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

"""What an AtmoRep task is compared with: linear interpolation in time, persistence, and
advection of the last known field by the large-scale wind. Each is a one-member forecast at the
valid times of an AtmoRep ensemble store, in the same (member, time, y, x) format, so
``finescale evaluate`` scores them side by side (for one member the CRPS is the MAE).

The hours a reference may use come from the ensemble store: its valid times come in groups of
``len(hidden_hours)``, one group per neighbourhood, and the hours just before and just after a
group were known to the model.
"""

from __future__ import annotations

import json

import numpy as np
import xarray as xr
from scipy import ndimage

from finescale.data.grids import grid_spacing, is_global
from finescale.io.stores import forecast_dataset
from finescale.verify.spectra import EARTH_RADIUS_KM

EARTH_RADIUS_M = EARTH_RADIUS_KM * 1e3
HOUR = np.timedelta64(1, "h")


def known_hours(forecast: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """For each valid time of an AtmoRep store: the last hour known before it and the first known
    after it."""
    times = forecast.time.values.astype("datetime64[h]")
    lead = forecast.attrs.get("lead_hours", "")
    if lead:  # one hour per neighbourhood, ``lead`` hours after the last known one
        return times - int(lead) * HOUR, times + HOUR
    size = len(json.loads(forecast.attrs["hidden_hours"]))
    if times.size % size:
        raise ValueError(f"{times.size} valid times do not come in groups of {size} hidden hours")
    groups = times.reshape(-1, size)
    before = np.repeat(groups[:, 0] - HOUR, size)
    after = np.repeat(groups[:, -1] + HOUR, size)
    return before, after


def _one_member(
    fields: dict[str, np.ndarray], template: xr.Dataset, truth: xr.Dataset, title: str
) -> xr.Dataset:
    """(time, y, x) arrays at the template's times as a one-member forecast on the truth's grid."""
    ds = xr.Dataset(
        {v: (("time", "y", "x"), a) for v, a in fields.items()},
        coords={"time": template.time.values},
    )
    return forecast_dataset(ds, truth, {"title": title, "Conventions": "CF-1.8"})


def _at(truth: xr.Dataset, v: str, times: np.ndarray) -> np.ndarray:
    return truth[v].sel(time=times.astype("datetime64[ns]")).values.astype(np.float64)


def linear_in_time(
    forecast: xr.Dataset, truth: xr.Dataset, variables: list[str] | None = None
) -> xr.Dataset:
    """Each hidden hour linearly interpolated between the known hours around its group."""
    before, after = known_hours(forecast)
    times = forecast.time.values.astype("datetime64[h]")
    w = ((times - before) / (after - before)).astype(float)[:, None, None]
    names = variables or [str(v) for v in forecast.data_vars if v in truth]
    fields = {v: (1 - w) * _at(truth, v, before) + w * _at(truth, v, after) for v in names}
    return _one_member(fields, forecast, truth, "linear interpolation in time")


def persistence(
    forecast: xr.Dataset, truth: xr.Dataset, variables: list[str] | None = None
) -> xr.Dataset:
    """The last known field, unchanged."""
    before, _ = known_hours(forecast)
    names = variables or [str(v) for v in forecast.data_vars if v in truth]
    return _one_member({v: _at(truth, v, before) for v in names}, forecast, truth, "persistence")


def advection(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    u: xr.DataArray,
    v: xr.DataArray,
    variables: list[str] | None = None,
) -> xr.Dataset:
    """The last known field carried along the wind (u, v) of the last known hour (semi-Lagrangian,
    bilinear).

    u, v: (time, y, x) in m/s on the truth's grid (for example the LR 700 hPa wind interpolated
    to it). A point takes the value found ``wind x lead`` upstream; upstream of the domain edge
    the nearest edge value is used.
    """
    before, _ = known_hours(forecast)
    times = forecast.time.values.astype("datetime64[h]")
    seconds = ((times - before) / np.timedelta64(1, "s")).astype(float)
    dlat, dlon = grid_spacing(truth.lat, truth.lon)
    lat = np.deg2rad(np.asarray(truth.lat, dtype=float))
    metres_y = np.deg2rad(dlat) * EARTH_RADIUS_M
    metres_x = np.deg2rad(dlon) * EARTH_RADIUS_M * np.cos(lat)
    rows, cols = np.indices(lat.shape, dtype=float)
    wrap = "grid-wrap" if is_global(np.asarray(truth.lon)) else "nearest"
    ub, vb = _at(xr.Dataset({"u": u}), "u", before), _at(xr.Dataset({"v": v}), "v", before)
    names = variables or [str(n) for n in forecast.data_vars if n in truth]
    fields = {}
    for name in names:
        last = _at(truth, name, before)
        out = np.empty_like(last)
        for i in range(times.size):
            src_rows = rows - vb[i] * seconds[i] / metres_y
            src_cols = cols - ub[i] * seconds[i] / metres_x
            out[i] = ndimage.map_coordinates(last[i], [src_rows, src_cols], order=1, mode=wrap)
        fields[name] = out
    return _one_member(fields, forecast, truth, "advection by the large-scale wind")

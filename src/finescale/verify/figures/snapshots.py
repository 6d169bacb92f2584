"""Maps of one time, drawn from the datasets: the ensemble beside the truth (and the LR input),
and one sample of each source beside the truth.

Maps take datasets (dims (time, y, x), ensembles with ``member``, 2-D lat/lon).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from finescale.verify.figures.style import outer_labels
from finescale.verify.maps import CMAPS, ensemble_maps, panel


def fields_at(ds: xr.Dataset, time: Any, variables: Sequence[str]) -> xr.Dataset:
    """``variables`` of ``ds`` at one ``time`` (kept as a length-1 time dim), in memory.

    ``wind_speed`` is derived from u10/v10 when not stored; variables ``ds`` lacks are left out.
    """
    at = ds.sel(time=[time])
    out = {}
    for name in variables:
        if name in at.data_vars:
            out[name] = at[name]
        elif name == "wind_speed" and {"u10", "v10"} <= set(at.data_vars):
            speed = np.hypot(at["u10"], at["v10"])
            out[name] = speed.assign_attrs(
                units=at["u10"].attrs.get("units", ""), long_name="wind speed"
            )
    return xr.Dataset(
        out, coords={c: at[c] for c in ("lat", "lon", "time") if c in at.coords}
    ).load()


def maps(
    truth: xr.Dataset,
    ensemble: xr.Dataset,
    time: Any,
    variables: Sequence[str],
    *,
    lr: xr.Dataset | None = None,
    label: str = "member",
    n_members: int = 3,
) -> plt.Figure:
    """Rows per variable: LR input (when given and at ``time``), truth, members, mean, spread."""
    lr_at = None
    if lr is not None and "time" in lr.dims and time in lr["time"].values:
        lr_at = fields_at(lr, time, variables)
    fig = ensemble_maps(
        lr_at,
        fields_at(truth, time, variables),
        fields_at(ensemble, time, variables),
        time,
        list(variables),
        n_members=n_members,
        label=label,
    )
    return outer_labels(fig)


def reference_maps(
    truth: xr.Dataset,
    sources: Mapping[str, xr.Dataset],
    time: Any,
    variables: Sequence[str],
) -> plt.Figure:
    """Rows per variable: truth, then one member of each source (label -> ensemble dataset).

    One member, not the mean: a sample is what a user of the forecast sees, and smoothness
    (missing small scales) shows at once beside the truth. Colour scale shared per row.
    """
    truth_at = fields_at(truth, time, variables)
    at = {label: fields_at(ds, time, variables) for label, ds in sources.items()}
    n_cols = 1 + len(at)
    fig, axes = plt.subplots(
        len(variables),
        n_cols,
        figsize=(2.8 * n_cols + 1, 2.0 * len(variables)),
        squeeze=False,
        layout="constrained",
    )
    for row, name in zip(axes, variables):
        t = truth_at[name].isel(time=0)
        lo, hi = np.nanpercentile(t, [1, 99.5])
        if name in ("tp", "wind_speed"):
            lo = 0.0
        cmap = CMAPS.get(name, "viridis")
        mesh = panel(row[0], t, f"{name} truth", lo, hi, cmap)
        for ax, (label, ds) in zip(row[1:], at.items()):
            field = ds[name].isel(time=0, member=0)
            what = "member 0" if ds.sizes.get("member", 1) > 1 else "(deterministic)"
            panel(ax, field, f"{name} {label} {what}", lo, hi, cmap)
        fig.colorbar(mesh, ax=row, shrink=0.8, label=truth_at[name].attrs.get("units", ""))
    fig.suptitle(
        f"truth and one sample of each forecast, {np.datetime_as_string(np.datetime64(time, 'm'))}",
        fontsize=10,
    )
    return outer_labels(fig)

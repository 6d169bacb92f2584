"""Maps of one time: LR input, truth, ensemble members and spread, on lat/lon axes."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

CMAPS = {"t2m": "RdYlBu_r", "u10": "PuOr_r", "v10": "PuOr_r", "tp": "Blues"}


def panel(
    ax: plt.Axes, field: xr.DataArray, title: str, vmin: float, vmax: float, cmap: str
) -> plt.cm.ScalarMappable:
    mesh = ax.pcolormesh(
        field["lon"], field["lat"], field, vmin=vmin, vmax=vmax, cmap=cmap, shading="nearest"
    )
    ax.set_title(title, fontsize=9)
    ax.set_aspect(1.0 / np.cos(np.deg2rad(float(field["lat"].mean()))))
    ax.tick_params(labelsize=7)
    return mesh


def ensemble_maps(
    lr: xr.Dataset | None,
    truth: xr.Dataset,
    ensemble: xr.Dataset,
    time: np.datetime64,
    variables: list[str],
    n_members: int = 3,
    label: str = "member",
) -> plt.Figure:
    """One row per variable: LR input, truth, ``n_members`` members, ensemble mean and spread.

    All datasets have 2-D ``lat``/``lon`` coordinates; ``ensemble`` has a ``member`` dim. The
    colour scale of each row is shared, so the LR, truth and members compare directly.
    ``lr`` None drops the LR column; a variable missing from ``lr`` leaves its panel empty.
    A one-member ensemble has no spread panel content.
    """
    n_cols = 3 + n_members + (lr is not None)
    fig, axes = plt.subplots(
        len(variables),
        n_cols,
        figsize=(2.6 * n_cols, 1.9 * len(variables)),
        squeeze=False,
        layout="constrained",
    )
    for row, name in zip(axes, variables):
        t = truth[name].sel(time=time)
        ens = ensemble[name].sel(time=time)
        lo, hi = np.nanpercentile(t, [1, 99.5])
        if name == "tp":
            lo = 0.0
        cmap = CMAPS.get(name, "viridis")
        units = truth[name].attrs.get("units", "")
        panels = []
        if lr is not None:
            panels.append((lr[name].sel(time=time) if name in lr else None, "LR input"))
        panels.append((t, "truth"))
        panels += [
            (ens.isel(member=m), f"{label} {m}") for m in range(min(n_members, ens.sizes["member"]))
        ]
        panels.append((ens.mean("member"), "ensemble mean"))
        for ax, (field, title) in zip(row, panels):
            if field is None:
                ax.set_axis_off()
                ax.set_title(f"{name} {title}: none", fontsize=9)
                continue
            mesh = panel(ax, field, f"{name} {title}", lo, hi, cmap)
        for ax in row[len(panels) : -1]:  # fewer members than columns
            ax.set_axis_off()
        fig.colorbar(mesh, ax=row[: len(panels)], shrink=0.8, label=units)
        if ens.sizes["member"] < 2:
            row[-1].set_axis_off()
            row[-1].set_title(f"{name} spread: one member", fontsize=9)
            continue
        spread = ens.std("member", ddof=1)
        top = float(np.nanmax(spread))
        spread_mesh = panel(
            row[-1],
            spread,
            f"{name} spread",
            0.0,
            top if np.isfinite(top) and top > 0 else 1.0,
            "magma",
        )
        fig.colorbar(spread_mesh, ax=row[-1], shrink=0.8)
    fig.suptitle(str(np.datetime_as_string(np.datetime64(time, "m"))), fontsize=10)
    return fig

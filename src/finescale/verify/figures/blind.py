"""The blind test: can a scientist tell the truth from two ensemble members?

Apart from the other maps because its panels, time and order are drawn at random (seeded), and
the key is printed with the figure.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from finescale.verify.figures.snapshots import fields_at
from finescale.verify.figures.style import outer_labels
from finescale.verify.maps import CMAPS, panel


def which_is_real_time(times: np.ndarray, avoid: Any, seed: int = 0) -> Any:
    """A seeded random time other than ``avoid`` (the maps show the truth there)."""
    choices = [t for t in np.asarray(times) if t != avoid] or list(np.asarray(times))
    return choices[int(np.random.default_rng(seed).integers(len(choices)))]


def which_is_real_key(
    variables: Sequence[str], n_members: int, seed: int = 0
) -> dict[str, list[str]]:
    """Seeded order of the panels per variable: e.g. {"t2m": ["member 3", "truth", "member 0"]}.

    Two distinct members (fewer if the ensemble is smaller) and the truth, shuffled.
    """
    rng = np.random.default_rng([seed, 7])  # its own stream: independent of the time choice
    key = {}
    for name in variables:
        members = rng.choice(n_members, size=min(2, n_members), replace=False)
        order = ["truth", *(f"member {int(m)}" for m in members)]
        key[name] = [order[i] for i in rng.permutation(len(order))]
    return key


def which_is_real(
    truth: xr.Dataset,
    ensemble: xr.Dataset,
    time: Any,
    variables: Sequence[str],
    *,
    seed: int = 0,
) -> plt.Figure:
    """A blind test: per variable, the truth and two members in a seeded shuffled order.

    If a scientist cannot tell which panel is real, the members look physical. The key (the
    order from :func:`which_is_real_key`) is printed below the panels.
    """
    truth_at = fields_at(truth, time, variables)
    ens_at = fields_at(ensemble, time, variables)
    key = which_is_real_key(variables, ens_at.sizes["member"], seed)
    n_cols = max(len(v) for v in key.values())
    fig, axes = plt.subplots(
        len(variables),
        n_cols,
        figsize=(3.2 * n_cols + 1, 2.2 * len(variables) + 0.6),
        squeeze=False,
        layout="constrained",
    )
    for row, name in zip(axes, variables):
        fields = []
        for what in key[name]:
            if what == "truth":
                fields.append(truth_at[name].isel(time=0))
            else:
                fields.append(ens_at[name].isel(time=0, member=int(what.split()[1])))
        stacked = np.concatenate([np.ravel(f.values) for f in fields])
        lo, hi = np.nanpercentile(stacked, [1, 99.5])
        if name in ("tp", "wind_speed"):
            lo = 0.0
        for i, (ax, f) in enumerate(zip(row, fields)):
            mesh = panel(
                ax, f, f"{name}: {string.ascii_uppercase[i]}", lo, hi, CMAPS.get(name, "viridis")
            )
        for ax in row[len(fields) :]:
            ax.set_axis_off()
        fig.colorbar(mesh, ax=row, shrink=0.8, label=truth_at[name].attrs.get("units", ""))
    when = np.datetime_as_string(np.datetime64(time, "m"))
    fig.suptitle(f"Which one is real? {when}", fontsize=11)
    answer = "\n".join(
        f"{name}: " + ", ".join(f"{string.ascii_uppercase[i]} = {w}" for i, w in enumerate(order))
        for name, order in key.items()
    )
    # supxlabel: constrained layout reserves room for it below the panels
    fig.supxlabel(f"Key: {answer}", fontsize=8, color="0.3")
    return outer_labels(fig)

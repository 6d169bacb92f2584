"""The figure of spread and skill by wavelength: is the ensemble calibrated at every scale?"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from finescale.verify import metrics as read
from finescale.verify.figures.style import empty_figure, role_color


def spread_skill_bands(metrics: Mapping[str, Any]) -> plt.Figure:
    """Per variable: the spread-skill ratio in each octave band (``curves.spread_skill_bands``),
    large scales on the left, one line per ensemble; 1 (dashed) is calibrated at
    that scale, below 1 too little spread there. An ensemble can be calibrated in total and
    wrong at 20 km: this shows where."""
    variables = read.variables(metrics)
    curves = metrics["curves"].get("spread_skill_bands", {})
    if not any(len(curves.get(v, {})) > 1 for v in variables):
        return empty_figure(
            "No ensemble to compare spread with error: every forecast has one member."
        )
    fig, axes = plt.subplots(
        1,
        len(variables),
        figsize=(3.2 * len(variables), 3.2),
        squeeze=False,
        sharey=True,
        layout="constrained",
    )
    for ax, name in zip(axes[0], variables, strict=True):
        c = curves.get(name, {})
        bands = c.get("bands_km", [])
        order = np.argsort([-lo for lo, _ in bands])  # large scales on the left, as in the spectra
        for role in read.roles(metrics):
            if role in c:
                ratios = np.array([np.nan if r is None else r for r in c[role]], dtype=float)[order]
                ax.plot(
                    np.arange(len(bands)),
                    ratios,
                    "o-",
                    color=role_color(metrics, role),
                    lw=1.3,
                    ms=3,
                    label=read.label(metrics, role),
                )
        ax.axhline(1.0, color="black", ls="--", lw=0.8)
        ax.set_xticks(
            np.arange(len(bands)), [f"{bands[i][0]:.0f}-{bands[i][1]:.0f}" for i in order]
        )
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("wavelength band (km)", fontsize=8)
        ax.grid(True, which="major", color="0.85", lw=0.5)
        ax.tick_params(labelsize=7)
    axes[0, 0].set_ylabel("spread / error of the mean", fontsize=8)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(
        "Spread and skill by wavelength (octave bands, sqrt((M+1)/M) corrected; 1 = calibrated)",
        fontsize=10,
    )
    return fig

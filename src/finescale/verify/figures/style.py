"""What every report figure shares: a colour per source, the placeholder for a figure with
nothing to draw, and tick labels only on the outer panels of a grid of maps.

Colours are fixed per source across figures: truth black, the forecast blue, references in
matplotlib's cycle after it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt

from finescale.verify import metrics as read

TRUTH_COLOR = "black"


def role_color(metrics: Mapping[str, Any], role: str) -> str:
    """Matplotlib colour of a source (``forecast`` or a reference's role): its place in the
    roles."""
    return f"C{read.roles(metrics).index(role) % 10}"


def empty_figure(message: str) -> plt.Figure:
    """A small figure that says ``message`` instead of showing an empty plot."""
    fig, ax = plt.subplots(figsize=(6, 1.5))
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=11)
    return fig


def outer_labels(fig: plt.Figure) -> plt.Figure:
    """Tick labels only on the left column and bottom row of a grid of maps.

    The maps of a figure share one domain, so inner labels repeat; dropping them also saves
    most of the text layout time of a many-panel figure.
    """
    for ax in fig.axes:
        spec = ax.get_subplotspec()
        if spec is None or not ax.axison:  # colorbars and empty panels
            continue
        ax.tick_params(labelleft=spec.is_first_col(), labelbottom=spec.is_last_row())
    return fig

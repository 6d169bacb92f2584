"""Report figures: one function per figure, each returning a matplotlib Figure.

Maps take datasets (dims (time, y, x), ensembles with ``member``, 2-D lat/lon): the maps of one
time in :mod:`~finescale.verify.figures.snapshots`, the blind "which one is real?" test in
:mod:`~finescale.verify.figures.blind`. The other figures are drawn from the metrics dict of
:func:`finescale.evaluation.score` alone (:mod:`~finescale.verify.figures.curves`), so they can be
redrawn from a ``metrics.json`` without the data. Colours are fixed per source across figures
(:mod:`~finescale.verify.figures.style`): truth black, the forecast blue, references in
matplotlib's cycle after it.
"""

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display (set before any module imports pyplot)

from finescale.verify.figures.blind import which_is_real, which_is_real_key, which_is_real_time
from finescale.verify.figures.curves import (
    BAR_SCORES,
    SCORE_LABELS,
    TARGETS,
    qq,
    rank_histograms,
    score_bars,
    spectra,
)
from finescale.verify.figures.snapshots import fields_at, maps, reference_maps
from finescale.verify.figures.style import TRUTH_COLOR, empty_figure, role_color

__all__ = [
    "BAR_SCORES",
    "SCORE_LABELS",
    "TARGETS",
    "TRUTH_COLOR",
    "empty_figure",
    "fields_at",
    "maps",
    "qq",
    "rank_histograms",
    "reference_maps",
    "role_color",
    "score_bars",
    "spectra",
    "which_is_real",
    "which_is_real_key",
    "which_is_real_time",
]

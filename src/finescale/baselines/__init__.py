"""The baselines users would pick today: interpolation, quantile mapping, BCSD and QDM.

Every baseline turns LR fields into HR fields deterministically, and :func:`run_baseline`
(:mod:`.run`) writes the result in finescale's forecast format
(:func:`finescale.io.forecast_dataset`): a one-member ensemble, so that the verification scores
it like any other forecast.

* **interpolation** (``bilinear``, ``bicubic``, :mod:`.interpolation`): each LR variable
  interpolated to the HR grid with :func:`finescale.data.regrid.interpolate`; bicubic
  precipitation is clipped at 0.
* **quantile mapping** (``qm``, :mod:`.quantiles`): empirical quantile mapping, per HR grid
  point and variable, of the bilinearly interpolated LR onto the HR truth, fitted on the
  training period only (:func:`fit_quantile_mapping`, :class:`QuantileMapping`).
* **BCSD** (``bcsd``, :mod:`.bcsd`): bias correction by quantile mapping at the LR scale (LR
  against HR coarsened to the LR grid), then spatial disaggregation of the anomaly from the
  coarse training climatology (:func:`fit_bcsd`, :class:`BCSD`).
* **quantile delta mapping** (``qdm``, :mod:`.qdm`): the same fit as QM, but each value keeps
  the forecast period's own change of the model quantile at its probability, added
  (temperature, winds) or multiplied (precipitation) (:func:`fit_quantile_delta_mapping`,
  :class:`QuantileDeltaMapping`).

Decisions
---------
Own numpy implementation, not xsdba. ``xsdba`` (0.7) would add 17 packages to the install,
among them numba/llvmlite (JIT compilation at first use), statsmodels, formulaic and pint, and
expects CF time grouping and pint-readable units. Empirical quantile mapping is small: a
quantile table per point and a vectorised search in it (a bisection over all points at once),
so we keep it here, lazy over time (dask) and tiled in space.
"""

from __future__ import annotations

from finescale.baselines.bcsd import BCSD, climatology, fit_bcsd
from finescale.baselines.interpolation import interpolation
from finescale.baselines.qdm import QuantileDeltaMapping, fit_quantile_delta_mapping
from finescale.baselines.quantiles import (
    N_QUANTILES,
    WET_THRESHOLD,
    QuantileMapping,
    fit_quantile_mapping,
    wet_threshold,
)
from finescale.baselines.run import METHODS, Method, check_method, run_baseline

__all__ = [
    "BCSD",
    "METHODS",
    "N_QUANTILES",
    "WET_THRESHOLD",
    "Method",
    "QuantileDeltaMapping",
    "QuantileMapping",
    "check_method",
    "climatology",
    "fit_bcsd",
    "fit_quantile_delta_mapping",
    "fit_quantile_mapping",
    "interpolation",
    "run_baseline",
    "wet_threshold",
]

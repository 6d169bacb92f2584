"""Evaluation runner: score any ensemble on disk (or in memory) against a truth.

``finescale evaluate`` in Python. Above :mod:`finescale.verify` (array functions only): this
package opens and standardises the sources (:mod:`.open`, :mod:`.config` through the data
layer), aligns them (:mod:`.prepare`), streams the scores (:mod:`.stream`, :mod:`.passes`) and
writes metrics.json, figures and report.html (:mod:`.run`). Nothing here knows about models:
a forecast is any dataset on the truth's grid points with its times, with a ``member`` dim (an
ensemble) or without one (a deterministic forecast, scored as a one-member ensemble).

Protocol, so that numbers from different runs stand in one table:

* Truth: a store in finescale's layout (``--truth``), or read through a config's data layer
  (``--config``: its names, units, accumulation periods, orientation, missing-value policy).
* Grid: a source on the truth's grid points in another order (flipped latitude or longitude,
  longitudes 0..360 against -180..180) is reordered by lat/lon, with a note; another grid is
  refused.
* Times: only those present in the forecast, the truth and every reference are scored (the
  counts left out are in ``meta.times``); ``--split``/``--times`` restrict the truth's.
* Variables: every forecast variable (the truth must have each one, else an error names it),
  or only those asked for, plus ``wind_speed`` derived from ``u10``/``v10`` when both are
  scored. Every reference must hold every scored variable.
* Averages: area-weighted by default: each point counts with cos(latitude), the area of a
  lat-lon cell, normalised to mean 1; on a projected grid cos(lat) is not the cell area (cells
  of nearly equal area are better averaged unweighted: ``weighting="none"``,
  ``--unweighted``, plain means). Weighted too: Brier, twCRPS, exceedance frequencies, rank
  histogram counts (sums of weights), and the quantiles and thresholds (of the weighted
  distribution). Points: grid points and times where the truth and every member are defined.
  Forecast climatologies (quantiles, exceedances) pool all members.
* Extremes: thresholds are the truth's 99th and 99.9th percentiles over the scored times and
  points (``meta.thresholds``).
* Quantiles come from a streaming histogram on the float32 bit pattern
  (:class:`~finescale.verify.extremes.QuantileHistogram`, 2**13 bins per power of two): to
  within 2**-13 = 1.2e-4 of the value, whatever the size of the data (``meta.quantile_method``).
* Spectra (``meta.spectra``): on a global grid (periodic longitude) zonal spectra along
  latitude circles, cos-latitude weighted, with wavelengths at the equator; on a regional grid
  the radially averaged PSD (Hann window) with one grid length sqrt(dy dx) (median neighbour
  distances, km, sphere of radius 6371 km). Averaged over members and at most
  ``SPECTRA_MAX_TIMES`` evenly spaced scored times. ``spectral_log_ratio_max`` is the largest
  |log10(forecast / truth band power)| over octave bands from 2 HR grid lengths up to the LR
  grid length (from ``lr``, else 8 HR grid lengths, with a note), in the spectra's km.
* Regions (boxes or masks on the truth grid, ``meta.regions``): every score but the spectra
  again on the region's points alone, as if the data had been cropped to it (thresholds and
  quantiles from the region's own truth); spectra are for the whole domain only.
* Notes (``meta.notes``, printed by the CLI): every unit conversion, reordering, accumulation
  period and assumption made.
"""

from finescale.evaluation.open import open_dataset, parse_references
from finescale.evaluation.passes import score
from finescale.evaluation.prepare import Inputs, prepare
from finescale.evaluation.regions import load_mask, parse_regions
from finescale.evaluation.run import evaluate, json_safe, make_figures, run_evaluate
from finescale.evaluation.stream import QQ_LEVELS

__all__ = [
    "QQ_LEVELS",
    "Inputs",
    "evaluate",
    "json_safe",
    "load_mask",
    "make_figures",
    "open_dataset",
    "parse_references",
    "parse_regions",
    "prepare",
    "run_evaluate",
    "score",
]

"""Verification of ensembles against truth: scores, spectra, extremes.

Scores arrays only (xarray, and numpy where noted); knows nothing about models or files.
Conventions (member dim, ``dims``, ``weights``, ``mask``) are in
:mod:`finescale.verify.conventions`.
"""

from finescale.verify.bands import (
    octave_bands,
    spectral_log_ratio,
    spectral_log_ratio_max,
    spectral_slope,
)
from finescale.verify.conventions import weighted_mean
from finescale.verify.energy import energy_score
from finescale.verify.extremes import exceedance_ratio, qq, quantiles, relative_quantile_error
from finescale.verify.fields import area_weights, region_mask, wind_speed
from finescale.verify.ranks import rank_histogram
from finescale.verify.scores import (
    brier_score,
    crps_fair,
    crps_pointwise,
    mae,
    rmse,
    spread,
    spread_skill_ratio,
    twcrps,
)
from finescale.verify.spectra import radial_psd, zonal_psd

__all__ = [
    "area_weights",
    "brier_score",
    "crps_fair",
    "crps_pointwise",
    "energy_score",
    "exceedance_ratio",
    "mae",
    "octave_bands",
    "qq",
    "quantiles",
    "radial_psd",
    "rank_histogram",
    "region_mask",
    "relative_quantile_error",
    "rmse",
    "spectral_log_ratio",
    "spectral_log_ratio_max",
    "spectral_slope",
    "spread",
    "spread_skill_ratio",
    "twcrps",
    "weighted_mean",
    "wind_speed",
    "zonal_psd",
]

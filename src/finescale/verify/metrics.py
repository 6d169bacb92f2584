"""Reading the metrics dictionary that ``finescale evaluate`` writes as metrics.json.

Shape: ``{"forecast": {VAR: {score: value}}, "references": {NAME: {VAR: {...}}},
"regions": {REGION: {"forecast": {VAR: {...}}, "references": {...}}},
"curves": {...}, "meta": {...}}``. The figures and the report read it only through these, and
the evaluation runner (:mod:`finescale.evaluation`) fills it with the keys defined here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Every scalar metric per variable, in table order: (key, what it is, what is better).
# "better": "lower", "one" (closest to 1), "zero" (closest to 0 in absolute value), "none".
METRIC_KEYS: tuple[tuple[str, str, str], ...] = (
    ("crps_fair", "fair CRPS", "lower"),
    ("mae_mean", "MAE of the ensemble mean", "lower"),
    ("rmse_mean", "RMSE of the ensemble mean", "lower"),
    ("bias_mean", "mean bias (forecast - truth)", "zero"),
    ("spread", "ensemble spread", "none"),
    ("ssr", "spread-skill ratio", "one"),
    ("spectral_log_ratio_max", "max |log10 PSD ratio|, 2 dx to LR dx", "lower"),
    ("q99_rel_error", "relative error of the 99th percentile", "zero"),
    ("q999_rel_error", "relative error of the 99.9th percentile", "zero"),
    ("q9999_rel_error", "relative error of the 99.99th percentile", "zero"),
    ("brier_q99", "Brier score, > truth q99", "lower"),
    ("brier_q999", "Brier score, > truth q99.9", "lower"),
    ("twcrps_q99", "threshold-weighted CRPS, > truth q99", "lower"),
    ("twcrps_q999", "threshold-weighted CRPS, > truth q99.9", "lower"),
    ("exceedance_ratio_q99", "exceedance frequency ratio, > truth q99", "one"),
    ("exceedance_ratio_q999", "exceedance frequency ratio, > truth q99.9", "one"),
)
# The metrics also scored per region: all but the spectra (whole domain only).
REGION_KEYS: tuple[tuple[str, str, str], ...] = tuple(
    k for k in METRIC_KEYS if k[0] != "spectral_log_ratio_max"
)

# Figure files of an evaluation, in report order: (id, title).
FIGURES: tuple[tuple[str, str], ...] = (
    ("maps", "Maps"),
    ("maps_references", "Forecast and references side by side"),
    ("spectra", "Power spectra"),
    ("spread_skill_bands", "Spread and skill by wavelength"),
    ("rank_histograms", "Rank histograms"),
    ("qq", "Quantile-quantile plots"),
    ("scores", "Scores against the references"),
    ("which_is_real", "Which one is real?"),
)


def roles(metrics: Mapping[str, Any]) -> list[str]:
    """Sources in report order: "forecast", then the references."""
    return ["forecast", *metrics.get("references", {})]


def label(metrics: Mapping[str, Any], role: str) -> str:
    """Display name of a source: the forecast's own name, or the reference's."""
    if role == "forecast":
        return str(metrics.get("meta", {}).get("forecast_name", "forecast"))
    return role


def scores(metrics: Mapping[str, Any], role: str) -> Mapping[str, Any]:
    """VAR -> {score: value} of one source."""
    return metrics["forecast"] if role == "forecast" else metrics["references"][role]


def variables(metrics: Mapping[str, Any]) -> list[str]:
    """Scored variables, derived ones included, in report order."""
    return list(metrics.get("meta", {}).get("variables") or metrics["forecast"])


def units(metrics: Mapping[str, Any], name: str) -> str:
    """Units of a scored variable ('' where unknown)."""
    return metrics.get("meta", {}).get("units", {}).get(name, "")


def regions(metrics: Mapping[str, Any]) -> list[str]:
    """Names of the regions scored separately, in the order given."""
    return list(metrics.get("regions") or {})


def region_scores(metrics: Mapping[str, Any], region: str, role: str) -> Mapping[str, Any]:
    """VAR -> {score: value} of one source within one region."""
    block = metrics["regions"][region]
    return block["forecast"] if role == "forecast" else block["references"][role]

"""Reading the metrics dictionary that ``finescale evaluate`` writes as metrics.json.

Shape: ``{"forecast": {VAR: {score: value}}, "references": {NAME: {VAR: {...}}},
"regions": {REGION: {"forecast": {VAR: {...}}, "references": {...}}},
"curves": {...}, "meta": {...}}``. The figures and the report read it only through these.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


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

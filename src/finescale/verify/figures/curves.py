"""Figures drawn from the metrics dict alone: spectra, rank histograms, quantile-quantile plots
and score bars.

The metrics dict of :func:`finescale.evaluation.score` holds what they need (its ``curves``:
the spectra, quantiles and rank counts), so they can be redrawn from a ``metrics.json`` without
the data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from finescale.verify import metrics as read
from finescale.verify.figures.style import TRUTH_COLOR, empty_figure, role_color

BAR_SCORES = ("crps_fair", "rmse_mean", "ssr", "spectral_log_ratio_max", "q999_rel_error")
SCORE_LABELS = {
    "crps_fair": "fair CRPS",
    "rmse_mean": "RMSE of mean",
    "ssr": "spread-skill ratio",
    "spectral_log_ratio_max": "max |log10 PSD ratio|",
    "q999_rel_error": "q99.9 relative error",
}
TARGETS = {"ssr": 1.0, "q999_rel_error": 0.0}  # reference lines for scores with an ideal value


def _array(values: Sequence[float | None] | None) -> np.ndarray:
    """JSON list (None for undefined) -> float array with NaN."""
    return np.array([np.nan if v is None else v for v in values or []], dtype=float)


def spectra(metrics: Mapping[str, Any]) -> plt.Figure:
    """Per variable: PSDs (top) and their ratio to the truth's (bottom); radially averaged, or
    zonal along latitude circles on a global grid (``meta.spectra.kind``).

    Log-log against wavelength in km, large scales on the left. The shaded band is the range
    scored by ``spectral_log_ratio_max`` (2 HR grid lengths to the LR grid length).
    """
    variables = read.variables(metrics)
    curves = metrics["curves"]["spectra"]
    zonal = (metrics["meta"].get("spectra") or {}).get("kind") == "zonal"
    title = "Radially averaged power spectra"
    if zonal:
        title = "Zonal power spectra (cos-latitude weighted)"
    wavelength_words = "wavelength at the equator" if zonal else "wavelength"
    lo_band = min(b[0] for b in metrics["meta"]["spectral_bands_km"])
    hi_band = max(b[1] for b in metrics["meta"]["spectral_bands_km"])
    fig, axes = plt.subplots(
        2,
        len(variables),
        figsize=(3.6 * len(variables), 5.6),
        squeeze=False,
        sharex="col",
        gridspec_kw={"height_ratios": [2, 1]},
        layout="constrained",
    )
    for col, name in enumerate(variables):
        c = curves[name]
        wavelength = _array(c["wavelength_km"])
        truth = _array(c["truth"])
        top, bottom = axes[0, col], axes[1, col]
        top.loglog(wavelength, truth, color=TRUTH_COLOR, lw=2.2, label="truth")
        bottom.axhline(1.0, color=TRUTH_COLOR, lw=1.2)
        for role in read.roles(metrics):
            if role not in c:
                continue
            psd = _array(c[role])
            color = role_color(metrics, role)
            top.loglog(wavelength, psd, color=color, lw=1.3, label=read.label(metrics, role))
            with np.errstate(divide="ignore", invalid="ignore"):
                bottom.loglog(wavelength, psd / truth, color=color, lw=1.3)
        # a very smooth forecast would squash the interesting part near 1: cut at 1e-3
        low, high = bottom.get_ylim()
        bottom.set_ylim(max(low, 1e-3), max(high, 2.0))
        for ax in (top, bottom):
            ax.axvspan(lo_band, hi_band, color="0.9", zorder=0)
            ax.grid(True, which="major", color="0.85", lw=0.5)
            ax.tick_params(labelsize=7)
        top.invert_xaxis()  # shared x: inverting once flips both rows
        units = read.units(metrics, name)
        top.set_title(name, fontsize=10)
        top.set_ylabel(f"PSD ({units})$^2$ km" if units else "PSD", fontsize=8)
        bottom.set_ylabel("PSD / truth PSD", fontsize=8)
        bottom.set_xlabel(f"{wavelength_words} (km)", fontsize=8)
    axes[0, 0].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"{title} (shaded: scored band, 2 dx to LR dx)", fontsize=10)
    return fig


def rank_histograms(metrics: Mapping[str, Any]) -> plt.Figure:
    """Columns per variable, rows per source with more than one member.

    Bars are relative frequencies times the number of bins, so a calibrated ensemble sits on
    the dashed line at 1; a U shape means too little spread, a dome too much, a slope a bias.
    """
    variables = read.variables(metrics)
    ranks = metrics["curves"]["rank_histogram"]
    roles = [r for r in read.roles(metrics) if any(r in ranks.get(v, {}) for v in variables)]
    if not roles:
        return empty_figure("No ensemble to rank: every forecast has one member.")
    fig, axes = plt.subplots(
        len(roles),
        len(variables),
        figsize=(2.9 * len(variables) + 0.5, 2.2 * len(roles) + 0.5),
        squeeze=False,
        layout="constrained",
    )
    for row, role in zip(axes, roles):
        for ax, name in zip(row, variables):
            counts = np.asarray(ranks.get(name, {}).get(role, []), dtype=float)
            if counts.size == 0 or counts.sum() == 0:
                ax.set_axis_off()
                continue
            density = counts / counts.sum() * counts.size
            ax.bar(
                np.arange(counts.size),
                density,
                width=1.0,
                color=role_color(metrics, role),
                edgecolor="white",
                lw=0.3,
            )
            ax.axhline(1.0, color="black", ls="--", lw=0.8)
            ax.set_title(f"{name}: {read.label(metrics, role)}", fontsize=9)
            ax.set_ylim(0, max(2.0, float(density.max()) * 1.1))
            ax.set_xlabel("rank of the truth", fontsize=8)
            ax.tick_params(labelsize=7)
        row[0].set_ylabel("frequency x bins", fontsize=8)
    fig.suptitle("Rank histograms (flat at 1 = calibrated)", fontsize=10)
    return fig


def qq(metrics: Mapping[str, Any]) -> plt.Figure:
    """Per variable: forecast quantiles (all members pooled) against the truth's, to 99.99%.

    Points on the diagonal: the forecast climatology matches the truth's; below it at the top
    end: extremes too weak. Dotted lines mark the truth's 99th, 99.9th and 99.99th percentiles.
    """
    variables = read.variables(metrics)
    curves = metrics["curves"]["qq"]
    fig, axes = plt.subplots(
        1, len(variables), figsize=(3.4 * len(variables), 3.6), squeeze=False, layout="constrained"
    )
    for ax, name in zip(axes[0], variables):
        c = curves[name]
        levels, truth = np.asarray(c["levels"], dtype=float), _array(c["truth"])
        values = [truth] + [_array(c[r]) for r in read.roles(metrics) if r in c]
        lo = np.nanmin([np.nanmin(v) for v in values])
        hi = np.nanmax([np.nanmax(v) for v in values])
        ax.plot([lo, hi], [lo, hi], color=TRUTH_COLOR, lw=1.0, label="1:1")
        for role in read.roles(metrics):
            if role in c:
                ax.plot(
                    truth,
                    _array(c[role]),
                    "o-",
                    ms=3,
                    lw=1.2,
                    color=role_color(metrics, role),
                    label=read.label(metrics, role),
                )
        for level, text in ((0.99, "99%"), (0.999, "99.9%"), (0.9999, "99.99%")):
            i = int(np.argmin(np.abs(levels - level)))
            if np.isfinite(truth[i]):
                ax.axvline(truth[i], color="0.6", ls=":", lw=0.8)
                ax.text(truth[i], lo, f" {text}", rotation=90, fontsize=6, color="0.4", va="bottom")
        units = read.units(metrics, name)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(f"truth quantile ({units})", fontsize=8)
        ax.set_ylabel(f"forecast quantile ({units})", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, color="0.9", lw=0.5)
    axes[0, 0].legend(fontsize=7, loc="upper left")
    fig.suptitle("Quantile-quantile plots, 1% to 99.99%", fontsize=10)
    return fig


def score_bars(metrics: Mapping[str, Any], keys: Sequence[str] = BAR_SCORES) -> plt.Figure:
    """Grid of bar charts: rows are scores, columns variables, one bar per source.

    Missing (undefined) values are marked n/a; SSR has its ideal 1 and relative errors their
    ideal 0 drawn as a line.
    """
    variables = read.variables(metrics)
    roles = read.roles(metrics)
    fig, axes = plt.subplots(
        len(keys),
        len(variables),
        figsize=(2.6 * len(variables) + 0.5, 1.8 * len(keys) + 0.6),
        squeeze=False,
        layout="constrained",
    )
    for r, key in enumerate(keys):
        for c, name in enumerate(variables):
            ax = axes[r, c]
            values = []
            for role in roles:
                block = metrics["forecast"] if role == "forecast" else metrics["references"][role]
                values.append(block.get(name, {}).get(key))
            heights = [np.nan if v is None else v for v in values]
            x = np.arange(len(roles))
            ax.bar(x, heights, color=[role_color(metrics, role) for role in roles])
            for xi, v in zip(x, values):
                if v is None:
                    ax.text(xi, 0, "n/a", ha="center", va="bottom", fontsize=7, color="0.4")
            if key in TARGETS:
                ax.axhline(TARGETS[key], color="black", ls="--", lw=0.8)
            ax.axhline(0.0, color="0.5", lw=0.5)
            ax.set_xticks(
                x,
                [read.label(metrics, role) for role in roles],
                rotation=30,
                ha="right",
                fontsize=7,
            )
            ax.tick_params(axis="y", labelsize=7)
            if r == 0:
                ax.set_title(name, fontsize=10)
            if c == 0:
                ax.set_ylabel(SCORE_LABELS.get(key, key), fontsize=8)
    fig.suptitle(
        "Scores of the forecast and the references (lower is better; dashed: ideal SSR 1, "
        "relative error 0)",
        fontsize=10,
    )
    return fig

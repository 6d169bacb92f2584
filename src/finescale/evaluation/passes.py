"""Scoring aligned inputs: two streaming passes over blocks of times (see :mod:`.stream`)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import xarray as xr

from finescale.evaluation import stream
from finescale.evaluation.prepare import Inputs
from finescale.evaluation.stream import (
    QQ_LEVELS,
    QUANTILE_BITS,
    THRESHOLDS,
    Progress,
    Sums,
    finite,
    finite_list,
    load_block,
    prefetched,
)
from finescale.verify.bands import spectral_log_ratio, spread_error_power, spread_skill_by_band
from finescale.verify.extremes import QuantileHistogram
from finescale.verify.metrics import METRIC_KEYS
from finescale.verify.spectra import radial_psd, zonal_psd


class Spectrum:
    """Running mean of the PSDs of 2-D fields (fields with a NaN are left out).

    ``kind`` "radial": radially averaged PSD (Hann window) with one grid length ``dx_km``;
    "zonal": spectra along latitude circles, cos(lat)-weighted over the rows ``row_lat``
    (degrees), ``dx_km`` the grid length on the equator.
    """

    def __init__(self, kind: str, dx_km: float, row_lat: np.ndarray | None = None):
        self.kind, self.dx_km, self.row_lat = kind, dx_km, row_lat
        self.total, self.count = 0.0, 0

    def psd(self, fields: np.ndarray) -> xr.DataArray:
        """PSD of ``fields`` (..., y, x): dims (..., wavenumber)."""
        if self.kind == "zonal":
            return zonal_psd(fields, dx_km=self.dx_km, lat=self.row_lat)
        return radial_psd(fields, dx_km=self.dx_km)

    def add(self, fields: np.ndarray) -> None:
        psd = self.psd(fields).values
        psd = psd.reshape(-1, psd.shape[-1])
        ok = np.isfinite(psd).all(axis=1)
        self.total = self.total + psd[ok].sum(axis=0)
        self.count += int(ok.sum())

    def mean(self, template: xr.DataArray) -> xr.DataArray:
        values = self.total / self.count if self.count else np.full(template.shape, np.nan)
        return template.copy(data=np.broadcast_to(values, template.shape).copy())


def score(inputs: Inputs, *, seed: int = 0, progress: Progress | None = None) -> dict[str, Any]:
    """Metrics of the forecast and every reference for aligned ``inputs`` (see ``prepare``).

    Returns the JSON-ready dict ``{"forecast": {VAR: {...}}, "references": {NAME: {VAR: {...}}},
    "regions": {REGION: {"forecast": ..., "references": ...}}, "curves": {...}, "meta": {...}}``;
    undefined values are None. Two passes over blocks of times: the truth's quantiles fix the
    thresholds, then every source is scored against the truth. Averages use
    ``inputs.weights`` (per point) when given.
    """
    meta = inputs.meta
    names = inputs.variables
    sources = inputs.sources()
    areas: dict[str | None, np.ndarray | None] = {
        None: None,
        **inputs.regions,
    }  # None: whole domain
    grid = meta["grid"]
    kind = meta["spectra"]["kind"]
    row_lat = np.asarray(inputs.truth["lat"].values, dtype=float).mean(axis=1)
    dx_km = grid["spectral_grid_length_km"]
    bands = [tuple(b) for b in meta["spectral_bands_km"]]
    nt = inputs.truth.sizes["time"]
    blocks = stream.time_blocks(inputs)
    spectral = stream.spectral_times(nt)
    weights = inputs.weights

    def cut(values: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        return values if mask is None else values[..., mask]

    def weights_for(times: int, mask: np.ndarray | None) -> np.ndarray | None:
        """Per-point weights of ``times`` fields, shaped like a truth slab cut by ``mask``."""
        if weights is None:
            return None
        w = cut(weights, mask)
        return np.broadcast_to(w, (times, *w.shape))

    def spectral_in(start: int, stop: int) -> np.ndarray:
        return spectral[(spectral >= start) & (spectral < stop)] - start

    def new_spectrum() -> Spectrum:
        return Spectrum(kind, dx_km, row_lat)

    # pass 1: the truth's climatology (quantiles, thresholds) and spectra
    truth_hist = {(n, a): QuantileHistogram(QUANTILE_BITS) for n in names for a in areas}
    truth_psd = {n: new_spectrum() for n in names}
    for (start, stop), block in prefetched(blocks, lambda b: load_block(inputs.truth, names, *b)):
        if progress:
            progress(f"truth climatology: times {start}-{stop} of {nt}")
        for name in names:
            for area, mask in areas.items():
                w = weights_for(stop - start, mask)
                values = cut(block[name], mask)
                truth_hist[name, area].add(values) if w is None else truth_hist[name, area].add(
                    values, w
                )
            at = spectral_in(start, stop)
            if at.size:
                truth_psd[name].add(block[name][at])
    q_truth = {key: h.quantiles(QQ_LEVELS) for key, h in truth_hist.items()}
    thresholds = {
        key: {k: float(q[QQ_LEVELS.index(level)]) for k, level in THRESHOLDS.items()}
        for key, q in q_truth.items()
    }

    # pass 2: every source against the truth, the variables of a block on parallel threads
    sums = {
        (role, name, area): Sums(
            int(ds.sizes["member"]), thresholds[name, area], (seed, r, v, a), weights is not None
        )
        for r, (role, ds) in enumerate(sources.items())
        for v, name in enumerate(names)
        for a, area in enumerate(areas)
    }
    psd = {(role, name): new_spectrum() for role in sources for name in names}
    # spread and skill by wavelength: summed variance and error-of-the-mean spectra, ensembles only
    spread_error = {
        (role, name): [0.0, 0.0]
        for role, ds in sources.items()
        if ds.sizes["member"] > 1
        for name in names
    }

    def score_variable(
        role: str, name: str, forecast: np.ndarray, truth: np.ndarray, start: int
    ) -> None:
        per_time = forecast[:, 0].size
        step = max(1, stream.SLAB_VALUES // per_time)
        for a in range(0, truth.shape[0], step):
            f, y = forecast[:, a : a + step], truth[a : a + step]
            for area, mask in areas.items():
                sums[role, name, area].add(
                    cut(f, mask), cut(y, mask), weights_for(y.shape[0], mask)
                )
            at = spectral_in(start + a, start + a + f.shape[1])
            if at.size:
                psd[role, name].add(f[:, at])
                if (role, name) in spread_error:
                    variance, error, _ = spread_error_power(
                        f[:, at], y[at], lambda x, s=psd[role, name]: s.psd(x).values
                    )
                    spread_error[role, name][0] += variance
                    spread_error[role, name][1] += error

    jobs = [(b, role) for b in blocks for role in ("truth", *sources)]

    def load(job: tuple[tuple[int, int], str]) -> dict[str, np.ndarray]:
        (start, stop), role = job
        return load_block(inputs.truth if role == "truth" else sources[role], names, start, stop)

    truth_block: dict[str, np.ndarray] = {}
    with ThreadPoolExecutor(max_workers=max(1, min(os.cpu_count() or 1, len(names)))) as pool:
        for ((start, stop), role), block in prefetched(jobs, load):
            if role == "truth":
                truth_block = block
                continue
            if progress:
                progress(f"scoring {role}: times {start}-{stop} of {nt}")
            done = [
                pool.submit(score_variable, role, n, block[n], truth_block[n], start) for n in names
            ]
            for future in done:
                future.result()

    template = new_spectrum().psd(np.zeros((inputs.truth.sizes["y"], inputs.truth.sizes["x"])))
    results: dict[str, dict[str, Any]] = {role: {} for role in sources}
    regions: dict[str, dict[str, dict[str, Any]]] = {
        area: {role: {} for role in sources} for area in inputs.regions
    }
    curves: dict[str, Any] = {
        "spectra": {},
        "qq": {},
        "rank_histogram": {},
        "spectral_bands": {},
        "spread_skill_bands": {},
    }
    for name in names:
        psd_truth = truth_psd[name].mean(template)
        spectra = {
            "wavelength_km": finite_list(psd_truth["wavelength"].values),
            "truth": finite_list(psd_truth.values),
        }
        qq = {"levels": list(QQ_LEVELS), "truth": finite_list(q_truth[name, None])}
        ranks: dict[str, list[float]] = {}
        band_ratios: dict[str, Any] = {"bands_km": [list(b) for b in bands]}
        for role in sources:
            total = sums[role, name, None]
            scalars, q_forecast = total.result(q_truth[name, None])
            psd_forecast = psd[role, name].mean(template)
            ratios = spectral_log_ratio(psd_forecast, psd_truth, bands).values
            largest = np.nanmax(np.abs(ratios)) if np.isfinite(ratios).any() else None
            scalars["spectral_log_ratio_max"] = finite(largest)
            results[role][name] = {k: scalars.get(k) for k, _, _ in METRIC_KEYS}
            spectra[role] = finite_list(psd_forecast.values)
            qq[role] = finite_list(q_forecast)
            band_ratios[role] = finite_list(ratios)
            if total.members > 1:
                ranks[role] = [c.item() for c in total.ranks]
            for area in inputs.regions:
                regions[area][role][name] = sums[role, name, area].result(q_truth[name, area])[0]
        curves["spectra"][name] = spectra
        curves["qq"][name] = qq
        curves["rank_histogram"][name] = ranks
        curves["spectral_bands"][name] = band_ratios
        by_band: dict[str, Any] = {"bands_km": [list(b) for b in bands]}
        for role, ds in sources.items():
            if (role, name) in spread_error:
                variance, error = (
                    template.copy(data=np.broadcast_to(v, template.shape).copy())
                    for v in spread_error[role, name]
                )
                by_band[role] = finite_list(
                    spread_skill_by_band(variance, error, bands, ds.sizes["member"]).values
                )
        curves["spread_skill_bands"][name] = by_band

    def threshold_meta(area: str | None) -> dict[str, dict[str, float | None]]:
        return {n: {k: finite(v) for k, v in thresholds[n, area].items()} for n in names}

    region_meta = {
        area: dict(info, thresholds=threshold_meta(area))
        for area, info in meta.get("regions", {}).items()
    }
    over = (
        "every scored time"
        if spectral.size == nt
        else f"{spectral.size} evenly spaced scored times"
    )
    weighted = " (weighted)" if weights is not None else ""
    meta = dict(
        meta,
        thresholds=threshold_meta(None),
        regions=region_meta,
        seed=seed,
        quantile_method=(
            f"streaming histogram{weighted} on the float32 bit pattern, 2^{QUANTILE_BITS} bins per "
            f"power of two: numpy 'linear' quantiles to within 2^-{QUANTILE_BITS} (1.2e-4) "
            "of the value"
            + (
                "; weighted: the value where the weighted distribution reaches the level"
                if weighted
                else ""
            )
        ),
        spectra=dict(
            meta["spectra"],
            times=int(spectral.size),
            of=int(nt),
            averaged=f"mean over members and {over}",
            regions="whole domain only",
        ),
        blocks={"count": len(blocks), "max_times": max(b - a for a, b in blocks)},
    )
    return {
        "forecast": results["forecast"],
        "references": {n: results[n] for n in inputs.references},
        "regions": {
            area: {
                "forecast": by_role["forecast"],
                "references": {n: by_role[n] for n in inputs.references},
            }
            for area, by_role in regions.items()
        },
        "curves": curves,
        "meta": meta,
    }

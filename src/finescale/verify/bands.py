"""Comparing power spectra: octave bands, band power, forecast-to-truth band log ratios, slopes.

The spectra come from :mod:`finescale.verify.spectra` (PSD with a ``wavenumber`` dim and a
``wavelength`` coordinate); bands are (shortest, longest) wavelengths in the same units.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import xarray as xr

from finescale.verify.spectra import ArrayLike, radial_psd, zonal_psd

__all__ = [
    "band_power",
    "octave_bands",
    "spectral_log_ratio",
    "spectral_log_ratio_max",
    "spectral_slope",
    "spread_error_power",
    "spread_skill_by_band",
]


def octave_bands(
    min_wavelength: float, max_wavelength: float, bands_per_octave: float = 1.0
) -> list[tuple[float, float]]:
    """Contiguous wavelength bands of equal log width from ``min_wavelength`` to ``max_wavelength``.

    The number of bands is ceil(log2(max/min) * bands_per_octave) (at least 1), so each band
    spans at most 1/bands_per_octave octaves.
    """
    if not 0 < min_wavelength < max_wavelength:
        raise ValueError("need 0 < min_wavelength < max_wavelength")
    n = max(1, int(np.ceil(np.log2(max_wavelength / min_wavelength) * bands_per_octave - 1e-9)))
    ratio = max_wavelength / min_wavelength
    edges = [min_wavelength * ratio ** (i / n) for i in range(n)] + [max_wavelength]
    return [(float(lo), float(hi)) for lo, hi in itertools.pairwise(edges)]


def band_power(psd: xr.DataArray, bands: Sequence[tuple[float, float]]) -> xr.DataArray:
    """Power of ``psd`` in each wavelength band: the sum over bins with lo <= wavelength <= hi.

    The sum is the band-integrated variance (bins have equal width); closed bands, in the units
    of the ``wavelength`` coordinate. NaN for a band without bins. Returns (..., band) with
    coords ``wavelength_min`` and ``wavelength_max``.
    """
    wavelength = psd["wavelength"].values
    powers = []
    for lo, hi in bands:
        in_band = np.flatnonzero((wavelength >= lo) & (wavelength <= hi))
        if in_band.size == 0:
            powers.append(xr.full_like(psd.isel(wavenumber=0, drop=True), np.nan))
        else:
            powers.append(psd.isel(wavenumber=in_band).sum("wavenumber"))
    out = xr.concat(powers, dim="band", coords="minimal", compat="override").transpose(..., "band")
    out = out.drop_vars([c for c in ("wavenumber", "wavelength") if c in out.coords])
    lows, highs = zip(*bands) if len(bands) else ((), ())
    return out.assign_coords(
        wavelength_min=("band", np.asarray(lows, dtype=float)),
        wavelength_max=("band", np.asarray(highs, dtype=float)),
    )


def spectral_log_ratio(
    psd_forecast: xr.DataArray,
    psd_truth: xr.DataArray,
    bands: Sequence[tuple[float, float]],
) -> xr.DataArray:
    """log10 of forecast over truth spectral power in each wavelength band (:func:`band_power`).

    0: right energy; < 0: too little (too smooth); > 0: too much. Both PSDs must share the
    wavenumber bins (same grid and method). NaN for an empty band.

    Returns:
        DataArray (..., band) with coords ``wavelength_min`` and ``wavelength_max`` (dimensionless).
    """
    forecast_wl = psd_forecast["wavelength"].values
    truth_wl = psd_truth["wavelength"].values
    if forecast_wl.shape != truth_wl.shape or not np.allclose(forecast_wl, truth_wl):
        raise ValueError("the two spectra have different wavenumber bins")
    out = np.log10(band_power(psd_forecast, bands) / band_power(psd_truth, bands))
    out.attrs = {"long_name": "log10 ratio of forecast to truth band power", "units": "1"}
    return out


def spectral_log_ratio_max(
    forecast: ArrayLike,
    truth: ArrayLike,
    *,
    min_wavelength: float,
    max_wavelength: float,
    dx_km: float | None = None,
    kind: Literal["radial", "zonal"] = "radial",
    bands_per_octave: float = 1.0,
    **psd_kwargs,
) -> float:
    """Largest |log10 band-power ratio| of forecast to truth between two wavelengths.

    The PSD of ``forecast`` is averaged over all its leading dims (members, times, ...) and
    that of ``truth`` over all of its own; the ratio is taken in :func:`octave_bands` from
    ``min_wavelength`` (e.g. 2 HR grid lengths, the shortest resolved wave) up to
    ``max_wavelength`` (e.g. the LR grid length: the scales downscaling must add). Wavelengths
    in km when ``dx_km`` is given, else in grid lengths. Extra keyword arguments go to
    :func:`radial_psd` / :func:`zonal_psd`. Returns a float >= 0 (0 = perfect at every band).
    """
    if kind not in ("radial", "zonal"):
        raise ValueError(f"kind must be 'radial' or 'zonal', not {kind!r}")
    psd = radial_psd if kind == "radial" else zonal_psd
    psd_f = psd(forecast, dx_km=dx_km, average_dims=..., **psd_kwargs)
    psd_t = psd(truth, dx_km=dx_km, average_dims=..., **psd_kwargs)
    bands = octave_bands(min_wavelength, max_wavelength, bands_per_octave)
    ratios = spectral_log_ratio(psd_f, psd_t, bands)
    return float(np.nanmax(np.abs(ratios.values)))


def spectral_slope(psd: xr.DataArray, kmin: float, kmax: float) -> xr.DataArray:
    """Least-squares slope of log10(psd) against log10(wavenumber) for kmin <= k <= kmax.

    kmin, kmax in the units of the ``wavenumber`` coordinate. A k^-3 spectrum gives -3.
    Returns the slope over the leading dims of ``psd`` (0-d DataArray for a single spectrum).
    """
    k = psd["wavenumber"]
    in_range = (k >= kmin) & (k <= kmax)
    if int(in_range.sum()) < 2:
        raise ValueError("fewer than two wavenumbers between kmin and kmax")
    selected = psd.isel(wavenumber=np.flatnonzero(in_range.values))
    log_k = np.log10(selected["wavenumber"])
    log_p = np.log10(selected)
    dk = log_k - log_k.mean()
    slope = (dk * (log_p - log_p.mean("wavenumber"))).sum("wavenumber") / (dk * dk).sum()
    slope = slope.drop_vars([c for c in slope.coords if c not in slope.dims], errors="ignore")
    slope.attrs = {"long_name": "log-log spectral slope", "units": "1"}
    return slope


def spread_error_power(
    members: np.ndarray, truth: np.ndarray, psd: Callable[[np.ndarray], np.ndarray]
) -> tuple[np.ndarray, np.ndarray, int]:
    """Spectra of an ensemble's spread and of its mean's error, summed over times.

    ``members``: (M, T, y, x), ``truth``: (T, y, x); ``psd``: fields (..., y, x) -> PSD
    (..., wavenumber), e.g. :func:`~finescale.verify.spectra.radial_psd` as numpy. Returns the
    variance spectrum (the members' deviations from their mean, sum of PSDs / (M - 1): the
    spectrum of the unbiased ensemble variance), the error spectrum of the ensemble mean, each
    summed over the times without a NaN, and how many times that was. Needs M >= 2.
    """
    m = members.shape[0]
    if m < 2:
        raise ValueError("the spread spectrum needs at least two members")
    mean = members.mean(axis=0)
    ok = np.isfinite(mean).all(axis=(-2, -1)) & np.isfinite(truth).all(axis=(-2, -1))
    variance = np.asarray(psd(members[:, ok] - mean[ok])).sum(axis=(0, 1)) / (m - 1)
    error = np.asarray(psd(mean[ok] - truth[ok])).sum(axis=0)
    return variance, error, int(ok.sum())


def spread_skill_by_band(
    variance_psd: xr.DataArray,
    error_psd: xr.DataArray,
    bands: Sequence[tuple[float, float]],
    members: int,
) -> xr.DataArray:
    """Spread-skill ratio per wavelength band: sqrt((M+1)/M * band variance / band error power).

    ``variance_psd`` and ``error_psd`` from :func:`spread_error_power` (any common scaling), as
    DataArrays with the ``wavelength`` coordinate. For exchangeable members and truth the
    expected error power of the mean is (M+1)/M times the expected unbiased variance in every
    band, so the ratio is 1 at every scale of a calibrated ensemble; < 1: too little spread at
    those scales. Returns (..., band).
    """
    ratio = np.sqrt(
        (members + 1.0) / members * band_power(variance_psd, bands) / band_power(error_psd, bands)
    )
    ratio.attrs = {"long_name": "spread-skill ratio per wavelength band", "units": "1"}
    return ratio

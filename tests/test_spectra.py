"""Spectra: known power laws come back, Parseval holds, log ratios see smoothing."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy import ndimage

from finescale.verify import (
    octave_bands,
    radial_psd,
    spectral_log_ratio,
    spectral_log_ratio_max,
    spectral_slope,
    zonal_psd,
)


def power_law_field(rng, slope: float, ny: int, nx: int, count: int = 1) -> np.ndarray:
    """Periodic random fields whose radially averaged spectrum goes as k^slope.

    The radial spectrum sums 2-D modes over an annulus of circumference ~ 2 pi k, so the 2-D
    density must go as k^(slope - 1): amplitude k^((slope - 1) / 2) on white noise.
    """
    k = np.hypot(np.fft.fftfreq(ny)[:, None], np.fft.fftfreq(nx)[None, :])
    amplitude = np.zeros_like(k)
    amplitude[k > 0] = k[k > 0] ** ((slope - 1.0) / 2.0)
    noise = np.fft.fft2(rng.standard_normal((count, ny, nx)), axes=(-2, -1))
    return np.fft.ifft2(noise * amplitude, axes=(-2, -1)).real


def as_field(values: np.ndarray) -> xr.DataArray:
    dims = ("time", "y", "x")[-values.ndim :]
    return xr.DataArray(values, dims=dims, attrs={"units": "K"})


@pytest.mark.parametrize("slope", [-3.0, -5.0 / 3.0])
@pytest.mark.parametrize("window", [None, "hann"])
def test_power_law_slope_is_recovered(slope, window):
    rng = np.random.default_rng(0)
    fields = as_field(power_law_field(rng, slope, 256, 256, count=4))
    psd = radial_psd(fields, window=window, average_dims="time")
    assert psd.dims == ("wavenumber",)
    fitted = float(spectral_slope(psd, 4 / 256, 0.3))
    assert fitted == pytest.approx(slope, abs=0.1)


def test_slope_fit_is_sharp_enough_to_tell_slopes_apart():
    rng = np.random.default_rng(1)
    psd = radial_psd(power_law_field(rng, -3.0, 128, 128, count=2), average_dims=...)
    assert abs(float(spectral_slope(psd, 4 / 128, 0.3)) - (-5.0 / 3.0)) > 0.5


@pytest.mark.parametrize(("ny", "nx", "dx_km"), [(64, 64, None), (48, 80, 2.5), (33, 50, 1.0)])
@pytest.mark.parametrize("detrend", ["constant", None])
def test_parseval_without_window(ny, nx, dx_km, detrend):
    rng = np.random.default_rng(2)
    values = power_law_field(rng, -2.0, ny, nx, count=3) + 10.0 + rng.normal(size=(3, ny, nx))
    psd = radial_psd(as_field(values), dx_km=dx_km, window=None, detrend=detrend, truncate=False)
    assert psd.dims == ("time", "wavenumber")
    integral = psd.sum("wavenumber") * psd.attrs["dk"]
    np.testing.assert_allclose(integral.values, values.var(axis=(-2, -1)), rtol=1e-10)


def test_truncated_spectrum_stops_at_two_grid_lengths():
    rng = np.random.default_rng(3)
    psd = radial_psd(rng.normal(size=(40, 60)), dx_km=3.0)
    assert psd.wavelength.values[-1] == pytest.approx(6.0)  # 2 dx on the shorter axis
    assert psd.wavelength.values[0] == pytest.approx(120.0)  # the shorter side
    assert psd.attrs["dk"] == pytest.approx(1 / 120.0)
    # white noise: flat 2-D density, so the annulus sums grow like the circumference, k^1
    assert float(spectral_slope(psd, 1 / 60, 1 / 6)) == pytest.approx(1.0, abs=0.25)


def test_hann_window_keeps_variance_on_average():
    rng = np.random.default_rng(4)
    values = rng.normal(size=(20, 64, 64))
    psd = radial_psd(values, truncate=False, average_dims=...)
    assert float(psd.sum() * psd.attrs["dk"]) == pytest.approx(1.0, rel=0.03)


def test_plane_wave_peaks_at_its_wavelength():
    y, x = np.meshgrid(np.arange(64), np.arange(64), indexing="ij")
    wave = np.cos(2 * np.pi * (x * 3 + y * 4) / 64)  # |k| = 5 / 64: wavelength 12.8 cells
    psd = radial_psd(wave, dx_km=2.0, window=None)
    assert float(psd.wavelength[psd.argmax("wavenumber")]) == pytest.approx(2.0 * 64 / 5)
    # |k| = sqrt(34) / 64 = 5.83 dk belongs to the annulus centred on 6 dk, not 5 dk
    off_grid = np.cos(2 * np.pi * (x * 3 + y * 5) / 64)
    psd = radial_psd(off_grid, window=None)
    assert float(psd.wavenumber[psd.argmax("wavenumber")]) == pytest.approx(6 / 64)


def test_leading_dims_are_kept_and_dask_works():
    rng = np.random.default_rng(5)
    da = xr.DataArray(rng.normal(size=(3, 2, 32, 32)), dims=("member", "time", "y", "x"))
    psd = radial_psd(da)
    assert psd.dims == ("member", "time", "wavenumber")
    lazy = radial_psd(da.chunk({"member": 1}))
    np.testing.assert_allclose(lazy.values, psd.values)
    averaged = radial_psd(da, average_dims=["member"])
    np.testing.assert_allclose(averaged.values, psd.mean("member").values)


def test_log_ratio_of_sine_waves_is_their_power_ratio():
    # one zonal wave per octave band on a periodic 128 x 128 grid: m cycles per domain put all
    # of a wave's variance A^2 / 2 in wavenumber bin m (wavelength 128 / m cells), so the band
    # log ratio is log10 of the squared amplitude ratio (m = 33 and 31: either side of the band
    # edge at 4 cells)
    bands = octave_bands(2.0, 64.0)
    np.testing.assert_allclose(bands, [(2, 4), (4, 8), (8, 16), (16, 32), (32, 64)])
    cycles = [33, 31, 11, 5, 3]  # one per band, in order
    gains = np.array([0.5, 3.0, 1.0, 0.1, 2.0])  # the forecast's amplitude over the truth's
    phases = [0.3, 1.1, 2.0, 0.7, 1.6]
    x = np.arange(128)
    waves = [
        np.broadcast_to(np.sin(2 * np.pi * m * x / 128 + phase), (2, 128, 128))
        for m, phase in zip(cycles, phases, strict=True)
    ]
    truth = as_field(sum(waves))
    forecast = as_field(sum(g * w for g, w in zip(gains, waves, strict=True)))
    psd_truth = radial_psd(truth, window=None, average_dims="time")
    psd_forecast = radial_psd(forecast, window=None, average_dims="time")
    # each wave's variance 1/2 in its own bin, nothing elsewhere (Parseval: the sum holds it all)
    dk = psd_truth.attrs["dk"]
    expected = np.zeros(psd_truth.sizes["wavenumber"])
    expected[np.array(cycles) - 1] = 0.5 / dk  # bin n at wavenumber n dk, n = 1, 2, ...
    np.testing.assert_allclose(psd_truth.values, expected, atol=1e-9 / dk)
    wavelengths = psd_truth.wavelength.values[np.array(cycles) - 1]
    np.testing.assert_allclose(wavelengths, 128 / np.array(cycles))
    assert float(psd_truth.sum()) * dk == pytest.approx(len(cycles) / 2, rel=1e-9)
    ratio = spectral_log_ratio(psd_forecast, psd_truth, bands)
    np.testing.assert_allclose(ratio.values, 2 * np.log10(gains), atol=1e-9)
    np.testing.assert_allclose(ratio.wavelength_min, [2, 4, 8, 16, 32])
    largest = spectral_log_ratio_max(
        forecast, truth, min_wavelength=2, max_wavelength=64, window=None
    )
    assert largest == pytest.approx(2.0, abs=1e-9)  # the band at a tenth of the amplitude


def test_smoothing_shows_as_missing_energy_at_short_wavelengths():
    rng = np.random.default_rng(7)
    values = power_law_field(rng, -5.0 / 3.0, 128, 128, count=3)
    smooth = ndimage.gaussian_filter(values, sigma=(0, 2, 2), mode="wrap")
    psd_truth = radial_psd(as_field(values), average_dims="time")
    psd_smooth = radial_psd(as_field(smooth), average_dims="time")
    ratio = spectral_log_ratio(psd_smooth, psd_truth, octave_bands(2.0, 64.0))
    short, long = ratio.values[:2], ratio.values[-1]
    assert (short < -1.0).all()  # more than 10x too little energy below 8 cells
    assert abs(long) < 0.1  # Gaussian sigma=2 barely touches 32-64 cells
    assert np.all(np.diff(ratio.values) > 0)  # the deficit grows towards short waves
    worst = spectral_log_ratio_max(
        as_field(smooth), as_field(values), min_wavelength=2.0, max_wavelength=8.0
    )
    assert worst == pytest.approx(float(-ratio.values[0]), rel=1e-9)


def test_spectral_log_ratio_in_km_and_empty_band():
    rng = np.random.default_rng(8)
    values = rng.normal(size=(32, 32))
    psd = radial_psd(values, dx_km=2.5)
    ratio = spectral_log_ratio(2 * psd, psd, [(5.0, 20.0), (1.0, 2.0)])
    assert float(ratio[0]) == pytest.approx(np.log10(2.0))
    assert np.isnan(float(ratio[1]))


def test_zonal_psd_parseval_and_latitude_weighting():
    rng = np.random.default_rng(9)
    lat = np.array([-60.0, 0.0, 30.0, 60.0])
    lon = np.arange(0, 360, 5.0)
    values = rng.normal(size=(lat.size, lon.size)) * np.array([1.0, 2.0, 3.0, 4.0])[:, None]
    lat2d, _ = np.meshgrid(lat, lon, indexing="ij")
    da = xr.DataArray(values, dims=("y", "x"), coords={"lat": (("y", "x"), lat2d)})
    psd = zonal_psd(da)
    assert psd.dims == ("wavenumber",)
    np.testing.assert_array_equal(psd.zonal_wavenumber, np.arange(1, 37))
    w = np.cos(np.deg2rad(lat))
    expected = (values.var(axis=1) * w).sum() / w.sum()
    assert float(psd.sum() * psd.attrs["dk"]) == pytest.approx(expected, rel=1e-10)
    unweighted = zonal_psd(values)  # numpy: no latitude, rows count equally
    assert float(unweighted.sum() * unweighted.attrs["dk"]) == pytest.approx(
        values.var(axis=1).mean(), rel=1e-10
    )


def test_zonal_psd_finds_zonal_wavenumber():
    lon = np.arange(0, 360, 2.5)
    values = np.cos(np.deg2rad(lon) * 7)[None, :] * np.ones((5, 1))
    psd = zonal_psd(values, dx_km=40_000 / lon.size, lat=np.linspace(-60, 60, 5))
    assert int(psd.zonal_wavenumber[psd.argmax("wavenumber")]) == 7
    assert float(psd.wavelength[psd.argmax("wavenumber")]) == pytest.approx(40_000 / 7)


def test_octave_bands():
    assert octave_bands(2.0, 8.0) == [(2.0, 4.0), (4.0, 8.0)]
    bands = octave_bands(2.0, 10.0)  # not a power of two: 3 equal log-width bands
    assert len(bands) == 3 and bands[0][0] == 2.0 and bands[-1][1] == pytest.approx(10.0)
    assert len(octave_bands(2.0, 8.0, bands_per_octave=2)) == 4
    with pytest.raises(ValueError):
        octave_bands(8.0, 2.0)


def test_linear_detrend_removes_a_large_scale_gradient():
    rng = np.random.default_rng(10)
    noise = rng.normal(size=(48, 64))
    y, x = np.meshgrid(np.arange(48), np.arange(64), indexing="ij")
    ramp = noise + 0.5 * x - 0.2 * y  # e.g. temperature across a mountain range
    plane_free = radial_psd(ramp, detrend="linear")
    np.testing.assert_allclose(plane_free, radial_psd(noise, detrend="linear"), rtol=1e-8)
    leaky = radial_psd(ramp, detrend="constant")
    assert float(leaky[0]) > 100 * float(plane_free[0])

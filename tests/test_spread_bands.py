"""Spread and skill by wavelength (finescale.verify.bands.spread_error_power /
spread_skill_by_band)."""

import numpy as np
import pytest

from finescale.verify.bands import octave_bands, spread_error_power, spread_skill_by_band
from finescale.verify.spectra import radial_psd

N, M, T = 64, 8, 24
BANDS = octave_bands(2.0, 32.0)  # grid lengths: 2-4, 4-8, 8-16, 16-32


def _wavelength() -> np.ndarray:
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(N), np.fft.fftfreq(N), indexing="ij"))
    with np.errstate(divide="ignore"):
        return 1.0 / k


def _fields(
    rng: np.random.Generator, shape: tuple[int, ...], damp_below: float | None = None
) -> np.ndarray:
    """Gaussian random fields with a red spectrum (amplitude ~ wavelength^0.5), their Fourier
    amplitudes multiplied by 0.3 at wavelengths below ``damp_below`` grid lengths."""
    wavelength = _wavelength()
    filt = np.where(np.isfinite(wavelength), np.sqrt(np.minimum(wavelength, N)), 0.0)
    if damp_below is not None:
        filt = np.where(wavelength < damp_below, 0.3 * filt, filt)
    white = rng.standard_normal((*shape, N, N))
    return np.fft.ifft2(np.fft.fft2(white) * filt).real


def _ratios(members: np.ndarray, truth: np.ndarray) -> np.ndarray:
    template = radial_psd(np.zeros((N, N)))
    variance, error, times = spread_error_power(members, truth, lambda f: radial_psd(f).values)
    assert times == T
    return spread_skill_by_band(
        template.copy(data=variance), template.copy(data=error), BANDS, M
    ).values


def test_exchangeable_members_have_ratio_one_at_every_scale():
    rng = np.random.default_rng(0)
    signal = _fields(rng, (T,))  # what the LR input fixes: shared by members and truth
    truth = signal + _fields(rng, (T,))
    members = signal + _fields(rng, (M, T))
    ratios = _ratios(members, truth)
    # the short bands hold thousands of modes: 1 within 0.03 (without the (M+1)/M factor: 0.94);
    # the longest holds a few dozen per time, hence the wider bound
    # (measured 1.003 1.002 0.989 0.937)
    np.testing.assert_allclose(ratios[:2], 1.0, atol=0.03)
    np.testing.assert_allclose(ratios[2:], 1.0, atol=0.12)


def test_damped_small_scales_show_in_their_bands_only():
    rng = np.random.default_rng(1)
    signal = _fields(rng, (T,))
    truth = signal + _fields(rng, (T,))
    members = signal + _fields(rng, (M, T), damp_below=7.0)
    ratios = _ratios(members, truth)
    # expected in the damped band: 0.3 * sqrt((M+1)/M / (1 + 0.09/M)) = 0.32
    assert ratios[0] == pytest.approx(0.32, abs=0.03), ratios  # measured 0.319
    assert ratios[1] < 0.9, ratios  # partly damped: wavelengths 4-7 of 4-8
    np.testing.assert_allclose(ratios[2:], 1.0, atol=0.15)


def test_one_member_has_no_spread_spectrum():
    with pytest.raises(ValueError, match="two members"):
        spread_error_power(np.zeros((1, 2, 8, 8)), np.zeros((2, 8, 8)), lambda f: f)

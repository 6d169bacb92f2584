"""polar_filter: zonal Fourier truncation poleward of lat0 on a global lat-lon grid."""

import numpy as np
import pytest

from finescale.data.grids import GridError, polar_filter

# NCEP-like global 2.5 degree grid: north to south, both poles, 144 longitudes
LAT = np.linspace(90.0, -90.0, 73)
LON = np.arange(144) * 2.5


def noise(shape=(3, 73, 144), dtype=np.float64, seed=0):
    return np.random.default_rng(seed).normal(5.0, 10.0, size=shape).astype(dtype)


def zonal_wave(m, row_lat=LAT):
    """cos(m * lon) on every row, (ny, nx)."""
    return np.broadcast_to(np.cos(m * np.deg2rad(LON)), (row_lat.size, LON.size)).copy()


def test_pole_rows_become_constant():
    values = noise()
    pole = np.abs(LAT) == 90.0
    assert np.all(np.ptp(values[..., pole, :], axis=-1) > 1.0)
    filtered = polar_filter(values, LAT)
    assert np.all(np.ptp(filtered[..., pole, :], axis=-1) == 0.0)


def test_rows_equatorward_of_lat0_are_unchanged_bit_for_bit():
    values = noise()
    filtered = polar_filter(values, LAT, lat0=60.0)
    equatorward = np.abs(LAT) <= 60.0
    assert np.array_equal(filtered[..., equatorward, :], values[..., equatorward, :])
    # every poleward row of white noise loses something
    assert np.all(np.abs(filtered[..., ~equatorward, :] - values[..., ~equatorward, :]).max(-1) > 0)


def test_at_80_degrees_wave_3_survives_and_wave_40_is_removed():
    row = np.flatnonzero(LAT == 80.0)[0]
    wave3 = polar_filter(zonal_wave(3), LAT)
    np.testing.assert_allclose(wave3[row], zonal_wave(3)[row], atol=1e-12)
    wave40 = polar_filter(zonal_wave(40), LAT)
    np.testing.assert_allclose(wave40[row], 0.0, atol=1e-12)
    # the cut-off itself: floor(72 * cos 80 / cos 60) = 25 is kept there, 26 is not
    assert np.abs(polar_filter(zonal_wave(25), LAT)[row]).max() > 0.99
    assert np.abs(polar_filter(zonal_wave(26), LAT)[row]).max() < 1e-12


def test_zonal_mean_of_every_row_is_preserved():
    values = noise()
    filtered = polar_filter(values, LAT)
    np.testing.assert_allclose(filtered.mean(-1), values.mean(-1), rtol=0, atol=1e-12)


def test_float32_in_float32_out():
    values = noise(dtype=np.float32)
    filtered = polar_filter(values, LAT)
    assert filtered.dtype == np.float32
    np.testing.assert_allclose(filtered.mean(-1), values.mean(-1), atol=1e-5)


def test_two_dimensional_lat_gives_the_same_result():
    values = noise()
    lat2 = np.broadcast_to(LAT[:, None], (73, 144))
    assert np.array_equal(polar_filter(values, lat2), polar_filter(values, LAT))


def test_input_is_not_modified():
    values = noise()
    before = values.copy()
    polar_filter(values, LAT)
    assert np.array_equal(values, before)


@pytest.mark.parametrize(
    ("lat", "lat0", "match"),
    [
        (LAT[:-1], 60.0, r"lat of shape \(73,\) or \(73, 144\).*got \(72,\)"),
        (LAT * 1.1, 60.0, r"\[-90, 90\]"),
        (LAT, 90.0, r"lat0 must be in \[0, 90\)"),
    ],
)
def test_bad_input_says_what_is_wrong(lat, lat0, match):
    with pytest.raises(GridError, match=match):
        polar_filter(noise(), lat, lat0=lat0)


def test_keep_1_keeps_a_wave_1_on_the_pole_rows_and_nothing_finer():
    pole = np.flatnonzero(np.abs(LAT) == 90.0)
    # a wind of 10 m/s across the north pole: u = -10 sin(lon - 30 deg) along the pole row
    wave1 = np.broadcast_to(-10.0 * np.sin(np.deg2rad(LON - 30.0)), (LAT.size, LON.size)).copy()
    np.testing.assert_allclose(polar_filter(wave1, LAT, keep=1)[pole], wave1[pole], atol=1e-12)
    # keep=0 (a scalar) flattens the same row to its zonal mean, 0
    np.testing.assert_allclose(polar_filter(wave1, LAT, keep=0)[pole], 0.0, atol=1e-12)
    # wave 2 is beyond keep=1 and beyond what the pole rows resolve: removed
    np.testing.assert_allclose(polar_filter(zonal_wave(2), LAT, keep=1)[pole], 0.0, atol=1e-12)


def test_keep_1_on_noise_leaves_pole_rows_exactly_mean_plus_wave_1():
    values = noise()
    filtered = polar_filter(values, LAT, keep=1)
    pole = np.abs(LAT) == 90.0
    spectrum = np.fft.rfft(filtered[..., pole, :], axis=-1)
    assert np.abs(spectrum[..., 2:]).max() < 1e-9
    expected = np.fft.rfft(values[..., pole, :], axis=-1)[..., :2]
    np.testing.assert_allclose(spectrum[..., :2], expected, atol=1e-9)
    # rows where the grid's own cut-off is above 1 are untouched by keep
    assert np.array_equal(filtered[..., ~pole, :], polar_filter(values, LAT)[..., ~pole, :])


def test_keep_0_is_the_default_and_a_bad_keep_is_refused():
    values = noise()
    assert np.array_equal(polar_filter(values, LAT, keep=0), polar_filter(values, LAT))
    for bad in (-1, 1.5, True):
        with pytest.raises(GridError, match="keep"):
            polar_filter(values, LAT, keep=bad)

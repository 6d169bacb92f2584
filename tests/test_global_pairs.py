"""Global and dateline/Greenwich-crossing LR/HR pairs: longitude compared on the circle."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from finescale.config import AlignmentConfig
from finescale.data.alignment import MisalignedError, check_alignment, check_covers

T = np.datetime64("2020-01-01T00") + np.arange(12) * np.timedelta64(6, "h")


def field(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """(time, y, x) waves that are periodic in longitude, plus a pole-to-pole gradient (K)."""
    t = np.arange(T.size)[:, None, None]
    la, lo = np.deg2rad(lat), np.deg2rad(lon)
    return 280.0 + 20.0 * np.cos(la) + 5.0 * np.sin(3 * lo + 2 * la + 0.6 * t) * np.cos(la)


def grid(lat: np.ndarray, lon: np.ndarray) -> xr.Dataset:
    """A dataset as the data layer gives it: t2m(time, y, x) with lat/lon(y, x) in degrees."""
    lat2, lon2 = np.meshgrid(lat, lon, indexing="ij")
    return xr.Dataset(
        {"t2m": (("time", "y", "x"), field(lat2, lon2), {"units": "K"})},
        coords={"time": T, "lat": (("y", "x"), lat2), "lon": (("y", "x"), lon2)},
    )


def node_pair(lr_lon0: float = 0.0) -> tuple[xr.Dataset, xr.Dataset]:
    """HR 2.5° (73 x 144, both poles, 0..357.5) and LR 10° (19 x 36) with LR longitudes from
    ``lr_lon0`` (0: 0..350, -180: -180..170)."""
    hr = grid(np.linspace(-90, 90, 73), np.arange(144) * 2.5)
    lr = grid(np.linspace(-90, 90, 19), lr_lon0 + np.arange(36) * 10.0)
    return lr, hr


@pytest.mark.parametrize("lr_lon0", [0.0, -180.0])
def test_a_global_node_pair_is_accepted_with_default_settings(lr_lon0):
    lr, hr = node_pair(lr_lon0)
    report = check_alignment(lr, hr, AlignmentConfig())
    assert report.method == "nodes" and report.ratio == 4
    assert report.lr_periodic and report.hr_periodic
    # pole-inclusive cells end at the poles
    assert report.lr_extent[:2] == (-90.0, 90.0) and report.hr_extent[:2] == (-90.0, 90.0)
    # LR values are HR values at the LR points: a perfect match
    assert report.variables["t2m"].correlation == pytest.approx(1.0)
    assert report.variables["t2m"].rmse == pytest.approx(0.0, abs=1e-9)
    check_covers(lr, hr, 0.0)


def test_a_global_node_pair_shifted_by_half_an_hr_cell_is_refused():
    lr, hr = node_pair()
    lr = lr.assign_coords(lon=lr["lon"] + 1.25)  # LR points between HR points: not nested
    with pytest.raises(MisalignedError, match="not 4 times the LR grid"):
        check_alignment(lr, hr, AlignmentConfig())


def test_a_global_cell_pair_is_accepted():
    hr_lat = -90 + 0.625 + np.arange(144) * 1.25
    hr = grid(hr_lat, 0.625 + np.arange(288) * 1.25)
    lr = grid(-90 + 2.5 + np.arange(36) * 5.0, 2.5 + np.arange(72) * 5.0)
    lr["t2m"] = hr["t2m"].coarsen(y=4, x=4).mean().variable  # LR = HR block means
    report = check_alignment(lr, hr, AlignmentConfig())
    assert report.method == "coarsen" and report.lr_periodic and report.hr_periodic
    assert report.variables["t2m"].correlation == pytest.approx(1.0)


def greenwich_pair(lr_west: float) -> tuple[xr.Dataset, xr.Dataset]:
    """HR 0.25° over 20W..20E stored -180..180; LR 1° from ``lr_west`` stored 0..360."""
    hr = grid(40 + 0.125 + np.arange(40) * 0.25, -20 + 0.125 + np.arange(160) * 0.25)
    lr_lon = (lr_west + 0.5 + np.arange(40)) % 360.0
    lr = grid(40.5 + np.arange(10), lr_lon)
    return lr, hr


def test_a_regional_pair_across_greenwich_in_two_conventions_is_accepted():
    lr, hr = greenwich_pair(-20.0)
    assert float(lr["lon"].max()) > 300 and float(hr["lon"].min()) < 0
    for cfg in (AlignmentConfig(), AlignmentConfig(require_integer_ratio=False)):
        report = check_alignment(lr, hr, cfg)
        assert not report.lr_periodic and not report.hr_periodic
        assert report.variables["t2m"].correlation > 0.9
    check_covers(lr, hr, 0.0)


def test_a_regional_lr_that_does_not_cover_hr_is_refused():
    lr, hr = greenwich_pair(-10.0)  # LR 10W..30E, HR 20W..20E
    with pytest.raises(MisalignedError, match="cover different domains"):
        check_alignment(lr, hr, AlignmentConfig())
    with pytest.raises(MisalignedError, match="HR domain is not inside the LR domain"):
        check_alignment(lr, hr, AlignmentConfig(require_integer_ratio=False))
    with pytest.raises(MisalignedError, match="not inside the LR domain"):
        check_covers(lr, hr, 0.0)


def test_a_global_lr_covers_a_regional_hr_across_the_dateline():
    lr, _ = node_pair()
    hr = grid(np.linspace(-10, 10, 9), (170 + np.arange(9) * 2.5 + 180) % 360 - 180)
    check_covers(lr, hr, 0.0)


def test_a_non_integer_ratio_is_still_refused():
    hr = grid(np.arange(-90, 90.1, 0.7)[:200], np.arange(0, 360, 0.7)[:400])
    lr = grid(np.linspace(-90, 90, 73), np.arange(144) * 2.5)
    with pytest.raises(MisalignedError, match="not one whole number"):
        check_alignment(lr, hr, AlignmentConfig())


def test_a_regional_node_pair_is_compared_at_the_lr_points():
    # 41 x 81 HR points at 0.25° and every 4th one (11 x 21) as LR: nested as points
    hr = grid(40 + np.arange(41) * 0.25, 350 + np.arange(81) * 0.25)
    lr = grid(40 + np.arange(11) * 1.0, 350 + np.arange(21) * 1.0)
    report = check_alignment(lr, hr, AlignmentConfig())
    assert report.method == "nodes" and not report.hr_periodic
    assert report.variables["t2m"].rmse == pytest.approx(0.0, abs=1e-9)
    # the same LR values one LR column east of their coordinates are named as such
    shifted = lr.copy()
    shifted["t2m"] = lr["t2m"].roll(x=1)
    with pytest.raises(MisalignedError, match="shifted east by 1 LR cell"):
        check_alignment(shifted, hr, AlignmentConfig())

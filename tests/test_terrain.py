"""The terrain's slope on any lat/lon grid."""

from __future__ import annotations

import numpy as np
import pytest

from finescale.data.terrain import EARTH_RADIUS_M, terrain_slope


def plane(lat: np.ndarray, lon: np.ndarray, east: float, north: float) -> np.ndarray:
    """Heights (m) rising ``east`` m per m eastward and ``north`` m per m northward of 46 N 10 E
    (locally a plane: distances along the sphere near the point)."""
    x = EARTH_RADIUS_M * np.cos(np.deg2rad(46.0)) * np.deg2rad(lon - 10.0)
    y = EARTH_RADIUS_M * np.deg2rad(lat - 46.0)
    return 500.0 + east * x + north * y


@pytest.mark.parametrize("rotate", [0.0, 30.0, 180.0])
def test_a_planes_slope_on_any_grid_orientation(rotate):
    """A regular grid, one rotated by 30 degrees and one running north to south, west to east
    reversed: the same east/north gradient."""
    j, i = np.meshgrid(np.arange(-10, 11), np.arange(-12, 13), indexing="ij")
    a = np.deg2rad(rotate)
    step = 0.01  # degrees, about 1 km
    lat = 46.0 + step * (j * np.cos(a) + i * np.sin(a))
    lon = 10.0 + step * (i * np.cos(a) - j * np.sin(a)) / np.cos(np.deg2rad(46.0))
    slope = terrain_slope(plane(lat, lon, 0.02, -0.05), lat, lon)
    centre = slope[:, 10, 12]
    np.testing.assert_allclose(centre, [0.02, -0.05], rtol=2e-3)
    np.testing.assert_allclose(slope[0], 0.02, rtol=0.02)  # everywhere, edges included
    np.testing.assert_allclose(slope[1], -0.05, rtol=0.02)


@pytest.mark.parametrize("rotate", [0.0, 90.0])
def test_a_grid_across_the_date_line(rotate):
    """Longitudes wrapped to [-180, 180) jump by 360 degrees inside the grid, along its columns
    (a regular grid) or its rows (one turned by 90 degrees): the slope does not see the jump."""
    j, i = np.meshgrid(np.arange(-10, 11), np.arange(-12, 13), indexing="ij")
    a = np.deg2rad(rotate)
    lat = 46.0 + 0.01 * (j * np.cos(a) + i * np.sin(a))
    east = 0.01 * (i * np.cos(a) - j * np.sin(a)) / np.cos(np.deg2rad(46.0))
    heights = plane(lat, 10.0 + east, 0.02, -0.05)  # the same plane, moved to 180 E below
    lon = (180.0 + east + 180.0) % 360.0 - 180.0
    slope = terrain_slope(heights, lat, lon)
    np.testing.assert_allclose(slope[0], 0.02, rtol=0.02)
    np.testing.assert_allclose(slope[1], -0.05, rtol=0.02)


def test_a_grid_without_area_is_refused():
    lat = np.full((4, 5), 46.0)
    lon = np.tile(np.linspace(9.0, 11.0, 5), (4, 1))
    with pytest.raises(ValueError, match="span an area"):
        terrain_slope(np.zeros((4, 5)), lat, lon)

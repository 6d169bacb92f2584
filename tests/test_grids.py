"""Grids: conservative coarsening, interpolation on regular and curvilinear grids, spacing."""

import dask.array
import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from finescale.data.grids import GridError, coarsen, grid_spacing, refine_lat_lon
from finescale.data.regrid import interpolate

DIMS = ("y", "x")


def regular_grid(ny=20, nx=50, lat0=40.0, lon0=0.0, step=0.5):
    lat, lon = np.meshgrid(lat0 + step * np.arange(ny), lon0 + step * np.arange(nx), indexing="ij")
    return xr.DataArray(lat, dims=DIMS), xr.DataArray(lon, dims=DIMS)


def rotated_grid(ny=20, nx=50, angle_deg=20.0, step=0.1):
    """A curvilinear grid: grid lines turned by ``angle_deg``, east-west steps widened by
    1/cos(lat) as on a projection, plus a slight bend."""
    row, col = np.meshgrid(np.arange(ny, dtype=float), np.arange(nx, dtype=float), indexing="ij")
    a = np.deg2rad(angle_deg)
    lat = 45.0 + step * (row * np.cos(a) + col * np.sin(a)) + 5e-5 * row * col
    lon = 8.0 + step * (col * np.cos(a) - row * np.sin(a)) / np.cos(np.deg2rad(lat))
    return xr.DataArray(lat, dims=DIMS), xr.DataArray(lon, dims=DIMS)


def field(values, lat, lon, **leading):
    """DataArray of ``values`` (..., y, x) on the grid lat/lon, leading dims named in order."""
    dims = (*leading, *DIMS)
    return xr.DataArray(
        values,
        dims=dims,
        coords={"lat": lat, "lon": lon, **leading},
        attrs={"units": "K"},
        name="t2m",
    )


def linear(lat, lon):
    return 2.0 * lat - 3.0 * lon + 5.0


def smooth(lat, lon):
    return np.sin(np.deg2rad(lat) * 30.0) * np.cos(np.deg2rad(lon) * 20.0)


def interior(da, margin):
    return da.isel(y=slice(margin, -margin), x=slice(margin, -margin))


# --------------------------------------------------------------------------------------------
# coarsen


def test_coarsen_constant_gives_constant_and_block_mean_coords():
    lat, lon = regular_grid(8, 12)
    da = field(np.full((3, 8, 12), 7.5), lat, lon, time=[0, 1, 2])
    out = coarsen(da, 4)
    assert out.dims == ("time", "y", "x") and out.shape == (3, 2, 3)
    np.testing.assert_array_equal(out.values, 7.5)
    np.testing.assert_allclose(out.lat[:, 0], [40.75, 42.75])
    np.testing.assert_allclose(out.lon[0], [0.75, 2.75, 4.75])
    assert out.attrs == {"units": "K"} and out.name == "t2m"


def test_weighted_coarsen_preserves_weighted_integral():
    lat, lon = regular_grid(12, 18, lat0=30.0, step=2.0)
    rng = np.random.default_rng(0)
    da = field(rng.normal(280.0, 5.0, (2, 12, 18)), lat, lon, time=[0, 1])
    area = np.cos(np.deg2rad(lat))
    out = coarsen(da, 3, weights=area)
    coarse_area = area.coarsen(y=3, x=3).sum()
    np.testing.assert_allclose(
        (out * coarse_area.values).sum(DIMS), (da * area.values).sum(DIMS), rtol=1e-13
    )
    plain = coarsen(da, 3)
    assert not np.allclose(out.values, plain.values)  # the weights did something


def test_coarsen_stays_lazy_on_dask_and_propagates_nan():
    lat, lon = regular_grid(4, 6)
    values = np.ones((2, 4, 6))
    values[1, 0, 5] = np.nan
    da = field(values, lat, lon, time=[0, 1]).chunk(time=1)
    out = coarsen(da, 2, weights=xr.ones_like(lat))
    assert isinstance(out.data, dask.array.Array)
    result = out.values
    assert np.isnan(result[1, 0, 2]) and np.isnan(result).sum() == 1
    assert np.isnan(coarsen(da, 2).values).sum() == 1


def test_coarsen_size_not_multiple_names_dim_size_and_factor():
    lat, lon = regular_grid(8, 10)
    with pytest.raises(GridError, match=r"'x'.*10.*4") as err:
        coarsen(field(np.zeros((8, 10)), lat, lon), 4)
    assert isinstance(err.value, ValueError)


def test_coarsen_longitude_across_the_seam():
    lon = xr.DataArray([[178.0, -177.0, -172.0, -167.0]] * 2, dims=DIMS)
    out = coarsen(xr.DataArray(np.zeros((2, 4)), dims=DIMS, coords={"lon": lon}), 2)
    np.testing.assert_allclose(out.lon.values, [[-179.5, -169.5]])


@settings(max_examples=30, deadline=None)
@given(
    value=st.floats(-1e6, 1e6),
    factor=st.integers(1, 4),
    blocks=st.tuples(st.integers(1, 4), st.integers(1, 4)),
)
def test_property_coarsen_constant_is_constant(value, factor, blocks):
    shape = (blocks[0] * factor, blocks[1] * factor)
    out = coarsen(xr.DataArray(np.full(shape, value), dims=DIMS), factor)
    np.testing.assert_allclose(out.values, value, rtol=1e-12, atol=1e-9)


@settings(max_examples=30, deadline=None)
@given(
    coarse=arrays(
        np.float64, st.tuples(st.integers(1, 5), st.integers(1, 5)), elements=st.floats(-1e6, 1e6)
    ),
    factor=st.integers(1, 4),
)
def test_property_coarsen_of_block_repeat_is_identity(coarse, factor):
    fine = np.repeat(np.repeat(coarse, factor, axis=0), factor, axis=1)
    out = coarsen(xr.DataArray(fine, dims=DIMS), factor)
    np.testing.assert_allclose(out.values, coarse, rtol=1e-12, atol=1e-9)


# --------------------------------------------------------------------------------------------
# geometry


def test_grid_spacing_regular_and_rotated():
    assert grid_spacing(*regular_grid(step=0.25)) == (0.25, 0.25)
    lat = xr.DataArray(np.arange(45.0, 48.0, 0.5)[:, None] * np.ones(4), dims=DIMS)
    lon = xr.DataArray(np.array([179.0, 179.5, -180.0, -179.5]) * np.ones((6, 1)), dims=DIMS)
    assert grid_spacing(lat, lon) == (0.5, 0.5)  # across the seam
    dy, dx = grid_spacing(*rotated_grid(step=0.1))
    assert 0.1 < dy < 0.12 and 0.1 < dx < 0.16


def test_refine_then_coarsen_gives_back_the_coordinates():
    lat, lon = regular_grid(5, 7, lon0=-1.0)
    fine_lat, fine_lon = refine_lat_lon(lat, lon, 4)
    assert fine_lat.shape == (20, 28)
    np.testing.assert_allclose(fine_lat[:4, 0], 40.0 + 0.5 * (np.arange(4) + 0.5) / 4 - 0.25)
    back = coarsen(
        xr.DataArray(np.zeros((20, 28)), dims=DIMS, coords={"lat": fine_lat, "lon": fine_lon}), 4
    )
    np.testing.assert_allclose(back.lat, lat, atol=1e-12)
    np.testing.assert_allclose(back.lon, lon, atol=1e-12)


# --------------------------------------------------------------------------------------------
# interpolation


def test_bilinear_reproduces_linear_field_on_regular_grid():
    lat, lon = regular_grid()
    da = field(np.stack([linear(lat, lon), 2 * linear(lat, lon)]), lat, lon, time=[0, 1])
    fine_lat, fine_lon = refine_lat_lon(lat, lon, 4)
    out = interpolate(da, fine_lat, fine_lon)
    assert out.dims == ("time", "y", "x") and out.shape == (2, 80, 200)
    assert out.attrs == {"units": "K"} and list(out.time.values) == [0, 1]
    np.testing.assert_array_equal(out.lat, fine_lat)
    expected = linear(fine_lat, fine_lon)
    np.testing.assert_allclose(interior(out[0], 2), interior(expected, 2), rtol=0, atol=1e-11)
    np.testing.assert_allclose(interior(out[1], 2), 2 * interior(expected, 2), rtol=0, atol=1e-11)


def test_targets_beyond_the_source_centres_take_the_edge_value():
    lat, lon = regular_grid(4, 5)  # lat 40..41.5, lon 0..2
    da = field(linear(lat, lon), lat, lon)
    target_lat = xr.DataArray([[39.0, 39.0, 45.0]], dims=DIMS)
    target_lon = xr.DataArray([[1.25, -3.0, 9.0]], dims=DIMS)
    for method in ("bilinear", "bicubic"):
        out = interpolate(da, target_lat, target_lon, method=method)
        np.testing.assert_allclose(
            out.values, [[linear(40.0, 1.25), linear(40.0, 0.0), linear(41.5, 2.0)]], atol=1e-12
        )


def test_bicubic_beats_bilinear_on_smooth_field():
    lat, lon = regular_grid(20, 30, step=1.0)
    da = field(smooth(lat, lon), lat, lon)
    fine_lat, fine_lon = refine_lat_lon(lat, lon, 5)
    truth = smooth(fine_lat, fine_lon)
    error = {
        (m, margin): float(
            abs(interior(interpolate(da, fine_lat, fine_lon, method=m) - truth, margin)).max()
        )
        for m in ("bilinear", "bicubic")
        for margin in (3, 10)  # fine cells: all inside the source centres / two cells in
    }
    assert error["bicubic", 3] < error["bilinear", 3] / 2
    assert error["bicubic", 10] < error["bilinear", 10] / 10


def test_curvilinear_source_matches_the_analytic_fields():
    lat, lon = rotated_grid()
    fine_lat, fine_lon = refine_lat_lon(lat, lon, 4)
    out = interpolate(field(linear(lat, lon), lat, lon), fine_lat, fine_lon)
    # bilinear in index space inverts the bilinear lat/lon map: exact for a linear field
    np.testing.assert_allclose(
        interior(out, 2), interior(linear(fine_lat, fine_lon), 2), rtol=0, atol=1e-10
    )
    truth = smooth(fine_lat, fine_lon)
    cubic = interpolate(field(smooth(lat, lon), lat, lon), fine_lat, fine_lon, method="bicubic")
    assert float(abs(interior(cubic - truth, 2)).max()) < 5e-4


def test_curvilinear_source_onto_regular_target():
    lat, lon = rotated_grid()
    target_lat, target_lon = regular_grid(10, 10, lat0=46.0, lon0=9.0, step=0.05)
    out = interpolate(field(smooth(lat, lon), lat, lon), target_lat, target_lon, method="bicubic")
    np.testing.assert_allclose(out, smooth(target_lat, target_lon), atol=1e-4)


def test_periodic_longitude_wraps():
    def planetary(lat, lon):
        return np.cos(np.deg2rad(lat)) * (
            np.cos(np.deg2rad(lon)) + 0.3 * np.sin(np.deg2rad(2 * lon))
        )

    lat, lon = regular_grid(13, 72, lat0=-30.0, step=5.0)  # lon 0..355
    da = field(planetary(lat, lon), lat, lon)
    target_lat = xr.DataArray([[10.0, 10.0, 10.0]], dims=DIMS)
    target_lon = xr.DataArray([[356.5, -1.0, 1.0]], dims=DIMS)
    truth = planetary(target_lat, target_lon).values
    wrapped = interpolate(da, target_lat, target_lon, method="bicubic", periodic_lon=True)
    np.testing.assert_allclose(wrapped, truth, atol=1e-6)
    linear_wrap = interpolate(da, target_lat, target_lon, periodic_lon=True)
    np.testing.assert_allclose(linear_wrap[0, 1], 0.2 * da[8, 71] + 0.8 * da[8, 0], rtol=1e-14)
    # without the wrap: edge value extension from the nearer end (lon 355 or lon 0)
    clamped = interpolate(da, target_lat, target_lon, method="bicubic")
    np.testing.assert_allclose(clamped[0, :2], [da[8, 71], da[8, 0]], rtol=1e-14)
    with pytest.raises(GridError, match="round the globe once"):
        interpolate(da.isel(x=slice(0, 30)), target_lat, target_lon, periodic_lon=True)


def test_interpolate_then_coarsen_stays_close():
    lat, lon = regular_grid(20, 50, step=0.5)
    da = field(smooth(lat, lon), lat, lon)
    fine_lat, fine_lon = refine_lat_lon(lat, lon, 4)
    back = coarsen(interpolate(da, fine_lat, fine_lon, method="bicubic"), 4)
    np.testing.assert_allclose(interior(back, 1), interior(da, 1), atol=5e-3)


def test_interpolate_many_times_lazily():
    lat, lon = regular_grid(20, 50)
    values = np.broadcast_to(smooth(lat, lon).values, (100, 20, 50))
    da = field(values, lat, lon, time=np.arange(100)).chunk(time=25)
    fine_lat, fine_lon = refine_lat_lon(lat, lon, 8)
    out = interpolate(da, fine_lat, fine_lon, method="bicubic")
    assert isinstance(out.data, dask.array.Array) and out.shape == (100, 160, 400)
    result = out.values
    np.testing.assert_array_equal(result[0], result[99])


def test_interpolate_rejects_unknown_method_and_missing_coords():
    lat, lon = regular_grid(4, 4)
    with pytest.raises(GridError, match="nearest"):
        interpolate(field(np.zeros((4, 4)), lat, lon), lat, lon, method="nearest")
    with pytest.raises(GridError, match="'lat' and 'lon'"):
        interpolate(xr.DataArray(np.zeros((4, 4)), dims=DIMS), lat, lon)

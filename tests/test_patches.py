"""Patches: LR on the HR grid as the data layer interpolates it, channel layout, patches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from finescale.config import ModelConfig
from finescale.data.channels import Layout, make_layout
from finescale.data.grids import is_global, refine_lat_lon
from finescale.data.lr_to_hr import LRToHR
from finescale.data.normalisation import NormStats, VariableStats
from finescale.data.patches import (
    PatchDataset,
    conditioning,
    domain_means,
    load_fields,
    time_features,
)
from finescale.data.regrid import interpolate, source_indices
from finescale.data.terrain import terrain_slope


def _grid(
    ny: int, nx: int, lat0: float = 44.0, lon0: float = 5.0, step: float = 0.4, rotate: float = 0.0
):
    j, i = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    a = np.deg2rad(rotate)
    lat = lat0 + step * (j * np.cos(a) + i * np.sin(a))
    lon = lon0 + step * (i * np.cos(a) - j * np.sin(a))
    return xr.DataArray(lat, dims=("y", "x")), xr.DataArray(lon, dims=("y", "x"))


def _cubic_convolution(
    values: np.ndarray, rows: np.ndarray, cols: np.ndarray, a: float = -0.75
) -> np.ndarray:
    """Keys' cubic convolution of values (..., h, w) at fractional (rows, cols) (H, W), written out.

    The kernel is 1 - (a + 3) d^2 + (a + 2) d^3 for |d| <= 1 and -4a + 8a d - 5a d^2 + a d^3 for
    1 < |d| < 2 (a = -0.75 in torch's bicubic); the 4 x 4 taps around each point beyond the grid
    take the edge cell (border padding).
    """

    def near(d: np.ndarray) -> np.ndarray:
        return 1 - (a + 3) * d**2 + (a + 2) * d**3

    def far(d: np.ndarray) -> np.ndarray:
        return -4 * a + 8 * a * d - 5 * a * d**2 + a * d**3

    def weights(t: np.ndarray) -> list[np.ndarray]:  # taps floor - 1 .. floor + 2 of fraction t
        return [far(1 + t), near(t), near(1 - t), far(2 - t)]

    h, w = values.shape[-2:]
    r0, c0 = np.floor(rows).astype(int), np.floor(cols).astype(int)
    wr, wc = weights(rows - r0), weights(cols - c0)
    out = np.zeros(values.shape[:-2] + rows.shape)
    for i in range(4):
        for j in range(4):
            taps = values[..., np.clip(r0 - 1 + i, 0, h - 1), np.clip(c0 - 1 + j, 0, w - 1)]
            out += wr[i] * wc[j] * taps
    return out


@pytest.mark.parametrize("rotate", [0.0, 15.0])
@pytest.mark.parametrize("method", ["bilinear", "bicubic"])
def test_lr_to_hr_matches_the_data_layer(rotate, method):
    lat, lon = _grid(10, 16, rotate=rotate)
    hr_lat, hr_lon = refine_lat_lon(lat, lon, 4)
    rng = np.random.default_rng(0)
    values = np.cumsum(np.cumsum(rng.standard_normal((2, 10, 16)), 1), 2)  # smooth-ish fields
    field = xr.DataArray(values, dims=("time", "y", "x"), coords={"lat": lat, "lon": lon})
    to_hr = LRToHR(lat, lon, hr_lat, hr_lon, method=method)
    ours = to_hr(torch.from_numpy(values).float()[:, None])[:, 0].numpy()
    if method == "bilinear":  # the same stencil: equal to float32 precision
        np.testing.assert_allclose(ours, interpolate(field, hr_lat, hr_lon).values, atol=1e-4)
    else:  # Keys' cubic convolution at the data layer's positions, to float32 precision (bilinear
        # is 1.8 off). Not the data layer's own bicubic: a cubic B-spline, another kernel (0.03
        # apart on average on a unit-variance field of 4-cell waves, up to 0.28)
        rows, cols = source_indices(lat, lon, hr_lat, hr_lon)
        reference = _cubic_convolution(values, rows, cols)
        np.testing.assert_allclose(ours, reference, atol=1e-4 * np.abs(values).max())
    window = (5, 7, 12, 20)
    np.testing.assert_allclose(
        to_hr(torch.from_numpy(values).float()[:, None], window)[:, 0].numpy(),
        ours[:, 5:17, 7:27],
        atol=1e-5,
    )


def test_periodic_longitude_wraps():
    lat, lon = np.meshgrid(np.linspace(-60, 60, 7), np.arange(0.0, 360.0, 30.0), indexing="ij")
    lat, lon = xr.DataArray(lat, dims=("y", "x")), xr.DataArray(lon, dims=("y", "x"))
    hr_lat, hr_lon = refine_lat_lon(lat, lon, 2)
    assert is_global(lon.values) and not is_global(lon.values[:, :6])
    field = torch.from_numpy(np.cos(np.deg2rad(lon.values)))[None, None].float()
    wrapped = LRToHR(lat, lon, hr_lat, hr_lon, periodic_lon=True)(field)[0, 0].numpy()
    clipped = LRToHR(lat, lon, hr_lat, hr_lon, periodic_lon=False)(field)[0, 0].numpy()
    # the first HR column (-7.5 deg) lies a quarter LR cell west of 0 deg, towards 330 deg
    expected = 0.75 * np.cos(0.0) + 0.25 * np.cos(np.deg2rad(330.0))
    np.testing.assert_allclose(wrapped[:, 0], expected, atol=1e-5)
    np.testing.assert_allclose(clipped[:, 0], 1.0, atol=1e-5)  # without wrapping: the edge value
    np.testing.assert_allclose(wrapped[:, 5], clipped[:, 5], atol=1e-5)  # inside: the same


def test_time_features():
    t = np.array(["2021-01-01T00", "2021-01-01T06", "2021-07-02T12"], dtype="datetime64[h]")
    f = time_features(t)
    np.testing.assert_allclose(f[0], [0, 1, 0, 1], atol=1e-6)
    np.testing.assert_allclose(f[1, :2], [1, 0], atol=1e-6)
    assert f[2, 3] < -0.99  # early July: day of year half round


def _dataset(tmp_path=None):
    lat, lon = _grid(4, 6)
    hr_lat, hr_lon = refine_lat_lon(lat, lon, 4)
    times = np.arange("2021-01-01T00", "2021-01-02T00", dtype="datetime64[h]")
    rng = np.random.default_rng(1)
    lr = xr.Dataset(
        {
            "t2m": (("time", "y", "x"), 280 + rng.standard_normal((24, 4, 6))),
            "q850": (("time", "y", "x"), rng.random((24, 4, 6))),
        },
        coords={"time": times, "lat": lat, "lon": lon},
    )
    hr = xr.Dataset(
        {"t2m": (("time", "y", "x"), 280 + rng.standard_normal((24, 16, 24)))},
        coords={"time": times, "lat": hr_lat, "lon": hr_lon},
    )
    static = xr.Dataset(
        {"orog": (("y", "x"), rng.random((16, 24)) * 1000)}, coords={"lat": hr_lat, "lon": hr_lon}
    )
    stats = NormStats(
        {
            "t2m": VariableStats(280.0, 1.0),
            "q850": VariableStats(0.5, 0.3),
            "orog": VariableStats(500, 300),
        }
    )
    return lr, hr, static, stats


def test_layout_from_config_and_errors():
    lr, hr, static, _ = _dataset()
    layout = make_layout(ModelConfig(), lr, hr, static)
    assert layout.lr_variables == ("t2m", "q850") and layout.target_variables == ("t2m",)
    assert layout.base_index == (0,) and layout.cond_channels == 2 + 1 + 8
    assert Layout.from_dict(layout.to_dict()) == layout
    with pytest.raises(ValueError, match="target_variables.*tp"):
        make_layout(ModelConfig(target_variables=["tp"]), lr, hr, static)


def test_patches_are_deterministic_and_consistent():
    lr, hr, static, stats = _dataset()
    layout = make_layout(ModelConfig(), lr, hr, static)
    fields = load_fields(layout, stats, lr, static, hr.lat, hr.lon, hr=hr)
    to_hr = LRToHR(lr.lat, lr.lon, hr.lat, hr.lon)
    patches = PatchDataset(fields, layout, to_hr, patch_size=8, length=10, seed=3)
    a, b = patches[4], PatchDataset(fields, layout, to_hr, patch_size=8, length=10, seed=3)[4]
    for key in a:
        torch.testing.assert_close(a[key], b[key])
    assert a["cond"].shape == (layout.cond_channels, 8, 8) and a["target"].shape == (1, 8, 8)
    torch.testing.assert_close(
        a["base"][0], a["cond"][0]
    )  # the residual's base is the interpolated t2m
    assert not torch.equal(patches[4]["target"], patches[5]["target"])
    # the whole-grid conditioning of time 0 equals the normalised, interpolated LR
    cond, _ = conditioning(fields, layout, to_hr, [0], (0, 0, 16, 24))
    expected = interpolate((lr.t2m[0] - 280.0), hr.lat, hr.lon).values
    np.testing.assert_allclose(cond[0, 0].numpy(), expected, atol=1e-4)
    assert cond.shape[1] == layout.cond_channels


def test_domain_means_are_the_whole_lr_grids_weighted_means_in_every_patch():
    lr, hr, static, stats = _dataset()
    lr["q850"][5, 1, 2] = np.nan  # a missing value is left out of the mean, not taken as 0
    layout = make_layout(
        ModelConfig(conditioning={"domain_means": ["q850", "t2m"]}), lr, hr, static
    )
    assert layout.features[-2:] == ("q850_domain_mean", "t2m_domain_mean")
    assert layout.cond_channels == 2 + 1 + 8 + 2
    assert Layout.from_dict(layout.to_dict()) == layout
    # a checkpoint's layout from before domain means: none
    old = {k: v for k, v in layout.to_dict().items() if k != "domain_means"}
    assert Layout.from_dict(old).domain_means == ()

    weights = np.cos(np.deg2rad(lr.lat.values))
    q = (lr.q850.values - 0.5) / 0.3
    present = np.isfinite(q)
    expected_q = np.nansum(q * weights, axis=(1, 2)) / np.sum(weights * present, axis=(1, 2))
    expected_t = ((lr.t2m.values - 280.0) * weights).sum(axis=(1, 2)) / weights.sum()

    fields = load_fields(layout, stats, lr, static, hr.lat, hr.lon, hr=hr)
    np.testing.assert_allclose(fields.means[:, 0].numpy(), expected_q, rtol=1e-5)
    np.testing.assert_allclose(fields.means[:, 1].numpy(), expected_t, rtol=1e-5, atol=1e-6)
    to_hr = LRToHR(lr.lat, lr.lon, hr.lat, hr.lon)
    cond, _ = conditioning(fields, layout, to_hr, [5, 7], (4, 8, 8, 8))
    for b, t in enumerate((5, 7)):
        for k, expected in enumerate((expected_q, expected_t)):
            channel = cond[b, -2 + k]
            assert torch.all(channel == channel[0, 0])  # constant over the window
            assert abs(float(channel[0, 0]) - expected[t]) < 1e-5
    # a training patch carries the same means as its time's whole-domain conditioning
    patch = PatchDataset(fields, layout, to_hr, patch_size=8, length=4, seed=0)[0]
    assert np.min(np.abs(float(patch["cond"][-1, 0, 0]) - expected_t)) < 1e-5


def test_domain_means_must_be_lr_variables_the_model_sees():
    lr, hr, static, _ = _dataset()
    config = ModelConfig(conditioning={"lr_variables": ["t2m"], "domain_means": ["q850"]})
    with pytest.raises(ValueError, match="domain_means.*q850"):
        make_layout(config, lr, hr, static)


def test_upslope_is_the_domain_mean_wind_dotted_with_the_terrain_slope():
    """Here t2m and q850 stand in for the wind's u and v: the channel is U . grad(h) in m/s."""
    lr, hr, static, stats = _dataset()
    config = ModelConfig(conditioning={"upslope": {"u": "t2m", "v": "q850"}})
    layout = make_layout(config, lr, hr, static)
    assert layout.features[-1] == "upslope" and layout.cond_channels == 2 + 1 + 8 + 1
    assert Layout.from_dict(layout.to_dict()) == layout
    old = {k: v for k, v in layout.to_dict().items() if k != "upslope"}
    assert Layout.from_dict(old).upslope is None  # checkpoints from before: none

    fields = load_fields(layout, stats, lr, static, hr.lat, hr.lon, hr=hr)
    weights = np.cos(np.deg2rad(lr.lat.values))
    u, v = (float((lr[n][6] * weights).sum() / weights.sum()) for n in ("t2m", "q850"))
    slope = terrain_slope(static.orog.values, hr.lat.values, hr.lon.values)
    to_hr = LRToHR(lr.lat, lr.lon, hr.lat, hr.lon)
    cond, _ = conditioning(fields, layout, to_hr, [6], (4, 8, 8, 8))
    expected = u * slope[0, 4:12, 8:16] + v * slope[1, 4:12, 8:16]
    np.testing.assert_allclose(cond[0, -1].numpy(), expected, rtol=1e-4, atol=1e-6)
    # a training patch builds the same channel from its own window
    patch = PatchDataset(fields, layout, to_hr, patch_size=8, length=1, seed=0)[0]
    assert patch["cond"].shape[0] == layout.cond_channels


def test_the_global_channels_are_those_constant_over_every_window():
    lr, hr, static, stats = _dataset()
    config = ModelConfig(
        conditioning={"domain_means": ["t2m"], "upslope": {"u": "t2m", "v": "q850"}}
    )
    layout = make_layout(config, lr, hr, static)
    fields = load_fields(layout, stats, lr, static, hr.lat, hr.lon, hr=hr)
    cond, _ = conditioning(
        fields, layout, LRToHR(lr.lat, lr.lon, hr.lat, hr.lon), [3, 9], (0, 8, 8, 8)
    )
    flat = cond.flatten(2)
    constant = torch.all(flat == flat[..., :1], dim=2).all(dim=0)
    assert tuple(int(c) for c in torch.nonzero(constant)) == layout.global_channels
    assert len(layout.global_channels) == 4 + 1  # the time features and the domain mean
    no_time = make_layout(ModelConfig(conditioning={"time": False}), lr, hr, static)
    assert no_time.global_channels == ()


def test_upslope_names_what_is_missing():
    lr, hr, static, _ = _dataset()
    for upslope, missing in (
        ({"u": "u850", "v": "q850"}, "'u850' among the LR variables"),
        ({"u": "t2m", "v": "q850", "orography": "hsurf"}, "'hsurf' among the static variables"),
    ):
        with pytest.raises(ValueError, match=missing):
            make_layout(ModelConfig(conditioning={"upslope": upslope}), lr, hr, static)


def test_domain_means_in_the_variables_own_units_as_the_upslope_wind_takes_them():
    lat = np.repeat(np.array([0.0, 60.0])[:, None], 2, axis=1)  # cos: 1 and 0.5
    u = np.array([[[2.0, 2.0], [8.0, np.nan]]])
    v = np.array([[[1.0, 1.0], [1.0, 1.0]]])
    lr = xr.Dataset(
        {"u": (("time", "y", "x"), u), "v": (("time", "y", "x"), v)},
        coords={"lat": (("y", "x"), lat)},
    )
    wind = domain_means(lr, ["u", "v"])
    assert wind.shape == (1, 2)
    np.testing.assert_allclose(wind[0], [(2 + 2 + 0.5 * 8) / 2.5, 1.0], rtol=1e-6)

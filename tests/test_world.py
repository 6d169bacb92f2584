"""The Alps world is physical, deterministic, and its oracle samples p(HR | LR) exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from scipy import stats

from finescale.data.world import World, WorldParams, oracle, preset, simulate
from finescale.data.world.terrain import OrographyError, block_mean, build_terrain, load_dem
from finescale.verify.ranks import rank_histogram
from finescale.verify.scores import spread_skill_ratio

SUMMER = preset("alps-small").model_copy(update={"days": 4.0, "start": "2021-07-08T00:00"})
MEMBERS = 9


@pytest.fixture(scope="module")
def summer_world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world") / "alps"
    simulate(out, SUMMER, seed=3)
    return out


@pytest.fixture(scope="module")
def summer_oracle(summer_world, tmp_path_factory):
    path = tmp_path_factory.mktemp("oracle") / "oracle.zarr"
    oracle(summer_world, MEMBERS, path)
    return xr.open_zarr(path).load()


@pytest.fixture(scope="module")
def hr(summer_world):
    return xr.open_zarr(summer_world / "hr.zarr").load()


@pytest.fixture(scope="module")
def lr(summer_world):
    return xr.open_zarr(summer_world / "lr.zarr").load()


def test_layout_and_cf_attributes(summer_world, hr, lr):
    static = xr.open_zarr(summer_world / "static.zarr")
    assert hr.t2m.dims == ("time", "y", "x") and hr.sizes["y"] == 80 and hr.sizes["x"] == 200
    assert lr.sizes["y"] == 10 and lr.sizes["x"] == 25 and list(lr.level.values) == [850, 700, 500]
    assert hr.lat.dims == ("y", "x") and hr.lat.attrs["units"] == "degrees_north"
    assert hr.sizes["time"] == 96
    units = {"t2m": "K", "u10": "m s-1", "v10": "m s-1", "tp": "mm h-1"}
    for name, unit in units.items():
        assert hr[name].attrs["units"] == unit and lr[name].attrs["units"] == unit
        assert "long_name" in hr[name].attrs
    assert lr.t.dims == ("time", "level", "y", "x") and lr.q.attrs["units"] == "kg kg-1"
    assert set(static.data_vars) == {"orog", "lsm"}
    assert float(static.orog.max()) > 2500  # the high Alps survive 5 km averaging
    assert json.loads((summer_world / "world.json").read_text())["seed"] == 3
    assert (summer_world / "finescale.yaml").is_file()


def test_lapse_rate_recovered(hr, summer_world):
    """Regress t2m on altitude (with lat/lon trends) in the windy afternoon, when cold pools are
    absent."""
    static = xr.open_zarr(summer_world / "static.zarr")
    z = static.orog.values.ravel() / 1000.0
    lat, lon = hr.lat.values.ravel(), hr.lon.values.ravel()
    design = np.column_stack(
        [np.ones_like(z), z, lat - lat.mean(), lon - lon.mean(), (lon - lon.mean()) ** 2]
    )
    slopes = []
    for t in hr.time.values:
        if np.datetime64(t, "h").astype(int) % 24 not in (12, 13, 14):
            continue
        coef, *_ = np.linalg.lstsq(design, hr.t2m.sel(time=t).values.ravel(), rcond=None)
        slopes.append(coef[1])
    lapse = -np.median(slopes)
    assert abs(lapse - SUMMER.lapse_rate) / SUMMER.lapse_rate < 0.10, lapse


def test_lr_and_coarsened_hr_agree_at_large_scales(hr, lr):
    coarse = block_mean(hr.t2m.values, SUMMER.ratio)
    r = np.corrcoef(coarse.ravel(), lr.t2m.values.ravel())[0, 1]
    assert r > 0.95
    for name in ("u10", "v10"):
        r = np.corrcoef(block_mean(hr[name].values, SUMMER.ratio).ravel(), lr[name].values.ravel())[
            0, 1
        ]
        assert r > 0.8, (name, r)
    rain = np.corrcoef(block_mean(hr.tp.values, SUMMER.ratio).ravel(), lr.tp.values.ravel())[0, 1]
    assert rain > 0.3


def test_precipitation_zero_inflated_and_heavy_tailed(hr, lr):
    tp = hr.tp.values
    assert tp.min() >= 0.0
    assert (tp == 0).mean() > 0.3  # dry most of the time and place
    wet = tp[tp > 0.1]
    q50, q999 = np.quantile(wet, [0.5, 0.999])
    assert q999 / q50 > 20 and q999 > 10.0  # intense cells far in the tail
    assert stats.kurtosis(wet) > 10
    # the LR parameterisation drizzles and misses the peaks
    assert (lr.tp.values > 0).mean() > (tp > 0).mean()
    assert lr.tp.values.max() < 0.5 * tp.max()


def _slope(fields: np.ndarray, longest_km: float, shortest_km: float) -> float:
    from finescale.verify.bands import spectral_slope
    from finescale.verify.spectra import radial_psd

    psd = radial_psd(xr.DataArray(fields, dims=("time", "y", "x")), dx_km=5.4).mean("time")
    return float(spectral_slope(psd, kmin=1 / longest_km, kmax=1 / shortest_km))


def test_small_scales_have_a_turbulent_spectrum(hr):
    """Small-scale noise follows k^-5/3 in its inertial range; the winds' tail is
    turbulence-like."""
    world = World(SUMMER, seed=3)
    noise = world.realisation(np.random.default_rng(0)).noise
    draws = np.concatenate([noise.draw(np.random.default_rng(i)) for i in range(4)])
    assert abs(_slope(draws, 40.0, 16.0) - SUMMER.noise_slope) < 0.2
    # whole 10 m wind, from twice the LR grid length down to 3 HR cells
    for name in ("u10", "v10"):
        slope = _slope(hr[name].values, 2 * 8 * 5.4, 3 * 5.4)
        assert -3.0 < slope < -1.0, (name, slope)


def test_deterministic_for_a_seed(tmp_path):
    params = preset("alps-small").model_copy(update={"days": 0.5})
    a, b, c = (
        simulate(tmp_path / name, params, seed=s) for name, s in (("a", 7), ("b", 7), ("c", 8))
    )
    ha, hb, hc = (xr.open_zarr(p / "hr.zarr").load() for p in (a, b, c))
    xr.testing.assert_identical(ha, hb)
    xr.testing.assert_identical(
        xr.open_zarr(a / "lr.zarr").load(), xr.open_zarr(b / "lr.zarr").load()
    )
    assert not np.allclose(ha.t2m.values, hc.t2m.values)


def _sampled(da: xr.DataArray) -> xr.DataArray:
    """Points far enough apart (in space: 16 cells; in time: 3 h) to be nearly independent."""
    return da.isel(y=slice(4, None, 16), x=slice(4, None, 16), time=slice(0, None, 3))


@pytest.mark.parametrize("name", ["t2m", "u10", "v10", "tp"])
def test_oracle_rank_histogram_flat_and_ssr_one(summer_oracle, hr, name):
    ens, truth = _sampled(summer_oracle[name]), _sampled(hr[name])
    counts = np.asarray(rank_histogram(ens, truth, rng=1))
    assert counts.size == MEMBERS + 1
    p_value = stats.chisquare(counts).pvalue
    assert p_value > 1e-3, (counts, p_value)
    ssr = float(spread_skill_ratio(summer_oracle[name], hr[name]))
    assert 0.9 < ssr < 1.1, ssr


def test_the_oracle_checks_can_fail(summer_oracle, hr):
    """Shrinking the oracle's spread by half must be caught by both checks."""
    ens = summer_oracle.t2m
    shrunk = ens.mean("member") + 0.5 * (ens - ens.mean("member"))
    counts = np.asarray(rank_histogram(_sampled(shrunk), _sampled(hr.t2m), rng=1))
    assert stats.chisquare(counts).pvalue < 1e-6
    assert float(spread_skill_ratio(shrunk, hr.t2m)) < 0.7


def test_oracle_members_differ_but_share_the_large_scales(summer_oracle, hr):
    ens = summer_oracle.t2m
    assert float(ens.std("member").mean()) > 0.3
    coarse_members = block_mean(ens.values, SUMMER.ratio)
    coarse_truth = block_mean(hr.t2m.values, SUMMER.ratio)
    assert np.abs(coarse_members - coarse_truth[None]).mean() < 0.3


def test_oracle_subset_of_times(summer_world, tmp_path, hr):
    times = hr.time.values[40:46]
    ens = xr.open_zarr(oracle(summer_world, 2, tmp_path / "o.zarr", times=times))
    assert ens.t2m.dims == ("member", "time", "y", "x") and ens.sizes["time"] == 6
    np.testing.assert_array_equal(ens.time.values, times)
    with pytest.raises(ValueError, match="not in the world"):
        oracle(
            summer_world,
            2,
            tmp_path / "bad.zarr",
            times=np.array(["1999-01-01T00"], dtype="datetime64[h]"),
        )
    assert not (tmp_path / "bad.zarr").exists()


def test_terrain_from_another_dem(tmp_path):
    lat = np.linspace(45.0 + 1 / 24, 46.0 - 1 / 24, 12)[::-1]  # 5' cells, north to south
    lon = np.linspace(7.0 + 1 / 24, 9.0 - 1 / 24, 24)
    elevation = (1000 * np.exp(-((lon[None] - 8.0) ** 2) / 0.1)) * np.ones((12, 1))
    path = tmp_path / "dem.npz"
    np.savez(path, elevation=elevation, lat=lat, lon=lon)
    terrain = build_terrain(load_dem(path), 1 / 6, 2, 8.0)
    assert terrain.orog.shape == (6, 12) and terrain.orog_lr.shape == (3, 6)
    assert terrain.hr.lat[0] < terrain.hr.lat[-1]  # south to north
    np.savez(tmp_path / "bad.npz", elevation=elevation, lat=lat)
    with pytest.raises(OrographyError, match="bad.npz.*lon"):
        load_dem(tmp_path / "bad.npz")
    with pytest.raises(OrographyError, match="not a whole multiple"):
        build_terrain(load_dem(path), 0.1, 2, 8.0)


def test_params_are_validated():
    with pytest.raises(ValueError):
        WorldParams(days=-1)
    with pytest.raises(ValueError, match="known presets"):
        preset("everest")

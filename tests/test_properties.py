"""Properties that must hold for any input (hypothesis) or any seed, beside those already tested.

Already elsewhere: coarsening a constant gives the constant and coarsening a block-repeated field
gives it back (test_grids.py), log1p round trips with exact zeros (test_transforms.py), the
one-member CRPS of one example is the MAE and the small-ensemble fair CRPS matches a large
ensemble's (test_scores.py), a world is the same for the same seed (test_world.py), and the
samplers repeat for a seeded generator (test_samplers.py). Here: the same properties through
the paths the models use, over random inputs, and determinism of whole training and generation
runs. docs/reliability.md lists them all.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import xarray as xr
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import stats as sps
from typer.testing import CliRunner

from finescale.cli import app
from finescale.config import TransformConfig
from finescale.data.grids import coarsen, refine_lat_lon
from finescale.data.lr_to_hr import LRToHR
from finescale.data.normalisation import NormStats, VariableStats
from finescale.data.regrid import interpolate
from finescale.verify.scores import crps_fair, mae

DIMS = ("y", "x")
runner = CliRunner()


# --------------------------------------------------------------------------------------------
# grids: coarsening after upsampling gives the coarse grid and field back


def _regular(
    ny: int, nx: int, lat0: float, lon0: float, step: float
) -> tuple[xr.DataArray, xr.DataArray]:
    lat, lon = np.meshgrid(lat0 + step * np.arange(ny), lon0 + step * np.arange(nx), indexing="ij")
    lon = (lon + 180.0) % 360.0 - 180.0  # grids may cross the date line
    return xr.DataArray(lat, dims=DIMS), xr.DataArray(lon, dims=DIMS)


grid_shapes = st.tuples(st.integers(3, 7), st.integers(3, 7))
factors = st.integers(2, 5)
origins = st.tuples(st.floats(-60.0, 50.0), st.floats(-180.0, 179.0))
steps = st.sampled_from([0.1, 0.25, 0.5, 1.0, 2.0])


@settings(max_examples=40, deadline=None)
@given(shape=grid_shapes, factor=factors, origin=origins, step=steps)
def test_coarsen_after_refining_gives_the_grid_back(shape, factor, origin, step):
    lat, lon = _regular(*shape, *origin, step)
    fine_lat, fine_lon = refine_lat_lon(lat, lon, factor)
    fine = xr.DataArray(
        np.zeros(fine_lat.shape), dims=DIMS, coords={"lat": fine_lat, "lon": fine_lon}
    )
    back = coarsen(fine, factor)
    np.testing.assert_allclose(back.lat.values, lat.values, atol=1e-9)
    wrapped = (
        back.lon.values - lon.values + 180.0
    ) % 360.0 - 180.0  # the same longitude, either side of the seam
    np.testing.assert_allclose(wrapped, 0.0, atol=1e-9)


@settings(max_examples=30, deadline=None)
@given(
    shape=grid_shapes,
    factor=factors,
    step=steps,
    coefficients=st.tuples(st.floats(-5, 5), st.floats(-5, 5), st.floats(-300, 300)),
)
def test_coarsen_after_bilinear_upsampling_is_the_identity(shape, factor, step, coefficients):
    """For fields bilinear interpolation represents exactly (linear in lat/lon), on the blocks
    whose sub-cells all lie between coarse centres (the outer half cell takes edge values)."""
    a, b, c = coefficients
    lat, lon = _regular(*shape, 40.0, 5.0, step)
    coarse = xr.DataArray(
        a * lat.values + b * lon.values + c, dims=DIMS, coords={"lat": lat, "lon": lon}
    )
    fine_lat, fine_lon = refine_lat_lon(lat, lon, factor)
    inner = (slice(1, -1), slice(1, -1))
    scale = 1.0 + np.abs(coarse.values).max()

    up = interpolate(coarse, fine_lat, fine_lon, method="bilinear")
    back = coarsen(up.drop_vars(["lat", "lon"]), factor).values
    np.testing.assert_allclose(back[inner], coarse.values[inner], atol=1e-9 * scale)

    # the models' own upsampling (grid_sample at the same positions, float32)
    to_hr = LRToHR(lat, lon, fine_lat, fine_lon, "bilinear")
    up32 = to_hr(torch.from_numpy(coarse.values[None, None].astype(np.float32)))[0, 0].numpy()
    back32 = coarsen(xr.DataArray(up32.astype(np.float64), dims=DIMS), factor).values
    np.testing.assert_allclose(back32[inner], coarse.values[inner], atol=1e-5 * scale)


# --------------------------------------------------------------------------------------------
# transforms: denormalise(normalise(x)) = x, zeros of precipitation exact


def _stats(kind: str, scale: float, mean: float, std: float, zero_below: float = 0.0) -> NormStats:
    transform = TransformConfig(kind=kind, scale=scale, zero_below=zero_below)
    return NormStats({"v": VariableStats(mean, std, transform)})


amounts = hnp.arrays(
    np.float64,
    hnp.array_shapes(min_dims=1, max_dims=3, max_side=6),
    elements=st.floats(0.0, 1e4, allow_subnormal=False) | st.just(0.0),
)


@settings(max_examples=50, deadline=None)
@given(
    x=amounts,
    kind=st.sampled_from(["none", "log1p"]),
    scale=st.floats(1e-2, 1e2),
    mean=st.floats(-10.0, 10.0),
    std=st.floats(1e-2, 1e2),
)
def test_denormalise_after_normalise_is_the_identity(x, kind, scale, mean, std):
    stats = _stats(kind, scale, mean, std)
    z = stats.normalise_array(x, "v")
    np.testing.assert_allclose(stats.denormalise_array(z, "v"), x, rtol=1e-9, atol=1e-9 * (1 + std))
    # the torch path, as in generation (float64 there too)
    back = stats.denormalise_array(stats.normalise_array(torch.from_numpy(x), "v"), "v").numpy()
    np.testing.assert_allclose(back, x, rtol=1e-9, atol=1e-9 * (1 + std))


@settings(max_examples=50, deadline=None)
@given(
    x=amounts,
    scale=st.floats(1e-2, 1e2),
    mean=st.floats(-3.0, 3.0),
    std=st.floats(1e-2, 1e2),
    zero_below=st.sampled_from([0.0, 0.01, 0.1, 1.0]),
)
@example(x=np.zeros(1), scale=1.0, mean=2.225073858507203e-309, std=4.0, zero_below=0.0)
def test_precipitation_zeros_stay_exact(x, scale, mean, std, zero_below):
    """Dry stays dry through normalisation and back, in numpy and torch: exactly 0 with a
    zero_below threshold (amounts under it come back as exact zeros, the rest round trips);
    without one within a rounding error of 0, as (0 - mean) / std * std + mean need not be
    exactly 0 in floating point (hypothesis found mean 2.2e-309, std 4 -> 1e-323)."""
    stats = _stats("log1p", scale, mean, std, zero_below)
    rounding = (
        1e-12 * scale * (1 + abs(mean) + std)
    )  # standardising costs absolute precision near 0
    for back in (
        stats.denormalise_array(stats.normalise_array(x, "v"), "v"),
        stats.denormalise_array(stats.normalise_array(torch.from_numpy(x), "v"), "v").numpy(),
    ):
        assert np.all(back >= 0)
        if zero_below > 0:
            assert np.all(back[x < zero_below * (1 - 1e-9)] == 0.0)
        else:
            assert np.all(back[x == 0] <= rounding)
        kept = x >= zero_below * (1 + 1e-9)
        np.testing.assert_allclose(back[kept], x[kept], rtol=1e-9, atol=rounding)


# --------------------------------------------------------------------------------------------
# scores: CRPS >= 0, one member gives the MAE, the fair CRPS is unbiased


ensembles = hnp.arrays(
    np.float64,
    st.tuples(st.integers(1, 8), st.integers(1, 5)),
    elements=st.floats(-1e3, 1e3, allow_subnormal=False),
)


@settings(max_examples=50, deadline=None)
@given(fc=ensembles, y=st.floats(-1e3, 1e3))
def test_crps_is_never_negative(fc, y):
    """Both estimators: the spread term never exceeds the error term (triangle inequality)."""
    truth = np.full(fc.shape[1], y)
    fair = crps_fair(fc, truth, dims=[])
    biased = crps_fair(fc, truth, fair=False, dims=[])
    rounding = 1e-12 * (1.0 + np.abs(fc).max() + abs(y))
    assert np.all(fair >= -rounding) and np.all(biased >= -rounding)
    assert np.all(fair <= biased + rounding)  # the fair one removes part of the spread bias


@settings(max_examples=50, deadline=None)
@given(
    fc=hnp.arrays(
        np.float64,
        st.tuples(st.just(1), st.integers(1, 5), st.integers(1, 5)),
        elements=st.floats(-1e3, 1e3, allow_subnormal=False),
    ),
    data=st.data(),
)
def test_one_member_gives_the_mae(fc, data):
    truth = data.draw(
        hnp.arrays(np.float64, fc.shape[1:], elements=st.floats(-1e3, 1e3, allow_subnormal=False))
    )
    expected = np.abs(fc[0] - truth).mean()
    for fair in (True, False):
        assert crps_fair(fc, truth, fair=fair) == pytest.approx(expected, rel=1e-12, abs=1e-9)
    assert mae(fc, truth) == pytest.approx(expected, rel=1e-12, abs=1e-9)


def _gaussian_crps(y: np.ndarray) -> np.ndarray:
    """CRPS of N(0, 1) for truth y (closed form, Gneiting and Raftery 2007)."""
    return y * (2 * sps.norm.cdf(y) - 1) + 2 * sps.norm.pdf(y) - 1 / np.sqrt(np.pi)


@pytest.mark.parametrize("members", [2, 3, 5])
def test_fair_crps_is_unbiased_against_the_exact_crps(members):
    """Averaged over many draws, the fair CRPS of M members of N(0, 1) equals the exact CRPS of
    N(0, 1) at the same truths, within 4 standard errors of the mean difference; the biased
    estimator misses it by E|X - X'| / (2M) = 1 / (M sqrt(pi)), far outside that band."""
    rng = np.random.default_rng(11)
    n = 40_000
    truth = rng.normal(size=n)
    draws = rng.normal(size=(members, n))
    exact = _gaussian_crps(truth)
    diff = crps_fair(draws, truth, dims=[]) - exact
    stderr = diff.std() / np.sqrt(n)
    assert abs(diff.mean()) < 4 * stderr
    bias = (crps_fair(draws, truth, fair=False, dims=[]) - exact).mean()
    assert bias == pytest.approx(1 / (members * np.sqrt(np.pi)), abs=4 * stderr)
    assert bias > 10 * stderr  # the check could see a bias that size


# --------------------------------------------------------------------------------------------
# determinism: the same seed gives the same bits on CPU


def _run(*args: object) -> None:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def diffusion_runs(small_pair, tmp_path_factory, one_thread):
    """Three 3-step diffusion trainings on the small pair: seeds 0, 0 and 1."""
    root = tmp_path_factory.mktemp("determinism")
    data = root / "data"
    shutil.copytree(small_pair, data)
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("other", 1)):
        out = root / name
        _run(
            "train",
            "--config",
            data / "finescale.yaml",
            "--set",
            "model.kind=diffusion",
            "--set",
            "train.max_steps=3",
            "--set",
            f"train.seed={seed}",
            "--set",
            f"train.out={out}",
        )
        runs[name] = out / "checkpoints" / "last.ckpt"
    return data, runs


def _weights(checkpoint) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, weights_only=True)["state_dict"]


def test_training_is_bit_identical_for_a_seed(diffusion_runs):
    _, runs = diffusion_runs
    a, b, other = (_weights(runs[k]) for k in ("a", "b", "other"))
    assert a.keys() == b.keys() and len(a) > 10
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], other[k]) for k in a)  # the seed matters


def test_generation_is_bit_identical_for_a_seed(diffusion_runs, tmp_path):
    data, runs = diffusion_runs

    def members(name: str, seed: int) -> xr.Dataset:
        out = tmp_path / name
        _run(
            "downscale",
            "--checkpoint",
            runs["a"],
            "--lr",
            data / "lr.nc",
            "--static",
            data / "static.nc",
            "--out",
            out,
            "--times",
            "2020-01-01T20..2020-01-01T23",
            "--set",
            f"sample.seed={seed}",
        )
        return xr.open_zarr(out).load()

    first, again, other = members("a.zarr", 0), members("b.zarr", 0), members("c.zarr", 1)
    assert first.sizes["member"] == 2 and first.sizes["time"] == 4
    np.testing.assert_array_equal(first.t2m.values, again.t2m.values)
    assert float(first.t2m.std("member").mean()) > 0  # members differ: the noise is drawn
    assert not np.array_equal(first.t2m.values, other.t2m.values)

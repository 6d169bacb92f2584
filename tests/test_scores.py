"""Ensemble scores against scoringrules, closed forms, hand-computed cases and statistics."""

from __future__ import annotations

import numpy as np
import pytest
import scoringrules as sr
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats

from finescale.verify import (
    area_weights,
    brier_score,
    crps_fair,
    energy_score,
    mae,
    rank_histogram,
    region_mask,
    rmse,
    spread,
    spread_skill_ratio,
    twcrps,
    weighted_mean,
    wind_speed,
)

INV_SQRT_PI = 1.0 / np.sqrt(np.pi)  # E[CRPS(N(0,1), y)] for y ~ N(0,1)


def ensemble(values: np.ndarray, dims=("member", "time", "y", "x")) -> xr.DataArray:
    return xr.DataArray(values, dims=dims[: values.ndim])


def field(values: np.ndarray, dims=("time", "y", "x")) -> xr.DataArray:
    return xr.DataArray(values, dims=dims[: values.ndim])


def exchangeable(rng, m: int, n: int, member_sd: float = 1.0):
    """Truth and members drawn from N(mu, 1) around a point-dependent mean mu (members' sd
    member_sd): calibrated when member_sd == 1."""
    mu = rng.normal(0.0, 3.0, size=n)
    truth = mu + rng.normal(size=n)
    members = mu + member_sd * rng.normal(size=(m, n))
    return ensemble(members, ("member", "x")), field(truth, ("x",))


# --------------------------------------------------------------------------------------------
# CRPS
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("m", [2, 3, 8, 51])
def test_fair_crps_matches_scoringrules_fair(m):
    rng = np.random.default_rng(m)
    fc = rng.gamma(0.7, 2.0, size=(m, 4, 5, 6))
    obs = rng.gamma(0.7, 2.0, size=(4, 5, 6))
    expected = sr.crps_ensemble(obs, np.moveaxis(fc, 0, -1), estimator="fair")
    got = crps_fair(ensemble(fc), field(obs), dims=[])
    np.testing.assert_allclose(got.values, expected, rtol=1e-6, atol=1e-12)  # some are exactly 0
    assert got.dims == ("time", "y", "x")


@pytest.mark.parametrize("estimator", ["nrg", "qd"])
def test_biased_crps_matches_scoringrules_empirical_cdf_form(estimator):
    # "nrg" and "qd" both score the empirical CDF (1/(2M^2)); "pwm" equals the fair one
    rng = np.random.default_rng(3)
    fc = rng.normal(size=(7, 200))
    obs = rng.normal(size=200)
    expected = sr.crps_ensemble(obs, fc.T, estimator=estimator)
    got = crps_fair(fc, obs, fair=False, dims=[])
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert not np.allclose(got, crps_fair(fc, obs, dims=[]))


def test_crps_with_ties_matches_scoringrules():
    rng = np.random.default_rng(4)
    fc = np.where(rng.random((10, 300)) < 0.6, 0.0, rng.exponential(size=(10, 300)))
    obs = np.where(rng.random(300) < 0.6, 0.0, rng.exponential(size=300))
    np.testing.assert_allclose(
        crps_fair(fc, obs, dims=[]),
        sr.crps_ensemble(obs, fc.T, estimator="fair"),
        rtol=1e-6,
        atol=1e-12,  # exact zeros (all dry) come out as +-1e-16 in either code
    )


@settings(max_examples=60, deadline=None)
@given(
    arrays(
        np.float64,
        st.tuples(st.integers(2, 9), st.integers(1, 4)),
        elements=st.sampled_from([-2.0, 0.0, 0.5, 1.0, 3.25]) | st.floats(-1e3, 1e3),
    ),
    st.floats(-1e3, 1e3),
)
def test_sorted_form_equals_double_sum(fc, y):
    m = fc.shape[0]
    pairs = np.abs(fc[:, None, :] - fc[None, :, :]).sum(axis=(0, 1))
    direct = np.abs(fc - y).mean(axis=0) - pairs / (2 * m * (m - 1))
    got = crps_fair(fc, np.full(fc.shape[1], y), dims=[])
    np.testing.assert_allclose(got, direct, rtol=1e-9, atol=1e-9 * (1 + np.abs(fc).max()))


def test_one_member_gives_mae():
    rng = np.random.default_rng(5)
    fc = rng.normal(size=(1, 3, 4))
    obs = rng.normal(size=(3, 4))
    expected = np.abs(fc[0] - obs).mean()
    assert crps_fair(fc, obs) == pytest.approx(expected)
    assert crps_fair(fc, obs, fair=False) == pytest.approx(expected)
    assert mae(fc, obs) == pytest.approx(expected)


def test_gaussian_ensemble_crps_is_one_over_sqrt_pi():
    rng = np.random.default_rng(6)
    n, m = 100_000, 10
    pointwise = crps_fair(rng.normal(size=(m, n)), rng.normal(size=n), dims=[])
    stderr = pointwise.std() / np.sqrt(n)
    assert abs(pointwise.mean() - INV_SQRT_PI) < 4 * stderr
    assert stderr < 0.002  # the check is sharp enough to see a 1% bias


def test_fair_crps_is_unbiased_for_small_ensembles():
    """Small-M fair CRPS averages to the large-M value on the same truths; the biased one does
    not."""
    rng = np.random.default_rng(7)
    n, reps = 4000, 25
    truth = field(rng.normal(size=n), ("x",))
    large = crps_fair(ensemble(rng.normal(size=(1000, n)), ("member", "x")), truth, dims=[])
    small = ensemble(rng.normal(size=(2, reps, n)), ("member", "rep", "x"))
    fair_small = crps_fair(small, truth, dims=["rep"])
    biased_small = crps_fair(small, truth, fair=False, dims=["rep"])
    diff = (fair_small - large).values
    stderr = diff.std() / np.sqrt(n)
    assert abs(diff.mean()) < 4 * stderr
    assert float(large.mean()) == pytest.approx(INV_SQRT_PI, abs=0.02)
    # the biased estimator is high by E|X - X'| / (2M) = (2 / sqrt(pi)) / 4
    assert float((biased_small - large).mean()) == pytest.approx(INV_SQRT_PI / 2, abs=0.02)


def test_crps_dask_matches_numpy():
    rng = np.random.default_rng(8)
    fc = ensemble(rng.normal(size=(6, 4, 10, 12)))
    obs = field(rng.normal(size=(4, 10, 12)))
    expected = crps_fair(fc, obs, dims=["y", "x"])
    lazy = crps_fair(fc.chunk({"member": 2, "time": 1}), obs.chunk({"time": 1}), dims=["y", "x"])
    assert lazy.chunks is not None
    np.testing.assert_allclose(lazy.compute().values, expected.values, rtol=1e-12)


def test_misaligned_coordinates_fail_loudly():
    fc = ensemble(np.zeros((3, 4)), ("member", "x")).assign_coords(x=np.arange(4))
    obs = field(np.zeros(4), ("x",)).assign_coords(x=np.arange(1, 5))
    with pytest.raises(ValueError):
        crps_fair(fc, obs)


# --------------------------------------------------------------------------------------------
# Reductions: dims, weights, masks, missing values
# --------------------------------------------------------------------------------------------


def test_dims_semantics():
    rng = np.random.default_rng(9)
    fc = ensemble(rng.normal(size=(5, 3, 4, 6)))
    obs = field(rng.normal(size=(3, 4, 6)))
    pointwise = crps_fair(fc, obs, dims=[])
    assert pointwise.dims == ("time", "y", "x")
    per_point = crps_fair(fc, obs, dims="time")
    assert per_point.dims == ("y", "x")
    np.testing.assert_allclose(per_point, pointwise.mean("time"))
    total = crps_fair(fc, obs)
    assert total.ndim == 0
    assert float(total) == pytest.approx(float(pointwise.mean()))
    assert float(crps_fair(fc, obs, dims=None)) == pytest.approx(float(total))
    with pytest.raises(ValueError):
        crps_fair(fc, obs, dims=["level"])


def test_weights_give_weighted_average():
    rng = np.random.default_rng(10)
    fc = ensemble(rng.normal(size=(5, 2, 3, 4)))
    obs = field(rng.normal(size=(2, 3, 4)))
    weights = xr.DataArray([1.0, 2.0, 7.0], dims="y")
    pointwise = crps_fair(fc, obs, dims=[])
    expected = (pointwise * weights).sum() / (weights.sum() * 2 * 4)
    got = crps_fair(fc, obs, weights=weights)
    assert float(got) == pytest.approx(float(expected))
    assert float(got) != pytest.approx(float(pointwise.mean()))
    # the scale of the weights does not matter
    assert float(crps_fair(fc, obs, weights=10 * weights)) == pytest.approx(float(got))


def test_weights_with_foreign_dims_are_rejected():
    fc = ensemble(np.zeros((3, 2, 4)), ("member", "y", "x"))
    obs = field(np.zeros((2, 4)), ("y", "x"))
    with pytest.raises(ValueError, match="lat"):
        crps_fair(fc, obs, weights=xr.DataArray([1.0, 2.0], dims="lat"))


@pytest.mark.parametrize("score", [crps_fair, rmse, mae, spread_skill_ratio])
def test_masked_points_are_ignored(score):
    rng = np.random.default_rng(11)
    fc = rng.normal(size=(6, 8, 10))
    obs = rng.normal(size=(8, 10))
    mask = np.ones((8, 10), dtype=bool)
    mask[:, 7:] = False
    wild = obs.copy()
    wild[:, 7:] = 1e6  # an error there would swamp everything
    full = score(
        ensemble(fc, ("member", "y", "x")), field(wild, ("y", "x")), mask=field(mask, ("y", "x"))
    )
    subset = score(ensemble(fc[:, :, :7], ("member", "y", "x")), field(obs[:, :7], ("y", "x")))
    assert float(full) == pytest.approx(float(subset))


def test_masked_points_are_nan_in_pointwise_output():
    fc = ensemble(np.ones((3, 4)), ("member", "x"))
    obs = field(np.zeros(4), ("x",))
    mask = field(np.array([True, False, True, True]), ("x",))
    got = crps_fair(fc, obs, mask=mask, dims=[])
    assert np.isnan(got.values[1]) and np.allclose(got.values[[0, 2, 3]], 1.0)


def test_missing_truth_is_skipped_and_all_missing_gives_nan():
    fc = ensemble(np.ones((3, 4)), ("member", "x"))
    obs = field(np.array([0.0, np.nan, 0.0, 0.0]), ("x",))
    assert float(crps_fair(fc, obs)) == pytest.approx(1.0)
    assert np.isnan(float(crps_fair(fc, obs * np.nan)))


def test_numpy_in_numpy_out_with_weights_and_mask():
    rng = np.random.default_rng(12)
    fc = rng.normal(size=(4, 3, 5))
    obs = rng.normal(size=(3, 5))
    weights = np.array([1.0, 0.0, 3.0])[:, None] * np.ones(5)
    got = crps_fair(fc, obs, weights=weights)
    pointwise = crps_fair(fc, obs, dims=[])
    assert isinstance(got, float) and isinstance(pointwise, np.ndarray)
    assert got == pytest.approx((pointwise * weights).sum() / weights.sum())
    assert crps_fair(fc, obs, mask=weights > 0) == pytest.approx(pointwise[[0, 2]].mean())


def test_weighted_mean_helper_and_area_weights():
    lat = xr.DataArray(np.array([-60.0, 0.0, 60.0, 90.0]), dims="y")
    w = area_weights(lat)
    assert float(w.mean()) == pytest.approx(1.0)
    np.testing.assert_allclose(w / w[1], [0.5, 1.0, 0.5, 0.0], atol=1e-12)
    score = xr.DataArray([2.0, 1.0, 4.0, 100.0], dims="y")
    assert float(weighted_mean(score, weights=w)) == pytest.approx((1 + 1 + 2) / 2)


# --------------------------------------------------------------------------------------------
# RMSE, spread, spread-skill ratio
# --------------------------------------------------------------------------------------------


def test_rmse_and_mae_of_ensemble_mean():
    fc = ensemble(np.array([[1.0, 2.0], [3.0, 6.0]]), ("member", "x"))  # means 2, 4
    obs = field(np.array([0.0, 1.0]), ("x",))
    assert float(rmse(fc, obs)) == pytest.approx(np.sqrt((4 + 9) / 2))
    assert float(mae(fc, obs)) == pytest.approx(2.5)


def test_spread_takes_square_root_after_averaging():
    fc = ensemble(np.array([[0.0, 0.0], [np.sqrt(2.0), np.sqrt(18.0)]]), ("member", "x"))
    # ddof=1 variances 1 and 9: spread sqrt(5), not the mean standard deviation 2
    assert float(spread(fc)) == pytest.approx(np.sqrt(5.0))
    with pytest.raises(ValueError):
        spread(fc.isel(member=[0]))


def test_calibrated_ensemble_has_unit_ssr_and_flat_rank_histogram():
    rng = np.random.default_rng(13)
    fc, obs = exchangeable(rng, m=10, n=60_000)
    assert float(spread_skill_ratio(fc, obs)) == pytest.approx(1.0, abs=0.02)
    counts = rank_histogram(fc, obs, rng=1)
    assert counts.dims == ("rank",) and counts.sizes["rank"] == 11
    assert int(counts.sum()) == 60_000
    assert stats.chisquare(counts.values).pvalue > 0.01


def test_underdispersive_ensemble_has_low_ssr_and_u_shaped_histogram():
    rng = np.random.default_rng(14)
    fc, obs = exchangeable(rng, m=10, n=20_000, member_sd=0.5)
    assert float(spread_skill_ratio(fc, obs)) < 0.7
    counts = rank_histogram(fc, obs, rng=1).values
    assert stats.chisquare(counts).pvalue < 1e-6
    middle = counts[3:8].mean()
    assert counts[0] > 2 * middle and counts[-1] > 2 * middle


def test_rank_histogram_breaks_ties_at_random():
    zeros = ensemble(np.zeros((8, 5000)), ("member", "x"))
    counts = rank_histogram(zeros, field(np.zeros(5000), ("x",)), rng=2)
    assert counts.sizes["rank"] == 9
    assert stats.chisquare(counts.values).pvalue > 0.01
    assert counts.min() > 0


def test_rank_histogram_flat_for_exchangeable_precipitation_with_many_zeros():
    rng = np.random.default_rng(15)
    n, m = 20_000, 6
    draws = np.where(rng.random((m + 1, n)) < 0.7, 0.0, rng.gamma(0.5, 3.0, size=(m + 1, n)))
    counts = rank_histogram(draws[1:], draws[0], rng=rng)
    assert stats.chisquare(counts).pvalue > 0.01


def test_rank_histogram_is_reproducible_and_respects_weights_and_mask():
    rng = np.random.default_rng(16)
    fc = ensemble(rng.normal(size=(4, 30)), ("member", "x"))
    obs = field(rng.normal(size=30), ("x",))
    np.testing.assert_array_equal(rank_histogram(fc, obs, rng=5), rank_histogram(fc, obs, rng=5))
    mask = field(np.arange(30) < 10, ("x",))
    assert int(rank_histogram(fc, obs, mask=mask).sum()) == 10
    weights = field(np.full(30, 0.5), ("x",))
    assert float(rank_histogram(fc, obs, weights=weights).sum()) == pytest.approx(15.0)


# --------------------------------------------------------------------------------------------
# Brier score and threshold-weighted CRPS
# --------------------------------------------------------------------------------------------


def test_brier_score_hand_computed():
    fc = np.array([[0.0, 5.0], [1.0, 5.0], [2.0, 5.0], [3.0, 5.0]])
    obs = np.array([2.0, 0.0])
    # point 0: p = 2/4 above 1.5, event happened -> 0.25; point 1: p = 1, no event -> 1
    assert brier_score(fc, obs, 1.5) == pytest.approx(0.625)
    np.testing.assert_allclose(
        brier_score(fc, obs, 1.5, dims=[]),
        sr.brier_score(np.array([1.0, 0.0]), np.array([0.5, 1.0])),
    )
    # "above" is strict: a value equal to the threshold is not an event
    assert brier_score(fc, obs, 2.0, dims=[])[0] == pytest.approx((0.25 - 0.0) ** 2)


def test_twcrps_hand_computed():
    fc = np.array([[0.0], [2.0]])
    obs = np.array([3.0])
    # v = max(z, 1): members 1, 2; truth 3. skill (2 + 1)/2 = 1.5; sum |x_i - x_j| = 2
    assert twcrps(fc, obs, 1.0) == pytest.approx(1.5 - 2 / (2 * 2 * 1))
    assert twcrps(fc, obs, 1.0, fair=False) == pytest.approx(1.5 - 2 / (2 * 2 * 2))


def test_twcrps_limits_and_scoringrules():
    rng = np.random.default_rng(17)
    fc = rng.normal(size=(9, 100))
    obs = rng.normal(size=100)
    assert twcrps(fc, obs, -100.0) == pytest.approx(crps_fair(fc, obs))
    assert twcrps(fc, obs, 100.0) == pytest.approx(0.0)
    expected = sr.twcrps_ensemble(obs, fc.T, a=0.5, estimator="fair")
    np.testing.assert_allclose(twcrps(fc, obs, 0.5, dims=[]), expected, rtol=1e-6, atol=1e-12)
    assert twcrps(fc, obs, 0.5) < crps_fair(fc, obs)


# --------------------------------------------------------------------------------------------
# Energy score
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fair", "estimator"), [(True, "fair"), (False, "nrg")])
def test_energy_score_matches_scoringrules(fair, estimator):
    rng = np.random.default_rng(18)
    fc = ensemble(rng.normal(size=(6, 20, 3)), ("member", "time", "variable"))
    obs = field(rng.normal(size=(20, 3)), ("time", "variable"))
    expected = sr.es_ensemble(obs.values, np.moveaxis(fc.values, 0, 1), estimator=estimator)
    got = energy_score(fc, obs, feature_dims="variable", fair=fair, dims=[])
    np.testing.assert_allclose(got.values, expected, rtol=1e-6)


def test_energy_score_over_space_and_feature_weights():
    rng = np.random.default_rng(19)
    fc = ensemble(rng.normal(size=(5, 4, 3, 6)))
    obs = field(rng.normal(size=(4, 3, 6)))
    got = energy_score(fc, obs, feature_dims=["y", "x"], dims=[])
    flat_fc = fc.values.reshape(5, 4, 18).transpose(1, 0, 2)
    expected = sr.es_ensemble(obs.values.reshape(4, 18), flat_fc, estimator="fair")
    np.testing.assert_allclose(got.values, expected, rtol=1e-6)
    # weights inside the norm act like scaling the features by sqrt(w)
    w = field(rng.uniform(0.5, 2.0, size=(3, 6)), ("y", "x"))
    weighted = energy_score(fc, obs, feature_dims=["y", "x"], feature_weights=w)
    scaled = energy_score(fc * np.sqrt(w), obs * np.sqrt(w), feature_dims=["y", "x"])
    assert float(weighted) == pytest.approx(float(scaled))


def test_energy_score_of_one_feature_is_crps_and_mask_drops_features():
    rng = np.random.default_rng(20)
    fc = ensemble(rng.normal(size=(7, 10, 2)), ("member", "time", "variable"))
    obs = field(rng.normal(size=(10, 2)), ("time", "variable"))
    one = energy_score(fc.isel(variable=[0]), obs.isel(variable=[0]), feature_dims="variable")
    assert float(one) == pytest.approx(float(crps_fair(fc.isel(variable=0), obs.isel(variable=0))))
    mask = xr.DataArray([True, False], dims="variable")
    spoiled = obs.copy()
    spoiled[:, 1] = 1e6
    masked = energy_score(fc, spoiled, feature_dims="variable", mask=mask)
    assert float(masked) == pytest.approx(float(one))


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def test_region_mask_boxes_and_date_line():
    lat, lon = xr.broadcast(
        xr.DataArray(np.array([40.0, 45.0, 50.0]), dims="y"),
        xr.DataArray(np.array([-175.0, 0.0, 8.0, 175.0, 350.0]), dims="x"),
    )
    alps = region_mask(lat, lon, 44.0, 48.0, 5.0, 16.0)
    assert alps.dims == ("y", "x") and alps.values.sum() == 1 and bool(alps[1, 2])
    across = region_mask(lat, lon, -90, 90, 170.0, -170.0)
    np.testing.assert_array_equal(across.values[0], [True, False, False, True, False])
    near_greenwich = region_mask(lat, lon, -90, 90, -15.0, 10.0)  # 350 == -10
    np.testing.assert_array_equal(near_greenwich.values[0], [False, True, True, False, True])
    assert bool(region_mask(lat, lon, -90, 90, -180, 180).all())


def test_wind_speed():
    u = xr.DataArray([3.0, -6.0], dims="x", attrs={"units": "m s-1"})
    v = xr.DataArray([4.0, 8.0], dims="x")
    speed = wind_speed(u, v)
    np.testing.assert_allclose(speed, [5.0, 10.0])
    assert speed.attrs["units"] == "m s-1"
    np.testing.assert_allclose(wind_speed(np.array([3.0]), np.array([4.0])), [5.0])


def test_results_are_labelled_with_units_and_score_name():
    fc = ensemble(np.ones((3, 4)), ("member", "x")).assign_attrs(units="K", long_name="t2m")
    obs = field(np.zeros(4), ("x",)).assign_attrs(units="K", long_name="t2m")
    assert crps_fair(fc, obs).attrs == {"long_name": "fair CRPS", "units": "K"}
    assert rmse(fc, obs).attrs["units"] == "K"
    assert spread_skill_ratio(fc + fc.member, obs).attrs["units"] == "1"
    with pytest.raises(ValueError, match="feature_weights"):
        energy_score(fc, obs, feature_dims="x", weights=xr.ones_like(obs))


def test_sorted_kernels_are_the_scores_of_crps_fair_and_rank_histogram():
    """The kernels the streaming evaluation sums: the same numbers as the public scores."""
    from finescale.verify.ranks import truth_ranks
    from finescale.verify.scores import crps_sorted, crps_sorted_sum

    rng = np.random.default_rng(11)
    m, points = 7, 500
    fc = rng.gamma(0.7, 2.0, size=(m, points))
    obs = rng.gamma(0.7, 2.0, size=points)
    d = np.sort(fc, axis=0) - obs
    pointwise = crps_fair(
        ensemble(fc.reshape(m, 5, 10, 10)), field(obs.reshape(5, 10, 10)), dims=[]
    )
    np.testing.assert_allclose(crps_sorted(d), pointwise.values.ravel(), rtol=1e-12)
    expected = sr.crps_ensemble(obs, fc.T, estimator="nrg")
    np.testing.assert_allclose(crps_sorted(d, fair=False), expected, rtol=1e-10, atol=1e-12)
    w = rng.random(points)
    assert crps_sorted_sum(d) == pytest.approx(crps_sorted(d).sum(), rel=1e-12)
    assert crps_sorted_sum(d, w) == pytest.approx(crps_sorted(d) @ w, rel=1e-12)
    assert crps_sorted_sum(d[:1], w) == pytest.approx(np.abs(d[0]) @ w, rel=1e-12)  # one member
    ranks = truth_ranks(d, np.random.default_rng(0))  # no ties: no draw matters
    np.testing.assert_array_equal(ranks, (fc < obs).sum(axis=0))
    counts = rank_histogram(ensemble(fc.reshape(m, 5, 10, 10)), field(obs.reshape(5, 10, 10)))
    np.testing.assert_array_equal(np.bincount(ranks, minlength=m + 1), counts.values)

"""Extremes: quantiles, q-q pairs, exceedance ratios and relative quantile errors."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from finescale.verify import exceedance_ratio, qq, quantiles, relative_quantile_error


def gamma_pair(rng, m: int = 8, times: int = 400, ny: int = 10, nx: int = 10, scale: float = 1.0):
    """Precipitation-like truth and an ensemble from the same distribution (scaled by ``scale``)."""
    shape = (times, ny, nx)
    truth = xr.DataArray(rng.gamma(0.6, 2.0, size=shape), dims=("time", "y", "x"))
    members = scale * rng.gamma(0.6, 2.0, size=(m, *shape))
    forecast = xr.DataArray(members, dims=("member", "time", "y", "x"))
    return forecast, truth


def test_quantiles_match_numpy():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(50, 6, 7))
    da = xr.DataArray(values, dims=("time", "y", "x"))
    qs = (0.1, 0.5, 0.9, 0.99)
    np.testing.assert_allclose(quantiles(da, qs).values, np.quantile(values, qs))
    per_point = quantiles(da, qs, dims="time")
    assert per_point.dims == ("quantile", "y", "x")
    np.testing.assert_allclose(per_point.values, np.quantile(values, qs, axis=0))
    assert quantiles(values, 0.5) == pytest.approx(np.median(values))


def test_quantiles_default_keeps_members_and_none_pools_them():
    rng = np.random.default_rng(1)
    values = rng.normal(size=(3, 40, 5))
    da = xr.DataArray(values, dims=("member", "time", "x"))
    per_member = quantiles(da, (0.5, 0.9))
    assert per_member.dims == ("quantile", "member")
    np.testing.assert_allclose(
        per_member.values, np.quantile(values.reshape(3, -1), (0.5, 0.9), axis=1)
    )
    pooled = quantiles(da, (0.5, 0.9), dims=None)
    np.testing.assert_allclose(pooled.values, np.quantile(values, (0.5, 0.9)))


def test_weighted_quantiles():
    rng = np.random.default_rng(2)
    values = rng.normal(size=(30, 8))
    da = xr.DataArray(values, dims=("time", "y"))
    qs = (0.05, 0.5, 0.95)
    equal = quantiles(da, qs, weights=xr.full_like(da, 3.0))
    np.testing.assert_allclose(equal.values, quantiles(da, qs).values, rtol=1e-12)
    # zero weight == masked == dropped
    weights = xr.DataArray(np.r_[np.ones(5), np.zeros(3)], dims="y")
    zero_weighted = quantiles(da, qs, weights=weights)
    masked = quantiles(da, qs, mask=weights > 0)
    dropped = np.quantile(values[:, :5], qs)
    np.testing.assert_allclose(zero_weighted.values, dropped, rtol=1e-12)
    np.testing.assert_allclose(masked.values, dropped, rtol=1e-12)
    # heavier weight on the large values pulls the median up
    heavy = xr.DataArray(np.where(values > 0, 5.0, 1.0), dims=("time", "y"))
    assert float(quantiles(da, 0.5, weights=heavy)) > float(quantiles(da, 0.5)) + 0.3


def test_identical_distributions_give_matching_quantiles_and_unit_exceedance_ratio():
    rng = np.random.default_rng(3)
    forecast, truth = gamma_pair(rng)
    pairs = qq(forecast, truth, qs=(0.9, 0.99, 0.999))
    assert set(pairs.data_vars) == {"forecast", "truth"}
    np.testing.assert_allclose(pairs.forecast.values, pairs.truth.values, rtol=0.1)
    ratio = exceedance_ratio(forecast, truth, qs=(0.9, 0.99, 0.999))
    assert ratio.dims == ("quantile",)
    # truth exceeds its own q-quantile in ~(1 - q) of 40,000 points: 4000, 400, 40 events
    assert (np.abs(ratio.values - 1.0) < [0.05, 0.15, 0.5]).all(), ratio.values
    np.testing.assert_allclose(ratio.threshold.values, pairs.truth.values)
    assert abs(float(relative_quantile_error(forecast, truth, q=0.99))) < 0.05


def test_too_weak_tail_is_seen():
    rng = np.random.default_rng(4)
    forecast, truth = gamma_pair(rng, scale=0.7)
    ratio = exceedance_ratio(forecast, truth, qs=(0.9, 0.99))
    assert (ratio.values < 0.7).all()
    assert float(relative_quantile_error(forecast, truth, q=0.99)) == pytest.approx(-0.3, abs=0.05)
    pairs = qq(forecast, truth, qs=(0.99,))
    assert float(pairs.forecast[0]) < float(pairs.truth[0])


def test_exceedance_ratio_with_given_thresholds_hand_computed():
    forecast = xr.DataArray([[0.0, 1.0, 2.0, 3.0], [0.0, 0.0, 5.0, 5.0]], dims=("member", "x"))
    truth = xr.DataArray([0.0, 2.0, 2.0, 4.0], dims="x")
    ratio = exceedance_ratio(forecast, truth, thresholds=[1.5, 4.5])
    assert ratio.dims == ("threshold",)
    # > 1.5: forecast 4/8, truth 3/4 -> 2/3; > 4.5: forecast 2/8, truth 0 -> inf
    assert float(ratio[0]) == pytest.approx(2 / 3)
    assert np.isinf(float(ratio[1]))
    # "exceed" is strict: > 2 is forecast 3/8, truth 1/4
    assert float(exceedance_ratio(forecast, truth, thresholds=2.0)[0]) == pytest.approx(1.5)


def test_qq_pools_members_hand_computed():
    forecast = xr.DataArray([[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0]], dims=("member", "x"))
    truth = xr.DataArray([1.0, 2.0, 3.0, 4.0], dims="x")
    pairs = qq(forecast, truth, qs=(0.0, 0.5, 1.0))
    np.testing.assert_allclose(pairs.forecast.values, [0.0, 3.5, 7.0])
    np.testing.assert_allclose(pairs.truth.values, [1.0, 2.5, 4.0])
    assert float(relative_quantile_error(forecast, truth, q=0.5)) == pytest.approx(1.0 / 2.5)


def test_per_point_climatology_and_mask():
    rng = np.random.default_rng(5)
    forecast, truth = gamma_pair(rng, times=2000, ny=2, nx=3)
    # one grid point is twice as wet in the forecast; per-point thresholds single it out
    forecast[:, :, 0, 0] *= 2.0
    ratio = exceedance_ratio(forecast, truth, qs=(0.9,), dims=["time"])
    assert ratio.dims == ("quantile", "y", "x")
    assert float(ratio[0, 0, 0]) > 1.5
    others = ratio.values[0].ravel()[1:]
    np.testing.assert_allclose(others, 1.0, atol=0.15)
    mask = xr.DataArray(np.array([[False, True, True], [True, True, True]]), dims=("y", "x"))
    pooled = exceedance_ratio(forecast, truth, qs=(0.9,), mask=mask)
    assert float(pooled[0]) == pytest.approx(1.0, abs=0.05)
    assert float(exceedance_ratio(forecast, truth, qs=(0.9,))[0]) > 1.1


def test_numpy_inputs():
    rng = np.random.default_rng(6)
    truth = rng.normal(size=5000)
    forecast = 1.0 + 1.5 * rng.normal(size=(4, 5000))  # members along axis 0, a wider tail
    pooled = forecast.ravel()
    error = relative_quantile_error(forecast, truth, q=0.9)
    q_truth = np.quantile(truth, 0.9)
    assert isinstance(error, float)
    assert error == pytest.approx((np.quantile(pooled, 0.9) - q_truth) / abs(q_truth), rel=1e-12)
    ratio = exceedance_ratio(forecast, truth, qs=(0.5, 0.9))
    assert isinstance(ratio, np.ndarray) and ratio.shape == (2,)
    thresholds = np.quantile(truth, [0.5, 0.9])
    expected = [np.mean(pooled > t) / np.mean(truth > t) for t in thresholds]
    np.testing.assert_allclose(ratio, expected, rtol=1e-12)


def test_weighted_quantile_histogram_inverts_the_weighted_distribution():
    """Within one bin (2^-13 of the value) of the first value whose cumulative weight reaches q;
    weights add up block by block; one histogram is weighted or not."""
    from finescale.verify.extremes import QuantileHistogram

    rng = np.random.default_rng(5)
    n = 50_000
    samples = {
        "t2m": 285.0 + 6.0 * rng.standard_normal(n),
        "tp": np.where(rng.random(n) < 0.8, 0.0, rng.gamma(0.5, 2.0, n)),
        "u10": 1.0 + 4.0 * rng.standard_normal(n),
    }
    weights = np.cos(np.deg2rad(rng.uniform(-89.0, 89.0, n)))
    levels = np.array([0.01, 0.1, 0.5, 0.9, 0.99, 0.999])
    for name, values in samples.items():
        values = values.astype(np.float32)
        whole = QuantileHistogram().add(values, weights)
        parts = QuantileHistogram()
        for v, w in zip(np.array_split(values, 5), np.array_split(weights, 5), strict=True):
            parts.add(v, w)
        assert whole.count == pytest.approx(weights.sum(), rel=1e-12)
        np.testing.assert_allclose(parts.quantiles(levels), whole.quantiles(levels), rtol=1e-12)
        order = np.argsort(values, kind="stable")
        cumulative = np.cumsum(weights[order])
        exact = values[order][np.searchsorted(cumulative, levels * cumulative[-1])].astype(float)
        got = whole.quantiles(levels)
        assert np.all(np.abs(got - exact) <= 2.0**-13 * np.abs(exact) + 1e-30), (name, got, exact)
    dry = QuantileHistogram().add(samples["tp"].astype(np.float32), weights).quantiles([0.5])
    assert dry[0] == 0.0
    with pytest.raises(ValueError, match="either with weights or without"):
        QuantileHistogram().add([1.0], [1.0]).add([2.0])

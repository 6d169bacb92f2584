"""Per-time sums and the block bootstrap over days (finescale.verify.intervals)."""

import numpy as np
import pytest
import xarray as xr

from finescale.verify import intervals
from finescale.verify.bands import band_power, spectral_log_ratio_max
from finescale.verify.ranks import rank_histogram
from finescale.verify.scores import brier_score, crps_fair, spread_skill_ratio, twcrps
from finescale.verify.spectra import radial_psd


def test_time_sums_give_the_scores_of_finescale_verify():
    rng = np.random.default_rng(0)
    m, ny, nx = 8, 24, 32
    truth = rng.standard_normal((ny, nx))
    members = truth + 0.8 * rng.standard_normal((m, ny, nx)) + 0.3
    weights = np.cos(np.deg2rad(np.linspace(40, 50, ny)))[:, None] * np.ones(nx)
    bands = [(2.0, 4.0), (4.0, 8.0)]

    def power(fields):
        return band_power(radial_psd(fields), bands).values

    s = intervals.time_sums(members, truth, weights, np.random.default_rng(1), band_power=power)
    fc = xr.DataArray(members, dims=("member", "y", "x"))
    y = xr.DataArray(truth, dims=("y", "x"))
    w = xr.DataArray(weights, dims=("y", "x"))
    assert s["crps"] / s["weight"] == pytest.approx(float(crps_fair(fc, y, weights=w)), rel=1e-12)
    ssr = intervals.spread_skill("f", m)({f"f.{k}": v[None] for k, v in s.items()})[0]
    assert ssr == pytest.approx(float(spread_skill_ratio(fc, y, weights=w)), rel=1e-12)
    # continuous values: no ties, so the ranks do not depend on the random tie breaks
    np.testing.assert_allclose(s["ranks"], np.asarray(rank_histogram(fc, y, weights=w)), rtol=1e-12)
    largest = intervals.spectral_max("f")({f"f.{k}": v[None] for k, v in s.items()})[0]
    assert largest == pytest.approx(
        spectral_log_ratio_max(members, truth, min_wavelength=2.0, max_wavelength=8.0), rel=1e-10
    )


def test_time_sums_give_the_threshold_scores_of_extremes():
    """Brier score and twCRPS above a threshold, as finescale.verify and scoringrules give them,
    on an intermittent field (zeros and a long tail, like hourly precipitation)."""
    sr = pytest.importorskip("scoringrules")
    rng = np.random.default_rng(2)
    m, ny, nx = 10, 20, 30
    wet = rng.random((m + 1, ny, nx)) < 0.3
    values = np.where(wet, rng.gamma(0.6, 2.0, (m + 1, ny, nx)), 0.0)
    members, truth = values[:m], values[m]
    weights = np.cos(np.deg2rad(np.linspace(40, 50, ny)))[:, None] * np.ones(nx)
    thresholds = {"q99": np.quantile(truth, 0.99), "q9": np.quantile(truth, 0.9)}
    s = intervals.time_sums(
        members, truth, weights, np.random.default_rng(1), thresholds=thresholds
    )
    fc = xr.DataArray(members, dims=("member", "y", "x"))
    y = xr.DataArray(truth, dims=("y", "x"))
    w = xr.DataArray(weights, dims=("y", "x"))
    mean = {k: intervals.mean("f", k)({f"f.{k}": v[None] for k, v in s.items()})[0] for k in s}
    for key, t in thresholds.items():
        assert mean[f"brier_{key}"] == pytest.approx(
            float(brier_score(fc, y, t, weights=w)), rel=1e-12
        )
        assert mean[f"twcrps_{key}"] == pytest.approx(float(twcrps(fc, y, t, weights=w)), rel=1e-12)
        reference = sr.twcrps_ensemble(truth, np.moveaxis(members, 0, -1), t, estimator="fair")
        unweighted = intervals.time_sums(
            members, truth, np.ones_like(truth), np.random.default_rng(1), thresholds={key: t}
        )
        assert unweighted[f"twcrps_{key}"] / truth.size == pytest.approx(
            float(np.mean(reference)), rel=1e-10
        )
        assert 0 < mean[f"twcrps_{key}"] < mean["crps"]  # only the tail above t is scored


def test_daily_adds_up_the_times_of_each_day():
    times = np.array(["2021-01-01T00", "2021-01-01T06", "2021-01-02T00"], dtype="datetime64[h]")
    per_time = [
        {"a": np.array(1.0), "b": np.array([1.0, 2.0])},
        {"a": np.array(2.0), "b": np.array([0.0, 1.0])},
        {"a": np.array(5.0), "b": np.array([3.0, 3.0])},
    ]
    sums, days = intervals.daily(per_time, times)
    np.testing.assert_array_equal(
        days, np.array(["2021-01-01", "2021-01-02"], dtype="datetime64[D]")
    )
    np.testing.assert_array_equal(sums["a"], [3.0, 5.0])
    np.testing.assert_array_equal(sums["b"], [[1.0, 3.0], [3.0, 3.0]])


def test_bootstrap_counts_keep_each_world_whole_and_draw_whole_blocks():
    strata = np.array([0] * 7 + [1] * 5)
    counts = intervals.bootstrap_counts(strata, block_days=3, resamples=500, seed=2)
    np.testing.assert_array_equal(counts[:, :7].sum(axis=1), 7)
    np.testing.assert_array_equal(counts[:, 7:].sum(axis=1), 5)
    # every day of a world can be drawn, and blocks start anywhere a whole block fits
    assert (counts.sum(axis=0) > 0).all()
    with pytest.raises(ValueError, match="block_days"):
        intervals.bootstrap_counts(strata, block_days=0)


def _ar1(n: int, phi: float, rng: np.random.Generator) -> np.ndarray:
    x = np.empty(n)
    x[0] = rng.standard_normal() / np.sqrt(1 - phi**2)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + rng.standard_normal()
    return x


@pytest.mark.parametrize(
    ("phi", "block_days", "low", "high"), [(0.0, 1, 0.88, 0.99), (0.7, 8, 0.80, 0.99)]
)
def test_intervals_cover_the_true_mean_at_their_level(phi, block_days, low, high):
    """The 95 % interval of a mean holds the true mean about 95 % of the time, for independent
    days with single-day blocks and for persistent days (AR(1)) with blocks longer than the
    persistence (moving-block bootstraps run a little short of nominal on 60 days)."""
    rng = np.random.default_rng(3)
    hits, trials = 0, 200
    for trial in range(trials):
        x = 1.0 + _ar1(60, phi, rng)
        sums = {"x": x, "n": np.ones(60)}
        counts = intervals.bootstrap_counts(np.zeros(60), block_days, resamples=400, seed=trial)
        iv = intervals.interval(lambda s: s["x"] / s["n"], sums, counts)
        assert iv.value == pytest.approx(x.mean())
        hits += iv.ci95[0] <= 1.0 <= iv.ci95[1]
    assert low <= hits / trials <= high


def test_single_day_blocks_are_too_narrow_for_persistent_weather():
    """Why the blocks: with days correlated over several days, resampling single days
    understates the uncertainty of the mean; blocks of a few e-folding times do not."""
    rng = np.random.default_rng(4)
    x = _ar1(120, 0.8, rng)
    sums = {"x": x, "n": np.ones(x.size)}
    widths = {}
    for block in (1, 10):
        counts = intervals.bootstrap_counts(np.zeros(x.size), block, resamples=2000, seed=0)
        iv = intervals.interval(lambda s: s["x"] / s["n"], sums, counts)
        widths[block] = iv.ci95[1] - iv.ci95[0]
    # the variance of an AR(1) mean is (1 + phi) / (1 - phi) = 9 times the independent one's
    assert widths[10] > 2.0 * widths[1]


def test_undefined_resamples_are_counted_and_many_withhold_the_interval():
    """A ratio whose denominator is zero on the days a resample draws (no exceedance of a
    threshold on them) is undefined there: counted, and the interval withheld when more than
    2.5 % of resamples are, since their rank would decide the percentiles."""
    numerator = np.array([1.0, 2.0, 3.0, 0.0, 0.0])
    score = intervals.crps_ratio("a", "b")
    for nonzero_days, expect_interval in ((3, True), (1, False)):
        denominator = np.where(np.arange(5) < nonzero_days, 2.0, 0.0)
        sums = {"a.crps": numerator, "b.crps": denominator}
        counts = intervals.bootstrap_counts(np.zeros(5), 1, resamples=4000, seed=1)
        iv = intervals.interval(score, sums, counts)
        drawn_none = (counts[:, :nonzero_days] == 0).all(axis=1).sum()
        assert iv.undefined == drawn_none > 0
        assert iv.value == pytest.approx(6.0 / (2.0 * nonzero_days))
        if expect_interval:  # (2/5)^5: 1 % of resamples draw none of the three days
            assert iv.undefined < 0.025 * 4000
            drawn = counts @ denominator > 0
            ratios = (counts @ numerator)[drawn] / (counts @ denominator)[drawn]
            assert iv.ci95 == pytest.approx(tuple(np.percentile(ratios, [2.5, 97.5])))
            assert iv.as_dict()["undefined_resamples"] == iv.undefined
        else:  # (4/5)^5: a third of resamples miss the one day
            assert iv.ci95 is None and iv.as_dict()["ci95"] is None

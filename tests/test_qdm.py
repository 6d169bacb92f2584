"""Quantile delta mapping: known answers, an independent numpy reference, and the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from finescale.baselines import (
    WET_THRESHOLD,
    fit_quantile_delta_mapping,
    fit_quantile_mapping,
)
from finescale.baselines.qdm import RATIO_MAX, RATIO_MAX_TRACE
from finescale.cli import app
from finescale.config import load_config
from finescale.data.pairs import open_pair, split_times
from finescale.data.world import preset, simulate
from finescale.evaluation import run_evaluate

TRACE = WET_THRESHOLD[0]  # mm/h
SPLITS = "data.splits={train: 0.6, validation: 0.0, test: 0.4, gap_hours: 0}"


def _dataset(name: str, values: np.ndarray) -> xr.Dataset:
    """(time, y, x) values as one variable, hourly; tp in mm/h."""
    times = np.datetime64("2020-01-01T00", "ns") + np.arange(values.shape[0]) * np.timedelta64(
        1, "h"
    )
    attrs = {"units": "mm h-1"} if name == "tp" else {"units": "K"}
    return xr.Dataset({name: (("time", "y", "x"), values, attrs)}, coords={"time": times})


def _q(values: np.ndarray, p: float) -> np.ndarray:
    """Quantile p of (time, y, x) values at each point."""
    return np.quantile(values, p, axis=0)


# --------------------------------------------------------------------------------------------
# known answers


def test_additive_qdm_keeps_the_models_trend_that_qm_scales():
    """Truth = 281.5 + half the model's anomaly in training; the forecast period is the same
    model series warmed by 4 K. QDM gives the truth + 4 K (the model's change kept); QM maps
    through the training relation and passes on only half of it."""
    rng = np.random.default_rng(0)
    model = 280 + 5 * rng.standard_normal((500, 2, 3))
    truth = 281.5 + 0.5 * (model - 280)
    trend = 4.0
    fit = (_dataset("t2m", model), _dataset("t2m", truth))
    later = _dataset("t2m", model + trend)
    qdm = fit_quantile_delta_mapping(*fit).apply(later).t2m.values
    qm = fit_quantile_mapping(*fit).apply(later).t2m.values
    np.testing.assert_allclose(qdm, truth + trend, atol=1e-4)  # every value, not just the mean
    change_qdm, change_qm = qdm.mean() - truth.mean(), qm.mean() - truth.mean()
    assert abs(change_qdm - trend) < 1e-4
    assert abs(change_qm - 0.5 * trend) < 0.1, change_qm  # QM halves the trend


def test_multiplicative_qdm_keeps_the_relative_change_of_upper_quantiles():
    """Gamma-like rain with dry hours: truth = 1.8 x model in training; the forecast period's
    model rain is 1.3 x the training's. QDM's upper quantiles are 1.3 x the training truth's;
    QM's stop at the training truth's maximum (constant extrapolation)."""
    rng = np.random.default_rng(1)
    model = np.maximum(rng.gamma(0.4, 1.0, (800, 2, 3)) - 0.05, 0.0)
    truth = 1.8 * model
    fit = (_dataset("tp", model), _dataset("tp", truth))
    later = _dataset("tp", 1.3 * model)
    qdm = fit_quantile_delta_mapping(*fit).apply(later).tp.values
    qm = fit_quantile_mapping(*fit).apply(later).tp.values
    for p in (0.9, 0.99, 0.999):
        np.testing.assert_allclose(_q(qdm, p) / _q(truth, p), 1.3, rtol=1e-5, err_msg=str(p))
    # QM never leaves the training truth's range, so the change shrinks in the tail
    assert (qm.max(axis=0) <= truth.max(axis=0) * (1 + 1e-6)).all()
    assert (_q(qm, 0.999) / _q(truth, 0.999)).mean() < 1.2  # 1.14 here, QDM 1.30
    np.testing.assert_array_equal(qdm[model == 0], 0.0)  # dry stays dry
    assert qdm.min() == 0.0 and (qdm[(qdm > 0)] >= TRACE).all()  # no trace amounts


# --------------------------------------------------------------------------------------------
# against an independent reference on one point


def _reference(
    x_p: np.ndarray, m_h: np.ndarray, o_h: np.ndarray, k: int, ratio: bool
) -> np.ndarray:
    """QDM of one series written from Cannon et al.'s formulas with np.quantile and np.interp:
    tau from the forecast period's own quantiles, F_o and F_h read at tau."""
    probs = np.linspace(0.0, 1.0, k)
    q_p, q_h, q_o = (np.quantile(v, probs) for v in (x_p, m_h, o_h))
    tau = np.interp(x_p, q_p, probs)
    model, truth = np.interp(tau, probs, q_h), np.interp(tau, probs, q_o)
    if not ratio:
        return truth + x_p - model
    truth = np.interp(tau, probs, np.where(q_o < TRACE, 0.0, q_o))  # dry truth quantiles are 0
    change = np.array([x / m if m > 0 else RATIO_MAX for x, m in zip(x_p, model)])
    small = model < RATIO_MAX_TRACE * TRACE
    change[small] = np.minimum(change[small], RATIO_MAX)
    y = truth * change
    y[(y < TRACE) | (x_p < TRACE)] = 0.0
    return y


@pytest.mark.parametrize("name", ["t2m", "tp"])
def test_qdm_matches_a_numpy_reference_on_one_point(name):
    rng = np.random.default_rng(2)
    k = 41
    if name == "t2m":  # skewed, a different spread and a trend in the forecast period
        m_h = 275 + rng.gamma(2.0, 2.0, 600)
        o_h = 270 + 1.7 * rng.gamma(3.0, 1.5, 600)
        x_p = 278 + 1.4 * rng.gamma(2.0, 2.0, 300)
    else:  # the truth wet more often than the model, the forecast wetter still: every branch
        m_h = np.maximum(rng.gamma(0.3, 1.0, 600) - 0.02, 0.0)
        o_h = np.maximum(rng.gamma(0.6, 2.0, 600) - 0.02, 0.0)
        x_p = np.maximum(rng.gamma(0.5, 1.5, 300) - 0.02, 0.0)
    expected = _reference(x_p, m_h, o_h, k, ratio=name == "tp")
    fitted = fit_quantile_delta_mapping(
        _dataset(name, m_h[:, None, None]), _dataset(name, o_h[:, None, None]), n_quantiles=k
    )
    got = fitted.apply(_dataset(name, x_p[:, None, None]))[name].values.ravel()
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=2e-6, atol=1e-5)
    if name == "tp":  # the limited ratio and the trace rule were exercised, and rain remains
        assert (expected == 0).any() and (expected > 0).mean() > 0.2


def test_a_period_without_the_variable_or_with_other_dims_is_refused():
    fitted = fit_quantile_delta_mapping(
        _dataset("t2m", np.ones((10, 2, 2))), _dataset("t2m", np.ones((10, 2, 2)))
    )
    with pytest.raises(KeyError, match="'t2m'"):
        fitted.apply(_dataset("tp", np.ones((5, 2, 2))))
    with pytest.raises(ValueError, match="'t2m' has dims"):
        fitted.apply(_dataset("t2m", np.ones((5, 2, 2))).rename(x="lon"))


# --------------------------------------------------------------------------------------------
# the command line on a tiny world

runner = CliRunner()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("qdm") / "world"
    params = preset("alps-small").model_copy(update={"days": 6.0, "start": "2021-07-01T00:00"})
    return simulate(out, params, seed=1)


def test_cli_writes_a_qdm_store_that_evaluate_scores(world, tmp_path):
    out = tmp_path / "qdm.zarr"
    args = [
        "baseline",
        "--method",
        "qdm",
        "--config",
        str(world / "finescale.yaml"),
        "--out",
        str(out),
        "--set",
        SPLITS,
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    fc = xr.open_zarr(out).load()
    assert (
        fc.attrs["method"] == "qdm" and "quantile delta mapping" in fc.attrs["method_description"]
    )
    assert fc.attrs["fit_period"].startswith("train: ") and fc.attrs["forecast_period"].startswith(
        "test: "
    )
    assert json.loads(fc.attrs["parameters"])["ratio_max"] == RATIO_MAX
    # the store holds what the Python API computes on the same blocks
    cfg = load_config(world / "finescale.yaml", [SPLITS]).data
    pair = open_pair(cfg)
    blocks = split_times(pair.hr.time.values, cfg.splits)
    from finescale.baselines import interpolation

    fitted = fit_quantile_delta_mapping(
        interpolation(pair.lr.sel(time=blocks["train"]), pair.hr), pair.hr.sel(time=blocks["train"])
    )
    expected = fitted.apply(interpolation(pair.lr.sel(time=blocks["test"]), pair.hr)).compute()
    for name in ("t2m", "u10", "v10", "tp"):
        assert fc[name].dims == ("member", "time", "y", "x") and fc[name].dtype == np.float32
        np.testing.assert_array_equal(fc[name].isel(member=0).values, expected[name].values)
    report = run_evaluate(out, world / "hr.zarr", tmp_path / "eval", lr_path=world / "lr.zarr")
    metrics = json.loads((report / "metrics.json").read_text())
    for name in ("t2m", "u10", "v10", "tp"):
        assert np.isfinite(metrics["forecast"][name]["crps_fair"]), name

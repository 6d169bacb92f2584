"""Evaluation on the sphere: area weights, zonal spectra, and grids stored in another order.

A small global grid (5 degrees, longitude periodic): an ensemble that is perfect except for a
bad polar cap scores far better with cos-latitude weights (the cap is a sliver of the area)
than with plain means, and both equal sums computed by hand with :mod:`finescale.verify`. A
forecast stored north->south with longitudes 0..360 is reordered onto the truth's
-180..180 south->north grid and scores the same.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from rich.console import Console

from finescale.evaluation import evaluate
from finescale.verify import (
    brier_score,
    crps_fair,
    exceedance_ratio,
    mae,
    rank_histogram,
    rmse,
    spread,
    spread_skill_ratio,
    twcrps,
    weighted_mean,
    zonal_psd,
)
from finescale.verify.report import summary_table

LAT = np.arange(-87.5, 90.0, 5.0)  # 36 rows, cell centres
LON = np.arange(-180.0, 180.0, 5.0)  # 72 columns, periodic
TIMES = np.arange(
    np.datetime64("2020-01-01T00"), np.datetime64("2020-01-01T06"), np.timedelta64(1, "h")
)
MEMBERS = 5
CAP = 70.0  # latitude above which the ensemble is bad


def _grid() -> dict:
    lat2, lon2 = np.meshgrid(LAT, LON, indexing="ij")
    return {"time": TIMES, "lat": (("y", "x"), lat2), "lon": (("y", "x"), lon2)}


@pytest.fixture(scope="module")
def sphere():
    rng = np.random.default_rng(4)
    shape = (TIMES.size, LAT.size, LON.size)
    truth_values = 280.0 + 10.0 * rng.standard_normal(shape)
    spread_values = 0.5 * rng.standard_normal((MEMBERS, *shape))
    members = truth_values + spread_values
    cap = LAT[None, None, :, None] > CAP
    members = np.where(cap, members + 8.0, members)  # a warm, confident polar cap
    truth = xr.Dataset({"t2m": (("time", "y", "x"), truth_values, {"units": "K"})}, coords=_grid())
    forecast = xr.Dataset(
        {"t2m": (("member", "time", "y", "x"), members, {"units": "K"})}, coords=_grid()
    )
    return forecast, truth


def test_area_weights_shrink_a_bad_polar_cap_and_equal_the_cos_weighted_mean(sphere):
    forecast, truth = sphere
    weighted = evaluate(forecast, truth)
    plain = evaluate(forecast, truth, weighting="none")
    assert weighted["meta"]["weighting"] == "area" and plain["meta"]["weighting"] == "none"
    w = np.cos(np.deg2rad(truth["lat"]))
    pointwise = crps_fair(forecast["t2m"], truth["t2m"], dims=[])
    by_hand = float((pointwise * w).sum() / (w.sum() * TIMES.size))
    got, old = weighted["forecast"]["t2m"]["crps_fair"], plain["forecast"]["t2m"]["crps_fair"]
    assert got == pytest.approx(by_hand, rel=1e-10)
    assert old == pytest.approx(float(pointwise.mean()), rel=1e-10)
    # the cap is 4 of 36 rows (11% of the points) but 3% of the area
    assert got < 0.4 * old


def test_every_weighted_average_equals_the_public_scores_with_weights(sphere):
    forecast, truth = sphere
    f, y = forecast["t2m"], truth["t2m"]
    w = xr.DataArray(np.cos(np.deg2rad(LAT)), dims="y").broadcast_like(y.isel(time=0))
    got = evaluate(forecast, truth)
    scores = got["forecast"]["t2m"]
    t = got["meta"]["thresholds"]["t2m"]
    expected = {
        "mae_mean": mae(f, y, weights=w),
        "rmse_mean": rmse(f, y, weights=w),
        "bias_mean": weighted_mean(f.mean("member") - y, weights=w),
        "spread": spread(f, weights=w),
        "ssr": spread_skill_ratio(f, y, weights=w),
    }
    for key in ("q99", "q999"):
        expected[f"brier_{key}"] = brier_score(f, y, t[key], weights=w)
        expected[f"twcrps_{key}"] = twcrps(f, y, t[key], weights=w)
        expected[f"exceedance_ratio_{key}"] = exceedance_ratio(f, y, thresholds=t[key], weights=w)
    for key, value in expected.items():
        assert scores[key] == pytest.approx(float(np.asarray(value).squeeze()), rel=1e-9), key
    # rank counts are sums of weights (mean 1): no ties here, so the tie breaks do not matter
    counts = rank_histogram(f, y, weights=w / w.mean())
    np.testing.assert_allclose(
        got["curves"]["rank_histogram"]["t2m"]["forecast"], counts.values, rtol=1e-9
    )
    # a region: the same weights, on its points alone
    region = evaluate(forecast, truth, regions={"tropics": (-30.0, 30.0, -180.0, 180.0)})
    inside = (np.abs(truth["lat"]) <= 30.0).broadcast_like(w)
    for key, score in (("crps_fair", crps_fair), ("mae_mean", mae), ("ssr", spread_skill_ratio)):
        value = float(score(f, y, weights=w, mask=inside))
        assert region["regions"]["tropics"]["forecast"]["t2m"][key] == pytest.approx(
            value, rel=1e-9
        )
    # the thresholds are quantiles of the cos-weighted truth: within a bin (2^-13) of the value
    # where the weighted distribution function reaches 0.99
    values = np.sort(y.values.ravel())
    order = np.argsort(y.values.ravel())
    cdf = np.cumsum(np.broadcast_to(w.values, y.shape).ravel()[order])
    q99 = values[np.searchsorted(cdf, 0.99 * cdf[-1])]
    assert t["q99"] == pytest.approx(q99, rel=2 * 2.0**-13)


def test_global_grids_get_zonal_spectra(sphere):
    forecast, truth = sphere
    lon = np.deg2rad(truth["lon"].values)
    wave = np.cos(6 * lon) * (1.0 + 0.5 * np.sin(np.deg2rad(truth["lat"].values)))
    # pure zonal wave number 6: the spectrum of every latitude circle peaks at m = 6
    for row in range(LAT.size):
        psd = zonal_psd(wave[row : row + 1], lat=LAT[row : row + 1])
        assert int(psd["zonal_wavenumber"][int(np.argmax(psd.values))]) == 6, LAT[row]
    waves = truth.assign(t2m=truth["t2m"] * 0 + 280.0 + 5.0 * wave)
    got = evaluate(forecast.isel(member=slice(0, 2)), waves)
    spectra = got["meta"]["spectra"]
    assert spectra["kind"] == "zonal" and spectra["method"].startswith(
        "zonal spectra along latitude circles"
    )
    equator_km = 2 * np.pi * 6371.0
    assert got["meta"]["grid"]["spectral_grid_length_km"] == pytest.approx(equator_km / LON.size)
    curve = got["curves"]["spectra"]["t2m"]
    peak = curve["wavelength_km"][int(np.argmax(curve["truth"]))]
    assert peak == pytest.approx(equator_km / 6)
    # bands: from 2 equatorial grid lengths to the assumed LR scale, said in a note
    assert got["meta"]["spectral_bands_km"][0][0] == pytest.approx(2 * equator_km / LON.size)
    assert any(
        n.startswith("no LR given: largest spectral scale assumed 8") for n in got["meta"]["notes"]
    )


def test_a_flipped_and_rolled_forecast_is_reordered_onto_the_truth(sphere):
    forecast, truth = sphere
    # north->south and 0..360: as ERA5 GRIB files store a global grid
    stored = forecast.isel(y=slice(None, None, -1)).roll(x=36, roll_coords=True)
    stored = stored.assign_coords(lon=stored["lon"] % 360.0)
    assert float(stored["lon"][0, 0]) == 0.0 and float(stored["lat"][0, 0]) == LAT[-1]
    plain = evaluate(forecast, truth, weighting="none")
    moved = evaluate(stored, truth, weighting="none")
    assert moved["forecast"] == plain["forecast"] and moved["curves"] == plain["curves"]
    note = next(n for n in moved["meta"]["notes"] if "reordered by lat/lon" in n)
    assert "y flipped" in note and "x rolled by 36 points" in note
    # a region mask stored north->south is reordered too: the same points as the box
    cap = xr.DataArray(
        (forecast["lat"] > CAP).values,
        dims=("y", "x"),
        coords={"lat": forecast["lat"], "lon": forecast["lon"]},
    )
    by_mask = evaluate(
        forecast, truth, regions={"cap": cap.isel(y=slice(None, None, -1))}, weighting="none"
    )
    by_box = evaluate(
        forecast, truth, regions={"cap": (CAP, 90.0, -180.0, 180.0)}, weighting="none"
    )
    assert (
        by_mask["regions"] == by_box["regions"]
        and by_mask["meta"]["regions"]["cap"]["points"] == 4 * LON.size
    )
    assert any(
        n.startswith("region 'cap': the truth's grid points in another order")
        for n in by_mask["meta"]["notes"]
    )
    # a grid of other points is still refused
    shifted = forecast.assign_coords(lon=forecast["lon"] + 2.5)
    with pytest.raises(
        ValueError, match="lon differs from the truth's .* not the same grid points"
    ):
        evaluate(shifted, truth)


def test_summary_table_fits_80_columns(sphere):
    forecast, truth = sphere
    metrics = evaluate(
        forecast.assign(wind_speed=forecast["t2m"]),
        truth.assign(wind_speed=truth["t2m"]),
        references={
            "bicubic": forecast.assign(wind_speed=forecast["t2m"]).isel(member=[0]),
            "quantile-mapping": forecast.assign(wind_speed=forecast["t2m"]).isel(member=[1]),
            "oracle": forecast.assign(wind_speed=forecast["t2m"]),
        },
        name="diffusion-sigma20",
    )
    console = Console(width=80, record=True)
    console.print(summary_table(metrics))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    for word in ("wind_speed", "t2m", "diffusion-sigma20", "quantile-mapping", "bicubic", "oracle"):
        assert word in text, (word, text)


def test_report_says_the_weighting_and_the_spectral_method(sphere):
    import matplotlib.pyplot as plt

    from finescale.verify import figures
    from finescale.verify.report import render_report

    forecast, truth = sphere
    metrics = evaluate(forecast, truth)
    fig = figures.spectra(metrics)  # zonal: drawn against the equatorial wavelength
    assert "Zonal power spectra" in fig._suptitle.get_text()
    plt.close(fig)
    page = render_report(metrics, {"spectra": b"\x89PNG fake"})
    caption = page[page.index('id="fig-spectra"') :]
    assert "Method: zonal spectra along latitude circles, cos-latitude weighted" in caption
    assert "weighted by grid-cell area (cos latitude)" in page and "quantiles, thresholds" in page
    plain = render_report(evaluate(forecast, truth, weighting="none"), {})
    assert "plain means over the grid points (unweighted)" in plain


def test_unweighted_scores_are_those_of_the_evaluator_before_area_weights(sphere):
    """``weighting="none"`` on a regional crop: the numbers finescale.verify.evaluate gave
    (commit fda0616) before the runner moved and gained weights, to round-off."""
    forecast, truth = (ds.isel(x=slice(0, 40)) for ds in sphere)
    metrics = evaluate(forecast, truth, weighting="none")
    before = {
        "crps_fair": 0.9608747622896477,
        "ssr": 0.20371723380275455,
        "brier_q99": 0.004953703703703703,
        "twcrps_q999": 0.004697165445261479,
        "spectral_log_ratio_max": 0.0021780297583645883,
        "q99_rel_error": 0.005788746599142185,
    }
    for key, value in before.items():
        assert metrics["forecast"]["t2m"][key] == pytest.approx(value, rel=1e-12), key
    assert metrics["meta"]["thresholds"]["t2m"] == pytest.approx(
        {"q99": 303.3471875, "q999": 310.72646875000066}, rel=1e-12
    )
    assert metrics["curves"]["rank_histogram"]["t2m"]["forecast"] == [
        1207,
        1259,
        2425,
        2332,
        1185,
        232,
    ]
    assert metrics["meta"]["spectra"]["kind"] == "radial"

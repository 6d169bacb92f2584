"""`finescale evaluate` on a small summer Alps world: the oracle against deliberately bad forecasts.

One world and one oracle (module fixtures) serve every test; the bad references are the truth
smoothed by a Gaussian of 3 grid lengths (no small scales, like an MSE-trained model; milder
smoothing would keep so much of the truth's own mid scales that it could beat the oracle,
which only knows the LR state) and the oracle's ensemble mean (a deterministic forecast, also
missing the first time, to exercise the time intersection).
"""

from __future__ import annotations

import json
import re

import matplotlib.image
import numpy as np
import pytest
import xarray as xr
from scipy.ndimage import gaussian_filter
from typer.testing import CliRunner

from finescale.cli import app
from finescale.data.world import oracle, preset, simulate
from finescale.io import write_zarr
from finescale.verify.evaluate import (
    FIGURES,
    METRIC_KEYS,
    evaluate,
    grid_length_km,
    open_dataset,
    parse_references,
    prepare,
    run_evaluate,
)

SUMMER = preset("alps-small").model_copy(update={"days": 6.0, "start": "2021-07-01T00:00"})
MEMBERS = 8
# an afternoon: convection, so precipitation has a real tail
TIMES = np.arange(np.datetime64("2021-07-05T10"), np.datetime64("2021-07-05T22"), np.timedelta64(1, "h"))
VARIABLES = {"t2m", "tp", "u10", "v10", "wind_speed"}
REQUIRED = {"crps_fair", "rmse_mean", "ssr", "spectral_log_ratio_max", "q999_rel_error"}


def _strict_json(text: str) -> dict:
    """json.loads that refuses NaN/Infinity (invalid JSON that Python would accept)."""

    def reject(constant: str) -> None:
        raise ValueError(f"invalid JSON constant {constant}")

    return json.loads(text, parse_constant=reject)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    simulate(root / "world", SUMMER, seed=1)
    oracle(root / "world", MEMBERS, root / "oracle.zarr", times=TIMES)
    truth = xr.open_zarr(root / "world" / "hr.zarr").sel(time=TIMES).load()
    smoothed = truth.copy()
    for name in truth.data_vars:
        smoothed[name].values = gaussian_filter(truth[name].values, sigma=(0, 3, 3), mode="nearest")
    write_zarr(smoothed, root / "smoothed.zarr")
    mean = xr.open_zarr(root / "oracle.zarr").mean("member").isel(time=slice(1, None))
    write_zarr(mean.load(), root / "mean.zarr")
    return {
        "root": root,
        "hr": root / "world" / "hr.zarr",
        "lr": root / "world" / "lr.zarr",
        "oracle": root / "oracle.zarr",
        "smoothed": root / "smoothed.zarr",
        "mean": root / "mean.zarr",
    }


@pytest.fixture(scope="module")
def evaluated(world):
    out = run_evaluate(
        world["oracle"], world["hr"], world["root"] / "eval", lr_path=world["lr"],
        references={"smoothed": world["smoothed"], "mean": world["mean"]},
    )
    return out, _strict_json((out / "metrics.json").read_text())


def test_metrics_shape_is_strict_json(evaluated):
    _, metrics = evaluated
    assert {"forecast", "references", "meta", "curves"} <= set(metrics)
    assert set(metrics["forecast"]) == VARIABLES
    assert set(metrics["references"]) == {"smoothed", "mean"}
    every_key = {k for k, _, _ in METRIC_KEYS}
    for block in (metrics["forecast"], *metrics["references"].values()):
        for name in VARIABLES:
            assert REQUIRED <= set(block[name]) and every_key <= set(block[name])
    meta = metrics["meta"]
    assert meta["members"] == {"forecast": MEMBERS, "smoothed": 1, "mean": 1}
    assert set(meta["variables"]) == VARIABLES and meta["derived"] == {"wind_speed": "hypot(u10, v10)"}
    assert meta["forecast_name"] == "oracle" and meta["finescale_version"]
    assert meta["sources"]["references"]["smoothed"].endswith("smoothed.zarr")
    assert set(meta["thresholds"]["tp"]) == {"q99", "q999"} and meta["thresholds"]["tp"]["q99"] > 0
    # LR grid length from the LR file: 8 x 0.05 degrees
    assert meta["grid"]["lr_grid_length_km"] / meta["grid"]["hr_grid_length_km"] == pytest.approx(8, rel=0.02)


def test_times_are_the_intersection(evaluated):
    _, metrics = evaluated
    times = metrics["meta"]["times"]
    assert times["scored"] == TIMES.size - 1  # the mean lacks the first time
    assert times["first"] == str(np.datetime_as_string(TIMES[1], unit="m"))
    assert times["dropped"]["forecast"] == 1 and times["dropped"]["mean"] == 0
    assert times["dropped"]["truth"] == SUMMER.days * 24 - (TIMES.size - 1)
    assert any("left out" in note for note in metrics["meta"]["notes"])


def test_oracle_beats_the_smoothed_truth(evaluated):
    _, metrics = evaluated
    oracle_scores, smoothed = metrics["forecast"], metrics["references"]["smoothed"]
    for name in VARIABLES:
        assert oracle_scores[name]["crps_fair"] < smoothed[name]["crps_fair"], name
        assert oracle_scores[name]["spectral_log_ratio_max"] < smoothed[name]["spectral_log_ratio_max"], name
        # smoothing removes the small scales: at least 10x too little power in some band
        assert smoothed[name]["spectral_log_ratio_max"] > 1.0, name
        # not 0: with 11 hours the truth's convective-scale rain power is one noisy sample
        # (about 0.3 for tp here), while the oracle's is averaged over 8 members
        assert oracle_scores[name]["spectral_log_ratio_max"] < 0.5, name


def test_oracle_is_calibrated(evaluated):
    _, metrics = evaluated
    for name in VARIABLES:
        assert 0.8 <= metrics["forecast"][name]["ssr"] <= 1.2, name
        ranks = np.asarray(metrics["curves"]["rank_histogram"][name]["forecast"])
        assert ranks.size == MEMBERS + 1
        assert ranks.min() > 0.7 * ranks.mean() and ranks.max() < 1.3 * ranks.mean(), name


def test_one_member_forecast_scores_its_absolute_error(evaluated):
    _, metrics = evaluated
    for ref in ("smoothed", "mean"):
        for name in VARIABLES:
            scores = metrics["references"][ref][name]
            assert scores["crps_fair"] == pytest.approx(scores["mae_mean"], rel=1e-6)
            assert scores["ssr"] is None and scores["spread"] is None
    assert "rank_histogram" in metrics["curves"] and "mean" not in metrics["curves"]["rank_histogram"]["t2m"]
    # the ensemble mean has the oracle's RMSE (same mean) but a worse CRPS: it has no spread
    for name in VARIABLES - {"wind_speed"}:
        mean, ens = metrics["references"]["mean"][name], metrics["forecast"][name]
        assert mean["crps_fair"] > ens["crps_fair"]


def test_figures_are_png_with_content(evaluated):
    out, _ = evaluated
    for key, _ in FIGURES:
        path = out / "figures" / f"{key}.png"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", key
        image = matplotlib.image.imread(path)
        assert image.shape[0] > 200 and image.shape[1] > 200 and float(image[..., :3].std()) > 0.02, key


def test_report_is_self_contained(evaluated):
    out, _ = evaluated
    page = (out / "report.html").read_text()
    links = re.findall(r"""(?:src|href)\s*=\s*["']?([^"'\s>]+)""", page, flags=re.IGNORECASE)
    assert links and all(link.startswith(("data:", "#")) for link in links), [x[:40] for x in links if not x.startswith(("data:", "#"))]
    assert not re.search(r"https?://|@import|url\(", page)
    images = re.findall(r'<img [^>]*src="([^"]{0,30})', page)
    assert len(images) == len(FIGURES) and all(i.startswith("data:image/png;base64,") for i in images)
    for word in (*VARIABLES, "smoothed", "mean", "oracle", "crps_fair", "Which one is real?"):
        assert word in page, word
    assert 'class="best"' in page


def test_grid_length_of_a_regular_grid():
    lat = np.arange(44.0, 48.0, 0.05)
    lon = np.arange(5.0, 15.0, 0.05)
    dy, dx, effective = grid_length_km(*np.meshgrid(lat, lon, indexing="ij"))
    assert dy == pytest.approx(6371 * np.deg2rad(0.05), rel=1e-6)
    assert dx == pytest.approx(dy * np.cos(np.deg2rad(46.0)), rel=0.01)
    assert effective == pytest.approx(np.sqrt(dy * dx))


def test_deterministic_forecast_from_python(world):
    """evaluate() on in-memory datasets; a forecast without a member dim is one member."""
    truth = xr.open_zarr(world["hr"])
    forecast = xr.open_zarr(world["smoothed"])[["t2m"]].isel(time=slice(0, 3))
    metrics = evaluate(forecast, truth, name="smooth")
    assert list(metrics["forecast"]) == ["t2m"] and metrics["references"] == {}
    scores = metrics["forecast"]["t2m"]
    assert scores["crps_fair"] == pytest.approx(scores["mae_mean"], rel=1e-6) and scores["ssr"] is None
    # no LR given: the largest scale scored is 8 HR grid lengths
    grid = metrics["meta"]["grid"]
    assert grid["lr_grid_length_km"] == pytest.approx(8 * grid["hr_grid_length_km"])
    assert metrics["meta"]["times"]["scored"] == 3 and metrics["meta"]["members"]["forecast"] == 1


def test_clear_errors(world, tmp_path):
    truth = xr.open_zarr(world["hr"])
    ens = xr.open_zarr(world["oracle"])
    paths = {"forecast": "ens.zarr", "truth": "hr.zarr", "bad": "bad.zarr"}
    with pytest.raises(FileNotFoundError, match="forecast .*missing.zarr: no such file"):
        open_dataset(tmp_path / "missing.zarr", "forecast")
    with pytest.raises(ValueError, match=r"bad \(bad.zarr\): grid of 40 x 200"):
        prepare(ens, truth, references={"bad": ens.isel(y=slice(0, 40))}, paths=paths)
    shifted = ens.assign_coords(lat=ens["lat"] + 0.05)
    with pytest.raises(ValueError, match=r"forecast \(ens.zarr\): lat differs from the truth's"):
        prepare(shifted, truth, paths=paths)
    with pytest.raises(KeyError, match=r"bad \(bad.zarr\): missing variable\(s\) tp"):
        prepare(ens, truth, references={"bad": ens.drop_vars("tp")}, paths=paths)
    with pytest.raises(KeyError, match=r"truth \(hr.zarr\): no variable 'q2m'"):
        prepare(ens.assign(q2m=ens["t2m"]), truth, variables=["q2m"], paths=paths)
    late = ens.assign_coords(time=ens["time"] + np.timedelta64(400, "D"))
    with pytest.raises(ValueError, match="no time is in every source"):
        prepare(late, truth, paths=paths)
    with pytest.raises(ValueError, match="NAME=PATH"):
        parse_references(["just-a-path.zarr"])
    with pytest.raises(ValueError, match="reserved"):
        parse_references(["truth=x.zarr"])


def test_cli_help_and_run(world, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate", "--help"], terminal_width=120)
    assert result.exit_code == 0
    assert "Examples" in result.output and "--reference" in result.output and "finescale evaluate --forecast" in result.output
    out = tmp_path / "cli-eval"
    args = ["evaluate", "--forecast", str(world["oracle"]), "--truth", str(world["hr"]), "--out", str(out),
            "--reference", f"smoothed={world['smoothed']}", "--variable", "t2m", "--name", "oracle-test"]
    result = runner.invoke(app, args, terminal_width=120)
    assert result.exit_code == 0, result.output
    assert "t2m" in result.output and "smoothed" in result.output
    metrics = _strict_json((out / "metrics.json").read_text())
    assert list(metrics["forecast"]) == ["t2m"] and metrics["meta"]["forecast_name"] == "oracle-test"
    assert (out / "report.html").stat().st_size > 10_000 and (out / "figures" / "maps.png").is_file()
    missing = runner.invoke(app, ["evaluate", "--forecast", str(tmp_path / "nope.zarr"), "--truth", str(world["hr"]), "--out", str(out)])
    assert missing.exit_code == 2 and "nope.zarr" in missing.output

"""benchmarks/conditional_mean.py: its score is 1 for the exact conditional mean and grows by
the squared error of the mean over the conditional variance, in each variable's transformed
space."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # the scripts import their neighbours by name

from conditional_mean import daily_sums, excess
from remedies import merged, split_variant
from skill import VARIABLES

from finescale.config import ExperimentConfig, TransformConfig
from finescale.config.load import validate
from finescale.verify import intervals

TIMES = np.arange("2021-01-01T00", "2021-01-07T00", 6, dtype="datetime64[h]").astype(
    "datetime64[ns]"
)


def fields(values: np.ndarray) -> xr.Dataset:
    """A dataset of every scored variable on a small lat-lon grid, (member, time, y, x)."""
    lat = np.broadcast_to(np.linspace(44.0, 48.0, values.shape[-2])[:, None], values.shape[-2:])
    return xr.Dataset(
        {v: (("member", "time", "y", "x"), values) for v in VARIABLES},
        coords={"time": TIMES, "lat": (("y", "x"), lat)},
    )


def scores(
    offset: float, transform: TransformConfig | None = None, members: int = 1
) -> dict[str, float]:
    """The benchmark's ratio per variable for a prediction ``offset`` from the exact mean of
    a world whose HR values are mu + N(0, 1) in the transformed space; with ``members`` > 1 the
    prediction is an exact ensemble of that size, offset."""
    rng = np.random.default_rng(0)
    shape = (TIMES.size, 24, 32)
    mu = 0.5 * rng.normal(size=shape) + 6.0  # positive draws: log1p can take them back
    draws = mu[None] + rng.normal(size=(17, *shape))  # the truth, then 16 oracle members
    predicted = mu[None] + offset
    if members > 1:
        predicted = predicted + rng.normal(size=(members, *shape))
    if transform is not None:  # back to physical units: the benchmark transforms forward
        draws, predicted = (transform.scale * np.expm1(x) for x in (draws, predicted))
    transforms = {v: transform for v in VARIABLES}
    truth = fields(draws[:1]).isel(member=0)
    sums, days = daily_sums(fields(predicted), fields(draws[1:]), truth, transforms)
    assert days.size == 6
    counts = intervals.bootstrap_counts(np.zeros(days.size), 2, 200)
    return {v: intervals.interval(excess(v), sums, counts).value for v in VARIABLES}


def test_the_exact_mean_scores_one_and_an_offset_adds_its_square():
    for v, value in scores(0.0).items():
        assert abs(value - 1.0) < 0.03, (v, value)
    for v, value in scores(0.5).items():
        assert abs(value - 1.25) < 0.04, (v, value)


def test_the_ratio_is_taken_in_the_transformed_space():
    transform = TransformConfig(kind="log1p", scale=0.1)
    for v, value in scores(0.5, transform).items():
        assert abs(value - 1.25) < 0.04, (v, value)


def test_an_ensemble_is_scored_by_its_members_mean():
    for v, value in scores(0.0, members=4).items():  # an exact ensemble's mean: 1 + 1/M
        assert abs(value - 1.25) < 0.04, (v, value)


def test_bands_score_their_own_points():
    """A prediction exact on the western half and 1 off on the eastern half: 1 and 2 by band."""
    rng = np.random.default_rng(1)
    shape = (TIMES.size, 24, 32)
    draws = rng.normal(size=(17, *shape))
    predicted = np.zeros((1, *shape))
    predicted[..., 16:] += 1.0
    band = np.zeros(shape[1:], dtype=int)
    band[:, 16:] = 1
    truth = fields(draws[:1]).isel(member=0)
    sums, _ = daily_sums(fields(predicted), fields(draws[1:]), truth, {}, band)
    counts = intervals.bootstrap_counts(np.zeros(6), 2, 200)
    for v in VARIABLES:
        west, east = (intervals.interval(excess(v, b), sums, counts).value for b in (0, 1))
        assert abs(west - 1.0) < 0.05 and abs(east - 2.0) < 0.08, (v, west, east)
        total = sums[f"{v}.squared_error"].sum()
        assert np.isclose(sums[f"{v}.squared_error.by_band"].sum(), total)


CONFIGS = sorted((BENCHMARKS / "configs").glob("conditional-mean-*.yaml"))


def skill_stage(stage: str) -> dict:
    """A stage of the held-out run's config (skill-means-cpu.yaml) on a one-variable data
    section: the base a screen's overrides are merged into."""
    skill = yaml.safe_load((BENCHMARKS / "configs" / "skill-means-cpu.yaml").read_text())
    variables = {"t2m": {"name": "t2m", "units": "K"}}
    data = {
        "lr": {"path": "lr.zarr", "variables": variables},
        "hr": {"path": "hr.zarr", "variables": variables},
    }
    return {"data": data, **skill[stage]}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_variant_is_a_valid_regression_config(path):
    # a typo in an override would otherwise surface only after the earlier variants' training
    spec = yaml.safe_load(path.read_text())
    assert spec.get("split", "validation") in ("validation", "train")
    base = skill_stage("regression")
    assert spec["variants"]
    for name, overrides in spec["variants"].items():
        cfg = validate(merged(base, overrides or {}), ExperimentConfig, source=f"{path} {name}")
        assert cfg.model.kind == "regression"


REMEDIES = sorted((BENCHMARKS / "configs").glob("remedies-*.yaml"))


@pytest.mark.parametrize("path", REMEDIES, ids=[p.stem for p in REMEDIES])
def test_every_remedy_is_a_valid_pair_of_configs(path):
    # the diffusion overrides and, under `regression`, the regression's, each on its own base
    spec = yaml.safe_load(path.read_text())
    diffusion_base = merged(
        skill_stage("diffusion"), {"model": {"regression_checkpoint": "r.ckpt"}}
    )
    regression_base = skill_stage("regression")
    assert spec["variants"]
    for name, overrides in spec["variants"].items():
        diffusion, regression, sample = split_variant(overrides or {})
        tree = merged(diffusion_base, {**diffusion, "sample": sample})  # empty: the base's
        cfg = validate(tree, ExperimentConfig, source=f"{path} {name}")
        assert cfg.model.kind == "diffusion"
        mu = validate(merged(regression_base, regression), ExperimentConfig, source=name)
        assert mu.model.kind == "regression"

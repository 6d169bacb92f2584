"""Each task of the AtmoRep held-out benchmark on one world: the ensembles, the references beside
them, and their per-day sums (cached in the task's folder), then the figures.

A task's result on a world is a mapping part -> (daily sums, days): one part ``all``, or one per
lead for nowcasts (``1h``, ``2h``, ...). The sources are ``ours`` and, where given, ``scratch``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from atmorep_models import Run, World, bias_stores, time_reference
from atmorep_scores import Sums, bias_figures, day_sums, ensemble_figures, load_sums, save_sums

from finescale.evaluation.passes import Spectrum
from finescale.evaluation.prepare import spectral_setup
from finescale.verify import intervals
from finescale.verify.bands import band_power
from finescale.verify.extremes import QuantileHistogram
from finescale.verify.fields import area_weights

VARIABLES = ("t2m", "u10", "v10", "tp")
#: what each task compares with: one-member references in time, the skill run's ensembles
REFERENCES = {
    "interpolation": ("linear",),
    "nowcast": ("persistence",),
    "downscale": ("diffusion", "regression", "oracle", "qdm"),
}
#: the AtmoRep prediction task of each benchmark task
PREDICT = {"interpolation": "interpolation", "nowcast": "forecast", "downscale": "targets"}
Parts = dict[str, tuple[Sums, np.ndarray]]


def cached(path: Path, run: Run, name: str, compute: Callable[[], tuple[Sums, np.ndarray]]):
    """The daily sums in ``path``, computed (and written) first unless there."""
    run.timed(name, path, lambda: save_sums(path, *compute()))
    return load_sums(path)


def ensembles(
    task: str,
    run: Run,
    world: World,
    models: dict[str, Path],
    split: str,
    folder: Path,
    tag: str,
    stride: int | None,
) -> dict[str, Path]:
    """Each model's ensemble of ``task`` on ``world``'s block ``split``: source -> store."""
    return {
        source: run.predict(
            f"{tag} {source}",
            checkpoint,
            folder / f"{task}-{source}.zarr",
            PREDICT[task],
            world,
            split,
            stride,
        )
        for source, checkpoint in models.items()
    }


def score_in_time(
    task: str,
    run: Run,
    world: World,
    models: dict[str, Path],
    split: str,
    folder: Path,
    tag: str,
    stride: int | None,
) -> Parts:
    """Interpolation (against linear interpolation in time) or nowcasting (against persistence,
    one part per lead) on every hidden hour of the block."""
    stores = ensembles(task, run, world, models, split, folder, tag, stride)
    reference = REFERENCES[task][0]
    path = folder / f"{task}-{reference}.zarr"
    stores[reference] = time_reference(reference, stores["ours"], world, path, run.timed, tag)
    truth = xr.open_zarr(world.path / "hr.zarr")
    ds = xr.open_zarr(stores["ours"])
    if task == "interpolation":
        parts = {"all": ds.time.values}
    else:  # valid times come in groups of the hidden hours, lead 1 h first
        leads = len(json.loads(ds.attrs["hidden_hours"]))
        parts = {f"{k}h": ds.time.values[k - 1 :: leads] for k in range(1, leads + 1)}
    return {
        part: cached(
            folder / f"sums-{task}-{part}.npz",
            run,
            f"sums {tag} {part}",
            lambda t=times: day_sums(stores, truth, VARIABLES, t),
        )
        for part, times in parts.items()
    }


def spectra(world: World) -> tuple[Callable[[np.ndarray], np.ndarray], list[tuple[float, float]]]:
    """Band power of fields (..., y, x) on ``world``'s HR grid as ``finescale evaluate`` takes it
    (octave bands from 2 HR grid lengths to the LR grid length), and the bands (km)."""
    truth, lr = xr.open_zarr(world.path / "hr.zarr"), xr.open_zarr(world.path / "lr.zarr")
    grid, meta, bands = spectral_setup(truth, lr, {"lr": world.path / "lr.zarr"}, [])
    lat = np.asarray(truth["lat"].values, dtype=float)
    spectrum = Spectrum(meta["kind"], grid["spectral_grid_length_km"], lat.mean(axis=1))
    return lambda fields: band_power(spectrum.psd(fields), bands).values, list(bands)


def score_downscale(
    run: Run,
    world: World,
    models: dict[str, Path],
    split: str,
    times: np.ndarray,
    references: dict[str, Path],
    folder: Path,
    tag: str,
) -> tuple[Parts, list[tuple[float, float]]]:
    """Downscaling at ``times`` (those the ensembles predicted) beside ``references`` (name ->
    store on those times: the skill run's ensembles, or the oracle); and the spectral bands."""
    stores = ensembles("downscale", run, world, models, split, folder, tag, None)
    predicted = xr.open_zarr(stores["ours"]).time.values
    scored = np.intersect1d(np.asarray(times, dtype=predicted.dtype), predicted)
    if scored.size == 0:
        raise ValueError(f"{stores['ours']}: none of the {len(times)} hours to score was predicted")
    power, bands = spectra(world)
    truth = xr.open_zarr(world.path / "hr.zarr")
    path = folder / "sums-downscale-all.npz"
    found = cached(
        path,
        run,
        f"sums {tag}",
        lambda: day_sums({**stores, **references}, truth, VARIABLES, scored, power=power),
    )
    return {"all": found}, bands


def truth_q99(truth: xr.DataArray, times: np.ndarray) -> float:
    """The truth's area-weighted 99th percentile over ``times``, as ``finescale evaluate``'s
    threshold."""
    values = truth.sel(time=times).transpose("time", "y", "x").values
    weights = np.asarray(area_weights(np.asarray(truth["lat"].values, dtype=float)))
    histogram = QuantileHistogram().add(values, np.broadcast_to(weights, values.shape))
    return float(histogram.quantiles(0.99))


def score_bias(
    run: Run, world: World, checkpoint: Path, folder: Path, tag: str
) -> tuple[Parts, float]:
    """Bias correction of LR precipitation on ``world``'s test block beside quantile mapping
    and the uncorrected LR; and the truth's 99th percentile (mm/h), the Brier threshold."""
    store = run.predict(
        f"{tag} ours", checkpoint, folder / "bias-ours.zarr", "targets", world, "test"
    )
    paths = bias_stores(world, store, run.timed)
    truth = xr.open_zarr(paths["truth"])
    times = xr.open_zarr(store).time.values
    q99 = truth_q99(truth["tp"], times)
    stores = {"ours": store, "qm": paths["qm"], "uncorrected": paths["uncorrected"]}
    found = cached(
        folder / "sums-bias-all.npz",
        run,
        f"sums {tag}",
        lambda: day_sums(stores, truth, ["tp"], times, thresholds={"tp": {"q99": q99}}, bias=True),
    )
    return {"all": found}, q99


def figures(
    task: str,
    parts: dict[str, tuple[Sums, np.ndarray]],
    members: int,
    block_days: int,
    resamples: int,
    bands: list[tuple[float, float]] | None = None,
) -> dict[str, Any]:
    """A task's figures with intervals; ``parts`` give each part's sums and each day's stratum
    (its world): one world's days, or several worlds pooled."""
    out = {}
    for part, (sums, strata) in parts.items():
        counts = intervals.bootstrap_counts(strata, block_days, resamples)
        if task == "bias":
            out[part] = bias_figures(sums, counts, ("ours", "qm", "uncorrected"))
            continue
        out[part] = {
            v: ensemble_figures(sums, counts, v, members, REFERENCES[task], bands)
            for v in VARIABLES
        }
    return out if task == "nowcast" else out["all"]

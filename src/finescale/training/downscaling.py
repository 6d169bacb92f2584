"""Training the downscaling models: the regression model and the residual EDM diffusion model.

:func:`train` prepares the pair (:func:`finescale.training.data.prepare`), cuts the fixed
sequences of random patches, builds the model (scaling its residuals where asked, by one number
per variable or, for ``model.local_scale``, by a curve in mu) and fits it
(:func:`finescale.training.loop.fit`) into checkpoints that carry the config, the statistics, the
channel layout and the HR grid as plain types and tensors.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import lightning as L
import torch

from finescale.checkpoints import (
    GRID_KEY,
    TrainedDownscaler,
    grid_entry,
    load_checkpoint,
    regression_description,
)
from finescale.config import ExperimentConfig, ModelConfig
from finescale.data.patches import PatchDataset
from finescale.models.build import build_model
from finescale.models.diffusion import DiffusionModel
from finescale.models.local_scale import CurveFit
from finescale.models.regression import RegressionModel
from finescale.training.data import TrainingData, patch_sets, prepare
from finescale.training.loop import fit, resume_point


@torch.no_grad()
def residual_scale(
    model: RegressionModel | DiffusionModel,
    batches: Iterable[dict[str, torch.Tensor]],
    local: CurveFit | None = None,
) -> torch.Tensor:
    """Area-weighted RMS per variable (C,) of y - model.mu over training batches, floored above 0.

    The RMS, not the std: the sampler starts from noise around zero, so the second moment of the
    residual is what sigma_data must match (and what the regression's MSE measures). ``local``
    gathers, in the same pass, the points a local scale is fitted on (``model.local_scale``).
    """
    total = weight = torch.zeros(())
    for batch in batches:
        mu = model.mu(batch["cond"], batch["base"])
        r = batch["target"] - mu
        area = batch.get("area", torch.ones_like(r[:, :1]))
        total = total + (area * r**2).sum(dim=(0, 2, 3))
        weight = weight + area.sum()
        if local is not None:
            local.add(model.local_scale.key(mu), r, area)
    if not weight > 0:
        raise ValueError(
            "no HR target value in the patches drawn to scale the residuals: every "
            "one is missing (NaN with 'missing: mask'); check the HR source of the "
            "training block"
        )
    return torch.sqrt(total / weight).clamp_min(1e-3)


def regression_for(cfg: ModelConfig) -> TrainedDownscaler | None:
    """The trained regression model a diffusion model with ``residual: regression`` is taken
    over (read from ``cfg.regression_checkpoint``); None for any other model."""
    if cfg.kind == "diffusion" and cfg.residual == "regression":
        return load_checkpoint(cfg.regression_checkpoint)  # type: ignore[arg-type]
    return None


def checkpoint_meta(
    cfg: ExperimentConfig, prepared: TrainingData, regression: TrainedDownscaler | None = None
) -> dict[str, Any]:
    """What a checkpoint must carry to be used and checked later (plain types only); a diffusion
    model over a regression mean also carries that regression network's description."""
    hr = prepared.pair.hr
    meta = {
        "kind": "downscaling",
        "config": cfg.model_dump(mode="json"),
        "stats": prepared.stats.to_dict(),
        "layout": prepared.layout.to_dict(),
        "periodic_lon": bool(prepared.periodic_lon),
        "grid": {
            "hr_shape": list(hr.lat.shape),
            "lr_shape": list(prepared.pair.lr.lat.shape),
            "hr_lat_range": [float(hr.lat.min()), float(hr.lat.max())],
            "hr_lon_range": [float(hr.lon.min()), float(hr.lon.max())],
        },
    }
    if regression is not None:
        meta["regression"] = regression_description(regression)
    return meta


def train(cfg: ExperimentConfig, resume: bool = False) -> Path:
    """Fit the model of ``cfg``; returns the path of the last checkpoint (EMA weights inside).

    With ``resume`` the run continues from ``<out>/checkpoints/last.ckpt`` when it exists.
    """
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    t = cfg.train
    # first: an output folder that cannot be written fails now
    resume_from, done = resume_point(t, resume)
    prepared = prepare(cfg)
    train_set, val_set = patch_sets(prepared, t, done)
    regression = regression_for(cfg.model)
    model = build_model(
        cfg.model,
        prepared.layout,
        prepared.periodic_lon,
        regression.model if regression else None,
    )
    local = getattr(model, "local_scale", None)
    if cfg.model.scale_residuals or local is not None:
        patches = PatchDataset(
            prepared.train,
            prepared.layout,
            prepared.to_hr,
            t.patch_size,
            32 * t.batch_size,
            t.seed + 2,
        )
        points = None
        if local is not None:
            points = CurveFit(local.channels)
            # keys of several variables are norms in their own units: known before gathering
            stats = [prepared.stats[v] for v in prepared.layout.target_variables]
            local.set_key_stats(
                torch.tensor([s.mean for s in stats]), torch.tensor([s.std for s in stats])
            )
        scale = residual_scale(model, torch.utils.data.DataLoader(patches, t.batch_size), points)
        if cfg.model.scale_residuals:
            model.residual_scale.copy_(scale)
        if points is not None:  # floored at a fraction of each variable's RMS, scaled or not
            local.set_curves(points, scale, cfg.model.local_scale_floor)
        # DataLoader workers read the training samples from here on
        prepared.train.clear_cache()
    # the HR grid itself, so that a model trained without static fields downscales without a
    # file that gives the grid
    grid = {GRID_KEY: grid_entry(prepared.pair.hr.lat.values, prepared.pair.hr.lon.values)}
    meta = checkpoint_meta(cfg, prepared, regression)
    return fit(model, t, meta, train_set, val_set, resume_from, grid)

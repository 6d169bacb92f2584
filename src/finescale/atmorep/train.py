"""Pre-training and fine-tuning the AtmoRep model (loading it back:
:mod:`finescale.atmorep.checkpoint`).

``pretrain(cfg)`` opens the pair, reuses (or computes) the data layer's statistics, builds the
fields of ``cfg`` on its grid for the training and validation blocks, and fits the model on
random neighbourhoods masked as ``cfg.masking`` says. With ``init_checkpoint`` the run starts
from a trained model (fine-tuning): every weight whose name and shape match is taken over, so a
fine-tuning config may add fields, drop them or change the task. Checkpoints carry the config,
statistics and field levels as plain types and load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import lightning as L

from finescale.atmorep.checkpoint import KIND
from finescale.atmorep.model import AtmoRep
from finescale.atmorep.series import Series, load_series
from finescale.atmorep.settings import AtmoRepConfig
from finescale.atmorep.tokens import CubeDataset, Geometry
from finescale.checkpoints import read_checkpoint
from finescale.data.normalisation import NormStats
from finescale.data.pairs import Pair, open_pair, require_validation, split_times
from finescale.data.saved_stats import load_or_compute_stats
from finescale.training import fit, resume_point

log = logging.getLogger(__name__)


@dataclass
class Blocks:
    """The pair, its statistics and the series of each block of times."""

    pair: Pair
    stats: NormStats
    series: dict[str, Series]


def open_blocks(cfg: AtmoRepConfig, names: tuple[str, ...] = ("train", "validation")) -> Blocks:
    """Series of the blocks ``names`` (train, validation, test); a block shorter than a
    neighbourhood is an error, and so is a zero validation fraction when the validation block is
    asked for (ConfigError)."""
    if "validation" in names:
        require_validation(cfg.data.splits)
    pair = open_pair(cfg.data)
    stats = load_or_compute_stats(pair, cfg.data)
    blocks = split_times(pair.hr.time.values, cfg.data.splits)
    hours = Geometry.from_config(cfg).extent[0]
    series = {}
    for name in names:
        times = blocks[name]
        if times.size < hours:
            raise ValueError(
                f"the {name} block has {times.size} hours, fewer than the {hours} of one "
                "neighbourhood (token.time x neighbourhood.time): use a longer period or smaller "
                "neighbourhoods"
            )
        series[name] = load_series(cfg, pair, stats, times)
    return Blocks(pair, stats, series)


def take_over(model: AtmoRep, path: str | Path) -> list[str]:
    """Copy into ``model`` every weight of the AtmoRep checkpoint ``path`` with the same name and
    shape; returns the names of the model's weights that start fresh."""
    weights = read_checkpoint(path, KIND).weights
    own = model.state_dict()
    taken = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(taken, strict=False)
    fresh = sorted(set(own) - set(taken))
    log.info(
        "%s: took over %d of %d tensors; fresh: %s",
        path,
        len(taken),
        len(own),
        ", ".join(fresh) or "none",
    )
    return fresh


def pretrain(cfg: AtmoRepConfig, resume: bool = False) -> Path:
    """Fit the AtmoRep model of ``cfg``; returns the last checkpoint (EMA weights inside).

    Pre-training and fine-tuning are the same call: fine-tuning sets ``init_checkpoint`` and
    usually another ``masking`` (forecast, interpolation, targets) or other fields.
    """
    t = cfg.train
    L.seed_everything(t.seed, workers=True, verbose=False)
    resume_from, done = resume_point(
        t, resume
    )  # first: an output folder that cannot be written fails now
    blocks = open_blocks(cfg)
    train_series, val_series = blocks.series["train"], blocks.series["validation"]
    levels = {name: train_series.levels(name) for name in cfg.fields}
    model = AtmoRep(cfg, levels)
    if cfg.init_checkpoint is not None:
        take_over(model, cfg.init_checkpoint)
    batch = (
        t.global_batch_size
    )  # every step takes the next global batch, split between DDP processes
    # max_steps batches, also when resuming: see resume_point
    train_set = CubeDataset(train_series, cfg, t.max_steps * batch, t.seed, start=done * batch)
    val_set = CubeDataset(val_series, cfg, t.val_batches * batch, t.seed + 1)
    grid = blocks.pair.hr if cfg.grid == "hr" else blocks.pair.lr
    meta = {
        "kind": KIND,
        "config": cfg.model_dump(mode="json"),
        "stats": blocks.stats.to_dict(),
        "levels": levels,
        "grid": {
            "shape": list(grid.lat.shape),
            "lat_range": [float(grid.lat.min()), float(grid.lat.max())],
            "lon_range": [float(grid.lon.min()), float(grid.lon.max())],
        },
    }
    # with train.compile: the encoder, where nearly all the time goes
    return fit(model, t, meta, train_set, val_set, resume_from, compiled=(type(model.encoder),))

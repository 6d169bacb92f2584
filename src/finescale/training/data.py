"""What training reads: the downscaling pair prepared for training, and the loaders of patches.

:func:`prepare` opens the pair, its normalisation statistics and the lazy fields of the training
and validation blocks; :class:`PatchLoaders` serves any two fixed patch sequences to Lightning,
split between DDP processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import lightning as L
import numpy as np
import torch

from finescale.config import ExperimentConfig, TrainConfig
from finescale.data.channels import Layout, make_layout
from finescale.data.grids import is_global
from finescale.data.lr_to_hr import LRToHR
from finescale.data.normalisation import NormStats
from finescale.data.pairs import Pair, open_pair, require_validation, split_times
from finescale.data.patches import LazyFields, PatchDataset, lazy_fields
from finescale.data.saved_stats import load_or_compute_stats
from finescale.data.windows import BlockCache, Sources, open_sources


def _channels_last(value: Any) -> Any:
    """A (B, C, H, W) tensor in channels-last memory order; anything else as it is."""
    if isinstance(value, torch.Tensor) and value.ndim == 4:
        return value.contiguous(memory_format=torch.channels_last)
    return value


class PatchLoaders(L.LightningDataModule):
    """Loaders of two fixed sample sequences, in order; under DDP each process takes every W-th
    sample.

    Process r of W gets samples r, r + W, r + 2W, ... (a distributed sampler without
    shuffling), so the processes' batches of a step together are the next ``batch_size`` x W
    samples. The loaders are made once the processes exist (rank and W are known then).
    """

    def __init__(
        self, train_set: torch.utils.data.Dataset, val_set: torch.utils.data.Dataset, t: TrainConfig
    ):
        super().__init__()
        self.train_set, self.val_set, self.settings = train_set, val_set, t

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return self._loader(self.train_set)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.settings.channels_last and isinstance(batch, dict):
            return {k: _channels_last(v) for k, v in batch.items()}
        return batch

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        # the few validation batches are read in the training process: a persistent worker
        # for them would hold another copy of the process (~300 MB on CPU) through the run
        return self._loader(self.val_set, workers=0)

    def _loader(
        self, dataset: torch.utils.data.Dataset, workers: int | None = None
    ) -> torch.utils.data.DataLoader:
        """A loader of ``dataset`` in order; ``workers`` processes (default ``num_workers``)
        read the samples, each opening the data itself."""
        t, trainer = self.settings, self.trainer
        workers = t.num_workers if workers is None else workers
        sampler = None
        if trainer is not None and trainer.world_size > 1:
            sampler = torch.utils.data.DistributedSampler(
                dataset, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False
            )
        return torch.utils.data.DataLoader(
            dataset,
            batch_size=t.batch_size,
            sampler=sampler,
            shuffle=False,
            num_workers=workers,
            persistent_workers=workers > 0,
        )


@dataclass
class TrainingData:
    """Everything training needs, derived from the config and the data."""

    pair: Pair
    stats: NormStats
    layout: Layout
    to_hr: LRToHR
    periodic_lon: bool
    train: LazyFields
    validation: LazyFields


def prepare(cfg: ExperimentConfig) -> TrainingData:
    """Open the pair, statistics on the training block, layout, and the fields of both blocks.

    The fields stay on disk: samples read their windows, through a cache of ``train.cache_mb``
    per block and process (each DataLoader worker opens the sources again).
    """
    require_validation(cfg.data.splits)
    pair = open_pair(cfg.data)
    stats = load_or_compute_stats(pair, cfg.data)
    layout = make_layout(cfg.model, pair.lr, pair.hr, pair.static)
    periodic = (
        cfg.model.periodic_lon
        if cfg.model.periodic_lon is not None
        else is_global(pair.hr.lon.values)
    )
    to_hr = LRToHR(
        pair.lr.lat,
        pair.lr.lon,
        pair.hr.lat,
        pair.hr.lon,
        cfg.model.conditioning.interpolation,
        periodic,
    )
    blocks = split_times(pair.hr.time.values, cfg.data.splits)

    sources = Sources(partial(open_sources, cfg.data), opened={"lr": pair.lr, "hr": pair.hr})

    def fields(times: np.ndarray) -> LazyFields:
        cache = BlockCache(cfg.train.cache_mb * 2**20)
        return lazy_fields(
            layout, stats, sources, pair.static, pair.hr.lat, pair.hr.lon, times, cache
        )

    return TrainingData(
        pair, stats, layout, to_hr, periodic, fields(blocks["train"]), fields(blocks["validation"])
    )


def patch_sets(
    prepared: TrainingData, t: TrainConfig, done: int = 0
) -> tuple[PatchDataset, PatchDataset]:
    """The training and validation patches of a run: fixed sequences, so that a run resumed after
    ``done`` steps continues the training sequence where its checkpoint stopped. Under DDP each
    step takes the next global batch of it, split between the processes (see ``fit``)."""
    batch = t.global_batch_size
    train = PatchDataset(
        prepared.train,
        prepared.layout,
        prepared.to_hr,
        t.patch_size,
        t.max_steps * batch,
        t.seed,
        start=done * batch,
    )
    validation = PatchDataset(
        prepared.validation,
        prepared.layout,
        prepared.to_hr,
        t.patch_size,
        t.val_batches * batch,
        t.seed + 1,
    )
    return train, validation

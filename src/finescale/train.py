"""Training with Lightning: data set-up, the Lightning module, checkpoints that carry everything.

``train(cfg)`` opens the pair, computes (or reuses) the normalisation statistics on the training
block, cuts random patches, and fits the regression or diffusion model with Adam (warm-up then
cosine decay), an exponential moving average of the weights, CSV logs and checkpoints. A
checkpoint holds, besides the weights, the config, the statistics, the channel layout and the
HR grid, all as plain types and tensors, so it loads with ``torch.load(weights_only=True)`` and
is checked against the data it is later given; :mod:`finescale.checkpoints` reads it without
Lightning.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins import TorchCheckpointIO
from rich.console import Console
from rich.progress import Progress, TaskID
from torch import nn
from torch.optim.swa_utils import AveragedModel

from finescale.atmorep.network import MultiFieldEncoder
from finescale.checkpoints import (
    CHECKPOINT_KEY,
    DIGEST_KEY,
    GRID_KEY,
    Loaded,
    check_digest,
    grid_entry,
    load_checkpoint,
    regression_description,
    weights_digest,
)
from finescale.config import ExperimentConfig, ModelConfig, TrainConfig
from finescale.console import progress_bar
from finescale.data.grids import is_global
from finescale.data.pairs import Pair, open_pair, require_validation, split_times
from finescale.data.samples import (
    Layout,
    LazyFields,
    LRToHR,
    PatchDataset,
    lazy_fields,
    make_layout,
)
from finescale.data.transforms import NormStats, load_or_compute_stats
from finescale.data.windows import BlockCache, Sources, open_sources
from finescale.io import atomic_path, block_seed, check_writable
from finescale.models.build import build_model
from finescale.models.diffusion import DiffusionModel
from finescale.models.regression import RegressionModel
from finescale.nn.unet import UNet


class _NoTips(logging.Filter):
    """Drops Lightning's advertising tips from the log; its real messages pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in record.getMessage()


logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_NoTips())


# --------------------------------------------------------------------------------------------
# the Lightning module


def ema_update(decay: float) -> Callable[[list[torch.Tensor], list[torch.Tensor], Any], None]:
    """EMA step for ``AveragedModel(multi_avg_fn=...)`` with the decay warmed up as min(decay, (1 + n) / (10 + n)).

    n is the number of updates so far. A constant 0.999 keeps 0.999^n of the initial weights:
    45 % after 800 steps, so a short run would be scored half untrained. Warmed up, the average
    covers about the last tenth of the run early on and the last 1 / (1 - decay) steps later.
    """

    @torch.no_grad()
    def update(ema: list[torch.Tensor], current: list[torch.Tensor], num_averaged: Any) -> None:
        n = int(num_averaged)
        weight = 1.0 - min(decay, (1 + n) / (10 + n))
        for average, value in zip(ema, current, strict=True):
            if average.is_floating_point():
                average.lerp_(value, weight)
            else:
                average.copy_(value)

    return update


class Task(L.LightningModule):
    """Fits ``model.loss``; keeps an EMA copy used for validation and saved for inference.

    Under DDP every process holds the same weights (DDP averages the gradients), so every
    process keeps the same EMA; Lightning writes checkpoints and logs from rank 0 only, and the
    logged losses are averaged over the processes.
    """

    def __init__(self, model: nn.Module, settings: TrainConfig, meta: dict[str, Any],
                 entries: dict[str, Any] | None = None):
        super().__init__()
        self.model = model
        self.settings = settings
        self.meta = meta
        self.entries = entries or {}  # further top-level checkpoint entries (tensors: the digest covers them)
        self.ema = AveragedModel(model, multi_avg_fn=ema_update(settings.ema_decay), use_buffers=True)
        # the average is never differentiated; DDP would otherwise wait for its gradients
        self.ema.requires_grad_(False)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # the step's random numbers (diffusion levels and noise, dropout, AtmoRep members) come
        # from a seed of (seed, step, process): a run resumed from a checkpoint draws the same
        # ones as a run never stopped, and DDP processes draw different ones
        torch.manual_seed(block_seed(self.settings.seed, self.global_step, self.global_rank))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.model.loss(batch)
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=False, sync_dist=True)
        return loss

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        # here, not in on_train_batch_end: a checkpoint written at this step (by a callback's
        # on_train_batch_end, which runs first) must hold the average with this step's update
        self.ema.update_parameters(self.model)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        # a fixed generator per batch (and process): validation losses are comparable across the run
        seed = batch_idx * self.trainer.world_size + self.global_rank
        generator = torch.Generator(device=self.device).manual_seed(seed)
        loss = self.ema.module.loss(batch, generator=generator)
        self.log("val_loss", loss, prog_bar=True, on_step=False, on_epoch=True, sync_dist=True)

    def configure_optimizers(self) -> dict[str, Any]:
        t = self.settings
        optimizer = torch.optim.Adam(self.model.parameters(), lr=t.learning_rate)

        def factor(step: int) -> float:
            if step < t.warmup_steps:
                return (step + 1) / t.warmup_steps
            progress = (step - t.warmup_steps) / max(1, t.max_steps - t.warmup_steps)
            return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = self.meta
        checkpoint.update(self.entries)


class StepBar(ProgressBar):
    """Training progress over optimisation steps (``train step ━━━ 120/800``) with the last losses.

    Replaces Lightning's bar, which counts batches of an epoch: with ``max_epochs=-1`` (training
    is bounded by steps) it showed "Epoch 0/-2". Drawn on stderr by the process of rank 0 only;
    a resumed run starts at the checkpoint's step. On a terminal that is not interactive (logs,
    tests) rich prints only the final state.
    """

    def __init__(self) -> None:
        super().__init__()
        self._enabled = True
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def enable(self) -> None:
        self._enabled = True

    def disable(self) -> None:
        self._enabled = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not (self._enabled and trainer.is_global_zero):
            return
        self._bar = progress_bar(Console(stderr=True))
        self._task = self._bar.add_task("train step", total=trainer.max_steps, completed=trainer.global_step)
        self._bar.start()

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self._bar is None or self._task is None:
            return
        losses = trainer.progress_bar_metrics
        text = ", ".join(f"{label} {float(losses[name]):.3g}"
                         for name, label in (("train_loss", "loss"), ("val_loss", "val")) if name in losses)
        self._bar.update(self._task, completed=trainer.global_step,
                         description=f"train step ({text})" if text else "train step")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
        self._bar = self._task = None


def _channels_last(value: Any) -> Any:
    """A (B, C, H, W) tensor in channels-last memory order; anything else as it is."""
    if isinstance(value, torch.Tensor) and value.ndim == 4:
        return value.contiguous(memory_format=torch.channels_last)
    return value


#: the networks ``compile`` compiles: the backbones, where nearly all the time goes. The code
#: around them (noise draws, masks with data-dependent shapes) stays eager.
COMPILED = (UNet, MultiFieldEncoder)


def compile_networks(model: nn.Module) -> int:
    """``torch.compile`` every backbone inside ``model`` in place (parameter names unchanged); returns how many."""
    networks = [m for m in model.modules() if isinstance(m, COMPILED)]
    for network in networks:
        network.compile()
    return len(networks)


# --------------------------------------------------------------------------------------------
# data


class Samples(L.LightningDataModule):
    """Loaders of two fixed sample sequences, in order; under DDP each process takes every W-th sample.

    Process r of W gets samples r, r + W, r + 2W, ... (a distributed sampler without
    shuffling), so the processes' batches of a step together are the next ``batch_size`` x W
    samples. The loaders are made once the processes exist (rank and W are known then).
    """

    def __init__(self, train_set: torch.utils.data.Dataset, val_set: torch.utils.data.Dataset, t: TrainConfig):
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

    def _loader(self, dataset: torch.utils.data.Dataset, workers: int | None = None) -> torch.utils.data.DataLoader:
        """A loader of ``dataset`` in order; ``workers`` processes (default ``num_workers``) read the
        samples, each opening the data itself."""
        t, trainer = self.settings, self.trainer
        workers = t.num_workers if workers is None else workers
        sampler = None
        if trainer is not None and trainer.world_size > 1:
            sampler = torch.utils.data.DistributedSampler(
                dataset, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False
            )
        return torch.utils.data.DataLoader(
            dataset, batch_size=t.batch_size, sampler=sampler, shuffle=False, num_workers=workers,
            persistent_workers=workers > 0,
        )


@dataclass
class Prepared:
    """Everything training needs, derived from the config and the data."""

    pair: Pair
    stats: NormStats
    layout: Layout
    to_hr: LRToHR
    periodic_lon: bool
    train: LazyFields
    validation: LazyFields


def prepare(cfg: ExperimentConfig) -> Prepared:
    """Open the pair, statistics on the training block, layout, and the fields of both blocks.

    The fields stay on disk: samples read their windows, through a cache of ``train.cache_mb``
    per block and process (each DataLoader worker opens the sources again).
    """
    require_validation(cfg.data.splits)
    pair = open_pair(cfg.data)
    stats = load_or_compute_stats(pair, cfg.data)
    layout = make_layout(cfg.model, pair.lr, pair.hr, pair.static)
    periodic = cfg.model.periodic_lon if cfg.model.periodic_lon is not None else is_global(pair.hr.lon.values)
    to_hr = LRToHR(pair.lr.lat, pair.lr.lon, pair.hr.lat, pair.hr.lon, cfg.model.conditioning.interpolation, periodic)
    blocks = split_times(pair.hr.time.values, cfg.data.splits)

    sources = Sources(partial(open_sources, cfg.data), opened={"lr": pair.lr, "hr": pair.hr})

    def fields(times: np.ndarray) -> LazyFields:
        cache = BlockCache(cfg.train.cache_mb * 2**20)
        return lazy_fields(layout, stats, sources, pair.static, pair.hr.lat, pair.hr.lon, times, cache)

    return Prepared(pair, stats, layout, to_hr, periodic, fields(blocks["train"]), fields(blocks["validation"]))


@torch.no_grad()
def residual_scale(
    model: RegressionModel | DiffusionModel, batches: Iterable[dict[str, torch.Tensor]]
) -> torch.Tensor:
    """Area-weighted RMS per variable (C,) of y - model.mu over training batches, floored above 0.

    The RMS, not the std: the sampler starts from noise around zero, so the second moment of the
    residual is what sigma_data must match (and what the regression's MSE measures).
    """
    total = weight = torch.zeros(())
    for batch in batches:
        r = batch["target"] - model.mu(batch["cond"], batch["base"])
        area = batch.get("area", torch.ones_like(r[:, :1]))
        total = total + (area * r**2).sum(dim=(0, 2, 3))
        weight = weight + area.sum()
    if not weight > 0:
        raise ValueError("no HR target value in the patches drawn to scale the residuals: every one is "
                         "missing (NaN with 'missing: mask'); check the HR source of the training block")
    return torch.sqrt(total / weight).clamp_min(1e-3)


def regression_for(cfg: ModelConfig) -> Loaded | None:
    """The trained regression model a diffusion model with ``residual: regression`` is taken
    over (read from ``cfg.regression_checkpoint``); None for any other model."""
    if cfg.kind == "diffusion" and cfg.residual == "regression":
        return load_checkpoint(cfg.regression_checkpoint)  # type: ignore[arg-type]
    return None


def checkpoint_meta(
    cfg: ExperimentConfig, prepared: Prepared, regression: Loaded | None = None
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
    resume_from, done = resume_point(t, resume)  # first: an output folder that cannot be written fails now
    prepared = prepare(cfg)
    # the patches are a fixed sequence: a resumed run continues it where the checkpoint stopped.
    # Under DDP each step takes the next global batch of it, split between the processes (see fit)
    batch = t.global_batch_size
    train_set = PatchDataset(
        prepared.train, prepared.layout, prepared.to_hr, t.patch_size, t.max_steps * batch, t.seed,
        start=done * batch,
    )
    val_set = PatchDataset(
        prepared.validation, prepared.layout, prepared.to_hr, t.patch_size, t.val_batches * batch, t.seed + 1
    )
    regression = regression_for(cfg.model)
    model = build_model(
        cfg.model, prepared.layout, prepared.periodic_lon, regression.model if regression else None
    )
    if cfg.model.scale_residuals:
        patches = PatchDataset(prepared.train, prepared.layout, prepared.to_hr, t.patch_size, 32 * t.batch_size, t.seed + 2)
        model.residual_scale.copy_(residual_scale(model, torch.utils.data.DataLoader(patches, t.batch_size)))
        prepared.train.clear_cache()  # DataLoader workers read the training samples from here on
    # the HR grid itself, so that a model trained without static fields downscales without a file
    # that gives the grid
    grid = {GRID_KEY: grid_entry(prepared.pair.hr.lat.values, prepared.pair.hr.lon.values)}
    meta = checkpoint_meta(cfg, prepared, regression)
    return fit(model, t, meta, train_set, val_set, resume_from, grid)


def resume_point(t: TrainConfig, resume: bool) -> tuple[Path | None, int]:
    """The checkpoint a run resumes from (None: a fresh run) and the optimisation steps it has done.

    Checks first that the run's folder ``t.out`` can be written (:class:`finescale.io.OutputError`
    naming it otherwise), and removes the temporary files of checkpoints whose writing was killed.

    A resumed run continues as if never stopped: its training set is the same fixed sequence of
    samples started at the step it resumes from, and each step's random numbers come from a
    seed of the step (:meth:`Task.on_train_batch_start`). Its training set must still hold
    ``max_steps`` batches: Lightning restores its count of batches within the epoch and ends the
    epoch when the count reaches the loader's length, so a shorter set would end it early and
    start the sequence again.
    """
    folder = check_writable(Path(t.out)) / "checkpoints"
    for leftover in folder.glob(".*.tmp-*"):  # see AtomicCheckpointIO
        leftover.unlink(missing_ok=True)
    last = folder / "last.ckpt"
    if not (resume and last.exists()):
        return None, 0
    checkpoint = torch.load(last, weights_only=True)
    check_digest(checkpoint, last)  # a resumed run takes the optimiser's state too: all of it must be whole
    return last, int(checkpoint["global_step"])


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint under a temporary name beside it, then renames it into place.

    A run killed while writing keeps its previous checkpoint whole. (Lightning's own writer
    goes through a temporary file in the system's temporary folder and moves it, which is a
    copy, not atomic, where that folder is on another file system than the checkpoints.) The
    checkpoint carries the digest of its tensors and description (:func:`weights_digest`), which
    the loaders check.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        with atomic_path(path) as tmp:
            torch.save({**checkpoint, DIGEST_KEY: weights_digest(checkpoint)}, tmp)


def fit(
    model: nn.Module,
    t: TrainConfig,
    meta: dict[str, Any],
    train_set: torch.utils.data.Dataset,
    val_set: torch.utils.data.Dataset,
    resume_from: Path | None = None,
    entries: dict[str, Any] | None = None,
) -> Path:
    """Fit ``model.loss`` on the two datasets with Lightning; returns ``<out>/checkpoints/last.ckpt``.

    The datasets are fixed sequences of samples (a resumed run's dataset starts where the
    checkpoint stopped and still holds ``max_steps`` batches: see :func:`resume_point`), so the
    loaders do not shuffle. ``meta`` goes into every checkpoint under ``CHECKPOINT_KEY``, and
    so do ``entries`` (top-level keys: plain types and tensors). Checkpoints are written
    atomically every ``val_every_steps`` steps, and so are the CSV logs flushed.

    With ``t.world_size`` > 1 processes (DDP) process r of W takes the samples r, r + W, r + 2W,
    ... (see :class:`Samples`): step k then covers samples k G ... (k + 1) G - 1 with
    G = ``t.global_batch_size``, the same patches as one process with batch G, so the datasets
    hold G samples per step.
    """
    if t.channels_last:
        model = model.to(memory_format=torch.channels_last)
    task = Task(model, t, meta, entries)
    if t.compile:
        compile_networks(task.model)  # after the EMA copy: validation and checkpoints stay uncompiled
    out = Path(t.out)
    last = out / "checkpoints" / "last.ckpt"
    checkpoints = ModelCheckpoint(dirpath=out / "checkpoints", save_last=True, every_n_train_steps=t.val_every_steps,
                                  save_top_k=0)
    trainer = L.Trainer(
        max_steps=t.max_steps,
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=t.precision,
        val_check_interval=t.val_every_steps,
        check_val_every_n_epoch=None,
        limit_val_batches=t.val_batches,
        logger=CSVLogger(out, name="logs", flush_logs_every_n_steps=t.val_every_steps),  # a killed run keeps its log
        callbacks=[checkpoints, StepBar()],
        plugins=[AtomicCheckpointIO()],
        enable_model_summary=False,
        log_every_n_steps=max(1, min(50, t.val_every_steps)),
        num_sanity_val_steps=0,
        use_distributed_sampler=False,  # Lightning's would shuffle the training samples: Samples splits them
    )
    with warnings.catch_warnings():
        # a frozen regression model inside the diffusion model is in eval mode on purpose; the
        # sample sequence is resumed by the dataset itself (start), not by Lightning
        warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")
        warnings.filterwarnings("ignore", message=".*dataloader is not resumable.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # inside Lightning, nothing of ours
        trainer.fit(
            task,
            datamodule=Samples(train_set, val_set, t),
            ckpt_path=str(resume_from) if resume_from else None,
        )
    trainer.save_checkpoint(last, weights_only=False)  # full state: --resume needs the optimiser
    return last

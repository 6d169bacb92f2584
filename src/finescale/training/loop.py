"""The training loop: Lightning's trainer set up, atomic checkpoints, and where a run resumes.

:func:`fit` fits any model with a ``loss`` on two fixed sample sequences (the downscaling models
through :func:`finescale.training.train`, AtmoRep through :mod:`finescale.atmorep.train`);
:func:`resume_point` says where a run continues.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins import TorchCheckpointIO
from torch import nn

from finescale.checkpoints import DIGEST_KEY, check_digest, weights_digest
from finescale.config import TrainConfig
from finescale.io.atomic import atomic_path
from finescale.io.checks import check_writable
from finescale.training.data import PatchLoaders
from finescale.training.progress import StepBar
from finescale.training.task import COMPILED, Task, compile_networks


class _NoTips(logging.Filter):
    """Drops Lightning's advertising tips from the log; its real messages pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in record.getMessage()


logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_NoTips())


def resume_point(t: TrainConfig, resume: bool) -> tuple[Path | None, int]:
    """The checkpoint a run resumes from (None: a fresh run) and the optimisation steps it has
    done.

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
    # a resumed run takes the optimiser's state too: all of it must be whole
    check_digest(checkpoint, last)
    return last, int(checkpoint["global_step"])


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint under a temporary name beside it, then renames it into place.

    A run killed while writing keeps its previous checkpoint whole. (Lightning's own writer
    goes through a temporary file in the system's temporary folder and moves it, which is a
    copy, not atomic, where that folder is on another file system than the checkpoints.) The
    checkpoint carries the digest of its tensors and description (:func:`weights_digest`), which
    the loaders check.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
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
    compiled: tuple[type[nn.Module], ...] = COMPILED,
) -> Path:
    """Fit ``model.loss`` on the two datasets with Lightning; returns
    ``<out>/checkpoints/last.ckpt``.

    The datasets are fixed sequences of samples (a resumed run's dataset starts where the
    checkpoint stopped and still holds ``max_steps`` batches: see :func:`resume_point`), so the
    loaders do not shuffle. ``meta`` goes into every checkpoint under ``CHECKPOINT_KEY``, and
    so do ``entries`` (top-level keys: plain types and tensors). Checkpoints are written
    atomically every ``val_every_steps`` steps, and so are the CSV logs flushed. With
    ``t.compile`` the modules of the types ``compiled`` inside ``model`` are compiled
    (:func:`compile_networks`).

    With ``t.world_size`` > 1 processes (DDP) process r of W takes the samples r, r + W, r + 2W,
    ... (see :class:`PatchLoaders`): step k then covers samples k G ... (k + 1) G - 1 with
    G = ``t.global_batch_size``, the same patches as one process with batch G, so the datasets
    hold G samples per step.
    """
    if t.channels_last:
        model = model.to(memory_format=torch.channels_last)
    task = Task(model, t, meta, entries)
    if t.compile:
        # after the EMA copy: validation and checkpoints stay uncompiled
        compile_networks(task.model, compiled)
    out = Path(t.out)
    last = out / "checkpoints" / "last.ckpt"
    checkpoints = ModelCheckpoint(
        dirpath=out / "checkpoints",
        save_last=True,
        every_n_train_steps=t.val_every_steps,
        save_top_k=0,
    )
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
        # flushed at every checkpoint: a killed run keeps its log
        logger=CSVLogger(out, name="logs", flush_logs_every_n_steps=t.val_every_steps),
        callbacks=[checkpoints, StepBar()],
        plugins=[AtomicCheckpointIO()],
        enable_model_summary=False,
        log_every_n_steps=max(1, min(50, t.val_every_steps)),
        num_sanity_val_steps=0,
        # Lightning's would shuffle the training samples: PatchLoaders splits them
        use_distributed_sampler=False,
    )
    with warnings.catch_warnings():
        # a frozen regression model inside the diffusion model is in eval mode on purpose; the
        # sample sequence is resumed by the dataset itself (start), not by Lightning
        warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")
        warnings.filterwarnings("ignore", message=".*dataloader is not resumable.*")
        # inside Lightning, nothing of ours
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        trainer.fit(
            task,
            datamodule=PatchLoaders(train_set, val_set, t),
            ckpt_path=str(resume_from) if resume_from else None,
        )
    trainer.save_checkpoint(last, weights_only=False)  # full state: --resume needs the optimiser
    return last

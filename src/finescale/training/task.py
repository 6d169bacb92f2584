"""The Lightning module of training: the loss, the EMA of the weights, Adam and its schedule.

:class:`Task` fits any model with a ``loss(batch, generator=None)`` method (the downscaling
models, AtmoRep); :func:`compile_networks` compiles the backbones inside a model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from finescale.checkpoints import CHECKPOINT_KEY
from finescale.config import TrainConfig
from finescale.io.blocks import block_seed
from finescale.nn.unet import UNet


def ema_update(decay: float) -> Callable[[list[torch.Tensor], list[torch.Tensor], Any], None]:
    """EMA step for ``AveragedModel(multi_avg_fn=...)`` with the decay warmed up as
    min(decay, (1 + n) / (10 + n)).

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

    def __init__(
        self,
        model: nn.Module,
        settings: TrainConfig,
        meta: dict[str, Any],
        entries: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.model = model
        self.settings = settings
        self.meta = meta
        # further top-level checkpoint entries (tensors: the digest covers them)
        self.entries = entries or {}
        self.ema = AveragedModel(
            model, multi_avg_fn=ema_update(settings.ema_decay), use_buffers=True
        )
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
        # a fixed generator per batch (and process): validation losses are comparable across
        # the run
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


#: the networks ``compile_networks`` compiles by default: the downscaling models' backbone, where
#: nearly all the time goes. The code around it (noise draws, masks with data-dependent shapes)
#: stays eager.
COMPILED: tuple[type[nn.Module], ...] = (UNet,)


def compile_networks(model: nn.Module, types: tuple[type[nn.Module], ...] = COMPILED) -> int:
    """``torch.compile`` every module of ``types`` inside ``model`` in place (parameter names
    unchanged); returns how many."""
    networks = [m for m in model.modules() if isinstance(m, types)]
    for network in networks:
        network.compile()
    return len(networks)

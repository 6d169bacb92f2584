"""The training progress bar: optimisation steps and the last losses, on stderr."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ProgressBar
from rich.console import Console
from rich.progress import Progress, TaskID

from finescale.console import progress_bar


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
        self._task = self._bar.add_task(
            "train step", total=trainer.max_steps, completed=trainer.global_step
        )
        self._bar.start()

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self._bar is None or self._task is None:
            return
        losses = trainer.progress_bar_metrics
        text = ", ".join(
            f"{label} {float(losses[name]):.3g}"
            for name, label in (("train_loss", "loss"), ("val_loss", "val"))
            if name in losses
        )
        self._bar.update(
            self._task,
            completed=trainer.global_step,
            description=f"train step ({text})" if text else "train step",
        )

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
        self._bar = self._task = None

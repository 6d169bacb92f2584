"""Consistency distillation (``finescale distill``): a student that draws a member in a few
network calls, taught by a trained residual diffusion model.

:func:`distill` loads the teacher (:func:`finescale.checkpoints.load_checkpoint`: its EMA weights,
frozen, in eval mode), prepares the teacher's own training data with the teacher's config
(:func:`finescale.training.data.prepare`; its statistics and channels must be those the teacher
was trained with), makes the student a copy of the teacher read as a consistency function
(:class:`finescale.models.consistency.ConsistencyModel`) and fits it with the loop every model
trains with (:func:`finescale.training.loop.fit`: Adam with warm-up and cosine decay, an EMA of
the weights for inference, atomic checkpoints, ``resume`` as ``finescale train``'s).

Each step draws a pair of neighbouring levels of the distillation grid per patch, moves the
noised residual one teacher Heun step down and pulls the student towards its target there
(:func:`finescale.diffusion.consistency.distillation_loss`). The target is a moving average of
the student (``target_decay``), saved in the checkpoint beside it, so a resumed run continues
exactly. The student's checkpoint is read like any other: the teacher's description with the
student's training and sample settings, and a ``student`` entry naming what it is, its levels, its
teacher (path and sha256) and the distillation settings.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from finescale.checkpoints import (
    GRID_KEY,
    STUDENT_KEY,
    TrainedDownscaler,
    grid_entry,
    load_checkpoint,
    read_checkpoint,
)
from finescale.config import (
    DistillConfig,
    ExperimentConfig,
    SampleConfig,
    TrainConfig,
    validate,
)
from finescale.diffusion.consistency import distillation_levels, sampling_levels
from finescale.models.consistency import ConsistencyModel
from finescale.models.diffusion import DiffusionModel
from finescale.training.data import TrainingData, patch_sets, prepare
from finescale.training.downscaling import checkpoint_meta
from finescale.training.loop import fit, resume_point


class Held:
    """A module kept outside the tree of what is trained: not in its state dict, not moved by
    ``.to()``, and not copied by ``deepcopy`` (the EMA's copy of the distillation shares the
    one teacher instead of holding a second)."""

    def __init__(self, module: nn.Module):
        self.module = module

    def __deepcopy__(self, memo: dict[int, Any]) -> Held:
        return self


class Distillation(nn.Module):
    """What :func:`~finescale.training.loop.fit` trains: ``student`` and its ``target``, with
    the frozen ``teacher`` held beside them. Its ``loss`` is the distillation loss.

    fit's task calls ``loss`` once per optimisation step and knows no target, so the target
    takes its moving-average step at the start of each training ``loss``, towards the student as
    the previous step left it: the same as after every optimiser step. In evaluation mode
    (validation, on the EMA's copy) the target is the student itself: the loss then measures how
    consistent the averaged student is along the teacher's ODE.
    """

    def __init__(
        self,
        student: ConsistencyModel,
        teacher: DiffusionModel,
        levels: Tensor,
        target_decay: float,
    ):
        super().__init__()
        self.student = student
        self.target = copy.deepcopy(student).requires_grad_(False).eval()
        self.teacher = Held(teacher.requires_grad_(False).eval())
        # a plain tensor, not a buffer: the levels are settings, written in the description
        self.levels = levels.to(torch.float64)
        self.target_decay = target_decay

    @torch.no_grad()
    def follow(self) -> None:
        """One step of the target's moving average towards the student."""
        pairs = zip(self.target.parameters(), self.student.parameters(), strict=True)
        for target, value in pairs:
            target.lerp_(value, 1.0 - self.target_decay)

    def loss(self, batch: dict[str, Tensor], generator: torch.Generator | None = None) -> Tensor:
        teacher = self.teacher.module
        device = batch["target"].device
        if next(teacher.parameters()).device != device:  # Lightning moves only the tree
            teacher.to(device)
        if self.training:
            self.follow()
            target = self.target
        else:
            target = self.student
        return self.student.distillation_loss(batch, teacher, target, self.levels, generator)


def student_config(cfg: DistillConfig, teacher: ExperimentConfig) -> ExperimentConfig:
    """The student's experiment: the teacher's data and model, training settings replaced by
    the distillation's (``cfg.train``, then steps, learning rate, warm-up and out), and the
    teacher's sample settings with the student's ``calls`` and ``renoise``."""
    train = validate(
        teacher.train.model_dump()
        | cfg.train
        | {
            "out": cfg.out,
            "max_steps": cfg.steps,
            "learning_rate": cfg.learning_rate,
            "warmup_steps": cfg.warmup_steps,
        },
        TrainConfig,
        source="the distillation's train settings",
    )
    sample = validate(
        teacher.sample.model_dump() | {"calls": cfg.calls, "renoise": cfg.renoise},
        SampleConfig,
        source="the student's sample settings (distillation calls and renoise)",
    )
    return teacher.model_copy(
        update={"name": f"{teacher.name}-student", "train": train, "sample": sample}
    )


def teacher_of(path: Path) -> TrainedDownscaler:
    """The trained diffusion model at ``path``, frozen; another kind of checkpoint is an error
    that says why."""
    loaded = load_checkpoint(path)
    # ValueError, as every refused input: the command line reports those in one line
    if isinstance(loaded.model, ConsistencyModel):
        raise ValueError(  # noqa: TRY004
            f"{path}: a consistency student already; distil from a diffusion model (its teacher)"
        )
    if not isinstance(loaded.model, DiffusionModel):
        raise ValueError(  # noqa: TRY004
            f"{path}: a {loaded.config.model.kind} model; only a diffusion model can be distilled"
        )
    loaded.model.requires_grad_(False).eval()
    return loaded


def check_data(prepared: TrainingData, teacher: TrainedDownscaler, path: Path) -> None:
    """Refuse data whose statistics or channels differ from those the teacher was trained with:
    the student must see its inputs as the teacher did."""
    if prepared.layout.to_dict() != teacher.layout.to_dict():
        raise ValueError(
            f"{path}: its data now give other channels than the teacher was trained with "
            f"({prepared.layout.to_dict()} against {teacher.layout.to_dict()})"
        )
    if prepared.stats.to_dict() != teacher.stats.to_dict():
        raise ValueError(
            f"{path}: the normalisation statistics of its training data differ from those it was "
            "trained with (the data or their statistics file changed since); a student must "
            "see its inputs as its teacher did"
        )


def check_resumed(resume_from: Path, teacher: TrainedDownscaler, path: Path) -> None:
    """Refuse to resume a run distilled from another teacher."""
    described = read_checkpoint(resume_from).meta.get(STUDENT_KEY) or {}
    sha = (described.get("teacher") or {}).get("sha256")
    if sha != teacher.sha256:
        raise ValueError(
            f"{resume_from}: not a student of {path} (sha256 {teacher.sha256[:12]}; it names "
            f"{str(sha)[:12]}): write to another out folder, or leave out resume to start over"
        )


def student_description(
    cfg: DistillConfig, experiment: ExperimentConfig, levels: Tensor, path: Path, sha256: str
) -> dict[str, Any]:
    """The :data:`~finescale.checkpoints.STUDENT_KEY` entry of the student's description."""
    sample = experiment.sample
    sampler = (
        sampling_levels(sample.calls, sample.sigma_min, sample.sigma_max, sample.rho)
        if sample.renoise is None
        else [sample.sigma_max, *sample.renoise]
    )
    return {
        "kind": "consistency",
        "description": "consistency student: draws a member in sample.calls network calls, "
        "distilled (Song et al. 2023; iCT weighting, EMA target) from the diffusion model "
        "named in teacher",
        "sigma_min": sample.sigma_min,
        "sigma_max": sample.sigma_max,
        "levels": [float(s) for s in levels],
        "teacher": {"path": str(path.resolve()), "sha256": sha256},
        "sampler": {"calls": sample.calls, "levels": sampler},
        "distill": cfg.model_dump(mode="json"),
    }


def distill(cfg: DistillConfig, teacher: Path, resume: bool = False) -> Path:
    """Distil the diffusion model at ``teacher`` into a consistency student; returns the path
    of its last checkpoint (``<cfg.out>/checkpoints/last.ckpt``, EMA weights inside).

    With ``resume`` the run continues from that checkpoint when it exists (it must be a student
    of the same teacher), as ``finescale train --resume`` does.
    """
    teacher = Path(teacher)
    loaded = teacher_of(teacher)
    experiment = student_config(cfg, loaded.config)
    t = experiment.train
    L.seed_everything(t.seed, workers=True, verbose=False)
    # first: an output folder that cannot be written fails now
    resume_from, done = resume_point(t, resume)
    if resume_from is not None:
        check_resumed(resume_from, loaded, teacher)
    prepared = prepare(experiment)
    check_data(prepared, loaded, teacher)
    # the teacher's patches, as `train` cuts them: a resumed run continues the sequence
    train_set, val_set = patch_sets(prepared, t, done)
    sample = experiment.sample
    student = ConsistencyModel.of(loaded.model, sample.sigma_min, sample.sigma_max)
    levels = distillation_levels(cfg.levels, sample.sigma_min, sample.sigma_max, sample.rho)
    meta = checkpoint_meta(experiment, prepared)
    regression = read_checkpoint(teacher).meta.get("regression")
    if regression is not None:  # the network under mu, rebuilt when the student loads
        meta["regression"] = regression
    meta[STUDENT_KEY] = student_description(cfg, experiment, levels, teacher, loaded.sha256)
    grid = {GRID_KEY: grid_entry(prepared.pair.hr.lat.values, prepared.pair.hr.lon.values)}
    model = Distillation(student, loaded.model, levels, cfg.target_decay)
    return fit(model, t, meta, train_set, val_set, resume_from, grid)

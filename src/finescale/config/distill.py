"""How to distil a trained diffusion model into a consistency student (``finescale distill``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from finescale.config.settings import Settings


class DistillConfig(Settings):
    """Consistency distillation of a trained diffusion model (`finescale distill`): a student with
    the teacher's network, inputs and weights learns to jump from any noise level of the
    teacher's sampler to the end of the teacher's probability-flow ODE, so that it draws a member
    in a few network calls. Everything else (data, statistics, patches, hardware) is the
    teacher's, with `train` replacing parts of its training section."""

    out: Path = Field(
        default=Path("runs/student"),
        description="Folder for the student's checkpoints and CSV logs (relative to where you "
        "run; `finescale distill --out`).",
    )
    levels: int = Field(
        default=18,
        ge=2,
        description="Karras levels N of the distillation grid, from the teacher's "
        "sample.sigma_min to its sample.sigma_max (rho: its sample.rho); each step pulls the "
        "student at one level towards its target one teacher Heun step lower.",
    )
    target_decay: float = Field(
        default=0.95,
        ge=0,
        lt=1,
        description="Exponential moving average of the student that is its target (0: the "
        "student itself, without gradient).",
    )
    steps: int = Field(default=2000, ge=1, description="Optimisation steps.")
    learning_rate: float = Field(
        default=1e-4, gt=0, description="Adam learning rate (cosine decay to 10%)."
    )
    warmup_steps: int = Field(default=50, ge=0, description="Linear learning-rate warm-up.")
    calls: int = Field(
        default=2,
        ge=1,
        description="Network calls per member the student samples with unless told otherwise "
        "(its checkpoint's sample.calls).",
    )
    renoise: list[float] | None = Field(
        default=None,
        description="The student's sample.renoise: levels it noises a member to again before "
        "each further call (calls - 1, descending). None: the default levels of sample.renoise.",
    )
    train: dict[str, Any] = Field(
        default_factory=dict,
        description="Settings of the teacher's train section to replace (batch_size, patch_size, "
        "accelerator, precision, val_every_steps, seed, ...); max_steps, learning_rate, "
        "warmup_steps and out are the ones above.",
    )

    @field_validator("train")
    @classmethod
    def _train_without_the_distillations_own(cls, value: dict[str, Any]) -> dict[str, Any]:
        own = {"max_steps": "steps", "learning_rate": "learning_rate"}
        own |= {"warmup_steps": "warmup_steps", "out": "out"}
        clash = sorted(set(value) & set(own))
        if clash:
            raise ValueError(
                f"{', '.join(clash)}: set {', '.join(own[k] for k in clash)} of the "
                "distillation instead"
            )
        return value

    @field_validator("renoise")
    @classmethod
    def _renoise_for_the_calls(cls, value: list[float] | None, info: Any) -> Any:
        if value is not None and "calls" in info.data and len(value) != info.data["calls"] - 1:
            calls = info.data["calls"]
            raise ValueError(f"{len(value)} levels where calls={calls} needs {calls - 1}")
        return value

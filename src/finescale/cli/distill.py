"""The ``distill`` command: a consistency student from a trained diffusion model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from finescale.cli.common import SetOption, console, user_errors


@user_errors
def distill(
    checkpoint: Annotated[
        Path, typer.Option(help="The teacher: a diffusion checkpoint written by `finescale train`.")
    ],
    out: Annotated[Path, typer.Option(help="Folder for the student's checkpoints and CSV logs.")],
    config: Annotated[
        Path | None,
        typer.Option(help="YAML of distillation settings (default: all at their defaults)."),
    ] = None,
    set_: SetOption = None,
    resume: Annotated[
        bool, typer.Option(help="Continue from checkpoints/last.ckpt in `--out` if it exists.")
    ] = False,
) -> None:
    """Distil a trained diffusion model into a consistency student that draws a member in a few
    network calls (`sample.calls`, 2 by default) instead of the solver's 8 to 80.

    The student starts from the teacher's weights and learns, on the teacher's own training
    data, to map any noise level of the teacher's sampler to the end of the teacher's ODE. Its
    checkpoint downscales like any other: `finescale downscale --checkpoint
    <out>/checkpoints/last.ckpt ...`, with `--set sample.calls=1` for one call (a student
    refuses `--steps` and `--solver`). Settings (`--set key=value`, keys of the YAML): `levels`,
    `target_decay`, `steps`, `learning_rate`, `warmup_steps`, `calls`, `renoise`, and
    `train.*` to replace parts of the teacher's training settings (docs/distill-configuration.md).

    **Examples**

    `finescale distill --checkpoint runs/diffusion/checkpoints/last.ckpt --out runs/student
    --set steps=4000`

    `finescale distill --checkpoint runs/diffusion/checkpoints/last.ckpt --config distill.yaml
    --set train.accelerator=gpu --out runs/student --resume`
    """
    from finescale.config import DistillConfig, apply_overrides, load_config, validate
    from finescale.training.distill import distill as run

    if config is None:
        cfg = validate(apply_overrides({}, set_ or []), DistillConfig, source="distill settings")
    else:
        cfg = load_config(config, set_ or [], model=DistillConfig)
    student = run(cfg.model_copy(update={"out": out}), checkpoint, resume=resume)
    console.print(f"wrote [bold]{student}[/]")

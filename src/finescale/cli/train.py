"""The ``train`` command: the regression or residual diffusion model from a config."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from finescale.cli.common import SetOption, console, user_errors


@user_errors
def train(
    config: Annotated[
        Path, typer.Option(help="YAML config (data, model, train, sample sections).")
    ],
    set_: SetOption = None,
    resume: Annotated[
        bool, typer.Option(help="Continue from <train.out>/checkpoints/last.ckpt if it exists.")
    ] = False,
) -> None:
    """Train the regression model or the residual EDM diffusion model (CPU by default, GPU when
    present).

    Writes checkpoints to `<train.out>/checkpoints/` and CSV logs to `<train.out>/logs/`.

    **Examples**

    `finescale train --config runs/world/finescale.yaml --set model.kind=regression
    --set train.out=runs/regression`

    `finescale train --config runs/world/finescale.yaml --set model.kind=diffusion
    --set train.max_steps=4000 --set train.out=runs/diffusion`

    `finescale train --config era5_cerra.yaml --set train.accelerator=gpu
    --set train.precision=bf16-mixed --resume`
    """
    from finescale import training
    from finescale.config import load_config

    cfg = load_config(config, set_ or [])
    checkpoint = training.train(cfg, resume=resume)
    console.print(f"wrote [bold]{checkpoint}[/]")

"""The ``finescale`` command line: parse, load settings, call one function per verb.

The commands live in modules by what they do (data, train, distill, generate, evaluate,
atmorep, demo); this module builds the Typer app from them, in the order ``finescale --help``
lists them.
"""

from __future__ import annotations

import typer

from finescale.cli.atmorep import attention, predict, pretrain
from finescale.cli.data import oracle, pairs_check, world
from finescale.cli.demo import demo
from finescale.cli.distill import distill
from finescale.cli.evaluate import baseline, evaluate
from finescale.cli.generate import downscale
from finescale.cli.train import train

__all__ = ["app", "main"]

app = typer.Typer(
    help="finescale: calibrated fine-scale ensembles from coarse atmospheric fields.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
)
pairs_app = typer.Typer(
    help="Inspect paired LR/HR datasets.", no_args_is_help=True, rich_markup_mode="markdown"
)
app.add_typer(pairs_app, name="pairs")
pairs_app.command("check")(pairs_check)
for _command in (
    world,
    oracle,
    demo,
    evaluate,
    baseline,
    train,
    distill,
    pretrain,
    predict,
    attention,
    downscale,
):
    app.command()(_command)


def main() -> None:  # pragma: no cover - console entry point
    app()

"""The ``demo`` command: the whole pipeline on the embedded Alps world, in one go."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from finescale.cli.common import console, user_errors


@user_errors
def demo(
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("outputs/demo"),
    days: Annotated[float, typer.Option(help="Days of Alps world to simulate.")] = 30.0,
    members: Annotated[
        int, typer.Option(min=2, help="Members of the diffusion and oracle ensembles.")
    ] = 16,
    seed: Annotated[int, typer.Option(help="World seed.")] = 0,
) -> None:
    """Run the whole pipeline on the embedded Alps world and write an evaluation report.

    world -> alignment check -> train a regression model -> train a diffusion model over its
    mean -> 16-member HR ensembles for the test period -> oracle and baselines (bicubic,
    quantile mapping, BCSD) -> `finescale evaluate` -> report.html. About 12 minutes on 2 CPU
    cores.

    **Example**

    `finescale demo --out outputs/demo`
    """
    from finescale.pipeline import run_demo

    result = run_demo(out, days=days, members=members, seed=seed, console=console)
    console.print(f"[bold green]demo done[/]: open [bold]{result}[/] in a browser")

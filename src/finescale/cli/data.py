"""Commands that make and check data: the Alps world, its oracle ensembles, and LR/HR pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from finescale.cli.common import SetOption, console, stderr_progress, user_errors


@user_errors
def world(
    preset: Annotated[
        str, typer.Option(help="World preset: `alps-small` (tests, demo) or `alps` (2.5 km).")
    ] = "alps-small",
    out: Annotated[
        Path, typer.Option(help="Output folder for lr.zarr, hr.zarr, static.zarr.")
    ] = Path("alps-world"),
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same world.")] = 0,
    orography: Annotated[
        Path | None,
        typer.Option(help="DEM .npz with elevation, lat, lon (default: shipped GLOBE Alps)."),
    ] = None,
    days: Annotated[
        float | None, typer.Option(help="Length of the period in days (default: the preset's).")
    ] = None,
    set_: SetOption = None,
) -> None:
    """Simulate the synthetic Alps world: LR inputs, HR truth and static fields, hourly, as Zarr.

    **Examples**

    `finescale world --preset alps-small --out runs/world --seed 1`

    `finescale world --preset alps --out runs/alps --days 365 --set cell_rate=5e-4`
    """
    from finescale.config import apply_overrides, validate
    from finescale.data.world import WorldParams, simulate
    from finescale.data.world import preset as get_preset

    tree = get_preset(preset).model_dump()
    if days is not None:
        tree["days"] = days
    params = validate(apply_overrides(tree, set_ or []), WorldParams, source=f"preset {preset}")
    hours = round(params.days * 24)
    with stderr_progress() as bar:
        task = bar.add_task("world (hours)", total=hours)
        simulate(
            out, params, seed=seed, orography=orography, progress=lambda n: bar.advance(task, n)
        )
    console.print(f"wrote [bold]{out}[/] (lr.zarr, hr.zarr, static.zarr, finescale.yaml)")


@user_errors
def oracle(
    world: Annotated[Path, typer.Option(help="Folder written by `finescale world`.")],
    out: Annotated[Path, typer.Option(help="Output Zarr store (member, time, y, x).")],
    members: Annotated[int, typer.Option(min=1, help="Ensemble size.")] = 16,
    split: Annotated[
        str, typer.Option(help="Times to draw: `train`, `validation`, `test` or `all`.")
    ] = "test",
) -> None:
    """Draw an exact ensemble of p(HR | LR) for an Alps world: the physical limit for every score.

    The split is taken from the world's `finescale.yaml`.

    **Example**

    `finescale oracle --world runs/world --members 16 --out runs/oracle.zarr --split test`
    """
    from finescale.data.world.simulate import oracle as draw_oracle
    from finescale.pipeline import world_split_times

    times = world_split_times(world, split)
    with stderr_progress() as bar:
        task = bar.add_task("oracle (member-hours)", total=members * times.size)
        draw_oracle(world, members, out, times=times, progress=lambda n: bar.advance(task, n))
    console.print(f"wrote [bold]{out}[/]: {members} members x {times.size} times ({split})")


@user_errors
def pairs_check(
    config: Annotated[Path, typer.Option(help="YAML config with a `data` section.")],
    set_: SetOption = None,
) -> None:
    """Open the LR and HR sources, align them in time and space, and print the alignment report.

    Refuses (exit 2, with the reason) pairs that do not describe the same state: flipped or
    shifted latitudes, swapped axes, different domains, LR finer than HR, non-integer ratio.

    **Examples**

    `finescale pairs check --config runs/world/finescale.yaml`

    `finescale pairs check --config era5_cerra.yaml --set data.alignment.min_correlation=0.8`
    """
    from finescale.config import load_config
    from finescale.data.pairs import open_pair, report_table

    cfg = load_config(config, set_ or [])
    pair = open_pair(cfg.data)
    console.print(report_table(pair))
    console.print("[bold green]pair accepted[/]")

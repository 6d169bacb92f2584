"""The ``downscale`` command: HR ensembles from LR inputs with a trained model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from finescale.cli.common import (
    RankOption,
    SetOption,
    WorldSizeOption,
    console,
    note,
    stderr_progress,
    user_errors,
)
from finescale.config import ConfigError


@user_errors
def downscale(
    checkpoint: Annotated[Path, typer.Option(help="Checkpoint written by `finescale train`.")],
    lr: Annotated[
        Path,
        typer.Option(
            help="LR input (NetCDF/Zarr; an LR `member` dim gives members per LR member)."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Output Zarr store (member, time, y, x).")],
    static: Annotated[
        Path | None,
        typer.Option(
            help="Static HR fields, for a model trained with them (without: the HR "
            "grid comes from the checkpoint)."
        ),
    ] = None,
    members: Annotated[
        int | None, typer.Option(min=1, help="Members per LR input (default: the config's).")
    ] = None,
    steps: Annotated[
        int | None, typer.Option(min=1, help="Solver steps (default: the config's).")
    ] = None,
    solver: Annotated[
        str | None, typer.Option(help="`euler`, `heun` or `dpmpp_2m` (default: the config's).")
    ] = None,
    times: Annotated[
        str | None,
        typer.Option(
            help="`START..END` (inclusive, ISO times) or a split name of the config: `test`."
        ),
    ] = None,
    set_: SetOption = None,
    rank: RankOption = None,
    world_size: WorldSizeOption = None,
    max_memory_gb: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="Refuse a run whose estimated peak memory (GB) is above this, "
            "naming a batch size that fits.",
        ),
    ] = None,
) -> None:
    """Generate an HR ensemble from LR inputs with a trained model.

    Written in blocks (a batch of members over up to 24 times, fewer on large domains) into
    `.<name>.partial` beside `--out` and renamed when complete: rerun the same command after a
    crash to generate only the missing blocks. With `--world-size N` (or under torchrun) N
    processes share the blocks; the last one to finish renames the output. The result is the
    same however it was split or resumed. The estimated peak memory is shown before drawing.
    `--static` is needed only by a model trained with static fields: otherwise the checkpoint
    gives the HR grid.

    **Examples**

    `finescale downscale --checkpoint runs/diffusion/checkpoints/last.ckpt --lr runs/world/lr.zarr
    --static runs/world/static.zarr --members 16 --times test --out runs/diffusion.zarr`

    `finescale downscale --checkpoint ckpt --lr era5_ens.nc --static cerra_static.nc --members 4
    --solver dpmpp_2m --steps 12 --times 2020-07-01T00..2020-07-02T23 --out ens.zarr
    --set sample.tile_size=128`

    `torchrun --nproc-per-node 4 -m finescale.cli downscale --checkpoint ckpt --lr lr.zarr
    --static static.zarr --times test --out ens.zarr`
    """
    from finescale import generation
    from finescale.io.blocks import process_share
    from finescale.pipeline import parse_times

    overrides = {
        k: v
        for k, v in {"members": members, "steps": steps, "solver": solver}.items()
        if v is not None
    }
    for item in set_ or []:
        key, _, value = item.partition("=")
        if not key.startswith("sample."):
            raise ConfigError(f"--set {item}: downscale takes sample.* settings only")
        import yaml

        overrides[key.removeprefix("sample.")] = yaml.safe_load(value)
    rank, world_size = process_share(rank, world_size)
    with stderr_progress() as bar:
        task = bar.add_task("downscale (times x member batches)", total=None)
        path = generation.downscale(
            checkpoint,
            lr,
            static,
            out,
            sample=overrides,
            times=parse_times(times, checkpoint),
            progress=lambda n: bar.advance(task, n),
            total=lambda n: bar.update(task, total=n),
            rank=rank,
            world_size=world_size,
            note=note,
            max_memory_gb=max_memory_gb,
        )
    if path == out:
        console.print(f"wrote [bold]{path}[/]")

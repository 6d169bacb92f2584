"""Commands of the AtmoRep model: ``pretrain``, ``predict`` and ``attention``."""

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


@user_errors
def pretrain(
    config: Annotated[
        Path,
        typer.Option(
            help="AtmoRep YAML config (fields, token, neighbourhood, masking, train, ...)."
        ),
    ],
    world: Annotated[
        Path | None,
        typer.Option(help="Take the data section from this Alps world (the config then has none)."),
    ] = None,
    set_: SetOption = None,
    resume: Annotated[
        bool, typer.Option(help="Continue from <train.out>/checkpoints/last.ckpt if it exists.")
    ] = False,
) -> None:
    """Pre-train (or fine-tune, with `init_checkpoint`) the AtmoRep masked-token model with its
    ensemble tail.

    Writes checkpoints to `<train.out>/checkpoints/` and CSV logs to `<train.out>/logs/`.

    **Examples**

    `finescale pretrain --config configs/atmorep-pretrain.yaml --world runs/world
    --set train.out=runs/atmorep`

    `finescale pretrain --config configs/atmorep-downscale.yaml --world runs/world
    --set init_checkpoint=runs/atmorep/checkpoints/last.ckpt`
    """
    from finescale.atmorep.settings import AtmoRepConfig
    from finescale.atmorep.train import pretrain
    from finescale.config import load_config
    from finescale.pipeline import world_config

    sections = (
        {"data": world_config(world).data.model_dump(mode="json")} if world is not None else None
    )
    cfg = load_config(config, set_ or [], AtmoRepConfig, sections)
    console.print(f"wrote [bold]{pretrain(cfg, resume=resume)}[/]")


@user_errors
def predict(
    checkpoint: Annotated[
        Path, typer.Option(help="AtmoRep checkpoint written by `finescale pretrain`.")
    ],
    task: Annotated[
        str,
        typer.Option(
            help="`interpolation`, `forecast` or `targets` (downscaling, bias correction)."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Output Zarr store (member, time, y, x).")],
    split: Annotated[
        str, typer.Option(help="Block of times: `train`, `validation` or `test`.")
    ] = "test",
    members: Annotated[
        int | None, typer.Option(min=2, help="Members (default: the config's).")
    ] = None,
    lead: Annotated[
        int | None,
        typer.Option(min=1, help="Forecast: write only this lead (hours after the last known)."),
    ] = None,
    stride: Annotated[
        int | None,
        typer.Option(min=1, help="Hours between neighbourhoods (default: the hidden hours)."),
    ] = None,
    references: Annotated[
        Path | None,
        typer.Option(
            help="Also write the task's references (linear in time; persistence, advection) here."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the members' noise.")] = 0,
    rank: RankOption = None,
    world_size: WorldSizeOption = None,
) -> None:
    """Predict a task with a trained AtmoRep model: an ensemble of the hidden hours over the whole
    grid.

    Written neighbourhood by neighbourhood into `.<name>.partial` beside `--out` and renamed when
    complete: rerun the same command after a crash to write only what is missing. With
    `--world-size N` (or under torchrun) N processes share the work; the last one to finish
    renames the output (and writes the references).

    **Examples**

    `finescale predict --checkpoint runs/atmorep/checkpoints/last.ckpt --task interpolation
    --out runs/interp.zarr --references runs/interp-refs`

    `finescale predict --checkpoint runs/atmorep/checkpoints/last.ckpt --task forecast --lead 1
    --out runs/nowcast1.zarr`
    """
    from finescale.atmorep.predict import predict, write_references
    from finescale.io.blocks import process_share

    rank, world_size = process_share(rank, world_size)
    with stderr_progress() as progress:
        bar = progress.add_task(f"{task} (neighbourhoods)", total=None)
        path = predict(
            checkpoint,
            out,
            task,
            split=split,
            members=members,
            stride=stride,
            lead=lead,
            seed=seed,
            progress=lambda n: progress.advance(bar, n),
            rank=rank,
            world_size=world_size,
            note=note,
        )
    if path != out:
        return  # another process completes the output
    console.print(f"wrote [bold]{path}[/]")
    if references is not None:
        for name, ref in write_references(checkpoint, path, references).items():
            console.print(f"wrote {name}: [bold]{ref}[/]")


def _ints(text: str | None, n: int, what: str) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != n:
        raise ValueError(f"{what} {text!r}: expected {n} integers separated by commas")
    return values


@user_errors
def attention(
    checkpoint: Annotated[
        Path, typer.Option(help="AtmoRep checkpoint written by `finescale pretrain`.")
    ],
    out: Annotated[Path, typer.Option(help="Figure to write (PNG).")],
    field: Annotated[str, typer.Option(help="Field of the query token.")],
    token: Annotated[
        str | None,
        typer.Option(help="Query token `LEVEL,T,Y,X` (default: level 0, last time token, centre)."),
    ] = None,
    task: Annotated[
        str, typer.Option(help="Masks of the sample: `forecast`, `interpolation` or `targets`.")
    ] = "forecast",
    split: Annotated[str, typer.Option(help="Block of times the sample comes from.")] = "test",
    origin: Annotated[
        str | None,
        typer.Option(
            help="Neighbourhood origin `T0,Y0,X0` in grid indices of the block (default: 0,0,0)."
        ),
    ] = None,
    layer: Annotated[int, typer.Option(help="Encoder layer (negative counts from the last).")] = -1,
) -> None:
    """Draw where one token of the AtmoRep encoder looks: its self-attention and its
    cross-attention to each partner field.

    **Examples**

    `finescale attention --checkpoint runs/atmorep/checkpoints/last.ckpt --field tp
    --out runs/attention-tp.png`

    `finescale attention --checkpoint runs/atmorep/checkpoints/last.ckpt --field t2m
    --token 0,3,1,2 --origin 24,20,40 --layer 0 --out a.png`
    """
    import torch

    from finescale.atmorep.attention import attention_maps, plot_attention
    from finescale.atmorep.checkpoint import load_atmorep
    from finescale.atmorep.predict import open_series
    from finescale.atmorep.tokens import FixedCubes

    loaded = load_atmorep(checkpoint)
    cube = (
        loaded.config.neighbourhood.time,
        loaded.config.neighbourhood.y,
        loaded.config.neighbourhood.x,
    )
    query = _ints(token, 4, "--token") or (0, cube[0] - 1, cube[1] // 2, cube[2] // 2)
    start = _ints(origin, 3, "--origin") or (0, 0, 0)
    series = open_series(loaded, split, str(checkpoint))
    sample = FixedCubes(series, loaded.config, [start], task)[0]  # type: ignore[list-item]
    maps = attention_maps(loaded, torch.utils.data.default_collate([sample]), field, query, layer)  # type: ignore[arg-type]
    console.print(f"wrote [bold]{plot_attention(maps, query, field, out)}[/]")  # type: ignore[arg-type]

"""The ``finescale`` command line: parse, load settings, call one function per verb."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress

from finescale.config import ConfigError
from finescale.console import progress_bar

app = typer.Typer(
    help="finescale: calibrated fine-scale ensembles from coarse atmospheric fields.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
)
pairs_app = typer.Typer(help="Inspect paired LR/HR datasets.", no_args_is_help=True, rich_markup_mode="markdown")
app.add_typer(pairs_app, name="pairs")
console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])
SetOption = Annotated[
    list[str] | None, typer.Option("--set", help="Override a setting: `section.key=value` (repeatable).")
]
RankOption = Annotated[
    int | None,
    typer.Option(min=0, help="This process among those sharing the output (default: `$RANK` as torchrun sets it, else 0)."),
]
WorldSizeOption = Annotated[
    int | None,
    typer.Option(min=1, help="Processes sharing the output, each writing every N-th block (default: `$WORLD_SIZE`, else 1)."),
]


def _user_errors(func: F) -> F:
    """Report errors caused by input (files, config, data) in one red line and exit 2; nothing else is caught."""
    from finescale.data.world.terrain import OrographyError

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (ConfigError, OrographyError, FileNotFoundError, KeyError, ValueError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            # one line whatever a library's message looked like; brackets in it are not markup
            text = escape(" ".join(str(message).split()))
            err_console.print(f"[bold red]error:[/] {text}", highlight=False)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def _progress() -> Progress:
    return progress_bar(err_console)


def _note(text: str) -> None:
    err_console.print(text, highlight=False)


@app.command()
@_user_errors
def world(
    preset: Annotated[str, typer.Option(help="World preset: `alps-small` (tests, demo) or `alps` (2.5 km).")] = "alps-small",
    out: Annotated[Path, typer.Option(help="Output folder for lr.zarr, hr.zarr, static.zarr.")] = Path("alps-world"),
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same world.")] = 0,
    orography: Annotated[Path | None, typer.Option(help="DEM .npz with elevation, lat, lon (default: shipped GLOBE Alps).")] = None,
    days: Annotated[float | None, typer.Option(help="Length of the period in days (default: the preset's).")] = None,
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
    with _progress() as bar:
        task = bar.add_task("world (hours)", total=hours)
        simulate(out, params, seed=seed, orography=orography, progress=lambda n: bar.advance(task, n))
    console.print(f"wrote [bold]{out}[/] (lr.zarr, hr.zarr, static.zarr, finescale.yaml)")


@app.command()
@_user_errors
def oracle(
    world: Annotated[Path, typer.Option(help="Folder written by `finescale world`.")],
    out: Annotated[Path, typer.Option(help="Output Zarr store (member, time, y, x).")],
    members: Annotated[int, typer.Option(min=1, help="Ensemble size.")] = 16,
    split: Annotated[str, typer.Option(help="Times to draw: `train`, `validation`, `test` or `all`.")] = "test",
) -> None:
    """Draw an exact ensemble of p(HR | LR) for an Alps world: the physical limit for every score.

    The split is taken from the world's `finescale.yaml`.

    **Example**

    `finescale oracle --world runs/world --members 16 --out runs/oracle.zarr --split test`
    """
    from finescale.data.world.simulate import oracle as draw_oracle
    from finescale.pipeline import world_split_times

    times = world_split_times(world, split)
    with _progress() as bar:
        task = bar.add_task("oracle (member-hours)", total=members * times.size)
        draw_oracle(world, members, out, times=times, progress=lambda n: bar.advance(task, n))
    console.print(f"wrote [bold]{out}[/]: {members} members x {times.size} times ({split})")


@pairs_app.command("check")
@_user_errors
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


@app.command()
@_user_errors
def demo(
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("outputs/demo"),
    days: Annotated[float, typer.Option(help="Days of Alps world to simulate.")] = 30.0,
    members: Annotated[int, typer.Option(min=2, help="Members of the diffusion and oracle ensembles.")] = 16,
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


@app.command()
@_user_errors
def evaluate(
    forecast: Annotated[Path, typer.Option(help="Forecast to score (Zarr/NetCDF), dims (member, time, y, x); no member dim: deterministic.")],
    out: Annotated[Path, typer.Option(help="Output folder: metrics.json, figures/*.png, report.html.")],
    truth: Annotated[Path | None, typer.Option(help="HR truth in finescale's layout (Zarr/NetCDF), dims (time, y, x), 2-D lat/lon. Give this or --config.")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML config: the truth is its data.hr and the LR input its data.lr, read as training reads them (names, units, orientation).")] = None,
    split: Annotated[str | None, typer.Option(help="With --config: score the `train`, `validation`, `test` or `all` times of the config's splits.")] = None,
    times: Annotated[str | None, typer.Option(help="Score only `START..END` (inclusive ISO times).")] = None,
    lr: Annotated[Path | None, typer.Option(help="LR input: shown on the maps; its grid length is the largest scale scored in the spectra (default: the config's data.lr, else 8 HR grid lengths).")] = None,
    reference: Annotated[list[str] | None, typer.Option("--reference", help="Another forecast scored beside it: `NAME=PATH` (repeatable).")] = None,
    name: Annotated[str | None, typer.Option(help="Name of the forecast in tables and figures (default: its file name).")] = None,
    variable: Annotated[list[str] | None, typer.Option("--variable", help="Score only this variable (repeatable; default: every forecast variable, which the truth must have, plus wind_speed from u10/v10).")] = None,
    region: Annotated[list[str] | None, typer.Option("--region", help="A box also scored alone: `NAME=LAT0,LAT1,LON0,LON1` in degrees (repeatable).")] = None,
    mask: Annotated[list[str] | None, typer.Option("--mask", help="A region from a 0/1 mask on the HR grid: `NAME=PATH:VAR` (NetCDF/Zarr; repeatable).")] = None,
    unweighted: Annotated[bool, typer.Option("--unweighted", help="Plain means over the grid points instead of cos(latitude) area weights (e.g. for a projected grid of near-equal cells, where cos(lat) is not the cell area).")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the rank-histogram tie breaks and the 'which one is real?' panel.")] = 0,
) -> None:
    """Score an ensemble (or a deterministic forecast) against the HR truth, beside references.

    Only times present in every file are scored; every forecast variable is scored (or the
    command fails naming the one the truth lacks) unless --variable picks some. Averages are
    area-weighted (cos latitude) unless --unweighted. Writes fair CRPS, spread-skill, spectra,
    extremes and more to `metrics.json`, figures to `figures/`, and one self-contained
    `report.html`; every conversion, reordering and assumption is printed as a note.

    **Examples**

    `finescale evaluate --config era5_cerra.yaml --split test --forecast runs/diffusion.zarr --out runs/eval-diffusion`

    `finescale evaluate --forecast runs/oracle.zarr --truth runs/world/hr.zarr --out runs/eval`

    `finescale evaluate --forecast runs/diffusion.zarr --truth runs/world/hr.zarr --lr runs/world/lr.zarr --reference bicubic=runs/bicubic.zarr --reference oracle=runs/oracle.zarr --name diffusion --out runs/eval-diffusion`

    `finescale evaluate --forecast runs/oracle.zarr --truth runs/world/hr.zarr --out runs/eval --region alps=45.5,47,7,10 --mask valais=masks/valais.nc:mask`
    """
    import json

    from finescale.evaluation import parse_references, parse_regions, run_evaluate
    from finescale.verify.report import summary_table

    if (truth is None) == (config is None):
        raise ValueError("give exactly one of --truth (a store in finescale's layout) and --config")
    if times is not None and ".." not in times:
        raise ValueError(f"--times {times!r}: expected START..END (a split of the config: --split)")
    cfg = None
    if config is not None:
        from finescale.config import load_config

        cfg = load_config(config, [])
    window = None
    if times is not None:
        from finescale.pipeline import parse_times

        window = parse_times(times, config or ".")
    references = parse_references(reference or [])
    regions = parse_regions(region or [], mask or [])
    with err_console.status("evaluating") as status:
        result = run_evaluate(
            forecast, truth, out, lr_path=lr, references=references, config=cfg, split=split,
            times=window, name=name, variables=variable or None, regions=regions,
            weighting="none" if unweighted else "area", seed=seed,
            progress=lambda text: status.update(f"evaluate: {text}"),
        )
    metrics = json.loads((result / "metrics.json").read_text())
    for note in metrics["meta"].get("notes", []):  # one line each, however wide the terminal
        err_console.print(f"note: {escape(note)}", highlight=False, soft_wrap=True)
    console.print(summary_table(metrics))
    console.print(f"wrote [bold]{result}[/]: metrics.json, figures/, report.html")


@app.command()
@_user_errors
def baseline(
    method: Annotated[str, typer.Option(help="`bilinear`, `bicubic`, `qm` (quantile mapping), `bcsd` or `qdm` (quantile delta mapping).")],
    config: Annotated[Path, typer.Option(help="YAML config with a `data` section.")],
    out: Annotated[Path, typer.Option(help="Output Zarr store: a one-member ensemble (member, time, y, x).")],
    split: Annotated[str, typer.Option(help="Times to downscale: `train`, `validation`, `test` or `all`.")] = "test",
    set_: SetOption = None,
) -> None:
    """Downscale with a baseline users would pick today; qm, bcsd and qdm are fitted on the train split.

    Writes the HR variables that LR also has, with the HR truth's units and names, as a
    one-member ensemble that `finescale evaluate` scores like any other.

    **Examples**

    `finescale baseline --method bicubic --config runs/world/finescale.yaml --out runs/bicubic.zarr`

    `finescale baseline --method qm --config runs/world/finescale.yaml --out runs/qm.zarr --split validation`

    `finescale baseline --method bcsd --config era5_cerra.yaml --out runs/bcsd.zarr --set data.splits.gap_hours=48`
    """
    from finescale.baselines import check_method, run_baseline
    from finescale.config import load_config

    check_method(method)
    cfg = load_config(config, set_ or [])
    with err_console.status(f"baseline {method}"):
        path = run_baseline(cfg.data, method, out, split=split)
    console.print(f"wrote [bold]{path}[/]: {method}, {split} split, one member")


@app.command()
@_user_errors
def train(
    config: Annotated[Path, typer.Option(help="YAML config (data, model, train, sample sections).")],
    set_: SetOption = None,
    resume: Annotated[bool, typer.Option(help="Continue from <train.out>/checkpoints/last.ckpt if it exists.")] = False,
) -> None:
    """Train the regression model or the residual EDM diffusion model (CPU by default, GPU when present).

    Writes checkpoints to `<train.out>/checkpoints/` and CSV logs to `<train.out>/logs/`.

    **Examples**

    `finescale train --config runs/world/finescale.yaml --set model.kind=regression --set train.out=runs/regression`

    `finescale train --config runs/world/finescale.yaml --set model.kind=diffusion --set train.max_steps=4000 --set train.out=runs/diffusion`

    `finescale train --config era5_cerra.yaml --set train.accelerator=gpu --set train.precision=bf16-mixed --resume`
    """
    from finescale import training
    from finescale.config import load_config

    cfg = load_config(config, set_ or [])
    checkpoint = training.train(cfg, resume=resume)
    console.print(f"wrote [bold]{checkpoint}[/]")


@app.command()
@_user_errors
def pretrain(
    config: Annotated[Path, typer.Option(help="AtmoRep YAML config (fields, token, neighbourhood, masking, train, ...).")],
    world: Annotated[Path | None, typer.Option(help="Take the data section from this Alps world (the config then has none).")] = None,
    set_: SetOption = None,
    resume: Annotated[bool, typer.Option(help="Continue from <train.out>/checkpoints/last.ckpt if it exists.")] = False,
) -> None:
    """Pre-train (or fine-tune, with `init_checkpoint`) the AtmoRep masked-token model with its ensemble tail.

    Writes checkpoints to `<train.out>/checkpoints/` and CSV logs to `<train.out>/logs/`.

    **Examples**

    `finescale pretrain --config configs/atmorep-pretrain.yaml --world runs/world --set train.out=runs/atmorep`

    `finescale pretrain --config configs/atmorep-downscale.yaml --world runs/world --set init_checkpoint=runs/atmorep/checkpoints/last.ckpt`
    """
    from finescale.atmorep.settings import AtmoRepConfig
    from finescale.atmorep.train import pretrain
    from finescale.config import load_config
    from finescale.pipeline import world_config

    sections = {"data": world_config(world).data.model_dump(mode="json")} if world is not None else None
    cfg = load_config(config, set_ or [], AtmoRepConfig, sections)
    console.print(f"wrote [bold]{pretrain(cfg, resume=resume)}[/]")


@app.command()
@_user_errors
def predict(
    checkpoint: Annotated[Path, typer.Option(help="AtmoRep checkpoint written by `finescale pretrain`.")],
    task: Annotated[str, typer.Option(help="`interpolation`, `forecast` or `targets` (downscaling, bias correction).")],
    out: Annotated[Path, typer.Option(help="Output Zarr store (member, time, y, x).")],
    split: Annotated[str, typer.Option(help="Block of times: `train`, `validation` or `test`.")] = "test",
    members: Annotated[int | None, typer.Option(min=2, help="Members (default: the config's).")] = None,
    lead: Annotated[int | None, typer.Option(min=1, help="Forecast: write only this lead (hours after the last known).")] = None,
    stride: Annotated[int | None, typer.Option(min=1, help="Hours between neighbourhoods (default: the hidden hours).")] = None,
    references: Annotated[Path | None, typer.Option(help="Also write the task's references (linear in time; persistence, advection) here.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the members' noise.")] = 0,
    rank: RankOption = None,
    world_size: WorldSizeOption = None,
) -> None:
    """Predict a task with a trained AtmoRep model: an ensemble of the hidden hours over the whole grid.

    Written neighbourhood by neighbourhood into `.<name>.partial` beside `--out` and renamed when
    complete: rerun the same command after a crash to write only what is missing. With
    `--world-size N` (or under torchrun) N processes share the work; the last one to finish
    renames the output (and writes the references).

    **Examples**

    `finescale predict --checkpoint runs/atmorep/checkpoints/last.ckpt --task interpolation --out runs/interp.zarr --references runs/interp-refs`

    `finescale predict --checkpoint runs/atmorep/checkpoints/last.ckpt --task forecast --lead 1 --out runs/nowcast1.zarr`
    """
    from finescale.atmorep.predict import predict, write_references
    from finescale.io import process_share

    rank, world_size = process_share(rank, world_size)
    with _progress() as progress:
        bar = progress.add_task(f"{task} (neighbourhoods)", total=None)
        path = predict(checkpoint, out, task, split=split, members=members, stride=stride, lead=lead, seed=seed,
                   progress=lambda n: progress.advance(bar, n), rank=rank, world_size=world_size, note=_note)
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


@app.command()
@_user_errors
def attention(
    checkpoint: Annotated[Path, typer.Option(help="AtmoRep checkpoint written by `finescale pretrain`.")],
    out: Annotated[Path, typer.Option(help="Figure to write (PNG).")],
    field: Annotated[str, typer.Option(help="Field of the query token.")],
    token: Annotated[str | None, typer.Option(help="Query token `LEVEL,T,Y,X` (default: level 0, last time token, centre).")] = None,
    task: Annotated[str, typer.Option(help="Masks of the sample: `forecast`, `interpolation` or `targets`.")] = "forecast",
    split: Annotated[str, typer.Option(help="Block of times the sample comes from.")] = "test",
    origin: Annotated[str | None, typer.Option(help="Neighbourhood origin `T0,Y0,X0` in grid indices of the block (default: 0,0,0).")] = None,
    layer: Annotated[int, typer.Option(help="Encoder layer (negative counts from the last).")] = -1,
) -> None:
    """Draw where one token of the AtmoRep encoder looks: its self-attention and its cross-attention to each partner field.

    **Examples**

    `finescale attention --checkpoint runs/atmorep/checkpoints/last.ckpt --field tp --out runs/attention-tp.png`

    `finescale attention --checkpoint runs/atmorep/checkpoints/last.ckpt --field t2m --token 0,3,1,2 --origin 24,20,40 --layer 0 --out a.png`
    """
    import torch

    from finescale.atmorep.attention import attention_maps, plot_attention
    from finescale.atmorep.checkpoint import load_atmorep
    from finescale.atmorep.predict import open_series
    from finescale.atmorep.tokens import FixedCubes

    loaded = load_atmorep(checkpoint)
    cube = (loaded.config.neighbourhood.time, loaded.config.neighbourhood.y, loaded.config.neighbourhood.x)
    query = _ints(token, 4, "--token") or (0, cube[0] - 1, cube[1] // 2, cube[2] // 2)
    start = _ints(origin, 3, "--origin") or (0, 0, 0)
    series = open_series(loaded, split, str(checkpoint))
    sample = FixedCubes(series, loaded.config, [start], task)[0]  # type: ignore[list-item]
    maps = attention_maps(loaded, torch.utils.data.default_collate([sample]), field, query, layer)  # type: ignore[arg-type]
    console.print(f"wrote [bold]{plot_attention(maps, query, field, out)}[/]")  # type: ignore[arg-type]


@app.command()
@_user_errors
def downscale(
    checkpoint: Annotated[Path, typer.Option(help="Checkpoint written by `finescale train`.")],
    lr: Annotated[Path, typer.Option(help="LR input (NetCDF/Zarr; an LR `member` dim gives members per LR member).")],
    out: Annotated[Path, typer.Option(help="Output Zarr store (member, time, y, x).")],
    static: Annotated[
        Path | None,
        typer.Option(help="Static HR fields, for a model trained with them (without: the HR grid comes from the checkpoint)."),
    ] = None,
    members: Annotated[int | None, typer.Option(min=1, help="Members per LR input (default: the config's).")] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="Solver steps (default: the config's).")] = None,
    solver: Annotated[str | None, typer.Option(help="`euler`, `heun` or `dpmpp_2m` (default: the config's).")] = None,
    times: Annotated[str | None, typer.Option(help="`START..END` (inclusive, ISO times) or a split name of the config: `test`.")] = None,
    set_: SetOption = None,
    rank: RankOption = None,
    world_size: WorldSizeOption = None,
    max_memory_gb: Annotated[
        float | None,
        typer.Option(min=0, help="Refuse a run whose estimated peak memory (GB) is above this, naming a batch size that fits."),
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

    `finescale downscale --checkpoint runs/diffusion/checkpoints/last.ckpt --lr runs/world/lr.zarr --static runs/world/static.zarr --members 16 --times test --out runs/diffusion.zarr`

    `finescale downscale --checkpoint ckpt --lr era5_ens.nc --static cerra_static.nc --members 4 --solver dpmpp_2m --steps 12 --times 2020-07-01T00..2020-07-02T23 --out ens.zarr --set sample.tile_size=128`

    `torchrun --nproc-per-node 4 -m finescale.cli downscale --checkpoint ckpt --lr lr.zarr --static static.zarr --times test --out ens.zarr`
    """
    from finescale import generation
    from finescale.io import process_share
    from finescale.pipeline import parse_times

    overrides = {k: v for k, v in {"members": members, "steps": steps, "solver": solver}.items() if v is not None}
    for item in set_ or []:
        key, _, value = item.partition("=")
        if not key.startswith("sample."):
            raise ConfigError(f"--set {item}: downscale takes sample.* settings only")
        import yaml

        overrides[key.removeprefix("sample.")] = yaml.safe_load(value)
    rank, world_size = process_share(rank, world_size)
    with _progress() as bar:
        task = bar.add_task("downscale (times x member batches)", total=None)
        path = generation.downscale(checkpoint, lr, static, out, sample=overrides, times=parse_times(times, checkpoint),
                                    progress=lambda n: bar.advance(task, n), total=lambda n: bar.update(task, total=n),
                                    rank=rank, world_size=world_size, note=_note, max_memory_gb=max_memory_gb)
    if path == out:
        console.print(f"wrote [bold]{path}[/]")


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    app()

"""Commands that score forecasts, and make the baseline forecasts they are scored beside:
``evaluate`` and ``baseline``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from finescale.cli.common import SetOption, console, err_console, user_errors


@user_errors
def evaluate(
    forecast: Annotated[
        Path,
        typer.Option(
            help="Forecast to score (Zarr/NetCDF), dims (member, time, y, x); "
            "no member dim: deterministic."
        ),
    ],
    out: Annotated[
        Path, typer.Option(help="Output folder: metrics.json, figures/*.png, report.html.")
    ],
    truth: Annotated[
        Path | None,
        typer.Option(
            help="HR truth in finescale's layout (Zarr/NetCDF), dims (time, y, x), 2-D "
            "lat/lon. Give this or --config."
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            help="YAML config: the truth is its data.hr and the LR input its data.lr, read as "
            "training reads them (names, units, orientation)."
        ),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(
            help="With --config: score the `train`, `validation`, `test` or "
            "`all` times of the config's splits."
        ),
    ] = None,
    times: Annotated[
        str | None, typer.Option(help="Score only `START..END` (inclusive ISO times).")
    ] = None,
    lr: Annotated[
        Path | None,
        typer.Option(
            help="LR input: shown on the maps; its grid length is the largest scale scored in the "
            "spectra (default: the config's data.lr, else 8 HR grid lengths)."
        ),
    ] = None,
    reference: Annotated[
        list[str] | None,
        typer.Option(
            "--reference", help="Another forecast scored beside it: `NAME=PATH` (repeatable)."
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(help="Name of the forecast in tables and figures (default: its file name)."),
    ] = None,
    variable: Annotated[
        list[str] | None,
        typer.Option(
            "--variable",
            help="Score only this variable (repeatable; default: every forecast variable, which "
            "the truth must have, plus wind_speed from u10/v10).",
        ),
    ] = None,
    region: Annotated[
        list[str] | None,
        typer.Option(
            "--region",
            help="A box also scored alone: `NAME=LAT0,LAT1,LON0,LON1` in degrees (repeatable).",
        ),
    ] = None,
    mask: Annotated[
        list[str] | None,
        typer.Option(
            "--mask",
            help="A region from a 0/1 mask on the HR grid: "
            "`NAME=PATH:VAR` (NetCDF/Zarr; repeatable).",
        ),
    ] = None,
    unweighted: Annotated[
        bool,
        typer.Option(
            "--unweighted",
            help="Plain means over the grid points instead of cos(latitude) area weights (e.g. for "
            "a projected grid of near-equal cells, where cos(lat) is not the cell area).",
        ),
    ] = False,
    seed: Annotated[
        int,
        typer.Option(
            help="Seed of the rank-histogram tie breaks and the 'which one is real?' panel."
        ),
    ] = 0,
) -> None:
    """Score an ensemble (or a deterministic forecast) against the HR truth, beside references.

    Only times present in every file are scored; every forecast variable is scored (or the
    command fails naming the one the truth lacks) unless --variable picks some. Averages are
    area-weighted (cos latitude) unless --unweighted. Writes fair CRPS, spread-skill, spectra,
    extremes and more to `metrics.json`, figures to `figures/`, and one self-contained
    `report.html`; every conversion, reordering and assumption is printed as a note.

    **Examples**

    `finescale evaluate --config era5_cerra.yaml --split test --forecast runs/diffusion.zarr
    --out runs/eval-diffusion`

    `finescale evaluate --forecast runs/oracle.zarr --truth runs/world/hr.zarr --out runs/eval`

    `finescale evaluate --forecast runs/diffusion.zarr --truth runs/world/hr.zarr
    --lr runs/world/lr.zarr --reference bicubic=runs/bicubic.zarr
    --reference oracle=runs/oracle.zarr --name diffusion --out runs/eval-diffusion`

    `finescale evaluate --forecast runs/oracle.zarr --truth runs/world/hr.zarr --out runs/eval
    --region alps=45.5,47,7,10 --mask valais=masks/valais.nc:mask`
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
            forecast,
            truth,
            out,
            lr_path=lr,
            references=references,
            config=cfg,
            split=split,
            times=window,
            name=name,
            variables=variable or None,
            regions=regions,
            weighting="none" if unweighted else "area",
            seed=seed,
            progress=lambda text: status.update(f"evaluate: {text}"),
        )
    metrics = json.loads((result / "metrics.json").read_text())
    for note in metrics["meta"].get("notes", []):  # one line each, however wide the terminal
        err_console.print(f"note: {escape(note)}", highlight=False, soft_wrap=True)
    console.print(summary_table(metrics))
    console.print(f"wrote [bold]{result}[/]: metrics.json, figures/, report.html")


@user_errors
def baseline(
    method: Annotated[
        str,
        typer.Option(
            help="`bilinear`, `bicubic`, `qm` (quantile mapping), `bcsd` or "
            "`qdm` (quantile delta mapping)."
        ),
    ],
    config: Annotated[Path, typer.Option(help="YAML config with a `data` section.")],
    out: Annotated[
        Path, typer.Option(help="Output Zarr store: a one-member ensemble (member, time, y, x).")
    ],
    split: Annotated[
        str, typer.Option(help="Times to downscale: `train`, `validation`, `test` or `all`.")
    ] = "test",
    set_: SetOption = None,
) -> None:
    """Downscale with a baseline users would pick today; qm, bcsd and qdm are fitted on the train
    split.

    Writes the HR variables that LR also has, with the HR truth's units and names, as a
    one-member ensemble that `finescale evaluate` scores like any other.

    **Examples**

    `finescale baseline --method bicubic --config runs/world/finescale.yaml --out runs/bicubic.zarr`

    `finescale baseline --method qm --config runs/world/finescale.yaml --out runs/qm.zarr
    --split validation`

    `finescale baseline --method bcsd --config era5_cerra.yaml --out runs/bcsd.zarr
    --set data.splits.gap_hours=48`
    """
    from finescale.baselines import check_method, run_baseline
    from finescale.config import load_config

    check_method(method)
    cfg = load_config(config, set_ or [])
    with err_console.status(f"baseline {method}"):
        path = run_baseline(cfg.data, method, out, split=split)
    console.print(f"wrote [bold]{path}[/]: {method}, {split} split, one member")

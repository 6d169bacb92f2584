"""Stages wired together: the demo on the embedded Alps world, and helpers the commands share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr
from rich.console import Console

from finescale.config import ExperimentConfig, load_config
from finescale.io import atomic_path

WORLD_CONFIG = "finescale.yaml"


def world_config(world_dir: str | Path) -> ExperimentConfig:
    """The config ``finescale world`` wrote beside its data (the world must be finished)."""
    from finescale.data.world.simulate import WORLD_FILE

    if not (Path(world_dir) / WORLD_FILE).is_file():
        raise FileNotFoundError(f"{world_dir}: not a finished Alps world (no {WORLD_FILE}); run `finescale world` first")
    return load_config(Path(world_dir) / WORLD_CONFIG)


def world_split_times(world_dir: str | Path, split: str) -> np.ndarray:
    """Times (datetime64[h]) of ``split`` (train, validation, test or all) of a world's HR data."""
    from finescale.data.pairs import split_times

    cfg = world_config(world_dir)
    times = xr.open_zarr(cfg.data.hr.path).time.values.astype("datetime64[h]")
    if split == "all":
        return times
    splits = split_times(times, cfg.data.splits)
    if split not in splits:
        raise ValueError(f"unknown split '{split}'; choose from {', '.join([*splits, 'all'])}")
    return np.asarray(splits[split]).astype("datetime64[h]")


def _wettest_time(hr: xr.Dataset, times: np.ndarray) -> np.datetime64:
    """The time with the most rain in ``times``: the most telling map."""
    rain = hr.tp.sel(time=times).mean(("y", "x")).compute()
    return rain.time.values[int(np.argmax(rain.values))]


def run_demo(out: str | Path, days: float = 30.0, members: int = 16, seed: int = 0, console: Console | None = None) -> Path:
    """World -> alignment check -> oracle ensemble of the test period -> overview figure.

    Returns the path of the figure. Later stages (models, baselines, evaluation) join here.
    """
    import matplotlib.pyplot as plt

    from finescale.data.pairs import open_pair, report_table
    from finescale.data.world import preset, simulate
    from finescale.data.world.simulate import oracle
    from finescale.verify.maps import ensemble_maps

    console = console or Console()
    out = Path(out)
    world_dir = out / "world"
    console.rule("1. Alps world (alps-small)")
    simulate(world_dir, preset("alps-small").model_copy(update={"days": days}), seed=seed)
    console.print(f"wrote {world_dir}")

    console.rule("2. Pairing check")
    cfg = world_config(world_dir)
    tables = report_table(open_pair(cfg.data))
    for table in tables if isinstance(tables, (list, tuple)) else [tables]:
        console.print(table)

    console.rule(f"3. Oracle ensemble ({members} members, test period)")
    test_times = world_split_times(world_dir, "test")
    oracle_path = oracle(world_dir, members, out / "oracle.zarr", times=test_times)
    console.print(f"wrote {oracle_path}")

    console.rule("4. Figures")
    lr, hr = xr.open_zarr(world_dir / "lr.zarr"), xr.open_zarr(world_dir / "hr.zarr")
    ens = xr.open_zarr(oracle_path)
    when = _wettest_time(hr, test_times)
    fig = ensemble_maps(lr, hr, ens, when, ["t2m", "u10", "tp"], label="oracle")
    figure = out / "overview.png"
    with atomic_path(figure) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return figure

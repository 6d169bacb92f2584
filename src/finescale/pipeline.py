"""Stages wired together: the demo on the embedded Alps world, and helpers the commands share."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr
from rich.console import Console

from finescale.config import ExperimentConfig, load_config

WORLD_CONFIG = "finescale.yaml"
BASELINES = ("bicubic", "qm", "bcsd")


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


def parse_times(text: str | None, checkpoint: str | Path) -> np.ndarray | slice | None:
    """``None`` (all), ``START..END`` (inclusive ISO times) or a split name of the checkpoint's config."""
    if text is None:
        return None
    if ".." in text:
        start, end = text.split("..", 1)
        return slice(np.datetime64(start), np.datetime64(end))
    from finescale.data.pairs import split_times
    from finescale.data.sources import open_source
    from finescale.train import load_checkpoint

    cfg = load_checkpoint(checkpoint).config
    blocks = split_times(open_source(cfg.data.hr).time.values, cfg.data.splits)
    if text not in blocks:
        raise ValueError(f"--times {text!r}: expected START..END or one of {', '.join(blocks)}")
    return blocks[text]


def run_demo(out: str | Path, days: float = 30.0, members: int = 16, seed: int = 0, console: Console | None = None) -> Path:
    """World -> alignment check -> oracle and baselines for the test period -> evaluation report.

    Until a trained model joins, the oracle stands in the forecast's place: the report shows the
    physical limit beside the baselines users would pick today. Returns the report's path.
    """
    from finescale.baselines import run_baseline
    from finescale.data.pairs import open_pair, report_table
    from finescale.data.world import preset, simulate
    from finescale.data.world.simulate import oracle
    from finescale.verify.evaluate import run_evaluate
    from finescale.verify.report import summary_table

    console = console or Console()
    out = Path(out)
    world_dir = out / "world"
    console.rule("1. Alps world (alps-small)")
    simulate(world_dir, preset("alps-small").model_copy(update={"days": days}), seed=seed)
    console.print(f"wrote {world_dir}")

    console.rule("2. Pairing check")
    cfg = world_config(world_dir)
    console.print(report_table(open_pair(cfg.data)))

    console.rule(f"3. Oracle ensemble ({members} members, test period)")
    oracle_path = oracle(world_dir, members, out / "oracle.zarr", times=world_split_times(world_dir, "test"))
    console.print(f"wrote {oracle_path}")

    console.rule("4. Baselines (fitted on the training period)")
    baselines = {}
    for method in BASELINES:
        baselines[method] = run_baseline(cfg.data, method, out / f"{method}.zarr", split="test")
        console.print(f"wrote {baselines[method]}")

    console.rule("5. Evaluation")
    report_dir = run_evaluate(
        oracle_path, world_dir / "hr.zarr", out / "evaluation", lr_path=world_dir / "lr.zarr",
        references=baselines, name="oracle",
    )
    console.print(summary_table(json.loads((report_dir / "metrics.json").read_text())))
    return report_dir / "report.html"

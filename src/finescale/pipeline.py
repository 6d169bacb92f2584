"""Stages wired together: the demo on the embedded Alps world, and helpers the commands share."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml
from rich.console import Console

from finescale.config import (
    ConditioningConfig,
    ExperimentConfig,
    ModelConfig,
    SampleConfig,
    TrainConfig,
    load_config,
)
from finescale.console import progress_bar
from finescale.io.atomic import write_text
from finescale.nn.settings import UNetArchitecture

WORLD_CONFIG = "finescale.yaml"
BASELINES = ("bicubic", "qm", "bcsd", "qdm")
DEMO_STEPS = (800, 2000)  # regression, diffusion: ~9 min on 2 CPU cores


def world_config(world_dir: str | Path) -> ExperimentConfig:
    """The config ``finescale world`` wrote beside its data (the world must be finished)."""
    from finescale.data.world.simulate import WORLD_FILE

    if not (Path(world_dir) / WORLD_FILE).is_file():
        raise FileNotFoundError(
            f"{world_dir}: not a finished Alps world (no {WORLD_FILE}); run `finescale world` first"
        )
    return load_config(Path(world_dir) / WORLD_CONFIG)


def world_split_times(world_dir: str | Path, split: str) -> np.ndarray:
    """Times (datetime64[h]) of ``split`` (train, validation, test or all) of the times a world's LR
    and HR share."""
    from finescale.data.pairs import shared_times, split_block

    cfg = world_config(world_dir)
    return split_block(shared_times(cfg.data), cfg.data.splits, split).astype("datetime64[h]")


def parse_times(text: str | None, checkpoint: str | Path) -> np.ndarray | slice | None:
    """``None`` (all), ``START..END`` (inclusive ISO times) or a split name of the checkpoint's
    config."""
    if text is None:
        return None
    if ".." in text:
        start, end = text.split("..", 1)
        return slice(np.datetime64(start), np.datetime64(end))
    from finescale.checkpoints import load_checkpoint
    from finescale.data.pairs import SPLITS, shared_times, split_block

    if text not in SPLITS:
        raise ValueError(f"--times {text!r}: expected START..END or one of {', '.join(SPLITS)}")
    cfg = load_checkpoint(checkpoint).config
    return split_block(shared_times(cfg.data), cfg.data.splits, text)


def demo_configs(
    world_dir: str | Path, out: str | Path, members: int = 16
) -> tuple[ExperimentConfig, ExperimentConfig]:
    """The demo's two experiments on a world's data: a regression model, then a residual diffusion
    model over its mean. Small network and short training, sized for 2 CPU cores."""
    base = world_config(world_dir)
    out = Path(out).absolute()
    network = UNetArchitecture(base_width=16, channel_mult=(1, 2, 2))
    # the held-out skill benchmark's configuration (docs/benchmarks.md), kept on this world's
    # validation hours too: the domain-mean 850 hPa wind that the world's orographic rain follows,
    # to the regression's every block through FiLM, and precipitation's noise levels 1.6 x
    means = ("u850", "v850")
    train = TrainConfig(
        patch_size=64,
        batch_size=8,
        learning_rate=1e-3,
        warmup_steps=50,
        val_every_steps=200,
        val_batches=2,
    )
    regression = base.model_copy(
        update={
            "name": "demo-regression",
            "model": ModelConfig(
                kind="regression",
                network=network,
                conditioning=ConditioningConfig(domain_means=list(means), film=True),
            ),
            "train": train.model_copy(
                update={"out": out / "regression", "max_steps": DEMO_STEPS[0]}
            ),
        }
    )
    diffusion = base.model_copy(
        update={
            "name": "demo-diffusion",
            "model": ModelConfig(
                kind="diffusion",
                residual="regression",
                network=network,
                conditioning=ConditioningConfig(domain_means=list(means)),
                noise_scale={"tp": 1.6},
                regression_checkpoint=out / "regression" / "checkpoints" / "last.ckpt",
            ),
            "train": train.model_copy(
                update={"out": out / "diffusion", "max_steps": DEMO_STEPS[1]}
            ),
            # the library's sampler defaults: chosen on validation hours of this world
            "sample": SampleConfig(
                members=members,
                batch_size=min(members, 16),
            ),
        }
    )
    return regression, diffusion


def run_demo(
    out: str | Path,
    days: float = 30.0,
    members: int = 16,
    seed: int = 0,
    every: int = 3,
    console: Console | None = None,
) -> Path:
    """World -> alignment check -> regression -> diffusion -> ensembles -> evaluation report.

    The diffusion ensemble (``members`` members) is scored for every ``every``-th hour of the
    test period beside the regression mean, the exact oracle and the baselines users would pick
    today. Each stage's config is written beside its output so it can be re-run with
    ``finescale train --config``. Returns the report's path.
    """
    from finescale.baselines import run_baseline
    from finescale.data.pairs import open_pair, report_table
    from finescale.data.world import preset, simulate
    from finescale.data.world.simulate import oracle
    from finescale.evaluation import run_evaluate
    from finescale.generation import downscale
    from finescale.training import train
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

    regression_cfg, diffusion_cfg = demo_configs(world_dir, out, members)
    checkpoints = {}
    for number, stage in [(3, regression_cfg), (4, diffusion_cfg)]:
        kind = stage.model.kind
        console.rule(f"{number}. Train the {kind} model ({stage.train.max_steps} steps)")
        write_text(
            yaml.safe_dump(stage.model_dump(mode="json"), sort_keys=False), out / f"{kind}.yaml"
        )
        checkpoints[kind] = train(stage)
        console.print(f"wrote {checkpoints[kind]} (config: {out / f'{kind}.yaml'})")

    times = world_split_times(world_dir, "test")[::every]
    console.rule(
        f"5. HR ensembles for {times.size} test hours ({members} members, oracle, baselines)"
    )
    forecasts = {}
    for kind, checkpoint in checkpoints.items():
        with progress_bar(console) as bar:
            task = bar.add_task(kind, total=times.size)
            forecasts[kind] = downscale(
                checkpoint,
                world_dir / "lr.zarr",
                world_dir / "static.zarr",
                out / f"{kind}.zarr",
                times=times,
                progress=lambda n, task=task: bar.advance(task, n),
            )
    with progress_bar(console) as bar:
        task = bar.add_task("oracle", total=members * times.size)
        forecasts["oracle"] = oracle(
            world_dir,
            members,
            out / "oracle.zarr",
            times=times,
            progress=lambda n: bar.advance(task, n),
        )
    for method in BASELINES:
        forecasts[method] = run_baseline(cfg.data, method, out / f"{method}.zarr", split="test")
    console.print("wrote " + ", ".join(str(path) for path in forecasts.values()))

    console.rule("6. Evaluation")
    report_dir = run_evaluate(
        forecasts.pop("diffusion"),
        world_dir / "hr.zarr",
        out / "evaluation",
        lr_path=world_dir / "lr.zarr",
        references=forecasts,
        name="diffusion",
    )
    console.print(summary_table(json.loads((report_dir / "metrics.json").read_text())))
    return report_dir / "report.html"

"""The worlds, trainings and stores of the AtmoRep held-out benchmark (benchmarks/atmorep.py).

Every stage runs through :class:`stages.Stages`: its output, once complete, is reused on a rerun
and its time kept in ``<out>/timings.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from skill import world as simulate_world  # benchmarks/skill.py: the same worlds, simulated alike
from stages import Stages

from finescale.atmorep.predict import predict
from finescale.atmorep.references import linear_in_time, persistence
from finescale.atmorep.settings import AtmoRepConfig
from finescale.atmorep.train import pretrain
from finescale.config import validate
from finescale.config.data import DataConfig
from finescale.data.pairs import open_pair
from finescale.data.world.simulate import WORLD_FILE, oracle
from finescale.io.atomic import write_zarr
from finescale.io.stores import forecast_dataset
from finescale.pipeline import world_config

#: the config section each task's candidates override
SECTION = {"interpolation": "pretrain", "nowcast": "pretrain", "downscale": "downscale"}


def merge(base: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """``base`` with ``overrides`` laid over it, section by section (one level deep)."""
    return {
        key: {**base.get(key, {}), **value} if isinstance(value, dict) else value
        for key, value in {**base, **(overrides or {})}.items()
    }


@dataclass
class World:
    """A world the benchmark reads: its label, seed and terrain, its folder (``world.json``,
    ``hr.zarr``, ...), where its skill-run ensembles lie (None: no skill run) and this
    benchmark's folder for it."""

    label: str
    seed: int
    terrain: str
    path: Path
    ensembles: Path | None
    folder: Path

    @property
    def data(self) -> DataConfig:
        return world_config(self.path).data

    def describe(self) -> dict[str, Any]:
        times = json.loads((self.path / WORLD_FILE).read_text())["times"]
        return {"seed": self.seed, "terrain": self.terrain, "path": str(self.path), "times": times}


def worlds(spec: dict[str, Any], out: Path, skill: Path | None) -> tuple[World, list[World]]:
    """The development world and the held-out worlds of the config: those of the skill run in
    ``skill`` (checked against the config's seeds), else simulated into ``out``/worlds."""
    entries = [("dev", spec["development"])] + [
        (f"seed{h['seed']}-{h['terrain']}", h) for h in spec["heldout"]
    ]
    found = []
    for label, entry in entries:
        folder = out / ("dev" if label == "dev" else f"heldout/{label}")
        if skill is not None:
            home = skill / ("dev" if label == "dev" else f"heldout/{label}")
            path = home / "world"
            if not (path / WORLD_FILE).is_file():
                raise FileNotFoundError(f"--skill {skill}: no world at {path} (world '{label}')")
            seed = json.loads((path / WORLD_FILE).read_text())["seed"]
            if seed != entry["seed"]:
                raise ValueError(
                    f"{path / WORLD_FILE}: seed {seed}, the config says {entry['seed']}"
                )
            ensembles = None if label == "dev" else home
        else:
            sim = out / "worlds" / label
            path = simulate_world(
                sim, spec["world"], entry["seed"], entry["terrain"], Stages(sim / "timings.json")
            )
            ensembles = None
        found.append(World(label, entry["seed"], entry["terrain"], path, ensembles, folder))
    return found[0], found[1:]


@dataclass
class Run:
    """Trains and predicts into ``out`` on the development world's ``data``; ``members`` per
    ensemble."""

    out: Path
    data: dict[str, Any]
    timed: Stages
    members: int

    def train(self, name: str, section: dict[str, Any], init: Path | None = None) -> Path:
        """Train (or reuse) the AtmoRep config ``section`` (no ``data``: the development
        world's) into ``out``/``name``, from ``init`` when given; its last checkpoint."""
        tree = {"data": self.data, **section, **({"init_checkpoint": str(init)} if init else {})}
        tree["train"] = {**tree.get("train", {}), "out": str(self.out / name)}
        cfg = validate(tree, AtmoRepConfig, source=f"{name} section")
        last = self.out / name / "checkpoints" / "last.ckpt"
        self.timed(f"train {name}", last, lambda: pretrain(cfg, resume=True))
        return last

    def predict(
        self,
        label: str,
        checkpoint: Path,
        store: Path,
        task: str,
        world: World,
        split: str,
        stride: int | None = None,
    ) -> Path:
        """The model's ``task`` ensemble on ``world``'s block ``split`` in ``store``."""
        self.timed(
            f"predict {label}",
            store,
            lambda: predict(
                checkpoint,
                store,
                task,
                split=split,
                members=self.members,
                stride=stride,
                data=world.data,
            ),
        )
        return store


def scratch_steps(spec: dict[str, Any], task: str, candidate: dict[str, Any] | None) -> int:
    """Our total steps for a task: pre-training's plus the chosen candidate's fine-tune."""
    tuned = 0 if candidate is None else merge(spec[SECTION[task]], candidate)["train"]["max_steps"]
    return int(spec["pretrain"]["train"]["max_steps"] + tuned)


def scratch_section(spec: dict[str, Any], task: str, candidate: dict[str, Any] | None) -> dict:
    """The chosen candidate's network with the config's ``scratch`` overrides for the task (its
    masks alone, a learning rate for a start from scratch), for our total number of steps."""
    section = merge(merge(spec[SECTION[task]], candidate), spec["scratch"][task])
    section["train"] = {**section["train"], "max_steps": scratch_steps(spec, task, candidate)}
    return section


def time_reference(
    kind: str, forecast: Path, world: World, out: Path, timed: Stages, tag: str
) -> Path:
    """Linear interpolation in time (``linear``) or persistence (``persistence``) at the valid
    times of the AtmoRep store ``forecast``, from ``world``'s HR truth, in ``out`` (the stage
    named ``tag``)."""
    make = {"linear": linear_in_time, "persistence": persistence}[kind]

    def write() -> None:
        truth = open_pair(world.data).hr
        ds = xr.open_zarr(forecast)
        names = [str(v) for v in ds.data_vars if v in truth.data_vars]  # not the LR winds
        write_zarr(make(ds, truth, names).compute(), out)

    timed(f"{kind} {tag}", out, write)
    return out


def oracle_store(world: World, times: np.ndarray, members: int, out: Path, timed: Stages) -> Path:
    """Exact samples of p(HR | LR) of ``world`` at ``times`` in ``out``."""
    timed(
        f"oracle {world.label} {out.stem}",
        out,
        lambda: oracle(world.path, members, out, times=times),
    )
    return out


def bias_stores(world: World, predicted: Path, timed: Stages) -> dict[str, Path]:
    """Beside the bias-corrected LR precipitation ``predicted``: its truth (the HR tp coarsened
    to the LR grid), quantile mapping fitted on ``world``'s own training block (as the skill
    benchmark fits its statistical baseline) and the uncorrected LR tp, at its valid times."""
    from finescale.baselines import fit_quantile_mapping
    from finescale.data.grids import coarsen
    from finescale.data.pairs import split_times

    paths = {
        "truth": world.folder / "bias-truth.zarr",
        "qm": world.folder / "bias-qm.zarr",
        "uncorrected": world.folder / "bias-lr.zarr",
    }

    def write() -> None:
        pair = open_pair(world.data)
        train = split_times(pair.hr.time.values, world.data.splits)["train"]
        lr = pair.lr[["tp"]]
        truth = coarsen(pair.hr.tp, round(pair.ratio)).to_dataset(name="tp")
        truth = truth.assign_coords(lat=lr.lat, lon=lr.lon)
        times = xr.open_zarr(predicted).time.values
        qm = fit_quantile_mapping(lr.sel(time=train), truth.sel(time=train), fit_period="train")
        write_zarr(
            forecast_dataset(
                qm.apply(lr.sel(time=times)).compute(), truth, {"title": "quantile mapping"}
            ),
            paths["qm"],
        )
        write_zarr(
            forecast_dataset(lr.sel(time=times).compute(), truth, {"title": "uncorrected LR"}),
            paths["uncorrected"],
        )
        write_zarr(truth.sel(time=times).compute(), paths["truth"])  # last: marks the stage done

    timed(f"bias references {world.label}", paths["truth"], write)
    return paths

"""Benchmark: samples per second the data loader delivers against those a training step consumes.

Target (issue 6, data that does not fit in memory): at the quickstart size (the demo's world,
patches and networks) the loader delivers at least 5 x the samples per second that a training
step consumes, while reading every sample from the Zarr stores (nothing loaded whole).

    python benchmarks/loader.py --out docs/results/loader-cpu.json

Builds the demo's Alps world under ``--root`` (once; reused), then in one run:

- the training step: the demo's regression and residual diffusion models (patches of 64, batches
  of 8) on batches already in memory: forward, backward and Adam step, the median step with 1
  thread and with every CPU thread, the faster counted (a faster step makes the target harder);
- the loader: ``DataLoader(PatchDataset)`` as training builds it, with 0, 1 and 2 worker
  processes, over the first ``--batches`` batches of a fresh loader (the cache starts empty, so
  the chunks are read from disk during the run), and once without a cache (``cache_mb: 0``:
  every sample decodes the chunks it overlaps, the regime of a dataset much larger than the cache).

Prints a markdown table and writes the numbers to ``--json`` (default runs/benchmarks/loader.json)
with the machine, versions, date, command and load average.

With ``--memory``, the memory of streaming instead (the measurement of
``tests/test_streaming.py``'s slow test, recorded): an HR store of ``--memory-hours`` hours of a
``--memory-size`` squared grid of random float32 (chunks of 1 hour x 256 x 256; random values do
not compress), its LR at 8 x the spacing and static fields, built once under ``--root``; then a
small regression model trains 6 steps in a fresh process (1 worker, ``cache_mb: 32``) while the
proportional set size of the process tree is sampled every 50 ms. The defaults are the docs' 768
hours of 1024 x 1024 (3 GB on disk); default JSON runs/benchmarks/loader-memory.json.

    python benchmarks/loader.py --memory --json docs/results/loader-memory-cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from machine import disk_gb  # benchmarks/machine.py (scripts run from their folder)
from results import RUNS, begin, write_results

from finescale.config import ExperimentConfig
from finescale.data.patches import PatchDataset, lazy_fields
from finescale.data.windows import BlockCache, Sources, open_sources
from finescale.data.world import preset, simulate
from finescale.models.build import build_model
from finescale.pipeline import demo_configs
from finescale.training import prepare, regression_for, train


def world(root: Path, days: float) -> Path:
    """The demo's world (alps-small, ``days`` long), simulated once."""
    path = root / "world"
    if not (path / "world.json").is_file():
        simulate(path, preset("alps-small").model_copy(update={"days": days}), seed=0)
    return path


def step_rate(cfg: ExperimentConfig, steps: int, warmup: int = 3) -> dict[str, float]:
    """Patches per second one training step of ``cfg``'s model consumes (batches held in memory),
    with 1 thread and with every CPU thread: the faster (on a shared machine 1 thread can win)."""
    prepared = prepare(cfg)
    t = cfg.train
    regression = regression_for(cfg.model)
    model = build_model(
        cfg.model, prepared.layout, prepared.periodic_lon, regression.model if regression else None
    )
    optimiser = torch.optim.Adam(model.parameters(), lr=t.learning_rate)
    patches = PatchDataset(
        prepared.train,
        prepared.layout,
        prepared.to_hr,
        t.patch_size,
        (steps + warmup) * t.batch_size,
    )
    batches = list(torch.utils.data.DataLoader(patches, batch_size=t.batch_size))
    model.train()
    cores = torch.get_num_threads()
    step_s = {}
    for threads in sorted({1, cores}):
        torch.set_num_threads(threads)
        times = []
        for batch in batches:
            start = time.perf_counter()
            loss = model.loss(batch)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            times.append(time.perf_counter() - start)
        step_s[threads] = float(
            np.median(times[warmup:])
        )  # a step slowed by another job counts once
    torch.set_num_threads(cores)
    fastest = min(step_s.values())
    return {"step_s": fastest, "samples_per_s": t.batch_size / fastest, "step_s_by_threads": step_s}


def loader_rate(
    cfg: ExperimentConfig, workers: int, cache_mb: int, batches: int
) -> dict[str, float]:
    """Patches per second a fresh training loader delivers over its first ``batches`` batches."""
    prepared = prepare(cfg)
    t, pair = cfg.train, prepared.pair
    sources = Sources(partial(open_sources, cfg.data), opened={"lr": pair.lr, "hr": pair.hr})
    fields = lazy_fields(
        prepared.layout,
        prepared.stats,
        sources,
        pair.static,
        pair.hr.lat,
        pair.hr.lon,
        prepared.train.times,
        BlockCache(cache_mb * 2**20),
    )
    patches = PatchDataset(
        fields, prepared.layout, prepared.to_hr, t.patch_size, (batches + 1) * t.batch_size
    )
    loader = torch.utils.data.DataLoader(
        patches, batch_size=t.batch_size, num_workers=workers, persistent_workers=workers > 0
    )
    start = time.perf_counter()
    batch_iter = iter(loader)
    next(batch_iter)  # worker start-up and opening the stores
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(batches):
        next(batch_iter)
    seconds = time.perf_counter() - start
    return {
        "workers": workers,
        "cache_mb": cache_mb,
        "first_batch_s": first,
        "samples_per_s": batches * t.batch_size / seconds,
    }


def report(result: dict) -> None:
    """The markdown table of a run."""
    consumed = {name: s["samples_per_s"] for name, s in result["step"].items()}
    fastest = max(consumed.values())
    print("| | samples/s | x the faster step |\n|---|---:|---:|")
    for name, rate in consumed.items():
        print(
            f"| training step, {name} (batch {result['batch_size']}) | {rate:.1f} | "
            f"{rate / fastest:.2f} |"
        )
    for row in result["loader"]:
        cache = f"cache {row['cache_mb']} MiB" if row["cache_mb"] else "no cache"
        print(
            f"| loader, {row['workers']} workers, {cache} | {row['samples_per_s']:.0f} | "
            f"{row['samples_per_s'] / fastest:.1f} |"
        )


def streaming_memory(root: Path, hours: int, size: int) -> dict:
    """Peak memory (PSS of the process tree) and wall time of training on a random HR store of
    ``hours`` x ``size`` x ``size`` float32, with the slow test's store and measurement."""
    # the slow test's store and measurement themselves, not a copy
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_streaming import TRAIN, peak_training_memory, write_pair

    data = root / f"memory-{hours}h-{size}"
    config = data / "finescale.yaml"
    if not config.is_file():  # the store takes minutes to write: built once
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True)
        write_pair(data, hours, (size, size), 8, (1, 256, 256))
    shutil.rmtree(data / "run", ignore_errors=True)  # train would resume an earlier checkpoint
    load = [os.getloadavg()[0]]
    peak, seconds = peak_training_memory(config, data / "run")
    load.append(os.getloadavg()[0])
    store = disk_gb(data / "hr.zarr")
    return {
        "hr_hours": hours,
        "hr_grid": [size, size],
        "hr_chunks": [1, 256, 256],
        "hr_gb_on_disk": round(store, 3),
        "hr_gb_of_values": round(hours * size * size * 4 / 1e9, 3),
        "peak_pss_gb": round(peak / 1e9, 3),
        "store_over_peak": round(store / (peak / 1e9), 2),
        "wall_s": round(seconds, 1),
        "load_average_1min": [round(x, 2) for x in load],
        "training_child": TRAIN.strip(),  # the script trained in the fresh process, as run
        "memory": "proportional set size of the process and its workers, sampled every 50 ms",
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", type=Path, default=Path("/tmp/finescale-loader-bench"))
    parser.add_argument(
        "--days", type=float, default=30.0, help="length of the world (the demo's default)"
    )
    parser.add_argument("--batches", type=int, default=150, help="batches each loader delivers")
    parser.add_argument("--steps", type=int, default=15, help="timed training steps per model")
    parser.add_argument(
        "--memory", action="store_true", help="measure the memory of streaming instead of the speed"
    )
    parser.add_argument("--memory-hours", type=int, default=768, help="hours of the HR store")
    parser.add_argument("--memory-size", type=int, default=1024, help="HR points per side")
    parser.add_argument(
        "--out",
        "--json",
        dest="out",
        type=Path,
        default=None,
        help="results JSON (default runs/benchmarks/loader.json, or "
        "loader-memory.json with --memory)",
    )
    parser.add_argument("--from-json", type=Path, default=None, help="print an earlier run's table")
    args = parser.parse_args()
    if args.from_json:
        report(json.loads(args.from_json.read_text()))
        return
    run = begin()
    if args.memory:
        if args.memory_size % 256 or args.memory_hours < 24:
            parser.error(
                f"--memory-size {args.memory_size}: a multiple of 256 (the chunks); "
                f"--memory-hours {args.memory_hours}: at least 24"
            )
        result = streaming_memory(args.root, args.memory_hours, args.memory_size)
        write_results(args.out or RUNS / "loader-memory.json", run, result)
        print(
            f"HR store {result['hr_gb_on_disk']:.2f} GB, peak memory of training "
            f"{result['peak_pss_gb']:.2f} GB ({result['store_over_peak']:.1f} x smaller), "
            f"{result['wall_s']:.0f} s"
        )
        return

    world_dir = world(args.root, args.days)
    regression, diffusion = demo_configs(world_dir, args.root / "demo")
    checkpoint = diffusion.model.regression_checkpoint
    if (
        not checkpoint.is_file()
    ):  # the diffusion model wraps a regression model: any weights time the same
        train(
            regression.model_copy(
                update={"train": regression.train.model_copy(update={"max_steps": 1})}
            )
        )
    load = [os.getloadavg()[0]]
    step = {
        "regression": step_rate(regression, args.steps),
        "diffusion": step_rate(diffusion, args.steps),
    }
    runs = [(0, 256), (1, 256), (2, 256), (1, 0)]
    rows = [loader_rate(diffusion, workers, cache, args.batches) for workers, cache in runs]
    load.append(os.getloadavg()[0])
    t = diffusion.train
    result = {
        "patch_size": t.patch_size,
        "batch_size": t.batch_size,
        "network": diffusion.model.network.model_dump(mode="json"),
        "world_days": args.days,
        "batches": args.batches,
        "steps": args.steps,
        "step": step,
        "loader": rows,
        "load_average_1min": load,
    }
    write_results(args.out or RUNS / "loader.json", run, result)
    report(result)


if __name__ == "__main__":
    main()

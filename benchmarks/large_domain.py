"""Benchmark: generation on a 2048 x 2048 HR domain with patch tiling, peak memory and wall time.

Target (issue 6, large domains): a 2048 x 2048 HR domain generated with tiles keeps peak memory
under 4 GB on CPU (the seams are checked by tests/test_tiling.py).

    OMP_NUM_THREADS=1 python benchmarks/large_domain.py --members 4 2 --times 1 6 \
        --json docs/results/large-domain-cpu.json          # two rows: 4 members x 1 time, 2 x 6
    python benchmarks/large_domain.py --size 256 --tile 64 --overlap 16 --members 2   # smoke run

Builds once under ``--root`` (reused): a ``--size`` x ``--size`` HR grid (default 2048) at 0.01
degrees with smooth synthetic t2m, u10 and v10 over ``--hours`` hours, the LR at 8 times the spacing
(256 x 256 for 2048, block means of the HR, so the pair passes its checks) and static orography and
land-sea mask; then a residual diffusion model with the demo's network (base width 16, channel
multipliers 1, 2, 2), trained for 2 steps (memory and time do not depend on the weights). Then
``finescale downscale`` runs in a fresh process for each pair of ``--members`` and ``--times`` (a
row each: members in network batches of ``--batch``, LR times from the first), with tiles of
``--tile`` points overlapping by ``--overlap``, and this prints its wall time and its own peak
resident memory (results.measure) beside ``finescale.generation.estimate_memory``'s estimate, with
the times per block (the output's time chunk), and writes every row with the machine, versions,
date, command and load average to ``--json`` (default runs/benchmarks/large-domain.json). Run it
with OMP_NUM_THREADS=1 on shared cores: threads competing with other jobs slow torch down.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import yaml
from results import RUNS, begin, measure, write_results  # benchmarks/results.py

SIZE, RATIO, STEP = 2048, 8, 0.01  # default HR points per side, LR/HR spacing, HR spacing (deg)
TARGETS = ("t2m", "u10", "v10")
GENERATE = """
import sys, json
from finescale.generation import downscale
checkpoint, lr, static, out, sample, times = sys.argv[1:]
downscale(checkpoint, lr, static, out, sample=json.loads(sample), times=slice(*times.split("..")),
          note=lambda text: print(text, file=sys.stderr, flush=True))
"""


def smooth(rng: np.random.Generator, size: int, modes: int = 12) -> np.ndarray:
    """A (size, size) field of unit variance: random plane waves of 100 to 1000 points, and 10 %
    white noise."""
    y = np.arange(size, dtype=np.float32)[:, None]
    x = np.arange(size, dtype=np.float32)[None, :]
    field = np.zeros((size, size), np.float32)
    for _ in range(modes):
        wavelength, angle, phase = (
            rng.uniform(100, 1000),
            rng.uniform(0, np.pi),
            rng.uniform(0, 2 * np.pi),
        )
        k = 2 * np.pi / wavelength
        field += np.sin(k * np.cos(angle) * x + k * np.sin(angle) * y + phase, dtype=np.float32)
    field /= field.std()
    return field + 0.1 * rng.standard_normal((size, size), dtype=np.float32)


def build(root: Path, hours: int, size: int) -> Path:
    """HR, LR and static Zarr stores of ``size`` x ``size`` HR points and ``hours`` hours and the
    model's config under ``root`` (once); the config's path."""
    config = root / "finescale.yaml"
    if config.is_file():
        built = xr.open_zarr(root / "hr.zarr").sizes
        if (built["lat"], built["lon"], built["time"]) != (size, size, hours):
            raise ValueError(
                f"--root {root}: built for {built['lat']} x {built['lon']} HR points and "
                f"{built['time']} hours, asked for {size} x {size} and {hours}; give another "
                "--root or delete this one"
            )
        return config
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lat, lon = 40.0 + (np.arange(size) + 0.5) * STEP, 5.0 + (np.arange(size) + 0.5) * STEP
    times = np.datetime64("2021-06-01T00", "ns") + np.arange(hours).astype("timedelta64[h]")
    offsets = {"t2m": (288.0, 5.0), "u10": (3.0, 4.0), "v10": (-1.0, 4.0)}
    for k, when in enumerate(times):
        hr = xr.Dataset(
            {
                v: (("time", "lat", "lon"), (mean + std * smooth(rng, size))[None])
                for v, (mean, std) in offsets.items()
            },
            coords={"time": [when], "lat": lat, "lon": lon},
        )
        lr = hr.coarsen(lat=RATIO, lon=RATIO).mean()
        # hours since the start: units xarray infers from the first time alone (days) would
        # label the appended hours as days
        first = {
            "mode": "w",
            "encoding": {"time": {"units": "hours since 2021-06-01", "dtype": "int64"}},
        }
        append = {"append_dim": "time"} if k else first
        hr.to_zarr(root / "hr.zarr", zarr_format=2, consolidated=True, **append)
        lr.to_zarr(root / "lr.zarr", zarr_format=2, consolidated=True, **append)
    static = xr.Dataset(
        {
            "orog": (("lat", "lon"), 800 + 600 * smooth(rng, size)),
            "lsm": (("lat", "lon"), smooth(rng, size) > 0),
        },
        coords={"lat": lat, "lon": lon},
    ).astype(np.float32)
    static.to_zarr(root / "static.zarr", mode="w", zarr_format=2, consolidated=True)
    variables = {v: v for v in TARGETS}
    config.write_text(
        yaml.safe_dump(
            {
                "name": "large-domain",
                "data": {
                    "lr": {"path": "lr.zarr", "variables": variables},
                    "hr": {"path": "hr.zarr", "variables": variables},
                    "static": {"path": "static.zarr", "variables": {"orog": "orog", "lsm": "lsm"}},
                    "splits": {"train": 0.75, "validation": 0.125, "test": 0.125, "gap_hours": 0},
                },
                "model": {
                    "kind": "diffusion",
                    "residual": "interpolation",
                    "network": {"base_width": 16, "channel_mult": [1, 2, 2]},
                },
                "train": {
                    "out": str(root / "model"),
                    "max_steps": 2,
                    "batch_size": 8,
                    "patch_size": 64,
                    "warmup_steps": 1,
                    "val_every_steps": 2,
                    "val_batches": 1,
                    "num_workers": 0,
                    "accelerator": "cpu",
                },
            },
            sort_keys=False,
        )
    )
    return config


def checkpoint(config: Path) -> Path:
    """The model of ``config``, trained once."""
    from finescale.config import load_config
    from finescale.training import train

    cfg = load_config(config)
    last = Path(cfg.train.out) / "checkpoints" / "last.ckpt"
    return last if last.is_file() else train(cfg)


def generate(root: Path, model: Path, sample: dict, times: str) -> dict[str, Any]:
    """Wall time (s), peak resident memory (GB) and load average of `downscale` in a fresh
    process, and what it wrote."""
    out = root / "ensemble.zarr"
    for old in (
        out,
        out.parent / f".{out.name}.partial",
    ):  # a finished or partial earlier run would be resumed
        shutil.rmtree(old, ignore_errors=True)
    command = [
        sys.executable,
        "-c",
        GENERATE,
        str(model),
        str(root / "lr.zarr"),
        str(root / "static.zarr"),
        str(out),
        json.dumps(sample),
        times,
    ]
    measured = measure(command, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    written = xr.open_zarr(out)
    shape = {k: int(v) for k, v in written.sizes.items()}
    finite = all(bool(np.isfinite(written[v].values).all()) for v in written.data_vars)
    return {
        **measured,
        "output_shape": shape,
        "times_per_block": written[TARGETS[0]].encoding["chunks"][1],
        "finite": finite,
    }


def estimate(model: Path, sample: dict, times: int, size: int) -> dict[str, float]:
    """``finescale.generation.estimate_memory``'s peak memory (GB), in total and by part."""
    from finescale.checkpoints import load_checkpoint
    from finescale.generation import estimate_memory, sample_settings

    loaded = load_checkpoint(model)
    settings = sample_settings(loaded, sample)
    parts = estimate_memory(loaded.model, loaded.layout, settings, (size, size), times)
    names = ("sampler", "fields", "tile", "output", "libraries")
    return {"total": parts.total / 1e9} | {name: getattr(parts, name) / 1e9 for name in names}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=SIZE, help="HR points per side")
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        help="data and model (default /tmp/finescale-large-domain-hourly, -<size> for other sizes)",
    )
    parser.add_argument(
        "--hours", type=int, default=8, help="hours of data built (training needs 3 blocks)"
    )
    parser.add_argument(
        "--times",
        type=int,
        nargs="+",
        default=[1],
        help="LR times generated, one run per value (paired with --members)",
    )
    parser.add_argument(
        "--members",
        type=int,
        nargs="+",
        default=[4],
        help="members, one run per value (paired with --times)",
    )
    parser.add_argument("--batch", type=int, default=2, help="members per network call")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument(
        "--steps",
        type=int,
        default=3,
        help="DPM++(2M) steps on log-uniform levels (from 3 the second-order history is held)",
    )
    parser.add_argument(
        "--out",
        "--json",
        dest="out",
        type=Path,
        default=RUNS / "large-domain.json",
        help="results JSON",
    )
    args = parser.parse_args()
    runs = len(args.members), len(args.times)
    if max(runs) > 1 and min(runs) > 1 and runs[0] != runs[1]:
        parser.error(
            f"--members ({runs[0]} values) and --times ({runs[1]}) pair up: give as many "
            "of each, or one of either"
        )
    cases = list(zip(args.members * (max(runs) // runs[0]), args.times * (max(runs) // runs[1])))
    if max(args.times) > args.hours or min(args.times) < 1:
        parser.error(f"--times {args.times}: each between 1 and --hours ({args.hours})")
    if args.size % RATIO:
        parser.error(f"--size {args.size}: a multiple of the LR/HR ratio {RATIO}")
    # not /tmp/finescale-large-domain: builds there hold the hours labelled as days
    root = args.root or Path(
        "/tmp/finescale-large-domain-hourly" + ("" if args.size == SIZE else f"-{args.size}")
    )

    run = begin()
    config = build(root, args.hours, args.size)
    model = checkpoint(config)
    first = np.datetime64("2021-06-01T00", "h")
    rows = []
    for members, count in cases:
        sample = {
            "members": members,
            "batch_size": min(args.batch, members),
            "tile_size": args.tile,
            "tile_overlap": args.overlap,
            "solver": "dpmpp_2m",
            "schedule": "log_uniform",
            "steps": args.steps,
        }
        times = f"{first}..{first + np.timedelta64(count - 1, 'h')}"
        row = {
            "members": members,
            "times": count,
            "sample": sample,
            **generate(root, model, sample, times),
            "estimate_gb": estimate(model, sample, count, args.size),
        }
        rows.append(row)
        print(
            f"{args.size} x {args.size}: {members} members x {count} times, tiles {args.tile} "
            f"(overlap {args.overlap}), batch {sample['batch_size']}: peak RSS "
            f"{row['peak_rss_gb']:.2f} GB (estimate {row['estimate_gb']['total']:.2f} GB), "
            f"{row['wall_s']:.0f} s, load average {row['load_average_1min'][0]} / "
            f"{row['load_average_1min'][1]}",
            flush=True,
        )
    write_results(
        args.out,
        run,
        {
            "hr_shape": [args.size, args.size],
            "lr_shape": [args.size // RATIO, args.size // RATIO],
            "targets": list(TARGETS),
            "root": str(root),
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()

"""Benchmark: `finescale evaluate` on a large ensemble, wall time and peak memory of the whole process.

Target (issue: verification at scale): scoring a 16-member ensemble of a year of hourly
160 x 400 fields for 4 variables (t2m, u10, v10, tp; wind_speed derived) streams through
chunks with bounded memory.

    python benchmarks/evaluate_memory.py --days 30     # try it quickly first
    python benchmarks/evaluate_memory.py --days 365    # the issue's case (needs ~150 GB of disk)
    python benchmarks/evaluate_memory.py --days 30 90 180 --clean \\
        --json docs/results/evaluate-memory-cpu.json

The data are built once per (days, members) under ``--root`` (default
/tmp/finescale-eval-bench) and reused: a synthetic truth (smooth random fields with seasonal
and diurnal cycles, precipitation >= 0 with dry areas) and a forecast of ``--members`` members
(truth plus spatially correlated noise per member; precipitation kept >= 0), as Zarr stores
chunked like `finescale` writes ensembles (one member, 24 hours, the whole grid per chunk).
They are written chunk by chunk by dask from a function of the chunk's position, so nothing is
ever in memory whole. Then `finescale evaluate` runs in a child process and this prints its
wall time and its own peak resident memory (results.measure), a line per period, and writes
every period's row with the machine, versions, date, command and load average to ``--json``
(default runs/benchmarks/evaluate-memory.json). ``--clean`` deletes each period's data after it.
"""  # noqa: E501 (line 1 is the --help description, kept whole)

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from machine import disk_gb  # benchmarks/machine.py (scripts run from their folder)
from results import RUNS, begin, measure, write_results

NY, NX = 160, 400  # the `alps` preset's HR grid: 0.025 degrees over 44-48 N, 5-15 E
COARSE = 8  # the noise is drawn on a grid 8 times coarser and interpolated: spatially correlated
HOURS_PER_CHUNK = 24
VARIABLES = {"t2m": "K", "u10": "m s-1", "v10": "m s-1", "tp": "mm h-1"}


def _interpolation(n_fine: int, n_coarse: int) -> np.ndarray:
    """(n_fine, n_coarse) matrix of linear interpolation from a coarse to a fine regular grid."""
    position = np.linspace(0, n_coarse - 1, n_fine)
    lower = np.minimum(np.floor(position).astype(int), n_coarse - 2)
    weight = position - lower
    matrix = np.zeros((n_fine, n_coarse))
    matrix[np.arange(n_fine), lower] = 1 - weight
    matrix[np.arange(n_fine), lower + 1] = weight
    return matrix


AY, AX = _interpolation(NY, NY // COARSE + 1), _interpolation(NX, NX // COARSE + 1)


def _smooth_noise(rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` unit-variance, spatially correlated random fields (count, NY, NX), float32."""
    coarse = rng.standard_normal((count, AY.shape[1], AX.shape[1]))
    fine = ((AY @ coarse).reshape(-1, AX.shape[1]) @ AX.T).reshape(
        count, NY, NX
    )  # 2-D product: fast
    return (fine / fine.std(axis=(1, 2), keepdims=True)).astype(np.float32)


def _truth(name: str, start_hour: int, hours: int, seed: int) -> np.ndarray:
    """Truth of one variable for hours start_hour .. + hours: (hours, NY, NX) float32."""
    rng = np.random.default_rng([seed, start_hour, list(VARIABLES).index(name)])
    hour = start_hour + np.arange(hours)[:, None, None]
    lat = np.linspace(48.0, 44.0, NY)[None, :, None]
    noise = _smooth_noise(rng, hours)
    if name == "t2m":
        season = -10.0 * np.cos(2 * np.pi * hour / (365 * 24))
        day = 4.0 * np.sin(2 * np.pi * (hour % 24 - 9) / 24)
        field = 283.0 + season + day - 0.8 * (lat - 46.0) + 3.0 * noise
    elif name in ("u10", "v10"):
        field = (3.0 if name == "u10" else -1.0) + 4.0 * noise
    else:  # tp: dry where the noise is below 0.8, a heavy tail where it is high
        field = 2.0 * np.maximum(noise - 0.8, 0.0) ** 2
    return field.astype(np.float32)


def _forecast(name: str, member: int, start_hour: int, hours: int, seed: int) -> np.ndarray:
    """One member: truth plus correlated noise (multiplicative for tp, which stays >= 0)."""
    truth = _truth(name, start_hour, hours, seed)
    rng = np.random.default_rng([seed, start_hour, list(VARIABLES).index(name), member + 1])
    noise = _smooth_noise(rng, hours)
    if name == "tp":
        return np.maximum(truth * np.exp(0.5 * noise) + 0.05 * noise, 0.0).astype(np.float32)
    scale = {"t2m": 1.0, "u10": 1.5, "v10": 1.5}[name]
    return truth + scale * noise


def build(path: Path, days: int, members: int | None, seed: int = 0) -> None:
    """Write the truth (members None) or a forecast to a Zarr store, chunk by chunk with dask."""
    import dask.array
    import xarray as xr

    if (path / "zarr.json").exists() or (path / ".zmetadata").exists():
        return
    hours = days * 24
    times = np.datetime64("2021-01-01T00", "h") + np.arange(hours).astype("timedelta64[h]")
    time_chunks = tuple(min(HOURS_PER_CHUNK, hours - a) for a in range(0, hours, HOURS_PER_CHUNK))
    data = {}
    for name, units in VARIABLES.items():
        if members is None:

            def block(block_info=None, name=name):
                (t0, t1), _, _ = block_info[None]["array-location"]
                return _truth(name, t0, t1 - t0, seed)

            array = dask.array.map_blocks(
                block, chunks=(time_chunks, (NY,), (NX,)), dtype=np.float32
            )
            dims = ("time", "y", "x")
        else:

            def block(block_info=None, name=name):
                (m0, _), (t0, t1), _, _ = block_info[None]["array-location"]
                return _forecast(name, m0, t0, t1 - t0, seed)[None]

            array = dask.array.map_blocks(
                block, chunks=((1,) * members, time_chunks, (NY,), (NX,)), dtype=np.float32
            )
            dims = ("member", "time", "y", "x")
        data[name] = xr.Variable(dims, array, {"units": units})
    lat, lon = np.meshgrid(np.linspace(48.0, 44.0, NY), np.linspace(5.0, 15.0, NX), indexing="ij")
    coords = {"time": times, "lat": (("y", "x"), lat), "lon": (("y", "x"), lon)}
    if members is not None:
        coords["member"] = np.arange(members)
    ds = xr.Dataset(data, coords=coords)
    chunks = (1, HOURS_PER_CHUNK, NY, NX) if members is not None else (HOURS_PER_CHUNK, NY, NX)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    ds.to_zarr(tmp, encoding={name: {"chunks": chunks} for name in VARIABLES}, mode="w")
    tmp.rename(path)


def measure_period(root: Path, days: int, members: int, clean: bool) -> dict:
    """Build (or reuse) the data of one period and time `finescale evaluate` on it in a child
    process: one row of the results (wall time, peak RSS, sizes, load average)."""
    data = root / f"days{days}-members{members}"
    data.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    build(data / "truth.zarr", days, None)
    build(data / "forecast.zarr", days, members)
    built = time.perf_counter() - start  # near 0 when the data were built by an earlier run

    finescale = Path(sys.executable).with_name("finescale")
    out = data / "eval"
    command = [
        str(finescale),
        "evaluate",
        "--forecast",
        str(data / "forecast.zarr"),
        "--truth",
        str(data / "truth.zarr"),
        "--out",
        str(out),
        "--name",
        "bench",
    ]
    measured = measure(command, stdout=subprocess.DEVNULL)
    values = members * days * 24 * NY * NX
    meta = json.loads((out / "metrics.json").read_text())["meta"]
    row = {
        "days": days,
        "members": members,
        "forecast_values_per_variable": values,
        **measured,
        "wall_min": round(measured["wall_s"] / 60, 2),
        "forecast_gb_on_disk": round(disk_gb(data / "forecast.zarr"), 2),
        "truth_gb_on_disk": round(disk_gb(data / "truth.zarr"), 2),
        "variables": meta["variables"],
        "scored_values_per_s": round(values * len(meta["variables"]) / measured["wall_s"] / 1e6, 1),
        "blocks": meta.get("blocks"),
        "spectra_times": (meta.get("spectra") or {}).get("times"),
        "build_s": round(built, 1),
        "command": " ".join(command),
    }
    if clean:
        shutil.rmtree(data, ignore_errors=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--days",
        type=int,
        nargs="+",
        default=[365],
        help="days of hourly data, one run per value (default: a year)",
    )
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--root", type=Path, default=Path("/tmp/finescale-eval-bench"))
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="results (default runs/benchmarks/evaluate-memory.json)",
    )
    parser.add_argument("--clean", action="store_true", help="Delete each period's data after it.")
    args = parser.parse_args()
    if any(days < 1 for days in args.days) or args.members < 2:
        parser.error(f"--days must be >= 1 (got {args.days}), --members >= 2 (got {args.members})")

    run = begin()
    rows = []
    for days in args.days:
        row = measure_period(args.root, days, args.members, args.clean)
        rows.append(row)
        print(
            f"{days} days, {args.members} members, {len(row['variables'])} variables: wall "
            f"{row['wall_min']:.2f} min, peak RSS {row['peak_rss_gb']:.2f} GB, forecast "
            f"{row['forecast_gb_on_disk']:.1f} GB on disk, {row['scored_values_per_s']} M values "
            f"scored per s, load average {row['load_average_1min'][0]} / "
            f"{row['load_average_1min'][1]}",
            flush=True,
        )
    write_results(
        args.json or RUNS / "evaluate-memory.json",
        run,
        {"grid": [NY, NX], "hours_per_chunk": HOURS_PER_CHUNK, "rows": rows},
    )


if __name__ == "__main__":
    main()

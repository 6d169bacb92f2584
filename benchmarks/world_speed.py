"""Benchmark: simulate the Alps world and report wall time and peak memory of the whole process.

Target (issue 2): one simulated year, hourly, of the `alps` preset (160 x 400 HR, 20 x 50 LR)
in at most 10 minutes on 2 cores, streamed to Zarr with peak resident memory under 2 GB.

    python benchmarks/world_speed.py --preset alps --days 365 --out /tmp/alps-year

Prints one line of results and the machine it ran on. The simulation runs in a child process,
so its peak resident memory is measured alone (resource.getrusage of the children).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from machine import cpu_model, disk_gb  # benchmarks/machine.py (scripts run from their folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="alps")
    parser.add_argument("--days", type=float, default=365.0)
    parser.add_argument("--out", type=Path, default=Path("/tmp/finescale-world-benchmark"))
    parser.add_argument("--keep", action="store_true", help="Keep the output folder.")
    args = parser.parse_args()

    finescale = Path(sys.executable).with_name("finescale")
    command = [str(finescale), "world", "--preset", args.preset, "--days", str(args.days), "--out", str(args.out)]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6  # kB on Linux
    size_gb = disk_gb(args.out)
    import numpy
    import xarray
    import zarr

    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; python {platform.python_version()}, "
          f"numpy {numpy.__version__}, xarray {xarray.__version__}, zarr {zarr.__version__}")
    print(f"command: {' '.join(command)}")
    print(f"preset {args.preset}, {args.days:g} days: wall {wall / 60:.2f} min, "
          f"peak RSS {peak_gb:.2f} GB, output {size_gb:.2f} GB on disk")
    if not args.keep:
        shutil.rmtree(args.out, ignore_errors=True)


if __name__ == "__main__":
    main()

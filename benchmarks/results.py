"""Results JSON of a benchmark: a standard header, written atomically, and commands measured alone.

Every headline number comes from such a file, written by the script that measured it. The header
keeps the key names of ``vs_diffusers.py``: ``command``, ``machine``, ``versions``,
``load_average`` (``start`` and ``end``: the 1-, 5- and 15-minute averages), plus ``date`` (UTC,
ISO 8601 at the start), ``cwd`` (relative paths in the command are relative to it) and
``empty_fields`` (the dotted paths of results left empty, ``{}``, ``[]`` or ``None``: a reader
sees at once what the run may not have measured; a setting can be empty by design, such as a
network without attention levels) and ``non_finite_fields`` (the paths of scores that were NaN or
infinite, e.g. a ratio over a zero sum: written as ``null``, so the file is standard JSON).

    run = begin()                       # before measuring: the date and the load average
    ...                                 # measure
    write_results(path, run, {"rows": rows})
"""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from machine import describe  # benchmarks/machine.py (scripts run from their folder)

from finescale.io.atomic import atomic_path

RUNS = Path(__file__).resolve().parents[1] / "runs" / "benchmarks"  # default home of results JSONs
PACKAGES = ("numpy", "torch", "xarray", "zarr", "dask", "finescale")


def begin() -> dict[str, Any]:
    """The header's first part, taken before measuring: the command line (``sys.argv``), the
    working folder, the date (UTC) and the load average at the start."""
    return {
        "command": shlex.join(["python", *sys.argv]),
        "cwd": os.getcwd(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "load_average": {"start": [round(x, 2) for x in os.getloadavg()]},
    }


def memory_gib() -> float | None:
    """Physical memory of the machine in GiB (from /proc/meminfo on Linux; None elsewhere)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)  # kB
    except OSError:
        pass
    return None


def versions() -> dict[str, str | None]:
    """Python's version and the installed versions of the packages a measurement depends on."""
    found: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def empty_fields(value: Any, prefix: str = "") -> list[str]:
    """Dotted paths of the ``{}``, ``[]`` and ``None`` values nested in ``value``."""
    if value is None or (isinstance(value, (dict, list)) and not value):
        return [prefix or "(all)"]
    if isinstance(value, dict):
        paths = (f"{prefix}.{k}" if prefix else str(k) for k in value)
        return [p for path, v in zip(paths, value.values()) for p in empty_fields(v, path)]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in empty_fields(v, f"{prefix}[{i}]")]
    return []


def finite(value: Any, prefix: str = "", found: list[str] | None = None) -> tuple[Any, list[str]]:
    """``value`` with every NaN or infinite float nested in it replaced by None, and the dotted
    paths of those (JSON has no NaN: ``json.dumps`` would write ``NaN``, which strict readers
    refuse)."""
    found = [] if found is None else found
    if isinstance(value, float) and not math.isfinite(value):
        found.append(prefix or "(all)")
        return None, found
    if isinstance(value, dict):
        paths = (f"{prefix}.{k}" if prefix else str(k) for k in value)
        out = {k: finite(v, path, found)[0] for (k, v), path in zip(value.items(), paths)}
        return out, found
    if isinstance(value, (list, tuple)):
        return [finite(v, f"{prefix}[{i}]", found)[0] for i, v in enumerate(value)], found
    return value, found


def write_results(path: Path, run: dict[str, Any], results: dict[str, Any]) -> Path:
    """Write ``run`` (from :func:`begin`) completed with the machine, the versions and the load
    average at the end, followed by ``results``, to ``path`` as JSON, atomically; ``path``.

    Empty results are written too (an hour's run is not thrown away), but named on stderr and in
    the header's ``empty_fields``."""
    clash = sorted(set(run) & set(results))
    if clash:
        raise ValueError(f"results for {path}: keys {clash} would overwrite the header's")
    machine = {
        **describe(),
        "cores": os.cpu_count(),
        "memory_gib": memory_gib(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
    load = {**run["load_average"], "end": [round(x, 2) for x in os.getloadavg()]}
    results, non_finite = finite(results)
    empty = empty_fields(results)
    record = {
        **run,
        "machine": machine,
        "versions": versions(),
        "load_average": load,
        "empty_fields": empty,
        "non_finite_fields": non_finite,
        **results,
    }
    if empty:
        print(f"{path}: left empty: {', '.join(empty)}", file=sys.stderr)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1, allow_nan=False) + "\n")
    print(f"wrote {path}", file=sys.stderr)
    return path


# Runs the command in a grandchild forked from this small process and writes the grandchild's peak
# resident memory (KiB) to the file argv[1]. Measured from the benchmark's own process, a child's
# peak would include the parent's: Linux carries the peak of the memory a process replaces at exec
# into its own, and Python starts children by vfork, in the parent's memory.
ALONE = """
import os, sys
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def measure(command: list[str], **popen: Any) -> dict[str, Any]:
    """Run ``command`` in a child process; its wall time (s), its own peak resident memory (GB,
    1e9 bytes) and the 1-minute load average before and after.

    The peak is the command's alone: not the largest of every child this process has waited for
    (``getrusage(RUSAGE_CHILDREN)``), nor this process's own peak (see ``ALONE``), so commands
    measured one after another in one process are each measured alone. ``popen`` goes to
    ``subprocess.run``. Raises ``CalledProcessError`` when the command fails."""
    with tempfile.TemporaryDirectory() as tmp:
        peak_file = Path(tmp) / "peak_kib"
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        wrapped = [sys.executable, "-I", "-S", "-c", ALONE, str(peak_file), *command]
        done = subprocess.run(wrapped, check=False, **popen)
        seconds = time.perf_counter() - start
        load_after = os.getloadavg()[0]
        if done.returncode:
            raise subprocess.CalledProcessError(done.returncode, command)
        peak_kib = int(peak_file.read_text())
    return {
        "wall_s": round(seconds, 2),
        "peak_rss_gb": round(peak_kib * 1024 / 1e9, 3),  # Linux: ru_maxrss in KiB
        "load_average_1min": [round(load_before, 2), round(load_after, 2)],
    }

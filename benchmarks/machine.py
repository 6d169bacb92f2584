"""What every benchmark records about where it ran, and how much it wrote."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def disk_gb(path: Path) -> float:
    """Size of the files under ``path`` in GB."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e9


def describe() -> dict[str, str | int | None]:
    """CPU, torch threads, Python and torch versions, and the GPU if there is one."""
    import torch

    return {
        "cpu": cpu_model(),
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }

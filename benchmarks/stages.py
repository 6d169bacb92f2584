"""Stages of a benchmark run: each is skipped when its output exists, else run and timed."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


class Stages:
    """Call ``stages(name, done, fn)`` to run ``fn`` unless ``done`` exists; ``timings`` holds seconds per stage run."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    def __call__(self, name: str, done: Path, fn: Callable[[], Any]) -> None:
        if done.exists():
            print(f"{name}: reusing {done}", flush=True)
            return
        start = time.perf_counter()
        fn()
        self.timings[name] = time.perf_counter() - start
        print(f"{name}: {self.timings[name] / 60:.1f} min", flush=True)

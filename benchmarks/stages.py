"""Stages of a benchmark run: each is skipped when its output exists, else run and timed."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


class Stages:
    """Call ``stages(name, done, fn)`` to run ``fn`` unless ``done`` exists; ``timings`` holds
    seconds per stage.

    With ``record``, the seconds of every finished stage are kept in that JSON file (written
    atomically): a run that reuses a stage still reports how long it took, and a stage counts as
    done only once it finished (a training interrupted after writing a periodic ``last.ckpt`` is
    run again, resuming from it).
    """

    def __init__(self, record: Path | None = None) -> None:
        self.record = record
        self.timings: dict[str, float] = {}
        if record is not None and record.is_file():
            self.timings = json.loads(record.read_text())

    def __call__(self, name: str, done: Path, fn: Callable[[], Any]) -> None:
        if done.exists() and (self.record is None or name in self.timings):
            print(f"{name}: reusing {done}", flush=True)
            return
        start = time.perf_counter()
        fn()
        self.timings[name] = time.perf_counter() - start
        print(f"{name}: {self.timings[name] / 60:.1f} min", flush=True)
        if self.record is not None:
            self.record.parent.mkdir(parents=True, exist_ok=True)
            partial = self.record.with_suffix(".partial")
            partial.write_text(json.dumps(self.timings, indent=1))
            partial.replace(self.record)

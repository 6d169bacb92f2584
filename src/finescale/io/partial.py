"""Ensembles written block by block into a partial store beside their destination.

A killed run resumes with the blocks still missing, several processes share the blocks, and the
store is renamed into place once every block is written (:func:`fill_ensemble`).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from finescale.io.blocks import Block, EnsembleSpec
from finescale.io.checks import check_free_space
from finescale.io.stores import EnsembleStore


def _differences(found: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """Keys (``attrs.sampler``, ``members``, ...) whose values differ between two requests."""
    out = []
    for key in sorted(set(found) | set(wanted)):
        a, b = found.get(key), wanted.get(key)
        if key == "attrs" and isinstance(a, dict) and isinstance(b, dict):
            out += [f"attrs.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif a != b:
            out.append(key)
    return out


class PartialEnsemble:
    """An ensemble being written block by block in ``.{name}.partial`` beside its destination
    ``out``.

    The folder holds ``request.json`` (what is generated), ``store.zarr`` (the ensemble, created
    once with every coordinate and attribute) and ``done/<block index>``, an empty file created
    only after the block's data are written. It appears whole (made under a temporary name and
    renamed), so whichever process comes first creates it and the others use it.
    """

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.folder = self.out.with_name(f".{self.out.name}.partial")
        self.store = EnsembleStore(self.folder / "store.zarr")
        self._claimed = self.folder / "final.zarr"  # store.zarr while one process moves it to out

    def done(self, request: dict[str, Any]) -> set[int]:
        """Indices of the blocks written so far (none without a partial output).

        Raises ValueError where the partial output was made for another request.
        """
        if not self.folder.is_dir():
            return set()
        found = json.loads((self.folder / "request.json").read_text())
        if found != request:
            raise ValueError(
                f"{self.folder}: a partial output of another request (differs in "
                f"{', '.join(_differences(found, request))}); rerun with the same arguments to "
                "complete it, or remove it to start over"
            )
        return {int(p.name) for p in (self.folder / "done").iterdir() if p.name.isdigit()}

    def recover(self) -> None:
        """Take back a store that a process died moving to ``out`` (between the two renames of
        :meth:`finish`). Only for a process that runs alone: another one may be moving it now."""
        if self._claimed.is_dir() and not self.store.path.exists():
            os.rename(self._claimed, self.store.path)

    def create(self, spec: EnsembleSpec, request: dict[str, Any]) -> None:
        """Make the partial output unless it exists (another process may make it at the same
        time)."""
        if self.folder.is_dir():
            return
        tmp = self.folder.with_name(f"{self.folder.name}.tmp-{uuid.uuid4().hex[:8]}")
        try:
            tmp.mkdir(parents=True)
            spec.create(tmp / "store.zarr")
            (tmp / "done").mkdir()
            (tmp / "request.json").write_text(json.dumps(request, indent=1, sort_keys=True) + "\n")
            try:
                os.rename(tmp, self.folder)  # atomic; fails where another process was first
            except OSError:
                if not self.folder.is_dir():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def write(self, block: Block, data: dict[str, np.ndarray]) -> None:
        """Write a block's data (name -> (m, t, y, x)), then mark it done."""
        self.store.write(block.members, block.times, data)
        (self.folder / "done" / str(block.index)).touch()

    def finish(self, request: dict[str, Any], n_blocks: int) -> bool:
        """Move the store to ``out`` (replacing an older output) once all ``n_blocks`` are done.

        Returns True when this process did; False while blocks are missing, or when another
        process, done at the same moment, moves it (renaming the store first decides which).
        """
        if len(self.done(request)) < n_blocks:
            return False
        try:
            os.rename(self.store.path, self._claimed)
        except FileNotFoundError:
            return False
        old = self.folder / "old.zarr"
        shutil.rmtree(old, ignore_errors=True)
        if self.out.exists() or self.out.is_symlink():
            os.rename(self.out, old)
        os.rename(self._claimed, self.out)
        shutil.rmtree(self.folder)
        return True


@dataclass
class FillReport:
    """What one :func:`fill_ensemble` call did."""

    path: Path  #: the output when complete, else the partial folder
    complete: bool
    blocks: int  #: blocks of the whole output
    resumed: int  #: of those, written before this call
    written: int  #: of those, written by this call


def fill_ensemble(
    out: str | Path,
    spec: EnsembleSpec,
    blocks: Sequence[Block],
    draw: Callable[[Block], dict[str, np.ndarray]],
    *,
    rank: int = 0,
    world_size: int = 1,
    note: Callable[[str], None] | None = None,
) -> FillReport:
    """Write the ensemble ``spec`` to ``out``, block by block, with ``draw(block)`` -> name ->
    (m, t, y, x).

    Resumable: the blocks go to a :class:`PartialEnsemble` beside ``out``; a rerun with the same
    request (attributes, members, times, grid, blocks) draws only the blocks not yet marked done,
    and a partial output of another request is refused (ValueError naming it: remove it or rerun
    with the same arguments). Shared: process ``rank`` of ``world_size`` draws the blocks whose
    index modulo ``world_size`` is ``rank``; the process that finds every block done after its own
    moves the store to ``out``. A rank that dies leaves its blocks missing: rerunning it, or one
    process with the same arguments and no rank (once the others have stopped), completes the
    output. ``draw`` should seed its random numbers by block (:func:`block_seed`) so the result
    does not depend on who draws what.
    Free space is checked for this process's missing blocks first (:func:`check_free_space`).
    """
    partial = PartialEnsemble(out)
    request = spec.request(blocks)
    mine = [b for b in blocks if b.index % world_size == rank]
    if not mine:
        if note:
            note(f"rank {rank} of {world_size}: no blocks to write (the output has {len(blocks)})")
        return FillReport(partial.folder, False, len(blocks), 0, 0)
    done = partial.done(request)
    if world_size == 1:
        partial.recover()
    todo = [b for b in mine if b.index not in done]
    check_free_space(partial.folder.parent, sum(spec.nbytes(b) for b in todo))
    if done and note:
        note(f"resuming {partial.folder}: {len(done)} of {len(blocks)} blocks already written")
    partial.create(spec, request)
    for block in todo:
        partial.write(block, draw(block))
    if partial.finish(request, len(blocks)):
        return FillReport(partial.out, True, len(blocks), len(done), len(todo))
    if note:
        note(
            f"rank {rank} of {world_size}: its blocks are written to {partial.folder}; "
            f"{partial.out} appears once every process has written its blocks"
        )
    return FillReport(partial.folder, False, len(blocks), len(done), len(todo))

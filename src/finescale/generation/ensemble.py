"""Whole ensembles: written to a Zarr store block by block (:func:`downscale`), or drawn in
memory (:func:`draw_ensemble`), the same members either way.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from finescale.checkpoints import load_checkpoint
from finescale.generation.members import ProgressFn
from finescale.generation.planning import Plan, plan
from finescale.io.checks import check_writable
from finescale.io.partial import PartialEnsemble, fill_ensemble


def downscale(
    checkpoint: str | Path,
    lr_path: str | Path,
    static_path: str | Path | None,
    out: str | Path,
    *,
    sample: dict[str, Any] | None = None,
    times: np.ndarray | slice | None = None,
    progress: ProgressFn | None = None,
    total: ProgressFn | None = None,
    rank: int = 0,
    world_size: int = 1,
    note: Callable[[str], None] | None = None,
    max_memory_gb: float | None = None,
) -> Path:
    """Write an HR ensemble for the LR times (all, ``times`` given, or a slice of them) to ``out``.

    static_path: the HR static fields; None for a model trained without them, whose checkpoint
    gives the HR grid (:func:`open_inputs`). A static file is checked against the checkpoint's
    grid. sample: overrides of the checkpoint's sample settings (members, steps, solver, ...). An
    LR with a ``member`` dim gives ``members`` HR members per LR member (member = k_lr * members
    + k). progress: called with 1 after each batch of members at one time; total: called once
    before drawing with the number of such calls this process will make (its blocks not yet
    written).

    A rerun with the same arguments after a crash draws only the blocks not yet written; a
    partial output left by other arguments is refused (remove ``.<name>.partial`` beside ``out``
    to start over). With ``world_size`` > 1 this process draws the blocks whose index modulo
    ``world_size`` is ``rank`` into the shared partial store, and the last process to finish
    moves it to ``out``. Returns ``out`` once complete, else the partial store's folder; ``note``
    receives one-line messages about resuming and sharing. An ``out`` whose folder cannot be
    written is refused before anything is loaded. ``note`` also receives the estimated peak
    memory (:func:`estimate_memory`; from rank 0); a run whose estimate exceeds ``max_memory_gb``
    GB is refused before drawing, naming a batch size that fits.
    """
    check_writable(Path(out).parent)
    loaded = load_checkpoint(checkpoint)
    run = plan(
        loaded,
        checkpoint,
        lr_path,
        static_path,
        sample=sample,
        times=times,
        progress=progress,
        max_memory_gb=max_memory_gb,
    )
    if note and rank == 0:
        note(run.memory.describe())
    if total:
        done = PartialEnsemble(out).done(run.spec.request(run.blocks))
        total(run.steps(done | {b.index for b in run.blocks if b.index % world_size != rank}))
    filled = fill_ensemble(
        out, run.spec, run.blocks, run.draw, rank=rank, world_size=world_size, note=note
    )
    return filled.path


def draw_ensemble(run: Plan) -> xr.Dataset:
    """Every block of ``run`` drawn in this process, as the dataset the Zarr output would hold.

    The same blocks, drawn by the same drawer with the same seeds, as :func:`downscale` writes:
    the members are those of the output on disk bit for bit, and so are the coordinates (as
    :class:`finescale.io.EnsembleStore` lays them out) and the attributes.
    """
    spec = run.spec
    lat, lon = np.asarray(spec.lat), np.asarray(spec.lon)
    times = np.asarray(spec.times).astype("datetime64[ns]")
    arrays = {
        name: np.empty((spec.members, times.size, *lat.shape), np.float32)
        for name in spec.variables
    }
    for block in run.blocks:
        for name, values in run.draw(block).items():
            arrays[name][block.members, block.times] = values
    coords = {
        "member": np.arange(spec.members),
        "time": times,
        "lat": (("y", "x"), lat, {"units": "degrees_north", "standard_name": "latitude"}),
        "lon": (("y", "x"), lon, {"units": "degrees_east", "standard_name": "longitude"}),
    }
    data = {
        name: (("member", "time", "y", "x"), arrays[name], attrs)
        for name, attrs in spec.variables.items()
    }
    return xr.Dataset(data, coords=coords, attrs=dict(spec.attrs))

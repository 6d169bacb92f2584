"""A downscaling run set up: its sample settings, inputs, times, output and blocks of work.

:func:`plan` is the one set-up of the command line (written to Zarr) and the Python API (in
memory): the same blocks drawn by the same drawer give the same members.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from finescale.checkpoints import TrainedDownscaler
from finescale.config import SampleConfig, validate
from finescale.data.errors import IN_MEMORY
from finescale.data.lr_to_hr import LRToHR
from finescale.data.sources import read_through
from finescale.generation.inputs import open_inputs
from finescale.generation.members import (
    BlockDrawer,
    ProgressFn,
    refuse_unused,
    unused_settings,
)
from finescale.generation.memory import MemoryEstimate, check_memory, chunk_times
from finescale.generation.polar import polar_latitude, vector_components
from finescale.io.blocks import Block, EnsembleSpec, ensemble_blocks
from finescale.models.diffusion import DiffusionModel
from finescale.version import __version__


def sample_settings(
    loaded: TrainedDownscaler, overrides: dict[str, Any] | None = None
) -> SampleConfig:
    """The checkpoint's sample settings with ``overrides`` (members, steps, solver, ...),
    checked. An override the model does not read (:func:`unused_settings`: a solver's steps for
    a consistency student, its calls for a diffusion model) is refused, not ignored."""
    refuse_unused(loaded, overrides or {})
    return validate(
        loaded.config.sample.model_dump() | (overrides or {}),
        SampleConfig,
        source="sample settings",
    )


def with_dry_threshold(loaded: TrainedDownscaler, zero_below: float | None) -> TrainedDownscaler:
    """``loaded`` whose log1p-transformed variables (precipitation) come back as exactly 0 below
    ``zero_below`` (their units) instead of the checkpoint's ``data.transforms`` threshold; the
    same ``loaded`` for None. The threshold acts only on the way back from the network, so it
    is a sampling setting, chosen on validation without retraining."""
    if zero_below is None:
        return loaded
    variables = {
        name: replace(s, transform=s.transform.model_copy(update={"zero_below": zero_below}))
        if s.transform.kind == "log1p"
        else s
        for name, s in loaded.stats.variables.items()
    }
    return replace(loaded, stats=replace(loaded.stats, variables=variables))


@dataclass
class Plan:
    """A downscaling run set up: the output described, its blocks, and what draws each block."""

    spec: EnsembleSpec
    blocks: list[Block]
    draw: BlockDrawer
    memory: MemoryEstimate

    def steps(self, skip: Collection[int] = ()) -> int:
        """Progress steps of drawing the blocks not in ``skip``: each is one batch of members at
        one time."""
        return sum(b.times.stop - b.times.start for b in self.blocks if b.index not in skip)


def plan(
    loaded: TrainedDownscaler,
    checkpoint: str | Path,
    lr: str | Path | xr.Dataset,
    static: str | Path | xr.Dataset | None = None,
    *,
    sample: dict[str, Any] | None = None,
    times: np.ndarray | slice | None = None,
    progress: ProgressFn | None = None,
    max_memory_gb: float | None = None,
) -> Plan:
    """Open and check the inputs (:func:`open_inputs`), select the times and describe the ensemble.

    One set-up for the command line (written to Zarr) and the Python API (in memory): the same
    blocks drawn by the same drawer give the same members. Arguments as :func:`downscale`'s.
    """
    cfg = loaded.config
    settings = sample_settings(loaded, sample)
    loaded = with_dry_threshold(loaded, settings.zero_below)
    lr_ds, static_ds = open_inputs(loaded, checkpoint, lr, static)
    lr_where = IN_MEMORY if isinstance(lr, xr.Dataset) else str(lr)
    if isinstance(times, slice):
        lr_ds = lr_ds.sel(time=times)
    elif times is not None:
        lr_ds = lr_ds.sel(time=np.asarray(times, dtype="datetime64[ns]"))
    if lr_ds.sizes["time"] == 0:
        raise ValueError(f"{lr_where}: no LR times in the requested period")
    memory = check_memory(
        loaded.model,
        loaded.layout,
        settings,
        tuple(static_ds.lat.shape),
        lr_ds.sizes["time"],
        max_memory_gb,
    )
    read_through(lr_ds, loaded.layout.lr_variables)  # a refusal now leaves no partial output behind
    lr_members = lr_ds.sizes.get("member", 1)
    members = settings.members if isinstance(loaded.model, DiffusionModel) else 1
    to_hr = LRToHR(
        lr_ds.lat,
        lr_ds.lon,
        static_ds.lat,
        static_ds.lon,
        cfg.model.conditioning.interpolation,
        loaded.periodic_lon,
    )
    attrs = {
        "title": f"finescale {cfg.model.kind} ensemble",
        "source": f"finescale {__version__}",
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": loaded.sha256,
        "lr_source": lr_where,
        "sampler": settings.model_dump_json(exclude=set(unused_settings(loaded.model))),
        "config": json.dumps(cfg.model_dump(mode="json")),
        "Conventions": "CF-1.8",
    }
    polar = polar_latitude(settings, loaded.periodic_lon, static_ds.lat.values)
    vectors = vector_components(settings, loaded)
    if polar is not None:
        attrs["polar_filter"] = (
            f"poleward of {polar:g} degrees each member keeps the zonal "
            "wavenumbers a grid of the spacing there resolves "
            "(finescale.data.grids.polar_filter)"
            + (
                f"; vector components {', '.join(vectors)} also keep zonal "
                "wave 1 (a vector at the pole)"
                if vectors
                else ""
            )
        )
    variables = {
        v: {"units": loaded.stats[v].units or "", "long_name": v}
        for v in loaded.layout.target_variables
    }
    times_per_block = chunk_times(min(settings.batch_size, members), len(variables), to_hr.shape)
    spec = EnsembleSpec(
        variables,
        lr_members * members,
        lr_ds.time.values,
        static_ds.lat.values,
        static_ds.lon.values,
        times_per_block,
        attrs,
    )
    # a block is one network batch of members (of one LR member) over a chunk of times
    groups = [
        slice(k * members + m0, k * members + min(m0 + settings.batch_size, members))
        for k in range(lr_members)
        for m0 in range(0, members, settings.batch_size)
    ]
    blocks = ensemble_blocks(groups, lr_ds.sizes["time"], times_per_block)
    drawer = BlockDrawer(
        loaded, lr_ds, static_ds, to_hr, settings, members, progress, polar, vectors
    )
    return Plan(spec, blocks, drawer, memory)

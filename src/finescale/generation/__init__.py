"""Ensemble generation: HR members from LR inputs, tile by tile, written block by block.

For each LR time (and each LR member, where the LR is an ensemble) the model draws ``members``
HR states. Large domains are cut into overlapping tiles: the sampler runs on the whole-domain
state, and at every step the denoiser is evaluated tile by tile and the tiles' estimates are
blended with smooth weights, so memory follows the tile while the sample has no seams. The
output is a Zarr store (member, time, y, x) in physical units carrying the config, the
checkpoint's hash and the sampler settings as attributes.

It is written in blocks (a batch of members over a Zarr chunk of times, fewer times on large
domains: :func:`chunk_times`) into a partial store beside the output and renamed into place when
complete (:func:`finescale.io.fill_ensemble`); :func:`estimate_memory` gives a run's peak memory.
A killed run resumes with the missing blocks, and several processes can share the blocks. Every
batch of members at every time draws its noise from its own seed (the run's seed, its first
member and the time), so the result is the same however the blocks are shared or resumed.

Where things are:

- :mod:`~finescale.generation.ensemble`: ``downscale`` (to Zarr), ``draw_ensemble`` (in memory);
- :mod:`~finescale.generation.planning`: ``plan`` (a run set up), ``sample_settings``;
- :mod:`~finescale.generation.inputs`: ``open_inputs``, ``hr_grid``, the checks of the inputs
  against the checkpoint;
- :mod:`~finescale.generation.members`: ``draw`` (the sampler: an ODE/SDE solver, or a
  consistency student's few calls), ``BlockDrawer`` (one block's physical members),
  ``unused_settings`` (the sample settings a kind of model does not read);
- :mod:`~finescale.generation.tiling`: ``tiles``, ``blend_weights``, ``tiled``;
- :mod:`~finescale.generation.memory`: ``chunk_times``, ``estimate_memory``, ``check_memory``;
- :mod:`~finescale.generation.polar`: which latitudes and variables are polar-filtered.

Nothing here imports Lightning.
"""

from finescale.generation.ensemble import downscale, draw_ensemble
from finescale.generation.inputs import hr_grid, open_inputs
from finescale.generation.members import BlockDrawer, draw, noise_levels, unused_settings
from finescale.generation.memory import MemoryEstimate, check_memory, chunk_times, estimate_memory
from finescale.generation.planning import Plan, plan, sample_settings
from finescale.generation.polar import polar_latitude, vector_components
from finescale.generation.tiling import Window, blend_weights, tiled, tiles

__all__ = [
    "BlockDrawer",
    "MemoryEstimate",
    "Plan",
    "Window",
    "blend_weights",
    "check_memory",
    "chunk_times",
    "downscale",
    "draw",
    "draw_ensemble",
    "estimate_memory",
    "hr_grid",
    "noise_levels",
    "open_inputs",
    "plan",
    "polar_latitude",
    "sample_settings",
    "tiled",
    "tiles",
    "unused_settings",
    "vector_components",
]

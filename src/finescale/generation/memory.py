"""Memory of a downscaling run: the times per block of work, and the estimated peak.

:func:`chunk_times` sizes the blocks (and the output's Zarr chunks along time);
:func:`estimate_memory` adds up the arrays a run holds at once, and :func:`check_memory` refuses
a run above a limit, naming a batch size that fits (docs/benchmarks.md, Large domains).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from finescale.config import SampleConfig
from finescale.data.channels import Layout
from finescale.models.diffusion import DiffusionModel
from finescale.nn.settings import UNetSettings

#: most times per block of work (and per Zarr chunk of the output): a day of hourly fields
MAX_CHUNK_TIMES = 24
#: most bytes of output a block holds before it is written (members x times x variables x H x W
#: float32). Blocks of 24 times of a 2048 x 2048 domain held 2.4 GB with batches of 2 members,
#: more than half of the 4 GB that generation on such a domain is meant to stay within; this
#: keeps the block small beside the sampler's state while small domains keep 24 times
BLOCK_BUDGET_BYTES = 256 * 2**20


def chunk_times(batch: int, n_variables: int, shape: tuple[int, int]) -> int:
    """Times per block of work and per Zarr chunk of the output for a domain ``shape`` (H, W).

    ``MAX_CHUNK_TIMES``, fewer where a block's output (``batch`` members x times x
    ``n_variables`` x H x W float32) would exceed ``BLOCK_BUDGET_BYTES``; at least 1, even where
    one time alone exceeds it.
    """
    per_time = 4 * batch * n_variables * shape[0] * shape[1]
    return max(1, min(MAX_CHUNK_TIMES, BLOCK_BUDGET_BYTES // per_time))


#: resident memory besides the arrays counted: Python with torch, xarray, zarr and dask and a
#: small model take 0.48 GB in a bare process; generating on a 2048 x 2048 domain peaked 0.16 and
#: 0.18 GB above those and the arrays (the libraries' buffers, the allocator's fragmentation)
LIBRARIES_BYTES = 700 * 10**6
#: float64 arrays of a batch's shape (b x C_out x H x W) the solvers hold at their peak: the
#: state, the denoised estimate, the previous one (dpmpp_2m) or the slopes (heun), and the
#: temporaries of an update (samplers.py); churn adds its noise. Euler holds 5
SOLVER_ARRAYS = 7
#: float32 maps of the whole domain (a float64 one counts twice) besides the conditioning, the
#: base and the static fields: position features (4), area weights (1), and the HR latitude and
#: longitude and the LR position of every HR point, float64 (8)
GRID_MAPS = 13
#: a 3 x 3 convolution on CPU works on its input unfolded: 9 maps per input channel. One call of
#: the benchmark's network (widths 16, 32, 32) on a tile held 330-440 maps a member at tiles of
#: 128 to 512 points, of which the unfolded input of the widest convolution at full resolution
#: (48 channels) is the most; :func:`_tile_maps` counts 499
CONV_UNFOLD = 9


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak resident memory of ``downscale`` by part, in bytes, for ``batch`` members per network
    call."""

    batch: int
    sampler: int  #: the solver's float64 state, the noise and mu of the batch (whole domain)
    fields: int  #: the conditioning and the HR fields it is made of (whole domain)
    tile: int  #: one network call's activations on one tile
    output: int  #: the block's output, held until it is written
    libraries: int = LIBRARIES_BYTES

    @property
    def total(self) -> int:
        return self.sampler + self.fields + self.tile + self.output + self.libraries

    def describe(self) -> str:
        """One line: the total and its parts in GB."""
        parts = {
            "sampler": self.sampler,
            "fields": self.fields,
            "tile": self.tile,
            "output block": self.output,
            "libraries": self.libraries,
        }
        return (
            f"estimated peak memory {self.total / 1e9:.2f} GB with batches of {self.batch} "
            "members ("
            + ", ".join(f"{name} {size / 1e9:.2f}" for name, size in parts.items())
            + ")"
        )


def _tile_maps(net: UNetSettings) -> float:
    """Float maps at a tile's full resolution one UNet pass holds at its peak, per batch entry.

    The skip connections (every encoder output, each counted by its area: a quarter per level
    down), the input, and the unfolded input of the widest convolution at full resolution: the
    decoder's first block there sees the level below (upsampled) beside a skip.
    """
    widths = [net.base_width * m for m in net.channel_mult]
    skips = widths[0] + sum(net.blocks_per_level * w / 4**level for level, w in enumerate(widths))
    pooled = sum(w / 4 ** (level + 1) for level, w in enumerate(widths[:-1]))
    widest = widths[min(1, len(widths) - 1)] + widths[0]
    return skips + pooled + net.in_channels + net.cond_channels + CONV_UNFOLD * widest


def estimate_memory(
    model: torch.nn.Module,
    layout: Layout,
    settings: SampleConfig,
    shape: tuple[int, int],
    n_times: int,
    batch: int | None = None,
) -> MemoryEstimate:
    """Peak resident memory (bytes) of drawing with ``model`` on an HR domain ``shape`` (H, W) over
    ``n_times`` times.

    ``batch``: members per network call (default: ``settings.batch_size``, at most the members).
    An estimate from the sizes of the arrays held at once (docs/benchmarks.md, Large domains):
    it leaves out the allocator's fragmentation and the libraries' buffers.
    """
    net: UNetSettings = model.net.settings
    diffusion = isinstance(model, DiffusionModel)
    b = batch or (min(settings.batch_size, settings.members) if diffusion else 1)
    c_out, points = len(layout.target_variables), shape[0] * shape[1]
    # float32 noise and mu beside the float64 solver; a regression model blends its output alone
    per_value = 8 * (SOLVER_ARRAYS + (settings.S_churn > 0)) + 2 * 4 if diffusion else 2 * 4
    maps = layout.cond_channels + c_out + len(layout.static_variables) + GRID_MAPS
    tile = min(settings.tile_size or shape[0], shape[0]) * min(
        settings.tile_size or shape[1], shape[1]
    )
    times = min(chunk_times(b, c_out, shape), n_times)
    return MemoryEstimate(
        batch=b,
        sampler=per_value * b * c_out * points,
        fields=4 * maps * points,
        tile=round(4 * b * tile * _tile_maps(net)),
        output=4 * b * times * c_out * points,
    )


def check_memory(
    model: torch.nn.Module,
    layout: Layout,
    settings: SampleConfig,
    shape: tuple[int, int],
    n_times: int,
    max_gb: float | None,
) -> MemoryEstimate:
    """The run's :func:`estimate_memory`; refuses (ValueError) one above ``max_gb`` GB, naming a
    batch size that fits."""
    estimate = estimate_memory(model, layout, settings, shape, n_times)
    if max_gb is None or estimate.total <= max_gb * 1e9:
        return estimate
    fits = [
        b
        for b in range(estimate.batch - 1, 0, -1)
        if estimate_memory(model, layout, settings, shape, n_times, b).total <= max_gb * 1e9
    ]
    advice = (
        f"use sample.batch_size={fits[0]}"
        if fits
        else "no batch size fits: tile the domain (sample.tile_size) or allow more memory"
    )
    raise ValueError(f"{estimate.describe()}, above --max-memory-gb {max_gb:g}: {advice}")

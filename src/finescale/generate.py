"""Ensemble generation: HR members from LR inputs, tile by tile, written block by block.

For each LR time (and each LR member, where the LR is an ensemble) the model draws ``members``
HR states. Large domains are cut into overlapping tiles: the sampler runs on the whole-domain
state, and at every step the denoiser is evaluated tile by tile and the tiles' estimates are
blended with smooth weights, so memory follows the tile while the sample has no seams. The
output is a Zarr store (member, time, y, x) in physical units carrying the config, the
checkpoint's hash and the sampler settings as attributes.

It is written in blocks (a batch of members over a Zarr chunk of times, fewer times on large
domains: :func:`chunk_times`) into a partial store beside the output and renamed into place when
complete (:func:`finescale.io.fill_ensemble`); :func:`estimate_memory` gives a run's peak memory. A
killed run resumes with the missing blocks, and several processes can share the blocks. Every
batch of members at every time draws its noise from its own seed (the run's seed, its first
member and the time), so the result is the same however the blocks are shared or resumed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from finescale.checkpoints import Loaded, load_checkpoint
from finescale.config import SampleConfig, validate
from finescale.data.alignment import check_covers
from finescale.data.grids import grid_spacing, polar_filter, wrap180
from finescale.data.samples import Fields, Layout, LRToHR, conditioning, load_fields
from finescale.data.sources import IN_MEMORY, open_source, open_static, read_through
from finescale.data.units import UnitsError, parse_units
from finescale.diffusion import samplers
from finescale.io import (
    Block,
    EnsembleSpec,
    PartialEnsemble,
    block_seed,
    check_writable,
    ensemble_blocks,
    fill_ensemble,
)
from finescale.models.diffusion import DiffusionModel
from finescale.nn.settings import UNetSettings
from finescale.version import __version__

Window = tuple[int, int, int, int]
ProgressFn = Callable[[int], None]


# --------------------------------------------------------------------------------------------
# tiles


def tiles(shape: tuple[int, int], size: int | None, overlap: int) -> list[Window]:
    """Windows (y0, x0, p, q) covering a (H, W) grid with tiles of ``size`` overlapping by ``overlap``."""
    h, w = shape
    if size is None or (size >= h and size >= w):
        return [(0, 0, h, w)]

    def starts(n: int) -> list[int]:
        if size >= n:
            return [0]
        step = max(1, size - overlap)
        out = list(range(0, n - size, step))
        return [*out, n - size]

    return [(y0, x0, min(size, h), min(size, w)) for y0 in starts(h) for x0 in starts(w)]


def blend_weights(window: Window, shape: tuple[int, int], overlap: int) -> Tensor:
    """A tile's weight (p, q): 1 inside, a raised-cosine ramp over the overlap towards inner edges."""
    y0, x0, p, q = window

    def ramp(n: int, start: int, total: int) -> Tensor:
        w = torch.ones(n)
        if overlap <= 0:
            return w
        k = torch.arange(min(overlap, n), dtype=torch.float32)
        edge = 0.5 - 0.5 * torch.cos(np.pi * (k + 0.5) / min(overlap, n))
        if start > 0:
            w[: edge.numel()] = torch.minimum(w[: edge.numel()], edge)
        if start + n < total:
            w[-edge.numel() :] = torch.minimum(w[-edge.numel() :], edge.flip(0))
        return w

    return ramp(p, y0, shape[0])[:, None] * ramp(q, x0, shape[1])[None, :]


def tiled(fn: Callable[[Window], Tensor], windows: list[Window], shape: tuple[int, int], overlap: int) -> Tensor:
    """Blend ``fn(window)`` (B, C, p, q) over the windows into (B, C, H, W)."""
    total = weight = None
    for window in windows:
        y0, x0, p, q = window
        value = fn(window)
        w = blend_weights(window, shape, overlap).to(value)
        if total is None:
            total = value.new_zeros((*value.shape[:2], *shape))
            weight = value.new_zeros(shape)
        total[..., y0 : y0 + p, x0 : x0 + q] += value * w
        weight[y0 : y0 + p, x0 : x0 + q] += w
    return total / weight  # type: ignore[operator]


# --------------------------------------------------------------------------------------------
# drawing members


def noise_levels(sample: SampleConfig) -> Tensor:
    """The sampler's schedule (steps + 1 levels, last 0) from the sample settings."""
    if sample.schedule == "log_uniform":
        return samplers.log_uniform_sigmas(sample.steps, sample.sigma_min, sample.sigma_max)
    return samplers.karras_sigmas(sample.steps, sample.sigma_min, sample.sigma_max, sample.rho)


@torch.no_grad()
def draw(
    model: torch.nn.Module,
    cond: Tensor,
    base: Tensor,
    sample: SampleConfig,
    generator: torch.Generator | None = None,
    windows: list[Window] | None = None,
) -> Tensor:
    """Members (B, C_out, H, W) in standardised space for conditioning (B, C_cond, H, W).

    A regression model gives its mean (the same for every entry); a diffusion model one sample
    per entry.
    """
    shape = tuple(cond.shape[-2:])
    windows = windows or [(0, 0, *shape)]

    def crop(t: Tensor, w: Window) -> Tensor:
        return t[..., w[0] : w[0] + w[2], w[1] : w[1] + w[3]]

    if not isinstance(model, DiffusionModel):
        return tiled(lambda w: model(crop(cond, w), crop(base, w)), windows, shape, sample.tile_overlap)
    mu = tiled(lambda w: model.mu(crop(cond, w), crop(base, w)), windows, shape, sample.tile_overlap)

    def denoise(z: Tensor, sigma: Tensor | float) -> Tensor:
        return tiled(lambda w: model.denoise(crop(z, w), sigma, crop(cond, w), crop(mu, w)), windows, shape,
                     sample.tile_overlap)

    noise = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
    sigmas = noise_levels(sample)
    z = samplers.sample(
        denoise, noise, sigmas, solver=sample.solver, S_churn=sample.S_churn, S_min=sample.S_min,
        S_max=sample.S_max, S_noise=sample.S_noise, generator=generator,
    )
    return model.combine(z, mu)


# --------------------------------------------------------------------------------------------
# memory

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
    """Peak resident memory of ``downscale`` by part, in bytes, for ``batch`` members per network call."""

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
        parts = {"sampler": self.sampler, "fields": self.fields, "tile": self.tile, "output block": self.output,
                 "libraries": self.libraries}
        return (f"estimated peak memory {self.total / 1e9:.2f} GB with batches of {self.batch} members ("
                + ", ".join(f"{name} {size / 1e9:.2f}" for name, size in parts.items()) + ")")


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


def estimate_memory(model: torch.nn.Module, layout: Layout, settings: SampleConfig, shape: tuple[int, int],
                    n_times: int, batch: int | None = None) -> MemoryEstimate:
    """Peak resident memory (bytes) of drawing with ``model`` on an HR domain ``shape`` (H, W) over ``n_times`` times.

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
    tile = min(settings.tile_size or shape[0], shape[0]) * min(settings.tile_size or shape[1], shape[1])
    times = min(chunk_times(b, c_out, shape), n_times)
    return MemoryEstimate(
        batch=b,
        sampler=per_value * b * c_out * points,
        fields=4 * maps * points,
        tile=round(4 * b * tile * _tile_maps(net)),
        output=4 * b * times * c_out * points,
    )


def check_memory(model: torch.nn.Module, layout: Layout, settings: SampleConfig, shape: tuple[int, int],
                 n_times: int, max_gb: float | None) -> MemoryEstimate:
    """The run's :func:`estimate_memory`; refuses (ValueError) one above ``max_gb`` GB, naming a batch size that fits."""
    estimate = estimate_memory(model, layout, settings, shape, n_times)
    if max_gb is None or estimate.total <= max_gb * 1e9:
        return estimate
    fits = [b for b in range(estimate.batch - 1, 0, -1)
            if estimate_memory(model, layout, settings, shape, n_times, b).total <= max_gb * 1e9]
    advice = (f"use sample.batch_size={fits[0]}" if fits else
              "no batch size fits: tile the domain (sample.tile_size) or allow more memory")
    raise ValueError(f"{estimate.describe()}, above --max-memory-gb {max_gb:g}: {advice}")


# --------------------------------------------------------------------------------------------
# whole runs


def _check_static(loaded: Loaded, static: xr.Dataset, static_path: str) -> None:
    """Refuse static fields on another grid or domain than the checkpoint's."""
    grid = loaded.grid
    if list(static.lat.shape) != grid["hr_shape"]:
        raise ValueError(f"{static_path}: HR grid {tuple(static.lat.shape)} differs from the checkpoint's "
                         f"{tuple(grid['hr_shape'])}")
    tolerance = loaded.config.data.alignment.tolerance_deg
    # as check_alignment compares static fields with HR: rounding of the coordinates in the files
    hr_tolerance = tolerance + 0.05 * min(grid_spacing(static.lat, static.lon))
    ranges = {"lat": [float(static.lat.min()), float(static.lat.max())],
              "lon": [float(static.lon.min()), float(static.lon.max())]}
    for name, (low, high) in ranges.items():
        trained = grid[f"hr_{name}_range"]
        off = np.array([low - trained[0], high - trained[1]])
        if name == "lon":  # the static file may use the other convention ([0, 360) or [-180, 180))
            off = wrap180(off)
        if np.abs(off).max() > hr_tolerance:
            raise ValueError(f"{static_path}: HR grid spans {name} {low:.3f}..{high:.3f}, the checkpoint's "
                             f"{trained[0]:.3f}..{trained[1]:.3f}: another domain than the model was trained on")


def _check_lr(loaded: Loaded, lr: xr.Dataset, hr: xr.Dataset, lr_path: str) -> None:
    """Refuse LR on another grid than the checkpoint's, not covering the HR grid ``hr`` (lat/lon
    (y, x)), or without the variables the model was trained on."""
    grid = loaded.grid
    if list(lr.lat.shape) != grid["lr_shape"]:
        raise ValueError(f"{lr_path}: LR grid {tuple(lr.lat.shape)} differs from the checkpoint's {tuple(grid['lr_shape'])}")
    check_covers(lr, hr, loaded.config.data.alignment.tolerance_deg)
    missing = [v for v in loaded.layout.lr_variables if v not in lr.data_vars]
    if missing:
        raise ValueError(f"{lr_path}: LR lacks {missing}, which the model was trained on")


def hr_grid(loaded: Loaded, checkpoint: str | Path) -> xr.Dataset:
    """The HR grid stored in the checkpoint: a dataset of lat(y, x), lon(y, x) (degrees, float64) alone.

    Raises ValueError for a checkpoint written before the grid was stored.
    """
    if loaded.hr_grid is None:
        if loaded.config.data.static is None:
            raise ValueError(f"{checkpoint}: written before checkpoints stored the HR grid, by a model trained "
                             "without static fields: nothing gives its HR grid (train it again)")
        raise ValueError(f"{checkpoint}: written before checkpoints stored the HR grid; give the static "
                         f"fields (--static, as {loaded.config.data.static.path} in its config), which give it")
    lat, lon = loaded.hr_grid
    return xr.Dataset(
        coords={"lat": (("y", "x"), lat, {"units": "degrees_north", "standard_name": "latitude"}),
                "lon": (("y", "x"), lon, {"units": "degrees_east", "standard_name": "longitude"})},
        attrs={"finescale_source": f"{checkpoint} (HR grid)"},
    )


def open_inputs(
    loaded: Loaded,
    checkpoint: str | Path,
    lr: str | Path | xr.Dataset,
    static: str | Path | xr.Dataset | None = None,
) -> tuple[xr.Dataset, xr.Dataset]:
    """The LR source and the HR static fields in finescale's layout, checked against the checkpoint.

    ``lr`` and ``static`` are files, or datasets as such files hold them (the checkpoint's
    config maps their names, units and orientation either way). Without ``static`` the second
    dataset is the HR grid stored in the checkpoint (:func:`hr_grid`), which serves a model
    trained without static fields; one trained with them needs them (ValueError naming them).
    """
    cfg = loaded.config
    if isinstance(lr, xr.Dataset):
        lr_ds, lr_where = open_source(cfg.data.lr, dataset=lr), IN_MEMORY
    else:
        lr_ds, lr_where = open_source(cfg.data.lr.model_copy(update={"path": Path(lr)})), str(lr)
    needed = list(loaded.layout.static_variables)
    if static is None:
        if needed:
            names = ", ".join(f"'{v}'" for v in needed)
            raise ValueError(f"{checkpoint}: the model was trained with the static fields {names}: give them "
                             f"(--static FILE; the config read them from {cfg.data.static.path})")  # type: ignore[union-attr]
        grid = hr_grid(loaded, checkpoint)
    else:
        if cfg.data.static is None:
            raise ValueError(f"{checkpoint}: the model was trained without static fields; leave out the static "
                             f"fields ({static if not isinstance(static, xr.Dataset) else IN_MEMORY}): the HR grid "
                             "comes from the checkpoint")
        if isinstance(static, xr.Dataset):
            grid, static_where = open_static(cfg.data.static, dataset=static), IN_MEMORY
        else:
            grid = open_static(cfg.data.static.model_copy(update={"path": Path(static)}))
            static_where = str(static)
        _check_static(loaded, grid, static_where)
    _check_lr(loaded, lr_ds, grid, lr_where)
    return lr_ds, grid


#: the polar filter's latitude (degrees) on global grids that reach beyond it, when not set
POLAR_FILTER_DEFAULT = 60.0


def polar_latitude(settings: SampleConfig, periodic_lon: bool, lat: np.ndarray) -> float | None:
    """The latitude (degrees) poleward of which members are polar-filtered; None: not filtered.

    ``settings.polar_filter_latitude`` where set (90: off); when None, ``POLAR_FILTER_DEFAULT``
    on a global grid (``periodic_lon``) whose HR latitudes ``lat`` reach beyond it, else off.
    Regional grids are never filtered: a latitude set for one is refused (ValueError).
    """
    chosen = settings.polar_filter_latitude
    if not periodic_lon:
        if chosen is not None and chosen < 90:
            raise ValueError(f"sample.polar_filter_latitude={chosen:g}: the polar filter is for global grids "
                             "periodic in longitude, and this model's HR grid is regional (leave it unset)")
        return None
    if chosen is None:
        reaches = np.nanmax(np.abs(lat)) > POLAR_FILTER_DEFAULT
        chosen = POLAR_FILTER_DEFAULT if reaches else None
    return None if chosen is None or chosen >= 90 else float(chosen)


def vector_components(settings: SampleConfig, loaded: Loaded) -> list[str]:
    """The HR variables polar-filtered as components of a vector (their zonal wave 1 kept).

    ``settings.polar_filter_vectors`` where set; when None, the target variables whose units are
    a speed (length / time, e.g. 'm s-1', 'knots'), leaving out log1p-transformed ones: a rate
    such as 'mm/h' has a speed's dimensions but is never negative, so it is no vector component.
    Raises ValueError naming an unknown variable and the model's variables.
    """
    targets = list(loaded.layout.target_variables)
    chosen = settings.polar_filter_vectors
    if chosen is not None:
        unknown = [v for v in chosen if v not in targets]
        if unknown:
            raise ValueError(f"sample.polar_filter_vectors: {unknown} are not variables of this model "
                             f"(its HR variables: {targets})")
        return [v for v in targets if v in chosen]
    return [v for v in targets if loaded.stats[v].transform.kind == "none" and _is_speed(loaded.stats[v].units)]


def _is_speed(units: str | None) -> bool:
    """Whether ``units`` are a speed (SI m s-1); units this package does not know are not."""
    try:
        return parse_units(units or "").dims == (1, 0, -1, 0)  # exponents of (m, kg, s, K)
    except UnitsError:
        return False


def sample_settings(loaded: Loaded, overrides: dict[str, Any] | None = None) -> SampleConfig:
    """The checkpoint's sample settings with ``overrides`` (members, steps, solver, ...), checked."""
    return validate(loaded.config.sample.model_dump() | (overrides or {}), SampleConfig, source="sample settings")


@dataclass
class Plan:
    """A downscaling run set up: the output described, its blocks, and what draws each block."""

    spec: EnsembleSpec
    blocks: list[Block]
    draw: _BlockDrawer
    memory: MemoryEstimate

    def steps(self, skip: Collection[int] = ()) -> int:
        """Progress steps of drawing the blocks not in ``skip``: each is one batch of members at one time."""
        return sum(b.times.stop - b.times.start for b in self.blocks if b.index not in skip)


def plan(
    loaded: Loaded,
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
    lr_ds, static_ds = open_inputs(loaded, checkpoint, lr, static)
    lr_where = IN_MEMORY if isinstance(lr, xr.Dataset) else str(lr)
    if isinstance(times, slice):
        lr_ds = lr_ds.sel(time=times)
    elif times is not None:
        lr_ds = lr_ds.sel(time=np.asarray(times, dtype="datetime64[ns]"))
    if lr_ds.sizes["time"] == 0:
        raise ValueError(f"{lr_where}: no LR times in the requested period")
    memory = check_memory(loaded.model, loaded.layout, settings, tuple(static_ds.lat.shape), lr_ds.sizes["time"],
                          max_memory_gb)
    read_through(lr_ds, loaded.layout.lr_variables)  # a refusal now leaves no partial output behind
    lr_members = lr_ds.sizes.get("member", 1)
    members = settings.members if isinstance(loaded.model, DiffusionModel) else 1
    to_hr = LRToHR(lr_ds.lat, lr_ds.lon, static_ds.lat, static_ds.lon, cfg.model.conditioning.interpolation,
                   loaded.periodic_lon)
    attrs = {
        "title": f"finescale {cfg.model.kind} ensemble",
        "source": f"finescale {__version__}",
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": loaded.sha256,
        "lr_source": lr_where,
        "sampler": settings.model_dump_json(),
        "config": json.dumps(cfg.model_dump(mode="json")),
        "Conventions": "CF-1.8",
    }
    polar = polar_latitude(settings, loaded.periodic_lon, static_ds.lat.values)
    vectors = vector_components(settings, loaded)
    if polar is not None:
        attrs["polar_filter"] = (f"poleward of {polar:g} degrees each member keeps the zonal wavenumbers "
                                 "a grid of the spacing there resolves (finescale.data.grids.polar_filter)"
                                 + (f"; vector components {', '.join(vectors)} also keep zonal wave 1 "
                                    "(a vector at the pole)" if vectors else ""))
    variables = {v: {"units": loaded.stats[v].units or "", "long_name": v} for v in loaded.layout.target_variables}
    times_per_block = chunk_times(min(settings.batch_size, members), len(variables), to_hr.shape)
    spec = EnsembleSpec(variables, lr_members * members, lr_ds.time.values, static_ds.lat.values,
                        static_ds.lon.values, times_per_block, attrs)
    # a block is one network batch of members (of one LR member) over a chunk of times
    groups = [
        slice(k * members + m0, k * members + min(m0 + settings.batch_size, members))
        for k in range(lr_members)
        for m0 in range(0, members, settings.batch_size)
    ]
    blocks = ensemble_blocks(groups, lr_ds.sizes["time"], times_per_block)
    drawer = _BlockDrawer(loaded, lr_ds, static_ds, to_hr, settings, members, progress, polar, vectors)
    return Plan(spec, blocks, drawer, memory)


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
    run = plan(loaded, checkpoint, lr_path, static_path, sample=sample, times=times, progress=progress,
               max_memory_gb=max_memory_gb)
    if note and rank == 0:
        note(run.memory.describe())
    if total:
        done = PartialEnsemble(out).done(run.spec.request(run.blocks))
        total(run.steps(done | {b.index for b in run.blocks if b.index % world_size != rank}))
    filled = fill_ensemble(out, run.spec, run.blocks, run.draw, rank=rank, world_size=world_size, note=note)
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
    arrays = {name: np.empty((spec.members, times.size, *lat.shape), np.float32) for name in spec.variables}
    for block in run.blocks:
        for name, values in run.draw(block).items():
            arrays[name][block.members, block.times] = values
    coords = {
        "member": np.arange(spec.members),
        "time": times,
        "lat": (("y", "x"), lat, {"units": "degrees_north", "standard_name": "latitude"}),
        "lon": (("y", "x"), lon, {"units": "degrees_east", "standard_name": "longitude"}),
    }
    data = {name: (("member", "time", "y", "x"), arrays[name], attrs) for name, attrs in spec.variables.items()}
    return xr.Dataset(data, coords=coords, attrs=dict(spec.attrs))


class _BlockDrawer:
    """Draws the physical HR members of one block: name -> (members, times, H, W)."""

    def __init__(
        self,
        loaded: Loaded,
        lr: xr.Dataset,
        static: xr.Dataset,
        to_hr: LRToHR,
        settings: SampleConfig,
        members: int,
        progress: ProgressFn | None,
        polar: float | None = None,
        vectors: Collection[str] = (),
    ):
        self.loaded, self.lr, self.static, self.to_hr = loaded, lr, static, to_hr
        self.settings, self.members, self.progress = settings, members, progress
        self.polar = polar  # see polar_latitude
        self.vectors = frozenset(vectors)  # see vector_components
        self.windows = tiles(to_hr.shape, settings.tile_size, settings.tile_overlap)
        self._fields: tuple[tuple[int, int], Fields] | None = None  # the last block's: its member groups follow

    def fields(self, k_lr: int, times: slice) -> Fields:
        """Standardised inputs of LR member ``k_lr`` over ``times`` (kept for the next block)."""
        key = (k_lr, times.start)
        if self._fields is None or self._fields[0] != key:
            lr = self.lr.isel(member=k_lr) if "member" in self.lr.dims else self.lr
            fields = load_fields(self.loaded.layout, self.loaded.stats, lr.isel(time=times), self.static,
                                 self.static.lat, self.static.lon)
            self._fields = (key, fields)
        return self._fields[1]

    def polar_filtered(self, values: np.ndarray, name: str) -> np.ndarray:
        """Members (b, H, W) of ``name`` in physical units, polar-filtered poleward of ``self.polar``.

        A scalar's pole rows become the member's own value at the first column (one point, with
        the network's point-scale variability); a vector component's (``self.vectors``) keep
        their zonal mean and wave 1. A variable transformed by log1p (precipitation) stays as its
        inverse transform leaves it: values below ``zero_below`` (and the filter's small negative
        ripples) come back 0.
        """
        keep = 1 if name in self.vectors else 0  # a vector's components at the pole: zonal wave 1
        filtered = polar_filter(values, self.static.lat.values, self.polar, keep)  # type: ignore[arg-type]
        if keep == 0:
            # a scalar's pole is one point: take it from one column of the member's own pole row,
            # not the row's mean, which averages the network's point-scale variability away
            lat = np.asarray(self.static.lat.values)
            pole = np.abs(lat if lat.ndim == 1 else lat.mean(axis=1)) == 90.0
            filtered[..., pole, :] = values[..., pole, :1]
        values = filtered
        transform = self.loaded.stats[name].transform
        if transform.kind == "log1p":
            values[values < transform.zero_below] = 0.0
        return values

    def __call__(self, block: Block) -> dict[str, np.ndarray]:
        layout, stats = self.loaded.layout, self.loaded.stats
        fields = self.fields(block.members.start // self.members, block.times)
        h, w = self.to_hr.shape
        b = block.members.stop - block.members.start
        valid = self.lr.time.values[block.times].astype("datetime64[s]").astype(np.int64)
        out = {v: np.empty((b, valid.size, h, w), np.float32) for v in layout.target_variables}
        for t, seconds in enumerate(valid):
            generator = torch.Generator().manual_seed(block_seed(self.settings.seed, block.members.start, seconds))
            # every member of the batch has the same inputs: one copy, seen b times (on a large
            # domain each copy is C_cond x H x W floats)
            cond, base = conditioning(fields, layout, self.to_hr, [t], (0, 0, h, w))
            cond, base = cond.expand(b, -1, -1, -1), base.expand(b, -1, -1, -1)
            z = draw(self.loaded.model, cond, base, self.settings, generator, self.windows).numpy()
            for c, name in enumerate(layout.target_variables):
                values = stats.denormalise_array(z[:, c].astype(np.float64), name)
                out[name][:, t] = values if self.polar is None else self.polar_filtered(values, name)
            if self.progress:
                self.progress(1)
        return out

"""Ensemble generation: HR members from LR inputs, tile by tile, written block by block.

For each LR time (and each LR member, where the LR is an ensemble) the model draws ``members``
HR states. Large domains are cut into overlapping tiles: the sampler runs on the whole-domain
state, and at every step the denoiser is evaluated tile by tile and the tiles' estimates are
blended with smooth weights, so memory follows the tile while the sample has no seams. The
output is a Zarr store (member, time, y, x) in physical units carrying the config, the
checkpoint's hash and the sampler settings as attributes.

It is written in blocks (a batch of members over a Zarr chunk of times) into a partial store
beside the output and renamed into place when complete (:func:`finescale.io.fill_ensemble`): a
killed run resumes with the missing blocks, and several processes can share the blocks. Every
batch of members at every time draws its noise from its own seed (the run's seed, its first
member and the time), so the result is the same however the blocks are shared or resumed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import Tensor

import finescale
from finescale.config import SampleConfig, validate
from finescale.data.alignment import check_covers
from finescale.data.grids import grid_spacing
from finescale.data.samples import Fields, LRToHR, conditioning, load_fields
from finescale.data.sources import open_source, open_static
from finescale.diffusion import samplers
from finescale.io import (
    Block,
    EnsembleSpec,
    block_seed,
    check_writable,
    ensemble_blocks,
    fill_ensemble,
)
from finescale.models.diffusion import DiffusionModel
from finescale.train import Loaded, load_checkpoint

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
# whole runs


def _check_grid(loaded: Loaded, lr: xr.Dataset, static: xr.Dataset, lr_path: str, static_path: str) -> None:
    """Refuse data on other grids or domains, or without the variables the model was trained on."""
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
            off = (off + 180.0) % 360.0 - 180.0
        if np.abs(off).max() > hr_tolerance:
            raise ValueError(f"{static_path}: HR grid spans {name} {low:.3f}..{high:.3f}, the checkpoint's "
                             f"{trained[0]:.3f}..{trained[1]:.3f}: another domain than the model was trained on")
    if list(lr.lat.shape) != grid["lr_shape"]:
        raise ValueError(f"{lr_path}: LR grid {tuple(lr.lat.shape)} differs from the checkpoint's {tuple(grid['lr_shape'])}")
    check_covers(lr, static, tolerance)
    missing = [v for v in loaded.layout.lr_variables if v not in lr.data_vars]
    if missing:
        raise ValueError(f"{lr_path}: LR lacks {missing}, which the model was trained on")


def read_through(ds: xr.Dataset, names: Sequence[str]) -> None:
    """Read every value of the variables ``names`` once, chunk by chunk, keeping none of them.

    The reads go through the data layer's checks (:mod:`finescale.data.sources`), which refuse
    what the source's ``missing`` setting does not allow (NaN, Inf) and chunks that cannot be
    decoded, naming the file, the variable and the time: done before drawing, a refusal comes
    before any output is created instead of part-way through it. Costs one more read of the LR.
    """
    ds[list(names)].count().compute()


#: times per Zarr chunk of the output, and per block of work
CHUNK_TIMES = 24


def downscale(
    checkpoint: str | Path,
    lr_path: str | Path,
    static_path: str | Path,
    out: str | Path,
    *,
    sample: dict[str, Any] | None = None,
    times: np.ndarray | slice | None = None,
    progress: ProgressFn | None = None,
    rank: int = 0,
    world_size: int = 1,
    note: Callable[[str], None] | None = None,
) -> Path:
    """Write an HR ensemble for the LR times (all, ``times`` given, or a slice of them) to ``out``.

    sample: overrides of the checkpoint's sample settings (members, steps, solver, ...). An LR
    with a ``member`` dim gives ``members`` HR members per LR member (member = k_lr * members + k).
    progress: called with 1 after each batch of members at one time.

    A rerun with the same arguments after a crash draws only the blocks not yet written; a
    partial output left by other arguments is refused (remove ``.<name>.partial`` beside ``out``
    to start over). With ``world_size`` > 1 this process draws the blocks whose index modulo
    ``world_size`` is ``rank`` into the shared partial store, and the last process to finish
    moves it to ``out``. Returns ``out`` once complete, else the partial store's folder; ``note``
    receives one-line messages about resuming and sharing. An ``out`` whose folder cannot be
    written is refused before anything is loaded.
    """
    check_writable(Path(out).parent)
    loaded = load_checkpoint(checkpoint)
    cfg = loaded.config
    settings = validate(cfg.sample.model_dump() | (sample or {}), SampleConfig, source="sample settings")
    lr = open_source(cfg.data.lr.model_copy(update={"path": Path(lr_path)}))
    if cfg.data.static is None:
        raise ValueError(f"{checkpoint}: the model was trained without static fields; nothing gives the HR grid")
    static = open_static(cfg.data.static.model_copy(update={"path": Path(static_path)}))
    _check_grid(loaded, lr, static, str(lr_path), str(static_path))
    if isinstance(times, slice):
        lr = lr.sel(time=times)
    elif times is not None:
        lr = lr.sel(time=np.asarray(times, dtype="datetime64[ns]"))
    if lr.sizes["time"] == 0:
        raise ValueError(f"{lr_path}: no LR times in the requested period")
    read_through(lr, loaded.layout.lr_variables)  # a refusal now leaves no partial output behind
    lr_members = lr.sizes.get("member", 1)
    members = settings.members if isinstance(loaded.model, DiffusionModel) else 1
    to_hr = LRToHR(lr.lat, lr.lon, static.lat, static.lon, cfg.model.conditioning.interpolation, loaded.periodic_lon)
    attrs = {
        "title": f"finescale {cfg.model.kind} ensemble",
        "source": f"finescale {finescale.__version__}",
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": loaded.sha256,
        "lr_source": str(lr_path),
        "sampler": settings.model_dump_json(),
        "config": json.dumps(cfg.model_dump(mode="json")),
        "Conventions": "CF-1.8",
    }
    variables = {v: {"units": loaded.stats[v].units or "", "long_name": v} for v in loaded.layout.target_variables}
    spec = EnsembleSpec(variables, lr_members * members, lr.time.values, static.lat.values, static.lon.values,
                        CHUNK_TIMES, attrs)
    # a block is one network batch of members (of one LR member) over a chunk of times
    groups = [
        slice(k * members + m0, k * members + min(m0 + settings.batch_size, members))
        for k in range(lr_members)
        for m0 in range(0, members, settings.batch_size)
    ]
    blocks = ensemble_blocks(groups, lr.sizes["time"], CHUNK_TIMES)
    drawer = _BlockDrawer(loaded, lr, static, to_hr, settings, members, progress)
    filled = fill_ensemble(out, spec, blocks, drawer, rank=rank, world_size=world_size, note=note)
    return filled.path


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
    ):
        self.loaded, self.lr, self.static, self.to_hr = loaded, lr, static, to_hr
        self.settings, self.members, self.progress = settings, members, progress
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
                out[name][:, t] = stats.denormalise_array(z[:, c].astype(np.float64), name)
            if self.progress:
                self.progress(1)
        return out

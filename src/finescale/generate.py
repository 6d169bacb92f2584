"""Ensemble generation: HR members from LR inputs, tile by tile, written block by block.

For each LR time (and each LR member, where the LR is an ensemble) the model draws ``members``
HR states. Large domains are cut into overlapping tiles: the sampler runs on the whole-domain
state, and at every step the denoiser is evaluated tile by tile and the tiles' estimates are
blended with smooth weights, so memory follows the tile while the sample has no seams. The
output is a Zarr store (member, time, y, x) in physical units, written through a temporary name,
carrying the config, the checkpoint's hash and the sampler settings as attributes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import Tensor

import finescale
from finescale.config import SampleConfig, validate
from finescale.data.samples import Fields, LRToHR, conditioning, load_fields
from finescale.data.sources import open_source, open_static
from finescale.diffusion import samplers
from finescale.io import EnsembleStore, atomic_path
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


def _check_grid(loaded: Loaded, lr: xr.Dataset, hr_lat: xr.DataArray, where: str) -> None:
    """Refuse data on other grids or without the variables the model was trained on."""
    grid = loaded.grid
    if list(hr_lat.shape) != grid["hr_shape"]:
        raise ValueError(f"{where}: HR grid {tuple(hr_lat.shape)} differs from the checkpoint's {tuple(grid['hr_shape'])}")
    if list(lr.lat.shape) != grid["lr_shape"]:
        raise ValueError(f"{where}: LR grid {tuple(lr.lat.shape)} differs from the checkpoint's {tuple(grid['lr_shape'])}")
    missing = [v for v in loaded.layout.lr_variables if v not in lr.data_vars]
    if missing:
        raise ValueError(f"{where}: LR lacks {missing}, which the model was trained on")


def downscale(
    checkpoint: str | Path,
    lr_path: str | Path,
    static_path: str | Path,
    out: str | Path,
    *,
    sample: dict[str, Any] | None = None,
    times: np.ndarray | slice | None = None,
    progress: ProgressFn | None = None,
) -> Path:
    """Write an HR ensemble for the LR times (all, ``times`` given, or a slice of them) to ``out``.

    sample: overrides of the checkpoint's sample settings (members, steps, solver, ...). An LR
    with a ``member`` dim gives ``members`` HR members per LR member (member = k_lr * members + k).
    """
    loaded = load_checkpoint(checkpoint)
    cfg = loaded.config
    settings = validate(cfg.sample.model_dump() | (sample or {}), SampleConfig, source="sample settings")
    lr = open_source(cfg.data.lr.model_copy(update={"path": Path(lr_path)}))
    if cfg.data.static is None:
        raise ValueError(f"{checkpoint}: the model was trained without static fields; nothing gives the HR grid")
    static = open_static(cfg.data.static.model_copy(update={"path": Path(static_path)}))
    _check_grid(loaded, lr, static.lat, f"{lr_path}")
    if isinstance(times, slice):
        lr = lr.sel(time=times)
    elif times is not None:
        lr = lr.sel(time=np.asarray(times, dtype="datetime64[ns]"))
    if lr.sizes["time"] == 0:
        raise ValueError(f"{lr_path}: no LR times in the requested period")
    lr_members = lr.sizes.get("member", 1)
    members = settings.members if isinstance(loaded.model, DiffusionModel) else 1
    to_hr = LRToHR(lr.lat, lr.lon, static.lat, static.lon, cfg.model.conditioning.interpolation, loaded.periodic_lon)
    windows = tiles(to_hr.shape, settings.tile_size, settings.tile_overlap)
    layout, stats = loaded.layout, loaded.stats
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
    variables = {v: {"units": stats[v].units or "", "long_name": v} for v in layout.target_variables}
    chunk = 24
    generator = torch.Generator().manual_seed(settings.seed)
    with atomic_path(out) as tmp:
        store = EnsembleStore(tmp).create(
            variables, lr_members * members, lr.time.values, static.lat.values, static.lon.values, chunk, attrs
        )
        for k_lr in range(lr_members):
            lr_k = lr.isel(member=k_lr) if "member" in lr.dims else lr
            for t0 in range(0, lr_k.sizes["time"], chunk):
                block = lr_k.isel(time=slice(t0, t0 + chunk))
                fields = load_fields(layout, stats, block, static, static.lat, static.lon)
                data = _draw_block(loaded, fields, to_hr, settings, members, windows, generator, progress)
                store.write(slice(k_lr * members, (k_lr + 1) * members), slice(t0, t0 + block.sizes["time"]), data)
    return Path(out)


def _draw_block(
    loaded: Loaded,
    fields: Fields,
    to_hr: LRToHR,
    settings: SampleConfig,
    members: int,
    windows: list[Window],
    generator: torch.Generator,
    progress: ProgressFn | None,
) -> dict[str, np.ndarray]:
    """Physical HR members (members, T, H, W) per target variable for one block of times."""
    layout, stats = loaded.layout, loaded.stats
    h, w = to_hr.shape
    n_times = fields.lr.shape[0]
    out = {v: np.empty((members, n_times, h, w), np.float32) for v in layout.target_variables}
    for t in range(n_times):
        for m0 in range(0, members, settings.batch_size):
            b = min(settings.batch_size, members - m0)
            cond, base = conditioning(fields, layout, to_hr, [t] * b, (0, 0, h, w))
            z = draw(loaded.model, cond, base, settings, generator, windows).numpy()
            for c, name in enumerate(layout.target_variables):
                out[name][m0 : m0 + b, t] = stats.denormalise_array(z[:, c].astype(np.float64), name)
        if progress:
            progress(1)
    return out

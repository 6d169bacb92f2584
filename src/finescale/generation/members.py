"""Drawing members: the sampler on standardised fields, and the physical members of a block.

:func:`draw` gives members for a batch of conditioning (the diffusion sampler, tiled, a
consistency student's few calls, or the regression mean); :class:`BlockDrawer` turns one block of
the output (a batch of members over a chunk of times) into members in physical units,
polar-filtered on global grids. What differs between the kinds of model is here and only here:
:func:`draw` and :func:`unused_settings`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from finescale.checkpoints import TrainedDownscaler
from finescale.config import ConfigError, SampleConfig
from finescale.data.grids import polar_filter
from finescale.data.lr_to_hr import LRToHR
from finescale.data.patches import Fields, conditioning, load_fields
from finescale.diffusion import samplers
from finescale.diffusion.consistency import sample_consistency, sampling_levels
from finescale.generation.tiling import Window, tiled, tiles
from finescale.io.blocks import Block, block_seed
from finescale.models.consistency import ConsistencyModel
from finescale.models.diffusion import DiffusionModel

#: called with the number of batches of members at one time just drawn
ProgressFn = Callable[[int], None]

#: sample settings of the ODE/SDE solvers: a consistency student's levels and sampler were fixed
#: when it was distilled, so it takes none of them
SOLVER_SETTINGS = frozenset(
    {"solver", "steps", "sigma_min", "sigma_max", "schedule", "rho"}
    | {"S_churn", "S_min", "S_max", "S_noise"}
)
#: sample settings only a consistency student reads
STUDENT_SETTINGS = frozenset({"calls", "renoise"})


def unused_settings(model: torch.nn.Module) -> frozenset[str]:
    """The sample settings ``model`` does not read: set explicitly, they are refused
    (:func:`finescale.generation.sample_settings`), and they are left out of the output's
    ``sampler`` attribute. (A regression model reads none of the sampler's; it has always
    ignored them.)"""
    return SOLVER_SETTINGS if isinstance(model, ConsistencyModel) else STUDENT_SETTINGS


def refuse_unused(loaded: TrainedDownscaler, overrides: Collection[str]) -> None:
    """A ConfigError naming the ``overrides`` (sample settings set explicitly) that the
    checkpoint's model does not read (:func:`unused_settings`), and what to set instead."""
    unused = sorted(set(overrides) & unused_settings(loaded.model))
    if not unused:
        return
    if isinstance(loaded.model, ConsistencyModel):
        why = (
            "a consistency student draws each member in sample.calls network calls (its own: "
            f"{loaded.config.sample.calls}) from sigma_max {loaded.model.sigma_max:g} on the "
            "levels it was distilled on: set sample.calls (and sample.renoise) instead"
        )
    else:
        why = (
            "only a consistency student (finescale distill) reads them; this is a "
            f"{loaded.config.model.kind} model (set sample.steps and sample.solver)"
        )
    raise ConfigError(f"{', '.join(f'sample.{k}' for k in unused)}: {why}")


def student_levels(model: ConsistencyModel, sample: SampleConfig) -> list[float]:
    """The levels a student evaluates each member at: its ``sigma_max``, then ``sample.renoise``
    (by default :func:`~finescale.diffusion.consistency.sampling_levels`)."""
    if sample.renoise is None:
        return sampling_levels(sample.calls, model.sigma_min, model.sigma_max, sample.rho)
    return [model.sigma_max, *sample.renoise]


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
    per entry, by an ODE/SDE solver; a consistency student one sample per entry in
    ``sample.calls`` calls.
    """
    shape = tuple(cond.shape[-2:])
    windows = windows or [(0, 0, *shape)]

    def crop(t: Tensor, w: Window) -> Tensor:
        return t[..., w[0] : w[0] + w[2], w[1] : w[1] + w[3]]

    if not isinstance(model, DiffusionModel):
        return tiled(
            lambda w: model(crop(cond, w), crop(base, w)), windows, shape, sample.tile_overlap
        )
    mu = tiled(
        lambda w: model.mu(crop(cond, w), crop(base, w)), windows, shape, sample.tile_overlap
    )

    def on_tiles(network: Callable[..., Tensor]) -> Callable[[Tensor, Tensor | float], Tensor]:
        """``network(z, sigma, cond, mu)`` evaluated tile by tile and blended."""
        return lambda z, sigma: tiled(
            lambda w: network(crop(z, w), sigma, crop(cond, w), crop(mu, w)),
            windows,
            shape,
            sample.tile_overlap,
        )

    noise = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
    if isinstance(model, ConsistencyModel):
        z = sample_consistency(
            on_tiles(model.consistency),
            noise,
            student_levels(model, sample),
            model.sigma_min,
            generator=generator,
        )
    else:
        z = samplers.sample(
            on_tiles(model.denoise),
            noise,
            noise_levels(sample),
            solver=sample.solver,
            S_churn=sample.S_churn,
            S_min=sample.S_min,
            S_max=sample.S_max,
            S_noise=sample.S_noise,
            generator=generator,
        )
    return model.combine(z, mu)


class BlockDrawer:
    """Draws the physical HR members of one block: name -> (members, times, H, W)."""

    def __init__(
        self,
        loaded: TrainedDownscaler,
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
        # the last block's: its member groups follow
        self._fields: tuple[tuple[int, int], Fields] | None = None

    def fields(self, k_lr: int, times: slice) -> Fields:
        """Standardised inputs of LR member ``k_lr`` over ``times`` (kept for the next block)."""
        key = (k_lr, times.start)
        if self._fields is None or self._fields[0] != key:
            lr = self.lr.isel(member=k_lr) if "member" in self.lr.dims else self.lr
            fields = load_fields(
                self.loaded.layout,
                self.loaded.stats,
                lr.isel(time=times),
                self.static,
                self.static.lat,
                self.static.lon,
            )
            self._fields = (key, fields)
        return self._fields[1]

    def polar_filtered(self, values: np.ndarray, name: str) -> np.ndarray:
        """Members (b, H, W) of ``name`` in physical units, polar-filtered poleward of
        ``self.polar``.

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
            seed = block_seed(self.settings.seed, block.members.start, seconds)
            generator = torch.Generator().manual_seed(seed)
            # every member of the batch has the same inputs: one copy, seen b times (on a large
            # domain each copy is C_cond x H x W floats)
            cond, base = conditioning(fields, layout, self.to_hr, [t], (0, 0, h, w))
            cond, base = cond.expand(b, -1, -1, -1), base.expand(b, -1, -1, -1)
            z = draw(self.loaded.model, cond, base, self.settings, generator, self.windows).numpy()
            for c, name in enumerate(layout.target_variables):
                values = stats.denormalise_array(z[:, c].astype(np.float64), name)
                out[name][:, t] = (
                    values if self.polar is None else self.polar_filtered(values, name)
                )
            if self.progress:
                self.progress(1)
        return out

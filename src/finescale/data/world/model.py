"""The world model: terrain, times and the large-scale trajectory, run hour by hour into LR
and HR fields.

Random streams (numpy SeedSequence with spawn keys) keep the parts independent and exactly
reproducible: (0,) the large-scale state, (1,) the truth's small scales, (2, m) oracle member m.
An oracle member re-runs only the small scales for the same large-scale state, so it is an exact
draw from p(HR | LR sequence), exchangeable with the truth. Writing to disk is in
:mod:`~finescale.data.world.simulate`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from finescale.data.world.fields import N_NOISE, hr_fields, hr_mean_fields, lr_fields
from finescale.data.world.largescale import LargeScale
from finescale.data.world.noise import SmallScaleNoise
from finescale.data.world.params import WorldParams
from finescale.data.world.precipitation import ConvectiveCells, OrographicRain
from finescale.data.world.terrain import Terrain, build_terrain, load_dem


def rng_for(seed: int, *key: int) -> np.random.Generator:
    """The random stream for one part of the world (see module docstring)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


@dataclass
class Realisation:
    """The random small-scale components of one HR realisation."""

    noise: SmallScaleNoise
    cells: ConvectiveCells
    rng: np.random.Generator


class World:
    """An Alps world: terrain, times and the large-scale trajectory, ready to produce LR and HR."""

    def __init__(self, params: WorldParams, seed: int = 0, orography: str | Path | None = None):
        self.params, self.seed = params, seed
        dem = load_dem(orography)
        self.terrain: Terrain = build_terrain(
            dem,
            params.hr_resolution_deg,
            params.ratio,
            params.valley_scale_km,
            params.wind_scale_km,
            params.lat_range,
            params.lon_range,
            where=str(orography or "default DEM"),
        )
        n = round(params.days * 24)
        start = np.datetime64(params.start, "h")
        self.times = start + np.arange(n) * np.timedelta64(1, "h")
        self.large = LargeScale(params, self.times, rng_for(seed, 0))
        self.rain_hr = OrographicRain(self.terrain.orog, self.terrain.hr, params)
        self.rain_lr = OrographicRain(self.terrain.orog_lr, self.terrain.lr, params)

    @property
    def spinup_hours(self) -> int:
        """Hours of cell history that can influence a time: the longest lifetime plus the birth
        hour."""
        return math.ceil(self.params.cell_lifetime_max_h) + 1

    def realisation(self, rng: np.random.Generator) -> Realisation:
        hr, p = self.terrain.hr, self.params
        lr_spacing = hr.dx_km * self.terrain.ratio
        noise = SmallScaleNoise(
            N_NOISE,
            hr.shape,
            (hr.dy_km, hr.dx_km),
            p.noise_slope,
            2.0 * lr_spacing,
            p.noise_timescale_h,
        )
        return Realisation(noise=noise, cells=ConvectiveCells(hr, p), rng=rng)

    def _orographic(self, i: int, state: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        u, v, t = (
            float(state["u850"].mean()),
            float(state["v850"].mean()),
            float(state["t_sl"].mean()),
        )
        return self.rain_hr.rate(u, v, t), self.rain_lr.rate(u, v, t)

    def run(
        self, start: int, stop: int, rng: np.random.Generator, with_lr: bool = True
    ) -> Iterator[tuple[int, dict[str, np.ndarray] | None, dict[str, np.ndarray]]]:
        """Yield (time index, LR fields or None, HR fields) for ``start <= i < stop``.

        The small scales spin up from ``start - spinup_hours`` so every yielded time is exact.
        """
        real = self.realisation(rng)
        for i in range(max(0, start - self.spinup_hours), stop):
            state = self.large.state(i, self.terrain.hr)
            rain_hr, rain_lr = self._orographic(i, state)
            mean = hr_mean_fields(
                state, self.terrain, rain_hr, float(self.large.winter[i]), self.params
            )
            noise = real.noise.step(real.rng)
            hours = float((self.times[i] - self.times[0]) / np.timedelta64(1, "h"))
            convective = real.cells.step(
                i, hours, self.large, mean["cell_rate"], state["kindex"], real.rng
            )
            if i < start:
                continue
            lr = lr_fields(state, self.terrain, rain_lr, self.params) if with_lr else None
            yield i, lr, hr_fields(mean, noise, convective, self.params)

"""Precipitation of the Alps world: linear orographic rain and stochastic convective cells.

Orographic rain follows the linear theory of Smith & Barstad (2004, J. Atmos. Sci. 61, 1377).
In Fourier space, for terrain h^(k, l), wind (U, V) and intrinsic frequency sigma = U k + V l,

    P^(k, l) = C_w i sigma h^ / ((1 - i m H_w) (1 + i sigma tau_c) (1 + i sigma tau_f)),
    m = sqrt((N_m^2 - sigma^2) / sigma^2 (k^2 + l^2)),

with m taking the sign of sigma where sigma^2 < N_m^2 (vertically propagating) and m = i |m|
where sigma^2 > N_m^2 (evanescent). C_w = rho_sref Gamma_m / gamma is the uplift sensitivity,
H_w = R_v T^2 / (L gamma) the water-vapour scale height; total rain is max(P + P_inf, 0).

Convective cells are born at random (a Poisson process whose rate grows with the K-index, over
ridges and in the afternoon), have heavy-tailed (log-normal) peak intensities, Gaussian shapes,
lifetimes of hours, and drift with the 700 hPa wind.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from finescale.data.world.largescale import (
    CP,
    LV,
    R_D,
    R_V,
    G,
    LargeScale,
    saturation_vapour_pressure,
)
from finescale.data.world.params import WorldParams
from finescale.data.world.terrain import Grid

GAMMA_ENV = 6.5e-3  # K/m, environmental lapse rate in C_w and H_w


def moist_adiabatic_lapse_rate(t: float, p_pa: float = 100000.0) -> float:
    """Saturated adiabatic lapse rate (K/m) at temperature ``t`` (K) and pressure ``p_pa``."""
    es = saturation_vapour_pressure(np.asarray(t))
    r = 0.622 * es / (p_pa - es)
    return float(G * (1 + LV * r / (R_D * t)) / (CP + LV**2 * r * 0.622 / (R_D * t**2)))


class OrographicRain:
    """Smith-Barstad rain rate (mm/h) over a fixed terrain, for a uniform wind and temperature."""

    def __init__(self, orog: np.ndarray, grid: Grid, params: WorldParams):
        self.shape = orog.shape
        pad = (orog.shape[0] // 2, orog.shape[1] // 2)
        # ramp the terrain to sea level in the padding so the FFT sees no cliff at the edges
        h = np.pad(orog, ((pad[0], pad[0]), (pad[1], pad[1])), mode="linear_ramp", end_values=0.0)
        self.pad = pad
        self.padded = h.shape
        # the transfer function is Hermitian (T(-k) = conj T(k)), so half the plane suffices
        self.h_hat = np.fft.rfft2(h)
        self.k = 2 * np.pi * np.fft.rfftfreq(h.shape[1], d=grid.dx_km * 1000.0)[None, :]
        self.l = 2 * np.pi * np.fft.fftfreq(h.shape[0], d=grid.dy_km * 1000.0)[:, None]
        self.k2 = self.k**2 + self.l**2
        self.params = params

    def rate(self, u: float, v: float, t_surface: float) -> np.ndarray:
        """Orographic rain rate (mm/h, may be negative in the lee) for wind (u, v) m/s and
        surface T (K)."""
        p = self.params
        sigma = u * self.k + v * self.l
        n2 = p.moist_stability**2
        with np.errstate(divide="ignore", invalid="ignore"):
            m2 = (n2 - sigma**2) / sigma**2 * self.k2
            m = np.where(m2 >= 0, np.sign(sigma) * np.sqrt(np.abs(m2)), 1j * np.sqrt(np.abs(m2)))
        m = np.where(sigma == 0, 0.0, m)
        rho_s = saturation_vapour_pressure(np.asarray(t_surface)) / (R_V * t_surface)
        c_w = rho_s * moist_adiabatic_lapse_rate(t_surface) / GAMMA_ENV
        h_w = R_V * t_surface**2 / (LV * GAMMA_ENV)
        transfer = (
            c_w
            * 1j
            * sigma
            / (
                (1 - 1j * m * h_w)
                * (1 + 1j * sigma * p.conversion_time_s)
                * (1 + 1j * sigma * p.fallout_time_s)
            )
        )
        rain = np.fft.irfft2(transfer * self.h_hat, s=self.padded)  # kg m-2 s-1
        py, px = self.pad
        return 3600.0 * rain[py : py + self.shape[0], px : px + self.shape[1]]


def background_rate(rh: np.ndarray, params: WorldParams) -> np.ndarray:
    """Synoptic (non-orographic) rain rate P_inf (mm/h) from the 850 hPa relative humidity."""
    return params.background_rate * np.clip((rh - 0.8) / 0.2, 0.0, 1.0) ** 1.5


def moisture_factor(rh: np.ndarray) -> np.ndarray:
    """Fraction of the saturated Smith-Barstad rain realised at relative humidity ``rh``."""
    return np.clip((rh - 0.6) / 0.3, 0.0, 1.0)


def cell_birth_rate(
    kindex: np.ndarray, ridge: np.ndarray, afternoon: np.ndarray, params: WorldParams
) -> np.ndarray:
    """Convective cell births per km^2 per hour."""
    instability = 1.0 / (1.0 + np.exp(-(kindex - params.cell_kindex_threshold) / 3.0))
    triggering = 1.0 + 1.5 * np.tanh(np.maximum(ridge, 0.0) / 300.0)
    return params.cell_rate * instability * triggering * (0.3 + 0.7 * afternoon)


def intensity_boost(kindex: np.ndarray, params: WorldParams) -> np.ndarray:
    """Cells are stronger in more unstable air."""
    return 1.0 + 0.1 * np.maximum(kindex - params.cell_kindex_threshold, 0.0)


def expected_cell_rain(
    birth_rate: np.ndarray, kindex: np.ndarray, params: WorldParams
) -> np.ndarray:
    """Mean convective rain rate (mm/h) implied by a birth rate: what a convection scheme would
    give.

    E[rate] = birth rate x E[peak] x E[integral of sin(pi a / L) over the life] x E[2 pi r^2].
    """
    mean_peak = params.cell_intensity_median * np.exp(params.cell_intensity_log_std**2 / 2.0)
    lifetime = _mean_truncated_lifetime(params)
    r0, r1 = params.cell_radius_km
    mean_area = 2 * np.pi * (r0**2 + r0 * r1 + r1**2) / 3.0
    return (
        birth_rate
        * mean_peak
        * intensity_boost(kindex, params)
        * (2.0 / np.pi)
        * lifetime
        * mean_area
    )


def _mean_truncated_lifetime(params: WorldParams) -> float:
    """Mean of an exponential lifetime truncated to [0.5 h, cell_lifetime_max_h]."""
    lam = 1.0 / params.cell_lifetime_h
    a, b = 0.5, params.cell_lifetime_max_h
    za, zb = np.exp(-lam * a), np.exp(-lam * b)
    return float(((a + 1 / lam) * za - (b + 1 / lam) * zb) / (za - zb))


@dataclass
class Cells:
    """The active convective cells: positions (km), birth times (h), lifetimes (h), peaks (mm/h),
    radii (km)."""

    x: np.ndarray
    y: np.ndarray
    born: np.ndarray
    life: np.ndarray
    peak: np.ndarray
    radius: np.ndarray

    @classmethod
    def empty(cls) -> Cells:
        return cls(*(np.empty(0) for _ in range(6)))

    def keep(self, mask: np.ndarray) -> Cells:
        return Cells(
            self.x[mask],
            self.y[mask],
            self.born[mask],
            self.life[mask],
            self.peak[mask],
            self.radius[mask],
        )

    def extend(self, other: Cells) -> Cells:
        return Cells(*(np.concatenate([a, b]) for a, b in zip(self.astuple(), other.astuple())))

    def astuple(self) -> tuple[np.ndarray, ...]:
        return self.x, self.y, self.born, self.life, self.peak, self.radius


class ConvectiveCells:
    """The cell process on the HR grid; one instance per realisation (truth or oracle member)."""

    def __init__(self, grid: Grid, params: WorldParams):
        self.grid = grid
        self.params = params
        self.cells = Cells.empty()
        self.cell_area = grid.dx_km * grid.dy_km

    def _births(
        self, hour: float, rate: np.ndarray, kindex: np.ndarray, rng: np.random.Generator
    ) -> Cells:
        """New cells born during the hour before ``hour``, by thinning a homogeneous Poisson
        process."""
        p, grid = self.params, self.grid
        rate_max = float(rate.max())
        if rate_max <= 0:
            return Cells.empty()
        n = rng.poisson(rate_max * self.cell_area * rate.size)
        iy, ix = rng.integers(0, rate.shape[0], n), rng.integers(0, rate.shape[1], n)
        accept = rng.uniform(size=n) * rate_max < rate[iy, ix]
        iy, ix = iy[accept], ix[accept]
        m = iy.size
        x = grid.x[ix] + (rng.uniform(size=m) - 0.5) * grid.dx_km
        y = grid.y[iy] + (rng.uniform(size=m) - 0.5) * grid.dy_km
        lam = 1.0 / p.cell_lifetime_h
        # truncated exponential lifetime by inversion
        za, zb = np.exp(-lam * 0.5), np.exp(-lam * p.cell_lifetime_max_h)
        life = -np.log(za - rng.uniform(size=m) * (za - zb)) / lam
        peak = p.cell_intensity_median * np.exp(p.cell_intensity_log_std * rng.standard_normal(m))
        peak *= intensity_boost(kindex[iy, ix], p)
        radius = rng.uniform(p.cell_radius_km[0], p.cell_radius_km[1], m)
        born = hour - rng.uniform(size=m)
        return Cells(x, y, born, life, peak, radius)

    def step(
        self,
        i: int,
        hour: float,
        large: LargeScale,
        rate: np.ndarray,
        kindex: np.ndarray,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """Advance to ``hour`` (time index ``i``): drift, age, birth; return the cell rain rate
        (mm/h, (ny, nx))."""
        cells = self.cells
        if cells.x.size:
            u, v = large.wind_700_at(i, cells.x, cells.y)
            cells.x = cells.x + 3.6 * u  # one hour at u m/s, in km
            cells.y = cells.y + 3.6 * v
        cells = cells.extend(self._births(hour, rate, kindex, rng))
        g = self.grid
        margin = 3 * self.params.cell_radius_km[1]
        alive = (hour - cells.born) < cells.life
        inside = (cells.x > g.x[0] - margin) & (cells.x < g.x[-1] + margin)
        inside &= (cells.y > g.y[0] - margin) & (cells.y < g.y[-1] + margin)
        self.cells = cells = cells.keep(alive & inside)
        return self.render(cells, hour)

    def render(self, cells: Cells, hour: float) -> np.ndarray:
        """Sum of Gaussian cells on the grid; separable, so one (ny x n) @ (n x nx) product."""
        g = self.grid
        if cells.x.size == 0:
            return np.zeros(g.shape)
        age = hour - cells.born
        strength = cells.peak * np.sin(np.pi * np.clip(age / cells.life, 0.0, 1.0))
        gy = np.exp(-0.5 * ((g.y[:, None] - cells.y[None, :]) / cells.radius[None, :]) ** 2)
        gx = np.exp(-0.5 * ((g.x[:, None] - cells.x[None, :]) / cells.radius[None, :]) ** 2)
        return (gy * strength[None, :]) @ gx.T

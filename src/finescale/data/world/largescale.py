"""The large-scale state of the Alps world: smooth fields advected by an evolving mean flow.

Each anomaly field is a sum of Fourier modes with wavelengths of 500-3000 km,

    f(x, y, t) = Re sum_j c_j(t) exp(i k_j . (r - D(t))),

whose complex amplitudes c_j(t) are AR(1) processes (e-folding ``anomaly_timescale_h``) and whose
pattern is carried by the displacement D(t) = integral of the 700 hPa mean wind. Winds come from
a streamfunction (u = -d psi/dy, v = d psi/dx) plus a mean flow with seasonal westerlies and slow
fluctuations. Temperatures, humidities and the K-index follow on three pressure levels.

Because the fields are analytic they can be evaluated exactly on any grid or at any point; on
the world's regular grids exp(i k.r) separates into a row and a column factor, so a field costs
one small complex matrix product.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.signal import lfilter

from finescale.data.world.params import WorldParams
from finescale.data.world.terrain import Grid

LEVELS = (850, 700, 500)  # hPa
LEVEL_HEIGHT_M = {850: 1460.0, 700: 3010.0, 500: 5570.0}  # standard-atmosphere heights
EDDY_GROWTH = {850: 1.0, 700: 1.3, 500: 1.7}  # eddy winds grow with height
G = 9.81
R_D, R_V, CP, LV = 287.0, 461.5, 1004.0, 2.5e6


def saturation_vapour_pressure(t: np.ndarray) -> np.ndarray:
    """Bolton (1980) saturation vapour pressure over water (Pa) at temperature ``t`` (K)."""
    return 611.2 * np.exp(17.67 * (t - 273.15) / (t - 29.65))


def specific_humidity(rh: np.ndarray, t: np.ndarray, p_pa: float) -> np.ndarray:
    """Specific humidity (kg/kg) from relative humidity (0-1), temperature (K) and pressure (Pa)."""
    e = rh * saturation_vapour_pressure(t)
    return 0.622 * e / (p_pa - 0.378 * e)


def dewpoint(q: np.ndarray, p_pa: float) -> np.ndarray:
    """Dew point (K) from specific humidity (kg/kg) and pressure (Pa), inverting Bolton's
    formula."""
    e = np.maximum(q * p_pa / (0.622 + 0.378 * q), 1e-3)
    ln = np.log(e / 611.2)
    return 273.15 + 243.5 * ln / (17.67 - ln)


def k_index(
    t850: np.ndarray, t700: np.ndarray, t500: np.ndarray, td850: np.ndarray, td700: np.ndarray
) -> np.ndarray:
    """George's K-index (K): (T850 - T500) + Td850[degC] - (T700 - Td700). Above ~30 thunderstorms
    are likely."""
    return (t850 - t500) + (td850 - 273.15) - (t700 - td700)


def ar1(noise: np.ndarray, phi: float) -> np.ndarray:
    """Stationary AR(1) along axis 0: x_t = phi x_{t-1} + sqrt(1 - phi^2) e_t,
    so Var(x) = Var(e)."""
    b = np.sqrt(1.0 - phi**2)
    # x_0 = e_0 starts the series in its stationary distribution; zi carries phi * x_0 into x_1
    out, _ = lfilter([b], [1.0, -phi], noise[1:], axis=0, zi=phi * noise[:1])
    return np.concatenate([noise[:1], out], axis=0)


@dataclass
class Modes:
    """A set of Fourier modes: wavevectors (rad/km), amplitude series c (n_times, n_modes) and
    E|c_j|^2."""

    kx: np.ndarray
    ky: np.ndarray
    c: np.ndarray
    var: np.ndarray
    _basis_cache: dict[int, tuple[Grid, np.ndarray, np.ndarray]] = field(
        default_factory=dict, repr=False
    )

    def scaled(self, factor: float) -> Modes:
        return Modes(self.kx, self.ky, self.c * factor, self.var * factor**2)

    def on_grid(
        self, i: int, grid: Grid, shift: tuple[float, float], factor: np.ndarray | None = None
    ) -> np.ndarray:
        """Re sum_j factor_j c_j exp(i k_j.(r - shift)) on ``grid`` at time index ``i`` (ny, nx)."""
        c = self.c[i] * np.exp(-1j * (self.kx * shift[0] + self.ky * shift[1]))
        if factor is not None:
            c = c * factor
        rows, cols = self._basis(grid)
        return ((rows * c) @ cols).real

    def _basis(self, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
        """exp(i ky y) (ny, n) and exp(i kx x).T (n, nx), cached per grid: they never change."""
        if (
            id(grid) not in self._basis_cache
        ):  # the grid is kept in the entry, so its id stays unique
            rows = np.exp(1j * np.outer(grid.y, self.ky))
            cols = np.exp(1j * np.outer(grid.x, self.kx)).T.copy()
            self._basis_cache[id(grid)] = (grid, rows, cols)
        _, rows, cols = self._basis_cache[id(grid)]
        return rows, cols

    def at_points(
        self,
        i: int,
        x: np.ndarray,
        y: np.ndarray,
        shift: tuple[float, float],
        factor: np.ndarray | None = None,
    ) -> np.ndarray:
        """The same sum at points (x, y) in km."""
        c = self.c[i] * np.exp(-1j * (self.kx * shift[0] + self.ky * shift[1]))
        if factor is not None:
            c = c * factor
        return (np.exp(1j * (np.outer(x, self.kx) + np.outer(y, self.ky))) @ c).real


def _modes(
    params: WorldParams, n_times: int, rng: np.random.Generator, weights_power: float = 1.0
) -> Modes:
    """Random wavevectors (log-uniform wavelengths, uniform directions) with unit-variance AR(1)
    amplitudes."""
    n = params.n_modes
    lo, hi = np.log(params.wavelength_km[0]), np.log(params.wavelength_km[1])
    wavelength = np.exp(rng.uniform(lo, hi, n))
    angle = rng.uniform(0.0, 2 * np.pi, n)
    k = 2 * np.pi / wavelength
    w = wavelength**weights_power  # more variance at larger scales
    s = w / np.sqrt(np.sum(w**2) / 2.0)  # Var(Re sum c e^{i theta}) = sum s^2 / 2 = 1
    phi = np.exp(-1.0 / params.anomaly_timescale_h)
    noise = (rng.standard_normal((n_times, n)) + 1j * rng.standard_normal((n_times, n))) / np.sqrt(
        2.0
    )
    return Modes(kx=k * np.cos(angle), ky=k * np.sin(angle), c=ar1(noise, phi) * s, var=s**2)


class LargeScale:
    """The large-scale trajectory of a world: cheap to rebuild, exact at any time index and
    point."""

    def __init__(self, params: WorldParams, times: np.ndarray, rng: np.random.Generator):
        self.params = params
        self.times = times
        n = times.size
        psi = _modes(params, n, rng)
        # Var(u) = Var(d psi/dy) = sum ky^2 var / 2, on average sum |k|^2 var / 4 over directions:
        # scale psi so that each eddy wind component at 850 hPa has std eddy_wind_std
        wind_var = np.sum((psi.kx**2 + psi.ky**2) * psi.var) / 4.0
        self.psi = psi.scaled(params.eddy_wind_std / np.sqrt(wind_var))
        self.temp = _modes(params, n, rng)
        self.lapse = _modes(params, n, rng)
        self.humid = _modes(params, n, rng)

        hours = (times - times[0]) / np.timedelta64(1, "h")
        doy = (times - times.astype("datetime64[Y]")) / np.timedelta64(1, "D")
        self.hour_utc = (times - times.astype("datetime64[D]")) / np.timedelta64(1, "h")
        self.winter = 0.5 * (
            1.0 + np.cos(2 * np.pi * (doy - 20.0) / 365.25)
        )  # 1 late January, 0 late July
        phi = np.exp(-1.0 / params.mean_wind_timescale_h)
        fluct = ar1(rng.standard_normal((n, 2)), phi) * params.mean_wind_std
        self.u850 = (
            params.mean_wind_850 + params.mean_wind_seasonal * (2 * self.winter - 1) + fluct[:, 0]
        )
        self.v850 = fluct[:, 1] * 0.75
        self.u700 = self.u850 + params.shear_700 * (0.7 + 0.6 * self.winter)
        self.v700 = self.v850 * 1.1
        self.u500 = self.u850 + params.shear_500 * (0.7 + 0.6 * self.winter)
        self.v500 = self.v850 * 1.2
        step_km = 3.6 * np.diff(hours, prepend=hours[0])  # m/s * 3600 s -> km
        self.shift_x = np.cumsum(self.u700 * step_km)
        self.shift_y = np.cumsum(self.v700 * step_km)

    def shift(self, i: int) -> tuple[float, float]:
        return float(self.shift_x[i]), float(self.shift_y[i])

    def wind_700_at(self, i: int, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """700 hPa wind (m/s) at points (x, y) in km: steers convective cells."""
        s, g = self.shift(i), EDDY_GROWTH[700]
        u = self.u700[i] + g * self.psi.at_points(i, x, y, s, factor=-1j * self.psi.ky)
        v = self.v700[i] + g * self.psi.at_points(i, x, y, s, factor=1j * self.psi.kx)
        return u, v

    def state(self, i: int, grid: Grid) -> dict[str, np.ndarray]:
        """Every large-scale field at time index ``i`` on ``grid``, (ny, nx) each.

        Keys: ``u{L}``, ``v{L}`` (m/s), ``t{L}`` (K), ``rh{L}`` (0-1), ``q{L}`` (kg/kg) for L in
        850, 700, 500; ``kindex`` (K); ``t_sl`` (K, 2 m temperature reduced to sea level,
        with the diurnal cycle); ``night`` and ``afternoon`` (0-1, from local solar time).
        """
        p, s = self.params, self.shift(i)
        lat = grid.lat[:, None]
        u_eddy = self.psi.on_grid(i, grid, s, factor=-1j * self.psi.ky)
        v_eddy = self.psi.on_grid(i, grid, s, factor=1j * self.psi.kx)
        t_anom = p.t_anomaly_std * self.temp.on_grid(i, grid, s)
        lapse = p.lapse_env + p.lapse_anomaly_std * self.lapse.on_grid(i, grid, s)
        h_anom = p.rh_logit_std * self.humid.on_grid(i, grid, s)

        winter = self.winter[i]
        out: dict[str, np.ndarray] = {}
        t850 = p.t850_mean + p.t850_seasonal * (1 - 2 * winter) - 0.6 * (lat - 46.0) + t_anom
        dz1 = (LEVEL_HEIGHT_M[700] - LEVEL_HEIGHT_M[850]) / 1000.0
        dz2 = (LEVEL_HEIGHT_M[500] - LEVEL_HEIGHT_M[700]) / 1000.0
        temps = {850: t850, 700: t850 - lapse * dz1}
        temps[500] = temps[700] - (lapse + 0.8) * dz2
        for k, level in enumerate(LEVELS):
            g = EDDY_GROWTH[level]
            out[f"u{level}"] = getattr(self, f"u{level}")[i] + g * u_eddy
            out[f"v{level}"] = getattr(self, f"v{level}")[i] + g * v_eddy
            out[f"t{level}"] = temps[level]
            logit = p.rh_logit_mean - 0.5 * k + (1.0 - 0.1 * k) * h_anom
            out[f"rh{level}"] = 0.05 + 0.93 / (1.0 + np.exp(-logit))
            out[f"q{level}"] = specific_humidity(out[f"rh{level}"], temps[level], level * 100.0)
        td850, td700 = dewpoint(out["q850"], 85000.0), dewpoint(out["q700"], 70000.0)
        out["kindex"] = k_index(temps[850], temps[700], temps[500], td850, td700)

        local_hour = (self.hour_utc[i] + grid.lon[None, :] / 15.0) % 24.0
        cycle = np.cos(2 * np.pi * (local_hour - 15.0) / 24.0)  # +1 at 15 h local, -1 at 3 h
        amplitude = p.diurnal_amplitude[0] * winter + p.diurnal_amplitude[1] * (1 - winter)
        out["t_sl"] = t850 + p.lapse_rate * LEVEL_HEIGHT_M[850] / 1000.0 + amplitude * cycle
        out["night"] = np.broadcast_to(np.clip(-cycle, 0.0, 1.0), t850.shape)
        out["afternoon"] = np.broadcast_to(np.clip(cycle, 0.0, 1.0), t850.shape)
        return out

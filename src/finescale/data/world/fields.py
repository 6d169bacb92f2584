"""From the large-scale state to LR inputs and HR targets (pure functions of arrays).

LR fields depend on the large-scale state and LR terrain only. HR fields are a deterministic
function of the large-scale state and HR terrain plus random small-scale components; that split
is what makes the oracle exact.
"""

from __future__ import annotations

import numpy as np

from finescale.data.world.largescale import LEVELS
from finescale.data.world.params import WorldParams
from finescale.data.world.precipitation import (
    background_rate,
    cell_birth_rate,
    expected_cell_rain,
    moisture_factor,
)
from finescale.data.world.terrain import Terrain, block_mean

HR_VARIABLES = ("t2m", "u10", "v10", "tp")
N_NOISE = 4  # independent small-scale fields: t2m, u10, v10, stratiform rain


def lr_fields(
    state: dict[str, np.ndarray], terrain: Terrain, orographic_lr: np.ndarray, params: WorldParams
) -> dict[str, np.ndarray]:
    """LR inputs on the LR grid: the state block-averaged plus the LR model's own diagnostics.

    ``orographic_lr`` is the Smith-Barstad rate (mm/h) over the LR terrain. The LR precipitation
    is a coarse parameterisation: smooth orographic rain, the mean convective rain scaled by
    ``lr_convective_factor`` (so peaks are underestimated) and a drizzle in moist air.
    """
    r, p = terrain.ratio, params
    out = {
        f"{name}{level}": block_mean(state[f"{name}{level}"], r)
        for name in "tuvq"
        for level in LEVELS
    }
    out["kindex"] = block_mean(state["kindex"], r)
    h = terrain.orog_lr
    out["t2m"] = block_mean(state["t_sl"], r) - p.lapse_rate * h / 1000.0
    friction = p.surface_wind_factor * (1.0 - 0.15 * h / 1000.0)
    out["u10"] = friction * out["u850"]
    out["v10"] = friction * out["v850"]
    rh = block_mean(state["rh850"], r)
    birth = cell_birth_rate(state["kindex"], terrain.ridge, state["afternoon"], p)
    convective = block_mean(expected_cell_rain(birth, state["kindex"], p), r)
    stratiform = np.maximum(orographic_lr * moisture_factor(rh) + background_rate(rh, p), 0.0)
    out["tp"] = stratiform + p.lr_convective_factor * convective + p.lr_drizzle * (rh > 0.75)
    return out


def hr_mean_fields(
    state: dict[str, np.ndarray],
    terrain: Terrain,
    orographic_hr: np.ndarray,
    winter: float,
    params: WorldParams,
) -> dict[str, np.ndarray]:
    """The deterministic part of the HR fields on the HR grid.

    Keys: ``t2m`` (K: lapse rate over the HR terrain and valley cold pools), ``u10``, ``v10``
    (m/s: speed-up over ridges, deflection along steep slopes), ``stratiform`` (mm/h:
    Smith-Barstad plus background) and ``cell_rate`` (convective births per km^2 per hour).
    """
    p = params
    speed850 = np.hypot(state["u850"], state["v850"])
    calm = np.exp(-speed850 / p.cold_pool_wind)
    cold_pool = (
        p.cold_pool_k_per_km
        * terrain.valley_depth
        / 1000.0
        * calm
        * state["night"]
        * (0.6 + 0.4 * winter)
    )
    t2m = state["t_sl"] - p.lapse_rate * terrain.orog / 1000.0 - cold_pool

    u, v = state["u850"], state["v850"]
    slope = np.hypot(terrain.slope_x, terrain.slope_y)
    with np.errstate(invalid="ignore", divide="ignore"):
        nx = np.where(slope > 0, terrain.slope_x / slope, 0.0)
        ny = np.where(slope > 0, terrain.slope_y / slope, 0.0)
    upslope = (u * nx + v * ny) * p.deflection * np.minimum(slope / 0.15, 1.0)
    speedup = p.surface_wind_factor * (1.0 + p.ridge_speedup * np.tanh(terrain.ridge_wind / 400.0))
    rh = state["rh850"]
    stratiform = np.maximum(orographic_hr * moisture_factor(rh) + background_rate(rh, p), 0.0)
    return {
        "t2m": t2m,
        "u10": speedup * (u - upslope * nx),
        "v10": speedup * (v - upslope * ny),
        "stratiform": stratiform,
        "cell_rate": cell_birth_rate(state["kindex"], terrain.ridge, state["afternoon"], p),
    }


def hr_fields(
    mean: dict[str, np.ndarray], noise: np.ndarray, convective: np.ndarray, params: WorldParams
) -> dict[str, np.ndarray]:
    """HR targets from the deterministic part, unit-variance ``noise`` (4, ny, nx) and cell rain
    (mm/h)."""
    p = params
    gust = p.wind_noise_std[0] + p.wind_noise_std[1] * np.hypot(mean["u10"], mean["v10"])
    s = p.stratiform_noise_std
    return {
        "t2m": mean["t2m"] + p.t2m_noise_std * noise[0],
        "u10": mean["u10"] + gust * noise[1],
        "v10": mean["v10"] + gust * noise[2],
        "tp": mean["stratiform"] * np.exp(s * noise[3] - s**2 / 2.0) + convective,
    }

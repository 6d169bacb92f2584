"""The terrain's slope, which the flow goes up: the forcing of orographic rain.

In the linear theory of orographic precipitation (Smith & Barstad 2004) the condensation source
is proportional to the upslope wind w = U . grad(h): the large-scale wind U pushed up the terrain
h. A network given h and U as separate channels must learn their product; given w it need not.
"""

from __future__ import annotations

import numpy as np

EARTH_RADIUS_M = 6_371_000.0


def terrain_slope(orog: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """(2, H, W) float32: the eastward and northward gradients of ``orog`` (H, W; m) in m/m on a
    grid with 2-D ``lat``, ``lon`` (degrees), regular or not.

    Centred differences along the grid's rows and columns are turned into east/north gradients
    through the grid's local Jacobian (metres east and north per grid step), so a grid that runs
    north to south, or is rotated, gives the same slope. Missing heights count as sea level.
    """
    h = np.nan_to_num(np.asarray(orog, dtype=np.float64), nan=0.0)
    lat_r, lon_r = np.deg2rad(np.asarray(lat, np.float64)), np.deg2rad(np.asarray(lon, np.float64))
    dh = np.stack(np.gradient(h))  # (2, H, W): per row step, per column step
    # metres east (e) and north (n) per row step (axis 0) and per column step (axis 1)
    dlon = np.stack(np.gradient(np.unwrap(np.unwrap(lon_r, axis=1), axis=0)))  # across 180 E
    dlat = np.stack(np.gradient(lat_r))
    e = EARTH_RADIUS_M * np.cos(lat_r) * dlon
    n = EARTH_RADIUS_M * dlat
    # dh/d(row, col) = J^T (dh/de, dh/dn) with J = [[e_row, e_col], [n_row, n_col]]
    det = e[0] * n[1] - e[1] * n[0]
    if np.any(det == 0.0):
        raise ValueError("terrain slope: the grid's lat/lon do not span an area at every point")
    dh_de = (n[1] * dh[0] - n[0] * dh[1]) / det
    dh_dn = (e[0] * dh[1] - e[1] * dh[0]) / det
    return np.stack([dh_de, dh_dn]).astype(np.float32)

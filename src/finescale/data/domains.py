"""Domains of LR and HR grids compared on the sphere, for the alignment check.

The cell-edge extent of a grid of centres (:func:`extent`); whether one extent lies inside
another and how far their edges are apart, longitudes compared on the circle
(:func:`extent_within`, :func:`extent_offset`); where the LR points sit on an HR grid nested as
points (:func:`node_index`) and the centres of HR blocks nested as cells (:func:`block_mean`).
Apart from :mod:`finescale.data.alignment`, which decides with them, as plain geometry on arrays
of degrees.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from finescale.data import grids

__all__ = [
    "block_mean",
    "extent",
    "extent_offset",
    "extent_text",
    "extent_within",
    "node_index",
]


def extent(lat: np.ndarray, lon: np.ndarray) -> tuple[float, float, float, float]:
    """Cell-edge extent (south, north, west, east) in degrees of a (y, x) grid of centres.

    The cell corners are found in index space, half a cell beyond the outermost centres (by
    linear extrapolation), so a regular grid gives its centres +- half a spacing and nested
    curvilinear grids give the same edges at both resolutions. Latitude edges are clipped to
    +-90 (the cell of a pole-inclusive grid ends at the pole).
    """
    lon = np.unwrap(np.unwrap(lon, period=360.0, axis=1), period=360.0, axis=0)
    corners = [_corners(v) for v in (lat, lon)]
    corners[0] = np.clip(corners[0], -90.0, 90.0)
    return (
        float(np.nanmin(corners[0])),
        float(np.nanmax(corners[0])),
        float(np.nanmin(corners[1])),
        float(np.nanmax(corners[1])),
    )


def _corners(v: np.ndarray) -> np.ndarray:
    """(y + 1, x + 1) corner values of a (y, x) field of cell centres (bilinear in index space)."""
    for axis in (0, 1):
        first = 2 * np.take(v, [0], axis) - np.take(v, [1], axis)
        last = 2 * np.take(v, [-1], axis) - np.take(v, [-2], axis)
        v = np.concatenate([first, v, last], axis=axis)
    return (v[:-1, :-1] + v[1:, :-1] + v[:-1, 1:] + v[1:, 1:]) / 4


def _lon_covers(inner: Sequence[float], outer: Sequence[float], tol: float) -> bool:
    """Whether the longitude interval (west, east) ``inner`` lies inside ``outer`` on the circle.

    Degrees, any convention (0..360, -180..180, unwrapped): a global ``outer`` covers every
    longitude; otherwise ``inner`` is moved by whole turns to start at or east of ``outer``'s
    west edge (within ``tol``) before its east edge is compared.
    """
    if outer[1] - outer[0] >= 360.0 - tol:
        return True
    west = outer[0] - tol + (inner[0] - outer[0] + tol) % 360.0
    return west + (inner[1] - inner[0]) <= outer[1] + tol


def extent_within(inner: tuple[float, ...], outer: tuple[float, ...], tol: float) -> bool:
    """Whether extent ``inner`` (lat0, lat1, lon0, lon1; degrees) lies inside ``outer`` within
    ``tol``; longitudes are compared on the circle (see :func:`_lon_covers`)."""
    return (
        inner[0] >= outer[0] - tol
        and inner[1] <= outer[1] + tol
        and _lon_covers(inner[2:], outer[2:], tol)
    )


def extent_offset(a: Sequence[float], b: Sequence[float], tol: float) -> float:
    """Largest difference (degrees) between the edges of extents ``a`` and ``b``.

    Longitude edges are compared on the circle, and two global grids have the same longitudes.
    """
    lat = max(abs(a[0] - b[0]), abs(a[1] - b[1]))
    if min(a[3] - a[2], b[3] - b[2]) >= 360.0 - tol:
        return lat
    lon = max(abs(float(grids.wrap180(a[i] - b[i]))) for i in (2, 3))
    return max(lat, lon)


def node_index(
    lr_lat: np.ndarray,
    lr_lon: np.ndarray,
    hr_lat: np.ndarray,
    hr_lon: np.ndarray,
    r: int,
    periodic: bool,
) -> tuple[np.ndarray, np.ndarray] | None:
    """HR rows and columns of the LR points when the grids are nested as points, else None.

    Grids nested as points (pole-inclusive grids, e.g. 73 x 144 at 2.5° and 19 x 36 at 10°)
    have ``(n_hr - 1) = r (n_lr - 1)`` along a regional axis and ``n_hr = r n_lr`` along a
    periodic longitude, where the LR columns may start at any HR column (0..360 vs -180..180).
    Returns (rows (y_lr,), columns (x_lr,)) for the caller to check positions against.
    """
    (my, mx), (ny, nx) = lr_lat.shape, hr_lat.shape
    if r < 2 or (ny - 1) != r * (my - 1):  # ratio 1: the same grid, compared as cells
        return None
    rows = np.arange(my) * r
    if periodic and nx == r * mx:
        start = int(np.argmin(np.abs(grids.wrap180(hr_lon[0] - lr_lon[0, 0]))))
        return rows, (start + np.arange(mx) * r) % nx
    if (nx - 1) == r * (mx - 1):
        return rows, np.arange(mx) * r
    return None


def extent_text(e: Sequence[float]) -> str:
    return f"lat {e[0]:.3f}..{e[1]:.3f}, lon {e[2]:.3f}..{e[3]:.3f}"


def block_mean(values: np.ndarray, r: int) -> np.ndarray:
    ny, nx = values.shape
    return values.reshape(ny // r, r, nx // r, r).mean(axis=(1, 3))

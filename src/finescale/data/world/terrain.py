"""Terrain of the Alps world: the DEM, the HR and LR grids, and derived fields.

The world lives on a local tangent plane: x (km, east) and y (km, north) are linear in lon and
lat, which is accurate to a few per cent over the 4 x 10 degree Alpine domain and keeps the
grids separable (large-scale fields become small matrix products).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from scipy import ndimage

KM_PER_DEG_LAT = 110.57
KM_PER_DEG_LON_EQ = 111.32


class OrographyError(ValueError):
    """A DEM file that cannot be used; the message names the file and the problem."""


def default_dem_path() -> Path:
    """The DEM shipped with finescale (NOAA GLOBE 30", public domain)."""
    return Path(str(resources.files("finescale") / "assets" / "globe_alps_30s.npz"))


@dataclass(frozen=True)
class Dem:
    """A regular lat-lon DEM with rows south to north. ``elevation`` in metres, (n_lat, n_lon)."""

    elevation: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    provenance: str

    @property
    def resolution(self) -> float:
        return float(abs(self.lat[1] - self.lat[0]))


def load_dem(path: str | Path | None = None) -> Dem:
    """Read a DEM ``.npz`` with keys ``elevation`` (m), ``lat``, ``lon`` (cell centres, degrees).

    Rows may run north to south or south to north; they are returned south to north.
    """
    path = Path(path) if path is not None else default_dem_path()
    if not path.is_file():
        raise OrographyError(f"{path}: DEM file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = {"elevation", "lat", "lon"} - set(data.files)
            if missing:
                raise OrographyError(
                    f"{path}: DEM lacks {sorted(missing)}; it has {sorted(data.files)} "
                    "(needs 'elevation' (lat, lon) in metres and 1-D 'lat', 'lon')"
                )
            elevation = np.asarray(data["elevation"], dtype=np.float64)
            lat = np.asarray(data["lat"], dtype=np.float64)
            lon = np.asarray(data["lon"], dtype=np.float64)
            provenance = str(data["provenance"]) if "provenance" in data.files else "unknown"
    except OrographyError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise OrographyError(f"{path}: not a readable .npz DEM ({exc})") from None
    if elevation.ndim != 2 or elevation.shape != (lat.size, lon.size):
        raise OrographyError(
            f"{path}: 'elevation' has shape {elevation.shape}, "
            f"expected (len(lat), len(lon)) = {(lat.size, lon.size)}"
        )
    for name, axis in (("lat", lat), ("lon", lon)):
        steps = np.diff(axis)
        if axis.size < 2 or not np.allclose(steps, steps[0], rtol=1e-3, atol=1e-9) or steps[0] == 0:
            raise OrographyError(f"{path}: '{name}' is not regularly spaced")
    if not np.isclose(abs(lat[1] - lat[0]), abs(lon[1] - lon[0]), rtol=1e-3):
        raise OrographyError(f"{path}: lat and lon spacings differ; a square-cell DEM is required")
    if not np.all(np.isfinite(elevation)):
        raise OrographyError(f"{path}: 'elevation' has NaN or Inf values")
    if lat[1] < lat[0]:
        lat, elevation = lat[::-1], elevation[::-1]
    if lon[1] < lon[0]:
        lon, elevation = lon[::-1], elevation[:, ::-1]
    return Dem(elevation=elevation, lat=lat, lon=lon, provenance=provenance)


@dataclass(frozen=True)
class Grid:
    """A regular lat-lon grid: 1-D cell-centre ``lat`` (south to north) and ``lon``; planar ``y``,
    ``x`` in km."""

    lat: np.ndarray
    lon: np.ndarray
    y: np.ndarray
    x: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.lat.size, self.lon.size

    @property
    def dx_km(self) -> float:
        return float(self.x[1] - self.x[0])

    @property
    def dy_km(self) -> float:
        return float(self.y[1] - self.y[0])


def make_grid(lat: np.ndarray, lon: np.ndarray, lat0: float, lon0: float) -> Grid:
    """Grid with planar coordinates relative to (lat0, lon0)."""
    y = (lat - lat0) * KM_PER_DEG_LAT
    x = (lon - lon0) * KM_PER_DEG_LON_EQ * np.cos(np.deg2rad(lat0))
    return Grid(lat=lat, lon=lon, y=y, x=x)


@dataclass(frozen=True)
class Terrain:
    """HR and LR grids with orography and the derived fields the physics uses (all (ny, nx))."""

    hr: Grid
    lr: Grid
    ratio: int
    orog: np.ndarray  # HR orography (m)
    lsm: np.ndarray  # HR land fraction (0..1)
    orog_lr: np.ndarray  # LR orography (m): block mean of the HR orography
    ridge: np.ndarray  # HR orography minus its smoothed version (m): > 0 ridges, < 0 valleys
    valley_depth: np.ndarray  # max(-ridge, 0) (m)
    # the wind feels the terrain smoothed over wind_scale_km: real 10 m winds are not white noise
    ridge_wind: np.ndarray  # as ridge, from the wind-smoothed orography (m)
    slope_x: np.ndarray  # d orog / dx of the wind-smoothed orography (m/m)
    slope_y: np.ndarray  # d orog / dy of the wind-smoothed orography (m/m)
    provenance: str


def build_terrain(
    dem: Dem,
    hr_resolution_deg: float,
    ratio: int,
    valley_scale_km: float,
    wind_scale_km: float = 5.0,
    lat_range: tuple[float, float] | None = None,
    lon_range: tuple[float, float] | None = None,
    where: str = "DEM",
) -> Terrain:
    """Block-average the DEM onto the HR grid, then the HR orography onto the LR grid.

    The domain is the DEM (or the sub-range) trimmed to a whole number of LR cells.
    """
    factor_f = hr_resolution_deg / dem.resolution
    factor = round(factor_f)
    if factor < 1 or abs(factor_f - factor) > 1e-3:
        raise OrographyError(
            f"{where}: HR resolution {hr_resolution_deg} deg is not a whole multiple of the DEM "
            f"spacing {dem.resolution:.6g} deg"
        )
    elevation, lat, lon = dem.elevation, dem.lat, dem.lon
    half = dem.resolution / 2
    if lat_range is not None:
        keep = (lat - half >= lat_range[0] - 1e-9) & (lat + half <= lat_range[1] + 1e-9)
        elevation, lat = elevation[keep], lat[keep]
    if lon_range is not None:
        keep = (lon - half >= lon_range[0] - 1e-9) & (lon + half <= lon_range[1] + 1e-9)
        elevation, lon = elevation[:, keep], lon[keep]
    block = factor * ratio
    ny_lr, nx_lr = lat.size // block, lon.size // block
    if ny_lr < 2 or nx_lr < 2:
        raise OrographyError(
            f"{where}: domain too small for {ratio}x{hr_resolution_deg} deg LR cells"
        )
    elevation = elevation[: ny_lr * block, : nx_lr * block]
    lat, lon = lat[: ny_lr * block], lon[: nx_lr * block]

    orog = block_mean(np.maximum(elevation, 0.0), factor)
    lsm = block_mean((elevation > 0).astype(np.float64), factor)
    lat_hr, lon_hr = lat.reshape(-1, factor).mean(1), lon.reshape(-1, factor).mean(1)
    lat_lr, lon_lr = lat_hr.reshape(-1, ratio).mean(1), lon_hr.reshape(-1, ratio).mean(1)
    lat0, lon0 = float(lat_hr.mean()), float(lon_hr.mean())
    hr = make_grid(lat_hr, lon_hr, lat0, lon0)
    lr = make_grid(lat_lr, lon_lr, lat0, lon0)

    valleys = ndimage.gaussian_filter(
        orog, (valley_scale_km / hr.dy_km, valley_scale_km / hr.dx_km), mode="nearest"
    )
    ridge = orog - valleys
    orog_wind = ndimage.gaussian_filter(
        orog, (wind_scale_km / hr.dy_km, wind_scale_km / hr.dx_km), mode="nearest"
    )
    slope_y, slope_x = np.gradient(orog_wind, hr.dy_km * 1000.0, hr.dx_km * 1000.0)
    return Terrain(
        hr=hr,
        lr=lr,
        ratio=ratio,
        orog=orog,
        lsm=lsm,
        orog_lr=block_mean(orog, ratio),
        ridge=ridge,
        valley_depth=np.maximum(-ridge, 0.0),
        ridge_wind=orog_wind - valleys,
        slope_x=slope_x,
        slope_y=slope_y,
        provenance=dem.provenance,
    )


def block_mean(a: np.ndarray, ratio: int) -> np.ndarray:
    """Block mean over the last two axes (HR -> LR on the world's exactly nested grids)."""
    *lead, ny, nx = a.shape
    return a.reshape(*lead, ny // ratio, ratio, nx // ratio, ratio).mean(axis=(-3, -1))

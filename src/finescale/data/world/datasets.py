"""The world's fields as labelled datasets: CF names and units of every variable, lat/lon
coordinates, the LR pressure levels and global attributes.

Apart from the model (:mod:`~finescale.data.world.model`), which produces plain arrays, and from
the writing (:mod:`~finescale.data.world.simulate`), which streams these datasets to Zarr.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from finescale.data.world.fields import HR_VARIABLES
from finescale.data.world.largescale import LEVELS
from finescale.data.world.model import World
from finescale.data.world.terrain import Grid, Terrain
from finescale.version import __version__

ATTRS: dict[str, dict[str, str]] = {
    "t2m": {"units": "K", "long_name": "2 metre temperature", "standard_name": "air_temperature"},
    "u10": {
        "units": "m s-1",
        "long_name": "10 metre eastward wind",
        "standard_name": "eastward_wind",
    },
    "v10": {
        "units": "m s-1",
        "long_name": "10 metre northward wind",
        "standard_name": "northward_wind",
    },
    "tp": {
        "units": "mm h-1",
        "long_name": "precipitation rate",
        "standard_name": "lwe_precipitation_rate",
    },
    "t": {"units": "K", "long_name": "temperature", "standard_name": "air_temperature"},
    "u": {"units": "m s-1", "long_name": "eastward wind", "standard_name": "eastward_wind"},
    "v": {"units": "m s-1", "long_name": "northward wind", "standard_name": "northward_wind"},
    "q": {
        "units": "kg kg-1",
        "long_name": "specific humidity",
        "standard_name": "specific_humidity",
    },
    "kindex": {"units": "K", "long_name": "K-index (convective instability)"},
    "orog": {"units": "m", "long_name": "surface altitude", "standard_name": "surface_altitude"},
    "lsm": {"units": "1", "long_name": "land area fraction", "standard_name": "land_area_fraction"},
}
LR_LEVEL_VARIABLES = ("t", "u", "v", "q")
LR_SURFACE_VARIABLES = ("t2m", "u10", "v10", "tp", "kindex")


def _coords(grid: Grid) -> dict[str, tuple[tuple[str, str], np.ndarray, dict[str, str]]]:
    lat2, lon2 = np.meshgrid(grid.lat, grid.lon, indexing="ij")
    return {
        "lat": (("y", "x"), lat2, {"units": "degrees_north", "standard_name": "latitude"}),
        "lon": (("y", "x"), lon2, {"units": "degrees_east", "standard_name": "longitude"}),
    }


def stack_frames(frames: list[dict[str, np.ndarray]], key: str) -> np.ndarray:
    """Hourly fields (name -> (y, x)) stacked along time: float32 (time, y, x) of ``key``."""
    return np.stack([f[key] for f in frames]).astype(np.float32)


def hr_dataset(frames: list[dict[str, np.ndarray]], times: np.ndarray, grid: Grid) -> xr.Dataset:
    data = {v: (("time", "y", "x"), stack_frames(frames, v), ATTRS[v]) for v in HR_VARIABLES}
    return xr.Dataset(data, coords={"time": times.astype("datetime64[ns]"), **_coords(grid)})


def lr_dataset(
    frames: list[dict[str, np.ndarray]], times: np.ndarray, terrain: Terrain
) -> xr.Dataset:
    data = {
        name: (
            ("time", "level", "y", "x"),
            np.stack([stack_frames(frames, f"{name}{level}") for level in LEVELS], axis=1),
            ATTRS[name],
        )
        for name in LR_LEVEL_VARIABLES
    }
    data.update(
        {v: (("time", "y", "x"), stack_frames(frames, v), ATTRS[v]) for v in LR_SURFACE_VARIABLES}
    )
    level = (
        "level",
        np.array(LEVELS, dtype=np.float64),
        {"units": "hPa", "long_name": "pressure", "positive": "down"},
    )
    return xr.Dataset(
        data, coords={"time": times.astype("datetime64[ns]"), "level": level, **_coords(terrain.lr)}
    )


def static_datasets(terrain: Terrain) -> tuple[xr.Dataset, xr.Dataset]:
    """HR static fields (orog, lsm) and the LR orography."""
    hr = xr.Dataset(
        {
            "orog": (("y", "x"), terrain.orog.astype(np.float32), ATTRS["orog"]),
            "lsm": (("y", "x"), terrain.lsm.astype(np.float32), ATTRS["lsm"]),
        },
        coords=_coords(terrain.hr),
    )
    lr = xr.Dataset(
        {"orog": (("y", "x"), terrain.orog_lr.astype(np.float32), ATTRS["orog"])},
        coords=_coords(terrain.lr),
    )
    return hr, lr


def global_attrs(world: World, what: str) -> dict[str, str]:
    """CF global attributes of one of the world's outputs (``what``: "HR truth", ...)."""
    return {
        "title": f"finescale Alps world: {what}",
        "source": f"finescale {__version__} synthetic Alps world, seed {world.seed}",
        "orography": world.terrain.provenance,
        "Conventions": "CF-1.8",
    }

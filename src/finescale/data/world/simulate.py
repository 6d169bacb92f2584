"""Run the Alps world: stream LR/HR/static to Zarr, and draw oracle ensembles of p(HR | LR).

Random streams (numpy SeedSequence with spawn keys) keep the parts independent and exactly
reproducible: (0,) the large-scale state, (1,) the truth's small scales, (2, m) oracle member m.
An oracle member re-runs only the small scales for the same large-scale state, so it is an exact
draw from p(HR | LR sequence), exchangeable with the truth.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from finescale.data.world.fields import HR_VARIABLES, N_NOISE, hr_fields, hr_mean_fields, lr_fields
from finescale.data.world.largescale import LEVELS, LargeScale
from finescale.data.world.noise import SmallScaleNoise
from finescale.data.world.params import WorldParams
from finescale.data.world.precipitation import ConvectiveCells, OrographicRain
from finescale.data.world.terrain import Grid, Terrain, build_terrain, load_dem
from finescale.io.atomic import ZARR_FORMAT, atomic_path, write_json, write_text
from finescale.io.stores import EnsembleStore
from finescale.version import __version__

ATTRS: dict[str, dict[str, str]] = {
    "t2m": {"units": "K", "long_name": "2 metre temperature", "standard_name": "air_temperature"},
    "u10": {"units": "m s-1", "long_name": "10 metre eastward wind", "standard_name": "eastward_wind"},
    "v10": {"units": "m s-1", "long_name": "10 metre northward wind", "standard_name": "northward_wind"},
    "tp": {"units": "mm h-1", "long_name": "precipitation rate", "standard_name": "lwe_precipitation_rate"},
    "t": {"units": "K", "long_name": "temperature", "standard_name": "air_temperature"},
    "u": {"units": "m s-1", "long_name": "eastward wind", "standard_name": "eastward_wind"},
    "v": {"units": "m s-1", "long_name": "northward wind", "standard_name": "northward_wind"},
    "q": {"units": "kg kg-1", "long_name": "specific humidity", "standard_name": "specific_humidity"},
    "kindex": {"units": "K", "long_name": "K-index (convective instability)"},
    "orog": {"units": "m", "long_name": "surface altitude", "standard_name": "surface_altitude"},
    "lsm": {"units": "1", "long_name": "land area fraction", "standard_name": "land_area_fraction"},
}
LR_LEVEL_VARIABLES = ("t", "u", "v", "q")
LR_SURFACE_VARIABLES = ("t2m", "u10", "v10", "tp", "kindex")
WORLD_FILE = "world.json"
ProgressFn = Callable[[int], None]


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
            dem, params.hr_resolution_deg, params.ratio, params.valley_scale_km, params.wind_scale_km,
            params.lat_range, params.lon_range, where=str(orography or "default DEM"),
        )
        n = round(params.days * 24)
        start = np.datetime64(params.start, "h")
        self.times = start + np.arange(n) * np.timedelta64(1, "h")
        self.large = LargeScale(params, self.times, rng_for(seed, 0))
        self.rain_hr = OrographicRain(self.terrain.orog, self.terrain.hr, params)
        self.rain_lr = OrographicRain(self.terrain.orog_lr, self.terrain.lr, params)

    @property
    def spinup_hours(self) -> int:
        """Hours of cell history that can influence a time: the longest lifetime plus the birth hour."""
        return math.ceil(self.params.cell_lifetime_max_h) + 1

    def realisation(self, rng: np.random.Generator) -> Realisation:
        hr, p = self.terrain.hr, self.params
        lr_spacing = hr.dx_km * self.terrain.ratio
        noise = SmallScaleNoise(
            N_NOISE, hr.shape, (hr.dy_km, hr.dx_km), p.noise_slope, 2.0 * lr_spacing, p.noise_timescale_h
        )
        return Realisation(noise=noise, cells=ConvectiveCells(hr, p), rng=rng)

    def _orographic(self, i: int, state: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        u, v, t = float(state["u850"].mean()), float(state["v850"].mean()), float(state["t_sl"].mean())
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
            mean = hr_mean_fields(state, self.terrain, rain_hr, float(self.large.winter[i]), self.params)
            noise = real.noise.step(real.rng)
            hours = float((self.times[i] - self.times[0]) / np.timedelta64(1, "h"))
            convective = real.cells.step(i, hours, self.large, mean["cell_rate"], state["kindex"], real.rng)
            if i < start:
                continue
            lr = lr_fields(state, self.terrain, rain_lr, self.params) if with_lr else None
            yield i, lr, hr_fields(mean, noise, convective, self.params)


# ---------------------------------------------------------------------------------------------
# labelled output


def _coords(grid: Grid) -> dict[str, tuple[tuple[str, str], np.ndarray, dict[str, str]]]:
    lat2, lon2 = np.meshgrid(grid.lat, grid.lon, indexing="ij")
    return {
        "lat": (("y", "x"), lat2, {"units": "degrees_north", "standard_name": "latitude"}),
        "lon": (("y", "x"), lon2, {"units": "degrees_east", "standard_name": "longitude"}),
    }


def _time_encoding(times: np.ndarray) -> dict[str, dict[str, str]]:
    return {"time": {"units": f"hours since {np.datetime_as_string(times[0], unit='h')}:00", "dtype": "int64"}}


def _stack(frames: list[dict[str, np.ndarray]], key: str) -> np.ndarray:
    return np.stack([f[key] for f in frames]).astype(np.float32)


def hr_dataset(frames: list[dict[str, np.ndarray]], times: np.ndarray, grid: Grid) -> xr.Dataset:
    data = {v: (("time", "y", "x"), _stack(frames, v), ATTRS[v]) for v in HR_VARIABLES}
    return xr.Dataset(data, coords={"time": times.astype("datetime64[ns]"), **_coords(grid)})


def lr_dataset(frames: list[dict[str, np.ndarray]], times: np.ndarray, terrain: Terrain) -> xr.Dataset:
    data = {
        name: (
            ("time", "level", "y", "x"),
            np.stack([_stack(frames, f"{name}{level}") for level in LEVELS], axis=1),
            ATTRS[name],
        )
        for name in LR_LEVEL_VARIABLES
    }
    data.update({v: (("time", "y", "x"), _stack(frames, v), ATTRS[v]) for v in LR_SURFACE_VARIABLES})
    level = ("level", np.array(LEVELS, dtype=np.float64), {"units": "hPa", "long_name": "pressure", "positive": "down"})
    return xr.Dataset(data, coords={"time": times.astype("datetime64[ns]"), "level": level, **_coords(terrain.lr)})


def static_datasets(terrain: Terrain) -> tuple[xr.Dataset, xr.Dataset]:
    """HR static fields (orog, lsm) and the LR orography."""
    hr = xr.Dataset(
        {"orog": (("y", "x"), terrain.orog.astype(np.float32), ATTRS["orog"]),
         "lsm": (("y", "x"), terrain.lsm.astype(np.float32), ATTRS["lsm"])},
        coords=_coords(terrain.hr),
    )
    lr = xr.Dataset({"orog": (("y", "x"), terrain.orog_lr.astype(np.float32), ATTRS["orog"])}, coords=_coords(terrain.lr))
    return hr, lr


def _global_attrs(world: World, what: str) -> dict[str, str]:
    return {
        "title": f"finescale Alps world: {what}",
        "source": f"finescale {__version__} synthetic Alps world, seed {world.seed}",
        "orography": world.terrain.provenance,
        "Conventions": "CF-1.8",
    }


# ---------------------------------------------------------------------------------------------
# writing


class _ZarrAppender:
    """Writes a time series to a Zarr store chunk by chunk; the first write creates it."""

    def __init__(self, path: Path, chunk_hours: int):
        self.path, self.chunk_hours, self.started = path, chunk_hours, False

    def append(self, ds: xr.Dataset) -> None:
        if not self.started:
            encoding = {v: {"chunks": _chunks(ds[v], self.chunk_hours)} for v in ds.data_vars}
            encoding.update(_time_encoding(ds.time.values))
            ds.to_zarr(self.path, mode="w", encoding=encoding, **ZARR_FORMAT)
            self.started = True
        else:
            timed = [v for v in ds.data_vars if "time" in ds[v].dims]
            ds[timed].drop_vars(["lat", "lon"], errors="ignore").to_zarr(self.path, append_dim="time", **ZARR_FORMAT)


def _chunks(da: xr.DataArray, chunk_hours: int) -> tuple[int, ...]:
    """One chunk per ``chunk_hours`` in time and per member; whole in space."""
    sizes = {"time": chunk_hours, "member": 1}
    return tuple(min(sizes.get(d, n), n) for d, n in zip(da.dims, da.shape))


def _write_pair(
    lr_writer: _ZarrAppender, lr: xr.Dataset, hr_writer: _ZarrAppender, hr: xr.Dataset,
    progress: ProgressFn | None, hours: int,
) -> None:
    lr_writer.append(lr)
    hr_writer.append(hr)
    if progress:
        progress(hours)


def simulate(
    out: str | Path,
    params: WorldParams,
    seed: int = 0,
    orography: str | Path | None = None,
    progress: ProgressFn | None = None,
) -> Path:
    """Simulate a world into ``out``: ``lr.zarr``, ``hr.zarr``, ``static.zarr``, ``world.json``, ``finescale.yaml``.

    Each store is written under a temporary name and renamed when complete; ``world.json`` is
    written last, so a folder without it is an unfinished run.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / WORLD_FILE).unlink(missing_ok=True)
    world = World(params, seed, orography)
    static_hr, static_lr = static_datasets(world.terrain)
    with atomic_path(out / "static.zarr") as tmp:
        static_hr.assign_attrs(_global_attrs(world, "static HR fields")).to_zarr(tmp, mode="w", **ZARR_FORMAT)
    n = world.times.size
    # compression and file I/O release the GIL: write chunk k on a thread while computing k + 1
    with atomic_path(out / "lr.zarr") as lr_tmp, atomic_path(out / "hr.zarr") as hr_tmp, ThreadPoolExecutor(1) as pool:
        lr_writer, hr_writer = _ZarrAppender(lr_tmp, params.chunk_hours), _ZarrAppender(hr_tmp, params.chunk_hours)
        pending: Future | None = None
        lr_frames: list[dict[str, np.ndarray]] = []
        hr_frames: list[dict[str, np.ndarray]] = []
        for i, lr, hr in world.run(0, n, rng_for(seed, 1)):
            lr_frames.append(lr)
            hr_frames.append(hr)
            if len(hr_frames) == params.chunk_hours or i == n - 1:
                times = world.times[i + 1 - len(hr_frames) : i + 1]
                lr_ds = lr_dataset(lr_frames, times, world.terrain)
                hr_ds = hr_dataset(hr_frames, times, world.terrain.hr)
                if pending is None:
                    lr_ds = lr_ds.assign(orog=static_lr.orog).assign_attrs(_global_attrs(world, "LR inputs"))
                    hr_ds = hr_ds.assign_attrs(_global_attrs(world, "HR truth"))
                else:
                    pending.result()
                pending = pool.submit(_write_pair, lr_writer, lr_ds, hr_writer, hr_ds, progress, len(hr_frames))
                lr_frames, hr_frames = [], []
        if pending is not None:
            pending.result()
    write_text(_data_config(), out / "finescale.yaml")
    write_json(
        {
            "finescale_version": __version__,
            "seed": seed,
            "orography": str(orography) if orography else "default",
            "params": json.loads(params.model_dump_json()),
            "hr_shape": list(world.terrain.hr.shape),
            "lr_shape": list(world.terrain.lr.shape),
            "times": [str(world.times[0]), str(world.times[-1])],
        },
        out / WORLD_FILE,
    )
    return out


def _data_config() -> str:
    """A ready-to-use config whose data section pairs this world's LR and HR stores."""
    lr_vars = "\n".join(f"      {v}: {v}" for v in LR_SURFACE_VARIABLES)
    lr_vars += "\n" + "\n".join(
        f"      {name}{level}: {{name: {name}, level: {level}}}" for name in LR_LEVEL_VARIABLES for level in LEVELS
    )
    hr_vars = "\n".join(f"      {v}: {v}" for v in HR_VARIABLES)
    return f"""# Written by `finescale world`: the data section for this world (paths relative to this file).
name: alps-world
data:
  lr:
    path: lr.zarr
    variables:
{lr_vars}
  hr:
    path: hr.zarr
    variables:
{hr_vars}
  static:
    path: static.zarr
    variables:
      orog: orog
      lsm: lsm
  splits: {{train: 0.7, validation: 0.15, test: 0.15, gap_hours: 12}}
  transforms:
    tp: {{kind: log1p, scale: 0.1, zero_below: 0.01}}
"""


def open_world(path: str | Path) -> tuple[World, dict]:
    """Rebuild the World that wrote ``path`` (from its ``world.json``)."""
    meta_path = Path(path) / WORLD_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{path}: not a finished Alps world (no {WORLD_FILE}); run `finescale world` first")
    meta = json.loads(meta_path.read_text())
    orography = None if meta["orography"] == "default" else meta["orography"]
    return World(WorldParams.model_validate(meta["params"]), meta["seed"], orography), meta


def oracle(
    world_dir: str | Path,
    members: int,
    out: str | Path,
    times: np.ndarray | None = None,
    progress: ProgressFn | None = None,
) -> Path:
    """Draw ``members`` exact samples of p(HR | LR) for ``times`` (default: all) into ``out`` (Zarr).

    The output has dims (member, time, y, x), the HR variables and coordinates. It is streamed
    member by member and chunk by chunk into a temporary store that is renamed when complete.
    """
    world, _ = open_world(world_dir)
    wanted = world.times if times is None else np.asarray(times, dtype="datetime64[h]")
    index = np.searchsorted(world.times, wanted)
    inside = index < world.times.size
    if not np.all(inside) or np.any(world.times[index[inside]] != wanted[inside]):
        raise ValueError(f"{world_dir}: some requested times are not in the world ({world.times[0]} .. {world.times[-1]})")
    # contiguous runs of indices are simulated together; each run spins up its own small scales
    runs = np.split(index, np.flatnonzero(np.diff(index) != 1) + 1)
    grid, chunk = world.terrain.hr, world.params.chunk_hours
    lat, lon = np.meshgrid(grid.lat, grid.lon, indexing="ij")
    attrs = _global_attrs(world, "oracle ensemble, exact samples of p(HR | LR)") | {"members": members}
    with atomic_path(out) as tmp:
        store = EnsembleStore(tmp).create({v: ATTRS[v] for v in HR_VARIABLES}, members, wanted, lat, lon, chunk, attrs)
        for m in range(members):
            rng = rng_for(world.seed, 2, m)
            frames: list[dict[str, np.ndarray]] = []
            written = 0
            hr_stream = (hr for run in runs for _, _, hr in world.run(int(run[0]), int(run[-1]) + 1, rng, with_lr=False))
            for hr in hr_stream:
                frames.append(hr)
                if len(frames) == chunk or written + len(frames) == wanted.size:
                    blocks = {v: _stack(frames, v)[None] for v in HR_VARIABLES}
                    store.write(slice(m, m + 1), slice(written, written + len(frames)), blocks)
                    written += len(frames)
                    if progress:
                        progress(len(frames))
                    frames = []
    return Path(out)

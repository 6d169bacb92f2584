"""Run the Alps world to disk: stream LR/HR/static to Zarr, and draw oracle ensembles of
p(HR | LR) from a world written before.

The world itself (its random streams, and why an oracle member is an exact draw) is in
:mod:`~finescale.data.world.model`; the labelled datasets written here in
:mod:`~finescale.data.world.datasets`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import xarray as xr

from finescale.data.world.datasets import (
    ATTRS,
    LR_LEVEL_VARIABLES,
    LR_SURFACE_VARIABLES,
    global_attrs,
    hr_dataset,
    lr_dataset,
    stack_frames,
    static_datasets,
)
from finescale.data.world.fields import HR_VARIABLES
from finescale.data.world.largescale import LEVELS
from finescale.data.world.model import World, rng_for
from finescale.data.world.params import WorldParams
from finescale.io.atomic import ZARR_FORMAT, atomic_path, write_json, write_text
from finescale.io.stores import EnsembleStore
from finescale.version import __version__

WORLD_FILE = "world.json"
ProgressFn = Callable[[int], None]


def _time_encoding(times: np.ndarray) -> dict[str, dict[str, str]]:
    """Times as integer hours since the first: exact, and readable by any CF reader."""
    return {
        "time": {
            "units": f"hours since {np.datetime_as_string(times[0], unit='h')}:00",
            "dtype": "int64",
        }
    }


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
            ds[timed].drop_vars(["lat", "lon"], errors="ignore").to_zarr(
                self.path, append_dim="time", **ZARR_FORMAT
            )


def _chunks(da: xr.DataArray, chunk_hours: int) -> tuple[int, ...]:
    """One chunk per ``chunk_hours`` in time and per member; whole in space."""
    sizes = {"time": chunk_hours, "member": 1}
    return tuple(min(sizes.get(d, n), n) for d, n in zip(da.dims, da.shape))


def _write_pair(
    lr_writer: _ZarrAppender,
    lr: xr.Dataset,
    hr_writer: _ZarrAppender,
    hr: xr.Dataset,
    progress: ProgressFn | None,
    hours: int,
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
    """Simulate a world into ``out``: ``lr.zarr``, ``hr.zarr``, ``static.zarr``, ``world.json``,
    ``finescale.yaml``.

    Each store is written under a temporary name and renamed when complete; ``world.json`` is
    written last, so a folder without it is an unfinished run.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / WORLD_FILE).unlink(missing_ok=True)
    world = World(params, seed, orography)
    static_hr, static_lr = static_datasets(world.terrain)
    with atomic_path(out / "static.zarr") as tmp:
        static_hr.assign_attrs(global_attrs(world, "static HR fields")).to_zarr(
            tmp, mode="w", **ZARR_FORMAT
        )
    n = world.times.size
    # compression and file I/O release the GIL: write chunk k on a thread while computing k + 1
    with (
        atomic_path(out / "lr.zarr") as lr_tmp,
        atomic_path(out / "hr.zarr") as hr_tmp,
        ThreadPoolExecutor(1) as pool,
    ):
        lr_writer, hr_writer = (
            _ZarrAppender(lr_tmp, params.chunk_hours),
            _ZarrAppender(hr_tmp, params.chunk_hours),
        )
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
                    lr_ds = lr_ds.assign(orog=static_lr.orog).assign_attrs(
                        global_attrs(world, "LR inputs")
                    )
                    hr_ds = hr_ds.assign_attrs(global_attrs(world, "HR truth"))
                else:
                    pending.result()
                pending = pool.submit(
                    _write_pair, lr_writer, lr_ds, hr_writer, hr_ds, progress, len(hr_frames)
                )
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
    """A ready-to-use config whose data section pairs this world's LR and HR stores.

    Precipitation's dry threshold, 0.003 mm/h, is the one the skill benchmark chose on its
    development world's validation block (docs/results/skill-heldout-cpu.json).
    """
    lr_vars = "\n".join(f"      {v}: {v}" for v in LR_SURFACE_VARIABLES)
    lr_vars += "\n" + "\n".join(
        f"      {name}{level}: {{name: {name}, level: {level}}}"
        for name in LR_LEVEL_VARIABLES
        for level in LEVELS
    )
    hr_vars = "\n".join(f"      {v}: {v}" for v in HR_VARIABLES)
    return (
        "# Written by `finescale world`: the data section for this world"
        " (paths relative to this file).\n"
        f"""name: alps-world
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
    tp: {{kind: log1p, scale: 0.1, zero_below: 0.003}}
"""
    )


def open_world(path: str | Path) -> tuple[World, dict]:
    """Rebuild the World that wrote ``path`` (from its ``world.json``)."""
    meta_path = Path(path) / WORLD_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"{path}: not a finished Alps world (no {WORLD_FILE}); run `finescale world` first"
        )
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
    """Draw ``members`` exact samples of p(HR | LR) for ``times`` (default: all) into ``out``
    (Zarr).

    The output has dims (member, time, y, x), the HR variables and coordinates. It is streamed
    member by member and chunk by chunk into a temporary store that is renamed when complete.
    """
    world, _ = open_world(world_dir)
    wanted = world.times if times is None else np.asarray(times, dtype="datetime64[h]")
    index = np.searchsorted(world.times, wanted)
    inside = index < world.times.size
    if not np.all(inside) or np.any(world.times[index[inside]] != wanted[inside]):
        raise ValueError(
            f"{world_dir}: some requested times are not in the world "
            f"({world.times[0]} .. {world.times[-1]})"
        )
    # contiguous runs of indices are simulated together; each run spins up its own small scales
    runs = np.split(index, np.flatnonzero(np.diff(index) != 1) + 1)
    grid, chunk = world.terrain.hr, world.params.chunk_hours
    lat, lon = np.meshgrid(grid.lat, grid.lon, indexing="ij")
    attrs = global_attrs(world, "oracle ensemble, exact samples of p(HR | LR)") | {
        "members": members
    }
    with atomic_path(out) as tmp:
        store = EnsembleStore(tmp).create(
            {v: ATTRS[v] for v in HR_VARIABLES}, members, wanted, lat, lon, chunk, attrs
        )
        for m in range(members):
            rng = rng_for(world.seed, 2, m)
            frames: list[dict[str, np.ndarray]] = []
            written = 0
            hr_stream = (
                hr
                for run in runs
                for _, _, hr in world.run(int(run[0]), int(run[-1]) + 1, rng, with_lr=False)
            )
            for hr in hr_stream:
                frames.append(hr)
                if len(frames) == chunk or written + len(frames) == wanted.size:
                    blocks = {v: stack_frames(frames, v)[None] for v in HR_VARIABLES}
                    store.write(slice(m, m + 1), slice(written, written + len(frames)), blocks)
                    written += len(frames)
                    if progress:
                        progress(len(frames))
                    frames = []
    return Path(out)

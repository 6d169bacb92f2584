"""Writing outputs so that a crash never leaves a file that looks complete.

Everything written whole goes to a temporary name beside its destination and is renamed into
place only when complete (rename is atomic on POSIX within one file system).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import xarray as xr

# Zarr format 2 with consolidated metadata: readable by every xarray/zarr/netCDF-C in use today
ZARR_FORMAT: dict[str, Any] = {"zarr_format": 2, "consolidated": True}


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed.

    Works for files and for directories (Zarr stores).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def write_json(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    return Path(path)


def write_text(text: str, path: str | Path) -> Path:
    """Write ``text`` to ``path``, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_zarr(ds: xr.Dataset, path: str | Path, **kwargs: Any) -> Path:
    """Write a whole dataset to a Zarr store, atomically (consolidated metadata)."""
    with atomic_path(path) as tmp:
        ds.to_zarr(tmp, mode="w", **(ZARR_FORMAT | kwargs))
    return Path(path)


class EnsembleStore:
    """An ensemble (member, time, y, x) Zarr store filled block by block, for outputs too big to hold.

    ``create`` writes the metadata and coordinates (data lazily as dask zeros, never computed);
    ``write`` fills a block of members and times in place. Use it on a temporary path inside
    :func:`atomic_path`, so the store appears under its name only once every block is written.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def create(
        self,
        variables: dict[str, dict[str, Any]],
        members: int,
        times: Any,
        lat: Any,
        lon: Any,
        chunk_times: int,
        attrs: dict[str, Any] | None = None,
    ) -> EnsembleStore:
        """variables: name -> CF attrs; times: (T,) datetime64; lat, lon: (y, x) degrees."""
        import dask.array
        import numpy as np

        lat, lon = np.asarray(lat), np.asarray(lon)
        times = np.asarray(times).astype("datetime64[ns]")
        shape = (members, times.size, *lat.shape)
        chunks = (1, max(1, min(chunk_times, times.size)), *lat.shape)
        data = {
            name: (("member", "time", "y", "x"), dask.array.zeros(shape, chunks=chunks, dtype=np.float32), var_attrs)
            for name, var_attrs in variables.items()
        }
        coords = {
            "member": np.arange(members),
            "time": times,
            "lat": (("y", "x"), lat, {"units": "degrees_north", "standard_name": "latitude"}),
            "lon": (("y", "x"), lon, {"units": "degrees_east", "standard_name": "longitude"}),
        }
        first = np.datetime_as_string(times[0], unit="h") if times.size else "1970-01-01T00"
        encoding: dict[str, Any] = {name: {"chunks": chunks} for name in variables}
        encoding["time"] = {"units": f"hours since {first}:00", "dtype": "int64"}
        ds = xr.Dataset(data, coords=coords, attrs=attrs or {})
        ds.to_zarr(self.path, mode="w", compute=False, encoding=encoding, **ZARR_FORMAT)
        return self

    def write(self, members: slice, times: slice, blocks: dict[str, Any]) -> None:
        """Fill ``blocks`` (name -> array (m, t, y, x)) at the given member and time slices."""
        ds = xr.Dataset({name: (("member", "time", "y", "x"), block) for name, block in blocks.items()})
        ds.to_zarr(self.path, region={"member": members, "time": times}, **ZARR_FORMAT)

"""Whole files and stores written so that a crash never leaves one that looks complete.

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
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is
    removed.

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

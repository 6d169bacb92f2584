"""Reading a source lazily, every chunk checked as it is read.

:func:`open_raw` opens a file (NetCDF, Zarr, GRIB, or several NetCDF files given by a pattern)
as xarray decodes it, and :func:`memory_raw` takes a dataset already in memory the same way;
both read the mapped variables through :func:`checked_reads`, which names the file, the variable
and the time of a chunk that cannot be decoded or holds values the source's ``missing`` setting
refuses. Apart from :mod:`finescale.data.sources`, which maps, orients and converts what is read,
because evaluation reads ensemble files through the same checks without that mapping.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from xarray.backends import BackendArray
from xarray.core import indexing

from finescale.config import FileConfig
from finescale.data.errors import IN_MEMORY, PairError, SourceNotFoundError
from finescale.data.times import time_text

__all__ = ["NETCDF_SUFFIXES", "checked_reads", "disk_chunks", "memory_raw", "open_raw"]

NETCDF_SUFFIXES = {".nc", ".nc4", ".netcdf", ".cdf", ".h5", ".hdf5", ".he5"}
_GRIB_SUFFIXES = {".grib", ".grb", ".grib1", ".grib2", ".grb1", ".grb2"}
_ZARR_MARKERS = ("zarr.json", ".zgroup", ".zmetadata", ".zarray")
_ENGINES = {"netcdf": "netcdf4", "zarr": "zarr", "grib": "cfgrib"}


def open_raw(path: Path, cfg: FileConfig, time: str | None) -> xr.Dataset:
    """The file as xarray opens it, lazy, its mapped variables read through :class:`_CheckedReads`.

    Not yet chunked for a single NetCDF file; Zarr and multi-file sources are chunked as on disk.
    """
    names = {spec.name for spec in cfg.variables.values()}
    if any(ch in str(path) for ch in "*?["):
        files = sorted(path.parent.glob(path.name))
        if not files:
            raise SourceNotFoundError(f"{path}: no file matches this pattern")
        kind = _engine_for(files[0], cfg.engine)
        _check_reader(kind, path)

        def checked(ds: xr.Dataset) -> xr.Dataset:
            # each file on its own, so that an error names the file that holds the bad chunk
            one = Path(ds.encoding.get("source", path))
            return disk_chunks(checked_reads(ds, names, one, cfg.missing, time))

        try:
            return xr.open_mfdataset(
                files,
                engine=_ENGINES[kind],
                combine="by_coords",
                data_vars="minimal",
                coords="minimal",
                compat="override",
                chunks=None,
                cache=False,
                preprocess=checked,
            )
        except PairError:
            raise
        except Exception as exc:  # any reader error means this file cannot be used
            raise PairError(
                f"{path}: cannot open the matching files together: {type(exc).__name__}: {exc}"
            ) from exc
    if not path.exists():
        raise SourceNotFoundError(f"{path}: no such file or folder")
    kind = _engine_for(path, cfg.engine)
    _check_reader(kind, path)
    try:
        # Lazy but unchunked: chunking later reads each chunk's slice only, whereas chunks={}
        # would make one task of a whole contiguous NetCDF variable.
        if kind == "zarr":
            raw = xr.open_dataset(
                path,
                engine="zarr",
                chunks=None,
                cache=False,
                consolidated=_consolidated(path),
            )
        else:
            raw = xr.open_dataset(path, engine=_ENGINES[kind], cache=False)
    except Exception as exc:  # decoders raise many types for a corrupt file
        raise PairError(f"{path}: cannot be read as {kind}: {type(exc).__name__}: {exc}") from exc
    raw = checked_reads(raw, names, path, cfg.missing, time)
    return disk_chunks(raw) if kind == "zarr" else raw


def memory_raw(dataset: xr.Dataset, cfg: FileConfig, time: str | None) -> xr.Dataset:
    """An in-memory ``dataset`` as :func:`open_raw` gives a file: mapped variables checked."""
    names = {spec.name for spec in cfg.variables.values()}
    raw = checked_reads(dataset, names, IN_MEMORY, cfg.missing, time)
    # The caller's dask chunks are kept; NumPy-backed data are chunked later, as a NetCDF file's.
    dask = [n for n in raw.data_vars if n in names and dataset[n].chunks is not None]
    return raw.assign({n: raw[n].chunk(dataset[n].chunksizes) for n in dask})


def disk_chunks(ds: xr.Dataset) -> xr.Dataset:
    """Dask chunks as on disk (Zarr chunks, NetCDF4 chunking; else whole variables)."""
    return ds.assign(
        {
            name: da.chunk(da.encoding.get("preferred_chunks") or {})
            for name, da in ds.data_vars.items()
        }
    )


class _CheckedReads(BackendArray):
    """One variable of a file, read lazily; each block read is checked before anyone sees it.

    A block that fails to read is a PairError naming the file and the variable. Non-finite
    values are a PairError naming the first bad time of the block (``missing="error"``) or, with
    ``missing="mask"``, +-Inf become NaN (NaN stays: a missing value); ``missing="keep"`` leaves
    values as they are. ``times``: the time values along the variable's axis ``time_axis`` (None:
    no time dim).
    """

    def __init__(
        self,
        variable: xr.Variable,
        path: Path | str,
        name: str,
        missing: str,
        time_axis: int | None,
        times: np.ndarray | None,
    ) -> None:
        self.variable, self.path, self.name, self.missing = (
            variable,
            path,
            name,
            missing,
        )
        self.time_axis, self.times = time_axis, times
        self.shape, self.dtype = variable.shape, variable.dtype

    def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray:
        return indexing.explicit_indexing_adapter(
            key, self.shape, indexing.IndexingSupport.OUTER, self._read
        )

    def _read(self, key: tuple[Any, ...]) -> np.ndarray:
        try:
            values = np.asarray(self.variable[key].values)
        except Exception as exc:  # decoders raise many types for a corrupt chunk
            raise PairError(
                f"{self.path}: variable '{self.name}' cannot be read ({type(exc).__name__}: "
                f"{exc}); the file may be truncated or corrupt"
            ) from exc
        if self.missing == "keep" or values.dtype.kind not in "fc":
            return values
        finite = np.isfinite(values)
        if finite.all():
            return values
        if self.missing == "mask":
            return np.where(np.isinf(values), np.nan, values)
        raise PairError(self._bad_value(key, values, finite))

    def _bad_value(self, key: tuple[Any, ...], values: np.ndarray, finite: np.ndarray) -> str:
        """The message for the first non-finite value of a block read at ``key``."""
        first = tuple(np.argwhere(~finite)[0])
        index = _file_index(key, self.shape, first)
        where = ", ".join(f"{d}={i}" for d, i in zip(self.variable.dims, index, strict=True))
        value = values[first]
        what = "NaN (a missing value)" if np.isnan(value) else str(value)
        at = ""
        if self.time_axis is not None and self.times is not None:
            at = f" at time {time_text(self.times[index[self.time_axis]])}"
        return (
            f"{self.path}: variable '{self.name}' holds {what}{at} (first in the block read; "
            f"file indices {where}); set 'missing: mask' on this source to treat NaN and Inf "
            "as missing values"
        )


def _file_index(
    key: tuple[Any, ...], shape: tuple[int, ...], position: tuple[Any, ...]
) -> list[int]:
    """Indices in the file of ``position`` in a block read with the outer-indexing ``key``.

    An integer in ``key`` drops its axis from the block; a slice or an integer array keeps it.
    """
    axes = iter(position)
    index = []
    for k, n in zip(key, shape, strict=True):
        if isinstance(k, (int, np.integer)):
            index.append(int(k) % n)
        elif isinstance(k, slice):
            index.append(range(*k.indices(n))[int(next(axes))])
        else:
            index.append(int(np.asarray(k)[int(next(axes))]) % n)
    return index


def checked_reads(
    ds: xr.Dataset, names: set[str], path: Path | str, missing: str, time: str | None
) -> xr.Dataset:
    """``ds`` with its data variables ``names`` read through :class:`_CheckedReads`.

    ds: as opened lazily without dask (``chunks=None``, ``cache=False``); chunk it afterwards
    (e.g. :func:`disk_chunks`). path: the file named in errors. missing: ``"error"``, ``"mask"``
    or ``"keep"`` (see :class:`_CheckedReads`). time: name of the time dim (None: none).
    """
    times = ds[time].values if time is not None and time in ds.coords else None
    checked = {}
    for name in names & {str(n) for n in ds.data_vars}:
        var = ds[name].variable
        axis = var.dims.index(time) if time is not None and time in var.dims else None
        reads = _CheckedReads(var, path, name, missing, axis, times)
        checked[name] = xr.Variable(
            var.dims, indexing.LazilyIndexedArray(reads), var.attrs, var.encoding
        )
    return ds.assign(checked)


def _check_reader(kind: str, path: Path) -> None:
    """GRIB goes through cfgrib, an optional extra: say how to get it rather than fail later."""
    if kind == "grib" and importlib.util.find_spec("cfgrib") is None:
        raise PairError(
            f"{path}: reading GRIB needs the optional package cfgrib: "
            "pip install 'finescale[grib]' (and the eccodes library)"
        )


def _consolidated(path: Path) -> bool | None:
    """Whether a Zarr store has consolidated metadata (None: unknown, let zarr find out)."""
    if (path / ".zmetadata").is_file():
        return True
    meta = path / "zarr.json"
    if meta.is_file():
        try:
            return bool(json.loads(meta.read_text()).get("consolidated_metadata"))
        except (OSError, ValueError):
            return None
    return None


def _engine_for(path: Path, engine: str) -> str:
    if engine != "auto":
        return engine
    if path.is_dir():
        if path.suffix == ".zarr" or any((path / m).exists() for m in _ZARR_MARKERS):
            return "zarr"
        raise PairError(
            f"{path}: a folder that is not a Zarr store; for several NetCDF files give a "
            "pattern such as folder/*.nc"
        )
    suffix = path.suffix.lower()
    if suffix == ".zarr":
        return "zarr"
    if suffix in NETCDF_SUFFIXES:
        return "netcdf"
    if suffix in _GRIB_SUFFIXES:
        return "grib"
    raise PairError(
        f"{path}: cannot tell the format from the name; set engine: netcdf, zarr or grib"
    )

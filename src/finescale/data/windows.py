"""Windows of lazily opened fields, read through a bounded cache of decoded chunks.

Training draws a small window of a large dataset per sample: a patch of the HR grid at one
time with the LR cells around it, or a space-time hypercube. The fields stay lazy (dask arrays
over Zarr, NetCDF, ...): :class:`WindowReader` assembles a window from the chunks (dask blocks)
it overlaps, each decoded whole once and kept in a :class:`BlockCache` of a fixed byte budget.
Memory is bounded by the budget whatever the size of the dataset, and a dataset smaller than
the budget is read from disk once. Chunks too large to cache (a NetCDF variable cut only along
time, say) are not decoded whole: the window alone is read from them.

Each process opens its own sources (:class:`Sources`): a DataLoader worker, forked or spawned,
opens the files again on its first read instead of sharing the parent's file handles, and
starts with an empty cache.
"""

from __future__ import annotations

import itertools
import os
import uuid
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from typing import Any

import dask.array
import numpy as np
import xarray as xr

from finescale.config import DataConfig
from finescale.data.grids import coarsen as coarsen_blocks
from finescale.data.normalisation import NormStats
from finescale.data.sources import open_source
from finescale.data.times import align_time

#: a chunk is cached only when the budget holds at least this many of its size; a larger one
#: would evict everything else on every read
MIN_BLOCKS_IN_BUDGET = 8

Box = tuple[slice, slice, slice]  # time, y, x


class BlockCache:
    """Decoded blocks by key, the least recently used dropped beyond ``budget`` bytes.

    Belongs to one process: a copy that finds itself in another process (a forked DataLoader
    worker) starts empty. ``reads`` counts the blocks decoded (cache misses).
    """

    def __init__(self, budget: int):
        self.budget = int(budget)
        self.reads = 0
        self._blocks: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._pid = os.getpid()

    def __getstate__(self) -> dict[str, int]:
        return {"budget": self.budget}

    def __setstate__(self, state: dict[str, int]) -> None:
        self.__init__(state["budget"])  # type: ignore[misc]

    @property
    def nbytes(self) -> int:
        """Bytes held now."""
        return self._bytes

    def admits(self, nbytes: int) -> bool:
        """Whether blocks of ``nbytes`` are worth caching (``MIN_BLOCKS_IN_BUDGET`` of them fit)."""
        return nbytes * MIN_BLOCKS_IN_BUDGET <= self.budget

    def clear(self) -> None:
        self._blocks.clear()
        self._bytes = 0

    def lookup(self, key: Hashable) -> np.ndarray | None:
        """The block cached under ``key`` (now the most recently used), or None."""
        if self._pid != os.getpid():
            self.clear()
            self._pid = os.getpid()
        block = self._blocks.get(key)
        if block is not None:
            self._blocks.move_to_end(key)
        return block

    def put(self, key: Hashable, block: np.ndarray) -> None:
        """Keep a block just decoded, dropping the least recently used beyond the budget."""
        self.reads += 1
        self._blocks[key] = block
        self._bytes += block.nbytes
        while self._bytes > self.budget and self._blocks:
            _, old = self._blocks.popitem(last=False)
            self._bytes -= old.nbytes


class Sources:
    """Datasets by name ("lr", "hr"), opened lazily by ``opener`` once in each process.

    ``opened``: the datasets the creating process already has open (it then opens nothing).
    Pickled, only the opener travels.
    """

    def __init__(
        self,
        opener: Callable[[], Mapping[str, xr.Dataset]],
        opened: Mapping[str, xr.Dataset] | None = None,
    ):
        self.opener = opener
        self._opened = dict(opened) if opened is not None else None
        self._pid = os.getpid() if opened is not None else None

    def __getstate__(self) -> dict[str, Any]:
        return {"opener": self.opener}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["opener"])  # type: ignore[misc]

    def __getitem__(self, name: str) -> xr.Dataset:
        if self._pid != os.getpid():
            self._opened, self._pid = dict(self.opener()), os.getpid()
        return self._opened[name]  # type: ignore[index]


def open_sources(cfg: DataConfig) -> dict[str, xr.Dataset]:
    """The LR and HR sources of ``cfg``, lazy, on their common times.

    What :func:`finescale.data.pairs.open_pair` opens, without its alignment checks (the pair
    was checked once, by the process that made the datasets): a worker's way to open the pair.
    """
    lr, hr, _ = align_time(open_source(cfg.lr), open_source(cfg.hr))
    return {"lr": lr, "hr": hr}


class WindowReader:
    """Standardised variables of one source as a lazy (time, channel, y, x) array, read by window.

    ``names``: variables of ``sources[source]`` with dims (time, y, x), or (y, x) for a field
    without time (then T = 1), taken at ``times`` (all when None). ``coarsen`` > 1 block-averages
    them first (conservatively, lazily: a bias-correction target, HR truth on the LR grid).
    Values are standardised with ``stats``; missing values stay NaN (what a missing value means is
    the caller's: 0 for an input, no weight for a target).
    """

    def __init__(
        self,
        sources: Sources,
        source: str,
        names: Sequence[str],
        stats: NormStats,
        cache: BlockCache,
        times: np.ndarray | None = None,
        coarsen: int = 1,
    ):
        self.sources, self.source, self.names, self.stats = sources, source, list(names), stats
        self.cache, self.times, self.coarsen = cache, times, coarsen
        self.key = uuid.uuid4().hex  # this reader's blocks in a shared cache
        self._arrays: dict[str, Any] | None = None
        self._pid: int | None = None
        self._bounds: dict[str, list[list[int]] | None] = {}
        first = self.arrays()[self.names[0]] if self.names else np.zeros((0, 0, 0))
        self.shape: tuple[int, int, int, int] = (
            first.shape[0],
            len(self.names),
            first.shape[1],
            first.shape[2],
        )

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_arrays": None, "_pid": None, "_bounds": {}}

    def arrays(self) -> dict[str, Any]:
        """Each variable as a (time, y, x) dask or numpy array, opened in this process."""
        if self._pid != os.getpid():
            ds = self.sources[self.source]
            if self.times is not None and "time" in ds.dims:
                ds = ds.sel(time=self.times)
            arrays = {}
            for name in self.names:
                da = ds[name]
                if self.coarsen > 1:
                    da = coarsen_blocks(da, self.coarsen)
                if "time" not in da.dims:
                    da = da.expand_dims(time=1)
                arrays[name] = da.transpose("time", "y", "x").data
            self._arrays, self._pid = arrays, os.getpid()
            self._bounds = {name: _block_bounds(a, self.cache) for name, a in arrays.items()}
        return self._arrays  # type: ignore[return-value]

    def read(self, t: slice, y: slice, x: slice) -> np.ndarray:
        """Standardised values (nt, C, ny, nx) float32 of times ``t`` and the window (y, x); missing
        values stay NaN."""
        box = _checked(t, y, x, self.shape)
        out = np.empty(
            (box[0].stop - box[0].start, len(self.names), *(s.stop - s.start for s in box[1:])),
            np.float32,
        )
        for c, (name, raw) in enumerate(self._read_raw(box).items()):
            out[:, c] = self.stats.normalise_array(raw.astype(np.float64), name)
        return out

    def _read_raw(self, box: Box) -> dict[str, np.ndarray]:
        """Each variable's values on ``box``, from the blocks it overlaps where they are worth
        caching, else read directly; what is not in memory is decoded by one dask call (a call
        costs milliseconds of scheduling, whatever it reads)."""
        arrays = self.arrays()
        held: dict[Hashable, Any] = {}  # block key or variable name -> values
        pending: dict[Hashable, Any] = {}  # the same -> dask array to compute
        for name, array in arrays.items():
            bounds = self._bounds[name]
            if bounds is None:
                target = pending if isinstance(array, dask.array.Array) else held
                target[name] = array[box]
                continue
            for index in _overlapping(bounds, box):
                key = (self.key, name, index)
                block = self.cache.lookup(key)
                if block is None:
                    pending[key] = array.blocks[index]
                else:
                    held[key] = block
        if pending:
            for key, values in zip(
                pending, dask.compute(*pending.values(), scheduler="synchronous"), strict=True
            ):
                held[key] = np.asarray(values)
                if key not in arrays:  # a block, not a direct read
                    self.cache.put(key, held[key])
        out = {}
        for name, array in arrays.items():
            bounds = self._bounds[name]
            if bounds is None:
                out[name] = np.asarray(held[name])
                continue
            out[name] = np.empty([s.stop - s.start for s in box], array.dtype)
            for index in _overlapping(bounds, box):
                src, dst = [], []
                for s, b, i in zip(box, bounds, index, strict=True):
                    lo, hi = max(s.start, b[i]), min(s.stop, b[i + 1])
                    src.append(slice(lo - b[i], hi - b[i]))
                    dst.append(slice(lo - s.start, hi - s.start))
                out[name][tuple(dst)] = held[(self.key, name, index)][tuple(src)]
        return out


def _overlapping(bounds: list[list[int]], box: Box) -> Iterator[tuple[int, ...]]:
    """Indices of the blocks (with edges ``bounds`` along each dim) that ``box`` overlaps."""
    spans = [
        range(bisect_right(b, s.start) - 1, bisect_left(b, s.stop))
        for b, s in zip(bounds, box, strict=True)
    ]
    return itertools.product(*spans)


def _block_bounds(array: Any, cache: BlockCache) -> list[list[int]] | None:
    """Where the blocks of a dask array start and end along each dim (0, ..., n); None when the
    array is not read block by block: numpy, or blocks too large for ``cache``."""
    if not isinstance(array, dask.array.Array):
        return None
    if not cache.admits(int(np.prod([max(c) for c in array.chunks])) * array.dtype.itemsize):
        return None
    return [[0, *itertools.accumulate(int(n) for n in c)] for c in array.chunks]


def _checked(t: slice, y: slice, x: slice, shape: tuple[int, int, int, int]) -> Box:
    """The box with its bounds made explicit, or IndexError when it leaves the array."""
    sizes = (shape[0], shape[2], shape[3])
    box = tuple(slice(*s.indices(n)[:2]) for s, n in zip((t, y, x), sizes, strict=True))
    for s, given, n in zip(box, (t, y, x), sizes, strict=True):
        if (
            (given.start or 0) < 0
            or (given.stop is not None and given.stop > n)
            or s.stop <= s.start
        ):
            raise IndexError(f"window {(t, y, x)} outside the array of {sizes} (time, y, x)")
    return box  # type: ignore[return-value]

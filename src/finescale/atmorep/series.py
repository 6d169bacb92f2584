"""The fields of an AtmoRep model as standardised time series on one grid, read window by window.

Each field is one variable, or several stacked as vertical levels, from the LR, HR or static
source of a pair. The model works on one grid (``grid: hr`` or ``grid: lr``); a field from the
other source is brought to it: LR fields to the HR grid by interpolation of the window asked
for (only the LR cells around the window are read), HR fields to the LR grid by conservative
coarsening (lazily, chunk by chunk: this is how a bias-correction target, the HR truth on the
LR grid, is made). Time-dependent fields stay on disk and each hypercube reads its own window
(:class:`~finescale.data.windows.WindowReader`); static fields, one time step that every time
shares, are held in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import xarray as xr

from finescale.atmorep.settings import AtmoRepConfig
from finescale.data.grids import coarsen, is_global
from finescale.data.lr_to_hr import LRToHR
from finescale.data.normalisation import NormStats
from finescale.data.pairs import Pair
from finescale.data.windows import BlockCache, Sources, WindowReader, open_sources


@dataclass
class Series:
    """Standardised fields of one block of times on the model's grid.

    ``fields[name]`` is (T, L, h, w) on its stored grid: the model grid, or the LR grid when
    ``regrid[name]`` brings it to the HR grid; static fields have T = 1. A field is a
    :class:`~finescale.data.windows.WindowReader` (read window by window) or a float32 tensor
    (in memory).
    """

    times: np.ndarray  # (T,) datetime64[h]
    lat: np.ndarray  # (H, W) degrees, model grid
    lon: np.ndarray  # (H, W)
    fields: dict[str, torch.Tensor | WindowReader]
    regrid: dict[str, LRToHR | None]
    static: frozenset[str] = frozenset()

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.lat.shape)  # type: ignore[return-value]

    def levels(self, name: str) -> int:
        return int(self.fields[name].shape[1])

    def window(
        self, name: str, t0: int, nt: int, y0: int, ny: int, x0: int, nx: int
    ) -> torch.Tensor:
        """Field ``name`` on times t0..t0+nt-1 and the window (y0, x0, ny, nx): (L, nt, ny, nx).

        Missing values are NaN, and so is a value interpolated from one: what they mean is the
        caller's (the token pipeline gives inputs the mean and keeps targets out of the loss).
        """
        steps = self.fields[name].shape[0]
        if name in self.static:  # one time for every time
            times = slice(0, 1)
        elif t0 < 0 or t0 + nt > steps:
            raise IndexError(f"times {t0}..{t0 + nt - 1} outside 0..{steps - 1}")
        else:
            times = slice(t0, t0 + nt)
        to_grid = self.regrid[name]
        window = (y0, x0, ny, nx)
        box = (
            (slice(y0, y0 + ny), slice(x0, x0 + nx)) if to_grid is None else to_grid.lr_box(window)
        )
        data = _read(self.fields[name], times, box)
        if name in self.static:
            data = data.expand(nt, -1, -1, -1)
        cut = data if to_grid is None else to_grid(data, window, box)
        return cut.transpose(0, 1).contiguous()


def _read(
    field: torch.Tensor | WindowReader, times: slice, box: tuple[slice, slice]
) -> torch.Tensor:
    """(nt, L, rows, cols) of a field, missing values NaN."""
    if isinstance(field, WindowReader):
        return torch.from_numpy(field.read(times, *box))
    return field[times, :, box[0], box[1]]


def _static(ds: xr.Dataset, names: list[str], stats: NormStats) -> np.ndarray:
    """(1, L, y, x) float32: time-independent variables standardised, missing values NaN."""
    arrays = [stats.normalise_array(ds[v].values.astype(np.float64), v) for v in names]
    return np.stack(arrays)[None].astype(np.float32)


def load_series(
    cfg: AtmoRepConfig, pair: Pair, stats: NormStats, times: np.ndarray | None = None
) -> Series:
    """The fields of ``cfg`` at ``times`` (all when None), standardised, on the grid ``cfg.grid``.

    Time-dependent fields are opened lazily and read per window through a cache of
    ``cfg.train.cache_mb``; each process (a DataLoader worker) opens the pair's sources itself.
    """
    lr = pair.lr if times is None else pair.lr.sel(time=times)
    hr = pair.hr if times is None else pair.hr.sel(time=times)
    datasets = {"lr": lr, "hr": hr, "static": pair.static}
    grid = hr if cfg.grid == "hr" else lr
    factor = round(pair.ratio)
    sources = Sources(partial(open_sources, cfg.data), opened={"lr": pair.lr, "hr": pair.hr})
    cache = BlockCache(cfg.train.cache_mb * 2**20)
    to_hr: LRToHR | None = None
    fields: dict[str, torch.Tensor | WindowReader] = {}
    regrid: dict[str, LRToHR | None] = {}
    for name, f in cfg.fields.items():
        ds = datasets[f.source]
        where = f"fields.{name} ({f.source} source)"
        if ds is None:
            raise ValueError(f"{where}: the data section has no static source")
        variables = cfg.variables_of(name)
        missing = [v for v in variables if v not in ds.data_vars]
        if missing:
            raise ValueError(
                f"{where}: variables {missing} not found; "
                f"available: {', '.join(map(str, ds.data_vars))}"
            )
        needs_coarsening = cfg.grid == "lr" and f.source in ("hr", "static")
        if f.source == "static":
            if needs_coarsening:
                ds = xr.Dataset({v: coarsen(ds[v], factor) for v in variables})
            fields[name] = torch.from_numpy(_static(ds, variables, stats))
        else:
            fields[name] = WindowReader(
                sources,
                f.source,
                variables,
                stats,
                cache,
                times,
                coarsen=factor if needs_coarsening else 1,
            )
        regrid[name] = None
        if cfg.grid == "hr" and f.source == "lr":
            if to_hr is None:
                to_hr = LRToHR(
                    pair.lr.lat,
                    pair.lr.lon,
                    pair.hr.lat,
                    pair.hr.lon,
                    "bilinear",
                    is_global(pair.hr.lon.values),
                )
            regrid[name] = to_hr
    return Series(
        times=np.asarray(grid.time.values).astype("datetime64[h]"),
        lat=np.asarray(grid.lat.values, dtype=float),
        lon=np.asarray(grid.lon.values, dtype=float),
        fields=fields,
        regrid=regrid,
        static=frozenset(n for n, f in cfg.fields.items() if f.source == "static"),
    )

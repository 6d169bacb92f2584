"""The fields of an AtmoRep model as standardised time series on one grid, in memory.

Each field is one variable, or several stacked as vertical levels, from the LR, HR or static
source of a pair. The model works on one grid (``grid: hr`` or ``grid: lr``); a field from the
other source is brought to it: LR fields to the HR grid by interpolation of the window asked
for (the LR stays LR in memory), HR fields to the LR grid by conservative coarsening (done
once: this is how a bias-correction target, the HR truth on the LR grid, is made). Static
fields have one time step that every time shares.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr

from finescale.config import AtmoRepConfig
from finescale.data.grids import coarsen
from finescale.data.pairs import Pair
from finescale.data.samples import LRToHR, is_global
from finescale.data.transforms import NormStats


@dataclass
class Series:
    """Standardised fields of one block of times on the model's grid.

    ``fields[name]`` is (T, L, h, w) float32 on its stored grid: the model grid, or the LR grid
    when ``regrid[name]`` brings it to the HR grid; static fields have T = 1.
    """

    times: np.ndarray  # (T,) datetime64[h]
    lat: np.ndarray  # (H, W) degrees, model grid
    lon: np.ndarray  # (H, W)
    fields: dict[str, torch.Tensor]
    regrid: dict[str, LRToHR | None]
    static: frozenset[str] = frozenset()

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.lat.shape)  # type: ignore[return-value]

    def levels(self, name: str) -> int:
        return int(self.fields[name].shape[1])

    def window(self, name: str, t0: int, nt: int, y0: int, ny: int, x0: int, nx: int) -> torch.Tensor:
        """Field ``name`` on times t0..t0+nt-1 and the window (y0, x0, ny, nx): (L, nt, ny, nx).

        Missing values are NaN, and so is a value interpolated from one: what they mean is the
        caller's (the token pipeline gives inputs the mean and keeps targets out of the loss).
        """
        data = self.fields[name]
        if name in self.static:  # one time for every time
            data = data.expand(nt, -1, -1, -1)
        else:
            if t0 < 0 or t0 + nt > data.shape[0]:
                raise IndexError(f"times {t0}..{t0 + nt - 1} outside 0..{data.shape[0] - 1}")
            data = data[t0 : t0 + nt]
        to_grid = self.regrid[name]
        if to_grid is None:
            cut = data[..., y0 : y0 + ny, x0 : x0 + nx]
        else:
            cut = to_grid(data, (y0, x0, ny, nx))
        return cut.transpose(0, 1).contiguous()


def _standardised(ds: xr.Dataset, names: list[str], stats: NormStats, where: str) -> np.ndarray:
    """(T, L, y, x) (or (1, L, y, x) without time) float32, missing values NaN; missing variables are
    errors naming the source."""
    missing = [v for v in names if v not in ds.data_vars]
    if missing:
        raise ValueError(f"{where}: variables {missing} not found; available: {', '.join(map(str, ds.data_vars))}")
    arrays = []
    for v in names:
        values = stats.normalise_array(ds[v].values.astype(np.float64), v)
        arrays.append(np.asarray(values if "time" in ds[v].dims else values[None], dtype=np.float32))
    return np.stack(arrays, axis=1)


def load_series(cfg: AtmoRepConfig, pair: Pair, stats: NormStats, times: np.ndarray | None = None) -> Series:
    """The fields of ``cfg`` at ``times`` (all when None), standardised, on the grid ``cfg.grid``."""
    lr = pair.lr if times is None else pair.lr.sel(time=times)
    hr = pair.hr if times is None else pair.hr.sel(time=times)
    sources = {"lr": lr, "hr": hr, "static": pair.static}
    grid = hr if cfg.grid == "hr" else lr
    factor = round(pair.ratio)
    to_hr: LRToHR | None = None
    fields: dict[str, torch.Tensor] = {}
    regrid: dict[str, LRToHR | None] = {}
    for name, f in cfg.fields.items():
        ds = sources[f.source]
        where = f"fields.{name} ({f.source} source)"
        if ds is None:
            raise ValueError(f"{where}: the data section has no static source")
        variables = cfg.variables_of(name)
        needs_coarsening = cfg.grid == "lr" and f.source in ("hr", "static")
        if needs_coarsening:
            missing = [v for v in variables if v not in ds.data_vars]
            if missing:
                raise ValueError(f"{where}: variables {missing} not found")
            ds = xr.Dataset({v: coarsen(ds[v], factor) for v in variables})
        fields[name] = torch.from_numpy(_standardised(ds, variables, stats, where))
        regrid[name] = None
        if cfg.grid == "hr" and f.source == "lr":
            if to_hr is None:
                to_hr = LRToHR(pair.lr.lat, pair.lr.lon, pair.hr.lat, pair.hr.lon, "bilinear",
                               is_global(pair.hr.lon.values))
            regrid[name] = to_hr
    return Series(
        times=np.asarray(grid.time.values).astype("datetime64[h]"),
        lat=np.asarray(grid.lat.values, dtype=float),
        lon=np.asarray(grid.lon.values, dtype=float),
        fields=fields,
        regrid=regrid,
        static=frozenset(n for n, f in cfg.fields.items() if f.source == "static"),
    )

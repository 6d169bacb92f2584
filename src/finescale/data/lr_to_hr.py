"""LR fields brought to windows of the HR grid, on any device: :class:`LRToHR`.

LR fields go to the HR grid with ``torch.nn.functional.grid_sample`` at the fractional source
indices from :func:`finescale.data.regrid.source_indices`, so any window is interpolated alone,
from the LR cells around it, on any device, and on regular or projected grids alike. Apart from
:mod:`finescale.data.patches` because generation and AtmoRep's series use it on its own.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr

from finescale.data.regrid import source_indices


class LRToHR:
    """Brings LR fields (B, C, h, w) to windows of the HR grid, by grid_sample at fixed positions.

    The positions are the fractional LR (row, column) of every HR point; a window needs only
    the LR cells around its own points (:meth:`lr_box`), so a sample reads those alone.
    """

    def __init__(
        self,
        lr_lat: xr.DataArray,
        lr_lon: xr.DataArray,
        hr_lat: xr.DataArray,
        hr_lon: xr.DataArray,
        method: str = "bilinear",
        periodic_lon: bool = False,
    ):
        self.rows, self.cols = source_indices(
            lr_lat, lr_lon, hr_lat, hr_lon, periodic_lon=periodic_lon
        )  # (H, W)
        self.lr_shape: tuple[int, int] = tuple(np.asarray(lr_lat).shape)  # type: ignore[assignment]
        self.periodic = periodic_lon
        self.pad = 2 if periodic_lon else 0  # columns wrapped onto each side for the cubic stencil
        if method not in ("bilinear", "bicubic"):
            raise ValueError(f"unknown interpolation '{method}'; use bilinear or bicubic")
        self.mode = method

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.rows.shape)  # type: ignore[return-value]

    def lr_box(self, window: tuple[int, int, int, int]) -> tuple[slice, slice]:
        """LR rows and columns the interpolation of the HR window (y0, x0, P, Q) reads.

        The cells from one before to two after each fractional position (the cubic stencil),
        clipped to the grid; every column on a periodic grid (the stencil wraps round).
        """
        y0, x0, p, q = window
        h, w = self.lr_shape
        rows = _stencil(self.rows[y0 : y0 + p, x0 : x0 + q], h)
        cols = slice(0, w) if self.periodic else _stencil(self.cols[y0 : y0 + p, x0 : x0 + q], w)
        return rows, cols

    def __call__(
        self,
        lr: torch.Tensor,
        window: tuple[int, int, int, int] | None = None,
        box: tuple[slice, slice] | None = None,
    ) -> torch.Tensor:
        """lr (B, C, h, w) -> (B, C, P, Q) on the HR window (y0, x0, P, Q) (None: whole grid).

        ``box``: the LR rows and columns ``lr`` holds, from :meth:`lr_box` (None: all of them).
        """
        y0, x0, p, q = window if window is not None else (0, 0, *self.shape)
        r0, c0 = (box[0].start, box[1].start) if box is not None else (0, 0)
        h, w = lr.shape[-2:]
        grid = np.empty((p, q, 2), np.float32)
        # align_corners=True maps -1 and +1 to the centres of the first and last LR cells held;
        # in place: a whole large domain makes few temporaries
        for k, (index, start, pad, n) in enumerate(
            [(self.cols, c0, self.pad, w), (self.rows, r0, 0, h)]
        ):
            g = index[y0 : y0 + p, x0 : x0 + q] - (start - pad)
            g *= 2.0
            g /= n + 2 * pad - 1
            g -= 1.0
            grid[..., k] = g
        grid = torch.from_numpy(grid)  # (P, Q, 2): x then y
        if self.pad:
            lr = torch.cat([lr[..., -self.pad :], lr, lr[..., : self.pad]], dim=-1)
        grid = grid.to(device=lr.device, dtype=lr.dtype).expand(lr.shape[0], -1, -1, -1)
        return F.grid_sample(lr, grid, mode=self.mode, padding_mode="border", align_corners=True)


def _stencil(index: np.ndarray, n: int) -> slice:
    """Cells floor(i) - 1 .. floor(i) + 2 of fractional indices ``index`` in 0..n-1, at least
    two."""
    lo = min(max(int(np.floor(index.min())) - 1, 0), max(n - 2, 0))
    hi = max(min(int(np.floor(index.max())) + 3, n), lo + 2)
    return slice(lo, min(hi, n))

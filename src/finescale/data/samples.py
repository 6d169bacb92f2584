"""Samples for the models: normalised LR fields on the HR grid, static fields, features, targets.

A sample is a window of the HR grid at one time:

- ``cond`` (C_cond, P, Q): LR variables brought to the HR grid, static HR fields, sin/cos of
  lat and lon, sin/cos of the hour of day and day of year, all standardised;
- ``base`` (C_out, P, Q): for each target variable, the interpolated LR field of the same name
  (zeros where the LR lacks it): the residual's base;
- ``target`` (C_out, P, Q): the standardised HR truth (training only);
- ``area`` (1, P, Q): cos(latitude) normalised to mean 1 over the grid, weighting the loss;
  0 where the HR target is missing (NaN in a source with ``missing: mask``).

LR fields go to the HR grid with ``torch.nn.functional.grid_sample`` at the fractional source
indices from :func:`finescale.data.grids.source_indices`, so any window is interpolated alone,
on any device, and on regular or projected grids alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr

from finescale.config import ModelConfig
from finescale.data.grids import source_indices
from finescale.data.transforms import NormStats

POSITION_FEATURES = ("sin_lat", "cos_lat", "sin_lon", "cos_lon")
TIME_FEATURES = ("sin_hour", "cos_hour", "sin_doy", "cos_doy")


@dataclass(frozen=True)
class Layout:
    """Which variable sits in which channel; saved with every checkpoint."""

    lr_variables: tuple[str, ...]
    static_variables: tuple[str, ...]
    target_variables: tuple[str, ...]
    position: bool
    time: bool

    @property
    def features(self) -> tuple[str, ...]:
        return (POSITION_FEATURES if self.position else ()) + (TIME_FEATURES if self.time else ())

    @property
    def cond_channels(self) -> int:
        return len(self.lr_variables) + len(self.static_variables) + len(self.features)

    @property
    def base_index(self) -> tuple[int | None, ...]:
        """Channel of each target variable among the LR variables (None: not in the LR)."""
        return tuple(self.lr_variables.index(v) if v in self.lr_variables else None for v in self.target_variables)

    def to_dict(self) -> dict:
        return {
            "lr_variables": list(self.lr_variables),
            "static_variables": list(self.static_variables),
            "target_variables": list(self.target_variables),
            "position": self.position,
            "time": self.time,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Layout:
        return cls(
            tuple(d["lr_variables"]), tuple(d["static_variables"]), tuple(d["target_variables"]),
            bool(d["position"]), bool(d["time"]),
        )


def _gridded(ds: xr.Dataset | None) -> list[str]:
    """Variables of ``ds`` on its (y, x) grid, in file order."""
    if ds is None:
        return []
    return [str(v) for v in ds.data_vars if {"y", "x"} <= set(ds[v].dims)]


def make_layout(cfg: ModelConfig, lr: xr.Dataset, hr: xr.Dataset, static: xr.Dataset | None) -> Layout:
    """The layout a model config asks for, checked against the data (unknown names are errors)."""

    def pick(wanted: list[str] | None, available: list[str], what: str) -> tuple[str, ...]:
        if wanted is None:
            return tuple(available)
        unknown = [v for v in wanted if v not in available]
        if unknown:
            raise ValueError(f"model: {what} {unknown} not in the data; available: {', '.join(available) or 'none'}")
        return tuple(wanted)

    lr_time = [v for v in _gridded(lr) if "time" in lr[v].dims]
    hr_time = [v for v in _gridded(hr) if "time" in hr[v].dims]
    c = cfg.conditioning
    return Layout(
        lr_variables=pick(c.lr_variables, lr_time, "conditioning.lr_variables"),
        static_variables=pick(c.static_variables, _gridded(static), "conditioning.static_variables"),
        target_variables=pick(cfg.target_variables, hr_time, "target_variables"),
        position=c.position,
        time=c.time,
    )


def is_global(lon: np.ndarray) -> bool:
    """A grid whose longitudes go round the globe (spacing included)."""
    row = np.unwrap(np.deg2rad(np.asarray(lon)[0]))
    span = np.rad2deg(abs(row[-1] - row[0]))
    step = span / max(row.size - 1, 1)
    return bool(span + step >= 359.5)


class LRToHR:
    """Brings LR fields (B, C, h, w) to windows of the HR grid, by grid_sample at fixed positions."""

    def __init__(
        self,
        lr_lat: xr.DataArray,
        lr_lon: xr.DataArray,
        hr_lat: xr.DataArray,
        hr_lon: xr.DataArray,
        method: str = "bilinear",
        periodic_lon: bool = False,
    ):
        rows, cols = source_indices(lr_lat, lr_lon, hr_lat, hr_lon, periodic_lon=periodic_lon)
        h, w = np.asarray(lr_lat).shape
        self.periodic = periodic_lon
        self.pad = 2 if periodic_lon else 0  # columns wrapped onto each side for the cubic stencil
        # align_corners=True maps -1 and +1 to the centres of the first and last LR cells
        gx = 2.0 * (cols + self.pad) / (w + 2 * self.pad - 1) - 1.0
        gy = 2.0 * rows / (h - 1) - 1.0
        self.grid = torch.from_numpy(np.stack([gx, gy], axis=-1).astype(np.float32))  # (H, W, 2)
        if method not in ("bilinear", "bicubic"):
            raise ValueError(f"unknown interpolation '{method}'; use bilinear or bicubic")
        self.mode = method

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.grid.shape[:2])  # type: ignore[return-value]

    def __call__(self, lr: torch.Tensor, window: tuple[int, int, int, int] | None = None) -> torch.Tensor:
        """lr (B, C, h, w) -> (B, C, P, Q) on the HR window (y0, x0, P, Q) (None: whole grid)."""
        grid = self.grid if window is None else self.grid[window[0] : window[0] + window[2], window[1] : window[1] + window[3]]
        if self.pad:
            lr = torch.cat([lr[..., -self.pad :], lr, lr[..., : self.pad]], dim=-1)
        grid = grid.to(device=lr.device, dtype=lr.dtype).expand(lr.shape[0], -1, -1, -1)
        return F.grid_sample(lr, grid, mode=self.mode, padding_mode="border", align_corners=True)


def time_features(times: np.ndarray) -> np.ndarray:
    """sin/cos of the UTC hour of day and of the day of year, (T, 4) float32."""
    t = np.asarray(times, dtype="datetime64[h]")
    hour = (t - t.astype("datetime64[D]")).astype(float)
    doy = (t.astype("datetime64[D]") - t.astype("datetime64[Y]")).astype(float)
    a, b = 2 * np.pi * hour / 24.0, 2 * np.pi * doy / 365.25
    return np.stack([np.sin(a), np.cos(a), np.sin(b), np.cos(b)], axis=1).astype(np.float32)


def position_features(lat: xr.DataArray, lon: xr.DataArray) -> np.ndarray:
    """sin/cos of latitude and longitude, (4, H, W) float32."""
    la, lo = np.deg2rad(np.asarray(lat, dtype=float)), np.deg2rad(np.asarray(lon, dtype=float))
    return np.stack([np.sin(la), np.cos(la), np.sin(lo), np.cos(lo)]).astype(np.float32)


def _standardised(ds: xr.Dataset, names: Sequence[str], stats: NormStats) -> np.ndarray:
    """Stack standardised variables along a new channel axis 1 (or 0 without time), float32; NaN stays."""
    arrays = [np.asarray(stats.normalise_array(ds[v].values.astype(np.float64), v), dtype=np.float32) for v in names]
    return np.stack(arrays, axis=-3) if arrays else np.zeros((0,), np.float32)


def _normalised(ds: xr.Dataset, names: Sequence[str], stats: NormStats) -> np.ndarray:
    """:func:`_standardised` with missing values (NaN) at 0, the variable's mean."""
    return np.nan_to_num(_standardised(ds, names, stats), nan=0.0)


@dataclass
class Fields:
    """Standardised fields of a block of times, in memory, ready to be cut into samples."""

    times: np.ndarray  # (T,) datetime64
    lr: torch.Tensor  # (T, C_lr, h, w)
    static: torch.Tensor  # (C_s, H, W)
    position: torch.Tensor  # (4, H, W)
    area: torch.Tensor  # (1, H, W): cos(latitude) / its mean, the loss's area weights
    target: torch.Tensor | None  # (T, C_out, H, W), None at inference; missing values at 0
    valid: torch.Tensor | None = None  # (T, 1, H, W): 1 where every target is present; None: everywhere


def load_fields(
    layout: Layout,
    stats: NormStats,
    lr: xr.Dataset,
    static: xr.Dataset | None,
    hr_lat: xr.DataArray,
    hr_lon: xr.DataArray,
    hr: xr.Dataset | None = None,
    times: np.ndarray | None = None,
) -> Fields:
    """Read and standardise the layout's variables at ``times`` (all LR times when None)."""
    if times is not None:
        lr = lr.sel(time=times)
        hr = hr.sel(time=times) if hr is not None else None
    static_arr = _normalised(static, layout.static_variables, stats) if layout.static_variables else None
    shape = np.asarray(hr_lat).shape
    area = np.cos(np.deg2rad(np.asarray(hr_lat, dtype=float)))
    target = valid = None
    if hr is not None:
        target = _standardised(hr, layout.target_variables, stats)
        present = np.isfinite(target).all(axis=1, keepdims=True)
        valid = None if present.all() else torch.from_numpy(present.astype(np.float32))
        target = torch.from_numpy(np.nan_to_num(target, nan=0.0))
    return Fields(
        times=lr.time.values,
        lr=torch.from_numpy(_normalised(lr, layout.lr_variables, stats)),
        static=torch.from_numpy(static_arr if static_arr is not None else np.zeros((0, *shape), np.float32)),
        position=torch.from_numpy(position_features(hr_lat, hr_lon)),
        area=torch.from_numpy((area / area.mean())[None].astype(np.float32)),
        target=target,
        valid=valid,
    )


def conditioning(
    fields: Fields, layout: Layout, to_hr: LRToHR, index: torch.Tensor | Sequence[int], window: tuple[int, int, int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``cond`` (B, C_cond, P, Q) and ``base`` (B, C_out, P, Q) for times ``index`` on one window."""
    y0, x0, p, q = window
    lr_hr = to_hr(fields.lr[list(index)], window)
    b = lr_hr.shape[0]
    parts = [lr_hr, fields.static[:, y0 : y0 + p, x0 : x0 + q].expand(b, -1, -1, -1)]
    if layout.position:
        parts.append(fields.position[:, y0 : y0 + p, x0 : x0 + q].expand(b, -1, -1, -1))
    if layout.time:
        feats = torch.from_numpy(time_features(fields.times[list(index)]))
        parts.append(feats[:, :, None, None].expand(-1, -1, p, q))
    base = torch.zeros(b, len(layout.target_variables), p, q)
    for k, i in enumerate(layout.base_index):
        if i is not None:
            base[:, k] = lr_hr[:, i]
    return torch.cat(parts, dim=1), base


class PatchDataset(torch.utils.data.Dataset):
    """Random (time, window) patches; sample ``i`` is the same for a given seed, whatever the order."""

    def __init__(
        self, fields: Fields, layout: Layout, to_hr: LRToHR, patch_size: int, length: int, seed: int = 0,
        start: int = 0,
    ):
        """``length`` samples; item ``i`` is sample ``start + i`` of the run (a resumed run skips what it saw)."""
        if fields.target is None:
            raise ValueError("training patches need HR targets")
        self.fields, self.layout, self.to_hr, self.length, self.seed = fields, layout, to_hr, length, seed
        self.start = start
        h, w = to_hr.shape
        self.patch = (min(patch_size, h), min(patch_size, w))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng((self.seed, self.start + i))
        (h, w), (p, q) = self.to_hr.shape, self.patch
        t = int(rng.integers(self.fields.lr.shape[0]))
        y0, x0 = int(rng.integers(h - p + 1)), int(rng.integers(w - q + 1))
        cond, base = conditioning(self.fields, self.layout, self.to_hr, [t], (y0, x0, p, q))
        target = self.fields.target[t, :, y0 : y0 + p, x0 : x0 + q]  # type: ignore[index]
        area = self.fields.area[:, y0 : y0 + p, x0 : x0 + q]
        if self.fields.valid is not None:  # missing targets weigh nothing in the loss
            area = area * self.fields.valid[t, :, y0 : y0 + p, x0 : x0 + q]
        return {"cond": cond[0], "base": base[0], "target": target, "area": area}

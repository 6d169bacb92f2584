"""Patches for the models: normalised LR fields on the HR grid, static fields, features, targets.

A patch (a training example; generation uses the whole domain or its tiles) is a window of the
HR grid at one time:

- ``cond`` (C_cond, P, Q): LR variables brought to the HR grid, static HR fields, sin/cos of
  lat and lon, sin/cos of the hour of day and day of year, the whole LR domain's means of the
  layout's ``domain_means`` (constant over the patch), all standardised, and the domain-mean
  wind's flow up the terrain (m/s; :mod:`finescale.data.terrain`) where the layout asks for it;
- ``base`` (C_out, P, Q): for each target variable, the interpolated LR field of the same name
  (zeros where the LR lacks it): the residual's base;
- ``target`` (C_out, P, Q): the standardised HR truth (training only);
- ``area`` (1, P, Q): cos(latitude) normalised to mean 1 over the grid, weighting the loss;
  0 where the HR target is missing (NaN in a source with ``missing: mask``).

LR fields go to the HR grid by :class:`~finescale.data.lr_to_hr.LRToHR`, window by window; the
order of the channels is the :class:`~finescale.data.channels.Layout`'s.

Training streams: :class:`LazyFields` keep the LR and HR on disk, and each training patch reads
its HR window and the LR cells around it (:mod:`finescale.data.windows`), in DataLoader worker
processes that open the data themselves. Generation holds a block of LR times in memory
(:class:`Fields`; the LR is small) and builds the conditioning of the whole domain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr

from finescale.data.channels import Layout
from finescale.data.lr_to_hr import LRToHR
from finescale.data.normalisation import NormStats
from finescale.data.terrain import terrain_slope
from finescale.data.windows import BlockCache, Sources, WindowReader


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


def domain_means(
    lr: xr.Dataset, names: Sequence[str], stats: NormStats | None = None
) -> np.ndarray:
    """(T, K) float32: each variable's mean over the LR domain at each time, weighted by
    cos(latitude), standardised with ``stats`` (None: in the variable's own units); missing
    values are left out (a time with none: 0).

    Computed from the whole LR grid, whatever window a sample then takes: the large-scale state
    a patch cannot see. Lazy sources are read variable by variable, chunk by chunk.
    """
    if not names:
        return np.zeros((lr.sizes["time"], 0), np.float32)
    weights = np.cos(np.deg2rad(lr["lat"])).clip(min=0.0).fillna(0.0)
    fields = [lr[v] if stats is None else stats.normalise_array(lr[v], v) for v in names]
    columns = [f.weighted(weights).mean(("y", "x")).values for f in fields]
    return np.nan_to_num(np.stack(columns, axis=1).astype(np.float32), nan=0.0)


def _standardised(ds: xr.Dataset, names: Sequence[str], stats: NormStats) -> np.ndarray:
    """Stack standardised variables along a new channel axis 1 (or 0 without time), float32; NaN
    stays."""
    arrays = [
        np.asarray(stats.normalise_array(ds[v].values.astype(np.float64), v), dtype=np.float32)
        for v in names
    ]
    return np.stack(arrays, axis=-3) if arrays else np.zeros((0,), np.float32)


def _normalised(ds: xr.Dataset, names: Sequence[str], stats: NormStats) -> np.ndarray:
    """:func:`_standardised` with missing values (NaN) at 0, the variable's mean."""
    return np.nan_to_num(_standardised(ds, names, stats), nan=0.0)


@dataclass
class Fields:
    """Standardised fields of a block of times, in memory, ready to be cut into samples."""

    times: np.ndarray  # (T,) datetime64
    lr: torch.Tensor  # (T, C_lr, h, w)
    means: torch.Tensor  # (T, K): the layout's domain means
    wind: torch.Tensor  # (T, 2): the domain-mean upslope wind (m/s); (T, 0) without
    static: torch.Tensor  # (C_s, H, W)
    slope: torch.Tensor  # (2, H, W): the terrain's east/north gradient (m/m); (0, H, W) without
    position: torch.Tensor  # (4, H, W)
    area: torch.Tensor  # (1, H, W): cos(latitude) / its mean, the loss's area weights
    target: torch.Tensor | None  # (T, C_out, H, W), None at inference; missing values at 0
    valid: torch.Tensor | None = (
        None  # (T, 1, H, W): 1 where every target is present; None: everywhere
    )

    def lr_window(self, t: int, box: tuple[slice, slice]) -> torch.Tensor:
        """The LR at time ``t`` on the rows and columns ``box``: (1, C_lr, rows, cols)."""
        return self.lr[t : t + 1, :, box[0], box[1]]

    def target_window(self, t: int, rows: slice, cols: slice) -> tuple[torch.Tensor, torch.Tensor]:
        """The HR target (C_out, P, Q) at time ``t`` on a window, missing values at 0, and (1, P, Q)
        1 where every target is present, else 0."""
        if self.target is None:
            raise ValueError("training patches need HR targets")
        target = self.target[t, :, rows, cols]
        present = (
            self.valid[t, :, rows, cols] if self.valid is not None else torch.ones_like(target[:1])
        )
        return target, present


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
    static_fields, position, area, slope = _grid_fields(layout, stats, static, hr_lat, hr_lon)
    target = valid = None
    if hr is not None:
        target = _standardised(hr, layout.target_variables, stats)
        present = np.isfinite(target).all(axis=1, keepdims=True)
        valid = None if present.all() else torch.from_numpy(present.astype(np.float32))
        target = torch.from_numpy(np.nan_to_num(target, nan=0.0))
    return Fields(
        times=lr.time.values,
        lr=torch.from_numpy(_normalised(lr, layout.lr_variables, stats)),
        means=torch.from_numpy(domain_means(lr, layout.domain_means, stats)),
        wind=torch.from_numpy(_wind(lr, layout)),
        static=static_fields,
        slope=slope,
        position=position,
        area=area,
        target=target,
        valid=valid,
    )


def _grid_fields(
    layout: Layout,
    stats: NormStats,
    static: xr.Dataset | None,
    hr_lat: xr.DataArray,
    hr_lon: xr.DataArray,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The HR fields without time: standardised static (C_s, H, W), position (4, H, W), area
    (1, H, W) and the terrain's slope (2, H, W; 0 channels without ``upslope``)."""
    shape = np.asarray(hr_lat).shape
    if layout.static_variables:
        static_arr = _normalised(static, layout.static_variables, stats)  # type: ignore[arg-type]
    else:
        static_arr = np.zeros((0, *shape), np.float32)
    if layout.upslope is not None:
        orog = static[layout.upslope.orography].values  # type: ignore[index]
        slope = terrain_slope(orog, np.asarray(hr_lat), np.asarray(hr_lon))
    else:
        slope = np.zeros((0, *shape), np.float32)
    area = np.cos(np.deg2rad(np.asarray(hr_lat, dtype=float)))
    return (
        torch.from_numpy(static_arr),
        torch.from_numpy(position_features(hr_lat, hr_lon)),
        torch.from_numpy((area / area.mean())[None].astype(np.float32)),
        torch.from_numpy(slope),
    )


def _wind(lr: xr.Dataset, layout: Layout) -> np.ndarray:
    """(T, 2) the domain-mean wind of the layout's ``upslope`` (m/s), (T, 0) without."""
    if layout.upslope is None:
        return np.zeros((lr.sizes["time"], 0), np.float32)
    return domain_means(lr, (layout.upslope.u, layout.upslope.v))  # in m/s


def conditioning(
    fields: Fields,
    layout: Layout,
    to_hr: LRToHR,
    index: torch.Tensor | Sequence[int],
    window: tuple[int, int, int, int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """``cond`` (B, C_cond, P, Q) and ``base`` (B, C_out, P, Q) for times ``index`` on one
    window."""
    y0, x0, p, q = window
    lr_hr = to_hr(fields.lr[list(index)], window)
    return _assemble(
        layout,
        lr_hr,
        fields.static[:, y0 : y0 + p, x0 : x0 + q],
        fields.position[:, y0 : y0 + p, x0 : x0 + q],
        fields.times[list(index)],
        fields.means[list(index)],
        fields.wind[list(index)],
        fields.slope[:, y0 : y0 + p, x0 : x0 + q],
    )


def _assemble(
    layout: Layout,
    lr_hr: torch.Tensor,
    static: torch.Tensor,
    position: torch.Tensor,
    times: np.ndarray,
    means: torch.Tensor,
    wind: torch.Tensor,
    slope: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``cond`` and ``base`` from the LR on the window (B, C_lr, P, Q), the window's static
    (C_s, P, Q) and position (4, P, Q) fields, the B times, their domain means (B, K) and
    upslope winds (B, 2; m/s), and the window's terrain slope (2, P, Q)."""
    b, (p, q) = lr_hr.shape[0], lr_hr.shape[-2:]
    parts = [lr_hr, static.expand(b, -1, -1, -1)]
    if layout.position:
        parts.append(position.expand(b, -1, -1, -1))
    if layout.time:
        feats = torch.from_numpy(time_features(times))
        parts.append(feats[:, :, None, None].expand(-1, -1, p, q))
    if layout.domain_means:
        parts.append(means[:, :, None, None].expand(-1, -1, p, q))
    if layout.upslope is not None:  # U . grad(h): (B, 2) x (2, P, Q) -> (B, 1, P, Q), in m/s
        parts.append(torch.einsum("bk,kpq->bpq", wind, slope)[:, None])
    base = torch.zeros(b, len(layout.target_variables), p, q)
    for k, i in enumerate(layout.base_index):
        if i is not None:
            base[:, k] = lr_hr[:, i]
    return torch.cat(parts, dim=1), base


@dataclass
class LazyFields:
    """The fields of a block of times for training, LR and HR read window by window.

    The time-dependent fields stay on disk (:class:`~finescale.data.windows.WindowReader`);
    only the HR fields without time are held in memory.
    """

    times: np.ndarray  # (T,) datetime64
    lr: WindowReader  # (T, C_lr, h, w)
    means: torch.Tensor  # (T, K): the layout's domain means, computed once
    wind: torch.Tensor  # (T, 2): the domain-mean upslope wind (m/s); (T, 0) without
    target: WindowReader  # (T, C_out, H, W)
    static: torch.Tensor  # (C_s, H, W)
    slope: torch.Tensor  # (2, H, W): the terrain's east/north gradient (m/m); (0, H, W) without
    position: torch.Tensor  # (4, H, W)
    area: torch.Tensor  # (1, H, W): cos(latitude) / its mean, the loss's area weights

    def lr_window(self, t: int, box: tuple[slice, slice]) -> torch.Tensor:
        """The LR at time ``t`` on the rows and columns ``box``: (1, C_lr, rows, cols), missing
        values at 0."""
        return torch.from_numpy(np.nan_to_num(self.lr.read(slice(t, t + 1), *box), nan=0.0))

    def target_window(self, t: int, rows: slice, cols: slice) -> tuple[torch.Tensor, torch.Tensor]:
        """The HR target (C_out, P, Q) at time ``t`` on a window, missing values at 0, and (1, P, Q)
        1 where every target is present, else 0."""
        target = self.target.read(slice(t, t + 1), rows, cols)[0]
        present = np.isfinite(target).all(axis=0, keepdims=True).astype(np.float32)
        return torch.from_numpy(np.nan_to_num(target, nan=0.0)), torch.from_numpy(present)

    def clear_cache(self) -> None:
        """Drop the chunks this process holds (the training process, once the DataLoader workers
        read the samples)."""
        self.lr.cache.clear()
        self.target.cache.clear()


def lazy_fields(
    layout: Layout,
    stats: NormStats,
    sources: Sources,
    static: xr.Dataset | None,
    hr_lat: xr.DataArray,
    hr_lon: xr.DataArray,
    times: np.ndarray,
    cache: BlockCache,
) -> LazyFields:
    """The layout's fields at ``times`` for :class:`PatchDataset`: LR and HR opened lazily from
    ``sources`` ("lr", "hr"), read through ``cache``; static fields and the domain means read
    and standardised now."""
    static_fields, position, area, slope = _grid_fields(layout, stats, static, hr_lat, hr_lon)
    return LazyFields(
        times=np.asarray(times),
        lr=WindowReader(sources, "lr", layout.lr_variables, stats, cache, times),
        means=torch.from_numpy(
            domain_means(sources["lr"].sel(time=times), layout.domain_means, stats)
        ),
        wind=torch.from_numpy(_wind(sources["lr"].sel(time=times), layout)),
        target=WindowReader(sources, "hr", layout.target_variables, stats, cache, times),
        static=static_fields,
        slope=slope,
        position=position,
        area=area,
    )


class PatchDataset(torch.utils.data.Dataset):
    """Random (time, window) patches; sample ``i`` is the same for a given seed, whatever the order.

    From :class:`LazyFields` each sample reads its own HR window and the LR cells around it,
    nothing more; :class:`Fields` (in memory) give the same samples.
    """

    def __init__(
        self,
        fields: LazyFields | Fields,
        layout: Layout,
        to_hr: LRToHR,
        patch_size: int,
        length: int,
        seed: int = 0,
        start: int = 0,
    ):
        """``length`` samples; item ``i`` is sample ``start + i`` of the run (a resumed run skips
        what it saw)."""
        if isinstance(fields, Fields) and fields.target is None:
            raise ValueError("training patches need HR targets")
        self.fields, self.layout, self.to_hr, self.length, self.seed = (
            fields,
            layout,
            to_hr,
            length,
            seed,
        )
        self.start = start
        h, w = to_hr.shape
        self.patch = (min(patch_size, h), min(patch_size, w))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng((self.seed, self.start + i))
        (h, w), (p, q) = self.to_hr.shape, self.patch
        t = int(rng.integers(len(self.fields.times)))
        y0, x0 = int(rng.integers(h - p + 1)), int(rng.integers(w - q + 1))
        window, rows, cols = (y0, x0, p, q), slice(y0, y0 + p), slice(x0, x0 + q)
        box = self.to_hr.lr_box(window)
        lr_hr = self.to_hr(self.fields.lr_window(t, box), window, box)
        cond, base = _assemble(
            self.layout,
            lr_hr,
            self.fields.static[:, rows, cols],
            self.fields.position[:, rows, cols],
            self.fields.times[t : t + 1],
            self.fields.means[t : t + 1],
            self.fields.wind[t : t + 1],
            self.fields.slope[:, rows, cols],
        )
        target, present = self.fields.target_window(t, rows, cols)
        # missing targets weigh nothing in the loss
        return {
            "cond": cond[0],
            "base": base[0],
            "target": target,
            "area": self.fields.area[:, rows, cols] * present,
        }

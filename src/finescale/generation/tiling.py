"""Tiles: overlapping windows of a domain and the smooth blending of per-tile estimates.

The sampler runs on the whole-domain state; at every step the denoiser is evaluated tile by tile
and the tiles' estimates are blended with raised-cosine weights, so memory follows the tile while
the sample has no seams.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

#: a window of a grid: first row y0, first column x0, rows p, columns q
Window = tuple[int, int, int, int]


def tiles(shape: tuple[int, int], size: int | None, overlap: int) -> list[Window]:
    """Windows (y0, x0, p, q) covering a (H, W) grid with tiles of ``size`` overlapping by
    ``overlap``."""
    h, w = shape
    if size is None or (size >= h and size >= w):
        return [(0, 0, h, w)]

    def starts(n: int) -> list[int]:
        if size >= n:
            return [0]
        step = max(1, size - overlap)
        out = list(range(0, n - size, step))
        return [*out, n - size]

    return [(y0, x0, min(size, h), min(size, w)) for y0 in starts(h) for x0 in starts(w)]


def blend_weights(window: Window, shape: tuple[int, int], overlap: int) -> Tensor:
    """A tile's weight (p, q): 1 inside, a raised-cosine ramp over the overlap towards inner
    edges."""
    y0, x0, p, q = window

    def ramp(n: int, start: int, total: int) -> Tensor:
        w = torch.ones(n)
        if overlap <= 0:
            return w
        k = torch.arange(min(overlap, n), dtype=torch.float32)
        edge = 0.5 - 0.5 * torch.cos(np.pi * (k + 0.5) / min(overlap, n))
        if start > 0:
            w[: edge.numel()] = torch.minimum(w[: edge.numel()], edge)
        if start + n < total:
            w[-edge.numel() :] = torch.minimum(w[-edge.numel() :], edge.flip(0))
        return w

    return ramp(p, y0, shape[0])[:, None] * ramp(q, x0, shape[1])[None, :]


def tiled(
    fn: Callable[[Window], Tensor], windows: list[Window], shape: tuple[int, int], overlap: int
) -> Tensor:
    """Blend ``fn(window)`` (B, C, p, q) over the windows into (B, C, H, W)."""
    total = weight = None
    for window in windows:
        y0, x0, p, q = window
        value = fn(window)
        w = blend_weights(window, shape, overlap).to(value)
        if total is None:
            total = value.new_zeros((*value.shape[:2], *shape))
            weight = value.new_zeros(shape)
        total[..., y0 : y0 + p, x0 : x0 + q] += value * w
        weight[y0 : y0 + p, x0 : x0 + q] += w
    return total / weight  # type: ignore[operator]

"""A residual scale that follows mu: s_v(mu_v), for intermittent variables (issue 17).

One RMS per variable (``DiffusionModel.residual_scale``) gives the scaled residual unit RMS over
the domain, not at each point. Precipitation's residual is near 0 where it is dry and several
times its domain RMS where it rains, so no one ``sigma_max`` suits both. For the variables of
``model.local_scale`` the residual is divided instead by s_v(mu_v): the area-weighted RMS of
y - mu in bins of mu_v (the variable's own regression mean or interpolated base, standardised),
piecewise linear in mu_v between the bins' centres, constant beyond the outer ones, and floored
at :data:`FLOOR` times the variable's RMS over the domain. The curve is fitted once before
training (:class:`CurveFit`, fed by ``finescale.training.residual_scale``) and kept as buffers of
:class:`LocalScale`, so a checkpoint carries it to sampling.

The curve's argument (its *key*) may instead be the Euclidean norm of several variables' mu in
their own units (``model.local_scale_key``): a 10 m wind component's residual, the gusts, grows
with the wind's speed, which its own mu alone does not give (a strong westerly has v near 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

#: Quantile bins of mu_v. Each holds 1/16 of the training points' area (65 000 points on the
#: demo's 256 patches of 64 x 64, so a bin's RMS has a sampling error of ~0.3 %), while 16 knots
#: can follow a curve that changes tenfold between dry and wet points; more bins would thin the
#: wettest bin, which spans the widest range of mu.
BINS = 16
#: Knots stored per variable: a value of mu_v held by a bin's weight or more (the dry value of
#: an interpolated base) is a bin of its own, beside the BINS bins of the other points; each of
#: these (at most BINS) atoms adds at most 2 bins. Unused knots repeat the last one.
KNOTS = 3 * BINS
#: By default (``model.local_scale_floor``) s_v never falls below this fraction of the variable's
#: RMS over the domain. Where the residual is smaller (dry points under a dry mean) it is below
#: 1 % of the variable's mean square error and needs no resolving; without a floor, a rare
#: shower under a dry mu would be divided by ~0 and give a scaled residual of hundreds, far
#: beyond the noise levels the model is trained on. At the floor the scaled residual's RMS is
#: below 1: the sampler's start at sigma_max is then wider than needed there, which is safe (it
#: is the side EDM's 80 errs on).
FLOOR = 0.1
#: Points of one batch kept per variable to fit the curve (a random subset beyond): bounds the
#: memory of the fit (12 bytes a point) on large patches; the demo's batches (8 x 64 x 64) are
#: kept whole.
POINTS_PER_BATCH = 2**16


def interp(x: Tensor, knots: Tensor, values: Tensor) -> Tensor:
    """Piecewise-linear interpolation of (knots, values) at ``x`` (any shape), constant beyond
    the first and last knot, as ``np.interp``. ``knots`` (K,) non-decreasing, ``values`` (K,);
    repeated knots are allowed (the segment between them is skipped)."""
    n = knots.numel()
    if n == 1:
        return values.expand_as(x).to(x.dtype)
    i = torch.searchsorted(knots, x.contiguous(), right=True).clamp(1, n - 1)
    x0, x1, f0, f1 = knots[i - 1], knots[i], values[i - 1], values[i]
    width = x1 - x0
    t = torch.where(width > 0, (x - x0) / torch.where(width > 0, width, 1.0), 1.0).clamp(0, 1)
    return f0 + t * (f1 - f0)


def fit_curve(
    mu: Tensor, r2: Tensor, weight: Tensor, floor: float, bins: int = BINS
) -> tuple[Tensor, Tensor]:
    """Bin centres and floored RMS (KNOTS,) each, float32, of a residual against mu.

    ``mu``, ``r2`` (the squared residual) and ``weight`` (area, > 0): the points, (N,) each. A
    value of mu held by at least 1 / ``bins`` of the weight (an atom: the dry value of an
    interpolated base) is a bin of its own; the other points are cut into ``bins`` bins at the
    weighted quantiles of their mu, never inside a run of equal mu, and a piece lighter than half
    a bin that an atom cuts off joins its neighbour. A bin's centre is its weighted mean mu, its
    value the weighted RMS of the residual, at least ``floor``.
    """
    if mu.numel() == 0:
        raise ValueError("no point to fit the local residual scale on")
    order = torch.argsort(mu.double())
    v, w = mu.double()[order], weight.double()[order]
    zero = torch.zeros(1, dtype=torch.float64)

    def cumulative(x: Tensor) -> Tensor:  # [k]: the sum over the first k points
        return torch.cat([zero, torch.cumsum(x, 0)])

    cw, cv, cr = cumulative(w), cumulative(w * v), cumulative(w * r2.double()[order])
    counts = torch.unique_consecutive(v, return_counts=True)[1]
    ends = torch.cumsum(counts, 0)
    starts = ends - counts
    atom = cw[ends] - cw[starts] >= cw[-1] / bins
    in_atom = torch.repeat_interleave(atom, counts)
    cc = cumulative(torch.where(in_atom, 0.0, w))  # the weight of the points outside atoms
    bounds = torch.cat([starts[atom], ends[atom]])
    cuts = [torch.tensor([0, v.numel()]), bounds]
    if cc[-1] > 0:
        targets = cc[-1] * torch.arange(1, bins, dtype=torch.float64) / bins
        at = torch.searchsorted(cc[1:], targets).clamp(max=v.numel() - 1)
        left = torch.searchsorted(v, v[at])  # the start of the run of equal mu there
        # no sliver beside an atom: the piece joins the bin on its other side
        near = (cc[left][:, None] - cc[bounds][None, :]).abs() < cc[-1] / (2 * bins)
        cuts.append(left[~near.any(dim=1)])
    cuts = torch.unique(torch.cat(cuts))  # sorted, distinct: every bin holds points
    weight_in = cw[cuts[1:]] - cw[cuts[:-1]]
    centres = (cv[cuts[1:]] - cv[cuts[:-1]]) / weight_in
    rms = ((cr[cuts[1:]] - cr[cuts[:-1]]) / weight_in).clamp_min(0).sqrt().clamp_min(floor)
    pad = KNOTS - centres.numel()
    centres = torch.cat([centres, centres[-1:].expand(pad)])
    rms = torch.cat([rms, rms[-1:].expand(pad)])
    return centres.float(), rms.float()


class LocalScale(nn.Module):
    """s_v(key_v(mu)) for some of the target channels, from the curves in its buffers.

    ``centres`` and ``rms`` (V, KNOTS), float32: the knots of each listed channel's curve, in
    the order of ``channels``. ``keys``: per listed channel, the channels whose mu is its key
    (None: each its own). A key of one channel is that channel's standardised mu; of several, the
    norm of their mu in their own (transformed) units, mu * std + mean, with the statistics in
    the buffers ``key_mean`` and ``key_std`` of ``key_channels`` (set by :meth:`set_key_stats`;
    absent when every key is one channel, so that checkpoints written before keys load). Before
    :meth:`set_curves` every s is 1.
    """

    def __init__(self, channels: Sequence[int], keys: Sequence[Sequence[int]] | None = None):
        super().__init__()
        if not channels or len(set(channels)) != len(channels):
            raise ValueError(f"local scale: channels must be distinct and some, got {channels}")
        self.channels = tuple(int(c) for c in channels)
        self.keys = tuple((c,) for c in self.channels) if keys is None else _keys(keys)
        if len(self.keys) != len(self.channels):
            raise ValueError(
                f"local scale: one key per channel ({len(self.channels)}), got {len(self.keys)}"
            )
        v = len(self.channels)
        self.register_buffer("centres", torch.zeros(v, KNOTS))
        self.register_buffer("rms", torch.ones(v, KNOTS))
        self.key_channels = tuple(sorted({c for k in self.keys if len(k) > 1 for c in k}))
        if self.key_channels:
            self.register_buffer("key_mean", torch.zeros(len(self.key_channels)))
            self.register_buffer("key_std", torch.ones(len(self.key_channels)))

    def key(self, mu: Tensor) -> Tensor:
        """The curves' arguments (B, V, H, W) from mu (B, C, H, W), in mu's dtype or float32
        where mu's is narrower (a bfloat16 mu under autocast)."""
        dtype = torch.promote_types(mu.dtype, torch.float32)
        out = []
        for k in self.keys:
            if len(k) == 1:
                out.append(mu[:, k[0]].to(dtype))
                continue
            squares = 0.0
            for c in k:
                i = self.key_channels.index(c)
                x = mu[:, c].to(dtype) * self.key_std[i].to(dtype) + self.key_mean[i].to(dtype)
                squares = squares + x**2
            out.append(torch.sqrt(squares))
        return torch.stack(out, dim=1)

    def forward(self, mu: Tensor) -> Tensor:
        """s (B, V, H, W) of the listed channels of mu (B, C, H, W), in mu's dtype or float32
        where mu's is narrower (a bfloat16 mu under autocast)."""
        key = self.key(mu)
        knots, values = self.centres.to(key), self.rms.to(key)
        return torch.stack(
            [interp(key[:, i], knots[i], values[i]) for i in range(len(self.channels))], dim=1
        )

    @torch.no_grad()
    def set_key_stats(self, mean: Tensor, std: Tensor) -> None:
        """The statistics of every target channel (C,) each, in the transformed units: the
        norms of the keys of several channels are taken in those units. Before gathering."""
        for i, c in enumerate(self.key_channels):
            self.key_mean[i] = float(mean[c])
            self.key_std[i] = float(std[c])

    @torch.no_grad()
    def set_curves(self, fit: CurveFit, global_rms: Tensor, floor: float = FLOOR) -> None:
        """Fit the curves from the points ``fit`` gathered; ``global_rms`` (C,): each target
        variable's RMS over the domain; ``floor`` times it is the floor
        (``model.local_scale_floor``)."""
        if fit.channels != self.channels:
            raise ValueError(f"points gathered for channels {fit.channels}, not {self.channels}")
        for i, c in enumerate(self.channels):
            if not fit.points[i]:
                raise ValueError("no batch was gathered to fit the local residual scale on")
            key, r2, w = (torch.cat(part) for part in zip(*fit.points[i], strict=True))
            centres, rms = fit_curve(key, r2, w, floor * float(global_rms[c]))
            self.centres[i].copy_(centres)
            self.rms[i].copy_(rms)


def _keys(keys: Sequence[Sequence[int]]) -> tuple[tuple[int, ...], ...]:
    out = tuple(tuple(int(c) for c in k) for k in keys)
    bad = [k for k in out if not k or len(set(k)) != len(k)]
    if bad:
        raise ValueError(f"local scale: a key is some distinct channels, got {bad}")
    return out


class CurveFit:
    """Gathers (key, r^2, area) of the listed channels' valid points, batch after batch, for
    :meth:`LocalScale.set_curves`; at most :data:`POINTS_PER_BATCH` per batch and channel
    (a random subset, drawn with a fixed seed)."""

    def __init__(self, channels: Sequence[int], seed: int = 0):
        self.channels = tuple(int(c) for c in channels)
        self.points: list[list[tuple[Tensor, Tensor, Tensor]]] = [[] for _ in self.channels]
        self.generator = torch.Generator().manual_seed(seed)

    def add(self, key: Tensor, r: Tensor, area: Tensor) -> None:
        """One batch: the listed channels' keys (B, V, H, W) (:meth:`LocalScale.key`), the
        residual r (B, C, H, W) and area weights (B, 1, H, W) (0: no target)."""
        for i, c in enumerate(self.channels):
            keep = (area[:, 0] > 0) & torch.isfinite(r[:, c])
            m, rr, a = key[:, i][keep], r[:, c][keep], area[:, 0][keep]
            if m.numel() > POINTS_PER_BATCH:
                pick = torch.randperm(m.numel(), generator=self.generator)[:POINTS_PER_BATCH]
                m, rr, a = m[pick], rr[pick], a[pick]
            self.points[i].append((m.float().cpu(), (rr.float() ** 2).cpu(), a.float().cpu()))

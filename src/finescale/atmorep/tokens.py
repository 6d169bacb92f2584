"""Space-time neighbourhoods cut into tokens, and the masks that make AtmoRep's training tasks.

A neighbourhood (hypercube) is ``cube = (nt, ny, nx)`` tokens of ``token = (tt, ty, tx)`` grid
points (hours x rows x columns) of every field, at one origin ``(t0, y0, x0)`` of the series.
Origins are drawn so that a neighbourhood lies inside the series: near the start or end of a
block of times nothing wraps round. A field with L levels gives L x nt x ny x nx tokens of
tt * ty * tx values each.

Masks are made here, in the data loader, per sample:

- ``bert``: each predicted field hides a random fraction of its tokens, drawn uniformly up to
  the field's ``mask_rate`` (at least one token); the hidden values are replaced by 0, noise or
  the token's mean (``masking.fill``);
- ``forecast``: the last ``forecast_tokens`` time tokens of every time-dependent field;
- ``interpolation``: the middle ``interpolation_tokens`` time tokens (known hours on both sides);
- ``targets``: every token of the predicted fields, none of the inputs (downscaling, bias
  correction: predict one set of fields from another).

Under ``forecast`` and ``interpolation`` with ``time_fill: informed`` (the default) the hidden
hours start from what is known at inference: the last known hour repeated (persistence) or the
linear interpolation in time between the hours around the gap; ``targets`` hides with the
field's ``base`` input field (the LR field of the same variable, say) or 0.

A sample is a dict: ``input[name]`` (L, nt, ny, nx, D) tokens with hidden ones filled,
``masked[name]`` (L, nt, ny, nx) bool, and for predicted fields ``target[name]`` (the truth),
``valid[name]`` (L, nt, ny, nx, D) bool (False where the truth is missing) and ``base[name]``
(the fill the model predicts a change from: the input, or 0 where the input is noise); ``where``
(nt, ny, nx, 8) position features; ``origin`` (3,) (t0, y0, x0). Missing values (a source with
``missing: mask``) are the variable's mean, 0, in inputs and targets alike; ``valid`` keeps
them out of the loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from finescale.atmorep.series import Series
from finescale.atmorep.settings import AtmoRepConfig, MaskingConfig

STRATEGIES = ("bert", "forecast", "interpolation", "targets")
WHERE_FEATURES = 8  # sin/cos of lat, lon, hour of day, day of year at each token


@dataclass(frozen=True)
class Geometry:
    """Token size (tt, ty, tx) in grid points and neighbourhood size (nt, ny, nx) in tokens."""

    token: tuple[int, int, int]
    cube: tuple[int, int, int]

    @classmethod
    def from_config(cls, cfg: AtmoRepConfig) -> Geometry:
        t, n = cfg.token, cfg.neighbourhood
        return cls((t.time, t.y, t.x), (n.time, n.y, n.x))

    @property
    def extent(self) -> tuple[int, int, int]:
        """Hours, rows and columns a neighbourhood covers."""
        return tuple(a * b for a, b in zip(self.token, self.cube, strict=True))  # type: ignore[return-value]

    @property
    def token_values(self) -> int:
        tt, ty, tx = self.token
        return tt * ty * tx


def tokenize(x: torch.Tensor, token: Sequence[int]) -> torch.Tensor:
    """(..., T, Y, X) -> (..., T/tt, Y/ty, X/tx, tt*ty*tx); each size must divide by the token's."""
    *lead, t, y, x_ = x.shape
    tt, ty, tx = token
    if t % tt or y % ty or x_ % tx:
        raise ValueError(f"shape {(t, y, x_)} does not divide into tokens {tuple(token)}")
    n = len(lead)
    x = x.reshape(*lead, t // tt, tt, y // ty, ty, x_ // tx, tx)
    order = [*range(n), n, n + 2, n + 4, n + 1, n + 3, n + 5]
    return x.permute(order).reshape(*lead, t // tt, y // ty, x_ // tx, tt * ty * tx)


def untokenize(tokens: torch.Tensor, token: Sequence[int]) -> torch.Tensor:
    """Inverse of :func:`tokenize`: (..., nt, ny, nx, tt*ty*tx) -> (..., nt*tt, ny*ty, nx*tx)."""
    *lead, nt, ny, nx, d = tokens.shape
    tt, ty, tx = token
    if d != tt * ty * tx:
        raise ValueError(f"tokens of {d} values do not match token size {tuple(token)}")
    n = len(lead)
    x = tokens.reshape(*lead, nt, ny, nx, tt, ty, tx)
    order = [*range(n), n, n + 3, n + 1, n + 4, n + 2, n + 5]
    return x.permute(order).reshape(*lead, nt * tt, ny * ty, nx * tx)


def where_features(
    series: Series, geometry: Geometry, origin: tuple[int, int, int]
) -> torch.Tensor:
    """(nt, ny, nx, 8): sin/cos of each token's mean latitude and longitude and of the hour of day
    and day of year of its middle hour: the absolute position the model is told."""
    (tt, ty, tx), (nt, ny, nx) = geometry.token, geometry.cube
    t0, y0, x0 = origin
    box = (slice(y0, y0 + ny * ty), slice(x0, x0 + nx * tx))
    lat = np.deg2rad(series.lat[box].reshape(ny, ty, nx, tx).mean(axis=(1, 3)))
    # longitudes through unit vectors: a token across the date line keeps its place
    lon = np.deg2rad(series.lon[box]).reshape(ny, ty, nx, tx)
    lon = np.arctan2(np.sin(lon).mean(axis=(1, 3)), np.cos(lon).mean(axis=(1, 3)))
    hours = series.times[t0 + tt // 2 : t0 + nt * tt : tt].astype("datetime64[h]")
    hour = (hours - hours.astype("datetime64[D]")).astype(float) * 2 * np.pi / 24
    doy = (
        (hours.astype("datetime64[D]") - hours.astype("datetime64[Y]")).astype(float)
        * 2
        * np.pi
        / 365.25
    )
    space = np.stack([np.sin(lat), np.cos(lat), np.sin(lon), np.cos(lon)], axis=-1)  # (ny, nx, 4)
    time = np.stack([np.sin(hour), np.cos(hour), np.sin(doy), np.cos(doy)], axis=-1)  # (nt, 4)
    out = np.concatenate(
        [
            np.broadcast_to(space, (nt, ny, nx, 4)),
            np.broadcast_to(time[:, None, None], (nt, ny, nx, 4)),
        ],
        axis=-1,
    )
    return torch.from_numpy(out.astype(np.float32))


def hidden_tokens(strategy: str, masking: MaskingConfig, nt: int) -> tuple[int, int]:
    """First and one-past-last time token a ``forecast`` or ``interpolation`` mask hides (of
    ``nt``)."""
    if strategy == "forecast":
        return nt - masking.forecast_tokens, nt
    if strategy == "interpolation":
        start = (nt - masking.interpolation_tokens) // 2
        return start, start + masking.interpolation_tokens
    raise ValueError(f"'{strategy}' hides no fixed time tokens")


def make_masks(
    strategy: str,
    cfg: AtmoRepConfig,
    levels: dict[str, int],
    cube: tuple[int, int, int],
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Boolean masks (L, nt, ny, nx) per field, True where the token is hidden, for one sample."""
    if strategy not in STRATEGIES:
        raise ValueError(
            f"unknown masking strategy '{strategy}'; choose from {', '.join(STRATEGIES)}"
        )
    masks = {}
    for name, f in cfg.fields.items():
        mask = np.zeros((levels[name], *cube), dtype=bool)
        if strategy == "bert" and f.predict:
            n = mask.size
            k = max(1, int(rng.uniform(0.0, f.mask_rate) * n))  # floor: never above the rate
            mask.reshape(-1)[rng.choice(n, size=k, replace=False)] = True
        elif strategy in ("forecast", "interpolation") and f.source != "static":
            first, stop = hidden_tokens(strategy, cfg.masking, cube[0])
            mask[:, first:stop] = True
        elif strategy == "targets" and f.predict:
            mask[:] = True
        masks[name] = mask
    return masks


def fill_hours(window: torch.Tensor, first: int, stop: int) -> torch.Tensor:
    """``window`` (L, T, Y, X) with hours first..stop-1 filled from the known hours around them:
    the last known hour repeated when nothing is known after (forecast: persistence), else linear
    in time between the hours just before and just after (interpolation)."""
    out = window.clone()
    before = window[:, first - 1 : first]
    if stop >= window.shape[1]:
        out[:, first:stop] = before
        return out
    after = window[:, stop : stop + 1]
    w = (torch.arange(first, stop, dtype=window.dtype) - (first - 1)) / (stop - first + 1)
    out[:, first:stop] = before + w[None, :, None, None] * (after - before)
    return out


def check_geometry(cfg: AtmoRepConfig, series: Series, strategies: Sequence[str]) -> Geometry:
    """The geometry of ``cfg``, checked against the series and the strategies (clear errors)."""
    g = Geometry.from_config(cfg)
    (et, ey, ex), (h, w), t = g.extent, series.shape, series.times.size
    if ey > h or ex > w:
        raise ValueError(
            f"a neighbourhood of {ey} x {ex} grid points (token {cfg.token.y} x {cfg.token.x} x "
            f"neighbourhood {cfg.neighbourhood.y} x {cfg.neighbourhood.x}) does not fit the "
            f"{h} x {w} grid: make them smaller"
        )
    if et > t:
        raise ValueError(f"a neighbourhood spans {et} hours but the block of times has only {t}")
    nt, m = g.cube[0], cfg.masking
    if "forecast" in strategies and m.forecast_tokens >= nt:
        raise ValueError(
            f"masking.forecast_tokens {m.forecast_tokens} leaves no known time token of {nt}"
        )
    if "interpolation" in strategies and m.interpolation_tokens > nt - 2:
        raise ValueError(
            f"masking.interpolation_tokens {m.interpolation_tokens} needs known time tokens on "
            f"both sides of {nt}"
        )
    return g


class _Cubes(torch.utils.data.Dataset):
    """Shared cutting and filling of neighbourhoods; subclasses choose origins and masks."""

    def __init__(self, series: Series, cfg: AtmoRepConfig, strategies: Sequence[str]):
        self.series, self.cfg = series, cfg
        self.geometry = check_geometry(cfg, series, strategies)
        self.levels = {name: series.levels(name) for name in cfg.fields}
        self.predicted = [name for name, f in cfg.fields.items() if f.predict]

    def cut(
        self, origin: tuple[int, int, int], strategy: str, rng: np.random.Generator
    ) -> dict[str, object]:
        """One sample: tokens of every field with hidden ones filled, masks, targets and residual
        bases."""
        g = self.geometry
        (et, ey, ex), (t0, y0, x0) = g.extent, origin
        m = self.cfg.masking
        masks = make_masks(strategy, self.cfg, self.levels, g.cube, rng)
        informed = strategy in ("forecast", "interpolation") and m.time_fill == "informed"
        windows = {
            name: self.series.window(name, t0, et, y0, ey, x0, ex) for name in self.cfg.fields
        }  # (L, et, ey, ex)
        present = {name: torch.isfinite(windows[name]) for name in self.predicted}
        windows = {
            name: torch.where(torch.isfinite(w), w, 0.0) for name, w in windows.items()
        }  # missing: the mean
        inputs, targets, valid, bases, hidden = {}, {}, {}, {}, {}
        for name, f in self.cfg.fields.items():
            tokens = tokenize(windows[name], g.token)  # (L, nt, ny, nx, D)
            mask = torch.from_numpy(masks[name])
            if informed and mask.any():
                first, stop = hidden_tokens(strategy, m, g.cube[0])
                fill = tokenize(
                    fill_hours(windows[name], first * g.token[0], stop * g.token[0]), g.token
                )
            elif strategy == "targets" and f.base is not None:
                fill = tokenize(windows[f.base], g.token)
            elif strategy == "bert" and m.fill == "coarsen":
                fill = tokens.mean(dim=-1, keepdim=True).expand_as(tokens)
            else:
                fill = torch.zeros_like(tokens)
            base = torch.where(mask[..., None], fill, tokens)
            noisy = strategy == "bert" and m.fill == "noise"
            if noisy:
                noise = torch.from_numpy(rng.standard_normal(tokens.shape, dtype=np.float32))
                inputs[name] = torch.where(mask[..., None], noise, tokens)
            else:
                inputs[name] = base
            hidden[name] = mask
            if name in self.predicted:
                targets[name] = tokens
                valid[name] = tokenize(present[name], g.token)
                bases[name] = (
                    torch.where(mask[..., None], torch.zeros_like(tokens), tokens)
                    if noisy
                    else base
                )
        return {
            "input": inputs,
            "base": bases,
            "target": targets,
            "valid": valid,
            "masked": hidden,
            "where": where_features(self.series, g, origin),
            "origin": torch.tensor(origin, dtype=torch.int64),
        }


class CubeDataset(_Cubes):
    """Random neighbourhoods with masks drawn from ``cfg.masking``; item ``i`` depends only on
    (seed, start + i)."""

    def __init__(
        self, series: Series, cfg: AtmoRepConfig, length: int, seed: int = 0, start: int = 0
    ):
        names = list(cfg.masking.strategies)
        super().__init__(series, cfg, names)
        weights = np.array([cfg.masking.strategies[n] for n in names], dtype=float)
        self.strategies, self.p = names, weights / weights.sum()
        self.length, self.seed, self.start = length, seed, start

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, object]:
        rng = np.random.default_rng((self.seed, self.start + i))
        (et, ey, ex), (h, w) = self.geometry.extent, self.series.shape
        origin = (
            int(rng.integers(self.series.times.size - et + 1)),
            int(rng.integers(h - ey + 1)),
            int(rng.integers(w - ex + 1)),
        )
        strategy = self.strategies[int(rng.choice(len(self.strategies), p=self.p))]
        return self.cut(origin, strategy, rng)


class FixedCubes(_Cubes):
    """Neighbourhoods at given origins with one deterministic strategy: inference and evaluation."""

    def __init__(
        self,
        series: Series,
        cfg: AtmoRepConfig,
        origins: Sequence[tuple[int, int, int]],
        strategy: str,
    ):
        if strategy == "bert":
            raise ValueError(
                "inference needs a deterministic mask: forecast, interpolation or targets, not bert"
            )
        super().__init__(series, cfg, [strategy])
        (et, ey, ex), (h, w) = self.geometry.extent, series.shape
        for t0, y0, x0 in origins:
            if not (0 <= t0 <= series.times.size - et and 0 <= y0 <= h - ey and 0 <= x0 <= w - ex):
                raise ValueError(f"origin {(t0, y0, x0)} puts the neighbourhood outside the series")
        self.origins, self.strategy = [tuple(int(v) for v in o) for o in origins], strategy

    def __len__(self) -> int:
        return len(self.origins)

    def __getitem__(self, i: int) -> dict[str, object]:
        return self.cut(self.origins[i], self.strategy, np.random.default_rng(0))  # type: ignore[arg-type]


def tile_starts(size: int, extent: int) -> list[int]:
    """Starts of windows of ``extent`` covering 0..size-1, the last flush with the end
    (overlapping)."""
    if extent > size:
        raise ValueError(f"window {extent} larger than {size}")
    starts = list(range(0, size - extent + 1, extent))
    if starts[-1] != size - extent:
        starts.append(size - extent)
    return starts

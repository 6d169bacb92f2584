"""Which variable sits in which channel of a sample: :class:`Layout` and :func:`make_layout`.

The layout lists the LR, static and target variables and the position and time features in
channel order; it is read off a model config, checked against the data, and saved with every
checkpoint. Apart from :mod:`finescale.data.patches` because checkpoints, model building and
generation need the channels without the samples themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import xarray as xr

from finescale.config import ModelConfig, UpslopeConfig

POSITION_FEATURES = ("sin_lat", "cos_lat", "sin_lon", "cos_lon")
TIME_FEATURES = ("sin_hour", "cos_hour", "sin_doy", "cos_doy")


class Upslope(NamedTuple):
    """The variables of the upslope-wind channel U . grad(h): LR wind components and terrain."""

    u: str
    v: str
    orography: str


@dataclass(frozen=True)
class Layout:
    """Which variable sits in which channel; saved with every checkpoint."""

    lr_variables: tuple[str, ...]
    static_variables: tuple[str, ...]
    target_variables: tuple[str, ...]
    position: bool
    time: bool
    domain_means: tuple[str, ...] = ()  # LR variables, each a channel of its domain mean
    upslope: Upslope | None = None  # one channel of U . grad(h), or none

    @property
    def features(self) -> tuple[str, ...]:
        return (
            (POSITION_FEATURES if self.position else ())
            + (TIME_FEATURES if self.time else ())
            + tuple(f"{v}_domain_mean" for v in self.domain_means)
            + (("upslope",) if self.upslope is not None else ())
        )

    @property
    def cond_channels(self) -> int:
        return len(self.lr_variables) + len(self.static_variables) + len(self.features)

    @property
    def global_channels(self) -> tuple[int, ...]:
        """Channels of the conditioning that are constant over the grid: the time features and
        the domain means (what ``conditioning.film`` feeds to every block)."""
        first = len(self.lr_variables) + len(self.static_variables)
        constant = {*TIME_FEATURES, *(f"{v}_domain_mean" for v in self.domain_means)}
        return tuple(first + i for i, name in enumerate(self.features) if name in constant)

    @property
    def base_index(self) -> tuple[int | None, ...]:
        """Channel of each target variable among the LR variables (None: not in the LR)."""
        return tuple(
            self.lr_variables.index(v) if v in self.lr_variables else None
            for v in self.target_variables
        )

    def to_dict(self) -> dict:
        return {
            "lr_variables": list(self.lr_variables),
            "static_variables": list(self.static_variables),
            "target_variables": list(self.target_variables),
            "position": self.position,
            "time": self.time,
            "domain_means": list(self.domain_means),
            "upslope": [] if self.upslope is None else list(self.upslope),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Layout:
        return cls(
            tuple(d["lr_variables"]),
            tuple(d["static_variables"]),
            tuple(d["target_variables"]),
            bool(d["position"]),
            bool(d["time"]),
            tuple(d.get("domain_means", ())),  # checkpoints written before they existed: none
            Upslope(*d["upslope"]) if d.get("upslope") else None,
        )


def _gridded(ds: xr.Dataset | None) -> list[str]:
    """Variables of ``ds`` on its (y, x) grid, in file order."""
    if ds is None:
        return []
    return [str(v) for v in ds.data_vars if {"y", "x"} <= set(ds[v].dims)]


def make_layout(
    cfg: ModelConfig, lr: xr.Dataset, hr: xr.Dataset, static: xr.Dataset | None
) -> Layout:
    """The layout a model config asks for, checked against the data (unknown names are errors)."""

    def pick(wanted: list[str] | None, available: list[str], what: str) -> tuple[str, ...]:
        if wanted is None:
            return tuple(available)
        unknown = [v for v in wanted if v not in available]
        if unknown:
            raise ValueError(
                f"model: {what} {unknown} not in the data; "
                f"available: {', '.join(available) or 'none'}"
            )
        return tuple(wanted)

    lr_time = [v for v in _gridded(lr) if "time" in lr[v].dims]
    hr_time = [v for v in _gridded(hr) if "time" in hr[v].dims]
    c = cfg.conditioning
    lr_variables = pick(c.lr_variables, lr_time, "conditioning.lr_variables")
    return Layout(
        lr_variables=lr_variables,
        static_variables=pick(
            c.static_variables, _gridded(static), "conditioning.static_variables"
        ),
        target_variables=pick(cfg.target_variables, hr_time, "target_variables"),
        position=c.position,
        time=c.time,
        domain_means=pick(
            c.domain_means,
            list(lr_variables),
            "conditioning.domain_means (LR variables the model sees)",
        ),
        upslope=_upslope(c.upslope, lr_time, _gridded(static)),
    )


def _upslope(cfg: UpslopeConfig | None, lr_time: list[str], static: list[str]) -> Upslope | None:
    """The variables of ``conditioning.upslope``, checked against the data; None when off."""
    if cfg is None:
        return None
    for name, available, what in (
        (cfg.u, lr_time, "LR variables"),
        (cfg.v, lr_time, "LR variables"),
        (cfg.orography, static, "static variables"),
    ):
        if name not in available:
            raise ValueError(
                f"model: conditioning.upslope needs {name!r} among the {what}; "
                f"available: {', '.join(available) or 'none'}"
            )
    return Upslope(cfg.u, cfg.v, cfg.orography)

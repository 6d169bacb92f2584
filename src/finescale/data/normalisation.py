"""Normalisation statistics and standardisation: ``z = (transform(x) - mean) / std``.

:class:`NormStats` holds, per variable, the mean and standard deviation of the *transformed*
variable (:mod:`finescale.data.transforms`) over the training times only; :func:`compute_stats`
computes them lazily with dask, so the data are streamed chunk by chunk and never held whole in
memory; :func:`normalise` and :func:`denormalise` apply them to datasets. Apart from the
transforms, which are pointwise and need no statistics, and from :mod:`finescale.data.saved_stats`,
which keeps the statistics on disk and alone knows about configs, splits and source files.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import dask
import numpy as np
import xarray as xr

from finescale.config import TransformConfig
from finescale.data.transforms import IDENTITY, forward_transform, inverse_transform
from finescale.io.atomic import write_json

__all__ = [
    "STATS_FORMAT",
    "NormStats",
    "VariableStats",
    "compute_stats",
    "denormalise",
    "normalise",
    "plain_json",
]

#: Version of the statistics file layout; a different version is recomputed.
STATS_FORMAT = 1
#: Target size of one dask chunk when data that are not chunked yet are streamed.
_CHUNK_BYTES = 64 * 2**20

T = TypeVar("T")


@dataclass(frozen=True)
class VariableStats:
    """Mean and standard deviation of one variable in transformed space.

    ``mean`` and ``std`` are in the units of the transformed variable: the variable's own units
    for ``none``, dimensionless for ``log1p``. ``source`` says which dataset they come from
    (``hr``, ``lr`` or ``static``) and ``count`` how many finite values went in.
    """

    mean: float
    std: float
    transform: TransformConfig = IDENTITY
    source: str = "hr"
    count: int = 0
    units: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": self.mean,
            "std": self.std,
            "transform": self.transform.model_dump(mode="json"),
            "source": self.source,
            "count": self.count,
            "units": self.units,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VariableStats:
        return cls(
            mean=float(d["mean"]),
            std=float(d["std"]),
            transform=TransformConfig.model_validate(d.get("transform", {})),
            source=str(d.get("source", "hr")),
            count=int(d.get("count", 0)),
            units=d.get("units"),
        )


@dataclass(frozen=True)
class NormStats:
    """Per-variable normalisation statistics and the fingerprint of what they were computed from.

    Index it by variable name (``stats["t2m"].mean``). ``fingerprint`` records variables,
    transforms, split, training times and source files; :func:`load_or_compute_stats` reuses a
    saved file only when its fingerprint equals the current one.
    """

    variables: Mapping[str, VariableStats]
    fingerprint: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "variables", MappingProxyType(dict(self.variables)))
        object.__setattr__(self, "fingerprint", MappingProxyType(dict(self.fingerprint)))

    def __getitem__(self, name: str) -> VariableStats:
        try:
            return self.variables[name]
        except KeyError:
            known = ", ".join(sorted(self.variables)) or "none"
            raise KeyError(f"no normalisation statistics for '{name}' (have: {known})") from None

    def __contains__(self, name: object) -> bool:
        return name in self.variables

    @property
    def names(self) -> list[str]:
        return list(self.variables)

    # -- arrays ---------------------------------------------------------------------------

    def normalise_array(self, x: T, name: str) -> T:
        """``(transform(x) - mean) / std`` for one variable (DataArray, ndarray or tensor)."""
        s = self[name]
        return (forward_transform(x, s.transform, name=name) - s.mean) / s.std  # type: ignore[operator]

    def denormalise_array(self, z: T, name: str) -> T:
        """Inverse of :meth:`normalise_array`: ``inverse_transform(z * std + mean)``."""
        s = self[name]
        return inverse_transform(z * s.std + s.mean, s.transform, name=name)  # type: ignore[operator]

    # -- files ----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": STATS_FORMAT,
            "variables": {k: v.to_dict() for k, v in self.variables.items()},
            "fingerprint": plain_json(dict(self.fingerprint)),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NormStats:
        if d.get("format") != STATS_FORMAT:
            raise ValueError(f"statistics format {d.get('format')!r}, expected {STATS_FORMAT}")
        return cls(
            variables={k: VariableStats.from_dict(v) for k, v in d["variables"].items()},
            fingerprint=d.get("fingerprint", {}),
        )

    def save(self, path: str | Path) -> Path:
        """Write the statistics as JSON, atomically."""
        return write_json(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | Path) -> NormStats:
        """Read statistics written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text()))


def plain_json(obj: Any) -> Any:
    """``obj`` as JSON would give it back (tuples -> lists, paths -> strings), for comparisons."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def _lazy(da: xr.DataArray) -> xr.DataArray:
    """``da`` backed by dask; data still in numpy are cut into ~64 MiB chunks along time."""
    if da.chunks is not None:
        return da
    if "time" not in da.dims or da.sizes["time"] <= 1:
        return da.chunk()
    per_step = max(1, da.nbytes // da.sizes["time"])
    return da.chunk({"time": max(1, _CHUNK_BYTES // per_step)})


def compute_stats(
    hr: xr.Dataset,
    transforms: Mapping[str, TransformConfig] | None = None,
    *,
    lr: xr.Dataset | None = None,
    static: xr.Dataset | None = None,
    times: Iterable[Any] | None = None,
    fingerprint: Mapping[str, Any] | None = None,
) -> NormStats:
    """Mean and std of every variable in transformed space, over the training ``times`` only.

    Variables are taken from ``hr`` first, then variables found only in ``lr`` or ``static``
    (a variable present in both LR and HR gets the HR statistics, so the LR conditioning and
    the HR target share one scale and residuals between them stay meaningful). Variables with
    a ``time`` dimension are restricted to ``times`` (all times when None); time-independent
    fields use all their points. Missing values (NaN) are skipped.

    The reductions run lazily with dask, streaming chunks; nothing is loaded whole.
    Raises ValueError naming the file (its ``finescale_source``) and a variable that is constant
    (std 0) or has no finite value.
    """
    transforms = dict(transforms or {})
    selected = None if times is None else np.asarray(times)
    sources: list[tuple[str, xr.Dataset]] = [("hr", hr)]
    if lr is not None:
        sources.append(("lr", lr))
    if static is not None:
        sources.append(("static", static))

    pending: dict[str, tuple[str, TransformConfig, str | None, Any, Any, Any]] = {}
    files: dict[str, str] = {}  # where each variable comes from, for the messages
    for source, ds in sources:
        for name in ds.data_vars:
            name = str(name)
            if name in pending:
                continue
            da = ds[name]
            if selected is not None and "time" in da.dims:
                da = da.sel(time=selected)
            tf = transforms.get(name, IDENTITY)
            y = forward_transform(_lazy(da), tf, name=name).astype(np.float64)
            pending[name] = (source, tf, da.attrs.get("units"), y.mean(), y.std(), y.count())
            files[name] = (
                f"{ds.attrs['finescale_source']}: " if "finescale_source" in ds.attrs else ""
            )

    # One compute call shares the reading of every chunk among all reductions.
    keys = list(pending)
    results = dask.compute(*[pending[k][3:] for k in keys])
    variables: dict[str, VariableStats] = {}
    for name, (mean, std, count) in zip(keys, results, strict=True):
        source, tf, units, *_ = pending[name]
        mean, std, count = float(mean), float(std), int(count)
        if count == 0 or not np.isfinite(mean):
            raise ValueError(
                f"{files[name]}variable '{name}' ({source}) has no finite value "
                "in the training times"
            )
        if not np.isfinite(std) or std <= 0.0:
            raise ValueError(
                f"{files[name]}variable '{name}' ({source}) is constant over the training times "
                f"(std 0, every value {mean:g}): it cannot be normalised; remove it from the config"
            )
        variables[name] = VariableStats(mean, std, tf, source, count, units)
    return NormStats(variables, fingerprint or {})


def _check_same_transforms(
    ds: xr.Dataset, stats: NormStats, transforms: Mapping[str, TransformConfig] | None
) -> None:
    missing = [str(n) for n in ds.data_vars if n not in stats]
    if missing:
        raise ValueError(
            f"no normalisation statistics for {', '.join(missing)} "
            f"(have: {', '.join(stats.names) or 'none'}); recompute the statistics"
        )
    if transforms is None:
        return
    for name in ds.data_vars:
        wanted = transforms.get(str(name), IDENTITY)
        used = stats[str(name)].transform
        if wanted != used:
            raise ValueError(
                f"variable '{name}': statistics were computed with transform {used.kind} "
                f"(scale {used.scale:g}) but {wanted.kind} (scale {wanted.scale:g}) is asked; "
                "recompute the statistics"
            )


def normalise(
    ds: xr.Dataset, stats: NormStats, transforms: Mapping[str, TransformConfig] | None = None
) -> xr.Dataset:
    """Transform and standardise every variable of ``ds``: ``(transform(x) - mean) / std``.

    Lazy for dask-backed data. ``transforms``, when given, must match the transforms the
    statistics were computed with (ValueError otherwise), which catches a config changed since.
    Results are dimensionless (``units = "1"``); the original units are kept in the attribute
    ``finescale_units`` for :func:`denormalise`.
    """
    _check_same_transforms(ds, stats, transforms)
    out = {}
    for name, da in ds.data_vars.items():
        z = stats.normalise_array(da, str(name))
        z.attrs = dict(da.attrs)
        if "units" in da.attrs:
            z.attrs["finescale_units"] = da.attrs["units"]
        z.attrs["units"] = "1"
        out[name] = z
    return ds.assign(out)


def denormalise(
    ds: xr.Dataset, stats: NormStats, transforms: Mapping[str, TransformConfig] | None = None
) -> xr.Dataset:
    """Inverse of :func:`normalise`: ``inverse_transform(z * std + mean)`` in physical units.

    ``log1p`` variables come back non-negative. Units are restored from ``finescale_units`` or
    from the statistics.
    """
    _check_same_transforms(ds, stats, transforms)
    out = {}
    for name, da in ds.data_vars.items():
        x = stats.denormalise_array(da, str(name))
        attrs = dict(da.attrs)
        units = attrs.pop("finescale_units", None) or stats[str(name)].units
        attrs.pop("units", None)
        if units is not None:
            attrs["units"] = units
        x.attrs = attrs
        out[name] = x
    return ds.assign(out)

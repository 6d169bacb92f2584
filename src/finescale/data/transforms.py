"""Per-variable transforms and normalisation statistics.

Each variable goes through two steps before a model sees it:

1. a pointwise transform from its :class:`~finescale.config.TransformConfig`: ``none`` or
   ``log1p`` (``y = log1p(x / scale)``, inverse ``x = scale * expm1(y)``), which tames the long
   tail of non-negative fields such as precipitation;
2. standardisation ``z = (y - mean) / std`` with the mean and standard deviation of the
   *transformed* variable over the training times only (:class:`NormStats`).

The transforms work on xarray objects (lazily, with dask), numpy arrays and torch tensors (on any
device). Statistics are computed lazily with dask, so the data are streamed chunk by chunk and
never held whole in memory, and they are saved as JSON beside the HR source together with a
fingerprint of everything they depend on (variables, their unit conversions, transforms, split,
training times and source files), so a later run with a different config recomputes them
instead of reusing stale ones (:func:`load_or_compute_stats`).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

import dask
import numpy as np
import xarray as xr

from finescale.config import DataConfig, FileConfig, TransformConfig
from finescale.data.times import time_text
from finescale.io import write_json

if TYPE_CHECKING:
    from finescale.data.pairs import Pair

__all__ = [
    "STATS_FILENAME",
    "NormStats",
    "VariableStats",
    "compute_stats",
    "denormalise",
    "forward_transform",
    "inverse_transform",
    "load_or_compute_stats",
    "normalise",
    "stats_fingerprint",
    "stats_path",
]

#: Name of the statistics file written beside the HR source.
STATS_FILENAME = "finescale-stats.json"
#: Version of the statistics file layout; a different version is recomputed.
STATS_FORMAT = 1
#: Negative inputs of log1p down to this fraction of ``scale`` are rounding noise, set to 0.
NEGATIVE_TOLERANCE = 1e-6
#: Target size of one dask chunk when data that are not chunked yet are streamed.
_CHUNK_BYTES = 64 * 2**20

T = TypeVar("T")
_IDENTITY = TransformConfig()


# --------------------------------------------------------------------------------------------
# pointwise transforms


def _is_torch(x: Any) -> bool:
    """True for torch tensors, recognised without importing torch (it is slow to import)."""
    return type(x).__module__.split(".")[0] == "torch"


def _log1p_numpy(x: np.ndarray, scale: float, name: str) -> np.ndarray:
    """log1p(x / scale) of a numpy block; tiny negatives become 0, larger ones raise."""
    x = np.asarray(x)
    if x.dtype.kind != "f":
        x = x.astype(np.float64)
    tol = NEGATIVE_TOLERANCE * scale
    # NaN compares False, so missing values pass through untouched.
    bad = x <= -tol
    if np.any(bad):
        worst = float(np.min(x[bad]))
        raise ValueError(
            f"variable '{name}': log1p transform needs non-negative values, found {worst:g} "
            f"(values above {-tol:g} are treated as rounding noise and set to 0)"
        )
    x = np.where(x < 0, np.zeros((), dtype=x.dtype), x)
    # Dividing by a scale of the same dtype keeps float32 data in float32.
    return np.log1p(x / np.asarray(scale, dtype=x.dtype))


def _expm1_numpy(y: np.ndarray, scale: float, zero_below: float = 0.0) -> np.ndarray:
    """scale * expm1(y) of a numpy block, set to 0 below ``zero_below`` >= 0 (NaN stays NaN)."""
    y = np.asarray(y)
    if y.dtype.kind != "f":
        y = y.astype(np.float64)
    x = np.asarray(scale, dtype=y.dtype) * np.expm1(y)
    return np.where(x < zero_below, np.zeros((), dtype=x.dtype), x)


def forward_transform(x: T, transform: TransformConfig | None, *, name: str = "variable") -> T:
    """Apply ``transform`` to ``x`` (DataArray, numpy array or torch tensor), keeping its type.

    ``none`` returns ``x`` unchanged. ``log1p`` returns ``log1p(x / scale)`` (dimensionless):
    zeros stay exactly zero, negatives above ``-1e-6 * scale`` are rounding noise and become 0,
    more negative values raise ``ValueError`` naming ``name``. On dask-backed DataArrays the
    check runs lazily, chunk by chunk, when the result is computed.
    """
    transform = transform or _IDENTITY
    if transform.kind == "none":
        return x
    if transform.kind != "log1p":  # pragma: no cover - guarded by TransformConfig
        raise ValueError(f"variable '{name}': unknown transform {transform.kind!r}")
    scale = float(transform.scale)
    if isinstance(x, xr.DataArray):
        out = xr.apply_ufunc(
            _log1p_numpy,
            x,
            kwargs={"scale": scale, "name": name},
            dask="parallelized",
            output_dtypes=[x.dtype if x.dtype.kind == "f" else np.float64],
            keep_attrs=True,
        )
        out.attrs["units"] = "1"
        return out  # type: ignore[return-value]
    if _is_torch(x):
        tol = NEGATIVE_TOLERANCE * scale
        bad = x <= -tol  # type: ignore[operator]
        if bool(bad.any()):
            worst = float(x[bad].min())  # type: ignore[index]
            raise ValueError(
                f"variable '{name}': log1p transform needs non-negative values, found {worst:g}"
            )
        return (x.clamp(min=0) / scale).log1p()  # type: ignore[attr-defined]
    return _log1p_numpy(x, scale, name)  # type: ignore[arg-type, return-value]


def inverse_transform(y: T, transform: TransformConfig | None, *, name: str = "variable") -> T:
    """Undo :func:`forward_transform`: ``scale * expm1(y)`` for ``log1p``, clipped at 0.

    Clipping makes precipitation come back non-negative even where a model predicts values
    below the transformed zero. Zeros stay exactly zero, and so do values below the transform's
    ``zero_below``: a generative model's samples scatter around the transformed zero, and
    without a threshold half of every dry area would come back as drizzle. ``name`` is only
    used in messages.
    """
    transform = transform or _IDENTITY
    if transform.kind == "none":
        return y
    if transform.kind != "log1p":  # pragma: no cover - guarded by TransformConfig
        raise ValueError(f"variable '{name}': unknown transform {transform.kind!r}")
    scale = float(transform.scale)
    if isinstance(y, xr.DataArray):
        out = xr.apply_ufunc(
            _expm1_numpy,
            y,
            kwargs={"scale": scale, "zero_below": float(transform.zero_below)},
            dask="parallelized",
            output_dtypes=[y.dtype if y.dtype.kind == "f" else np.float64],
            keep_attrs=True,
        )
        out.attrs.pop("units", None)
        return out  # type: ignore[return-value]
    if _is_torch(y):
        x = y.expm1() * scale  # type: ignore[attr-defined]
        return x.masked_fill(x < transform.zero_below, 0.0)  # type: ignore[return-value]
    return _expm1_numpy(y, scale, transform.zero_below)  # type: ignore[arg-type, return-value]


# --------------------------------------------------------------------------------------------
# statistics


@dataclass(frozen=True)
class VariableStats:
    """Mean and standard deviation of one variable in transformed space.

    ``mean`` and ``std`` are in the units of the transformed variable: the variable's own units
    for ``none``, dimensionless for ``log1p``. ``source`` says which dataset they come from
    (``hr``, ``lr`` or ``static``) and ``count`` how many finite values went in.
    """

    mean: float
    std: float
    transform: TransformConfig = _IDENTITY
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
            "fingerprint": _plain(dict(self.fingerprint)),
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


def _plain(obj: Any) -> Any:
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
            tf = transforms.get(name, _IDENTITY)
            y = forward_transform(_lazy(da), tf, name=name).astype(np.float64)
            pending[name] = (source, tf, da.attrs.get("units"), y.mean(), y.std(), y.count())
            files[name] = f"{ds.attrs['finescale_source']}: " if "finescale_source" in ds.attrs else ""

    # One compute call shares the reading of every chunk among all reductions.
    keys = list(pending)
    results = dask.compute(*[pending[k][3:] for k in keys])
    variables: dict[str, VariableStats] = {}
    for name, (mean, std, count) in zip(keys, results, strict=True):
        source, tf, units, *_ = pending[name]
        mean, std, count = float(mean), float(std), int(count)
        if count == 0 or not np.isfinite(mean):
            raise ValueError(
                f"{files[name]}variable '{name}' ({source}) has no finite value in the training times"
            )
        if not np.isfinite(std) or std <= 0.0:
            raise ValueError(
                f"{files[name]}variable '{name}' ({source}) is constant over the training times "
                f"(std 0, every value {mean:g}): it cannot be normalised; remove it from the config"
            )
        variables[name] = VariableStats(mean, std, tf, source, count, units)
    return NormStats(variables, fingerprint or {})


# --------------------------------------------------------------------------------------------
# saving, fingerprinting and reusing


def stats_path(cfg: DataConfig) -> Path:
    """Default statistics file: ``finescale-stats.json`` in the folder holding the HR source."""
    return Path(cfg.hr.path).parent / STATS_FILENAME


def _stat_entry(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _source_signature(path: Path) -> list[dict[str, Any]]:
    """Size and modification time of a source's files, to notice rewritten data.

    A file gives itself; a folder (Zarr store) gives itself and the entries up to two levels
    down (metadata and variable folders), without walking every chunk; a glob pattern gives
    every match.
    """
    if any(ch in str(path) for ch in "*?["):
        return [_stat_entry(p) for p in sorted(path.parent.glob(path.name))]
    if not path.exists():
        return [{"path": str(path), "missing": True}]
    if not path.is_dir():
        return [_stat_entry(path)]
    entries = [_stat_entry(path)]
    for child in sorted(path.iterdir()):
        entries.append(_stat_entry(child))
        if child.is_dir():
            entries.extend(_stat_entry(p) for p in sorted(child.iterdir()) if p.is_file())
    # Summarise so that the JSON stays small for stores with many variables.
    return [
        {
            "path": str(path),
            "entries": len(entries),
            "size": sum(e["size"] for e in entries),
            "mtime_ns": max(e["mtime_ns"] for e in entries),
        }
    ]


def _source_fingerprint(cfg: FileConfig) -> dict[str, Any]:
    return {
        "path": str(cfg.path),
        "engine": cfg.engine,
        "variables": {k: v.model_dump(mode="json") for k, v in sorted(cfg.variables.items())},
        "files": _source_signature(Path(cfg.path)),
    }


def stats_fingerprint(
    cfg: DataConfig, train_times: np.ndarray, variables: Iterable[str]
) -> dict[str, Any]:
    """Everything the statistics depend on, as plain JSON-able data.

    Variables, their transforms (defaults filled in), each source's path, variable mapping and
    unit conversions and file signatures, the split settings and the training times.
    """
    names = sorted(set(variables))
    times = np.asarray(train_times)
    fp: dict[str, Any] = {
        "format": STATS_FORMAT,
        "variables": names,
        # only what the forward transform uses: zero_below acts on the way back, not on the statistics
        "transforms": {n: cfg.transforms.get(n, _IDENTITY).model_dump(mode="json", include={"kind", "scale"})
                       for n in names},
        "split": cfg.splits.model_dump(mode="json"),
        "train_times": {
            "count": int(times.size),
            "first": time_text(times[0], unit="s") if times.size else None,
            "last": time_text(times[-1], unit="s") if times.size else None,
        },
        "sources": {"hr": _source_fingerprint(cfg.hr), "lr": _source_fingerprint(cfg.lr)},
    }
    if cfg.static is not None:
        fp["sources"]["static"] = _source_fingerprint(cfg.static)
    return _plain(fp)


def load_or_compute_stats(
    pair: Pair,
    cfg: DataConfig,
    *,
    path: str | Path | None = None,
    recompute: bool = False,
) -> NormStats:
    """Statistics of ``pair`` on the training split of ``cfg.splits``, reused from disk when valid.

    The file (default :func:`stats_path`: ``finescale-stats.json`` beside the HR source) is
    reused only when its fingerprint (variables, transforms, split, training times, source
    files) equals the current one; otherwise, or with ``recompute``, the statistics are computed
    again and the file is replaced atomically. Where the folder is read-only the statistics are
    still returned, with a warning.
    """
    from finescale.data.pairs import split_times  # pairs does not import this module

    _check_transform_names(cfg.transforms, pair)
    path = Path(path) if path is not None else stats_path(cfg)
    train = split_times(pair.hr["time"].values, cfg.splits)["train"]
    names = [str(n) for n in pair.hr.data_vars]
    names += [str(n) for n in pair.lr.data_vars]
    if pair.static is not None:
        names += [str(n) for n in pair.static.data_vars]
    fingerprint = stats_fingerprint(cfg, train, names)

    if not recompute and path.is_file():
        try:
            saved = NormStats.load(path)
        except (OSError, ValueError, KeyError, TypeError):
            saved = None  # unreadable or older layout: recompute below
        if saved is not None and _plain(dict(saved.fingerprint)) == fingerprint:
            # the fingerprint leaves zero_below out (it does not change the statistics): the
            # transforms the caller gets are the config's, not the ones the file was written with
            return NormStats(
                {n: replace(v, transform=cfg.transforms.get(n, _IDENTITY)) for n, v in saved.variables.items()},
                saved.fingerprint,
            )

    stats = compute_stats(
        pair.hr,
        cfg.transforms,
        lr=pair.lr,
        static=pair.static,
        times=train,
        fingerprint=fingerprint,
    )
    try:
        stats.save(path)
    except OSError as exc:
        warnings.warn(f"could not save normalisation statistics to {path}: {exc}", stacklevel=2)
    return stats


def _check_transform_names(transforms: Mapping[str, TransformConfig], pair: Pair) -> None:
    known: set[str] = {str(n) for n in pair.hr.data_vars} | {str(n) for n in pair.lr.data_vars}
    if pair.static is not None:
        known |= {str(n) for n in pair.static.data_vars}
    unknown = sorted(set(transforms) - known)
    if unknown:
        raise ValueError(
            f"transforms given for unknown variable(s) {', '.join(unknown)}; "
            f"variables are: {', '.join(sorted(known))}"
        )


# --------------------------------------------------------------------------------------------
# datasets


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
        wanted = transforms.get(str(name), _IDENTITY)
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

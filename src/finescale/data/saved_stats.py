"""Normalisation statistics saved beside the HR source, and reused while they still fit.

The statistics file (``finescale-stats.json``, :func:`stats_path`) holds, with the statistics, a
fingerprint of everything they depend on (variables, their unit conversions, transforms, split,
training times and source files), so a later run with a different config recomputes them
instead of reusing stale ones (:func:`load_or_compute_stats`). Apart from
:mod:`finescale.data.normalisation` because this part knows about configs, the pair and the
files on disk, which the statistics themselves need not.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from finescale.config import DataConfig, FileConfig, TransformConfig
from finescale.data.normalisation import STATS_FORMAT, NormStats, compute_stats, plain_json
from finescale.data.times import time_text
from finescale.data.transforms import IDENTITY

if TYPE_CHECKING:
    from finescale.data.pairs import Pair

__all__ = [
    "STATS_FILENAME",
    "load_or_compute_stats",
    "stats_fingerprint",
    "stats_path",
]

#: Name of the statistics file written beside the HR source.
STATS_FILENAME = "finescale-stats.json"


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
        # only what the forward transform uses: zero_below acts on the way back, not on the
        # statistics
        "transforms": {
            n: cfg.transforms.get(n, IDENTITY).model_dump(mode="json", include={"kind", "scale"})
            for n in names
        },
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
    return plain_json(fp)


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
        if saved is not None and plain_json(dict(saved.fingerprint)) == fingerprint:
            # the fingerprint leaves zero_below out (it does not change the statistics): the
            # transforms the caller gets are the config's, not the ones the file was written with
            return NormStats(
                {
                    n: replace(v, transform=cfg.transforms.get(n, IDENTITY))
                    for n, v in saved.variables.items()
                },
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

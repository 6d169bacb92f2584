"""Per-variable pointwise transforms, forward and back: ``none`` and ``log1p``.

Each variable goes through two steps before a model sees it:

1. a pointwise transform from its :class:`~finescale.config.TransformConfig` (this module):
   ``none`` or ``log1p`` (``y = log1p(x / scale)``, inverse ``x = scale * expm1(y)``), which
   tames the long tail of non-negative fields such as precipitation;
2. standardisation ``z = (y - mean) / std`` with the mean and standard deviation of the
   *transformed* variable over the training times only
   (:class:`~finescale.data.normalisation.NormStats`).

The transforms work on xarray objects (lazily, with dask), numpy arrays and torch tensors (on any
device). The statistics and the standardisation are in :mod:`finescale.data.normalisation`, the
statistics file and its reuse in :mod:`finescale.data.saved_stats`.
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import xarray as xr

from finescale.config import TransformConfig

__all__ = [
    "IDENTITY",
    "NEGATIVE_TOLERANCE",
    "forward_transform",
    "inverse_transform",
]

#: Negative inputs of log1p down to this fraction of ``scale`` are rounding noise, set to 0.
NEGATIVE_TOLERANCE = 1e-6

T = TypeVar("T")
#: The transform of a variable the config gives none for.
IDENTITY = TransformConfig()


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
    transform = transform or IDENTITY
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
    transform = transform or IDENTITY
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

"""Running a baseline: a period of a data config downscaled and written as a one-member ensemble."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import xarray as xr

from finescale.baselines.bcsd import fit_bcsd
from finescale.baselines.interpolation import interpolation
from finescale.baselines.qdm import RATIO_MAX, RATIO_MAX_TRACE, fit_quantile_delta_mapping
from finescale.baselines.quantiles import N_QUANTILES, fit_quantile_mapping
from finescale.config import DataConfig
from finescale.data import grids
from finescale.io.atomic import write_zarr
from finescale.io.stores import forecast_dataset
from finescale.version import __version__

__all__ = ["METHODS", "Method", "check_method", "run_baseline"]

Method = Literal["bilinear", "bicubic", "qm", "bcsd", "qdm"]
METHODS: tuple[str, ...] = get_args(Method)
#: The methods fitted on the training period.
FITTED = ("qm", "bcsd", "qdm")

#: Hours of output per Zarr chunk.
_CHUNK_TIMES = 24

_DESCRIPTIONS = {
    "bilinear": "bilinear interpolation of the LR fields to the HR grid",
    "bicubic": "bicubic (cubic B-spline) interpolation of the LR fields to the HR grid, "
    "precipitation clipped at 0",
    "qm": "empirical quantile mapping, per HR grid point, of bilinearly interpolated LR onto "
    "the HR truth of the training period",
    "bcsd": "bias correction (quantile mapping at the LR scale against HR coarsened to the LR "
    "grid) and spatial disaggregation of anomalies from the training climatology",
    "qdm": "quantile delta mapping (Cannon et al. 2015), per HR grid point, of bilinearly "
    "interpolated LR: the HR truth's training quantile at the value's probability within the "
    "forecast period, plus (times, for precipitation) the change of the interpolated LR's "
    "quantile from the training period",
}


def _period_text(split: str, times: np.ndarray) -> str:
    def text(t: np.datetime64) -> str:
        return str(np.datetime_as_string(np.datetime64(t, "m"))) if np.ndim(t) == 0 else str(t)

    return f"{split}: {text(times[0])} .. {text(times[-1])} ({times.size} times)"


def _forecast_attrs(
    method: str,
    cfg: DataConfig,
    split: str,
    times: np.ndarray,
    fit_period: str,
    parameters: Mapping[str, object],
) -> dict[str, str | int | float]:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "title": f"finescale baseline: {method}",
        "method": method,
        "method_description": _DESCRIPTIONS[method],
        "fit_period": fit_period or "none (no fitting)",
        "forecast_period": _period_text(split, times),
        "lr_source": str(cfg.lr.path),
        "hr_source": str(cfg.hr.path),
        "parameters": json.dumps(dict(parameters), sort_keys=True),
        "members": 1,
        "source": f"finescale {__version__}",
        "history": f"{now}: finescale baseline --method {method} --split {split}",
        "Conventions": "CF-1.8",
    }


def check_method(method: str) -> Method:
    """``method`` if it names a baseline, else ValueError naming the allowed ones."""
    if method not in METHODS:
        raise ValueError(f"unknown baseline method '{method}'; choose from {', '.join(METHODS)}")
    return method  # type: ignore[return-value]


def _ratio(value: float, hr: xr.Dataset, lr: xr.Dataset) -> int:
    """The whole-number LR/HR spacing ratio that BCSD coarsens by, else ValueError."""
    ratio = round(float(value))
    fits = all(hr.sizes[d] == ratio * lr.sizes[d] for d in grids.HORIZONTAL)
    if ratio < 1 or abs(value - ratio) > 0.02 or not fits:
        raise ValueError(
            f"bcsd needs HR to cover the LR grid with whole blocks: spacing ratio {value:.3g}, "
            f"HR {hr.sizes['y']} x {hr.sizes['x']}, LR {lr.sizes['y']} x {lr.sizes['x']}"
        )
    return ratio


def run_baseline(
    cfg: DataConfig,
    method: Method,
    out: str | Path,
    split: str = "test",
    n_quantiles: int = N_QUANTILES,
) -> Path:
    """Downscale the ``split`` period with a baseline and write it as a one-member ensemble.

    cfg: the data section (LR, HR, splits). method: ``bilinear``, ``bicubic``, ``qm``,
    ``bcsd`` or ``qdm``; qm, bcsd and qdm are fitted on the ``train`` split only, whatever
    ``split`` is (qdm also uses the distribution of ``split``'s own interpolated LR).
    split: ``train``, ``validation``, ``test`` or ``all``.
    out: Zarr store written atomically (nothing is left behind on failure) in the format of
    :func:`finescale.io.forecast_dataset`, for the HR variables that LR also has. Returns ``out``.
    Raises ValueError for an unknown method or split, and what :func:`open_pair` raises.
    """
    from finescale.data.pairs import SPLITS, open_pair, split_block

    check_method(method)
    if split not in SPLITS:  # before the (slow) pair is opened
        raise ValueError(f"unknown split '{split}'; choose from {', '.join(SPLITS)}")
    pair = open_pair(cfg)
    names = [
        str(v) for v in pair.hr.data_vars if v in pair.lr.data_vars and "time" in pair.hr[v].dims
    ]
    if not names:
        raise ValueError(
            f"LR ({cfg.lr.path}) and HR ({cfg.hr.path}) share no time-dependent variable; "
            "map them to the same names in the config"
        )
    lr, hr = pair.lr[names], pair.hr[names]
    all_times = hr["time"].values
    times = split_block(all_times, cfg.splits, split)
    train = split_block(all_times, cfg.splits, "train") if method in FITTED else all_times[:0]
    fit_period = _period_text("train", train) if train.size else ""
    parameters: dict[str, object] = {}

    if method in ("bilinear", "bicubic"):
        fields = interpolation(lr.sel(time=times), hr, method)
    elif method == "qm":
        model = fit_quantile_mapping(
            interpolation(lr.sel(time=train), hr), hr.sel(time=train), n_quantiles, fit_period
        )
        fields = model.apply(interpolation(lr.sel(time=times), hr))
        parameters = {"n_quantiles": n_quantiles, "wet_threshold": dict(model.thresholds)}
    elif method == "qdm":
        qdm = fit_quantile_delta_mapping(
            interpolation(lr.sel(time=train), hr), hr.sel(time=train), n_quantiles, fit_period
        )
        fields = qdm.apply(interpolation(lr.sel(time=times), hr))
        parameters = {
            "n_quantiles": n_quantiles,
            "wet_threshold": dict(qdm.mapping.thresholds),
            "ratio_max": RATIO_MAX,
            "ratio_max_trace_thresholds": RATIO_MAX_TRACE,
        }
    else:
        bcsd = fit_bcsd(
            lr.sel(time=train),
            hr.sel(time=train),
            _ratio(pair.ratio, hr, lr),
            n_quantiles,
            fit_period,
        )
        fields = bcsd.apply(lr.sel(time=times))
        parameters = {
            "n_quantiles": n_quantiles,
            "wet_threshold": dict(bcsd.correction.thresholds),
        }
    attrs = _forecast_attrs(method, cfg, split, times, fit_period, parameters)
    ds = forecast_dataset(fields, hr, attrs)
    ds = ds.chunk({"member": 1, "time": _CHUNK_TIMES, "y": -1, "x": -1})
    encoding = {name: {"chunks": [c[0] for c in ds[name].chunks]} for name in ds.data_vars}
    return write_zarr(ds, out, encoding=encoding)

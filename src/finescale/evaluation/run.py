"""From datasets or files to metrics (:func:`evaluate`), and to metrics.json, figures and
report.html (:func:`run_evaluate`)."""

from __future__ import annotations

import datetime as _dt
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from finescale.data.times import time_text
from finescale.data.units import is_precipitation
from finescale.evaluation.open import RESERVED_NAMES, open_dataset
from finescale.evaluation.passes import score
from finescale.evaluation.prepare import Inputs, Weighting, prepare
from finescale.evaluation.regions import Region
from finescale.evaluation.stream import Progress, finite
from finescale.version import __version__


def _provenance(name: str | None, paths: Mapping[str, Any] | None) -> dict[str, Any]:
    paths = dict(paths or {})
    sources = {k: str(paths[k]) if paths.get(k) else None for k in RESERVED_NAMES}
    sources["references"] = {k: str(v) for k, v in paths.items() if k not in RESERVED_NAMES}
    return {
        "forecast_name": name or "forecast",
        "sources": sources,
        "finescale_version": __version__,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def json_safe(obj: Any) -> Any:
    """Strict JSON: NaN/inf -> None, numpy scalars -> Python (json would write bare NaN)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return finite(obj)
    return obj


def evaluate(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    lr: xr.Dataset | None = None,
    references: Mapping[str, xr.Dataset] | None = None,
    *,
    variables: list[str] | None = None,
    weighting: Weighting = "area",
    regions: Mapping[str, Region] | None = None,
    seed: int = 0,
    name: str | None = None,
    paths: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Metrics of ``forecast`` and each of ``references`` against ``truth`` (all xarray), as
    metrics.json holds them (JSON-safe: undefined values None).

    Datasets in finescale's layout (dims ([member,] time, y, x), 2-D lat/lon) or on a regular
    (lat, lon) grid; a forecast without ``member`` is a one-member ensemble. ``lr`` sets the
    largest scale of the spectral score (its grid length; default 8 HR grid lengths).
    ``variables``: score only these (default: every forecast variable, which the truth must
    have, plus wind_speed from u10/v10). ``weighting``: "area" (cos-latitude weights, the
    default) or "none" (plain means). ``regions``: name -> box ``(lat0, lat1, lon0, lon1)`` or
    mask, scored again alone. ``name`` labels the forecast; ``paths`` only names sources in
    messages and ``meta``. Raises ValueError/KeyError naming the source and what is wrong.
    """
    inputs = prepare(
        forecast,
        truth,
        lr,
        references,
        variables=variables,
        paths=paths,
        regions=regions,
        weighting=weighting,
    )
    metrics = score(inputs, seed=seed, progress=progress)
    metrics["meta"].update(_provenance(name, paths))
    return json_safe(metrics)


def _map_time(truth: xr.Dataset, variables: list[str]) -> np.datetime64:
    """The most telling time for maps: the wettest (domain-mean precipitation), else the middle."""
    precip = next(
        (n for n in variables if n in truth.data_vars and is_precipitation(n, truth[n])), None
    )
    times = truth["time"].values
    if precip is None:
        return times[times.size // 2]
    domain_mean = truth[precip].mean(("y", "x")).values  # dask: streamed chunk by chunk
    if not np.isfinite(domain_mean).any():
        return times[times.size // 2]
    return times[int(np.nanargmax(domain_mean))]


def make_figures(inputs: Inputs, metrics: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """Every report figure (id -> matplotlib Figure), from the aligned inputs and the metrics."""
    from finescale.verify import figures, spread_figure

    label = metrics["meta"].get("forecast_name", "forecast")
    map_time = _map_time(inputs.truth, inputs.variables)
    real_time = figures.which_is_real_time(inputs.truth["time"].values, map_time, seed)
    metrics["meta"]["map_time"] = time_text(map_time)
    truth, forecast, names = inputs.truth, inputs.forecast, inputs.variables
    figs = {
        "maps": figures.maps(truth, forecast, map_time, names, lr=inputs.lr, label=label),
        "maps_references": figures.reference_maps(
            truth, {label: forecast, **inputs.references}, map_time, names
        ),
        "spectra": figures.spectra(metrics),
        "spread_skill_bands": spread_figure.spread_skill_bands(metrics),
        "rank_histograms": figures.rank_histograms(metrics),
        "qq": figures.qq(metrics),
        "scores": figures.score_bars(metrics),
    }
    figs["which_is_real"] = figures.which_is_real(truth, forecast, real_time, names, seed=seed)
    key = figures.which_is_real_key(names, forecast.sizes["member"], seed)
    metrics["meta"]["which_is_real"] = {"time": time_text(real_time), "key": key}
    return figs


def run_evaluate(
    forecast_path: str | Path,
    truth_path: str | Path | None,
    out: str | Path,
    lr_path: str | Path | None = None,
    references: Mapping[str, str | Path] | None = None,
    *,
    config: Any = None,
    split: str | None = None,
    times: slice | None = None,
    name: str | None = None,
    variables: list[str] | None = None,
    regions: Mapping[str, Region] | None = None,
    weighting: Weighting = "area",
    seed: int = 0,
    progress: Progress | None = None,
) -> Path:
    """Score the forecast on disk and write ``out``/metrics.json, figures/*.png and report.html.

    The truth is ``truth_path`` (a store in finescale's layout, or on a regular lat/lon grid)
    or, with ``config`` (an ExperimentConfig or its DataConfig), read through the data layer
    (its ``data.hr``; the LR input is ``data.lr`` unless ``lr_path`` is given): give exactly
    one. ``split`` (train, validation, test, all; needs ``config``) or ``times`` (a slice)
    restrict the truth's times. ``references``: name -> path of other forecasts scored the same
    way. ``regions``: name -> box or mask (see :func:`finescale.evaluation.parse_regions`).
    Every file is written atomically. Returns ``out``.
    """
    import matplotlib.pyplot as plt

    from finescale.evaluation.config import open_config, select_times
    from finescale.io.atomic import atomic_path, write_json, write_text
    from finescale.verify.report import render_report

    if (truth_path is None) == (config is None):
        raise ValueError("give exactly one of a truth file (--truth) and a config (--config)")
    out = Path(out)
    references = dict(references or {})
    if progress:
        progress("opening")
    lr = open_dataset(lr_path, "lr") if lr_path is not None else None
    notes: list[str] = []
    truth_names = None
    if config is not None:
        data = getattr(config, "data", config)
        opened = open_config(data, split=split, times=times)
        truth, notes, truth_names = opened.truth, opened.notes, opened.file_names
        truth_label = opened.truth_label
        if lr is None:
            lr, lr_path = opened.lr, opened.lr_label
    else:
        truth_label = truth_path
        truth = open_dataset(truth_path, "truth")
        truth, notes = select_times(truth, None, None, split=split, times=times)
    paths: dict[str, Any] = {
        "forecast": forecast_path,
        "truth": truth_label,
        "lr": lr_path,
        **references,
    }
    fc = open_dataset(forecast_path, "forecast")
    refs = {n: open_dataset(p, f"reference {n}") for n, p in references.items()}
    inputs = prepare(
        fc,
        truth,
        lr,
        refs,
        variables=variables,
        paths=paths,
        regions=regions,
        weighting=weighting,
        truth_names=truth_names,
        notes=notes,
    )
    metrics = score(inputs, seed=seed, progress=progress)
    metrics["meta"].update(_provenance(name or Path(forecast_path).name.split(".")[0], paths))

    figure_dir = out / "figures"
    figure_dir.mkdir(parents=True, exist_ok=True)
    if progress:
        progress("figures")
    pngs: dict[str, bytes] = {}
    for key, fig in make_figures(inputs, metrics, seed).items():
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=90)
        plt.close(fig)
        pngs[key] = buffer.getvalue()
        with atomic_path(figure_dir / f"{key}.png") as tmp:
            Path(tmp).write_bytes(pngs[key])
    metrics = json_safe(metrics)
    write_json(metrics, out / "metrics.json")
    if progress:
        progress("report")
    write_text(render_report(metrics, pngs), out / "report.html")
    return out

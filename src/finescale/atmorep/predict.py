"""Ensembles from a trained AtmoRep model for one task, written like every other finescale forecast.

The task is a masking strategy applied at fixed places: ``interpolation`` hides the middle time
tokens of each neighbourhood, ``forecast`` the last ones, ``targets`` every token of the
predicted fields. Neighbourhoods start every ``stride`` hours of a block of times (by default
as many hours as are hidden, so the hidden hours follow each other) and tile the whole grid
(the last tile flush with the edge; where tiles overlap the later one is kept). The hidden hours
are written, per predicted variable, as a (member, time, y, x) Zarr store that
``finescale evaluate`` scores against the truth. Each neighbourhood start is a block of
:func:`finescale.io.fill_ensemble` with its own seed: a killed run resumes with the missing
ones, and several processes can share them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from finescale.atmorep.checkpoint import TrainedAtmoRep, load_atmorep
from finescale.atmorep.series import Series, load_series
from finescale.atmorep.tokens import FixedCubes, Geometry, hidden_tokens, tile_starts, untokenize
from finescale.config.data import DataConfig
from finescale.data.pairs import open_pair, split_times
from finescale.data.sources import read_through
from finescale.io.blocks import Block, EnsembleSpec, block_seed, ensemble_blocks
from finescale.io.checks import check_writable
from finescale.io.partial import fill_ensemble
from finescale.version import __version__

TASKS = ("interpolation", "forecast", "targets")
ProgressFn = Callable[[int], None]


def hidden_hours(loaded: TrainedAtmoRep, task: str) -> np.ndarray:
    """Offsets (hours from the neighbourhood's start) that ``task`` hides."""
    g = Geometry.from_config(loaded.config)
    tt, nt = g.token[0], g.cube[0]
    if task == "targets":
        return np.arange(nt * tt)
    if task not in TASKS:
        raise ValueError(f"unknown task '{task}'; choose from {', '.join(TASKS)}")
    first, stop = hidden_tokens(task, loaded.config.masking, nt)
    return np.arange(first * tt, stop * tt)


def output_variables(
    loaded: TrainedAtmoRep, fields: list[str] | None = None
) -> dict[str, tuple[str, int]]:
    """Variable -> (field, level index) for the predicted fields written (default: every predicted
    field)."""
    predicted = [n for n, f in loaded.config.fields.items() if f.predict]
    chosen = predicted if fields is None else fields
    unknown = [f for f in chosen if f not in predicted]
    if unknown:
        raise ValueError(
            f"fields {unknown} are not predicted by this model; it predicts {', '.join(predicted)}"
        )
    return {v: (name, k) for name in chosen for k, v in enumerate(loaded.config.variables_of(name))}


def open_series(loaded: TrainedAtmoRep, split: str, where: str) -> Series:
    """The model's fields on the block ``split`` of its data, checked against its grid."""
    cfg = loaded.config
    pair = open_pair(cfg.data)
    blocks = split_times(pair.hr.time.values, cfg.data.splits)
    if split not in blocks:
        raise ValueError(f"unknown split '{split}'; choose from {', '.join(blocks)}")
    series = load_series(cfg, pair, loaded.stats, blocks[split])
    loaded.check_grid(series, f"{where} on the {split} block")
    for source, ds in (("lr", pair.lr), ("hr", pair.hr)):
        names = [
            v
            for name, f in cfg.fields.items()
            if f.source == source
            for v in cfg.variables_of(name)
        ]
        if names:  # refused values (NaN, Inf) are named now, not hours into drawing
            read_through(ds.sel(time=blocks[split]), names)
    return series


@torch.no_grad()
def predict_origin(
    loaded: TrainedAtmoRep,
    series: Series,
    t0: int,
    task: str,
    members: int,
    generator: torch.Generator,
) -> dict[str, torch.Tensor]:
    """Members over the whole grid for the neighbourhood hours starting at ``t0``: field ->
    (K, L, hours, H, W)."""
    g = Geometry.from_config(loaded.config)
    (et, ey, ex), (h, w) = g.extent, series.shape
    origins = [(t0, y0, x0) for y0 in tile_starts(h, ey) for x0 in tile_starts(w, ex)]
    cubes = FixedCubes(series, loaded.config, origins, task)
    batch = torch.utils.data.default_collate([cubes[i] for i in range(len(cubes))])
    fields = loaded.model.predict(batch, members, generator)
    out = {}
    for name, tokens in fields.items():
        full = untokenize(tokens, g.token)  # (tiles, K, L, et, ey, ex)
        grid = torch.empty(members, full.shape[2], et, h, w)
        for i, (_, y0, x0) in enumerate(origins):
            grid[..., y0 : y0 + ey, x0 : x0 + ex] = full[i]
        out[name] = grid
    return out


def predict(
    checkpoint: str | Path,
    out: str | Path,
    task: str,
    *,
    split: str = "test",
    members: int | None = None,
    stride: int | None = None,
    lead: int | None = None,
    fields: list[str] | None = None,
    seed: int = 0,
    progress: ProgressFn | None = None,
    rank: int = 0,
    world_size: int = 1,
    note: Callable[[str], None] | None = None,
    data: DataConfig | None = None,
) -> Path:
    """Write the ensemble of ``task`` over the block ``split`` of the checkpoint's data to ``out``.

    lead: forecast only, write just the hidden hour ``lead`` hours after the last known one
    (default: every hidden hour). stride: hours between neighbourhood starts (default: the
    number of hidden hours). The members of the neighbourhood starting at hour h draw their
    noise from a seed of (``seed``, h). Resuming and sharing between processes (``rank`` of
    ``world_size``) are those of :func:`finescale.io.fill_ensemble`. data: predict on this data
    instead of the checkpoint's, on the same grid (e.g. a world never trained on), standardised
    with the checkpoint's statistics as in training. Returns ``out`` once complete, else the
    partial store's folder.
    """
    check_writable(Path(out).parent)
    loaded = load_atmorep(checkpoint)
    if data is not None:
        loaded.config = loaded.config.model_copy(update={"data": data})
    cfg = loaded.config
    k = members or cfg.ensemble.members
    hours = hidden_hours(loaded, task)
    if lead is not None:
        if task != "forecast":
            raise ValueError("lead applies to the forecast task only")
        if not 1 <= lead <= hours.size:
            raise ValueError(
                f"lead {lead} outside 1..{hours.size}: the model forecasts {hours.size} hours"
            )
        hours = hours[lead - 1 : lead]
    step = stride or hours.size
    series = open_series(loaded, split, str(checkpoint))
    extent = Geometry.from_config(cfg).extent[0]
    starts = list(range(0, series.times.size - extent + 1, step))
    if not starts:
        raise ValueError(
            f"the {split} block ({series.times.size} hours) is shorter than a neighbourhood "
            f"({extent})"
        )
    valid = np.concatenate([series.times[s + hours] for s in starts])
    if np.unique(valid).size != valid.size:
        raise ValueError(
            f"stride {step} makes neighbourhoods hide the same hours twice: use at least "
            f"{hours.size}"
        )
    variables = output_variables(loaded, fields)
    attrs = {
        "title": f"finescale AtmoRep {task} ensemble",
        "source": f"finescale {__version__}",
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": loaded.sha256,
        "task": task,
        "hidden_hours": json.dumps([int(x) for x in hours]),
        "lead_hours": "" if lead is None else str(lead),
        "config": json.dumps(cfg.model_dump(mode="json")),
        "Conventions": "CF-1.8",
    }
    meta = {v: {"units": loaded.stats[v].units or "", "long_name": v} for v in variables}
    spec = EnsembleSpec(meta, k, valid, series.lat, series.lon, hours.size, attrs)
    blocks = ensemble_blocks(
        [slice(0, k)], valid.size, hours.size
    )  # block i: the hidden hours of start i

    def draw(block: Block) -> dict[str, np.ndarray]:
        start = starts[block.times.start // hours.size]
        seconds = series.times[start].astype("datetime64[s]").astype(np.int64)
        z = predict_origin(
            loaded, series, start, task, k, torch.Generator().manual_seed(block_seed(seed, seconds))
        )
        values = {}
        for v, (name, level) in variables.items():
            physical = loaded.stats.denormalise_array(
                z[name][:, level, hours].numpy().astype(np.float64), v
            )
            values[v] = physical.astype(np.float32)
        if progress:
            progress(1)
        return values

    return fill_ensemble(out, spec, blocks, draw, rank=rank, world_size=world_size, note=note).path


def write_references(
    checkpoint: str | Path,
    forecast_path: str | Path,
    out_dir: str | Path,
    wind: tuple[str, str] = ("u700", "v700"),
) -> dict[str, Path]:
    """The references of an AtmoRep store beside it: linear interpolation in time for a gap;
    persistence and advection by the LR wind ``wind`` (interpolated to the grid) for a forecast.

    Returns name -> path of one-member stores in ``out_dir`` (written atomically).
    """
    import xarray as xr

    from finescale.atmorep.references import advection, linear_in_time, persistence
    from finescale.baselines import interpolation
    from finescale.io.atomic import write_zarr

    cfg = load_atmorep(checkpoint).config
    forecast = xr.open_zarr(forecast_path)
    pair = open_pair(cfg.data)
    truth = pair.hr if cfg.grid == "hr" else pair.lr
    names = [str(v) for v in forecast.data_vars if v in truth.data_vars]
    task = forecast.attrs.get("task")
    refs: dict[str, xr.Dataset] = {}
    if task == "interpolation":
        refs["linear"] = linear_in_time(forecast, truth, names)
    elif task == "forecast":
        refs["persistence"] = persistence(forecast, truth, names)
        missing = [w for w in wind if w not in pair.lr.data_vars]
        if missing:
            raise ValueError(f"advection needs the LR wind {list(wind)}; the LR lacks {missing}")
        winds = pair.lr[list(wind)]
        if cfg.grid == "hr":
            winds = interpolation(winds, truth)
        refs["advection"] = advection(forecast, truth, winds[wind[0]], winds[wind[1]], names)
    else:
        raise ValueError(
            f"{forecast_path}: task {task!r} has no time references (interpolation or forecast)"
        )
    out_dir = Path(out_dir)
    return {name: write_zarr(ds, out_dir / f"{name}.zarr") for name, ds in refs.items()}

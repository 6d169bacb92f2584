"""The inputs of a downscaling run: the LR source and the HR static fields (or the HR grid the
checkpoint stores), opened in finescale's layout and checked against the checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from finescale.checkpoints import TrainedDownscaler
from finescale.data.alignment import check_covers
from finescale.data.errors import IN_MEMORY
from finescale.data.grids import grid_spacing, wrap180
from finescale.data.sources import open_source, open_static


def _check_static(loaded: TrainedDownscaler, static: xr.Dataset, static_path: str) -> None:
    """Refuse static fields on another grid or domain than the checkpoint's."""
    grid = loaded.grid
    if list(static.lat.shape) != grid["hr_shape"]:
        raise ValueError(
            f"{static_path}: HR grid {tuple(static.lat.shape)} differs from the "
            f"checkpoint's {tuple(grid['hr_shape'])}"
        )
    tolerance = loaded.config.data.alignment.tolerance_deg
    # as check_alignment compares static fields with HR: rounding of the coordinates in the files
    hr_tolerance = tolerance + 0.05 * min(grid_spacing(static.lat, static.lon))
    ranges = {
        "lat": [float(static.lat.min()), float(static.lat.max())],
        "lon": [float(static.lon.min()), float(static.lon.max())],
    }
    for name, (low, high) in ranges.items():
        trained = grid[f"hr_{name}_range"]
        off = np.array([low - trained[0], high - trained[1]])
        if name == "lon":  # the static file may use the other convention ([0, 360) or [-180, 180))
            off = wrap180(off)
        if np.abs(off).max() > hr_tolerance:
            raise ValueError(
                f"{static_path}: HR grid spans {name} {low:.3f}..{high:.3f}, the "
                f"checkpoint's {trained[0]:.3f}..{trained[1]:.3f}: another domain "
                "than the model was trained on"
            )


def _check_lr(loaded: TrainedDownscaler, lr: xr.Dataset, hr: xr.Dataset, lr_path: str) -> None:
    """Refuse LR on another grid than the checkpoint's, not covering the HR grid ``hr`` (lat/lon
    (y, x)), or without the variables the model was trained on."""
    grid = loaded.grid
    if list(lr.lat.shape) != grid["lr_shape"]:
        raise ValueError(
            f"{lr_path}: LR grid {tuple(lr.lat.shape)} differs from the checkpoint's "
            f"{tuple(grid['lr_shape'])}"
        )
    check_covers(lr, hr, loaded.config.data.alignment.tolerance_deg)
    missing = [v for v in loaded.layout.lr_variables if v not in lr.data_vars]
    if missing:
        raise ValueError(f"{lr_path}: LR lacks {missing}, which the model was trained on")


def hr_grid(loaded: TrainedDownscaler, checkpoint: str | Path) -> xr.Dataset:
    """The HR grid stored in the checkpoint: a dataset of lat(y, x), lon(y, x) (degrees, float64)
    alone.

    Raises ValueError for a checkpoint written before the grid was stored.
    """
    if loaded.hr_grid is None:
        if loaded.config.data.static is None:
            raise ValueError(
                f"{checkpoint}: written before checkpoints stored the HR grid, by a "
                "model trained without static fields: nothing gives its HR grid "
                "(train it again)"
            )
        raise ValueError(
            f"{checkpoint}: written before checkpoints stored the HR grid; give the "
            f"static fields (--static, as {loaded.config.data.static.path} in its "
            "config), which give it"
        )
    lat, lon = loaded.hr_grid
    return xr.Dataset(
        coords={
            "lat": (("y", "x"), lat, {"units": "degrees_north", "standard_name": "latitude"}),
            "lon": (("y", "x"), lon, {"units": "degrees_east", "standard_name": "longitude"}),
        },
        attrs={"finescale_source": f"{checkpoint} (HR grid)"},
    )


def open_inputs(
    loaded: TrainedDownscaler,
    checkpoint: str | Path,
    lr: str | Path | xr.Dataset,
    static: str | Path | xr.Dataset | None = None,
) -> tuple[xr.Dataset, xr.Dataset]:
    """The LR source and the HR static fields in finescale's layout, checked against the checkpoint.

    ``lr`` and ``static`` are files, or datasets as such files hold them (the checkpoint's
    config maps their names, units and orientation either way). Without ``static`` the second
    dataset is the HR grid stored in the checkpoint (:func:`hr_grid`), which serves a model
    trained without static fields; one trained with them needs them (ValueError naming them).
    """
    cfg = loaded.config
    if isinstance(lr, xr.Dataset):
        lr_ds, lr_where = open_source(cfg.data.lr, dataset=lr), IN_MEMORY
    else:
        lr_ds, lr_where = open_source(cfg.data.lr.model_copy(update={"path": Path(lr)})), str(lr)
    needed = list(loaded.layout.static_variables)
    if static is None:
        if needed:
            names = ", ".join(f"'{v}'" for v in needed)
            where = cfg.data.static.path  # type: ignore[union-attr]
            raise ValueError(
                f"{checkpoint}: the model was trained with the static fields {names}: "
                f"give them (--static FILE; the config read them from {where})"
            )
        grid = hr_grid(loaded, checkpoint)
    else:
        if cfg.data.static is None:
            given = static if not isinstance(static, xr.Dataset) else IN_MEMORY
            raise ValueError(
                f"{checkpoint}: the model was trained without static fields; leave "
                f"out the static fields ({given}): the HR grid comes from the "
                "checkpoint"
            )
        if isinstance(static, xr.Dataset):
            grid, static_where = open_static(cfg.data.static, dataset=static), IN_MEMORY
        else:
            grid = open_static(cfg.data.static.model_copy(update={"path": Path(static)}))
            static_where = str(static)
        _check_static(loaded, grid, static_where)
    _check_lr(loaded, lr_ds, grid, lr_where)
    return lr_ds, grid

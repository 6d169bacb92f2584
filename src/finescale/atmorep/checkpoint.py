"""Loading a trained AtmoRep model back, without Lightning (prediction and attention maps use it).

The checkpoint is read and checked by :func:`finescale.checkpoints.read_checkpoint` (safe load,
digest, kind); its description gives the config, statistics, field levels and grid summary.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from finescale.atmorep.model import AtmoRep
from finescale.atmorep.series import Series
from finescale.atmorep.settings import AtmoRepConfig
from finescale.checkpoints import load_weights, read_checkpoint, reading_description
from finescale.data.normalisation import NormStats

#: the kind of checkpoint (``read_checkpoint``'s ``kind``) an AtmoRep run writes
KIND = "atmorep"


@dataclass
class TrainedAtmoRep:
    """A trained AtmoRep model (EMA weights, eval mode) and what it was trained with."""

    model: AtmoRep
    config: AtmoRepConfig
    stats: NormStats
    levels: dict[str, int]
    grid: dict[str, Any]
    sha256: str

    def check_grid(self, series: Series, where: str) -> None:
        """Refuse a series on another grid than the model was trained on (its shape and extent)."""
        shape = list(series.shape)
        lat = [float(np.min(series.lat)), float(np.max(series.lat))]
        if shape != self.grid["shape"] or not np.allclose(lat, self.grid["lat_range"], atol=1e-3):
            raise ValueError(
                f"{where}: grid {shape} over latitudes {lat} differs from the checkpoint's "
                f"{self.grid['shape']} over {self.grid['lat_range']}"
            )


def load_atmorep(path: str | Path) -> TrainedAtmoRep:
    """Load an AtmoRep checkpoint safely (weights_only) with its EMA weights."""
    read = read_checkpoint(path, KIND)
    meta = read.meta
    with reading_description(path, "AtmoRep"):
        cfg = AtmoRepConfig.model_validate(meta["config"])
        levels = {k: int(v) for k, v in meta["levels"].items()}
        stats, grid = NormStats.from_dict(meta["stats"]), dict(meta["grid"])
    model = AtmoRep(cfg, levels)
    load_weights(model, read.weights, path)
    return TrainedAtmoRep(model, cfg, stats, levels, grid, read.sha256)

"""finescale in Python: load a trained model, downscale datasets in memory, score ensembles.

    import finescale
    model = finescale.load("runs/diffusion/checkpoints/last.ckpt")
    ensemble = model.downscale(lr, static, members=8, times="2020-07-01T00..2020-07-01T23")
    metrics = finescale.evaluate(ensemble, truth)

``Model.downscale`` sets the run up and draws its blocks exactly as ``finescale downscale`` does
(:func:`finescale.generation.plan`, :func:`finescale.generation.draw_ensemble`), so for the same
settings and seed it returns the ensemble that command writes, bit for bit, without writing
anything. Nothing here imports Lightning. docs/python-api.md has an example.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from finescale.checkpoints import TrainedDownscaler, load_checkpoint
from finescale.config import ExperimentConfig
from finescale.generation import draw_ensemble, plan
from finescale.models.consistency import ConsistencyModel
from finescale.models.diffusion import DiffusionModel

Times = str | slice | np.ndarray | None


class Model:
    """A trained downscaling model, loaded from its checkpoint (:func:`load`)."""

    def __init__(self, loaded: TrainedDownscaler, checkpoint: str | Path):
        self._loaded = loaded
        self.checkpoint = Path(checkpoint)

    @property
    def config(self) -> ExperimentConfig:
        """The experiment the model was trained with (data, model, train and sample sections)."""
        return self._loaded.config

    @property
    def variables(self) -> tuple[str, ...]:
        """The HR variables it generates, in output order."""
        return self._loaded.layout.target_variables

    @property
    def static_variables(self) -> tuple[str, ...]:
        """The HR static fields it needs (none: ``downscale`` takes no ``static``)."""
        return self._loaded.layout.static_variables

    def downscale(
        self,
        lr: xr.Dataset | str | Path,
        static: xr.Dataset | str | Path | None = None,
        members: int = 16,
        times: Times = None,
        **sample_overrides: Any,
    ) -> xr.Dataset:
        """An HR ensemble (member, time, y, x) in physical units, in memory.

        lr: the LR input as its file holds it (names, units, orientation of the model's
        config; a ``member`` dim gives ``members`` HR members per LR member), or the file.
        static: the HR static fields likewise, needed only by a model trained with them
        (:attr:`static_variables`); without them the HR grid comes from the checkpoint.
        members: per LR input (a regression model gives 1). times: all (None), ``"START..END"``
        (inclusive ISO times), a split name of the config (``"test"``), a slice of times or an
        array of them. sample_overrides: other sample settings (``steps``, ``solver``,
        ``seed``, ``batch_size``, ``tile_size``, ...; a consistency student from
        ``finescale distill`` takes ``calls`` and ``renoise`` instead of the solver's).

        The same members, coordinates and attributes as ``finescale downscale`` writes with
        the same settings (except ``lr_source``, "in-memory dataset" for a dataset).
        """
        from finescale.pipeline import parse_times

        if isinstance(times, str):
            times = parse_times(times, self.checkpoint)
        run = plan(
            self._loaded,
            self.checkpoint,
            lr,
            static,
            sample={"members": members, **sample_overrides},
            times=times,
        )
        return draw_ensemble(run)

    def __repr__(self) -> str:
        loaded, grid = self._loaded, self._loaded.grid
        kind = loaded.config.model.kind
        if (
            isinstance(loaded.model, DiffusionModel)
            and loaded.config.model.residual == "regression"
        ):
            kind += " over a regression mean"
        if isinstance(loaded.model, ConsistencyModel):
            kind = f"consistency student ({loaded.config.sample.calls} calls) of a {kind} model"
        static = ", ".join(self.static_variables) or "none (HR grid from the checkpoint)"
        return (
            f"finescale.Model({kind}: {', '.join(self.variables)} on an HR grid of "
            f"{grid['hr_shape'][0]} x {grid['hr_shape'][1]} from LR {grid['lr_shape'][0]} x "
            f"{grid['lr_shape'][1]} ({', '.join(loaded.layout.lr_variables)}); "
            f"static fields: {static}; "
            f"checkpoint {self.checkpoint}, sha256 {loaded.sha256[:12]})"
        )


def load(checkpoint: str | Path) -> Model:
    """The model of a checkpoint written by ``finescale train`` or ``finescale distill`` (read
    safely, digest checked)."""
    return Model(load_checkpoint(checkpoint), checkpoint)


def evaluate(forecast: xr.Dataset, truth: xr.Dataset, **options: Any) -> dict[str, Any]:
    """Scores of ``forecast`` against ``truth`` as metrics.json holds them (nothing written).

    ``metrics["forecast"][variable]["crps_fair"]`` and so on; ``options`` as
    :func:`finescale.evaluation.evaluate` takes them (``lr``, ``references``, ``variables``,
    ``weighting``, ``regions``, ``seed``, ``name``).
    """
    from finescale import evaluation

    return evaluation.evaluate(forecast, truth, **options)

"""A consistency student of a residual diffusion model (``finescale distill``).

The student is the teacher's :class:`~finescale.models.diffusion.DiffusionModel` in every part
but one: the same network, inputs (``cond`` and ``mu``), regression mean and residual scale, with
the same weight names, so it starts from the teacher's weights. Its network is read as the
consistency function of :mod:`finescale.diffusion.consistency` (the end at ``sigma_min`` of the
teacher's probability-flow ODE through a noisy residual), not as a denoiser: members are drawn in
``sample.calls`` calls (``finescale.generation.draw``), never by an ODE solver.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import NoReturn

import torch
from torch import Tensor

from finescale.diffusion import consistency
from finescale.diffusion.settings import EDMSettings
from finescale.models.diffusion import DiffusionModel
from finescale.models.regression import RegressionModel
from finescale.nn.settings import UNetSettings


class ConsistencyModel(DiffusionModel):
    """f(z; sigma): the scaled residual at ``sigma_min`` on the teacher's ODE trajectory through
    ``z`` at ``sigma``, for ``sigma_min <= sigma <= sigma_max`` (the levels it was distilled on)."""

    def __init__(
        self,
        net: UNetSettings,
        settings: EDMSettings,
        channel_weights: Tensor,
        regression: RegressionModel | None,
        sigma_min: float,
        sigma_max: float,
        local_scale: Sequence[int] = (),
        noise_scale: Sequence[float] | None = None,
        local_scale_key: Sequence[Sequence[int]] | None = None,
    ):
        super().__init__(
            net, settings, channel_weights, regression, local_scale, noise_scale, local_scale_key
        )
        if not 0 < sigma_min < sigma_max:
            raise ValueError(
                f"a consistency model needs 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}"
            )
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)

    @classmethod
    def of(cls, model: DiffusionModel, sigma_min: float, sigma_max: float) -> ConsistencyModel:
        """A student with ``model``'s architecture, inputs and residual scale (its local and
        noise scales too), holding a copy of its weights and buffers (``model`` left as it is)."""
        regression = copy.deepcopy(model.regression)
        student = cls(
            model.net.settings,
            model.settings,
            model.channel_weights.clone(),
            regression,
            sigma_min,
            sigma_max,
            model.local_channels,
            model.noise_scale.tolist(),
            None if model.local_scale is None else model.local_scale.keys,
        )
        student.load_state_dict(model.state_dict())
        return student

    def consistency(self, z: Tensor, sigma: Tensor | float, cond: Tensor, mu: Tensor) -> Tensor:
        """f(z; sigma) (B, C_out, H, W), conditioned on cond and mu as the teacher's denoiser is."""
        return consistency.consistency(
            self.net,
            z,
            sigma if isinstance(sigma, Tensor) else torch.tensor(sigma, dtype=torch.float64),
            torch.cat([cond, mu], dim=1),
            self.sigma_data,
            self.sigma_min,
        )

    def denoise(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(
            "a consistency student has no denoiser for an ODE solver: its members are drawn "
            "with its consistency function (finescale.generation.draw)"
        )

    def loss(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(
            "a consistency student is trained by distillation from its teacher "
            "(finescale.training.distill), not with the EDM loss"
        )

    def distillation_loss(
        self,
        batch: dict[str, Tensor],
        teacher: DiffusionModel,
        target: ConsistencyModel,
        levels: Tensor,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Consistency-distillation loss on a training batch (scalar).

        ``teacher`` moves the noisy scaled residual one Heun step between neighbouring
        ``levels`` (ascending from ``sigma_min``, :func:`~finescale.diffusion.consistency.
        distillation_levels`); ``target`` gives the aim there. Both see the batch's ``cond`` and
        this student's ``mu``. Weighted per variable and area as the teacher's EDM loss.
        """
        if float(levels[0]) != self.sigma_min:
            raise ValueError(
                f"levels start at {float(levels[0])}, not at sigma_min {self.sigma_min}"
            )
        mu = self.mu(batch["cond"], batch["base"])
        weights = self.channel_weights[:, None, None]
        area = batch.get("area")
        if area is not None:  # as the EDM loss: mean 1 over the batch, 0 where no target
            weights = weights * area / area.mean().clamp_min(torch.finfo(area.dtype).tiny)

        def denoiser(x: Tensor, sigma: Tensor) -> Tensor:
            return teacher.denoise(x, sigma, batch["cond"], mu)

        return consistency.distillation_loss(
            self.net,
            target.net,
            denoiser,
            self.scaled_residual(batch["target"], mu),
            torch.cat([batch["cond"], mu], dim=1),
            levels,
            self.sigma_data,
            generator=generator,
            weights=weights,
        )

"""Settings of an EDM model's preconditioning and training noise, torch-free so the config can
embed them (the ``model.edm`` section)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class EDMSettings(BaseModel):
    """EDM training settings (Karras et al. 2022): the data's scale and the training noise levels.

    ``sigma_data`` is 1.0 for standardised fields, as in Anemoi (EDM uses 0.5 for images in
    [-1, 1]). Training draws ln(sigma) ~ N(P_mean, P_std^2). The sampling schedule is the
    sampler's (``sample`` section of the config).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    sigma_data: float = Field(default=1.0, gt=0, description="Std of the (standardised) data.")
    P_mean: float = Field(
        default=-1.2, description="Mean of ln(sigma) during training (CorrDiff: 0 for residuals)."
    )
    P_std: float = Field(default=1.2, gt=0, description="Std of ln(sigma) during training.")

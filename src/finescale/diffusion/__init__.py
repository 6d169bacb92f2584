"""EDM diffusion maths: preconditioning, training noise and loss (:mod:`.edm`), noise schedules
and samplers (:mod:`.samplers`). Plain torch: no data files, no Lightning."""

from finescale.diffusion.edm import (
    EDMLoss,
    EDMSettings,
    Network,
    Preconditioning,
    denoise,
    edm_loss,
    loss_weight,
    preconditioning,
    sample_sigma,
)
from finescale.diffusion.samplers import (
    SOLVERS,
    Denoiser,
    Solver,
    karras_sigmas,
    log_uniform_sigmas,
    n_calls,
    sample,
)

__all__ = [
    "SOLVERS",
    "Denoiser",
    "EDMLoss",
    "EDMSettings",
    "Network",
    "Preconditioning",
    "Solver",
    "denoise",
    "edm_loss",
    "karras_sigmas",
    "log_uniform_sigmas",
    "loss_weight",
    "n_calls",
    "preconditioning",
    "sample",
    "sample_sigma",
]

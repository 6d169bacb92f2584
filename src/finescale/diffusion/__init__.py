"""EDM diffusion maths: preconditioning, training noise and loss (:mod:`.edm`), noise schedules
and samplers (:mod:`.samplers`). Plain torch: no data files, no Lightning.

The settings (:mod:`.settings`) import only pydantic, so the config can embed them; the maths
needs torch, so its names are imported on first use.
"""

from __future__ import annotations

from typing import Any

from finescale.diffusion.settings import EDMSettings

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
_EDM = (
    "EDMLoss",
    "Network",
    "Preconditioning",
    "denoise",
    "edm_loss",
    "loss_weight",
    "preconditioning",
    "sample_sigma",
)
_SAMPLERS = (
    "SOLVERS",
    "Denoiser",
    "Solver",
    "karras_sigmas",
    "log_uniform_sigmas",
    "n_calls",
    "sample",
)


def __getattr__(name: str) -> Any:
    if name in _EDM:
        from finescale.diffusion import edm

        return getattr(edm, name)
    if name in _SAMPLERS:
        from finescale.diffusion import samplers

        return getattr(samplers, name)
    raise AttributeError(f"module 'finescale.diffusion' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EDM, *_SAMPLERS])

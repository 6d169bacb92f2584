"""Consistency models distilled from an EDM denoiser (Song, Dhariwal, Chen & Sutskever 2023).

A consistency function maps every point of a probability-flow ODE trajectory to its end at
``sigma_min``: ``f(x_sigma; sigma) = x_{sigma_min}``. It is parameterised like the EDM denoiser,
with coefficients that make it the identity at ``sigma_min`` (the boundary condition), so a
student can start from the teacher's weights:

    f(x; s) = c_skip(s) x + c_out(s) F(c_in(s) x, c_noise(s), cond)
    c_skip = s_d^2 / ((s - s_min)^2 + s_d^2)     c_out = (s - s_min) s_d / sqrt(s^2 + s_d^2)
    c_in   = 1 / sqrt(s^2 + s_d^2)              c_noise = ln(s) / 4

**Distillation** on the teacher's levels ``s_1 = s_min < ... < s_N = s_max`` (Karras spacing):
clean data ``y`` noised to ``x = y + s_{n+1} eps`` is moved one Heun step along the teacher's
ODE to ``s_n`` (``x_hat``), and the student at ``(x, s_{n+1})`` is pulled towards its target copy
at ``(x_hat, s_n)`` (an exponential moving average of the student, no gradient through it):

    loss = mean over points of (f_student(x; s_{n+1}) - f_target(x_hat; s_n))^2 / (s_{n+1} - s_n)

(the weighting of Song & Dhariwal 2023's improved consistency training, which keeps the pull of
every pair of neighbouring levels alike). Where the levels are adjacent the target is one ODE
step away, so consistency propagates from ``s_min``, where it holds by construction, upwards.

**Sampling** in k calls (Algorithm 1 of Song et al.): ``x = s_max z``, ``y = f(x; s_max)``; for
each further level ``tau``: ``x = y + sqrt(tau^2 - s_min^2) z``, ``y = f(x; tau)``. Every call
draws fresh noise, so the members of an ensemble stay independent draws.

Plain torch; ``F`` is any callable with the signature of :data:`finescale.diffusion.edm.Network`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Any

import torch
from torch import Tensor

from finescale.diffusion.edm import Network, Preconditioning, batch_sigma
from finescale.diffusion.samplers import karras_sigmas

__all__ = [
    "consistency",
    "consistency_coefficients",
    "distillation_levels",
    "distillation_loss",
    "sample_consistency",
    "sampling_levels",
    "teacher_step",
]

#: ``teacher(x, sigma) -> D(x; sigma)``: the teacher's denoised estimate, ``sigma`` (B, 1, ..., 1).
Teacher = Callable[[Tensor, Tensor], Tensor]


def consistency_coefficients(
    sigma: Tensor, sigma_data: float | Tensor, sigma_min: float
) -> Preconditioning:
    """``(c_skip, c_out, c_in, c_noise)`` of the consistency function at ``sigma`` (>= sigma_min).

    ``c_skip = 1`` and ``c_out = 0`` at ``sigma_min``: f is the identity there. Shapes and dtype
    of ``sigma``.
    """
    total = sigma**2 + sigma_data**2
    offset = sigma - sigma_min
    c_skip = sigma_data**2 / (offset**2 + sigma_data**2)
    c_out = offset * sigma_data * total.rsqrt()
    return Preconditioning(c_skip, c_out, total.rsqrt(), sigma.log() / 4)


def consistency(
    F: Network, x: Tensor, sigma: Tensor, cond: Any, sigma_data: float | Tensor, sigma_min: float
) -> Tensor:
    """The consistency function ``f(x; sigma)`` of network ``F`` (see the module docstring).

    ``x`` (B, C, *spatial); ``sigma`` (B, 1, ..., 1) or (B,) or 0-d, any float dtype (the
    coefficients are computed in it, then cast to ``x``'s dtype). Returns ``x``'s shape and dtype.
    """
    c = consistency_coefficients(batch_sigma(sigma, x), sigma_data, sigma_min)
    c_skip, c_out, c_in = (v.to(x.dtype) for v in c[:3])
    return c_skip * x + c_out * F(c_in * x, c.c_noise.reshape(x.shape[0]).to(x.dtype), cond)


def distillation_levels(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """The ``n`` noise levels distillation steps between, ascending from ``sigma_min`` to
    ``sigma_max`` (Karras spacing, float64, shape (n,); the ends exactly those two, which the
    spacing's power leaves a rounding error away)."""
    if n < 2:
        raise ValueError(f"distillation needs at least 2 levels, got {n}")
    levels = karras_sigmas(n, sigma_min, sigma_max, rho)[:-1].flip(0)
    levels[0], levels[-1] = sigma_min, sigma_max
    return levels


@torch.no_grad()
def teacher_step(teacher: Teacher, x: Tensor, sigma: Tensor, sigma_next: Tensor) -> Tensor:
    """One Heun step of the probability-flow ODE ``dx/ds = (x - D(x; s)) / s`` from ``sigma``
    down to ``sigma_next`` (both (B, 1, ..., 1), > 0), two teacher calls; float64 arithmetic."""
    h = (sigma_next - sigma).to(torch.float64)
    x64 = x.to(torch.float64)
    slope = (x64 - teacher(x, sigma).to(torch.float64)) / sigma.to(torch.float64)
    euler = x64 + h * slope
    slope_next = (euler - teacher(euler.to(x.dtype), sigma_next).to(torch.float64)) / sigma_next.to(
        torch.float64
    )
    return (x64 + h * (slope + slope_next) / 2).to(x.dtype)


def distillation_loss(
    student: Network,
    target: Network,
    teacher: Teacher,
    y: Tensor,
    cond: Any,
    levels: Tensor,
    sigma_data: float | Tensor,
    *,
    generator: torch.Generator | None = None,
    weights: Tensor | None = None,
) -> Tensor:
    """Consistency-distillation loss of ``student`` on clean data ``y`` (B, C, *spatial).

    Draws one pair of neighbouring ``levels`` (from :func:`distillation_levels`) per sample and
    the noise (from ``generator``), moves ``y + s_{n+1} eps`` one teacher Heun step to ``s_n`` and
    returns the weighted squared difference of the student there and of ``target`` (the
    student's moving average; no gradient) at the stepped point: a scalar in ``y``'s dtype.
    ``weights``: multipliers of each point's squared difference, broadcastable to ``y`` (a
    variable's weight, a grid point's area), used as given; None: all 1.
    """
    b = y.shape[0]
    shape = (b,) + (1,) * (y.ndim - 1)
    device = generator.device if generator is not None else y.device
    n = torch.randint(0, levels.numel() - 1, (b,), generator=generator, device=device)
    levels, n = levels.to(y.device), n.to(y.device)
    sigma_lo, sigma_hi = levels[n].reshape(shape), levels[n + 1].reshape(shape)
    eps = torch.randn(y.shape, generator=generator, device=y.device, dtype=y.dtype)
    x = y + sigma_hi.to(y.dtype) * eps
    sigma_min = float(levels[0])
    x_hat = teacher_step(teacher, x, sigma_hi.to(y.dtype), sigma_lo.to(y.dtype))
    with torch.no_grad():
        aim = consistency(target, x_hat, sigma_lo, cond, sigma_data, sigma_min)
    guess = consistency(student, x, sigma_hi, cond, sigma_data, sigma_min)
    weight = (1.0 / (sigma_hi - sigma_lo)).to(y.dtype)
    if weights is not None:
        weight = weight * weights.to(y.dtype)
    return (weight * (guess - aim) ** 2).mean()


def sampling_levels(
    calls: int, sigma_min: float, sigma_max: float, rho: float = 7.0
) -> list[float]:
    """The levels a ``calls``-call sampler evaluates the student at when none are given: the first
    ``calls`` of ``calls + 1`` Karras levels from ``sigma_max`` down to ``sigma_min``, descending
    (2 calls from 20 to 0.002: 20, 0.82; from 80: 80, 2.5)."""
    if calls < 1:
        raise ValueError(f"a sampler makes at least 1 call, got {calls}")
    levels = karras_sigmas(calls + 1, sigma_min, sigma_max, rho)[1:calls].tolist()
    return [float(sigma_max), *levels]


@torch.no_grad()
def sample_consistency(
    f: Callable[[Tensor, Tensor], Tensor],
    noise: Tensor,
    levels: Sequence[float],
    sigma_min: float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Samples in ``len(levels)`` calls of the consistency function ``f(x, sigma)``.

    ``noise`` (B, ...) standard normal; ``levels`` descending, the first the largest level the
    student was distilled at (``sigma_max``), the others where the sample is noised again
    (``x = y + sqrt(tau^2 - sigma_min^2) z``, with ``z`` from ``generator``). ``sigma`` reaches
    ``f`` as a 0-d float64 tensor.
    """
    levels = [float(s) for s in levels]
    if not levels or any(a <= b for a, b in pairwise(levels)) or levels[-1] <= sigma_min:
        raise ValueError(f"levels must be descending and above sigma_min={sigma_min}, got {levels}")
    y = f(noise * levels[0], torch.tensor(levels[0], dtype=torch.float64, device=noise.device))
    for tau in levels[1:]:
        z = torch.randn(noise.shape, generator=generator, device=noise.device, dtype=noise.dtype)
        x = y + (tau**2 - sigma_min**2) ** 0.5 * z
        y = f(x, torch.tensor(tau, dtype=torch.float64, device=noise.device))
    return y

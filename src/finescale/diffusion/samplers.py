"""Noise schedules and ODE/SDE solvers that turn noise into samples with an EDM denoiser.

Conventions
-----------
* Variance-exploding parameterisation ``x = y + sigma * eps``: the probability-flow ODE is
  ``dx/dsigma = (x - D(x; sigma)) / sigma``, integrated from ``sigmas[0]`` down to
  ``sigmas[-1]`` (usually 0). ``x`` starts as ``sigmas[0] * noise``.
* ``denoise(x, sigma)`` is any callable returning the denoised estimate ``D(x; sigma)`` shaped
  like ``x``. It receives ``x`` in ``noise``'s dtype (the network's dtype) and ``sigma`` as a
  0-d float64 tensor on ``x``'s device (one level for the whole batch; cast it as the network
  needs, e.g. with :func:`finescale.diffusion.edm.denoise`, which does).
* The solver state is float64 whatever ``noise``'s dtype: many small updates are added to a
  state that starts ~``sigma_max`` large, and float32 would round them away (Anemoi does the
  same). Only the denoiser calls run in the input dtype; the result comes back in it.
* The DPM-Solver++ steps use ``lambda = -ln(sigma)`` (``alpha = 1`` in the VE form), so a step
  from ``sigma`` to ``sigma_next`` has ``h = ln(sigma / sigma_next) > 0``.

Network calls for N steps with a schedule ending at 0 (see :func:`n_calls`): ``euler`` N,
``heun`` 2N - 1 (no correction on the last step to 0), ``dpmpp_2m`` N.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Literal, get_args

import torch
from torch import Tensor

__all__ = [
    "SOLVERS",
    "Denoiser",
    "Solver",
    "karras_sigmas",
    "log_uniform_sigmas",
    "n_calls",
    "sample",
]

#: ``denoise(x, sigma) -> D(x; sigma)``: ``x`` in the network's dtype, ``sigma`` a 0-d float64
#: tensor.
Denoiser = Callable[[Tensor, Tensor], Tensor]
Solver = Literal["euler", "heun", "dpmpp_2m"]
SOLVERS: tuple[str, ...] = get_args(Solver)


def karras_sigmas(
    n: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0
) -> Tensor:
    """Karras et al. (2022) noise levels for ``n`` steps: float64, shape (n + 1,), last one 0.

    ``s_i = (s_max^(1/rho) + i/(n-1) (s_min^(1/rho) - s_max^(1/rho)))^rho`` for i = 0..n-1,
    then 0; ``rho`` > 1 crowds the steps at low noise, where the details form. ``n = 1`` gives
    ``[sigma_max, 0]``.
    """
    if n < 1:
        raise ValueError(f"need at least one step, got n={n}")
    if not 0 < sigma_min <= sigma_max:
        raise ValueError(f"need 0 < sigma_min <= sigma_max, got {sigma_min}, {sigma_max}")
    if not rho > 0:
        raise ValueError(f"rho must be > 0, got {rho}")
    ramp = torch.arange(n, dtype=torch.float64) / max(n - 1, 1)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def log_uniform_sigmas(n: int, sigma_min: float = 0.002, sigma_max: float = 80.0) -> Tensor:
    """Noise levels equally spaced in ln(sigma) for ``n`` steps: float64, shape (n + 1,),
    last one 0.

    Equal steps ``h`` in DPM-Solver's ``lambda = -ln(sigma)`` (Lu et al. 2022 recommend them for
    their solvers; the limit rho -> infinity of :func:`karras_sigmas`). With the multistep
    solver they keep a Gaussian's spread within 2-4 % at 8-16 steps where the Karras levels
    (rho = 7) widen it by 8-16 %.
    """
    if n < 1:
        raise ValueError(f"need at least one step, got n={n}")
    if not 0 < sigma_min <= sigma_max:
        raise ValueError(f"need 0 < sigma_min <= sigma_max, got {sigma_min}, {sigma_max}")
    ramp = torch.arange(n, dtype=torch.float64) / max(n - 1, 1)
    sigmas = torch.exp(math.log(sigma_max) + ramp * (math.log(sigma_min) - math.log(sigma_max)))
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def n_calls(solver: Solver, n_steps: int) -> int:
    """Denoiser calls of :func:`sample` for ``n_steps`` steps on a schedule ending at 0.

    ``euler``: N (one slope per step). ``heun``: 2N - 1 (a second slope per step, except on the
    last step to sigma = 0, where the slope cannot be evaluated and Euler is exact for the
    denoised value anyway). ``dpmpp_2m``: N (the second order reuses the previous step's
    denoised estimate). Churn adds no calls.
    """
    _check_solver(solver)
    if n_steps < 1:
        raise ValueError(f"need at least one step, got {n_steps}")
    return 2 * n_steps - 1 if solver == "heun" else n_steps


@torch.no_grad()
def sample(
    denoise: Denoiser,
    noise: Tensor,
    sigmas: Tensor | Sequence[float],
    *,
    solver: Solver = "heun",
    S_churn: float = 0.0,
    S_min: float = 0.0,
    S_max: float = float("inf"),
    S_noise: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Integrate from ``sigmas[0] * noise`` down the schedule ``sigmas``; return the samples.

    Args:
        denoise: ``denoise(x, sigma)``, see the module notes (dtype and ``sigma`` format).
        noise: standard normal (any shape, e.g. (B, C, H, W)); scaled by ``sigmas[0]`` here.
        sigmas: strictly decreasing non-negative noise levels, N + 1 values for N steps
            (e.g. :func:`karras_sigmas`); usually ending with 0, which gives the denoised
            samples.
        solver: ``"euler"`` (first order), ``"heun"`` (Karras Algorithm 1/2: Euler plus a
            trapezoidal correction) or ``"dpmpp_2m"`` (DPM-Solver++(2M), Lu et al. 2022:
            second-order multistep in data-prediction form, one call per step).
        S_churn, S_min, S_max, S_noise: stochastic churn (Karras Algorithm 2; euler and heun
            only): at each level ``sigma`` in [S_min, S_max], ``gamma = min(S_churn / N,
            sqrt(2) - 1)``, the level is raised to ``t_hat = sigma (1 + gamma)`` by adding
            noise of std ``S_noise sqrt(t_hat^2 - sigma^2)``, then the step starts from
            ``t_hat``. ``S_churn = 0`` is the deterministic ODE.
        generator: random source of the churn noise (on ``noise``'s device); unused without
            churn.

    Returns:
        Samples shaped like ``noise``, in its dtype. Runs without autograd.
    """
    _check_solver(solver)
    if not noise.is_floating_point():
        raise TypeError(f"noise must be a floating tensor, got {noise.dtype}")
    levels = _check_sigmas(sigmas)
    if S_churn < 0 or S_noise < 0:
        raise ValueError(f"S_churn and S_noise must be >= 0, got {S_churn}, {S_noise}")
    if S_churn > 0 and solver == "dpmpp_2m":
        # fresh noise would break the multistep history; use euler/heun for churn
        raise ValueError("churn (S_churn > 0) works with 'euler' and 'heun', not 'dpmpp_2m'")

    def call(x: Tensor, sigma: float) -> Tensor:
        level = torch.tensor(sigma, dtype=torch.float64, device=x.device)
        return denoise(x.to(noise.dtype), level).to(torch.float64)

    x = noise.to(torch.float64) * levels[0]
    if solver == "dpmpp_2m":
        x = _dpmpp_2m(call, x, levels)
    else:
        gamma = min(S_churn / (len(levels) - 1), math.sqrt(2) - 1)
        churn = _Churn(gamma, S_min, S_max, S_noise, generator)
        x = _euler_heun(call, x, levels, second_order=solver == "heun", churn=churn)
    return x.to(noise.dtype)


# --------------------------------------------------------------------------------------------
# checks


def _check_solver(solver: str) -> None:
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; choose one of: {', '.join(SOLVERS)}")


def _check_sigmas(sigmas: Tensor | Sequence[float]) -> list[float]:
    """The schedule as python floats (float64, and no device sync inside the loop)."""
    levels = torch.as_tensor(sigmas, dtype=torch.float64).cpu().reshape(-1).tolist()
    if len(levels) < 2:
        raise ValueError(f"need at least two noise levels (one step), got {len(levels)}")
    if not all(math.isfinite(s) for s in levels):
        raise ValueError("noise levels must be finite")
    if levels[-1] < 0 or any(a <= b for a, b in pairwise(levels)):
        raise ValueError("noise levels must be non-negative and strictly decreasing")
    return levels


# --------------------------------------------------------------------------------------------
# solvers: x is float64; call(x, sigma) returns D(x; sigma) in float64


class _Churn:
    """Karras churn: raise the level ``sigma`` to ``t_hat`` by adding fresh noise."""

    def __init__(
        self,
        gamma: float,
        S_min: float,
        S_max: float,
        S_noise: float,
        generator: torch.Generator | None,
    ) -> None:
        self.gamma, self.S_min, self.S_max = gamma, S_min, S_max
        self.S_noise, self.generator = S_noise, generator

    def __call__(self, x: Tensor, sigma: float) -> tuple[Tensor, float]:
        """Return ``(x_hat, t_hat)``; ``(x, sigma)`` unchanged outside [S_min, S_max]."""
        if not (self.gamma > 0 and self.S_min <= sigma <= self.S_max):
            return x, sigma
        t_hat = sigma * (1 + self.gamma)
        eps = torch.randn(x.shape, generator=self.generator, dtype=x.dtype, device=x.device)
        return x + self.S_noise * math.sqrt(t_hat**2 - sigma**2) * eps, t_hat


def _euler_heun(
    call: Callable[[Tensor, float], Tensor],
    x: Tensor,
    sigmas: list[float],
    *,
    second_order: bool,
    churn: _Churn,
) -> Tensor:
    """Euler (first order) or Heun (trapezoidal correction) steps, with optional churn."""
    for sigma, sigma_next in pairwise(sigmas):
        x_hat, t_hat = churn(x, sigma)
        d = (x_hat - call(x_hat, t_hat)) / t_hat  # slope dx/dsigma at t_hat
        x = x_hat + (sigma_next - t_hat) * d
        if second_order and sigma_next > 0:  # the slope at sigma = 0 is undefined
            d_next = (x - call(x, sigma_next)) / sigma_next
            x = x_hat + (sigma_next - t_hat) * (d + d_next) / 2
    return x


def _dpmpp_2m(call: Callable[[Tensor, float], Tensor], x: Tensor, sigmas: list[float]) -> Tensor:
    """DPM-Solver++(2M) in data-prediction form, VE parameterisation (alpha = 1).

    With ``lambda = -ln(sigma)`` and ``h = lambda_next - lambda = ln(sigma / sigma_next)``,
    the exact solution of the ODE given a data prediction ``D`` constant over the step is
    ``x_next = (sigma_next / sigma) x + (1 - e^(-h)) D``. The second-order multistep estimate
    extrapolates ``D`` linearly in lambda from the previous denoised value:
    ``D = D_i + (D_i - D_{i-1}) / (2 r)``, ``r = h_{i-1} / h_i``. The first step (no history)
    and the last step to sigma = 0 (``h`` infinite, ``x_next = D``) are first order.
    """
    d_prev: Tensor | None = None
    h_prev = 0.0
    for sigma, sigma_next in pairwise(sigmas):
        d_i = call(x, sigma)
        if sigma_next == 0:
            return d_i
        h = math.log(sigma / sigma_next)
        d = d_i if d_prev is None else d_i + (d_i - d_prev) / (2 * h_prev / h)
        x = (sigma_next / sigma) * x - math.expm1(-h) * d
        d_prev, h_prev = d_i, h
    return x

"""Samplers against exact denoisers (no network): +-1 mixtures and Gaussians.

For data ``y`` and noise ``x = y + sigma eps`` the exact denoiser is the posterior mean
``E[y | x]``:

* ``y = +1`` with probability p, ``-1`` otherwise: the posterior log-odds of +1 are
  ``ln(p / (1 - p)) + ((x + 1)^2 - (x - 1)^2) / (2 sigma^2) = ln(p / (1 - p)) + 2x / sigma^2``,
  so ``D = P(+1) - P(-1) = tanh(x / sigma^2 + atanh(2p - 1))`` (``tanh(x / sigma^2)`` at p = 1/2).
* ``y ~ N(mu, s0^2)``: ``D = (s0^2 x + sigma^2 mu) / (s0^2 + sigma^2)``. The probability-flow
  ODE ``dx/dsigma = (x - D) / sigma = sigma (x - mu) / (s0^2 + sigma^2)`` then gives
  ``x(sigma) - mu`` proportional to ``sqrt(s0^2 + sigma^2)``. Starting from
  ``x = sigma_0 noise``, every solver without churn is affine in the noise, so its exact
  result is known in closed form: that is checked without sampling error.
"""

from __future__ import annotations

import math

import pytest
import torch

from finescale.diffusion import SOLVERS, karras_sigmas, log_uniform_sigmas, n_calls, sample

N_SAMPLES = 20_000
MU, S0 = 0.5, 0.5


def mixture_denoiser(p: float = 0.5):
    shift = math.atanh(2 * p - 1)

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / sigma**2 + shift)

    return denoise


def gaussian_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    return (S0**2 * x + sigma**2 * MU) / (S0**2 + sigma**2)


def std_normal(n: int = N_SAMPLES, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def affine_error(
    solver: str, n_steps: int, sigmas: torch.Tensor | None = None
) -> tuple[float, float]:
    """(relative error of the output std, error of the output for zero noise) vs the exact ODE.

    The exact flow from ``sigma_0`` to 0 maps ``sigma_0 z`` to ``mu (1 - k) + sigma_0 k z`` with
    ``k = s0 / sqrt(s0^2 + sigma_0^2)``.
    """
    sigmas = karras_sigmas(n_steps) if sigmas is None else sigmas
    out = sample(
        gaussian_denoiser, torch.tensor([0.0, 1.0], dtype=torch.float64), sigmas, solver=solver
    )
    b, a = out[0].item(), (out[1] - out[0]).item()
    sigma_0 = sigmas[0].item()
    k = S0 / math.hypot(S0, sigma_0)
    return a / (sigma_0 * k) - 1, b - MU * (1 - k)


# --------------------------------------------------------------------------------------------
# schedule


def test_karras_sigmas_endpoints_monotone_and_rho_spacing() -> None:
    s = karras_sigmas(18, 0.002, 80.0, 7.0)
    assert s.dtype == torch.float64 and s.shape == (19,)
    assert s[0].item() == pytest.approx(80.0, rel=1e-14)
    assert s[-2].item() == pytest.approx(0.002, rel=1e-12)
    assert s[-1].item() == 0.0
    assert bool((s[:-1] > s[1:]).all())
    # sigma^(1/rho) is equally spaced: that is the whole schedule
    steps = (s[:-1] ** (1 / 7)).diff()
    torch.testing.assert_close(steps, steps[:1].expand_as(steps), rtol=1e-10, atol=0)
    assert karras_sigmas(1, 0.002, 80.0).tolist() == [80.0, 0.0]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n": 0},
        {"n": 5, "sigma_min": 0.0},
        {"n": 5, "rho": -1.0},
        {"n": 5, "sigma_min": 10.0, "sigma_max": 1.0},
    ],
)
def test_karras_sigmas_rejects_bad_settings(kwargs) -> None:
    with pytest.raises(ValueError):
        karras_sigmas(**kwargs)


# --------------------------------------------------------------------------------------------
# bookkeeping: calls, names, dtypes


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("n_steps", [1, 2, 5, 18])
def test_number_of_denoiser_calls(solver: str, n_steps: int) -> None:
    calls = []

    def denoise(x, sigma):
        calls.append(sigma.item())
        return gaussian_denoiser(x, sigma)

    sample(denoise, std_normal(8), karras_sigmas(n_steps), solver=solver)
    assert len(calls) == n_calls(solver, n_steps)
    assert (
        n_calls(solver, n_steps)
        == {"euler": n_steps, "heun": 2 * n_steps - 1, "dpmpp_2m": n_steps}[solver]
    )
    assert 0.0 not in calls  # the denoiser is never asked about sigma = 0


def test_churn_adds_no_calls_and_heun_corrects_a_last_step_above_zero() -> None:
    count = 0

    def denoise(x, sigma):
        nonlocal count
        count += 1
        return gaussian_denoiser(x, sigma)

    sample(
        denoise,
        std_normal(8),
        karras_sigmas(10),
        S_churn=5.0,
        generator=torch.Generator().manual_seed(0),
    )
    assert count == n_calls("heun", 10)
    count = 0
    sample(denoise, std_normal(8), [80.0, 10.0, 1.0, 0.5])  # ends above 0: 2 calls per step
    assert count == 6


def test_unknown_solver_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="euler, heun, dpmpp_2m"):
        sample(gaussian_denoiser, std_normal(4), karras_sigmas(4), solver="rk4")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown solver"):
        n_calls("ddim", 10)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "sigmas", [[80.0], [1.0, 2.0, 0.0], [1.0, 1.0, 0.0], [1.0, -0.5], [math.nan, 0.0]]
)
def test_bad_schedules_are_rejected(sigmas) -> None:
    with pytest.raises(ValueError):
        sample(gaussian_denoiser, std_normal(4), sigmas)


def test_churn_with_the_multistep_solver_is_rejected() -> None:
    with pytest.raises(ValueError, match="churn"):
        sample(gaussian_denoiser, std_normal(4), karras_sigmas(4), solver="dpmpp_2m", S_churn=1.0)


@pytest.mark.parametrize("solver", SOLVERS)
def test_denoiser_sees_input_dtype_while_state_is_float64(solver: str) -> None:
    """float32 noise: the denoiser gets float32 and a float64 0-d sigma, the output is float32;
    the state itself is float64, so a float32 run follows the float64 run to the last bit."""
    seen = []
    m = 0.375  # exact in float32, so the denoiser adds no rounding of its own

    def constant(x, sigma):
        seen.append((x.dtype, sigma.dtype, sigma.ndim))
        return torch.full_like(x, m)

    # a long schedule that stops above 0, so the output is the state itself; a constant D
    # makes every solver exact: x(sigma) = m + (sigma / sigma_0) (x_0 - m)
    sigmas = torch.linspace(80.0, 0.5, 401, dtype=torch.float64)
    noise = std_normal(10_000, dtype=torch.float32)
    out32 = sample(constant, noise, sigmas, solver=solver)
    assert out32.dtype == torch.float32
    assert set(seen) == {(torch.float32, torch.float64, 0)}
    out64 = sample(constant, noise.double(), sigmas, solver=solver)
    exact = m + (0.5 / 80.0) * (80.0 * noise.double() - m)
    torch.testing.assert_close(out64, exact, rtol=0, atol=1e-12)
    # a float32 state would drift by several float32 ulps over 400 steps
    assert torch.equal(out32, out64.float())


def test_output_keeps_shape_and_dtype() -> None:
    noise = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    out = sample(gaussian_denoiser, noise, karras_sigmas(5))
    assert out.shape == noise.shape and out.dtype == torch.float32


# --------------------------------------------------------------------------------------------
# accuracy against the exact Gaussian flow (no sampling error)


@pytest.mark.parametrize(("solver", "order"), [("euler", 1), ("heun", 2), ("dpmpp_2m", 2)])
def test_convergence_order_on_the_gaussian_flow(solver: str, order: int) -> None:
    """Doubling the steps divides the error by 2^order: a wrong coefficient anywhere breaks it."""
    err_n, _ = affine_error(solver, 50)
    err_2n, _ = affine_error(solver, 100)
    assert abs(err_n) > 0  # the check below must not be 0/0
    assert math.log2(abs(err_n / err_2n)) == pytest.approx(order, abs=0.25)


def test_known_discretisation_error_of_the_default_schedule() -> None:
    """Pins the measured spread error on N(mu, 0.5^2) with the EDM schedule (0.002, 80, rho 7):
    18 Heun steps (35 calls) inflate the std by ~5.5%, DPM++(2M) by ~16% at 10 steps and ~6% at
    18, Euler deflates it by ~15% at 18 steps. The mean is right to ~1e-3 in every case."""
    assert affine_error("heun", 18)[0] == pytest.approx(0.055, abs=0.01)
    assert affine_error("dpmpp_2m", 10)[0] == pytest.approx(0.16, abs=0.02)
    assert affine_error("dpmpp_2m", 18)[0] == pytest.approx(0.062, abs=0.01)
    assert affine_error("euler", 18)[0] == pytest.approx(-0.154, abs=0.02)
    for solver, n in [("heun", 18), ("dpmpp_2m", 10), ("euler", 18)]:
        assert abs(affine_error(solver, n)[1]) < 1e-3


def test_log_uniform_levels_have_a_constant_ratio() -> None:
    sigmas = log_uniform_sigmas(12, 0.02, 20.0)
    assert sigmas.dtype == torch.float64 and sigmas.shape == (13,) and sigmas[-1] == 0
    assert sigmas[0].item() == pytest.approx(20.0) and sigmas[-2].item() == pytest.approx(0.02)
    ratios = sigmas[:-2] / sigmas[1:-1]
    assert torch.allclose(ratios, ratios[0])
    with pytest.raises(ValueError, match="sigma_min <= sigma_max"):
        log_uniform_sigmas(4, 1.0, 0.5)


def test_log_uniform_levels_make_the_multistep_solver_accurate_in_few_calls() -> None:
    """Measured on N(mu, 0.5^2): 12 DPM++(2M) calls on equal ln-sigma steps (0.002..80) widen the
    spread by 3.7 %, against 13 % on the Karras levels with the same 12 calls."""
    log_uniform = affine_error("dpmpp_2m", 12, log_uniform_sigmas(12))[0]
    karras = affine_error("dpmpp_2m", 12)[0]
    assert abs(log_uniform) < 0.045
    assert karras > 3 * abs(log_uniform)


# --------------------------------------------------------------------------------------------
# distributions from samples


def assert_gaussian(x: torch.Tensor, mu: float = MU, s0: float = S0) -> None:
    n = x.numel()
    # the exact flow starts from N(0, sigma_max^2) instead of N(mu, s0^2 + sigma_max^2): the
    # mean is off by mu s0 / sigma_max = 0.003 here, below one standard error (0.0035)
    assert abs(x.mean().item() - mu) < 4 * s0 / math.sqrt(n)
    assert abs(x.var().item() / s0**2 - 1) < 4 * math.sqrt(2 / n)


@pytest.mark.parametrize(("solver", "n_steps"), [("heun", 128), ("dpmpp_2m", 128), ("euler", 2000)])
def test_gaussian_moments(solver: str, n_steps: int) -> None:
    assert_gaussian(sample(gaussian_denoiser, std_normal(), karras_sigmas(n_steps), solver=solver))


@pytest.mark.parametrize(
    ("solver", "n_steps", "churn"),
    [
        ("heun", 256, {"S_churn": 200.0}),  # gamma at its cap sqrt(2) - 1 on every step
        ("heun", 128, {"S_churn": 40.0, "S_min": 0.05, "S_max": 50.0}),
        ("heun", 128, {"S_churn": 2.5, "S_min": 0.75}),  # Anemoi's churn
        ("euler", 2000, {"S_churn": 40.0}),
    ],
)
def test_churn_keeps_the_gaussian(solver: str, n_steps: int, churn: dict) -> None:
    out = sample(
        gaussian_denoiser,
        std_normal(seed=1),
        karras_sigmas(n_steps),
        solver=solver,
        generator=torch.Generator().manual_seed(2),
        **churn,
    )
    assert_gaussian(out)


def test_churn_noise_is_scaled_by_S_noise() -> None:
    """S_noise > 1 adds more noise than the ODE removes: the spread grows (EDM's 1.007 trick)."""
    kw = {"solver": "heun", "S_churn": 200.0, "generator": torch.Generator().manual_seed(2)}
    out = sample(gaussian_denoiser, std_normal(seed=1), karras_sigmas(128), S_noise=1.1, **kw)
    assert out.var().item() / S0**2 - 1 > 8 * math.sqrt(2 / N_SAMPLES)


@pytest.mark.parametrize(("S_churn", "gamma"), [(2.0, 0.2), (100.0, math.sqrt(2) - 1)])
def test_churn_raises_the_level_inside_its_window(S_churn: float, gamma: float) -> None:
    """Euler evaluates once per step, at t_hat = sigma (1 + gamma) for sigma in [S_min, S_max]."""
    seen = []

    def denoise(x, sigma):
        seen.append(sigma.item())
        return gaussian_denoiser(x, sigma)

    sigmas = karras_sigmas(10)
    sample(
        denoise,
        std_normal(4),
        sigmas,
        solver="euler",
        S_churn=S_churn,
        S_min=1.0,
        S_max=10.0,
        generator=torch.Generator().manual_seed(0),
    )
    expected = [s * (1 + gamma) if 1.0 <= s <= 10.0 else s for s in sigmas[:-1].tolist()]
    assert seen == pytest.approx(expected, rel=1e-14)
    assert any(1.0 <= s <= 10.0 for s in sigmas.tolist()) and sigmas[0] > 10.0


def test_churn_draws_from_the_generator() -> None:
    noise, sigmas = std_normal(1000), karras_sigmas(18)

    def run(seed: int | None, churn: float = 40.0) -> torch.Tensor:
        gen = None if seed is None else torch.Generator().manual_seed(seed)
        return sample(gaussian_denoiser, noise, sigmas, S_churn=churn, generator=gen)

    assert torch.equal(run(3), run(3))
    assert not torch.allclose(run(3), run(4))
    assert torch.equal(run(3, churn=0.0), run(None, churn=0.0))  # no churn: no randomness


@pytest.mark.parametrize("p", [0.5, 0.7])
@pytest.mark.parametrize(("solver", "n_steps"), [("heun", 18), ("dpmpp_2m", 10), ("euler", 50)])
def test_two_point_mixture(p: float, solver: str, n_steps: int) -> None:
    out = sample(mixture_denoiser(p), std_normal(seed=3), karras_sigmas(n_steps), solver=solver)
    share = (out > 0).double().mean().item()
    assert abs(share - p) < 4 * math.sqrt(p * (1 - p) / N_SAMPLES)  # binomial
    assert ((out.abs() - 1).abs() < 0.05).double().mean().item() > 0.99

"""EDM maths: preconditioning identities, noise distribution, loss weight and loss.

The loss is checked with exact denoisers: for data ``y ~ N(mu, s0^2)`` and ``x = y + sigma eps``
the best denoiser is the posterior mean ``(s0^2 x + sigma^2 mu) / (s0^2 + sigma^2)`` and its
squared error has expectation ``s0^2 sigma^2 / (s0^2 + sigma^2)``; with ``s0 = sigma_data``
that is ``c_out^2``, so the weighted loss ``lambda * error`` of a perfect denoiser is exactly 1
on average at every noise level.
"""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from finescale.diffusion import (
    EDMSettings,
    denoise,
    edm_loss,
    loss_weight,
    preconditioning,
    sample_sigma,
)

SIGMAS = torch.logspace(-3, 2, 41, dtype=torch.float64)


def exact_network(mu: float, s0: float, sigma_data: float):
    """The raw network F whose preconditioned denoiser is the Gaussian posterior mean."""

    def F(x_in: torch.Tensor, c_noise: torch.Tensor, cond) -> torch.Tensor:
        sigma = (4 * c_noise).exp().reshape(-1, *(1,) * (x_in.ndim - 1))
        c = preconditioning(sigma, sigma_data)
        x = x_in / c.c_in
        d = (s0**2 * x + sigma**2 * mu) / (s0**2 + sigma**2)
        return (d - c.c_skip * x) / c.c_out

    return F


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------------------------
# settings


def test_settings_defaults_are_frozen_and_checked() -> None:
    s = EDMSettings()
    assert (s.sigma_data, s.P_mean, s.P_std) == (1.0, -1.2, 1.2)
    with pytest.raises(ValidationError, match="frozen"):
        s.sigma_data = 0.5  # type: ignore[misc]
    for bad in [{"sigma_data": 0.0}, {"sigma_data": -1.0}, {"P_std": -1.0}, {"P_std": 0.0}]:
        (key,) = bad
        with pytest.raises(ValidationError, match=f"{key}\n  Input should be greater than 0"):
            EDMSettings(**bad)
    with pytest.raises(ValidationError, match="P_sd\n  Extra inputs are not permitted"):
        EDMSettings(P_sd=1.0)  # a misspelt key is an error, not ignored
    assert EDMSettings(P_mean=0.5).P_mean == 0.5  # P_mean may have either sign
    assert EDMSettings(P_mean=-3.0).P_mean == -3.0


# --------------------------------------------------------------------------------------------
# preconditioning


@pytest.mark.parametrize("sigma_data", [0.5, 1.0, 2.0])
def test_preconditioning_identities(sigma_data: float) -> None:
    c_skip, c_out, c_in, c_noise = preconditioning(SIGMAS, sigma_data)
    s, sd = SIGMAS, sigma_data

    def close(a, b):
        torch.testing.assert_close(
            a, torch.as_tensor(b, dtype=torch.float64).expand_as(a), rtol=1e-12, atol=1e-15
        )

    # the network input c_in x has unit variance: Var(x) = s_d^2 + s^2
    close(c_in**2 * (sd**2 + s**2), 1.0)
    # c_skip and s^2 c_in^2 split the input between data and noise
    close(c_skip + s**2 * c_in**2, 1.0)
    # the training target (y - c_skip x) / c_out has unit variance:
    # Var(y - c_skip (y + s eps)) = (1 - c_skip)^2 s_d^2 + c_skip^2 s^2 = c_out^2
    close((1 - c_skip) ** 2 * sd**2 + c_skip**2 * s**2, c_out**2)
    # the loss weight undoes c_out: lambda = 1 / c_out^2
    close(loss_weight(s, sd) * c_out**2, 1.0)
    close(c_noise, s.log() / 4)
    # at sigma = sigma_data data and noise weigh the same
    c = preconditioning(torch.tensor(sd, dtype=torch.float64), sd)
    assert c.c_skip.item() == pytest.approx(0.5)
    assert c.c_out.item() == pytest.approx(sd / math.sqrt(2))
    assert c.c_in.item() == pytest.approx(1 / (sd * math.sqrt(2)))


def test_preconditioning_limits_and_shapes() -> None:
    small, large = preconditioning(1e-9, 0.5), preconditioning(1e9, 0.5)
    assert small.c_skip.item() == pytest.approx(1.0) and small.c_out.item() < 1e-8
    assert large.c_skip.item() < 1e-18 and large.c_out.item() == pytest.approx(0.5)
    assert small.c_skip.dtype == torch.float64 and small.c_skip.ndim == 0  # python float in
    sigma = torch.rand(3, 1, 1, 1) + 0.1
    assert all(
        v.shape == (3, 1, 1, 1) and v.dtype == torch.float32 for v in preconditioning(sigma, 1.0)
    )


def test_loss_weight_formula() -> None:
    assert loss_weight(2.0, 0.5).item() == pytest.approx((4 + 0.25) / (2 * 0.5) ** 2)
    assert loss_weight(1.0, 1.0).item() == pytest.approx(2.0)


# --------------------------------------------------------------------------------------------
# denoiser


def test_denoise_passes_preconditioned_inputs_and_the_condition() -> None:
    x = torch.randn(3, 2, 4, 5, generator=gen())
    sigma = torch.tensor([0.1, 1.0, 10.0]).reshape(3, 1, 1, 1)
    cond = {"lr": torch.zeros(1)}
    seen = {}

    def F(x_in, c_noise, c):
        seen.update(x_in=x_in, c_noise=c_noise, cond=c)
        return torch.ones_like(x_in)

    out = denoise(F, x, sigma, cond, 0.5)
    c = preconditioning(sigma, 0.5)
    assert seen["cond"] is cond
    assert seen["c_noise"].shape == (3,) and seen["c_noise"].dtype == torch.float32
    torch.testing.assert_close(seen["c_noise"], sigma.reshape(3).log() / 4)
    torch.testing.assert_close(seen["x_in"], c.c_in * x)
    torch.testing.assert_close(out, c.c_skip * x + c.c_out)
    assert out.dtype == x.dtype


def test_denoise_accepts_every_sigma_format() -> None:
    x = torch.randn(4, 1, 3, 3, generator=gen(), dtype=torch.float64)
    F = exact_network(0.3, 0.7, 1.0)
    ref = denoise(F, x, torch.full((4, 1, 1, 1), 0.8, dtype=torch.float64), None, 1.0)
    for sigma in [
        0.8,
        torch.tensor(0.8, dtype=torch.float64),
        torch.full((4,), 0.8),
        torch.tensor([0.8]),
    ]:
        torch.testing.assert_close(denoise(F, x, sigma, None, 1.0), ref, rtol=1e-6, atol=1e-7)


def test_zero_network_is_the_exact_denoiser_for_data_of_std_sigma_data() -> None:
    """c_skip x is the posterior mean of N(0, s_d^2) data: the network only learns the rest."""
    x = torch.randn(5, 1, 2, 2, generator=gen(), dtype=torch.float64) * 3
    for sigma in [0.01, 0.5, 3.0, 80.0]:
        d = denoise(lambda x_in, c_noise, cond: torch.zeros_like(x_in), x, sigma, None, 0.5)
        torch.testing.assert_close(d, 0.25 * x / (0.25 + sigma**2))


def test_denoise_tends_to_identity_at_zero_noise() -> None:
    x = torch.randn(2, 3, 4, 4, generator=gen(), dtype=torch.float64)
    d = denoise(lambda x_in, c_noise, cond: 10 * torch.ones_like(x_in), x, 1e-10, None, 1.0)
    torch.testing.assert_close(d, x, rtol=0, atol=1e-8)


# --------------------------------------------------------------------------------------------
# noise distribution


def test_sample_sigma_is_log_normal() -> None:
    settings = EDMSettings(P_mean=-0.4, P_std=1.5)
    n = 200_000
    sigma = sample_sigma(n, settings, gen(), dtype=torch.float64)
    assert sigma.shape == (n,) and bool((sigma > 0).all())
    log_s = sigma.log()
    assert abs(log_s.mean().item() - settings.P_mean) < 4 * settings.P_std / math.sqrt(n)
    assert abs(log_s.std().item() / settings.P_std - 1) < 4 / math.sqrt(2 * n)
    # E[sigma] of a log-normal: exp(P_mean + P_std^2 / 2)
    expected = math.exp(settings.P_mean + settings.P_std**2 / 2)
    assert sigma.mean().item() == pytest.approx(expected, rel=0.05)
    torch.testing.assert_close(
        sample_sigma(10, settings, gen(1)), sample_sigma(10, settings, gen(1))
    )


# --------------------------------------------------------------------------------------------
# loss


def gaussian_data(mu: float, s0: float, shape=(2048, 2, 4, 4)) -> torch.Tensor:
    return mu + s0 * torch.randn(shape, generator=gen(7), dtype=torch.float64)


@pytest.mark.parametrize("sigma_data", [0.5, 1.0])
def test_perfect_denoiser_has_unit_loss_and_wrong_ones_more(sigma_data: float) -> None:
    settings = EDMSettings(sigma_data=sigma_data)
    mu = 1.0
    y = gaussian_data(mu, sigma_data)
    n = y.numel()

    def loss(F):
        return edm_loss(F, y, None, settings, generator=gen(1))

    perfect = loss(exact_network(mu, sigma_data, sigma_data))
    # per element lambda (D - y)^2 = (standard normal)^2: mean 1, variance 2
    assert abs(perfect.loss.item() - 1) < 4 * math.sqrt(2 / n)
    torch.testing.assert_close(perfect.loss, perfect.per_channel.mean())
    for wrong in [
        exact_network(0.0, sigma_data, sigma_data),  # wrong mean (= "F = 0")
        exact_network(mu, 2 * sigma_data, sigma_data),  # wrong spread
        lambda x_in, c_noise, cond: x_in,
    ]:  # an untrained guess
        assert loss(wrong).loss.item() > perfect.loss.item() + 8 * math.sqrt(2 / n)


def test_channel_and_area_weights_weigh_a_known_error() -> None:
    """A denoiser that returns y + e(c, h, w) has loss mean_b(lambda) * weighted mean of e^2."""
    settings = EDMSettings()
    y = gaussian_data(0.0, 1.0, shape=(64, 2, 3, 4))
    e = torch.arange(24, dtype=torch.float64).reshape(2, 3, 4) / 10 - 1

    def F(x_in, c_noise, cond):  # D = y + e exactly
        sigma = (4 * c_noise).exp().reshape(-1, 1, 1, 1)
        c = preconditioning(sigma, settings.sigma_data)
        return (y + e - c.c_skip * x_in / c.c_in) / c.c_out

    # sigma is drawn first, so the same seed gives the same levels inside edm_loss
    lam = loss_weight(sample_sigma(64, settings, gen(3), dtype=torch.float64), 1.0).mean()
    cw = torch.tensor([1.0, 3.0], dtype=torch.float64)
    aw = torch.rand(3, 4, generator=gen(4), dtype=torch.float64) + 0.1

    def loss(**weights):
        return edm_loss(F, y, None, settings, generator=gen(3), **weights)

    plain, both = loss(), loss(channel_weights=cw, area_weights=aw)
    per_channel = (e**2).mean(dim=(1, 2))
    torch.testing.assert_close(plain.per_channel, lam * per_channel)
    weighted = cw * (e**2 * aw).sum(dim=(1, 2)) / aw.sum()
    torch.testing.assert_close(both.per_channel, lam * weighted)
    torch.testing.assert_close(both.loss, lam * weighted.mean())
    # uniform area weights of any size and unit channel weights change nothing
    torch.testing.assert_close(
        loss(area_weights=torch.full((3, 4), 7.0), channel_weights=torch.ones(2)).loss, plain.loss
    )
    torch.testing.assert_close(loss(channel_weights=2 * torch.ones(2)).loss, 2 * plain.loss)
    # weight only the first row: the loss is that row's error
    rows = torch.zeros(3, 4)
    rows[0] = 1.0
    torch.testing.assert_close(
        loss(area_weights=rows).per_channel, lam * (e[:, 0] ** 2).mean(dim=1)
    )
    # per-sample weights (B, 1, H, W), as random patches carry: the same grid for every sample
    # gives the same loss as the one grid
    torch.testing.assert_close(
        loss(area_weights=aw.expand(64, 1, 3, 4)).loss, loss(area_weights=aw).loss
    )


def test_loss_rejects_misshapen_weights() -> None:
    y = torch.zeros(2, 3, 4, 4)

    def F(x_in, c_noise, cond):
        return x_in

    with pytest.raises(ValueError, match="channel_weights"):
        edm_loss(F, y, None, EDMSettings(), channel_weights=torch.ones(2))
    with pytest.raises(ValueError, match="area_weights"):
        edm_loss(F, y, None, EDMSettings(), area_weights=torch.ones(4, 3))
    with pytest.raises(ValueError, match="area_weights"):
        edm_loss(F, y, None, EDMSettings(), area_weights=torch.ones(3, 1, 4, 4))


def test_loss_trains_a_parameter() -> None:
    """Gradients reach the network: one scale parameter learns the Wiener factor."""
    weight = torch.zeros(1, requires_grad=True)

    def F(x_in, c_noise, cond):
        return weight * x_in

    y = torch.randn(256, 1, 4, 4, generator=gen())
    out = edm_loss(F, y, None, EDMSettings(), generator=gen(1))
    out.loss.backward()
    assert weight.grad is not None and weight.grad.abs().item() > 0
    assert out.loss.dtype == torch.float32 and out.per_channel.shape == (1,)

"""EDM (Karras et al. 2022): preconditioning, training noise levels, loss weight and loss.

The data are noised as ``x = y + sigma * eps`` (variance exploding: no scaling of ``y``), and a
raw network ``F(x_in, c_noise, cond)`` is wrapped into a denoiser

    D(x; sigma) = c_skip(sigma) * x + c_out(sigma) * F(c_in(sigma) * x, c_noise(sigma), cond)

whose coefficients keep the network's input and its training target at unit variance for data
of standard deviation ``sigma_data``:

    c_skip = s_d^2 / (s^2 + s_d^2)        c_out = s s_d / sqrt(s^2 + s_d^2)
    c_in   = 1 / sqrt(s^2 + s_d^2)        c_noise = ln(s) / 4

Training draws ``ln(sigma) ~ N(P_mean, P_std^2)`` and weights the squared error of ``D`` by
``lambda(sigma) = (s^2 + s_d^2) / (s s_d)^2 = 1 / c_out^2``, which makes the loss of ``F``
against its own target an unweighted MSE.

Nothing here knows about data files or Lightning: ``F`` is any callable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor

from finescale.diffusion.settings import EDMSettings

__all__ = [
    "EDMLoss",
    "EDMSettings",
    "Network",
    "Preconditioning",
    "denoise",
    "edm_loss",
    "loss_weight",
    "preconditioning",
    "sample_sigma",
]

#: A raw network ``F(x_in, c_noise, cond) -> Tensor``: ``x_in`` (B, C, *spatial), ``c_noise``
#: (B,), ``cond`` whatever the model needs (passed through untouched); returns (B, C, *spatial).
Network = Callable[[Tensor, Tensor, Any], Tensor]


class Preconditioning(NamedTuple):
    """EDM preconditioning coefficients, each shaped like the ``sigma`` they came from."""

    c_skip: Tensor
    c_out: Tensor
    c_in: Tensor
    c_noise: Tensor


def _as_sigma(sigma: Tensor | float, device: torch.device | None = None) -> Tensor:
    """``sigma`` as a floating tensor; python numbers become float64 (no rounding)."""
    if isinstance(sigma, Tensor):
        return sigma if sigma.is_floating_point() else sigma.to(torch.float64)
    return torch.as_tensor(sigma, dtype=torch.float64, device=device)


def preconditioning(sigma: Tensor | float, sigma_data: float | Tensor) -> Preconditioning:
    """EDM coefficients ``(c_skip, c_out, c_in, c_noise)`` at noise level ``sigma``.

    ``sigma``: a tensor of any shape (typically (B, 1, 1, 1), broadcastable against the data)
    or a number (then float64, 0-d). Every coefficient has the shape and dtype of ``sigma``;
    ``sigma_data`` may be a tensor of one value per channel, (C, 1, ..., 1), and then c_skip,
    c_out and c_in are per channel too (broadcast against ``sigma``).
    """
    sigma = _as_sigma(sigma)
    total = sigma**2 + sigma_data**2  # variance of the noised data
    c_skip = sigma_data**2 / total
    c_out = sigma * sigma_data * total.rsqrt()
    c_in = total.rsqrt()
    c_noise = sigma.log() / 4
    return Preconditioning(c_skip, c_out, c_in, c_noise)


def batch_sigma(sigma: Tensor | float, x: Tensor) -> Tensor:
    """``sigma`` broadcast to (B, 1, ..., 1) for ``x`` of shape (B, ...).

    Accepts a number, a 0-d tensor, a (B,) tensor or anything broadcastable to (B, 1, ..., 1).
    """
    sigma = _as_sigma(sigma, x.device).to(x.device)
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    if sigma.ndim == 1:  # one level per sample: (B,) or (1,)
        sigma = sigma.reshape(-1, *shape[1:])
    return torch.broadcast_to(sigma, shape)


def denoise(
    F: Network, x: Tensor, sigma: Tensor | float, cond: Any, sigma_data: float | Tensor
) -> Tensor:
    """The preconditioned denoiser ``D(x; sigma) = c_skip x + c_out F(c_in x, c_noise, cond)``.

    Args:
        F: raw network ``F(x_in, c_noise, cond)``; it receives ``x_in`` (B, C, *spatial) and
            ``c_noise`` of shape (B,), both in ``x``'s dtype, and ``cond`` untouched.
        x: noisy data (B, C, *spatial).
        sigma: noise level: a number, a 0-d tensor (one level for the batch), (B,) or a tensor
            broadcastable to (B, 1, ..., 1). Any float dtype: the coefficients are computed in
            it (float64 for python numbers) and then cast to ``x``'s dtype.
        cond: conditioning passed to ``F`` as it is (may be None).
        sigma_data: standard deviation of the data the model was trained for: a number, or
            one per channel (C, 1, ..., 1).

    Returns:
        The denoised estimate (B, C, *spatial) in ``x``'s dtype.
    """
    c = preconditioning(batch_sigma(sigma, x), sigma_data)
    c_skip, c_out, c_in = (v.to(x.dtype) for v in c[:3])
    c_noise = c.c_noise.reshape(x.shape[0]).to(x.dtype)  # networks embed one level per sample
    return (c_skip * x + c_out * F(c_in * x, c_noise, cond)).to(x.dtype)


def sample_sigma(
    batch: int,
    settings: EDMSettings,
    generator: torch.Generator | None = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Training noise levels: ``ln(sigma) ~ N(P_mean, P_std^2)``, shape (batch,).

    ``device`` defaults to the generator's device (or the default device without one).
    """
    if device is None and generator is not None:
        device = generator.device
    z = torch.randn(batch, generator=generator, device=device, dtype=dtype)
    return (settings.P_mean + settings.P_std * z).exp()


def loss_weight(sigma: Tensor | float, sigma_data: float | Tensor) -> Tensor:
    """EDM loss weight ``lambda(sigma) = (s^2 + s_d^2) / (s s_d)^2`` (= 1 / c_out^2); per channel
    where ``sigma_data`` is."""
    sigma = _as_sigma(sigma)
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


class EDMLoss(NamedTuple):
    """Output of :func:`edm_loss`: ``loss`` (scalar) is ``per_channel.mean()``.

    ``per_channel`` (C,) is the weighted loss of each channel, channel weight included; both
    keep the autograd graph (detach ``per_channel`` before logging).
    """

    loss: Tensor
    per_channel: Tensor


def edm_loss(
    F: Network,
    y: Tensor,
    cond: Any,
    settings: EDMSettings,
    *,
    generator: torch.Generator | None = None,
    sigma_data: float | Tensor | None = None,
    channel_weights: Tensor | None = None,
    area_weights: Tensor | None = None,
) -> EDMLoss:
    """EDM denoising loss of network ``F`` on clean data ``y``.

    Draws one ``sigma`` per sample (:func:`sample_sigma`, first) and then ``eps ~ N(0, 1)``
    like ``y`` (both from ``generator`` when given), denoises ``y + sigma eps`` and averages

        lambda(sigma) * channel_weights[c] * area_weights[...] * (D - y)^2

    over batch, channels and grid points.

    Args:
        F: raw network, see :func:`denoise`.
        y: clean (normalised) data (B, C, *spatial), e.g. (B, C, H, W).
        cond: conditioning passed to ``F`` untouched.
        settings: noise distribution and ``sigma_data``.
        generator: random source for ``sigma`` and ``eps`` (on ``y``'s device).
        sigma_data: the data's standard deviation, one number or one per channel (C, 1, ..., 1)
            (None: ``settings.sigma_data``).
        channel_weights: (C,) multipliers per variable, used as given (all ones: no change;
            doubling them doubles the loss).
        area_weights: (*spatial,) or (B, 1, *spatial) non-negative weights per grid point
            (e.g. cos(latitude) on a global grid); normalised to mean 1, so they make the
            average over the grid a weighted average and leave its scale alone (uniform weights:
            no change). All zero (every target of the batch missing): the loss is 0, with zero
            gradients.

    Returns:
        :class:`EDMLoss` ``(loss, per_channel)``: scalar and (C,), in ``y``'s dtype.
    """
    b, c = y.shape[:2]
    sigma = sample_sigma(b, settings, generator, device=y.device, dtype=y.dtype)
    sigma = sigma.reshape(b, *(1,) * (y.ndim - 1))
    eps = torch.randn(y.shape, generator=generator, device=y.device, dtype=y.dtype)
    sd = settings.sigma_data if sigma_data is None else sigma_data
    d = denoise(F, y + sigma * eps, sigma, cond, sd)
    err = loss_weight(sigma, sd) * (d - y) ** 2  # (B, C, *spatial)
    if area_weights is not None:
        err = err * _normalised_area_weights(area_weights, y)
    per_channel = err.transpose(0, 1).reshape(c, -1).mean(dim=1)
    if channel_weights is not None:
        if channel_weights.shape != (c,):
            raise ValueError(
                f"channel_weights must have shape ({c},), got {tuple(channel_weights.shape)}"
            )
        per_channel = per_channel * channel_weights.to(per_channel)
    return EDMLoss(per_channel.mean(), per_channel)


def _normalised_area_weights(area_weights: Tensor, y: Tensor) -> Tensor:
    """Area weights checked against ``y``'s grid and scaled to mean 1.

    Either one grid (*spatial) for the whole batch, or per sample (B, 1, *spatial), as random
    patches of a lat-lon grid each have their own.
    """
    spatial = tuple(y.shape[2:])
    per_sample = (y.shape[0], 1, *spatial)
    if tuple(area_weights.shape) not in (spatial, per_sample):
        raise ValueError(
            f"area_weights must have the grid shape {spatial} or {per_sample}, "
            f"got {tuple(area_weights.shape)}"
        )
    # values are not checked here: that would sync the device on every training step; the
    # weights are a fixed grid property, checked once where they are built
    w = area_weights.to(y)
    # floored: weights all zero (a batch whose targets are all missing) stay zero, not 0 / 0
    return w / w.mean().clamp_min(torch.finfo(w.dtype).tiny)

"""A conditional UNet: the backbone F of EDM's denoiser D = c_skip x + c_out F(c_in x, c_noise).

The noisy target x (B, in_channels, H, W) and the conditioning (B, cond_channels, H, W: the LR
input interpolated to the HR grid, static HR fields, position and time features) are
concatenated and run through an encoder-decoder with skip connections. The noise level enters
every residual block through adaptive group normalisation (FiLM): Fourier features of c_noise
-> MLP -> per-block scale and shift. With ``use_noise=False`` there is no noise input and the
same network is a plain conditional UNet for the regression (conditional mean) model.
Conditioning channels that are constant over the grid (``global_channels``: time features,
domain means) can enter the same way: read at one point, an MLP of them is added to the
embedding, so a global state modulates every block instead of only the first convolution's
input, whose spatially constant part group normalisation largely removes.

Shapes need not be powers of two: forward pads H and W up to a multiple of 2^(levels-1)
(circularly in a periodic x, by replicating the edge otherwise) and crops the output back, so
any patch size works. Global grids set ``periodic_x``: every 3x3 convolution then wraps around in
x (and pads with zeros in y), which makes the network equivariant to shifts in x by multiples
of 2^(levels-1) (the pooling stride).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from finescale.nn.settings import UNetSettings

SKIP_SCALE = 1 / math.sqrt(2)  # residual sums scaled so activations keep unit variance with depth


# --------------------------------------------------------------------------------------------
# building blocks


def _groups(channels: int) -> int:
    """GroupNorm groups: up to 32, at least 4 channels per group where possible, dividing
    channels."""
    target = max(1, min(32, channels // 4))
    return next(g for g in range(target, 0, -1) if channels % g == 0)


class _PeriodicConv2d(nn.Conv2d):
    """3x3 convolution that wraps around in x and pads with zeros in y (a lat-lon globe)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(F.pad(x, (1, 1, 0, 0), mode="circular"))


def _conv3x3(c_in: int, c_out: int, periodic_x: bool) -> nn.Conv2d:
    if periodic_x:
        return _PeriodicConv2d(c_in, c_out, 3, padding=(1, 0))  # y padded by the conv (zeros)
    return nn.Conv2d(c_in, c_out, 3, padding=1)


class NoiseEmbedding(nn.Module):
    """c_noise (B,) -> embedding (B, dim): sin/cos Fourier features, then a two-layer MLP.

    EDM's c_noise = ln(sigma)/4 lies in about [-2, 2] for sigma in [0.002, 80]; the angular
    frequencies are log-spaced over [1/4, 256] so that range is resolved from coarse to fine.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        frequencies = torch.logspace(math.log10(0.25), math.log10(256.0), dim // 2)
        self.register_buffer("frequencies", frequencies, persistent=False)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim), nn.SiLU())

    def forward(self, c_noise: Tensor) -> Tensor:
        phase = c_noise.float()[:, None] * self.frequencies[None, :]  # (B, dim/2), fp32 on purpose
        return self.mlp(torch.cat([phase.cos(), phase.sin()], dim=1))


class ResBlock(nn.Module):
    """GroupNorm, SiLU, conv3x3, adaptive GroupNorm, SiLU, dropout, conv3x3, plus a skip.

    x (B, c_in, H, W), emb (B, E) or None -> (B, c_out, H, W). With an embedding the second
    normalisation has no affine parameters of its own: its scale and shift come from emb (FiLM).
    Optionally ends with self-attention over the H*W positions.
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        emb_dim: int | None,
        dropout: float,
        periodic_x: bool,
        attention_heads: int | None = None,
    ) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in), c_in)
        self.conv1 = _conv3x3(c_in, c_out, periodic_x)
        self.film = None if emb_dim is None else nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out, affine=emb_dim is None)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _conv3x3(c_out, c_out, periodic_x)
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)
        self.attention = None if attention_heads is None else SelfAttention(c_out, attention_heads)

    def forward(self, x: Tensor, emb: Tensor | None) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.norm2(h)
        if self.film is not None:
            scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
            h = h * (1 + scale) + shift  # 1 + scale: an untrained FiLM is close to identity
        h = self.conv2(self.dropout(F.silu(h)))
        h = (self.skip(x) + h) * SKIP_SCALE
        if self.attention is not None:
            h = self.attention(h)
        return h


class SelfAttention(nn.Module):
    """Multi-head self-attention over all positions, residual: (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w)
        q, k, v = qkv.transpose(-1, -2).unbind(1)  # each (B, heads, H*W, C/heads)
        a = F.scaled_dot_product_attention(q, k, v)
        a = a.transpose(-1, -2).reshape(b, c, h, w)
        return (x + self.proj(a)) * SKIP_SCALE


class Upsample(nn.Module):
    """Nearest-neighbour x2 then conv3x3: (B, C, H, W) -> (B, C, 2H, 2W)."""

    def __init__(self, channels: int, periodic_x: bool) -> None:
        super().__init__()
        self.conv = _conv3x3(channels, channels, periodic_x)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


# --------------------------------------------------------------------------------------------
# the network


class UNet(nn.Module):
    """Conditional UNet F(x, c_noise, cond) for EDM denoising or (``use_noise=False``) regression.

    Level i has width base_width * channel_mult[i] at resolution H/2^i. The encoder runs
    ``blocks_per_level`` residual blocks per level and downsamples by 2x2 average pooling; the
    decoder runs one block more per level (ADM/EDM layout: every encoder activation, including
    the stem and each pooled map, is a skip) and upsamples by nearest + conv. The output
    convolution starts at zero, so an untrained EDM denoiser returns c_skip * x.
    """

    def __init__(self, settings: UNetSettings) -> None:
        super().__init__()
        s = settings
        self.settings = s
        # plain attributes read in forward (keeps torch.compile away from the pydantic object)
        self.multiple = s.downsampling
        self.periodic_x = s.periodic_x
        self.cond_channels = s.cond_channels
        widths = [s.base_width * m for m in s.channel_mult]
        emb_dim = s.noise_embedding_dim if s.use_noise or s.global_channels else None
        self.noise_embedding = NoiseEmbedding(s.noise_embedding_dim) if s.use_noise else None
        self.global_channels = list(s.global_channels)
        self.global_embedding = (
            nn.Sequential(
                nn.Linear(len(s.global_channels), s.noise_embedding_dim),
                nn.SiLU(),
                nn.Linear(s.noise_embedding_dim, s.noise_embedding_dim),
                nn.SiLU(),
            )
            if s.global_channels
            else None
        )

        def block(c_in: int, c_out: int, level: int) -> ResBlock:
            heads = s.attention_heads if level in s.attention_levels else None
            return ResBlock(c_in, c_out, emb_dim, s.dropout, s.periodic_x, heads)

        self.stem = _conv3x3(s.in_channels + s.cond_channels, widths[0], s.periodic_x)
        skip_widths = [widths[0]]
        c = widths[0]
        self.encoder = nn.ModuleList()
        for level, width in enumerate(widths):
            blocks = nn.ModuleList()
            for _ in range(s.blocks_per_level):
                blocks.append(block(c, width, level))
                c = width
                skip_widths.append(c)
            self.encoder.append(blocks)
            if level < len(widths) - 1:
                skip_widths.append(c)  # the pooled map (pooling has no parameters)

        self.middle = nn.ModuleList([block(c, c, len(widths) - 1), block(c, c, len(widths) - 1)])

        self.decoder = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level in reversed(range(len(widths))):
            blocks = nn.ModuleList()
            for _ in range(s.blocks_per_level + 1):
                blocks.append(block(c + skip_widths.pop(), widths[level], level))
                c = widths[level]
            self.decoder.append(blocks)
            if level > 0:
                self.upsample.append(Upsample(c, s.periodic_x))

        self.out_norm = nn.GroupNorm(_groups(c), c)
        self.output = _conv3x3(c, s.out_channels, s.periodic_x)
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)

    def forward(self, x: Tensor, c_noise: Tensor | None, cond: Tensor | None) -> Tensor:
        """x (B, in, H, W), c_noise (B,) or None without noise, cond (B, cond, H, W) ->
        (B, out, H, W).

        Any H, W: the input is padded to multiples of 2^(levels-1) and the output cropped back.
        c_noise is ignored when ``use_noise`` is False. The output has x's dtype (under autocast
        the network itself runs in low precision).
        """
        if self.noise_embedding is not None and c_noise is None:
            raise ValueError("this UNet has use_noise=True: c_noise (B,) is required")
        if (cond is None) != (self.cond_channels == 0):
            raise ValueError(f"cond must have {self.cond_channels} channels (None only when 0)")
        height, width = x.shape[-2:]
        h = x if cond is None else torch.cat([x, cond.to(x.dtype)], dim=1)
        h = self._pad(h)
        emb = self.noise_embedding(c_noise) if self.noise_embedding is not None else None
        if self.global_embedding is not None:
            state = cond[:, self.global_channels, 0, 0].float()  # type: ignore[index]
            g = self.global_embedding(state)
            emb = g if emb is None else emb + g

        h = self.stem(h)
        skips = [h]
        for level, blocks in enumerate(self.encoder):
            for blk in blocks:
                h = blk(h, emb)
                skips.append(h)
            if level < len(self.encoder) - 1:
                h = F.avg_pool2d(h, 2)
                skips.append(h)
        for blk in self.middle:
            h = blk(h, emb)
        for i, blocks in enumerate(self.decoder):
            for blk in blocks:
                h = blk(torch.cat([h, skips.pop()], dim=1), emb)
            if i < len(self.upsample):
                h = self.upsample[i](h)

        h = self.output(F.silu(self.out_norm(h)))
        return h[..., :height, :width].to(x.dtype)

    def _pad(self, h: Tensor) -> Tensor:
        """Pad (B, C, H, W) at the bottom and right to multiples of the downsampling factor."""
        m = self.multiple
        pad_y, pad_x = -h.shape[-2] % m, -h.shape[-1] % m
        if pad_x:
            # A periodic field continues across the right edge; otherwise extend the edge value.
            h = F.pad(h, (0, pad_x, 0, 0), mode="circular" if self.periodic_x else "replicate")
        if pad_y:
            h = F.pad(h, (0, 0, 0, pad_y), mode="replicate")
        return h


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable, by default) parameters of a model."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)

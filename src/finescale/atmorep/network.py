"""Transformer building blocks for token sequences: attention, MLP, per-field encoders coupled by
cross-attention, and noise-modulated MLP blocks. No data or training logic here.

Shapes: tokens are (B, N, width); a context for cross-attention is (B, M, width).
Attention goes through ``torch.nn.functional.scaled_dot_product_attention`` (flash or
memory-efficient kernels where the device has them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Attention(nn.Module):
    """Multi-head attention of ``x`` over itself, or over ``context`` when given."""

    def __init__(self, width: int, heads: int, dropout: float = 0.0):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} must be a multiple of heads {heads}")
        self.heads, self.dropout = heads, dropout
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        b, n, d = x.shape
        ctx = x if context is None else context
        h = self.heads
        q = self.q(x).view(b, n, h, d // h).transpose(1, 2)
        k, v = self.kv(ctx).view(b, ctx.shape[1], 2, h, d // h).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out(o.transpose(1, 2).reshape(b, n, d))

    @torch.no_grad()
    def weights(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """The attention weights (B, heads, N, M) the forward pass uses (for attention maps)."""
        b, n, d = x.shape
        ctx = x if context is None else context
        h = self.heads
        q = self.q(x).view(b, n, h, d // h).transpose(1, 2)
        k = self.kv(ctx).view(b, ctx.shape[1], 2, h, d // h)[:, :, 0].transpose(1, 2)
        return torch.softmax(q @ k.transpose(-1, -2) / (d // h) ** 0.5, dim=-1)


class MLP(nn.Sequential):
    """width -> ratio * width -> width with GELU."""

    def __init__(self, width: int, ratio: int = 2, dropout: float = 0.0):
        super().__init__(
            nn.Linear(width, ratio * width),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(ratio * width, width),
        )


class EncoderLayer(nn.Module):
    """Pre-norm self-attention, then cross-attention to a context (when the layer has one), then
    MLP."""

    def __init__(self, width: int, heads: int, mlp_ratio: int, dropout: float, cross: bool):
        super().__init__()
        self.norm_self = nn.LayerNorm(width)
        self.self_attention = Attention(width, heads, dropout)
        self.cross = cross
        if cross:
            self.norm_cross = nn.LayerNorm(width)
            self.norm_context = nn.LayerNorm(width)
            self.cross_attention = Attention(width, heads, dropout)
        self.norm_mlp = nn.LayerNorm(width)
        self.mlp = MLP(width, mlp_ratio, dropout)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        x = x + self.self_attention(self.norm_self(x))
        if self.cross and context is not None:
            x = x + self.cross_attention(self.norm_cross(x), self.norm_context(context))
        return x + self.mlp(self.norm_mlp(x))


class MultiFieldEncoder(nn.Module):
    """One stack of encoder layers per field; at every layer each field cross-attends to the
    tokens of its partners as they left the previous layer (all fields advance together)."""

    def __init__(
        self,
        partners: Mapping[str, Sequence[str]],
        width: int,
        heads: int,
        layers: int,
        mlp_ratio: int = 2,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.partners = {name: tuple(p) for name, p in partners.items()}
        self.layers = nn.ModuleList(
            nn.ModuleDict(
                {
                    name: EncoderLayer(width, heads, mlp_ratio, dropout, cross=bool(p))
                    for name, p in self.partners.items()
                }
            )
            for _ in range(layers)
        )

    def context(self, tokens: Mapping[str, Tensor], name: str) -> Tensor | None:
        """The partner tokens field ``name`` attends to, concatenated (B, M, width)."""
        parts = [tokens[p] for p in self.partners[name]]
        return torch.cat(parts, dim=1) if parts else None

    def forward(self, tokens: Mapping[str, Tensor]) -> dict[str, Tensor]:
        current = dict(tokens)
        for layer in self.layers:
            current = {
                name: layer[name](x, self.context(current, name)) for name, x in current.items()
            }
        return current


class ModulatedBlock(nn.Module):
    """x + MLP(LayerNorm(x) * (1 + scale(z)) + shift(z)): an MLP block modulated by a noise
    vector z.

    Starts as the identity modulation (the projection of z is zero-initialised), so noise enters
    as the training finds it useful.
    """

    def __init__(self, width: int, noise_dim: int, mlp_ratio: int = 2, dropout: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False)
        self.modulation = nn.Linear(noise_dim, 2 * width)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)
        self.mlp = MLP(width, mlp_ratio, dropout)

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        """x (..., width), z (..., noise_dim) broadcastable to x's leading dims."""
        scale, shift = self.modulation(z).chunk(2, dim=-1)
        return x + self.mlp(self.norm(x) * (1 + scale) + shift)

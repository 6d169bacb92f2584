"""AtmoRep-style model: per-field token encoders coupled by cross-attention, a decoder per
predicted field, and an ensemble tail trained with the fair CRPS.

Input: a batch from ``finescale.atmorep.tokens`` — per field the tokens ``input[name]``
(B, L, nt, ny, nx, D) with hidden tokens filled, the masks ``masked[name]`` (B, L, nt, ny, nx),
the targets ``target[name]``, their validity ``valid[name]`` (False where the truth is missing;
optional) and residual bases ``base[name]`` of predicted fields and the position features
``where`` (B, nt, ny, nx, 8). Members of a hidden token are predicted as a
change from its base (the persistence or linear-in-time fill of a forecast or a gap, 0 or the
token mean under BERT). Every token is embedded with a linear map of its D values plus its level,
its place inside the neighbourhood (learned, per axis), its absolute place and time (sin/cos of
lat, lon, hour, day of year) and, when hidden, a learned mask vector. A field's ``detail`` inputs
(e.g. the orography under t2m) reach its members point by point: a gain per member and token
times the input token's values, detail that a token's few features cannot carry.

The ensemble tail. AtmoRep draws members from K separate heads and trains them with member MSEs
plus a Gaussian term, which is not a proper scoring rule. We train with the fair CRPS, which is
proper only when the members are exchangeable draws given the input. K fixed heads are not:
for two heads at -a and +a and y ~ N(0, 1) the expected fair CRPS keeps falling as a grows
(its derivative in a is 2 Phi(a) - 2 < 0), so the heads would drift apart without end. So every
member comes from one shared tail fed with its own noise: a vector z per member and sample,
shared by every token and field (coherent members, as in functional generative networks),
modulating the tail's MLP blocks, plus noise per token added to the token's features. Members
are then i.i.d. given the input and the expected fair CRPS is the CRPS of one member's
distribution: minimised by the true conditional distribution.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from finescale.atmorep.network import EncoderLayer, ModulatedBlock, MultiFieldEncoder
from finescale.atmorep.settings import AtmoRepConfig
from finescale.atmorep.tokens import WHERE_FEATURES, Geometry


def fair_crps(ensemble: Tensor, y: Tensor) -> Tensor:
    """Fair CRPS of members along the last axis of ``ensemble`` (..., K) against ``y`` (...).

    (1/K) sum_i |x_i - y| - 1/(2K(K-1)) sum_ij |x_i - x_j|, with the double sum in its sorted
    form 2 sum_i (2i - K - 1) x_(i): O(K log K) and differentiable through the sort.
    """
    k = ensemble.shape[-1]
    if k < 2:
        raise ValueError("the fair CRPS needs at least 2 members")
    x = ensemble.sort(dim=-1).values
    i = torch.arange(1, k + 1, device=x.device, dtype=x.dtype)
    skill = (x - y.unsqueeze(-1)).abs().mean(dim=-1)
    spread = ((2 * i - k - 1) * x).sum(dim=-1) / (k * (k - 1))
    return skill - spread


def valid_mean(values: Tensor, valid: Tensor | None) -> Tensor:
    """Mean of ``values`` over the entries ``valid`` marks (all when None); 0 when it marks none."""
    if valid is None:
        return values.mean()
    return torch.where(valid, values, 0).sum() / valid.sum().clamp_min(1)


class AtmoRep(nn.Module):
    """Masked-token model of several fields; ``forward`` samples the hidden tokens of predicted
    fields."""

    def __init__(self, cfg: AtmoRepConfig, levels: Mapping[str, int]):
        super().__init__()
        g = Geometry.from_config(cfg)
        n, e = cfg.network, cfg.ensemble
        d = n.width
        self.names = list(cfg.fields)
        self.predicted = [name for name, f in cfg.fields.items() if f.predict]
        self.members, self.noise_dim, self.mse_weight = e.members, e.noise_dim, e.mse_weight
        weights = torch.tensor([cfg.fields[f].loss_weight for f in self.predicted])
        self.register_buffer(
            "field_weights", weights, persistent=False
        )  # from the config, not learned

        def param(*shape: int) -> nn.Parameter:
            return nn.Parameter(0.02 * torch.randn(*shape))

        self.embed = nn.ModuleDict({name: nn.Linear(g.token_values, d) for name in self.names})
        self.level = nn.ParameterDict({name: param(levels[name], d) for name in self.names})
        self.mask_vector = nn.ParameterDict({name: param(d) for name in self.names})
        nt, ny, nx = g.cube
        self.pos_t, self.pos_y, self.pos_x = param(nt, d), param(ny, d), param(nx, d)
        self.where = nn.Linear(WHERE_FEATURES, d)
        self.encoder = MultiFieldEncoder(
            {name: cfg.partners_of(name) for name in self.names},
            d,
            n.heads,
            n.encoder_layers,
            n.mlp_ratio,
            n.dropout,
        )
        self.decoder = nn.ModuleDict(
            {
                name: nn.ModuleList(
                    EncoderLayer(d, n.heads, n.mlp_ratio, n.dropout, cross=False)
                    for _ in range(n.decoder_layers)
                )
                for name in self.predicted
            }
        )
        self.token_noise = nn.ModuleDict(
            {name: nn.Linear(e.noise_dim, d) for name in self.predicted}
        )
        self.tail = nn.ModuleDict(
            {
                name: nn.ModuleList(
                    ModulatedBlock(d, e.noise_dim, n.mlp_ratio, n.dropout)
                    for _ in range(n.tail_layers)
                )
                for name in self.predicted
            }
        )
        self.head = nn.ModuleDict(
            {
                name: nn.Sequential(nn.LayerNorm(d), nn.Linear(d, g.token_values))
                for name in self.predicted
            }
        )
        # detail: per member and token, one gain per level of each detail field, times its values
        self.detail = {name: list(cfg.fields[name].detail) for name in self.predicted}
        self.gain = nn.ModuleDict(
            {
                name: nn.ModuleDict(
                    {
                        other: nn.Sequential(nn.LayerNorm(d), nn.Linear(d, levels[other]))
                        for other in self.detail[name]
                    }
                )
                for name in self.predicted
            }
        )
        gains = [gain for per_field in self.gain.values() for gain in per_field.values()]
        for head in [*self.head.values(), *gains]:  # an untrained model predicts its base
            nn.init.zeros_(head[-1].weight)
            nn.init.zeros_(head[-1].bias)

    # -- the deterministic part ---------------------------------------------------------------

    def embed_tokens(self, batch: Mapping[str, Tensor | Mapping[str, Tensor]]) -> dict[str, Tensor]:
        """Token embeddings per field (B, L * nt * ny * nx, width)."""
        where = self.where(batch["where"])  # (B, nt, ny, nx, d)
        place = self.pos_t[:, None, None] + self.pos_y[None, :, None] + self.pos_x[None, None, :]
        out = {}
        for name in self.names:
            x = self.embed[name](batch["input"][name])  # (B, L, nt, ny, nx, d)
            x = x + self.level[name][None, :, None, None, None] + (place + where)[:, None]
            x = x + batch["masked"][name][..., None].to(x.dtype) * self.mask_vector[name]
            out[name] = x.flatten(1, -2)
        return out

    def features(self, batch: Mapping[str, Tensor | Mapping[str, Tensor]]) -> dict[str, Tensor]:
        """Decoded features of every token of each predicted field (B, N, width)."""
        encoded = self.encoder(self.embed_tokens(batch))
        out = {}
        for name in self.predicted:
            h = encoded[name]
            for layer in self.decoder[name]:
                h = layer(h)
            out[name] = h
        return out

    # -- the ensemble -------------------------------------------------------------------------

    def forward(
        self,
        batch: Mapping[str, Tensor | Mapping[str, Tensor]],
        members: int | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """Members of every hidden token of each predicted field: (N_hidden, K, D) per field, the
        tokens in the order of ``batch['masked'][name].nonzero()``."""
        k = members or self.members
        features = self.features(batch)
        first = features[self.predicted[0]]
        b = first.shape[0]
        z = torch.randn(
            b, k, self.noise_dim, generator=generator, device=first.device, dtype=first.dtype
        )
        out = {}
        for name in self.predicted:
            rows, cols = batch["masked"][name].flatten(1).nonzero(as_tuple=True)
            place = batch["masked"][name].nonzero(as_tuple=True)[
                2:
            ]  # (t, y, x) of each hidden token
            h = features[name][rows, cols]  # (Nm, d)
            noise = torch.randn(
                h.shape[0], k, self.noise_dim, generator=generator, device=h.device, dtype=h.dtype
            )
            x = h[:, None] + self.token_noise[name](noise)
            zm = z[rows]  # (Nm, K, noise_dim)
            for block in self.tail[name]:
                x = block(x, zm)
            base = batch["base"][name].flatten(1, -2)[
                rows, cols
            ]  # (Nm, D): the fill, predicted as a change
            out[name] = base[:, None] + self.head[name](x)
            for other in self.detail[name]:
                values = batch["input"][other][(rows, slice(None), *place)]  # (Nm, L_other, D)
                out[name] = out[name] + torch.einsum(
                    "nkl,nld->nkd", self.gain[name][other](x), values
                )
        return out

    def loss(
        self,
        batch: Mapping[str, Tensor | Mapping[str, Tensor]],
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Fair CRPS of the members on the hidden values (plus ``mse_weight`` x MSE of their mean),
        averaged per field over the values whose truth is known (``batch['valid']``, when given)
        and weighted across fields."""
        predictions = self(batch, generator=generator)
        total = torch.zeros((), device=self.field_weights.device)
        for w, name in zip(self.field_weights, self.predicted, strict=True):
            mask = batch["masked"][name].flatten(1)
            y = batch["target"][name].flatten(1, -2)[mask]  # (Nm, D)
            valid = (
                batch["valid"][name].flatten(1, -2)[mask] if "valid" in batch else None
            )  # (Nm, D)
            p = predictions[name]  # (Nm, K, D)
            term = valid_mean(fair_crps(p.transpose(1, 2), y), valid)
            if self.mse_weight:
                term = term + self.mse_weight * valid_mean((p.mean(dim=1) - y) ** 2, valid)
            total = total + w * term
        return total / self.field_weights.sum()

    @torch.no_grad()
    def predict(
        self,
        batch: Mapping[str, Tensor | Mapping[str, Tensor]],
        members: int | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """Whole neighbourhoods per predicted field (B, K, L, nt, ny, nx, D): the given tokens where
        they were known, members where they were hidden."""
        k = members or self.members
        predictions = self(batch, k, generator)
        out = {}
        for name in self.predicted:
            known = batch["base"][name]
            full = (
                known.unsqueeze(1).expand(-1, k, *known.shape[1:]).clone()
            )  # (B, K, L, nt, ny, nx, D)
            mask = batch["masked"][name]
            rows, *rest = mask.nonzero(as_tuple=True)
            full[(rows, slice(None), *rest)] = predictions[name].to(full.dtype)
            out[name] = full
        return out

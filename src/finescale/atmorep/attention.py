"""Attention maps of the AtmoRep encoder for one chosen token, as arrays and as a figure.

For a query token (field, level, time, y, x token indices) in one neighbourhood, the weights of
its self-attention over its own field and of its cross-attention over each partner field at a
chosen encoder layer, averaged over heads, reshaped to each field's (levels, nt, ny, nx) tokens.
Weights over one attention sum to 1 across everything it attends to.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from finescale.atmorep.checkpoint import TrainedAtmoRep
from finescale.atmorep.tokens import Geometry
from finescale.io.atomic import atomic_path


@torch.no_grad()
def attention_maps(
    loaded: TrainedAtmoRep,
    batch: dict,
    field: str,
    token: tuple[int, int, int, int],
    layer: int = -1,
) -> dict[str, np.ndarray]:
    """source field -> weights (levels, nt, ny, nx) of the query ``token`` = (level, t, y, x) of
    ``field`` (first sample of ``batch``); the key ``field`` holds its self-attention."""
    model, g = loaded.model, Geometry.from_config(loaded.config)
    if field not in model.names:
        raise ValueError(f"unknown field '{field}'; the model has {', '.join(model.names)}")
    levels = loaded.levels
    cube = g.cube
    shape = (levels[field], *cube)
    if not all(0 <= i < n for i, n in zip(token, shape, strict=True)):
        raise ValueError(f"token {token} outside the field's tokens {shape} (level, t, y, x)")
    query = int(np.ravel_multi_index(token, shape))
    layers = model.encoder.layers
    index = layer % len(layers)
    current = model.embed_tokens(batch)
    for i, step in enumerate(layers):
        if i == index:
            break
        current = {n: step[n](x, model.encoder.context(current, n)) for n, x in current.items()}
    block = layers[index][field]
    x = current[field][:1]
    maps = {
        field: block.self_attention.weights(block.norm_self(x))[0, :, query]
        .mean(0)
        .reshape(shape)
        .numpy()
    }
    partners = model.encoder.partners[field]
    if block.cross and partners:
        x = x + block.self_attention(block.norm_self(x))
        context = model.encoder.context({n: v[:1] for n, v in current.items()}, field)
        weights = block.cross_attention.weights(block.norm_cross(x), block.norm_context(context))[
            0, :, query
        ].mean(0)
        start = 0
        for p in partners:
            n = levels[p] * int(np.prod(cube))
            maps[p] = weights[start : start + n].reshape(levels[p], *cube).numpy()
            start += n
    return maps


def plot_attention(
    maps: dict[str, np.ndarray], token: tuple[int, int, int, int], field: str, out: str | Path
) -> Path:
    """One row per source field (levels summed), one column per time token; the query token is
    marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(maps)
    nt = maps[field].shape[1]
    fig, axes = plt.subplots(len(names), nt, figsize=(2.6 * nt, 1.9 * len(names)), squeeze=False)
    for r, name in enumerate(names):
        m = maps[name].sum(axis=0)  # (nt, ny, nx)
        for t in range(nt):
            ax = axes[r, t]
            image = ax.imshow(m[t], origin="lower", vmin=0, vmax=float(m.max()), cmap="magma")
            ax.set_xticks([])
            ax.set_yticks([])
            if t == 0:
                ax.set_ylabel(f"{name}\n({'self' if name == field else 'cross'})", fontsize=8)
            if r == 0:
                ax.set_title(f"time token {t}", fontsize=8)
            if name == field and t == token[1]:
                ax.plot(token[3], token[2], marker="s", mfc="none", mec="cyan", ms=10)
        fig.colorbar(image, ax=axes[r, :].tolist(), shrink=0.8, label="weight")
    fig.suptitle(
        f"attention of {field} token (level {token[0]}, t {token[1]}, y {token[2]}, x {token[3]})",
        fontsize=9,
    )
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(out)

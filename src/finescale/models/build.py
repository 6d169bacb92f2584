"""The network a model config describes: built when training starts and when a checkpoint loads."""

from __future__ import annotations

import torch
from torch import nn

from finescale.config import ModelConfig
from finescale.data.channels import Layout
from finescale.models.diffusion import DiffusionModel
from finescale.models.regression import RegressionModel
from finescale.nn.settings import UNetSettings


def build_model(
    cfg: ModelConfig, layout: Layout, periodic_lon: bool, regression: RegressionModel | None = None
) -> nn.Module:
    """The network the config describes, for the channels of ``layout``.

    A diffusion model over a regression mean (``residual: regression``) takes that regression
    model (trained, or only built, when the weights are loaded afterwards); the caller loads it.
    """
    n_out = len(layout.target_variables)
    weights = torch.tensor([cfg.loss_weights.get(v, 1.0) for v in layout.target_variables])
    net = cfg.network.model_dump()
    # the spatially constant channels' indices hold in the diffusion's cond too (mu comes after)
    net["global_channels"] = layout.global_channels if cfg.conditioning.film else ()
    if cfg.kind == "regression":
        settings = UNetSettings(
            in_channels=n_out,
            cond_channels=layout.cond_channels,
            out_channels=n_out,
            periodic_x=periodic_lon,
            use_noise=False,
            **net,
        )
        return RegressionModel(settings, weights)
    if (cfg.residual == "regression") != (regression is not None):
        raise ValueError(
            f"a diffusion model with residual '{cfg.residual}' "
            + ("needs its regression model" if regression is None else "takes no regression model")
        )
    targets = list(layout.target_variables)
    named = {  # local_scale_key's own keys are among local_scale's (checked by the config)
        "local_scale": cfg.local_scale,
        "noise_scale": list(cfg.noise_scale),
        "local_scale_key": [v for key in cfg.local_scale_key.values() for v in key],
    }
    for field, names in named.items():
        unknown = list(dict.fromkeys(v for v in names if v not in targets))
        if unknown:
            raise ValueError(
                f"model.{field}: {', '.join(unknown)} not among the model's target variables "
                f"({', '.join(targets)})"
            )
    settings = UNetSettings(
        in_channels=n_out,
        cond_channels=layout.cond_channels + n_out,
        out_channels=n_out,
        periodic_x=periodic_lon,
        use_noise=True,
        **net,
    )
    local = [targets.index(v) for v in cfg.local_scale]
    keys = [[targets.index(k) for k in cfg.local_scale_key.get(v, [v])] for v in cfg.local_scale]
    noise = [cfg.noise_scale.get(v, 1.0) for v in targets]
    return DiffusionModel(settings, cfg.edm, weights, regression, local, noise, keys)

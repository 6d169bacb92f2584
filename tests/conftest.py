"""Shared test fixtures."""

from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
import yaml


@pytest.fixture(scope="module")
def one_thread():
    """Run tiny networks on one thread: with tensors this small, thread synchronisation costs
    more than it gains, and on a shared CPU an oversubscribed pool was 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


#: Settings of a model and a run small enough to train in seconds on the small pair.
TINY_RUN = {
    "model": {"kind": "regression", "network": {"base_width": 8, "channel_mult": [1, 2]}},
    "train": {
        "max_steps": 2,
        "batch_size": 2,
        "patch_size": 16,
        "val_every_steps": 2,
        "val_batches": 1,
        "warmup_steps": 1,
        "accelerator": "cpu",
        "num_workers": 0,  # a loader process costs more than these few patches
    },
    "sample": {"members": 2, "steps": 2, "solver": "euler"},
}


@pytest.fixture(scope="session")
def small_pair(tmp_path_factory) -> Path:
    """A folder with a good small pair and a config that trains on it in seconds.

    ``lr.nc`` (8 x 10 points, 1 deg), ``hr.nc`` (32 x 40, 0.25 deg; LR is HR coarsened 4x plus
    noise), 24 hourly times of t2m (K) and tp, ``static.nc`` (orog on the HR grid) and
    ``finescale.yaml`` (t2m only; paths relative to the folder, so a copy of the folder is a
    pair of its own). Built with the synthetic pairs of test_pairs.py.
    """
    from test_pairs import make_pair, write

    folder = tmp_path_factory.mktemp("small_pair")
    lr, hr = make_pair()
    write(lr, folder / "lr.nc")
    write(hr, folder / "hr.nc")
    orog = np.random.default_rng(1).random((hr.sizes["lat"], hr.sizes["lon"]))
    static = xr.Dataset(
        {"orog": (("lat", "lon"), orog, {"units": "m"})}, coords={"lat": hr.lat, "lon": hr.lon}
    )
    write(static, folder / "static.nc")
    t2m = {"t2m": {"name": "t2m", "units": "K"}}
    data = {
        "lr": {"path": "lr.nc", "variables": t2m},
        "hr": {"path": "hr.nc", "variables": t2m},
        "static": {"path": "static.nc", "variables": {"orog": "orog"}},
    }
    (folder / "finescale.yaml").write_text(
        yaml.safe_dump({"data": data, **TINY_RUN}, sort_keys=False)
    )
    return folder


@pytest.fixture(scope="session")
def tiny_models(small_pair, tmp_path_factory) -> dict[str, Path]:
    """Tiny checkpoints trained once per session on a copy of the small pair (a few steps each).

    ``folder``: the copy (lr.nc, hr.nc, static.nc, finescale.yaml); ``regression``: a regression
    model trained without static fields (no ``data.static``); ``diffusion``: a residual
    diffusion model trained with the static field ``orog``.
    """
    import shutil

    from finescale.config import load_config
    from finescale.training import train

    folder = tmp_path_factory.mktemp("tiny_models") / "pair"
    shutil.copytree(small_pair, folder)
    config = yaml.safe_load((folder / "finescale.yaml").read_text())
    del config["data"]["static"]
    (folder / "nostatic.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    models = {"folder": folder}
    for name, path, kind in [
        ("regression", "nostatic.yaml", "regression"),
        ("diffusion", "finescale.yaml", "diffusion"),
    ]:
        out = folder.parent / name
        cfg = load_config(folder / path, [f"model.kind={kind}", f"train.out={out}"])
        models[name] = train(cfg)
    return models


def diffusion_over_regression(tiny_models: dict[str, Path], tmp_path: Path) -> tuple[Path, Path]:
    """A tiny diffusion model trained over a copy of the session's regression model, in
    ``tmp_path``: (its checkpoint, the regression copy, which a test may delete)."""
    from finescale.config import load_config
    from finescale.training import train

    regression = tmp_path / "regression.ckpt"
    regression.write_bytes(tiny_models["regression"].read_bytes())
    cfg = load_config(
        tiny_models["folder"] / "nostatic.yaml",
        [
            "model.kind=diffusion",
            "model.residual=regression",
            f"model.regression_checkpoint={regression}",
            f"train.out={tmp_path / 'diffusion'}",
        ],
    )
    return train(cfg), regression


def precipitation_run(small_pair: Path, parent: Path, **model: object) -> Path:
    """A tiny diffusion model of t2m and tp (log1p, zero below 0.01) with ``local_scale: [tp]``
    and the ``model`` settings, trained on a copy of ``small_pair`` in ``parent``: its
    checkpoint."""
    import shutil

    from finescale.config import load_config
    from finescale.training import train

    folder = parent / "pair"
    shutil.copytree(small_pair, folder)
    config = yaml.safe_load((folder / "finescale.yaml").read_text())
    variables = {
        "t2m": {"name": "t2m", "units": "K"},
        "tp": {"name": "tp", "units": "mm h-1", "accumulation": "1h"},
    }
    config["data"]["lr"]["variables"] = config["data"]["hr"]["variables"] = variables
    config["data"]["transforms"] = {"tp": {"kind": "log1p", "scale": 0.1, "zero_below": 0.01}}
    config["model"] |= {"kind": "diffusion", "local_scale": ["tp"], **model}
    config["train"]["out"] = str(folder.parent / "run")
    (folder / "finescale.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return train(load_config(folder / "finescale.yaml"))

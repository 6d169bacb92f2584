"""finescale checkpoints read and checked without Lightning: digest, description, grid, model.

A checkpoint is a ``torch.save`` dict (written by Lightning during training) that holds, besides
the weights, a finescale description under :data:`CHECKPOINT_KEY` (config, normalisation
statistics, channel layout, periodic_lon, a grid summary), the HR grid's coordinates as tensors
under :data:`GRID_KEY`, and the sha256 of all of it under :data:`DIGEST_KEY`. Everything is plain
types and tensors, so it loads with ``torch.load(weights_only=True)``: no code can run from it.
Generation and the Python API load models through this module, which imports no Lightning
(seconds to import).
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from finescale.config import ExperimentConfig, ModelConfig
from finescale.data.channels import Layout
from finescale.data.normalisation import NormStats
from finescale.models.build import build_model
from finescale.models.consistency import ConsistencyModel

CHECKPOINT_KEY = "finescale"
#: the checkpoint entry holding the sha256 of its tensors and description (:func:`weights_digest`)
DIGEST_KEY = "finescale_sha256"
#: the checkpoint entry holding the HR grid: {"lat": (H, W), "lon": (H, W)} float64 tensors, in
#: degrees, as the training HR source gives them. A tensor entry, so the digest covers its values
GRID_KEY = "finescale_grid"
#: the description entry of a consistency student (``finescale distill``): its kind, the levels
#: it was distilled on, its teacher (path and sha256), its sampler and distillation settings
STUDENT_KEY = "student"
#: a student's weights sit under this name in its checkpoint, beside its target network
STUDENT_WEIGHTS = "student."


def grid_entry(lat: Any, lon: Any) -> dict[str, torch.Tensor]:
    """The :data:`GRID_KEY` entry of an HR grid: 2-D lat and lon (degrees) as float64 tensors."""
    return {
        "lat": torch.from_numpy(np.array(lat, dtype=np.float64)),
        "lon": torch.from_numpy(np.array(lon, dtype=np.float64)),
    }


def _tensors(value: Any, place: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor inside nested dicts, lists and tuples, with its place ("/state_dict/ema.w")."""
    if isinstance(value, torch.Tensor):
        yield place, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _tensors(item, f"{place}/{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _tensors(item, f"{place}/{i}")


def weights_digest(checkpoint: dict[str, Any]) -> str:
    """sha256 of a checkpoint's finescale description and of every tensor in it, in one order.

    The description as JSON with sorted keys, then each tensor in order of its place: place,
    dtype, shape and values (in C order whatever the strides, so a tensor hashes the same before
    writing and after loading). Every tensor: the weights and their EMA, which inference loads,
    the HR grid, and the optimiser's state, which a resumed run loads. Written into the
    checkpoint, it reveals bytes changed since: torch.load does not check its members, so a
    flipped byte inside a tensor loads as a different weight.
    """
    digest = hashlib.sha256(
        json.dumps(checkpoint.get(CHECKPOINT_KEY), sort_keys=True, default=repr).encode()
    )
    for place, tensor in sorted(_tensors(checkpoint), key=lambda item: item[0]):
        digest.update(f"{place}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def check_digest(checkpoint: Any, path: Path) -> None:
    """Refuse a checkpoint whose tensors or description differ from the digest written with them.

    A checkpoint without a digest (written before there was one) is not checked.
    """
    written = checkpoint.get(DIGEST_KEY) if isinstance(checkpoint, dict) else None
    if written is not None and written != weights_digest(checkpoint):
        raise ValueError(
            f"{path} is corrupt: its weights do not match the digest written with them"
        )


@dataclass
class Checkpoint:
    """What :func:`read_checkpoint` gives: the parts of a checkpoint inference uses."""

    meta: dict[str, Any]  #: the finescale description (plain types)
    weights: dict[str, torch.Tensor]  #: the EMA weights, names as in the model
    sha256: str  #: of the file's bytes
    #: the HR grid's (lat, lon), each (H, W) float64 in degrees; None in checkpoints written before
    #: the grid was stored (and in AtmoRep's)
    hr_grid: tuple[np.ndarray, np.ndarray] | None


def read_checkpoint(path: str | Path, kind: str = "downscaling") -> Checkpoint:
    """The description, EMA weights, sha256 and HR grid of a checkpoint, read safely (weights_only).

    ``kind`` is what the caller can use ("downscaling" or "atmorep"); another kind is an error
    that says which command takes it. A checkpoint whose tensors or description do not match the
    digest written with them is an error too (:func:`check_digest`), and so is a stored grid that
    is not two 2-D arrays of one shape.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (
        OSError,
        RuntimeError,
        EOFError,
        ValueError,
        pickle.UnpicklingError,
    ) as exc:  # truncated, corrupt, unsafe
        raise ValueError(
            f"{path}: not a readable finescale checkpoint ({_load_error(exc)})"
        ) from None
    check_digest(checkpoint, path)
    meta = _dict_entry(checkpoint, CHECKPOINT_KEY)
    if meta is None:
        raise ValueError(f"{path}: not a finescale checkpoint (no '{CHECKPOINT_KEY}' entry)")
    found = meta.get("kind", "downscaling")
    if found != kind:
        use = {"downscaling": "finescale downscale", "atmorep": "finescale predict"}.get(
            found, "another command"
        )
        raise ValueError(
            f"{path}: a checkpoint of kind '{found}', where '{kind}' is needed "
            f"(use it with `{use}`)"
        )
    state = _dict_entry(checkpoint, "state_dict")
    if state is None:
        raise ValueError(f"{path}: a finescale checkpoint without weights (no 'state_dict' entry)")
    prefix = "ema.module."
    ema = {
        k[len(prefix) :]: v for k, v in state.items() if isinstance(k, str) and k.startswith(prefix)
    }
    return Checkpoint(meta, ema, digest, _grid(checkpoint, path))


def _grid(checkpoint: dict[str, Any], path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """The stored HR grid (lat, lon), checked: two 2-D tensors of one shape; None when absent."""
    entry = _dict_entry(checkpoint, GRID_KEY)
    if entry is None:
        return None
    lat, lon = entry.get("lat"), entry.get("lon")
    if not (
        isinstance(lat, torch.Tensor)
        and isinstance(lon, torch.Tensor)
        and lat.ndim == 2
        and lat.shape == lon.shape
    ):
        raise ValueError(f"{path}: its '{GRID_KEY}' entry is not a 2-D lat and lon of one shape")
    return lat.double().numpy(), lon.double().numpy()


def _load_error(exc: BaseException) -> str:
    """The first sentence of torch.load's error, on one line. A refusal of the safe loader keeps
    only its reason: its advice to load the file unsafely is not for a file from elsewhere."""
    text = str(exc)
    refused = re.search(r"WeightsUnpickler error:(.*)", text, re.DOTALL)
    first = re.match(r"\s*(.+?)(?:\.\s|\n\n|$)", refused.group(1) if refused else text, re.DOTALL)
    text = first.group(1) if first else text
    if refused:
        text += "; only tensors and plain data are loaded, nothing that could run code"
    return f"{type(exc).__name__}: {' '.join(text.split())}"


def _dict_entry(obj: Any, key: str) -> dict[str, Any] | None:
    """``obj[key]`` when both are dicts (a file from elsewhere may hold anything), else None."""
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, dict) else None


@dataclass
class TrainedDownscaler:
    """A trained model ready for inference (EMA weights, eval mode) and what it was trained with."""

    model: nn.Module
    config: ExperimentConfig
    stats: NormStats
    layout: Layout
    periodic_lon: bool
    grid: dict[str, Any]  #: the grid summary: hr_shape, lr_shape, hr_lat_range, hr_lon_range
    sha256: str
    #: the HR grid's (lat, lon), each (H, W) float64 degrees; None in checkpoints written before
    #: it was stored (generation then takes the grid from a static file)
    hr_grid: tuple[np.ndarray, np.ndarray] | None = None


def load_checkpoint(path: str | Path) -> TrainedDownscaler:
    """Load a checkpoint safely (weights_only), its model rebuilt with the EMA weights: a
    regression model, a diffusion model, or a consistency student (:data:`STUDENT_KEY` in its
    description), built like its teacher and given the student's weights."""
    read = read_checkpoint(path)
    meta = read.meta
    with reading_description(path, "downscaling"):
        config = ExperimentConfig.model_validate(meta["config"])
        layout = Layout.from_dict(meta["layout"])
        stats = NormStats.from_dict(meta["stats"])
        periodic, grid = bool(meta["periodic_lon"]), dict(meta["grid"])
    if read.hr_grid is not None and list(read.hr_grid[0].shape) != list(grid["hr_shape"]):
        raise ValueError(
            f"{path}: its stored HR grid {read.hr_grid[0].shape} differs from the shape its "
            f"description gives {tuple(grid['hr_shape'])}"
        )
    model = build_model(config.model, layout, periodic, _regression_of(meta, config, path))
    weights = read.weights
    if meta.get(STUDENT_KEY) is not None:
        with reading_description(path, "consistency student"):
            student = meta[STUDENT_KEY]
            model = ConsistencyModel.of(model, student["sigma_min"], student["sigma_max"])
        size = len(STUDENT_WEIGHTS)
        weights = {k[size:]: v for k, v in weights.items() if k.startswith(STUDENT_WEIGHTS)}
    load_weights(model, weights, path)
    return TrainedDownscaler(
        model, config, stats, layout, periodic, grid, read.sha256, read.hr_grid
    )


@contextmanager
def reading_description(path: str | Path, kind: str) -> Iterator[None]:
    """Reading a checkpoint's description: what fails (another version's layout, a file edited by
    hand) is one ValueError naming the checkpoint and the ``kind`` it should be."""
    try:
        yield
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(
            f"{path}: its description is not that of a finescale {kind} checkpoint "
            f"({type(exc).__name__}: {exc})"
        ) from None


def load_weights(model: nn.Module, weights: dict[str, torch.Tensor], path: str | Path) -> None:
    """Put a checkpoint's ``weights`` into ``model`` and set it to eval mode; weights that do
    not fit it (another version, a hand-edited config) are an error naming the checkpoint."""
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise ValueError(
            f"{path}: its weights do not fit the model its config describes ({exc})"
        ) from None
    model.eval()


def regression_description(loaded: TrainedDownscaler) -> dict[str, Any]:
    """What a diffusion checkpoint keeps of the regression model it is taken over, to rebuild
    that network when it loads (its weights are among the diffusion model's own)."""
    return {
        "model": loaded.config.model.model_dump(mode="json"),
        "layout": loaded.layout.to_dict(),
        "periodic_lon": loaded.periodic_lon,
    }


def _regression_of(meta: dict[str, Any], config: ExperimentConfig, path: Path | str) -> Any:
    """The regression network under a diffusion model with ``residual: regression`` (else None).

    Built from the checkpoint's own description, so the regression checkpoint need not be where
    training found it; checkpoints written before the description was stored read that file.
    """
    if config.model.kind != "diffusion" or config.model.residual != "regression":
        return None
    described = meta.get("regression")
    if described is None:
        return load_checkpoint(config.model.regression_checkpoint).model  # type: ignore[arg-type]
    try:
        return build_model(
            ModelConfig.model_validate(described["model"]),
            Layout.from_dict(described["layout"]),
            bool(described["periodic_lon"]),
        )
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(
            f"{path}: the description of its regression model is not readable "
            f"({type(exc).__name__}: {exc})"
        ) from None


def describe(loaded: TrainedDownscaler) -> str:
    """One line for logs and output attributes."""
    return json.dumps(
        {
            "kind": loaded.config.model.kind,
            "targets": list(loaded.layout.target_variables),
            "sha256": loaded.sha256[:16],
        }
    )

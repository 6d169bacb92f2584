"""How to downscale: the network, the diffusion model, training and sampling, and an experiment."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from finescale.config.data import DataConfig
from finescale.config.settings import Settings
from finescale.diffusion.settings import EDMSettings
from finescale.nn.settings import UNetArchitecture


class UpslopeConfig(Settings):
    """The domain-mean wind's flow up the HR terrain as a channel (see ``upslope``)."""

    u: str = Field(description="LR eastward wind variable (m/s), e.g. u850.")
    v: str = Field(description="LR northward wind variable (m/s), e.g. v850.")
    orography: str = Field(default="orog", description="Static HR surface height (m).")


class ConditioningConfig(Settings):
    """What a model sees besides the noisy target: LR fields on the HR grid, static fields,
    features."""

    lr_variables: list[str] | None = Field(
        default=None,
        description="LR variables given to the model (None: every LR "
        "variable of the data section).",
    )
    static_variables: list[str] | None = Field(
        default=None,
        description="Static HR fields given to the model (None: every static variable).",
    )
    interpolation: Literal["bilinear", "bicubic"] = Field(
        default="bilinear",
        description="How LR fields are brought to the HR grid (also the residual's base).",
    )
    position: bool = Field(
        default=True, description="Add sin/cos of latitude and longitude as channels."
    )
    time: bool = Field(
        default=True, description="Add sin/cos of the hour of day (UTC) and day of year."
    )
    domain_means: list[str] = Field(
        default_factory=list,
        description="LR variables (among lr_variables) whose area-weighted mean over the whole "
        "LR domain at each time is added as a constant channel: the large-scale state that a "
        "training patch or the network's receptive field cannot see (e.g. the flow that sets "
        "orographic rain over the whole domain). Standardised like the variable itself.",
    )
    upslope: UpslopeConfig | None = Field(
        default=None,
        description="Adds the upslope wind U . grad(h) (m/s) as a channel: U the LR wind "
        "(u, v) averaged over the whole LR domain, h the static orography on the HR grid; the "
        "forcing of orographic rain in linear theory (Smith & Barstad 2004). None: off.",
    )
    film: bool = Field(
        default=False,
        description="The channels that are constant over the grid (the time features and "
        "domain_means) also set a scale and shift of every residual block (FiLM), as the "
        "noise level does: the large-scale state can then switch the network's filters, not "
        "only shift its first layer's input (which group normalisation partly removes).",
    )


class ModelConfig(Settings):
    """What is trained: a regression model (conditional mean) or a residual EDM diffusion model."""

    kind: Literal["regression", "diffusion"] = Field(
        default="diffusion", description="Model to train."
    )
    target_variables: list[str] | None = Field(
        default=None, description="HR variables to predict (None: every HR variable)."
    )
    residual: Literal["interpolation", "regression"] = Field(
        default="interpolation",
        description="Diffusion learns y minus the interpolated LR (Anemoi) or minus "
        "the regression mean (CorrDiff).",
    )
    regression_checkpoint: Path | None = Field(
        default=None,
        description="Trained regression checkpoint, required when residual is "
        "'regression' (relative to the config).",
    )
    scale_residuals: bool = Field(
        default=True,
        description="Divide each variable's residual (over the interpolation, or over mu "
        "for diffusion) by its RMS on training patches, so small residuals (t2m) weigh "
        "as much as large ones (winds).",
    )
    local_scale: list[str] = Field(
        default_factory=list,
        description="Diffusion only: target variables whose residual is divided by a scale that "
        "follows their own mu at each point (the RMS of the residual in 16 quantile bins of mu on "
        "training patches, linear in between, at least local_scale_floor times the variable's "
        "RMS) instead of one number: for intermittent variables (precipitation), whose "
        "residual is near 0 where dry and several times its domain RMS where it rains. "
        "Unlisted: one scale per variable.",
    )
    local_scale_floor: float = Field(
        default=0.1,
        gt=0,
        description="The local scale's floor, as a fraction of the variable's RMS over the "
        "domain: 0.1 lets dry points' residual be scaled up tenfold; 1 scales the residual up "
        "where the variable's RMS given mu is larger (it rains) and never down.",
    )
    local_scale_key: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Diffusion only: per variable of local_scale, the target variables whose mu "
        "its scale follows, combined as the norm of their mu in their own units: {u10: [u10, "
        "v10], v10: [u10, v10]} scales each wind component's residual (the gusts) by the speed "
        "of the mean wind, which one component alone does not give. Unlisted: the variable's "
        "own mu.",
    )
    noise_scale: dict[str, float] = Field(
        default_factory=dict,
        description="Diffusion only: per-variable noise levels, as multiples of the shared "
        "schedule's (unlisted: 1). The variable's scaled residual is brought to RMS 1/k and its "
        "preconditioning's sigma_data to edm.sigma_data / k, so one network and one sampler "
        "schedule take it from k times sample.sigma_max (tp: 2.5 with sigma_max 8 starts "
        "precipitation from 20 and the other variables from 8).",
    )
    loss_weights: dict[str, float] = Field(
        default_factory=dict, description="Per-variable loss weights (unlisted: 1)."
    )
    periodic_lon: bool | None = Field(
        default=None,
        description="Wrap the grid in longitude (None: when the HR grid spans 360 degrees).",
    )
    conditioning: ConditioningConfig = Field(
        default=ConditioningConfig(), description="Model inputs."
    )
    network: UNetArchitecture = Field(default=UNetArchitecture(), description="Backbone size.")
    edm: EDMSettings = Field(
        default=EDMSettings(), description="EDM noise distribution and scaling."
    )

    @model_validator(mode="after")
    def _regression_checkpoint_when_needed(self) -> ModelConfig:
        if (
            self.kind == "diffusion"
            and self.residual == "regression"
            and self.regression_checkpoint is None
        ):
            raise ValueError("residual 'regression' needs model.regression_checkpoint")
        return self

    @model_validator(mode="after")
    def _per_variable_names_of_targets(self) -> ModelConfig:
        twice = sorted({v for v in self.local_scale if self.local_scale.count(v) > 1})
        if twice:
            raise ValueError(f"local_scale lists {', '.join(twice)} more than once")
        bad = {v: k for v, k in self.noise_scale.items() if not k > 0}
        if bad:
            raise ValueError(f"noise_scale must be positive, got {bad}")
        # with target_variables None (every HR variable) the names are checked against the data
        # when the model is built
        unscaled = [v for v in self.local_scale_key if v not in self.local_scale]
        if unscaled:
            raise ValueError(f"local_scale_key: {', '.join(unscaled)} not in local_scale")
        bad_keys = [
            v for v, key in self.local_scale_key.items() if not key or len(set(key)) < len(key)
        ]
        if bad_keys:
            raise ValueError(
                f"local_scale_key: the key of {', '.join(bad_keys)} is not some distinct variables"
            )
        targets = self.target_variables
        named = {
            "local_scale": self.local_scale,
            "noise_scale": list(self.noise_scale),
            "local_scale_key": [v for key in self.local_scale_key.values() for v in key],
        }
        for field, names in named.items():
            unknown = [v for v in dict.fromkeys(names) if targets is not None and v not in targets]
            if unknown:
                raise ValueError(
                    f"{field}: {', '.join(unknown)} not among the target variables "
                    f"({', '.join(targets or [])})"
                )
        return self


class TrainConfig(Settings):
    """How to train: patches, optimiser, schedule, checkpoints, hardware."""

    out: Path = Field(
        default=Path("runs/experiment"),
        description="Folder for checkpoints and CSV logs (relative to "
        "where you run, unlike input paths).",
    )
    patch_size: int = Field(
        default=64, ge=8, description="Side of the square HR training patches (grid points)."
    )
    batch_size: int = Field(
        default=16,
        ge=1,
        description="Patches per optimisation step and process (global batch: "
        "batch_size x devices x num_nodes).",
    )
    max_steps: int = Field(default=2000, ge=1, description="Optimisation steps.")
    learning_rate: float = Field(
        default=2e-4, gt=0, description="Adam learning rate (cosine decay to 10%)."
    )
    warmup_steps: int = Field(default=100, ge=0, description="Linear learning-rate warm-up.")
    ema_decay: float = Field(
        default=0.999, ge=0, lt=1, description="Exponential moving average of the weights."
    )
    val_every_steps: int = Field(
        default=250, ge=1, description="Validation (and checkpoint) interval."
    )
    val_batches: int = Field(default=4, ge=1, description="Batches per validation.")
    seed: int = Field(default=0, description="Seed of weights, patches and noise.")
    num_workers: int = Field(
        default=1,
        ge=0,
        description="Data-loader worker processes reading the training samples while the "
        "model trains, each opening the data itself (0: read in the training process; "
        "validation samples always are).",
    )
    cache_mb: int = Field(
        default=256,
        ge=0,
        description="Decoded data chunks each data-loader process keeps (MiB): "
        "bounds the memory training takes, whatever the size of the dataset; a "
        "dataset that fits is read from disk once.",
    )
    accelerator: Literal["auto", "cpu", "gpu"] = Field(
        default="auto", description="'auto': GPU when present."
    )
    devices: int = Field(
        default=1,
        ge=1,
        description="Processes (GPUs, or CPU processes) per node; more than 1 trains "
        "data-parallel (DDP). Each process draws its own batch_size patches: the global batch is "
        "batch_size x devices x num_nodes.",
    )
    num_nodes: int = Field(
        default=1,
        ge=1,
        description="Machines, each running `devices` processes (torchrun or SLURM starts them).",
    )
    strategy: Literal["auto", "ddp"] = Field(
        default="auto",
        description="Lightning strategy; 'auto' is one process, or "
        "DDP when devices x num_nodes > 1.",
    )
    precision: Literal["32", "32-true", "bf16-mixed", "16-mixed"] = Field(
        default="32",
        description="Lightning precision: '32' (= '32-true') float32; 'bf16-mixed' runs the "
        "networks in bfloat16 under autocast (weights, optimiser and EMA stay float32), on CPU and "
        "GPU; '16-mixed': float16, GPU only.",
    )
    channels_last: bool = Field(
        default=False,
        description="Weights and batches in channels-last memory order (often faster convolutions "
        "on GPUs and recent CPUs; same results to float rounding).",
    )
    compile: bool = Field(
        default=False,
        description="torch.compile the networks (UNets, AtmoRep's encoder) before training: slower "
        "start, faster steps; on CPU it needs a C++ compiler.",
    )

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_as_text(cls, value: Any) -> Any:
        return (
            str(value) if isinstance(value, int) else value
        )  # `--set train.precision=32` reads as a number

    @property
    def world_size(self) -> int:
        """Training processes in all: devices x num_nodes."""
        return self.devices * self.num_nodes

    @property
    def global_batch_size(self) -> int:
        """Patches per optimisation step over all processes: batch_size x world_size."""
        return self.batch_size * self.world_size


class SampleConfig(Settings):
    """How ensembles are generated."""

    # Defaults chosen on validation hours (benchmarks/samplers.py: the fewest calls whose CRPS is
    # within 1 % of 40-step Heun for every variable, spread within 5 %)
    solver: Literal["euler", "heun", "dpmpp_2m"] = Field(
        default="dpmpp_2m", description="ODE/SDE solver."
    )
    steps: int = Field(
        default=6,
        ge=1,
        description="Noise levels (Heun: 2N-1 network calls; Euler and DPM-Solver++(2M): N).",
    )
    sigma_min: float = Field(default=0.002, gt=0, description="Smallest noise level.")
    sigma_max: float = Field(
        default=20.0,
        gt=0,
        description="Largest noise level, for residuals of unit RMS (model.scale_residuals). Not "
        "EDM's 80: on the skill benchmark 80 left the winds' members too wide and 8 "
        "precipitation's too narrow (docs/models.md).",
    )
    schedule: Literal["karras", "log_uniform"] = Field(
        default="log_uniform",
        description="Noise levels: Karras (rho spacing) or equal steps in "
        "ln(sigma) (best with dpmpp_2m).",
    )
    rho: float = Field(default=7.0, gt=0, description="Karras schedule exponent.")
    S_churn: float = Field(
        default=0.0, ge=0, description="Stochasticity of Heun (0: deterministic ODE)."
    )
    S_min: float = Field(default=0.0, ge=0, description="Churn only for sigma >= S_min.")
    S_max: float = Field(default=float("inf"), description="Churn only for sigma <= S_max.")
    S_noise: float = Field(default=1.0, gt=0, description="Scale of the churn noise.")
    calls: int = Field(
        default=2,
        ge=1,
        description="Consistency students only (`finescale distill`): network calls per member. "
        "A student has no solver, steps, schedule or churn (setting them is refused); a diffusion "
        "model refuses this.",
    )
    renoise: list[float] | None = Field(
        default=None,
        description="Consistency students only: the noise levels a member is noised to again "
        "before its 2nd, 3rd, ... call (calls - 1 of them, descending, between sigma_min and "
        "sigma_max). None: the first `calls` of `calls + 1` Karras levels from sigma_max down to "
        "sigma_min (2 calls from 20: 20, then 0.82).",
    )
    zero_below: float | None = Field(
        default=None,
        ge=0,
        description="log1p-transformed variables (precipitation): members come back as exactly "
        "0 below this (the variable's units). None: the checkpoint's data.transforms "
        "zero_below. Acts only on sampling.",
    )
    members: int = Field(default=16, ge=1, description="Ensemble members per LR input.")
    batch_size: int = Field(default=8, ge=1, description="Members (or tiles) per network call.")
    tile_size: int | None = Field(
        default=None, ge=16, description="Tile side for large domains (None: whole domain)."
    )
    tile_overlap: int = Field(
        default=16, ge=0, description="Overlap of neighbouring tiles, blended smoothly."
    )
    seed: int = Field(default=0, description="Seed of the sampling noise.")
    polar_filter_latitude: float | None = Field(
        default=None,
        ge=0,
        le=90,
        description="Rows poleward of this latitude keep only the zonal wavenumbers a grid "
        "of the spacing at this latitude resolves, so that members are as smooth near the "
        "poles as the truth (global periodic grids only; None: 60 on global grids that reach "
        "beyond it, off elsewhere; 90: off).",
    )
    polar_filter_vectors: list[str] | None = Field(
        default=None,
        description="HR variables that are components of a vector (winds): at the poles they vary "
        "along a latitude circle as a zonal wave 1, which the polar filter keeps. None: the "
        "variables whose units are a speed (e.g. m s-1, knots), except log1p-transformed ones "
        "(rates such as mm/h, never negative).",
    )

    @field_validator("renoise")
    @classmethod
    def _renoise_between_the_levels(cls, value: list[float] | None, info: Any) -> Any:
        if value is None or "calls" not in info.data:
            return value
        calls = info.data["calls"]
        top, bottom = info.data.get("sigma_max"), info.data.get("sigma_min")
        if len(value) != calls - 1:
            raise ValueError(
                f"{len(value)} levels where calls={calls} needs {calls - 1} (set both, or "
                "renoise: null for the default levels)"
            )
        levels = [top, *value, bottom]
        if None not in levels and any(a <= b for a, b in pairwise(levels)):
            raise ValueError(
                f"the levels must descend strictly from below sigma_max={top:g} to above "
                f"sigma_min={bottom:g}"
            )
        return value


class ExperimentConfig(Settings):
    """A whole experiment: what data, what model, how to train it, how to sample it."""

    name: str = Field(default="experiment", description="Name of the experiment, used in outputs.")
    data: DataConfig = Field(description="What data: sources, pairing, splits, transforms.")
    model: ModelConfig = Field(default=ModelConfig(), description="What is trained.")
    train: TrainConfig = Field(default=TrainConfig(), description="How it is trained.")
    sample: SampleConfig = Field(default=SampleConfig(), description="How ensembles are generated.")

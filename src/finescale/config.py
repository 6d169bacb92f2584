"""Typed, frozen settings for every stage, read from YAML with command-line overrides.

A config file is YAML whose top-level sections mirror the pipeline (``data``, later ``model``,
``train``, ...). Each section is a pydantic model with ``extra="forbid"``, so a misspelt key is
an error naming the key and the allowed ones. Relative paths are resolved against the folder of
the config file, so a config and its data can travel together.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_core import core_schema


class ConfigError(ValueError):
    """A config that cannot be used; the message names the key and what is allowed."""


class Settings(BaseModel):
    """Base of every settings object: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------------
# data: what to read and how to pair it


#: Seconds per unit of a duration such as '1h' or '30 min' (VariableSpec.accumulation).
_DURATION_UNITS = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1),
    **dict.fromkeys(("min", "mins", "minute", "minutes"), 60),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600),
    **dict.fromkeys(("d", "day", "days"), 86400),
}
_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_DURATION = re.compile(rf"{_NUMBER}\s*([a-z]+)", re.IGNORECASE)
_ISO_DURATION = re.compile(
    rf"P(?:{_NUMBER}D)?(?:T(?:{_NUMBER}H)?(?:{_NUMBER}M)?(?:{_NUMBER}S)?)?", re.IGNORECASE
)


def duration_seconds(text: str) -> float:
    """Length in seconds of a duration: a number and a unit ('1h', '30 min', '3600s', '1d';
    units s, min, h, d and their spellings as words) or ISO 8601 ('PT1H', 'PT30M', 'P1D').

    Raises ValueError naming the text and the accepted forms.
    """
    stripped = text.strip()
    plain = _DURATION.fullmatch(stripped)
    if plain and plain.group(2).lower() in _DURATION_UNITS:
        return float(plain.group(1)) * _DURATION_UNITS[plain.group(2).lower()]
    iso = _ISO_DURATION.fullmatch(stripped)
    if iso and stripped.upper() not in ("P", "PT") and not stripped.upper().endswith("T"):
        days, hours, minutes, seconds = (float(g) if g else 0.0 for g in iso.groups())
        return days * 86400 + hours * 3600 + minutes * 60 + seconds
    raise ValueError(
        f"{text!r} is not a duration: give a number and a unit (s, min, h or d), e.g. 1h, "
        "30min, 3600s or 1d, or ISO 8601 such as PT1H"
    )


def duration_text(seconds: float, *, space: bool = True) -> str:
    """``seconds`` in the largest of d, h, min and s that gives a whole number: '1 h', '90 min',
    '45 s' ('1h' without ``space``); :func:`duration_seconds` reads it back."""
    gap = " " if space else ""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds % size == 0:
            return f"{seconds // size:.0f}{gap}{unit}"
    # fixed-point, never an exponent, which duration_seconds would not read
    return f"{seconds:.6f}".rstrip("0").rstrip(".") + f"{gap}s"


class Duration(float):
    """A length of time in seconds, written in a config with its unit: '1h', '30min', '3600s',
    'PT1H' (:func:`duration_seconds`)."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        return core_schema.no_info_after_validator_function(cls, core_schema.float_schema())


class VariableSpec(Settings):
    """One variable of a source, mapped to the name finescale uses for it."""

    name: str = Field(description="Name of the variable in the file.")
    units: str | None = Field(
        default=None,
        description="Units to convert to (e.g. 'K', 'm s-1', 'mm h-1'); None keeps the file's units.",
    )
    source_units: str | None = Field(
        default=None, description="Units of the data in the file, used only when it has no 'units' attribute."
    )
    accumulation: bool | Duration = Field(
        default=False,
        description="The file holds amounts accumulated over a period (ERA5 'tp' in m), divided by the "
        "period's length to give the rate asked for in 'units'. Give the period as a duration: '1h' (ERA5 "
        "hourly 'tp'), '6h', '30min', '3600s', '1d', '1 h' or ISO 8601 'PT1H' (a bare number is refused: "
        "it has no unit). 'true' infers the period from the time step, and is "
        "refused unless every time step is the same: amounts sampled less often than they are accumulated "
        "(hourly amounts every 6 h) need the period stated. 'pairs check' shows the period used.",
    )
    level: float | None = Field(default=None, description="Select this value of the vertical coordinate.")

    @field_validator("accumulation", mode="before")
    @classmethod
    def _period_in_seconds(cls, value: Any) -> Any:
        """true/false as they are; a duration such as '1h' as its length in seconds."""
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)):
            raise ValueError(  # noqa: TRY004 (pydantic reports ValueError, not TypeError)
                "a bare number has no unit: give the accumulation period as a duration, "
                "e.g. 1h, 30min or 3600s (or true to infer it from a regular time step)"
            )
        if isinstance(value, str):
            if value.strip().lower() in ("true", "false"):
                return value.strip().lower() == "true"
            seconds = duration_seconds(value)
            if seconds <= 0:
                raise ValueError("the accumulation period must be longer than 0")
            return seconds
        return value

    @field_serializer("accumulation")
    def _period_as_text(self, value: bool | Duration) -> bool | str:
        # written back as a duration, so that a dumped config reads in again the same
        return value if isinstance(value, bool) else duration_text(value, space=False)


class FileConfig(Settings):
    """Fields shared by every file-backed source."""

    path: Path = Field(description="File, Zarr folder or glob of NetCDF files; relative to the config file.")
    variables: dict[str, VariableSpec] = Field(
        description="finescale name -> variable in the file. A plain string is the file's name."
    )
    engine: Literal["auto", "netcdf", "zarr", "grib"] = Field(
        default="auto", description="Reader; 'auto' decides by suffix. 'grib' needs the optional extra finescale[grib]."
    )
    y: str | None = Field(default=None, description="Name of the south-north dimension (None: infer).")
    x: str | None = Field(default=None, description="Name of the west-east dimension (None: infer).")
    lat: str = Field(default="lat", description="Name of the latitude coordinate (1-D or 2-D).")
    lon: str = Field(default="lon", description="Name of the longitude coordinate (1-D or 2-D).")
    missing: Literal["error", "mask"] = Field(
        default="error",
        description="NaN and Inf in the mapped variables (decoded fill values included): 'error' refuses them, "
        "naming the file, variable and time; 'mask' treats them as missing values (left out of the statistics, "
        "the alignment check and the training loss; given to the models as the variable's mean).",
    )

    @field_validator("variables", mode="before")
    @classmethod
    def _strings_are_names(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: ({"name": v} if isinstance(v, str) else v) for k, v in value.items()}
        return value


class SourceConfig(FileConfig):
    """An LR or HR source: a NetCDF file, a Zarr store or a GRIB file that xarray opens."""

    time: str = Field(default="time", description="Name of the time dimension.")
    level: str = Field(default="level", description="Name of the vertical coordinate, where there is one.")


class StaticConfig(FileConfig):
    """Time-independent HR fields (orography, land-sea mask, ...) on the HR grid."""


class SplitConfig(Settings):
    """Contiguous train / validation / test blocks in time order, with an optional gap between them."""

    train: float = Field(default=0.7, gt=0, lt=1, description="Fraction of the aligned times for training.")
    validation: float = Field(default=0.15, ge=0, lt=1, description="Fraction for validation.")
    test: float = Field(default=0.15, gt=0, lt=1, description="Fraction for testing.")
    gap_hours: float = Field(
        default=0.0, ge=0, description="Times dropped between blocks so that correlated neighbours do not leak."
    )

    @model_validator(mode="after")
    def _fractions_sum_to_one(self) -> SplitConfig:
        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + validation + test must be 1, got {total:g}")
        return self


class TransformConfig(Settings):
    """How a variable is transformed before normalisation."""

    kind: Literal["none", "log1p"] = Field(
        default="none", description="'log1p': y = log(1 + x/scale), for non-negative skewed fields such as precipitation."
    )
    scale: float = Field(default=1.0, gt=0, description="Scale of the log1p transform, in the variable's units.")
    zero_below: float = Field(
        default=0.0, ge=0,
        description="log1p only: values below this (variable's units) come back as exactly 0 from the inverse, "
        "so generated precipitation is dry where it would otherwise drizzle.",
    )


class AlignmentConfig(Settings):
    """Thresholds for refusing LR/HR pairs that do not describe the same state."""

    require_integer_ratio: bool = Field(
        default=True,
        description=(
            "LR and HR grids must be nested: the LR grid spacing is a whole number of HR spacings, "
            "with each LR cell made of whole HR cells or each LR point on an HR point "
            "(pole-inclusive grids, e.g. 73 x 144 at 2.5 deg and 19 x 36 at 10 deg). "
            "Set false for grids that are not nested (HR is then interpolated to LR)."
        ),
    )
    min_correlation: float = Field(
        default=0.5,
        ge=-1,
        le=1,
        description="Smallest correlation between LR and HR coarsened to the LR grid before a pair is refused.",
    )
    tolerance_deg: float = Field(
        default=0.01, ge=0, description="Largest mismatch of grid edges and centres tolerated, in degrees."
    )


class DataConfig(Settings):
    """The paired data: LR source, HR source, static HR fields, splits and transforms."""

    lr: SourceConfig = Field(description="The coarse source (e.g. ERA5, a GCM).")
    hr: SourceConfig = Field(description="The fine source (e.g. CERRA, an RCM): the target.")
    static: StaticConfig | None = Field(default=None, description="Static HR fields (orography, land-sea mask).")
    splits: SplitConfig = Field(default=SplitConfig(), description="Train / validation / test blocks in time.")
    transforms: dict[str, TransformConfig] = Field(
        default_factory=dict, description="Per-variable transforms before normalisation; unlisted: none."
    )
    alignment: AlignmentConfig = Field(default=AlignmentConfig(), description="When to refuse a pair.")


class ConditioningConfig(Settings):
    """What a model sees besides the noisy target: LR fields on the HR grid, static fields, features."""

    lr_variables: list[str] | None = Field(
        default=None, description="LR variables given to the model (None: every LR variable of the data section)."
    )
    static_variables: list[str] | None = Field(
        default=None, description="Static HR fields given to the model (None: every static variable)."
    )
    interpolation: Literal["bilinear", "bicubic"] = Field(
        default="bilinear", description="How LR fields are brought to the HR grid (also the residual's base)."
    )
    position: bool = Field(default=True, description="Add sin/cos of latitude and longitude as channels.")
    time: bool = Field(default=True, description="Add sin/cos of the hour of day (UTC) and day of year.")


class NetworkConfig(Settings):
    """Size of the UNet backbone."""

    base_width: int = Field(default=32, ge=4, description="Channels at the finest level.")
    channel_mult: tuple[int, ...] = Field(default=(1, 2, 2), description="Width multiplier per level.")
    blocks_per_level: int = Field(default=1, ge=1, description="Residual blocks per level.")
    attention_levels: tuple[int, ...] = Field(default=(), description="Levels (0 = finest) with self-attention.")
    attention_heads: int = Field(default=4, ge=1, description="Heads of each self-attention layer.")
    dropout: float = Field(default=0.0, ge=0, lt=1, description="Dropout in the residual blocks.")

    @model_validator(mode="after")
    def _attention_levels_exist(self) -> NetworkConfig:
        levels = len(self.channel_mult)
        if any(not 0 <= level < levels for level in self.attention_levels):
            raise ValueError(
                f"attention_levels {list(self.attention_levels)} must lie in 0..{levels - 1} "
                f"for channel_mult {list(self.channel_mult)}"
            )
        return self


class EDMConfig(Settings):
    """EDM training settings (Karras et al. 2022)."""

    sigma_data: float = Field(default=1.0, gt=0, description="Std of the (standardised) data.")
    P_mean: float = Field(default=-1.2, description="Mean of ln(sigma) during training (CorrDiff: 0 for residuals).")
    P_std: float = Field(default=1.2, gt=0, description="Std of ln(sigma) during training.")


class ModelConfig(Settings):
    """What is trained: a regression model (conditional mean) or a residual EDM diffusion model."""

    kind: Literal["regression", "diffusion"] = Field(default="diffusion", description="Model to train.")
    target_variables: list[str] | None = Field(
        default=None, description="HR variables to predict (None: every HR variable)."
    )
    residual: Literal["interpolation", "regression"] = Field(
        default="interpolation",
        description="Diffusion learns y minus the interpolated LR (Anemoi) or minus the regression mean (CorrDiff).",
    )
    regression_checkpoint: Path | None = Field(
        default=None,
        description="Trained regression checkpoint, required when residual is 'regression' (relative to the config).",
    )
    scale_residuals: bool = Field(
        default=True,
        description="Divide each variable's residual (over the interpolation, or over mu for diffusion) by its RMS "
        "on training patches, so small residuals (t2m) weigh as much as large ones (winds).",
    )
    loss_weights: dict[str, float] = Field(
        default_factory=dict, description="Per-variable loss weights (unlisted: 1)."
    )
    periodic_lon: bool | None = Field(
        default=None, description="Wrap the grid in longitude (None: when the HR grid spans 360 degrees)."
    )
    conditioning: ConditioningConfig = Field(default=ConditioningConfig(), description="Model inputs.")
    network: NetworkConfig = Field(default=NetworkConfig(), description="Backbone size.")
    edm: EDMConfig = Field(default=EDMConfig(), description="EDM noise distribution and scaling.")

    @model_validator(mode="after")
    def _regression_checkpoint_when_needed(self) -> ModelConfig:
        if self.kind == "diffusion" and self.residual == "regression" and self.regression_checkpoint is None:
            raise ValueError("residual 'regression' needs model.regression_checkpoint")
        return self


class TrainConfig(Settings):
    """How to train: patches, optimiser, schedule, checkpoints, hardware."""

    out: Path = Field(
        default=Path("runs/experiment"),
        description="Folder for checkpoints and CSV logs (relative to where you run, unlike input paths).",
    )
    patch_size: int = Field(default=64, ge=8, description="Side of the square HR training patches (grid points).")
    batch_size: int = Field(
        default=16, ge=1,
        description="Patches per optimisation step and process (global batch: batch_size x devices x num_nodes).",
    )
    max_steps: int = Field(default=2000, ge=1, description="Optimisation steps.")
    learning_rate: float = Field(default=2e-4, gt=0, description="Adam learning rate (cosine decay to 10%).")
    warmup_steps: int = Field(default=100, ge=0, description="Linear learning-rate warm-up.")
    ema_decay: float = Field(default=0.999, ge=0, lt=1, description="Exponential moving average of the weights.")
    val_every_steps: int = Field(default=250, ge=1, description="Validation (and checkpoint) interval.")
    val_batches: int = Field(default=4, ge=1, description="Batches per validation.")
    seed: int = Field(default=0, description="Seed of weights, patches and noise.")
    num_workers: int = Field(
        default=1, ge=0,
        description="Data-loader worker processes reading the training samples while the model trains, each "
        "opening the data itself (0: read in the training process; validation samples always are).",
    )
    cache_mb: int = Field(
        default=256, ge=0,
        description="Decoded data chunks each data-loader process keeps (MiB): bounds the memory training takes, "
        "whatever the size of the dataset; a dataset that fits is read from disk once.",
    )
    accelerator: Literal["auto", "cpu", "gpu"] = Field(default="auto", description="'auto': GPU when present.")
    devices: int = Field(
        default=1, ge=1,
        description="Processes (GPUs, or CPU processes) per node; more than 1 trains data-parallel (DDP). "
        "Each process draws its own batch_size patches: the global batch is batch_size x devices x num_nodes.",
    )
    num_nodes: int = Field(
        default=1, ge=1, description="Machines, each running `devices` processes (torchrun or SLURM starts them)."
    )
    strategy: Literal["auto", "ddp"] = Field(
        default="auto", description="Lightning strategy; 'auto' is one process, or DDP when devices x num_nodes > 1."
    )
    precision: Literal["32", "32-true", "bf16-mixed", "16-mixed"] = Field(
        default="32",
        description="Lightning precision: '32' (= '32-true') float32; 'bf16-mixed' runs the networks in bfloat16 "
        "under autocast (weights, optimiser and EMA stay float32), on CPU and GPU; '16-mixed': float16, GPU only.",
    )
    channels_last: bool = Field(
        default=False,
        description="Weights and batches in channels-last memory order (often faster convolutions on GPUs and "
        "recent CPUs; same results to float rounding).",
    )
    compile: bool = Field(
        default=False,
        description="torch.compile the networks (UNets, AtmoRep's encoder) before training: slower start, "
        "faster steps; on CPU it needs a C++ compiler.",
    )

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value  # `--set train.precision=32` reads as a number

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

    solver: Literal["euler", "heun", "dpmpp_2m"] = Field(default="heun", description="ODE/SDE solver.")
    steps: int = Field(default=18, ge=1, description="Noise levels (Heun: 2N-1 network calls).")
    sigma_min: float = Field(default=0.002, gt=0, description="Smallest noise level.")
    sigma_max: float = Field(
        default=20.0,
        gt=0,
        description="Largest noise level, for residuals of unit RMS (model.scale_residuals). Not EDM's 80: on the "
        "skill benchmark 80 left the winds' members too wide and 8 precipitation's too narrow (docs/models.md).",
    )
    schedule: Literal["karras", "log_uniform"] = Field(
        default="karras",
        description="Noise levels: Karras (rho spacing) or equal steps in ln(sigma) (best with dpmpp_2m).",
    )
    rho: float = Field(default=7.0, gt=0, description="Karras schedule exponent.")
    S_churn: float = Field(default=0.0, ge=0, description="Stochasticity of Heun (0: deterministic ODE).")
    S_min: float = Field(default=0.0, ge=0, description="Churn only for sigma >= S_min.")
    S_max: float = Field(default=float("inf"), description="Churn only for sigma <= S_max.")
    S_noise: float = Field(default=1.0, gt=0, description="Scale of the churn noise.")
    members: int = Field(default=16, ge=1, description="Ensemble members per LR input.")
    batch_size: int = Field(default=8, ge=1, description="Members (or tiles) per network call.")
    tile_size: int | None = Field(default=None, ge=16, description="Tile side for large domains (None: whole domain).")
    tile_overlap: int = Field(default=16, ge=0, description="Overlap of neighbouring tiles, blended smoothly.")
    seed: int = Field(default=0, description="Seed of the sampling noise.")
    polar_filter_latitude: float | None = Field(
        default=None,
        ge=0,
        le=90,
        description="Rows poleward of this latitude keep only the zonal wavenumbers a grid of the spacing at "
        "this latitude resolves, so that members are as smooth near the poles as the truth (global periodic "
        "grids only; None: 60 on global grids that reach beyond it, off elsewhere; 90: off).",
    )
    polar_filter_vectors: list[str] | None = Field(
        default=None,
        description="HR variables that are components of a vector (winds): at the poles they vary along a "
        "latitude circle as a zonal wave 1, which the polar filter keeps. None: the variables whose units are "
        "a speed (e.g. m s-1, knots), except log1p-transformed ones (rates such as mm/h, never negative).",
    )


class ExperimentConfig(Settings):
    """A whole experiment: what data, what model, how to train it, how to sample it."""

    name: str = Field(default="experiment", description="Name of the experiment, used in outputs.")
    data: DataConfig = Field(description="What data: sources, pairing, splits, transforms.")
    model: ModelConfig = Field(default=ModelConfig(), description="What is trained.")
    train: TrainConfig = Field(default=TrainConfig(), description="How it is trained.")
    sample: SampleConfig = Field(default=SampleConfig(), description="How ensembles are generated.")


# --------------------------------------------------------------------------------------------
# AtmoRep: a multi-field masked-token model with an ensemble tail


class FieldConfig(Settings):
    """One field of the AtmoRep model: one variable, or several stacked as its vertical levels, from one source."""

    source: Literal["hr", "lr", "static"] = Field(
        description="Dataset it comes from; brought to the model's grid (LR interpolated, HR coarsened) when needed."
    )
    variables: list[str] | None = Field(
        default=None,
        description="finescale variables of the source, one per vertical level in the order given "
        "(e.g. [u850, u700, u500]); None: the one variable named like the field.",
    )
    partners: list[str] | None = Field(
        default=None, description="Fields this field's encoder cross-attends to (None: every other field)."
    )
    predict: bool = Field(default=True, description="Masked and predicted (False: an input only, never masked).")
    mask_rate: float = Field(
        default=0.5, ge=0, le=1, description="BERT masking: each sample masks a random fraction up to this rate."
    )
    loss_weight: float = Field(default=1.0, ge=0, description="Weight of this field in the loss.")
    base: str | None = Field(
        default=None,
        description="targets masking: the hidden tokens start from this input field (same number of levels), "
        "e.g. the LR field of the same variable on the model's grid, and the model predicts the change; None: 0.",
    )
    detail: list[str] = Field(
        default_factory=list,
        description="Input fields whose values enter this field's members point by point: per member and token the "
        "tail gives one gain per level of each, times that token's values (e.g. [orog] for t2m: a lapse rate "
        "times the terrain), detail a token's few features cannot carry.",
    )

    @model_validator(mode="after")
    def _static_fields_are_inputs(self) -> FieldConfig:
        if self.source == "static" and self.predict:
            raise ValueError("a static field is an input: set predict: false")
        if self.variables is not None and not self.variables:
            raise ValueError("variables must name at least one variable (or be left out)")
        return self


class TokenConfig(Settings):
    """Grid points per token (AtmoRep: 3 x 9 x 9)."""

    time: int = Field(default=3, ge=1, description="Hours per token.")
    y: int = Field(default=9, ge=1, description="Grid rows per token.")
    x: int = Field(default=9, ge=1, description="Grid columns per token.")


class NeighbourhoodConfig(Settings):
    """Tokens per space-time neighbourhood (hypercube); AtmoRep's 12 x 6 x 12 scaled to our grids."""

    time: int = Field(default=4, ge=1, description="Tokens in time.")
    y: int = Field(default=4, ge=1, description="Tokens south-north.")
    x: int = Field(default=8, ge=1, description="Tokens west-east.")


class TransformerConfig(Settings):
    """Size of the per-field encoders, decoders and the ensemble tail."""

    width: int = Field(default=64, ge=8, description="Token embedding width.")
    heads: int = Field(default=4, ge=1, description="Attention heads (width must divide by it).")
    encoder_layers: int = Field(default=3, ge=1, description="Encoder layers per field (self- then cross-attention).")
    decoder_layers: int = Field(default=1, ge=0, description="Self-attention layers per predicted field after the encoder.")
    tail_layers: int = Field(default=2, ge=1, description="Noise-modulated MLP blocks of the ensemble tail.")
    mlp_ratio: int = Field(default=2, ge=1, description="Hidden width of every MLP / width.")
    dropout: float = Field(default=0.0, ge=0, lt=1, description="Dropout in attention and MLPs.")

    @model_validator(mode="after")
    def _heads_divide_width(self) -> TransformerConfig:
        if self.width % self.heads:
            raise ValueError(f"width {self.width} must be a multiple of heads {self.heads}")
        return self


class EnsembleConfig(Settings):
    """The ensemble tail: exchangeable members from one head fed with independent noise."""

    members: int = Field(default=16, ge=2, description="Members per sample in training and prediction.")
    noise_dim: int = Field(default=32, ge=1, description="Size of each member's noise vector.")
    mse_weight: float = Field(
        default=0.0, ge=0, description="Weight of the ensemble mean's MSE added to the fair CRPS loss."
    )


class MaskingConfig(Settings):
    """Which tokens are hidden from the model and predicted (done in the data loader)."""

    strategies: dict[Literal["bert", "forecast", "interpolation", "targets"], float] = Field(
        default_factory=lambda: {"bert": 1.0},
        description="Strategy -> probability per sample. bert: random tokens of predicted fields; forecast: the "
        "last time tokens of every dynamic field; interpolation: the middle time tokens; targets: every token of "
        "the predicted fields (downscaling, bias correction).",
    )
    forecast_tokens: int = Field(default=1, ge=1, description="Time tokens masked at the end (forecast).")
    interpolation_tokens: int = Field(default=1, ge=1, description="Time tokens masked in the middle (interpolation).")
    fill: Literal["zero", "noise", "coarsen"] = Field(
        default="zero",
        description="BERT only: masked values become 0, N(0, 1) noise, or the token's mean (a coarsened token); "
        "targets always gives 0.",
    )
    time_fill: Literal["zero", "informed"] = Field(
        default="informed",
        description="forecast and interpolation: hidden hours start as 0, or informed by what is known at inference "
        "(the last known hour for a forecast, linear interpolation in time for a gap); the model predicts the "
        "change from that start.",
    )

    @field_validator("strategies")
    @classmethod
    def _weights_positive(cls, value: dict[str, float]) -> dict[str, float]:
        if not value or any(w < 0 for w in value.values()) or sum(value.values()) <= 0:
            raise ValueError("strategies need non-negative weights with a positive sum")
        return value


class AtmoRepConfig(Settings):
    """An AtmoRep experiment: fields on one grid cut into space-time tokens, masked and predicted as ensembles."""

    name: str = Field(default="atmorep", description="Name of the experiment, used in outputs.")
    data: DataConfig = Field(description="What data: sources, pairing, splits, transforms.")
    grid: Literal["hr", "lr"] = Field(default="hr", description="The grid every field is brought to.")
    fields: dict[str, FieldConfig] = Field(description="The model's fields by name; adding one is a config entry.")
    token: TokenConfig = Field(default=TokenConfig(), description="Grid points per token.")
    neighbourhood: NeighbourhoodConfig = Field(default=NeighbourhoodConfig(), description="Tokens per sample.")
    network: TransformerConfig = Field(default=TransformerConfig(), description="Transformer size.")
    ensemble: EnsembleConfig = Field(default=EnsembleConfig(), description="Ensemble tail.")
    masking: MaskingConfig = Field(default=MaskingConfig(), description="Training task.")
    train: TrainConfig = Field(default=TrainConfig(), description="How it is trained (patch_size unused).")
    init_checkpoint: Path | None = Field(
        default=None,
        description="Start from this AtmoRep checkpoint (fine-tuning): weights of fields with the same name and "
        "shape are taken over, the rest start fresh (relative to the config).",
    )

    @model_validator(mode="after")
    def _fields_consistent(self) -> AtmoRepConfig:
        names = set(self.fields)
        if not any(f.predict for f in self.fields.values()):
            raise ValueError("fields: at least one field must have predict: true")
        for name, f in self.fields.items():
            unknown = sorted(set(f.partners or []) - names)
            if unknown:
                raise ValueError(f"fields.{name}.partners: unknown fields {unknown}; fields are {sorted(names)}")
            if name in (f.partners or []):
                raise ValueError(f"fields.{name}.partners: a field cannot be its own partner")
            if f.base is not None:
                base = self.fields.get(f.base)
                if base is None or base.predict:
                    raise ValueError(f"fields.{name}.base: '{f.base}' must be an input field (predict: false)")
                if len(self.variables_of(f.base)) != len(self.variables_of(name)):
                    raise ValueError(f"fields.{name}.base: '{f.base}' has another number of levels")
            for other in f.detail:
                if other not in self.fields or self.fields[other].predict:
                    raise ValueError(f"fields.{name}.detail: '{other}' must be an input field (predict: false)")
            if f.detail and not f.predict:
                raise ValueError(f"fields.{name}.detail: only a predicted field takes detail")
        return self

    def variables_of(self, name: str) -> list[str]:
        """The finescale variables (levels) of field ``name``."""
        f = self.fields[name]
        return list(f.variables) if f.variables is not None else [name]

    def partners_of(self, name: str) -> list[str]:
        """The fields field ``name`` cross-attends to."""
        f = self.fields[name]
        return list(f.partners) if f.partners is not None else [n for n in self.fields if n != name]


# --------------------------------------------------------------------------------------------
# loading


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: '{key}' is a value, not a section")
        node = child
    node[keys[-1]] = value


def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides to a raw config tree; values are parsed as YAML."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        dotted, raw = item.split("=", 1)
        if not dotted.strip():
            raise ConfigError(f"--set {item!r}: empty key")
        _set_dotted(tree, dotted.strip(), yaml.safe_load(raw))
    return tree


def _model_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The settings class found by walking ``loc`` down from ``model`` (None where unknown)."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(str(part))
        if field is None:
            return None
        annotation = field.annotation
        current = _first_model(annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _first_model(annotation: Any) -> Any:
    """The BaseModel inside an annotation such as ``X | None`` or ``dict[str, X]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _first_model(arg)
        if found is not None:
            return found
    return None


def _describe(error: dict[str, Any], root: type[BaseModel]) -> str:
    loc = tuple(error["loc"])
    key = ".".join(str(p) for p in loc) or "<top level>"
    if error["type"] == "extra_forbidden":
        parent = _model_at(root, loc[:-1])
        allowed = sorted(parent.model_fields) if parent is not None else []
        hint = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
        return f"unknown key '{key}'{hint}"
    if error["type"] == "missing":
        return f"missing key '{key}'"
    return f"'{key}': {error['msg']} (got {error.get('input')!r})"


INPUT_PATH_KEYS = frozenset({"path", "regression_checkpoint", "init_checkpoint"})


def _resolve_paths(value: Any, base: Path) -> Any:
    """Make every relative input path (keys in INPUT_PATH_KEYS) absolute against ``base``.

    Inputs travel with the config; outputs (``train.out``) stay relative to where you run.
    """
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k in INPUT_PATH_KEYS and isinstance(v, (str, Path)) and not Path(v).is_absolute():
                out[k] = str((base / v).resolve())
            else:
                out[k] = _resolve_paths(v, base)
        return out
    if isinstance(value, list):
        return [_resolve_paths(v, base) for v in value]
    return value


def validate(tree: dict[str, Any], model: type[Settings] = ExperimentConfig, *, source: str = "config") -> Any:
    """Validate a raw tree into ``model``, turning pydantic's errors into one readable ConfigError."""
    try:
        return model.model_validate(tree)
    except ValidationError as exc:
        lines = [_describe(e, model) for e in exc.errors()]
        raise ConfigError(f"{source}: " + "; ".join(lines)) from None


def load_config(
    path: str | Path,
    overrides: list[str] | None = None,
    model: type[Settings] = ExperimentConfig,
    sections: dict[str, Any] | None = None,
) -> Any:
    """Read a YAML config, apply ``--set`` overrides, resolve relative paths and validate.

    ``sections`` are added where the file has none of that name (their paths must be absolute),
    for example the data section of a world; a file that has one too is an error.
    Raises ConfigError naming the file and the offending key.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    for key, section in (sections or {}).items():
        if key in tree:
            raise ConfigError(f"{path}: has its own '{key}' section; leave it out or do not pass another")
        tree[key] = section
    tree = apply_overrides(tree, list(overrides or []))
    tree = _resolve_paths(tree, path.parent.resolve())
    return validate(tree, model, source=str(path))


# --------------------------------------------------------------------------------------------
# documentation


def reference_markdown(model: type[BaseModel] = ExperimentConfig, title: str = "Configuration reference") -> str:
    """A Markdown reference of every settings section reachable from ``model`` (docs are generated from it)."""
    sections: list[tuple[str, type[BaseModel]]] = []
    seen: dict[type[BaseModel], str] = {}

    def walk(prefix: str, cls: type[BaseModel]) -> None:
        sections.append((prefix, cls))
        if cls in seen:
            return
        seen[cls] = prefix
        for name, field in cls.model_fields.items():
            inner = _first_model(field.annotation)
            if inner is not None:
                key = f"{prefix}.{name}" if prefix else name
                is_mapping = getattr(field.annotation, "__origin__", None) is dict
                walk(f"{key}.<name>" if is_mapping else key, inner)

    walk("", model)
    lines = [f"# {title}", "", "Generated from the settings models by `finescale.config.reference_markdown`.", ""]
    for prefix, cls in sections:
        lines += [f"## `{prefix or '(top level)'}`: {cls.__name__}", "", (cls.__doc__ or "").strip(), ""]
        if seen[cls] != prefix:
            lines += [f"Same keys as `{seen[cls]}`.", ""]
            continue
        lines += ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
        for name, field in cls.model_fields.items():
            if field.is_required():
                default = "required"
            elif _first_model(field.annotation) is not None and field.get_default(call_default_factory=True):
                default = "see its section"
            else:
                default = repr(field.get_default(call_default_factory=True))
            kind = _type_name(field.annotation)
            lines.append(f"| `{name}` | {kind} | `{default}` | {field.description or ''} |")
        lines.append("")
    return "\n".join(lines)


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    text = text or str(annotation).replace("typing.", "").replace("pathlib.", "").replace("finescale.config.", "")
    return text.replace("|", "or")

"""AtmoRep's settings (the config of ``finescale pretrain``): fields, tokens, neighbourhood,
network, ensemble tail and masking, with the data and training sections of downscaling's."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from finescale.config.data import DataConfig
from finescale.config.downscaling import TrainConfig
from finescale.config.settings import Settings


class FieldConfig(Settings):
    """One field of the AtmoRep model: one variable, or several stacked as its vertical levels,
    from one source."""

    source: Literal["hr", "lr", "static"] = Field(
        description="Dataset it comes from; brought to the model's grid (LR "
        "interpolated, HR coarsened) when needed."
    )
    variables: list[str] | None = Field(
        default=None,
        description="finescale variables of the source, one per vertical level in the order given "
        "(e.g. [u850, u700, u500]); None: the one variable named like the field.",
    )
    partners: list[str] | None = Field(
        default=None,
        description="Fields this field's encoder cross-attends to (None: every other field).",
    )
    predict: bool = Field(
        default=True, description="Masked and predicted (False: an input only, never masked)."
    )
    mask_rate: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="BERT masking: each sample masks a random fraction up to this rate.",
    )
    loss_weight: float = Field(default=1.0, ge=0, description="Weight of this field in the loss.")
    base: str | None = Field(
        default=None,
        description="targets masking: the hidden tokens start from this input field (same "
        "number of levels), e.g. the LR field of the same variable on the model's grid, and the "
        "model predicts the change; None: 0.",
    )
    detail: list[str] = Field(
        default_factory=list,
        description="Input fields whose values enter this field's members point by point: "
        "per member and token the tail gives one gain per level of each, times that "
        "token's values (e.g. [orog] for t2m: a lapse rate times the terrain), detail a "
        "token's few features cannot carry.",
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
    """Tokens per space-time neighbourhood (hypercube); AtmoRep's 12 x 6 x 12 scaled to our
    grids."""

    time: int = Field(default=4, ge=1, description="Tokens in time.")
    y: int = Field(default=4, ge=1, description="Tokens south-north.")
    x: int = Field(default=8, ge=1, description="Tokens west-east.")


class TransformerConfig(Settings):
    """Size of the per-field encoders, decoders and the ensemble tail."""

    width: int = Field(default=64, ge=8, description="Token embedding width.")
    heads: int = Field(default=4, ge=1, description="Attention heads (width must divide by it).")
    encoder_layers: int = Field(
        default=3, ge=1, description="Encoder layers per field (self- then cross-attention)."
    )
    decoder_layers: int = Field(
        default=1, ge=0, description="Self-attention layers per predicted field after the encoder."
    )
    tail_layers: int = Field(
        default=2, ge=1, description="Noise-modulated MLP blocks of the ensemble tail."
    )
    mlp_ratio: int = Field(default=2, ge=1, description="Hidden width of every MLP / width.")
    dropout: float = Field(default=0.0, ge=0, lt=1, description="Dropout in attention and MLPs.")

    @model_validator(mode="after")
    def _heads_divide_width(self) -> TransformerConfig:
        if self.width % self.heads:
            raise ValueError(f"width {self.width} must be a multiple of heads {self.heads}")
        return self


class EnsembleConfig(Settings):
    """The ensemble tail: exchangeable members from one head fed with independent noise."""

    members: int = Field(
        default=16, ge=2, description="Members per sample in training and prediction."
    )
    noise_dim: int = Field(default=32, ge=1, description="Size of each member's noise vector.")
    mse_weight: float = Field(
        default=0.0,
        ge=0,
        description="Weight of the ensemble mean's MSE added to the fair CRPS loss.",
    )


class MaskingConfig(Settings):
    """Which tokens are hidden from the model and predicted (done in the data loader)."""

    strategies: dict[Literal["bert", "forecast", "interpolation", "targets"], float] = Field(
        default_factory=lambda: {"bert": 1.0},
        description="Strategy -> probability per sample. bert: random tokens of predicted fields; "
        "forecast: the last time tokens of every dynamic field; interpolation: the middle time "
        "tokens; targets: every token of the predicted fields (downscaling, bias correction).",
    )
    forecast_tokens: int = Field(
        default=1, ge=1, description="Time tokens masked at the end (forecast)."
    )
    interpolation_tokens: int = Field(
        default=1, ge=1, description="Time tokens masked in the middle (interpolation)."
    )
    fill: Literal["zero", "noise", "coarsen"] = Field(
        default="zero",
        description="BERT only: masked values become 0, N(0, 1) noise, or the token's mean (a "
        "coarsened token); targets always gives 0.",
    )
    time_fill: Literal["zero", "informed"] = Field(
        default="informed",
        description="forecast and interpolation: hidden hours start as 0, or informed by what is "
        "known at inference (the last known hour for a forecast, linear interpolation in time for "
        "a gap); the model predicts the change from that start.",
    )

    @field_validator("strategies")
    @classmethod
    def _weights_positive(cls, value: dict[str, float]) -> dict[str, float]:
        if not value or any(w < 0 for w in value.values()) or sum(value.values()) <= 0:
            raise ValueError("strategies need non-negative weights with a positive sum")
        return value


class AtmoRepConfig(Settings):
    """An AtmoRep experiment: fields on one grid cut into space-time tokens, masked and predicted
    as ensembles."""

    name: str = Field(default="atmorep", description="Name of the experiment, used in outputs.")
    data: DataConfig = Field(description="What data: sources, pairing, splits, transforms.")
    grid: Literal["hr", "lr"] = Field(
        default="hr", description="The grid every field is brought to."
    )
    fields: dict[str, FieldConfig] = Field(
        description="The model's fields by name; adding one is a config entry."
    )
    token: TokenConfig = Field(default=TokenConfig(), description="Grid points per token.")
    neighbourhood: NeighbourhoodConfig = Field(
        default=NeighbourhoodConfig(), description="Tokens per sample."
    )
    network: TransformerConfig = Field(default=TransformerConfig(), description="Transformer size.")
    ensemble: EnsembleConfig = Field(default=EnsembleConfig(), description="Ensemble tail.")
    masking: MaskingConfig = Field(default=MaskingConfig(), description="Training task.")
    train: TrainConfig = Field(
        default=TrainConfig(), description="How it is trained (patch_size unused)."
    )
    init_checkpoint: Path | None = Field(
        default=None,
        description="Start from this AtmoRep checkpoint (fine-tuning): weights of fields with the "
        "same name and shape are taken over, the rest start fresh (relative to the config).",
    )

    @model_validator(mode="after")
    def _fields_consistent(self) -> AtmoRepConfig:
        names = set(self.fields)
        if not any(f.predict for f in self.fields.values()):
            raise ValueError("fields: at least one field must have predict: true")
        for name, f in self.fields.items():
            unknown = sorted(set(f.partners or []) - names)
            if unknown:
                raise ValueError(
                    f"fields.{name}.partners: unknown fields {unknown}; fields are {sorted(names)}"
                )
            if name in (f.partners or []):
                raise ValueError(f"fields.{name}.partners: a field cannot be its own partner")
            if f.base is not None:
                base = self.fields.get(f.base)
                if base is None or base.predict:
                    raise ValueError(
                        f"fields.{name}.base: '{f.base}' must be an input field (predict: false)"
                    )
                if len(self.variables_of(f.base)) != len(self.variables_of(name)):
                    raise ValueError(f"fields.{name}.base: '{f.base}' has another number of levels")
            for other in f.detail:
                if other not in self.fields or self.fields[other].predict:
                    raise ValueError(
                        f"fields.{name}.detail: '{other}' must be an input field (predict: false)"
                    )
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

"""What data: sources, variables (names, units, accumulation), pairing, splits and transforms."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_core import core_schema

from finescale.config.settings import Settings

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
        description="Units to convert to (e.g. 'K', 'm s-1', 'mm h-1'); "
        "None keeps the file's units.",
    )
    source_units: str | None = Field(
        default=None,
        description="Units of the data in the file, used only when it has no 'units' attribute.",
    )
    accumulation: bool | Duration = Field(
        default=False,
        description="The file holds amounts accumulated over a period (ERA5 'tp' in m), divided "
        "by the period's length to give the rate asked for in 'units'. Give the period as a "
        "duration: '1h' (ERA5 hourly 'tp'), '6h', '30min', '3600s', '1d', '1 h' or ISO 8601 "
        "'PT1H' (a bare number is refused: it has no unit). 'true' infers the period from the "
        "time step, and is refused unless every time step is the same: amounts sampled less "
        "often than they are accumulated (hourly amounts every 6 h) need the period stated. "
        "'pairs check' shows the period used.",
    )
    level: float | None = Field(
        default=None, description="Select this value of the vertical coordinate."
    )

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

    path: Path = Field(
        description="File, Zarr folder or glob of NetCDF files; relative to the config file."
    )
    variables: dict[str, VariableSpec] = Field(
        description="finescale name -> variable in the file. A plain string is the file's name."
    )
    engine: Literal["auto", "netcdf", "zarr", "grib"] = Field(
        default="auto",
        description="Reader; 'auto' decides by suffix. 'grib' needs the "
        "optional extra finescale[grib].",
    )
    y: str | None = Field(
        default=None, description="Name of the south-north dimension (None: infer)."
    )
    x: str | None = Field(
        default=None, description="Name of the west-east dimension (None: infer)."
    )
    lat: str = Field(default="lat", description="Name of the latitude coordinate (1-D or 2-D).")
    lon: str = Field(default="lon", description="Name of the longitude coordinate (1-D or 2-D).")
    missing: Literal["error", "mask"] = Field(
        default="error",
        description="NaN and Inf in the mapped variables (decoded fill values included): 'error' "
        "refuses them, naming the file, variable and time; 'mask' treats them as missing values "
        "(left out of the statistics, the alignment check and the training loss; given to the "
        "models as the variable's mean).",
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
    level: str = Field(
        default="level", description="Name of the vertical coordinate, where there is one."
    )


class StaticConfig(FileConfig):
    """Time-independent HR fields (orography, land-sea mask, ...) on the HR grid."""


class SplitConfig(Settings):
    """Contiguous train / validation / test blocks in time order, with an optional gap
    between them."""

    train: float = Field(
        default=0.7, gt=0, lt=1, description="Fraction of the aligned times for training."
    )
    validation: float = Field(default=0.15, ge=0, lt=1, description="Fraction for validation.")
    test: float = Field(default=0.15, gt=0, lt=1, description="Fraction for testing.")
    gap_hours: float = Field(
        default=0.0,
        ge=0,
        description="Times dropped between blocks so that correlated neighbours do not leak.",
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
        default="none",
        description="'log1p': y = log(1 + x/scale), for non-negative "
        "skewed fields such as precipitation.",
    )
    scale: float = Field(
        default=1.0, gt=0, description="Scale of the log1p transform, in the variable's units."
    )
    zero_below: float = Field(
        default=0.0,
        ge=0,
        description="log1p only: values below this (variable's units) come back as exactly 0 from "
        "the inverse, so generated precipitation is dry where it would otherwise drizzle.",
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
        description="Smallest correlation between LR and HR coarsened to the LR "
        "grid before a pair is refused.",
    )
    tolerance_deg: float = Field(
        default=0.01,
        ge=0,
        description="Largest mismatch of grid edges and centres tolerated, in degrees.",
    )


class DataConfig(Settings):
    """The paired data: LR source, HR source, static HR fields, splits and transforms."""

    lr: SourceConfig = Field(description="The coarse source (e.g. ERA5, a GCM).")
    hr: SourceConfig = Field(description="The fine source (e.g. CERRA, an RCM): the target.")
    static: StaticConfig | None = Field(
        default=None, description="Static HR fields (orography, land-sea mask)."
    )
    splits: SplitConfig = Field(
        default=SplitConfig(), description="Train / validation / test blocks in time."
    )
    transforms: dict[str, TransformConfig] = Field(
        default_factory=dict,
        description="Per-variable transforms before normalisation; unlisted: none.",
    )
    alignment: AlignmentConfig = Field(
        default=AlignmentConfig(), description="When to refuse a pair."
    )

"""Typed, frozen settings for every stage, read from YAML with command-line overrides.

A config file is YAML whose top-level sections mirror the pipeline (``data``, later ``model``,
``train``, ...). Each section is a pydantic model with ``extra="forbid"``, so a misspelt key is
an error naming the key and the allowed ones. Relative paths are resolved against the folder of
the config file, so a config and its data can travel together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(ValueError):
    """A config that cannot be used; the message names the key and what is allowed."""


class Settings(BaseModel):
    """Base of every settings object: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------------
# data: what to read and how to pair it


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
    accumulation: bool = Field(
        default=False,
        description="The file holds amounts accumulated over each time step (ERA5 'tp' in m); "
        "they are divided by the step length to give a rate.",
    )
    level: float | None = Field(default=None, description="Select this value of the vertical coordinate.")


class _FileConfig(Settings):
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

    @field_validator("variables", mode="before")
    @classmethod
    def _strings_are_names(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: ({"name": v} if isinstance(v, str) else v) for k, v in value.items()}
        return value


class SourceConfig(_FileConfig):
    """An LR or HR source: a NetCDF file, a Zarr store or a GRIB file that xarray opens."""

    time: str = Field(default="time", description="Name of the time dimension.")
    level: str = Field(default="level", description="Name of the vertical coordinate, where there is one.")


class StaticConfig(_FileConfig):
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


class AlignmentConfig(Settings):
    """Thresholds for refusing LR/HR pairs that do not describe the same state."""

    require_integer_ratio: bool = Field(
        default=True, description="HR grid spacing must divide the LR spacing a whole number of times."
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


class ExperimentConfig(Settings):
    """A whole experiment; sections are added as the pipeline grows."""

    name: str = Field(default="experiment", description="Name of the experiment, used in outputs.")
    data: DataConfig = Field(description="What data: sources, pairing, splits, transforms.")


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


def _resolve_paths(value: Any, base: Path) -> Any:
    """Make every relative ``path`` entry absolute against ``base``."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k == "path" and isinstance(v, (str, Path)) and not Path(v).is_absolute():
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
    path: str | Path, overrides: list[str] | None = None, model: type[Settings] = ExperimentConfig
) -> Any:
    """Read a YAML config, apply ``--set`` overrides, resolve relative paths and validate.

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

"""Reading a config: YAML, command-line overrides, relative paths, and errors that name the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ValidationError,
)

from finescale.config.downscaling import ExperimentConfig
from finescale.config.settings import ConfigError, Settings


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
        current = first_model(annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def first_model(annotation: Any) -> Any:
    """The BaseModel inside an annotation such as ``X | None`` or ``dict[str, X]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = first_model(arg)
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


def validate(
    tree: dict[str, Any], model: type[Settings] = ExperimentConfig, *, source: str = "config"
) -> Any:
    """Validate a raw tree into ``model``, turning pydantic's errors into one readable
    ConfigError."""
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
            raise ConfigError(
                f"{path}: has its own '{key}' section; leave it out or do not pass another"
            )
        tree[key] = section
    tree = apply_overrides(tree, list(overrides or []))
    tree = _resolve_paths(tree, path.parent.resolve())
    return validate(tree, model, source=str(path))

"""Typed, frozen settings for every stage, read from YAML with command-line overrides.

A config file is YAML whose top-level sections mirror the pipeline (``data``, later ``model``,
``train``, ...). Each section is a pydantic model with ``extra="forbid"``, so a misspelt key is
an error naming the key and the allowed ones. Relative paths are resolved against the folder of
the config file, so a config and its data can travel together.

One module per concern: ``settings`` (the base model and ConfigError), ``data`` (what data),
``downscaling`` (model, training, sampling), ``distill`` (consistency students) and ``load``
(YAML, overrides, paths); AtmoRep's settings live with AtmoRep
(``finescale.atmorep.settings``), on top of these.
The network's and EDM's sections are the settings classes of the code that uses them
(``finescale.nn.settings.UNetArchitecture``, ``finescale.diffusion.settings.EDMSettings``:
torch-free), embedded. Every public name is importable from ``finescale.config``.
"""

from finescale.config.data import (
    AlignmentConfig,
    DataConfig,
    Duration,
    FileConfig,
    SourceConfig,
    SplitConfig,
    StaticConfig,
    TransformConfig,
    VariableSpec,
    duration_seconds,
    duration_text,
)
from finescale.config.distill import DistillConfig
from finescale.config.downscaling import (
    ConditioningConfig,
    ExperimentConfig,
    ModelConfig,
    SampleConfig,
    TrainConfig,
    UpslopeConfig,
)
from finescale.config.load import (
    INPUT_PATH_KEYS,
    apply_overrides,
    load_config,
    validate,
)
from finescale.config.settings import (
    ConfigError,
    Settings,
)
from finescale.diffusion.settings import EDMSettings
from finescale.nn.settings import UNetArchitecture

__all__ = [
    "INPUT_PATH_KEYS",
    "AlignmentConfig",
    "ConditioningConfig",
    "ConfigError",
    "DataConfig",
    "DistillConfig",
    "Duration",
    "EDMSettings",
    "ExperimentConfig",
    "FileConfig",
    "ModelConfig",
    "SampleConfig",
    "Settings",
    "SourceConfig",
    "SplitConfig",
    "StaticConfig",
    "TrainConfig",
    "TransformConfig",
    "UNetArchitecture",
    "UpslopeConfig",
    "VariableSpec",
    "apply_overrides",
    "duration_seconds",
    "duration_text",
    "load_config",
    "validate",
]

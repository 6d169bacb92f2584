"""Config loading: YAML, overrides, and errors that name the key and the allowed values."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from finescale.config import ConfigError, DataConfig, ExperimentConfig, load_config

BASE = """
name: t
data:
  lr: {path: lr.zarr, variables: {t2m: t2m}}
  hr: {path: hr.zarr, variables: {t2m: {name: T_2M, units: K}}}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_loads_and_resolves_relative_paths(tmp_path):
    cfg = load_config(_write(tmp_path, BASE))
    assert isinstance(cfg, ExperimentConfig)
    assert cfg.data.lr.path == (tmp_path / "lr.zarr").resolve()
    assert cfg.data.hr.variables["t2m"].name == "T_2M"
    assert cfg.data.lr.variables["t2m"].name == "t2m"


def test_override_sets_typed_value(tmp_path):
    cfg = load_config(_write(tmp_path, BASE), ["data.splits.gap_hours=24", "data.splits.train=0.6",
                                               "data.splits.validation=0.25"])
    assert cfg.data.splits.gap_hours == 24.0
    assert cfg.data.splits.train == 0.6


def test_unknown_key_names_key_and_allowed(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, BASE), ["data.splits.tarin=0.5"])
    msg = str(err.value)
    assert "data.splits.tarin" in msg
    assert "train" in msg and "validation" in msg and "gap_hours" in msg


def test_wrong_type_and_literal_name_allowed_values(tmp_path):
    with pytest.raises(ConfigError, match="data.splits.gap_hours"):
        load_config(_write(tmp_path, BASE), ["data.splits.gap_hours=lots"])
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, BASE), ["data.lr.engine=hdf"])
    assert "data.lr.engine" in str(err.value) and "'zarr'" in str(err.value)


def test_fractions_must_sum_to_one(tmp_path):
    with pytest.raises(ConfigError, match="must be 1"):
        load_config(_write(tmp_path, BASE), ["data.splits.train=0.9"])


def test_settings_are_frozen(tmp_path):
    cfg = load_config(_write(tmp_path, BASE))
    with pytest.raises(ValidationError):
        cfg.data.splits.train = 0.5  # type: ignore[misc]
    assert isinstance(cfg.data, DataConfig)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_write(tmp_path, "data: [unclosed"))
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(_write(tmp_path, BASE), ["novalue"])

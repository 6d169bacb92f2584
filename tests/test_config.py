"""Config loading: YAML, overrides, and errors that name the key and the allowed values."""

import os
import re
import subprocess
import sys
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
    cfg = load_config(
        _write(tmp_path, BASE),
        ["data.splits.gap_hours=24", "data.splits.train=0.6", "data.splits.validation=0.25"],
    )
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


def test_importing_the_config_imports_no_torch():
    """The network's and EDM's sections live beside their code (nn, diffusion), torch-free:
    reading a config must not pay for importing torch."""
    code = (
        "import sys, finescale.config; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.stdout.strip() == "[]"


def test_network_and_edm_sections_are_the_code_s_settings(tmp_path):
    """model.network and model.edm are the settings classes the UNet and EDM are built from, with
    the keys and defaults configs (and checkpoints) have always had."""
    from finescale.diffusion import edm
    from finescale.nn.settings import UNetArchitecture, UNetSettings

    model = load_config(_write(tmp_path, BASE)).model
    assert type(model.network) is UNetArchitecture and type(model.edm) is edm.EDMSettings
    assert model.network.model_dump() == {
        "base_width": 32,
        "channel_mult": (1, 2, 2),
        "blocks_per_level": 1,
        "attention_levels": (),
        "attention_heads": 4,
        "dropout": 0.0,
    }
    assert model.edm.model_dump() == {"sigma_data": 1.0, "P_mean": -1.2, "P_std": 1.2}
    # a UNet's settings are this section plus its wiring: no field of its own repeats one
    wired = UNetSettings(
        in_channels=1, cond_channels=2, out_channels=1, **model.network.model_dump()
    )
    assert (
        wired.model_dump(include=set(UNetArchitecture.model_fields)) == model.network.model_dump()
    )
    # a section as a checkpoint stores it (model_dump in JSON mode) reads back to the same settings
    stored = ExperimentConfig.model_validate(
        load_config(
            _write(tmp_path, BASE),
            [
                "model.network.attention_levels=[1]",
                "model.network.blocks_per_level=2",
                "model.edm.P_mean=0",
            ],
        ).model_dump(mode="json")
    )
    assert (
        stored.model.network.attention_levels == (1,) and stored.model.network.blocks_per_level == 2
    )
    assert stored.model.edm == edm.EDMSettings(P_mean=0.0)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.network.attention_levels=[3]", "attention_levels [3] must lie in 0..2"),
        (
            "model.network.attention_heads=3 model.network.attention_levels=[0]",
            "attention_heads=3 does not divide the width 32",
        ),
        ("model.network.channel_mult=[]", "model.network.channel_mult"),
        ("model.network.in_channels=3", "unknown key 'model.network.in_channels'"),
        ("model.edm.P_std=0", "'model.edm.P_std': Input should be greater than 0"),
        ("model.edm.sigma_data=-1", "'model.edm.sigma_data': Input should be greater than 0"),
        (
            "model.edm.p_mean=0",
            "unknown key 'model.edm.p_mean'; allowed keys: P_mean, P_std, sigma_data",
        ),
    ],
)
def test_bad_network_and_edm_settings_are_named(tmp_path, override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(_write(tmp_path, BASE), override.split())

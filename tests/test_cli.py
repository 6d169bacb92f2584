"""The command line: help with examples on every verb, the world/oracle/pairs verbs, clear
errors."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from finescale.cli import app

runner = CliRunner()


def _verbs() -> list[list[str]]:
    import typer.main

    group = typer.main.get_command(app)
    verbs = []
    for name, command in group.commands.items():
        sub = getattr(command, "commands", None)
        verbs += [[name, s] for s in sub] if sub else [[name]]
    return verbs


@pytest.mark.parametrize("verb", _verbs(), ids=" ".join)
def test_every_verb_has_help_with_examples(verb):
    result = runner.invoke(app, [*verb, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output
    assert "finescale " + " ".join(verb) in result.output


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "world"
    result = runner.invoke(
        app, ["world", "--preset", "alps-small", "--out", str(out), "--days", "6", "--seed", "5"]
    )
    assert result.exit_code == 0, result.output
    return out


def test_world_writes_the_stores(world_dir):
    hr = xr.open_zarr(world_dir / "hr.zarr")
    assert hr.sizes["time"] == 144 and set(hr.data_vars) == {"t2m", "u10", "v10", "tp"}
    assert (world_dir / "lr.zarr").is_dir() and (world_dir / "static.zarr").is_dir()


def test_world_overrides_are_validated(tmp_path):
    result = runner.invoke(
        app, ["world", "--out", str(tmp_path / "w"), "--days", "0.1", "--set", "cell_rat=1"]
    )
    assert result.exit_code == 2
    assert "cell_rat" in result.output and "cell_rate" in result.output
    assert not (tmp_path / "w" / "hr.zarr").exists()


def test_world_with_a_bad_orography_file(tmp_path):
    bad = tmp_path / "dem.npz"
    np.savez(bad, height=np.zeros((4, 4)))
    result = runner.invoke(
        app, ["world", "--out", str(tmp_path / "w"), "--days", "0.1", "--orography", str(bad)]
    )
    assert result.exit_code == 2
    assert "dem.npz" in result.output and "elevation" in result.output


def test_oracle_command(world_dir, tmp_path):
    out = tmp_path / "oracle.zarr"
    result = runner.invoke(
        app, ["oracle", "--world", str(world_dir), "--members", "3", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    ens = xr.open_zarr(out)
    assert ens.sizes["member"] == 3 and ens.t2m.dims == ("member", "time", "y", "x")
    assert 0 < ens.sizes["time"] < 144 // 4  # the test block only
    result = runner.invoke(
        app, ["oracle", "--world", str(world_dir), "--out", str(out), "--split", "spring"]
    )
    assert result.exit_code == 2 and "spring" in result.output and "test" in result.output


def test_oracle_needs_a_finished_world(tmp_path):
    result = runner.invoke(
        app, ["oracle", "--world", str(tmp_path), "--out", str(tmp_path / "o.zarr")]
    )
    assert result.exit_code == 2 and "finescale world" in result.output


def test_pairs_check_accepts_the_world(world_dir):
    result = runner.invoke(app, ["pairs", "check", "--config", str(world_dir / "finescale.yaml")])
    assert result.exit_code == 0, result.output
    assert "pair accepted" in result.output and "t2m" in result.output


def test_pairs_check_reports_config_errors(world_dir):
    result = runner.invoke(
        app,
        [
            "pairs",
            "check",
            "--config",
            str(world_dir / "finescale.yaml"),
            "--set",
            "data.alignment.min_corr=0.9",
        ],
    )
    assert result.exit_code == 2
    assert "data.alignment.min_corr" in result.output and "min_correlation" in result.output

"""Accumulated amounts: the period is stated in the config or inferred from a regular time step,
never guessed from an irregular one, and ``pairs check`` shows which it was."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_pairs import T0, make_pair, write
from typer.testing import CliRunner

from finescale.cli import app
from finescale.config import ConfigError, DataConfig, duration_seconds, load_config
from finescale.data.errors import PairError
from finescale.data.pairs import open_pair
from finescale.data.sources import open_source

runner = CliRunner()


def times_every(hours: list[float]) -> np.ndarray:
    """Times at T0 + the cumulative sums of ``hours`` (the first at T0)."""
    offsets = np.concatenate([[0.0], np.cumsum(hours)]) * 3600
    return T0 + offsets.astype("int64") * np.timedelta64(1, "s")


def tp_config(path: Path, accumulation) -> DataConfig:
    spec = {"tp": {"name": "tp", "units": "mm h-1", "accumulation": accumulation}}
    source = {"path": str(path), "variables": spec}
    return DataConfig.model_validate({"lr": source, "hr": source})


def amounts(tmp_path: Path, steps_hours: list[float], name: str = "tp.nc"):
    """A file of tp in m (hourly amounts) at times separated by ``steps_hours``; the dataset."""
    lr, _ = make_pair(nt=len(steps_hours) + 1)
    lr = lr.assign_coords(time=times_every(steps_hours))
    return write(lr, tmp_path / name), lr


# --------------------------------------------------------------------------------------------
# the period: stated, inferred, refused


def test_stated_period_gives_exact_rates_on_an_irregular_axis(tmp_path):
    # the user's file: hourly amounts sampled every 7-8 h
    path, lr = amounts(tmp_path, [7, 8, 7, 8, 7])
    ds = open_source(tp_config(path, "1h").lr)
    # m accumulated over 1 h -> mm h-1 is x 1000 exactly, whatever the sampling
    np.testing.assert_array_equal(ds["tp"].values, lr["tp"].values * np.float32(1000))
    assert ds["tp"].attrs["units"] == "mm h-1"
    assert ds["tp"].attrs["accumulation_period"] == "1 h"
    assert ds["tp"].attrs["accumulation_period_source"] == "stated"
    assert ds["tp"].attrs["source_units"] == "m"


def test_stated_period_is_used_even_where_the_step_differs(tmp_path):
    path, lr = amounts(tmp_path, [6, 6, 6])
    six_hourly = open_source(tp_config(path, "6h").lr)["tp"].values
    hourly = open_source(tp_config(path, "PT1H").lr)["tp"].values
    np.testing.assert_allclose(hourly, lr["tp"].values * 1000.0, rtol=1e-6)
    np.testing.assert_allclose(six_hourly, hourly / 6, rtol=1e-6)


def test_irregular_axis_with_true_is_refused(tmp_path):
    path, _ = amounts(tmp_path, [7, 8, 7, 8, 7], name="sparse.nc")
    with pytest.raises(PairError) as info:
        open_source(tp_config(path, True).lr)
    message = str(info.value)
    for part in ("sparse.nc", "variable 'tp'", "steps of 7 h and 8 h", "accumulation: 1h"):
        assert part in message


def test_regular_axis_with_true_is_inferred(tmp_path):
    path, lr = amounts(tmp_path, [3, 3, 3, 3])
    ds = open_source(tp_config(path, True).lr)
    np.testing.assert_allclose(ds["tp"].values, lr["tp"].values * 1000.0 / 3, rtol=1e-6)
    assert ds["tp"].attrs["accumulation_period"] == "3 h"
    assert ds["tp"].attrs["accumulation_period_source"] == "inferred from the time step"


def test_single_time_with_true_is_refused_stated_is_not(tmp_path):
    path, lr = amounts(tmp_path, [])
    with pytest.raises(PairError, match="variable 'tp' is accumulated but the file has a single"):
        open_source(tp_config(path, True).lr)
    one = open_source(tp_config(path, "1h").lr)["tp"].values
    np.testing.assert_array_equal(one, lr["tp"].values * np.float32(1000))


def test_amount_to_rate_without_a_period_says_how_to_state_it(tmp_path):
    path, _ = amounts(tmp_path, [1, 1])
    with pytest.raises(ValueError, match=r"tp.nc: variable 'tp'.*'m'.*'mm h-1'.*accumulation: 1h"):
        open_source(tp_config(path, False).lr)


def test_rate_in_the_file_is_kept_and_reported_as_not_accumulated(tmp_path):
    lr, _ = make_pair(nt=3)
    lr["tp"] = (lr["tp"] * 1000).assign_attrs(units="mm h-1")
    path = write(lr.assign_coords(time=times_every([7, 8])), tmp_path / "rate.nc")
    da = open_source(tp_config(path, True).lr)["tp"]  # irregular, but no period is needed
    np.testing.assert_array_equal(da.values, lr["tp"].values)
    assert da.attrs["accumulation_period"] == "not applied"
    assert "already a rate" in da.attrs["accumulation_period_source"]


# --------------------------------------------------------------------------------------------
# the config


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1h", 3600),
        ("6h", 21600),
        ("30min", 1800),
        ("3600s", 3600),
        ("1d", 86400),
        ("1 h", 3600),
        ("PT1H", 3600),
        ("PT1H30M", 5400),
        ("1.5 hours", 5400),
    ],
)
def test_durations(text, seconds):
    assert duration_seconds(text) == seconds
    spec = tp_config(Path("x.nc"), text).lr.variables["tp"]
    assert spec.accumulation == seconds
    # a dumped config reads back the same (checkpoints and stage configs are dumped)
    again = DataConfig.model_validate(tp_config(Path("x.nc"), text).model_dump(mode="json"))
    assert again.lr.variables["tp"].accumulation == seconds


def test_true_and_false_stay_flags():
    assert tp_config(Path("x.nc"), True).lr.variables["tp"].accumulation is True
    assert tp_config(Path("x.nc"), False).lr.variables["tp"].accumulation is False
    assert (
        tp_config(Path("x.nc"), True).model_dump(mode="json")["lr"]["variables"]["tp"][
            "accumulation"
        ]
        is True
    )


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("7 hours ago", "is not a duration"),
        ("1 fortnight", "is not a duration"),
        ("PT", "is not a duration"),
        ("0h", "longer than 0"),
        (3600, "a bare number has no unit"),
    ],
)
def test_bad_duration_is_a_config_error_naming_the_key(tmp_path, value, says):
    config = tmp_path / "finescale.yaml"
    spec = {"tp": {"name": "tp", "units": "mm h-1", "accumulation": value}}
    source = {"path": "tp.nc", "variables": spec}
    config.write_text(yaml.safe_dump({"data": {"lr": source, "hr": source}}))
    with pytest.raises(ConfigError) as info:
        load_config(config)
    message = str(info.value)
    assert "finescale.yaml" in message and "data.lr.variables.tp.accumulation" in message
    assert says in message
    if says != "longer than 0":
        assert "1h" in message  # an example of what is accepted


# --------------------------------------------------------------------------------------------
# pairs check shows the period and the conversions


def test_pairs_check_prints_periods_and_conversions(small_pair, tmp_path):
    folder = tmp_path / "pair"
    shutil.copytree(small_pair, folder)
    tree = yaml.safe_load((folder / "finescale.yaml").read_text())
    # new dicts: the file's LR and HR variables are one YAML anchor
    for source, accumulation in (("lr", "1h"), ("hr", True)):
        tp = {"name": "tp", "units": "mm h-1", "accumulation": accumulation}
        tree["data"][source]["variables"] = {**tree["data"][source]["variables"], "tp": tp}
    (folder / "finescale.yaml").write_text(yaml.safe_dump(tree, sort_keys=False))
    result = runner.invoke(
        app, ["pairs", "check", "--config", str(folder / "finescale.yaml")], env={"COLUMNS": "80"}
    )
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if "tp" in line and "->" in line]
    assert len(rows) == 2, result.output
    lr_row, hr_row = rows
    assert "LR" in lr_row and "m -> mm h-1" in lr_row and "1 h (stated)" in lr_row
    assert "HR" in hr_row and "m -> mm h-1" in hr_row and "1 h (inferred)" in hr_row
    assert "inferred from the (regular) time step" in " ".join(result.output.split())
    assert max(len(line) for line in result.output.splitlines()) <= 80

    # the same pair through the API: the attrs are where the report reads them
    pair = open_pair(load_config(folder / "finescale.yaml").data)
    assert pair.lr["tp"].attrs["accumulation_period_source"] == "stated"
    assert pair.hr["tp"].attrs["accumulation_period_source"] == "inferred from the time step"

"""Outputs written block by block: resuming after a crash, sharing between processes, up-front
checks."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import xarray as xr

from finescale.io.blocks import Block, EnsembleSpec, block_seed, ensemble_blocks, process_share
from finescale.io.checks import LowSpaceWarning, OutputError, check_free_space, check_writable
from finescale.io.partial import PartialEnsemble, fill_ensemble

MEMBERS, TIMES, CHUNK = 4, 10, 4


def _spec(**attrs: str) -> EnsembleSpec:
    lat, lon = np.meshgrid(np.linspace(45.0, 46.0, 3), np.linspace(6.0, 8.0, 5), indexing="ij")
    times = np.arange("2021-03-01T00", "2021-03-01T10", dtype="datetime64[h]")
    return EnsembleSpec(
        {"t2m": {"units": "K"}, "tp": {"units": "mm h-1"}},
        MEMBERS,
        times,
        lat,
        lon,
        CHUNK,
        {"title": "test", **attrs},
    )


def _blocks() -> list[Block]:
    return ensemble_blocks(
        [slice(0, 2), slice(2, 4)], TIMES, CHUNK
    )  # 3 time blocks x 2 member groups


class Draws:
    """A draw function seeded by block, which records the blocks it drew and can fail at one."""

    def __init__(self, fail_at: int | None = None):
        self.drawn: list[int] = []
        self.fail_at = fail_at

    def __call__(self, block: Block) -> dict[str, np.ndarray]:
        if block.index == self.fail_at:
            raise RuntimeError("killed")
        self.drawn.append(block.index)
        rng = np.random.default_rng(block_seed(0, block.members.start, block.times.start))
        shape = (
            block.members.stop - block.members.start,
            block.times.stop - block.times.start,
            3,
            5,
        )
        return {
            "t2m": rng.normal(280, 5, shape).astype(np.float32),
            "tp": rng.gamma(1, 1, shape).astype(np.float32),
        }


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "reference.zarr"
    filled = fill_ensemble(out, _spec(), _blocks(), Draws())
    assert filled.complete and filled.path == out and filled.written == 6
    return xr.open_zarr(out).load()


def test_blocks_cover_every_member_and_time_once_in_whole_chunks():
    counts = np.zeros((MEMBERS, TIMES), int)
    for i, block in enumerate(_blocks()):
        assert block.index == i and block.times.start % CHUNK == 0
        counts[block.members, block.times] += 1
    assert (counts == 1).all()


def test_a_crashed_run_resumes_with_only_the_missing_blocks(tmp_path, reference):
    out = tmp_path / "ens.zarr"
    with pytest.raises(RuntimeError, match="killed"):
        fill_ensemble(out, _spec(), _blocks(), Draws(fail_at=3))
    partial = tmp_path / ".ens.zarr.partial"
    assert not out.exists() and sorted(os.listdir(partial / "done")) == ["0", "1", "2"]
    draws, notes = Draws(), []
    filled = fill_ensemble(out, _spec(), _blocks(), draws, note=notes.append)
    assert draws.drawn == [3, 4, 5]  # only what was missing
    assert (filled.complete, filled.resumed, filled.written) == (True, 3, 3)
    assert "3 of 6 blocks already written" in notes[0]
    assert not partial.exists()
    xr.testing.assert_identical(
        xr.open_zarr(out).load(), reference
    )  # values, coordinates and attributes


def test_a_block_is_marked_done_only_once_written(tmp_path):
    def half_broken(block: Block) -> dict[str, np.ndarray]:
        data = Draws()(block)
        if block.index == 1:
            data["tp"] = data["tp"][:, :1]  # the wrong shape: writing it fails
        return data

    with pytest.raises(ValueError):
        fill_ensemble(tmp_path / "ens.zarr", _spec(), _blocks(), half_broken)
    assert os.listdir(tmp_path / ".ens.zarr.partial" / "done") == ["0"]


def test_a_partial_output_of_other_settings_is_refused(tmp_path):
    out = tmp_path / "ens.zarr"
    with pytest.raises(RuntimeError):
        fill_ensemble(out, _spec(sampler="heun"), _blocks(), Draws(fail_at=2))
    with pytest.raises(
        ValueError,
        match=r"\.ens\.zarr\.partial: a partial output of another request .*attrs\.sampler",
    ):
        fill_ensemble(out, _spec(sampler="euler"), _blocks(), Draws())
    other_times = ensemble_blocks([slice(0, 4)], TIMES, CHUNK)
    with pytest.raises(ValueError, match="blocks"):
        fill_ensemble(out, _spec(sampler="heun"), other_times, Draws())


def test_two_processes_share_the_blocks_and_the_last_one_renames(tmp_path, reference):
    out = tmp_path / "ens.zarr"
    first, second = Draws(), Draws()
    filled = fill_ensemble(out, _spec(), _blocks(), first, rank=1, world_size=2)
    assert (
        not filled.complete and filled.path == tmp_path / ".ens.zarr.partial" and not out.exists()
    )
    filled = fill_ensemble(out, _spec(), _blocks(), second, rank=0, world_size=2)
    assert filled.complete and filled.path == out
    assert (first.drawn, second.drawn) == ([1, 3, 5], [0, 2, 4])
    xr.testing.assert_identical(xr.open_zarr(out).load(), reference)
    assert sorted(os.listdir(tmp_path)) == ["ens.zarr"]


def test_a_rank_without_blocks_writes_nothing(tmp_path):
    filled = fill_ensemble(tmp_path / "ens.zarr", _spec(), _blocks(), Draws(), rank=7, world_size=8)
    assert not filled.complete and os.listdir(tmp_path) == []


def test_a_completed_output_replaces_an_older_one(tmp_path, reference):
    out = tmp_path / "ens.zarr"
    out.mkdir()
    (out / "stale").write_text("old")
    fill_ensemble(out, _spec(), _blocks(), Draws())
    assert not (out / "stale").exists()
    xr.testing.assert_identical(xr.open_zarr(out).load(), reference)


def test_a_process_killed_between_the_final_renames_is_completed_by_the_rerun(tmp_path, reference):
    out = tmp_path / "ens.zarr"
    with pytest.raises(RuntimeError):
        fill_ensemble(out, _spec(), _blocks(), Draws(fail_at=5))
    partial = PartialEnsemble(out)
    partial.write(_blocks()[5], Draws()(_blocks()[5]))
    os.rename(
        partial.store.path, partial.folder / "final.zarr"
    )  # claimed for the rename to out, then killed
    draws = Draws()
    assert fill_ensemble(out, _spec(), _blocks(), draws).complete and draws.drawn == []
    xr.testing.assert_identical(xr.open_zarr(out).load(), reference)
    assert not partial.folder.exists()


def test_request_file_is_plain_json(tmp_path):
    with pytest.raises(RuntimeError):
        fill_ensemble(tmp_path / "ens.zarr", _spec(), _blocks(), Draws(fail_at=0))
    request = json.loads((tmp_path / ".ens.zarr.partial" / "request.json").read_text())
    assert (
        request["members"] == MEMBERS
        and request["times"]["count"] == TIMES
        and request["blocks"]["count"] == 6
    )


def test_block_seeds_depend_on_every_key_only():
    assert block_seed(0, 2, 3600) == block_seed(0, 2, 3600)
    assert (
        len(
            {
                block_seed(0, 2, 3600),
                block_seed(1, 2, 3600),
                block_seed(0, 3, 3600),
                block_seed(0, 2, 0),
            }
        )
        == 4
    )
    assert 0 <= block_seed(-1, -7200) < 2**63  # negative seeds and times before 1970 are fine


def _can_write(folder) -> bool:
    try:
        (folder / "probe").write_text("")
    except OSError:
        return False
    (folder / "probe").unlink()
    return True


def test_an_unwritable_folder_is_named(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if _can_write(locked):
            pytest.skip("permissions do not stop this user (root)")
        with pytest.raises(OutputError, match=f"{locked / 'runs'}: cannot write here"):
            check_writable(locked / "runs")
    finally:
        locked.chmod(0o700)
    assert os.listdir(locked) == []


def test_a_file_in_the_way_is_named(tmp_path):
    blocker = tmp_path / "runs"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match=f"{blocker / 'out'}: cannot write here"):
        check_writable(blocker / "out")


def test_a_missing_folder_under_a_writable_one_is_fine_and_not_created(tmp_path):
    assert check_writable(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert os.listdir(tmp_path) == []


def test_free_space_refuses_below_a_tenth_and_warns_below_the_size(tmp_path, monkeypatch):
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=1_000))
    check_free_space(tmp_path, 1_000)
    with pytest.warns(LowSpaceWarning, match="fits only if it compresses"):
        check_free_space(tmp_path, 9_000)
    with pytest.raises(OutputError, match=f"{tmp_path}: .* GB free .*does not fit even compressed"):
        check_free_space(tmp_path, 11_000)


def test_a_full_disk_is_refused_before_the_first_block(tmp_path, monkeypatch):
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=10))
    draws = Draws()
    with pytest.raises(OutputError, match="does not fit"):
        fill_ensemble(tmp_path / "ens.zarr", _spec(), _blocks(), draws)
    assert draws.drawn == [] and os.listdir(tmp_path) == []


def test_process_share_takes_options_over_torchrun_variables(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert process_share() == (0, 1)
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert process_share() == (2, 4)
    assert process_share(rank=1) == (1, 4) and process_share(0, 1) == (0, 1)
    with pytest.raises(ValueError, match="rank 4 with 4 processes"):
        process_share(rank=4)
    monkeypatch.setenv("WORLD_SIZE", "four")
    with pytest.raises(ValueError, match="WORLD_SIZE='four'"):
        process_share()

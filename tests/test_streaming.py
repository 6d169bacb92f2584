"""Training data streamed from disk: a sample reads its own window and the LR cells around it,
DataLoader workers open the files themselves, and (slow) a dataset several times larger than
the memory training takes trains."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import dask.array
import numpy as np
import psutil
import pytest
import torch
import xarray as xr
import yaml
from zarr.storage import LocalStore

from finescale.config import DataConfig, ModelConfig, load_config
from finescale.data.channels import Upslope, make_layout
from finescale.data.lr_to_hr import LRToHR
from finescale.data.normalisation import compute_stats
from finescale.data.pairs import open_pair, split_times
from finescale.data.patches import PatchDataset, lazy_fields, load_fields
from finescale.data.windows import BlockCache, Sources, open_sources
from finescale.io.atomic import ZARR_FORMAT

START = np.datetime64("2021-01-01T00", "ns")


def _random(shape: tuple[int, ...], chunks: tuple[int, ...], seed: int) -> dask.array.Array:
    """Standard normal float32 values made block by block (nothing whole in memory): random data
    do not compress, so the store on disk is as large as the array."""

    def block(block_info: dict | None = None) -> np.ndarray:
        info = block_info[None]  # type: ignore[index]
        rng = np.random.default_rng([seed, *(start for start, _ in info["array-location"])])
        return rng.standard_normal(info["chunk-shape"], dtype=np.float32)

    return dask.array.map_blocks(
        block, chunks=dask.array.core.normalize_chunks(chunks, shape), dtype=np.float32
    )


def write_pair(
    root: Path, hours: int, hr_shape: tuple[int, int], ratio: int, hr_chunks: tuple[int, int, int]
) -> Path:
    """LR (z500), HR (t2m) and static (orog) Zarr stores of random values on nested regular grids,
    written chunk by chunk, and a config naming them; returns the config's path.

    LR and HR share no variable, so the pairing check compares no data (random fields would not
    correlate)."""
    (ny, nx), step = hr_shape, 0.01
    times = START + np.arange(hours).astype("timedelta64[h]")

    def grid(n: int, spacing: float, origin: float) -> np.ndarray:
        return origin + (np.arange(n) + 0.5) * spacing

    hr_coords = {"time": times, "lat": grid(ny, step, 40.0), "lon": grid(nx, step, 5.0)}
    lr_coords = {
        "time": times,
        "lat": grid(ny // ratio, step * ratio, 40.0),
        "lon": grid(nx // ratio, step * ratio, 5.0),
    }
    hr = xr.Dataset(
        {"t2m": (("time", "lat", "lon"), _random((hours, ny, nx), hr_chunks, 1))}, coords=hr_coords
    )
    lr_shape = (hours, ny // ratio, nx // ratio)
    lr = xr.Dataset(
        {"z500": (("time", "lat", "lon"), _random(lr_shape, (24, *lr_shape[1:]), 2))},
        coords=lr_coords,
    )
    static = xr.Dataset(
        {"orog": (("lat", "lon"), _random(hr_shape, hr_shape, 3))},
        coords={"lat": hr_coords["lat"], "lon": hr_coords["lon"]},
    )
    hr.to_zarr(root / "hr.zarr", mode="w", encoding={"t2m": {"chunks": hr_chunks}}, **ZARR_FORMAT)
    lr.to_zarr(root / "lr.zarr", mode="w", **ZARR_FORMAT)
    static.to_zarr(root / "static.zarr", mode="w", **ZARR_FORMAT)
    config = {
        "data": {
            "lr": {"path": "lr.zarr", "variables": {"z500": "z500"}},
            "hr": {"path": "hr.zarr", "variables": {"t2m": "t2m"}},
            "static": {"path": "static.zarr", "variables": {"orog": "orog"}},
            "splits": {"train": 0.8, "validation": 0.1, "test": 0.1, "gap_hours": 0},
        }
    }
    (root / "finescale.yaml").write_text(yaml.safe_dump(config))
    return root / "finescale.yaml"


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """48 hours of a 40 x 48 HR grid in chunks of 2 hours x 8 x 8 points (LR 10 x 12)."""
    return write_pair(tmp_path_factory.mktemp("small"), 48, (40, 48), 4, (2, 8, 8))


def _setup(config: Path, interpolation: str = "bilinear"):
    data = load_config(config).data
    pair = open_pair(data)
    train = split_times(pair.hr.time.values, data.splits)["train"]
    stats = compute_stats(pair.hr, lr=pair.lr, static=pair.static, times=train)
    layout = make_layout(ModelConfig(), pair.lr, pair.hr, pair.static)
    to_hr = LRToHR(pair.lr.lat, pair.lr.lon, pair.hr.lat, pair.hr.lon, interpolation)
    return data, pair, train, stats, layout, to_hr


def _lazy(data: DataConfig, pair, train, stats, layout, budget: int, opener=None):
    sources = Sources(opener or partial(open_sources, data), opened={"lr": pair.lr, "hr": pair.hr})
    return lazy_fields(
        layout, stats, sources, pair.static, pair.hr.lat, pair.hr.lon, train, BlockCache(budget)
    )


@pytest.mark.parametrize("periodic", [False, True])
@pytest.mark.parametrize("method", ["bilinear", "bicubic"])
def test_the_lr_cells_of_a_window_interpolate_as_the_whole_field(method, periodic):
    lat, lon = np.meshgrid(np.linspace(-50, 50, 11), np.arange(0.0, 360.0, 20.0), indexing="ij")
    hr_lat, hr_lon = np.meshgrid(
        np.linspace(-52, 52, 60), np.arange(-5.0, 355.0, 4.0), indexing="ij"
    )
    grids = [xr.DataArray(a, dims=("y", "x")) for a in (lat, lon, hr_lat, hr_lon)]
    to_hr = LRToHR(*grids, method=method, periodic_lon=periodic)
    lr = torch.from_numpy(
        np.random.default_rng(0).standard_normal((2, 3, *lat.shape)).astype(np.float32)
    )
    for window in [(0, 0, 16, 16), (20, 37, 24, 16), (44, 74, 16, 16), (0, 0, 60, 90)]:
        rows, cols = to_hr.lr_box(window)
        if window[2] < 60:  # a small window needs a few LR cells, not the grid
            assert rows.stop - rows.start < lat.shape[0]
        whole = to_hr(lr)[..., window[0] : window[0] + window[2], window[1] : window[1] + window[3]]
        torch.testing.assert_close(
            to_hr(lr[..., rows, cols], window, (rows, cols)), whole, atol=1e-5, rtol=0
        )


@pytest.mark.parametrize("budget", [2**24, 0], ids=["cached chunks", "no cache"])
def test_streamed_patches_equal_patches_from_memory(small, budget):
    data, pair, train, stats, layout, to_hr = _setup(small, "bicubic")
    # with the whole LR domain's means and the upslope wind as channels too, computed once from
    # the lazy sources (the first LR variable stands in for both wind components)
    u = layout.lr_variables[0]
    layout = replace(layout, domain_means=(u,), upslope=Upslope(u, u, layout.static_variables[0]))
    lazy = _lazy(data, pair, train, stats, layout, budget)
    held = load_fields(
        layout, stats, pair.lr, pair.static, pair.hr.lat, pair.hr.lon, hr=pair.hr, times=train
    )
    streamed, in_memory = (PatchDataset(f, layout, to_hr, 16, 12, seed=5) for f in (lazy, held))
    for i in range(12):
        a, b = streamed[i], in_memory[i]
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=0)
    # the same sample twice, and another seed draws other windows
    torch.testing.assert_close(
        streamed[3]["target"], PatchDataset(lazy, layout, to_hr, 16, 12, seed=5)[3]["target"]
    )
    assert not torch.equal(
        streamed[3]["target"], PatchDataset(lazy, layout, to_hr, 16, 12, seed=6)[3]["target"]
    )


@pytest.fixture
def chunk_reads(monkeypatch) -> list[str]:
    """The Zarr chunks read from disk from now on, as 'variable/i.j.k' (metadata left out)."""
    keys: list[str] = []
    original = LocalStore.get

    async def get(self, key, *args, **kwargs):
        if re.fullmatch(r"\w+/\d+(\.\d+)*", key):
            keys.append(key)
        return await original(self, key, *args, **kwargs)

    monkeypatch.setattr(LocalStore, "get", get)
    return keys


@pytest.mark.parametrize("budget", [2**24, 0], ids=["cached chunks", "no cache"])
def test_a_window_reads_only_the_chunks_it_overlaps(small, chunk_reads, budget):
    data, pair, train, stats, layout, _ = _setup(small)
    lazy = _lazy(data, pair, train, stats, layout, budget)
    chunk_reads.clear()  # what opening the pair and the statistics read
    lazy.target.read(slice(3, 4), slice(10, 26), slice(5, 21))  # hour 3, rows 10-25, columns 5-20
    # chunks of 2 hours x 8 x 8: hour chunk 1, row chunks 1-3, column chunks 0-2
    expected = {f"t2m/1.{j}.{i}" for j in (1, 2, 3) for i in (0, 1, 2)}
    assert set(chunk_reads) == expected and len(chunk_reads) == len(expected)
    chunk_reads.clear()
    lazy.target.read(slice(2, 4), slice(12, 20), slice(6, 14))  # inside the chunks read
    assert (chunk_reads == []) == (budget > 0)  # cached, or read again
    chunk_reads.clear()
    lazy.lr.read(slice(30, 31), slice(2, 6), slice(0, 5))
    assert chunk_reads == ["z500/1.0.0"]  # the LR in chunks of 24 hours x the whole grid


def test_a_sample_reads_a_patch_not_the_dataset(small, chunk_reads):
    data, pair, train, stats, layout, to_hr = _setup(small)
    lazy = _lazy(data, pair, train, stats, layout, 0)
    chunks = {"t2m": 24 * 5 * 6, "z500": 2}  # HR and LR chunks in the store
    for i in range(4):
        chunk_reads.clear()
        PatchDataset(lazy, layout, to_hr, 16, 4, seed=i)[0]
        hr_reads = [k for k in chunk_reads if k.startswith("t2m/")]
        # a 16 x 16 patch overlaps 2 or 3 chunks of 8 points each way, at one hour
        assert 4 <= len(hr_reads) <= 9 < chunks["t2m"]
        assert len([k for k in chunk_reads if k.startswith("z500/")]) == 1


def _opened_in(record: Path, data: DataConfig) -> dict[str, xr.Dataset]:
    """:func:`open_sources`, noting the process that opens them."""
    with record.open("a") as f:
        f.write(f"{os.getpid()}\n")
    return open_sources(data)


def test_each_worker_opens_the_files_itself_and_draws_the_same_samples(small, tmp_path):
    data, pair, train, stats, layout, to_hr = _setup(small)
    record = tmp_path / "opened"
    lazy = _lazy(data, pair, train, stats, layout, 2**24, opener=partial(_opened_in, record, data))
    patches = PatchDataset(lazy, layout, to_hr, 16, 12, seed=1)
    batches = {}
    for workers in (0, 2):
        loader = torch.utils.data.DataLoader(patches, batch_size=3, num_workers=workers)
        batches[workers] = list(loader)
    for a, b in zip(batches[0], batches[2], strict=True):
        for key in a:
            torch.testing.assert_close(a[key], b[key], atol=0, rtol=0)
    openers = record.read_text().split()
    assert len(openers) == 2 and str(os.getpid()) not in openers  # the parent used what it had open


# --------------------------------------------------------------------------------------------
# a dataset several times larger than the memory training takes

TRAIN = """
import sys
from finescale.config import load_config
from finescale.training import train
overrides = ["model.kind=regression", "model.network.base_width=8", "model.network.channel_mult=[1, 2]",
             "train.max_steps=6", "train.batch_size=4", "train.patch_size=32", "train.val_every_steps=3",
             "train.val_batches=2", "train.warmup_steps=1", "train.num_workers=1", "train.cache_mb=32",
             "train.accelerator=cpu", f"train.out={sys.argv[2]}"]
train(load_config(sys.argv[1], overrides))
"""  # noqa: E501 (Python code the test runs: its lines are kept as they are)


def _memory(process: psutil.Process) -> int:
    """Proportional set size of a process and its children in bytes: pages the forked workers
    share with the parent are counted once, not once per process."""
    total = 0
    for p in [process, *process.children(recursive=True)]:
        try:
            total += p.memory_full_info().pss
        except psutil.Error:  # ended between the listing and the reading
            pass
    return total


def peak_training_memory(config: Path, out: Path) -> tuple[int, float]:
    """Peak memory (bytes, the process tree's PSS sampled every 50 ms) and wall time (s) of a
    tiny regression model trained a few steps in a fresh process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    child = psutil.Popen(
        [sys.executable, "-c", textwrap.dedent(TRAIN), str(config), str(out)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    peak = 0
    while child.poll() is None:
        peak = max(peak, _memory(child))
        time.sleep(0.05)
    output = child.stdout.read().decode()  # type: ignore[union-attr]
    assert child.returncode == 0, output[-3000:]
    return peak, time.perf_counter() - start


@pytest.mark.slow
def test_a_dataset_several_times_larger_than_the_memory_trains(tmp_path):
    # 768 hours of a 1024 x 1024 HR grid: 3.2 GB of random float32, 3 GB on disk
    config = write_pair(tmp_path, 768, (1024, 1024), 8, (1, 256, 256))
    size = sum(f.stat().st_size for f in (tmp_path / "hr.zarr").rglob("*") if f.is_file())
    assert size > 2.9e9
    peak, seconds = peak_training_memory(config, tmp_path / "run")
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    print(
        f"HR store {size / 1e9:.2f} GB, peak memory of training {peak / 1e9:.2f} GB "
        f"({size / peak:.1f}x smaller), {seconds:.0f} s"
    )
    assert peak * 3 < size

"""Per-variable transforms, normalisation statistics and their reuse on disk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from finescale.config import DataConfig, TransformConfig
from finescale.data import saved_stats
from finescale.data.normalisation import NormStats, compute_stats, denormalise, normalise
from finescale.data.pairs import open_pair, split_times
from finescale.data.saved_stats import STATS_FILENAME, load_or_compute_stats, stats_path
from finescale.data.transforms import forward_transform, inverse_transform

LOG = TransformConfig(kind="log1p", scale=0.5)
NONE = TransformConfig()


# --------------------------------------------------------------------------------------------
# pointwise transforms


def test_log1p_keeps_exact_zeros_and_round_trips():
    x = np.array([0.0, 0.0, 1e-12, 0.3, 5.0, 120.0, np.nan])
    y = forward_transform(x, LOG, name="tp")
    assert y[0] == 0.0 and y[1] == 0.0
    np.testing.assert_allclose(y[:-1], np.log1p(x[:-1] / 0.5))
    back = inverse_transform(y, LOG, name="tp")
    assert back[0] == 0.0
    np.testing.assert_allclose(back[:-1], x[:-1], rtol=1e-14, atol=0)
    assert np.isnan(back[-1])


def test_float32_stays_float32_and_round_trips():
    x = np.linspace(0, 50, 101, dtype=np.float32)
    y = forward_transform(x, LOG)
    assert y.dtype == np.float32
    np.testing.assert_allclose(inverse_transform(y, LOG), x, rtol=2e-6)


def test_none_is_identity():
    x = np.array([-3.0, 0.0, 2.0])
    assert forward_transform(x, NONE) is x and inverse_transform(x, None) is x


def test_tiny_negatives_clipped_larger_ones_raise():
    y = forward_transform(np.array([-1e-8, -4e-7, 1.0]), LOG, name="tp")  # tolerance 5e-7
    assert y[0] == 0.0 and y[1] == 0.0
    with pytest.raises(ValueError, match="variable 'tp'.*non-negative.*-0.01"):
        forward_transform(np.array([1.0, -0.01]), LOG, name="tp")


def test_inverse_clips_negative_outputs():
    back = inverse_transform(np.array([-2.0, -1e-3, 0.0, 1.0]), LOG)
    assert np.all(back[:3] == 0.0) and back[3] > 0


def test_values_below_zero_below_come_back_dry_in_numpy_torch_and_xarray():
    import torch

    dry = TransformConfig(kind="log1p", scale=0.5, zero_below=0.01)
    x = np.array([0.0, 0.004, 0.0099, 0.01, 0.3, np.nan])
    y = forward_transform(x, dry)
    np.testing.assert_allclose(y[:-1], forward_transform(x, LOG)[:-1])  # the forward is unchanged
    expected = np.array([0.0, 0.0, 0.0, 0.01, 0.3])
    np.testing.assert_allclose(inverse_transform(y, dry)[:-1], expected, rtol=1e-12)
    np.testing.assert_allclose(
        inverse_transform(torch.from_numpy(y), dry).numpy()[:-1], expected, rtol=1e-12
    )
    np.testing.assert_allclose(
        inverse_transform(xr.DataArray(y), dry).values[:-1], expected, rtol=1e-12
    )
    assert np.isnan(inverse_transform(y, dry)[-1]) and torch.isnan(
        inverse_transform(torch.from_numpy(y), dry)[-1]
    )


def test_xarray_lazy_and_negative_check_at_compute():
    da = xr.DataArray(
        np.abs(np.random.default_rng(0).normal(size=(6, 4, 5))),
        dims=("time", "y", "x"),
        attrs={"units": "mm h-1"},
    ).chunk({"time": 2})
    y = forward_transform(da, LOG, name="tp")
    assert y.chunks is not None and y.attrs["units"] == "1"
    back = inverse_transform(y, LOG)
    np.testing.assert_allclose(back.values, da.values, rtol=1e-14)
    bad = forward_transform(da - 10.0, LOG, name="tp")  # builds lazily ...
    with pytest.raises(ValueError, match="variable 'tp'"):
        bad.compute()  # ... and refuses when computed


def test_torch_tensors():
    torch = pytest.importorskip("torch")
    x = torch.tensor([0.0, 1e-9, 0.7, 30.0], dtype=torch.float64)
    y = forward_transform(x, LOG)
    assert isinstance(y, torch.Tensor) and y[0] == 0
    back = inverse_transform(y, LOG)
    assert isinstance(back, torch.Tensor)
    torch.testing.assert_close(back, x, rtol=1e-14, atol=0)
    assert inverse_transform(torch.tensor([-1.0]), LOG).item() == 0.0
    with pytest.raises(ValueError, match="'tp'"):
        forward_transform(torch.tensor([-1.0]), LOG, name="tp")


@settings(max_examples=60, deadline=None)
@given(
    x=hnp.arrays(
        np.float64,
        hnp.array_shapes(max_dims=3, max_side=6),
        elements=st.floats(0, 1e6, allow_nan=False, allow_subnormal=False),
    ),
    scale=st.floats(1e-3, 1e3),
)
def test_round_trip_property(x, scale):
    tf = TransformConfig(kind="log1p", scale=scale)
    y = forward_transform(x, tf)
    assert np.all(y >= 0) and np.all((y == 0) == (x == 0))
    back = inverse_transform(y, tf)
    np.testing.assert_allclose(back, x, rtol=1e-12, atol=1e-300)


# --------------------------------------------------------------------------------------------
# statistics


def small_pair_files(tmp_path: Path, nt: int = 40, seed: int = 0) -> DataConfig:
    """HR (16 x 16, 0.25 deg) and LR (4 x 4) with t2m and tp on disk, and their config."""
    rng = np.random.default_rng(seed)
    times = np.datetime64("2021-06-01T00", "ns") + np.arange(nt) * np.timedelta64(1, "h")
    hr_lat = 45 + (np.arange(16) + 0.5) * 0.25
    hr_lon = 7 + (np.arange(16) + 0.5) * 0.25
    trend = np.arange(nt)[:, None, None] * 0.5  # later times are warmer: train != all
    wave = np.sin(np.arange(nt)[:, None, None] * 0.4 + hr_lon[None, None, :])
    t2m = 290 + trend + 2 * wave + rng.normal(0, 0.5, (nt, 16, 16))
    tp = np.maximum(0.0, wave + rng.normal(0, 0.3, (nt, 16, 16)))

    def dataset(t, p, lat, lon):
        return xr.Dataset(
            {
                "t2m": (("time", "lat", "lon"), t, {"units": "K"}),
                "tp": (("time", "lat", "lon"), p, {"units": "mm h-1"}),
            },
            coords={"time": times, "lat": lat, "lon": lon},
        )

    def coarse(v):
        return v.reshape(nt, 4, 4, 4, 4).mean(axis=(2, 4))

    lr_lat = 45 + (np.arange(4) + 0.5)
    lr_lon = 7 + (np.arange(4) + 0.5)
    (tmp_path / "hr").mkdir(exist_ok=True)
    dataset(t2m, tp, hr_lat, hr_lon).to_netcdf(tmp_path / "hr" / "hr.nc")
    dataset(coarse(t2m), coarse(tp), lr_lat, lr_lon).to_netcdf(tmp_path / "lr.nc")
    variables = {"t2m": "t2m", "tp": "tp"}
    return DataConfig.model_validate(
        {
            "lr": {"path": str(tmp_path / "lr.nc"), "variables": variables},
            "hr": {"path": str(tmp_path / "hr" / "hr.nc"), "variables": variables},
            "transforms": {"tp": {"kind": "log1p", "scale": 0.5}},
            "splits": {"train": 0.5, "validation": 0.25, "test": 0.25},
        }
    )


def test_stats_on_training_times_only(tmp_path):
    cfg = small_pair_files(tmp_path)
    pair = open_pair(cfg)
    stats = load_or_compute_stats(pair, cfg)
    train = split_times(pair.hr["time"].values, cfg.splits)["train"]
    hr = pair.hr.sel(time=train).load()
    assert stats["t2m"].mean == pytest.approx(float(hr["t2m"].mean()), rel=1e-12)
    assert stats["t2m"].std == pytest.approx(float(hr["t2m"].std()), rel=1e-10)
    logged = np.log1p(hr["tp"].values / 0.5)
    assert stats["tp"].mean == pytest.approx(logged.mean(), rel=1e-10)
    assert stats["tp"].std == pytest.approx(logged.std(), rel=1e-10)
    assert stats["tp"].transform == cfg.transforms["tp"] and stats["tp"].source == "hr"
    # all times would give a warmer mean: the test block did not leak in
    assert float(pair.hr["t2m"].mean()) > stats["t2m"].mean + 1
    assert stats["t2m"].count == train.size * 16 * 16


def test_stats_saved_beside_hr_and_reused(tmp_path, monkeypatch):
    cfg = small_pair_files(tmp_path)
    pair = open_pair(cfg)
    first = load_or_compute_stats(pair, cfg)
    path = tmp_path / "hr" / STATS_FILENAME
    assert stats_path(cfg) == path and path.is_file()
    saved = json.loads(path.read_text())
    fp = saved["fingerprint"]
    assert fp["variables"] == ["t2m", "tp"]
    assert fp["transforms"]["tp"] == {"kind": "log1p", "scale": 0.5}
    assert fp["split"]["train"] == 0.5 and fp["train_times"]["count"] == 20
    assert fp["sources"]["hr"]["path"].endswith("hr.nc")
    assert NormStats.load(path) == first

    # the same config reuses the file without computing
    def boom(*args, **kwargs):
        raise AssertionError("statistics recomputed although nothing changed")

    monkeypatch.setattr(saved_stats, "compute_stats", boom)
    assert load_or_compute_stats(pair, cfg) == first

    # zero_below acts only on the way back: the file is reused, with the config's threshold
    dry = cfg.model_copy(
        update={"transforms": {"tp": cfg.transforms["tp"].model_copy(update={"zero_below": 0.01})}}
    )
    reused = load_or_compute_stats(pair, dry)
    assert reused["tp"].transform.zero_below == 0.01 and reused["tp"].mean == first["tp"].mean


def test_stats_recomputed_when_config_changes(tmp_path):
    cfg = small_pair_files(tmp_path)
    pair = open_pair(cfg)
    first = load_or_compute_stats(pair, cfg)

    other_transform = cfg.model_copy(update={"transforms": {}})
    second = load_or_compute_stats(pair, other_transform)
    assert second["tp"].transform == NONE and second["tp"].mean != first["tp"].mean

    other_split = cfg.model_copy(
        update={"splits": cfg.splits.model_copy(update={"train": 0.7, "validation": 0.05})}
    )
    third = load_or_compute_stats(pair, other_split)
    assert third["t2m"].mean > first["t2m"].mean  # more (warmer) training times
    assert json.loads(stats_path(cfg).read_text())["fingerprint"]["split"]["train"] == 0.7

    # the file now holds the last config's statistics; the first config recomputes again
    assert load_or_compute_stats(pair, cfg) == first


def test_stats_recomputed_when_data_rewritten(tmp_path):
    cfg = small_pair_files(tmp_path, seed=0)
    first = load_or_compute_stats(open_pair(cfg), cfg)
    small_pair_files(tmp_path, seed=1)  # same names, other values
    again = load_or_compute_stats(open_pair(cfg), cfg)
    assert again["t2m"].mean != first["t2m"].mean


def test_stats_at_given_path(tmp_path):
    cfg = small_pair_files(tmp_path)
    target = tmp_path / "elsewhere" / "stats.json"
    load_or_compute_stats(open_pair(cfg), cfg, path=target)
    assert target.is_file() and not stats_path(cfg).exists()


def test_constant_field_error():
    ds = xr.Dataset(
        {
            "t2m": (("time", "y", "x"), np.random.default_rng(0).normal(size=(4, 3, 3))),
            "lsm": (("time", "y", "x"), np.ones((4, 3, 3))),
        }
    )
    with pytest.raises(ValueError, match="'lsm'.*constant"):
        compute_stats(ds)


def test_compute_stats_is_lazy_and_combines_sources():
    rng = np.random.default_rng(0)
    hr = xr.Dataset({"t2m": (("time", "y", "x"), rng.normal(280, 5, (50, 8, 8)))}).chunk(
        {"time": 7}
    )
    lr = xr.Dataset(
        {
            "t2m": (("time", "y", "x"), rng.normal(0, 1, (50, 2, 2))),  # HR wins for t2m
            "orog_lr": (("y", "x"), rng.normal(500, 100, (2, 2))),
        }
    )
    stats = compute_stats(hr, lr=lr, times=hr["time"].values[:10])
    assert stats["t2m"].source == "hr" and stats["orog_lr"].source == "lr"
    assert stats["t2m"].mean == pytest.approx(float(hr["t2m"][:10].mean()), rel=1e-12)
    assert stats["orog_lr"].count == 4
    assert hr["t2m"].chunks is not None  # the input was not loaded in place


def test_normalise_round_trip(tmp_path):
    cfg = small_pair_files(tmp_path)
    pair = open_pair(cfg)
    stats = load_or_compute_stats(pair, cfg)
    z = normalise(pair.hr, stats, cfg.transforms)
    assert z["t2m"].attrs["units"] == "1" and z["t2m"].chunks is not None
    train = split_times(pair.hr["time"].values, cfg.splits)["train"]
    assert float(z["t2m"].sel(time=train).mean()) == pytest.approx(0, abs=1e-9)
    assert float(z["t2m"].sel(time=train).std()) == pytest.approx(1, rel=1e-9)
    back = denormalise(z, stats, cfg.transforms)
    assert back["tp"].attrs["units"] == "mm h-1"
    np.testing.assert_allclose(back["t2m"].values, pair.hr["t2m"].values, rtol=1e-12)
    np.testing.assert_allclose(back["tp"].values, pair.hr["tp"].values, rtol=1e-9, atol=1e-12)
    assert float(back["tp"].min()) >= 0
    # arrays: numpy through the same statistics
    arr = pair.hr["tp"].values
    np.testing.assert_allclose(
        stats.denormalise_array(stats.normalise_array(arr, "tp"), "tp"), arr, atol=1e-12
    )


def test_normalise_refuses_mismatched_transforms_and_unknown_variables(tmp_path):
    cfg = small_pair_files(tmp_path)
    pair = open_pair(cfg)
    stats = load_or_compute_stats(pair, cfg)
    with pytest.raises(ValueError, match="'tp'.*log1p.*none.*recompute"):
        normalise(pair.hr, stats, {})
    with pytest.raises(ValueError, match="no normalisation statistics for u10"):
        normalise(pair.hr.assign(u10=pair.hr["t2m"]), stats)

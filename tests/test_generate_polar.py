"""The polar filter in generation: global grids filtered poleward of 60 degrees, regional never."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import xarray as xr
import yaml
from test_pairs import block_mean, hours, regular_axes, to_file_dataset, weather

import finescale
from finescale.config import SampleConfig, load_config
from finescale.data.grids import polar_filter
from finescale.generation import members, vector_components

pytestmark = pytest.mark.usefixtures("one_thread")
SPAN = "2020-01-01T03..2020-01-01T05"


@pytest.fixture(scope="module")
def global_model(tmp_path_factory):
    """A tiny diffusion model of t2m and precipitation on a global 2.5 deg grid (72 x 144) from
    10 deg (18 x 36), trained a few steps; returns the checkpoint and the LR file."""
    folder = tmp_path_factory.mktemp("global")
    lat, lon = regular_axes(72, 144, 2.5, lat0=-90.0, lon0=0.0)
    lat2, lon2 = np.meshgrid(lat, lon, indexing="ij")
    fields = weather(lat2, lon2, 24)
    # finer zonal detail near the poles than the grid spacing at 60 degrees resolves
    fields["t2m"] = fields["t2m"] + 4.0 * np.sin(np.deg2rad(lon2) * 50.0) * (np.abs(lat2) > 60)
    coarse = {k: block_mean(v, 4) for k, v in fields.items()}
    lr_lat, lr_lon = regular_axes(18, 36, 10.0, lat0=-90.0, lon0=0.0)
    to_file_dataset(coarse, lr_lat, lr_lon, hours(24)).to_netcdf(folder / "lr.nc")
    to_file_dataset(fields, lat, lon, hours(24)).to_netcdf(folder / "hr.nc")
    variables = {
        "t2m": {"name": "t2m", "units": "K"},
        "tp": {"name": "tp", "units": "mm h-1", "accumulation": "1h"},
    }
    data = {
        "lr": {"path": "lr.nc", "variables": variables},
        "hr": {"path": "hr.nc", "variables": variables},
        "transforms": {"tp": {"kind": "log1p", "scale": 0.1, "zero_below": 0.01}},
    }
    run = {
        "model": {"kind": "diffusion", "network": {"base_width": 8, "channel_mult": [1, 2]}},
        "train": {
            "max_steps": 2,
            "batch_size": 2,
            "patch_size": 16,
            "val_every_steps": 2,
            "val_batches": 1,
            "warmup_steps": 1,
            "accelerator": "cpu",
            "num_workers": 0,
            "out": str(folder / "run"),
        },
        "sample": {"members": 2, "steps": 2, "solver": "euler"},
    }
    (folder / "finescale.yaml").write_text(yaml.safe_dump({"data": data, **run}, sort_keys=False))
    from finescale.training import train

    return train(load_config(folder / "finescale.yaml")), folder / "lr.nc"


def test_global_members_are_polar_filtered_beyond_60_degrees(global_model):
    checkpoint, lr_path = global_model
    model = finescale.load(checkpoint)
    lr = xr.open_dataset(lr_path)
    on = model.downscale(lr, members=2, times=SPAN)  # the default: 60 on a grid reaching 88.75
    off = model.downscale(lr, members=2, times=SPAN, polar_filter_latitude=90)
    assert "60 degrees" in on.attrs["polar_filter"] and "polar_filter" not in off.attrs
    assert json.loads(on.attrs["sampler"])["polar_filter_latitude"] is None  # as set: the default
    lat = on.lat.values[:, 0]
    inner, polar = np.abs(lat) <= 60, np.abs(lat) > 60
    for name in ("t2m", "tp"):  # rows up to 60 degrees untouched, bit for bit
        assert np.array_equal(on[name].values[..., inner, :], off[name].values[..., inner, :])
    # poleward, t2m is the unfiltered member truncated zonally (float32 rounding apart) ...
    expected = polar_filter(off.t2m.values.astype(np.float64), on.lat.values, 60.0)
    np.testing.assert_allclose(on.t2m.values, expected, rtol=0, atol=2e-4)
    # ... so at 88.75 degrees only m <= floor(72 cos(88.75) / cos(60)) = 3 is left, where the
    # unfiltered members hold the detail the data put at m = 50
    row = np.argmax(lat)
    on_row, off_row = (
        np.abs(np.fft.rfft(ds.t2m.values[..., row, :].astype(np.float64), axis=-1))
        for ds in (on, off)
    )
    assert (
        off_row[..., 4:].max() > 10.0
    )  # K x 144 points: detail poleward of what 60 degrees resolves
    assert on_row[..., 4:].max() < 1e-2 * off_row[..., 4:].max()  # gone (float32 rounding left)
    assert not np.array_equal(on.t2m.values[..., polar, :], off.t2m.values[..., polar, :])
    # precipitation stays non-negative and dry below zero_below
    tp = on.tp.values
    assert tp.min() >= 0 and not ((tp > 0) & (tp < 0.01)).any()


def test_regional_grids_are_never_filtered(tiny_models):
    model = finescale.load(tiny_models["regression"])
    lr = xr.open_dataset(tiny_models["folder"] / "lr.nc")
    ensemble = model.downscale(lr, members=1, times=SPAN)
    assert "polar_filter" not in ensemble.attrs
    with pytest.raises(ValueError, match="polar filter is for global grids"):
        model.downscale(lr, members=1, times=SPAN, polar_filter_latitude=70)


def test_vector_components_are_filtered_with_keep_1(global_model, monkeypatch):
    # this grid has no pole rows (its last is 88.75, where m <= 3 are kept anyway), so what keep
    # does is tested in test_polar.py; here: which variables get keep=1, and the attrs say so
    checkpoint, lr_path = global_model
    model = finescale.load(checkpoint)
    lr = xr.open_dataset(lr_path)
    calls = []

    def spy(values, lat, lat0, keep):
        calls.append((values.shape, keep))
        return polar_filter(values, lat, lat0, keep)

    monkeypatch.setattr(members, "polar_filter", spy)
    default = model.downscale(lr, members=2, times=SPAN)  # t2m in K, tp in mm h-1 but log1p
    assert "vector components" not in default.attrs["polar_filter"]
    assert calls and {keep for _, keep in calls} == {0}
    calls.clear()
    vector = model.downscale(lr, members=2, times=SPAN, polar_filter_vectors=["t2m"])
    assert "vector components t2m also keep zonal wave 1" in vector.attrs["polar_filter"]
    assert [keep for _, keep in calls] == [1, 0] * (len(calls) // 2)  # t2m, tp at each time
    np.testing.assert_array_equal(vector.tp.values, default.tp.values)
    with pytest.raises(ValueError, match=r"\['u10'\] are not variables of this model.*'t2m', 'tp'"):
        model.downscale(lr, members=1, times=SPAN, polar_filter_vectors=["t2m", "u10"])


def test_by_default_the_vector_components_are_the_speeds():
    units = {"u": "m s-1", "v": "m/s", "ws": "knots", "t": "K", "tp": "mm h-1", "z": "gpm", "q": ""}
    stats = {
        v: SimpleNamespace(
            units=u, transform=SimpleNamespace(kind="log1p" if v == "tp" else "none")
        )
        for v, u in units.items()
    }
    loaded = SimpleNamespace(layout=SimpleNamespace(target_variables=list(units)), stats=stats)
    assert vector_components(SampleConfig(), loaded) == ["u", "v", "ws"]
    assert vector_components(SampleConfig(polar_filter_vectors=["v", "u"]), loaded) == ["u", "v"]
    assert vector_components(SampleConfig(polar_filter_vectors=[]), loaded) == []


def test_a_scalars_pole_rows_take_the_members_first_column():
    lat = np.linspace(-90.0, 90.0, 73)
    values = np.random.default_rng(0).normal(280.0, 3.0, (2, 73, 144))
    scalar = SimpleNamespace(kind="none")
    drawer = SimpleNamespace(
        static=SimpleNamespace(lat=SimpleNamespace(values=lat)),
        polar=60.0,
        vectors=frozenset({"u"}),
        loaded=SimpleNamespace(
            stats={"t": SimpleNamespace(transform=scalar), "u": SimpleNamespace(transform=scalar)}
        ),
    )
    t = members.BlockDrawer.polar_filtered(drawer, values.copy(), "t")
    pole = np.abs(lat) == 90.0
    # one point, at the member's own value there: not the row's mean, whose spread is 1/12 of it
    np.testing.assert_array_equal(
        t[:, pole, :], np.broadcast_to(values[:, pole, :1], t[:, pole, :].shape)
    )
    np.testing.assert_array_equal(t[:, ~pole], polar_filter(values, lat, 60.0)[:, ~pole])
    u = members.BlockDrawer.polar_filtered(drawer, values.copy(), "u")
    np.testing.assert_array_equal(u, polar_filter(values, lat, 60.0, keep=1))


def test_sample_zero_below_replaces_the_checkpoints_dry_threshold(global_model):
    # the threshold acts only on the way back from the network: the members of one seed differ
    # only where precipitation lies between the thresholds, so it can be chosen at sampling time
    checkpoint, lr_path = global_model
    model = finescale.load(checkpoint)
    lr = xr.open_dataset(lr_path)
    # (the polar filter off: it smooths members after the threshold, and thresholds them again)
    run = {"members": 2, "times": SPAN, "polar_filter_latitude": 90}
    as_trained = model.downscale(lr, **run)  # data.transforms: 0.01 mm/h
    raw = model.downscale(lr, **run, zero_below=0.0)
    wider = model.downscale(lr, **run, zero_below=0.05)
    tp = raw.tp.values
    assert tp.min() >= 0 and ((tp > 0) & (tp < 0.01)).any()  # drizzle the default would remove
    np.testing.assert_array_equal(as_trained.tp.values, np.where(tp < 0.01, 0.0, tp))
    np.testing.assert_array_equal(wider.tp.values, np.where(tp < 0.05, 0.0, tp))
    np.testing.assert_array_equal(raw.t2m.values, as_trained.t2m.values)  # no transform: untouched
    assert json.loads(raw.attrs["sampler"])["zero_below"] == 0.0
    assert json.loads(as_trained.attrs["sampler"])["zero_below"] is None

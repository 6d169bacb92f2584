"""Hypercubes, tokens and masks for the AtmoRep model (no network involved)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from finescale.atmorep.series import Series
from finescale.atmorep.settings import AtmoRepConfig
from finescale.atmorep.tokens import (
    CubeDataset,
    FixedCubes,
    Geometry,
    check_geometry,
    tile_starts,
    tokenize,
    untokenize,
)

T, H, W = 24, 12, 18


def make_series(t: int = T) -> Series:
    rng = np.random.default_rng(0)
    lat, lon = np.meshgrid(np.linspace(44, 48, H), np.linspace(5, 12, W), indexing="ij")
    fields = {
        "u": torch.from_numpy(rng.standard_normal((t, 3, H, W)).astype(np.float32)),  # 3 levels
        "t2m": torch.from_numpy(rng.standard_normal((t, 1, H, W)).astype(np.float32)),
        "orog": torch.from_numpy(rng.standard_normal((1, 1, H, W)).astype(np.float32)),
    }
    times = np.datetime64("2021-03-01T00", "h") + np.arange(t)
    return Series(times, lat, lon, fields, {k: None for k in fields}, static=frozenset({"orog"}))


def make_config(**masking) -> AtmoRepConfig:
    return AtmoRepConfig.model_validate(
        {
            "data": {
                "lr": {"path": "lr.zarr", "variables": {"u": "u"}},
                "hr": {"path": "hr.zarr", "variables": {"t2m": "t2m"}},
            },
            "fields": {
                "u": {"source": "lr", "variables": ["u850", "u700", "u500"], "mask_rate": 0.4},
                "t2m": {"source": "hr", "mask_rate": 0.8},
                "orog": {"source": "static", "predict": False},
            },
            "token": {"time": 2, "y": 3, "x": 3},
            "neighbourhood": {"time": 4, "y": 2, "x": 3},
            "masking": masking or {"strategies": {"bert": 1.0}},
        }
    )


def test_tokenize_round_trip_and_token_content():
    x = torch.randn(2, 3, 8, 9, 12)
    tokens = tokenize(x, (2, 3, 4))
    assert tokens.shape == (2, 3, 4, 3, 3, 24)
    assert torch.equal(untokenize(tokens, (2, 3, 4)), x)
    # token (1, 2, 0) of batch 1, level 2 holds hours 2-3, rows 6-8, columns 0-3, in that order
    assert torch.equal(tokens[1, 2, 1, 2, 0], x[1, 2, 2:4, 6:9, 0:4].reshape(-1))
    with pytest.raises(ValueError, match="does not divide"):
        tokenize(torch.randn(5, 9, 12), (2, 3, 4))


def test_neighbourhoods_never_wrap_in_time():
    cfg = make_config()
    g = Geometry.from_config(cfg)
    series = make_series(t=g.extent[0])  # exactly one neighbourhood long: the only origin is 0
    data = CubeDataset(series, cfg, length=50, seed=3)
    assert {int(data[i]["origin"][0]) for i in range(50)} == {0}
    longer = CubeDataset(make_series(), cfg, length=400, seed=3)
    starts = np.array([longer[i]["origin"].numpy() for i in range(400)])
    assert (
        starts[:, 0].max() == T - g.extent[0] and starts[:, 0].min() == 0
    )  # both ends reached, never past
    assert (starts[:, 1] <= H - g.extent[1]).all() and (starts[:, 2] <= W - g.extent[2]).all()
    with pytest.raises(ValueError, match="spans 8 hours but the block of times has only 7"):
        CubeDataset(make_series(t=7), cfg, length=1)


def test_bert_masks_follow_rates_and_spare_inputs():
    cfg = make_config(strategies={"bert": 1.0}, fill="zero")
    data = CubeDataset(make_series(), cfg, length=300, seed=1)
    fractions = {"u": [], "t2m": []}
    for i in range(300):
        item = data[i]
        assert not item["masked"]["orog"].any()  # inputs are never hidden
        assert set(item["target"]) == {"u", "t2m"}
        for name, seen in fractions.items():
            m = item["masked"][name]
            seen.append(m.float().mean().item())
            assert m.any()  # at least one token to predict
            assert torch.all(item["input"][name][m] == 0)
            assert torch.equal(item["input"][name][~m], item["target"][name][~m])
    for name, rate in (("u", 0.4), ("t2m", 0.8)):
        f = np.array(fractions[name])
        assert f.max() <= rate + 1e-6
        assert abs(f.mean() - rate / 2) < 0.05  # uniform ratio in [0, rate]
    # item i depends on (seed, start + i) only: the same from a new dataset and from one started
    # 10 items later, another with another seed
    item = data[17]
    again = CubeDataset(make_series(), cfg, length=300, seed=1)[17]
    later = CubeDataset(make_series(), cfg, length=300, seed=1, start=10)[7]
    other = CubeDataset(make_series(), cfg, length=300, seed=2)[17]
    for copy in (again, later):
        assert torch.equal(copy["origin"], item["origin"])
        assert all(torch.equal(copy["masked"][name], item["masked"][name]) for name in fractions)
    assert not all(torch.equal(other["masked"][name], item["masked"][name]) for name in fractions)
    # its tokens are the series at its origin: token (level, it, iy, ix) holds hours
    # t0 + 2 it .. + 1, rows y0 + 3 iy .. + 2 and columns x0 + 3 ix .. + 2, in that order
    t0, y0, x0 = item["origin"].tolist()
    series = make_series()
    for name in fractions:
        values = series.fields[name]  # (time, level, y, x)
        target = item["target"][name]  # (level, 4, 2, 3, 18)
        for level, it, iy, ix in np.ndindex(*target.shape[:4]):
            hours = slice(t0 + 2 * it, t0 + 2 * it + 2)
            rows = slice(y0 + 3 * iy, y0 + 3 * iy + 3)
            cols = slice(x0 + 3 * ix, x0 + 3 * ix + 3)
            expected = values[hours, level, rows, cols].reshape(-1)
            assert torch.equal(target[level, it, iy, ix], expected)


@pytest.mark.parametrize("fill", ["noise", "coarsen"])
def test_bert_fills(fill):
    cfg = make_config(strategies={"bert": 1.0}, fill=fill)
    item = CubeDataset(make_series(), cfg, length=1, seed=0)[0]
    m = item["masked"]["t2m"]
    hidden, truth = item["input"]["t2m"][m], item["target"]["t2m"][m]
    if fill == "coarsen":
        assert torch.allclose(hidden, truth.mean(dim=-1, keepdim=True).expand_as(truth))
    else:
        assert not torch.allclose(hidden, truth) and abs(hidden.std().item() - 1) < 0.3


def test_forecast_interpolation_and_target_masks():
    series = make_series()
    cfg = make_config(strategies={"forecast": 1.0}, forecast_tokens=2)
    item = FixedCubes(series, cfg, [(0, 0, 0)], "forecast")[0]
    for name in ("u", "t2m"):
        m = item["masked"][name]
        assert m[:, 2:].all() and not m[:, :2].any()
        hours = untokenize(item["input"][name], (2, 3, 3))  # (L, 8, 6, 9)
        assert torch.equal(
            hours[:, 4:], hours[:, 3:4].expand(-1, 4, -1, -1)
        )  # persistence of hour 3
        assert torch.equal(item["base"][name], item["input"][name])
    assert not item["masked"]["orog"].any()
    zero = FixedCubes(
        series,
        make_config(strategies={"forecast": 1.0}, forecast_tokens=2, time_fill="zero"),
        [(0, 0, 0)],
        "forecast",
    )[0]
    assert torch.all(zero["input"]["t2m"][:, 2:] == 0)

    cfg = make_config(strategies={"interpolation": 1.0}, interpolation_tokens=2)
    item = FixedCubes(series, cfg, [(3, 1, 2)], "interpolation")[0]
    m = item["masked"]["t2m"]
    assert m[:, 1:3].all() and not m[:, [0, 3]].any()
    hours = untokenize(item["input"]["t2m"], (2, 3, 3))[0]  # hours 2..5 hidden, 1 and 6 known
    truth = series.fields["t2m"][3:11, 0, 1:7, 2:11]  # origin (3, 1, 2), extent (8, 6, 9)
    for h in range(2, 6):
        assert torch.allclose(hours[h], truth[1] + (h - 1) / 5 * (truth[6] - truth[1]), atol=1e-6)

    cfg = make_config(strategies={"targets": 1.0})
    item = FixedCubes(make_series(), cfg, [(0, 0, 0)], "targets")[0]
    assert (
        item["masked"]["t2m"].all()
        and item["masked"]["u"].all()
        and not item["masked"]["orog"].any()
    )

    with pytest.raises(ValueError, match="known time tokens on both sides"):
        check_geometry(
            make_config(strategies={"interpolation": 1.0}, interpolation_tokens=3),
            make_series(),
            ["interpolation"],
        )
    with pytest.raises(ValueError, match="deterministic mask"):
        FixedCubes(make_series(), cfg, [(0, 0, 0)], "bert")
    with pytest.raises(ValueError, match="outside the series"):
        FixedCubes(make_series(), cfg, [(T - 7, 0, 0)], "targets")


def test_tokens_hold_the_series_and_where_features():
    cfg = make_config(strategies={"targets": 1.0})
    series = make_series()
    item = FixedCubes(series, cfg, [(5, 3, 6)], "targets")[0]
    g = Geometry.from_config(cfg)
    (et, ey, ex) = g.extent
    block = series.fields["u"][5 : 5 + et, :, 3 : 3 + ey, 6 : 6 + ex].transpose(0, 1)
    assert torch.equal(untokenize(item["target"]["u"], g.token), block)
    static = untokenize(item["input"]["orog"], g.token)
    assert torch.equal(static[0, 0], static[0, -1])  # the same orography at every hour
    where = item["where"]
    assert where.shape == (4, 2, 3, 8)
    lat_token = np.deg2rad(series.lat[3:6, 9:12].mean())  # token (y=0, x=1)
    assert np.isclose(where[0, 0, 1, 0].item(), np.sin(lat_token), atol=1e-6)
    hour = 5 + 1 + 2 * 2  # token 2 starts at hour 5 + 4, its middle hour is 10
    assert np.isclose(where[2, 0, 0, 4].item(), np.sin(2 * np.pi * hour / 24), atol=1e-6)


def test_neighbourhood_larger_than_grid_is_refused():
    cfg = make_config().model_copy(
        update={"neighbourhood": make_config().neighbourhood.model_copy(update={"x": 7})}
    )
    with pytest.raises(ValueError, match="does not fit the 12 x 18 grid"):
        CubeDataset(make_series(), cfg, length=1)


def test_tile_starts_cover_the_domain():
    assert tile_starts(18, 9) == [0, 9]
    assert tile_starts(20, 9) == [0, 9, 11]
    covered = np.zeros(20, bool)
    for s in tile_starts(20, 9):
        covered[s : s + 9] = True
    assert covered.all()


def test_targets_start_from_the_base_field():
    tree = make_config(strategies={"targets": 1.0}).model_dump(mode="json")
    tree["fields"]["t2m"]["base"] = "orog"  # any input field with as many levels
    cfg = AtmoRepConfig.model_validate(tree)
    item = FixedCubes(make_series(), cfg, [(2, 1, 1)], "targets")[0]
    assert torch.equal(item["input"]["t2m"], item["input"]["orog"])
    assert torch.equal(item["base"]["t2m"], item["input"]["orog"])
    assert torch.all(item["input"]["u"] == 0)  # no base: hidden with 0
    for field, base, message in (
        ("t2m", "u", "must be an input field"),
        ("u", "orog", "another number of levels"),
    ):
        bad = make_config().model_dump(mode="json")
        bad["fields"][field]["base"] = base
        if base == "u":
            bad["fields"]["u"]["predict"] = True
        with pytest.raises(ValueError, match=message):
            AtmoRepConfig.model_validate(bad)

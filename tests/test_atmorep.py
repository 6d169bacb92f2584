"""The AtmoRep model: its fair-CRPS loss, its shapes, and that its ensemble tail learns a
conditional distribution (calibrated spread), not only a mean."""

from __future__ import annotations

import numpy as np
import pytest
import scoringrules as sr
import torch
import xarray as xr
from scipy.ndimage import gaussian_filter

from finescale.atmorep.model import AtmoRep, fair_crps
from finescale.atmorep.series import Series, load_series
from finescale.atmorep.settings import AtmoRepConfig
from finescale.atmorep.tokens import CubeDataset, FixedCubes, untokenize
from finescale.data.pairs import open_pair
from finescale.data.saved_stats import load_or_compute_stats


def test_fair_crps_matches_scoringrules():
    rng = np.random.default_rng(0)
    ens, y = rng.standard_normal((50, 7)), rng.standard_normal(50)
    ours = fair_crps(torch.from_numpy(ens), torch.from_numpy(y)).numpy()
    assert np.allclose(ours, sr.crps_ensemble(y, ens, estimator="fair"), atol=1e-10)
    with pytest.raises(ValueError, match="at least 2"):
        fair_crps(torch.zeros(3, 1), torch.zeros(3))


def test_fair_crps_is_unbiased_for_exchangeable_members():
    """Members drawn from N(0, 1): the mean fair CRPS equals the closed-form CRPS of N(0, 1)
    for any K."""
    g = torch.Generator().manual_seed(0)
    y = torch.randn(200_000, generator=g)
    exact = sr.crps_normal(y.numpy(), 0.0, 1.0).mean()
    for k in (2, 4):
        ens = torch.randn(200_000, k, generator=g)
        assert abs(fair_crps(ens, y).mean().item() - exact) < 0.01


S = 0.5  # std of the toy target around the input field


def toy(t: int = 40, h: int = 16, w: int = 16) -> tuple[Series, AtmoRepConfig]:
    """Field b = a + S * white noise: given a, each hidden value of b is N(a, S^2)."""
    rng = np.random.default_rng(0)
    a = gaussian_filter(rng.standard_normal((t, 1, h, w)), (1, 0, 2, 2)).astype(np.float32)
    a /= a.std()
    b = a + S * rng.standard_normal(a.shape).astype(np.float32)
    lat, lon = np.meshgrid(np.linspace(45, 47, h), np.linspace(6, 10, w), indexing="ij")
    series = Series(
        np.datetime64("2020-01-01T00", "h") + np.arange(t),
        lat,
        lon,
        {"a": torch.from_numpy(a), "b": torch.from_numpy(b)},
        {"a": None, "b": None},
    )
    cfg = AtmoRepConfig.model_validate(
        {
            "data": {
                "lr": {"path": "x", "variables": {"a": "a"}},
                "hr": {"path": "y", "variables": {"b": "b"}},
            },
            "fields": {"a": {"source": "lr", "predict": False}, "b": {"source": "hr"}},
            "token": {"time": 1, "y": 4, "x": 4},
            "neighbourhood": {"time": 2, "y": 2, "x": 2},
            "network": {
                "width": 32,
                "heads": 2,
                "encoder_layers": 1,
                "decoder_layers": 0,
                "tail_layers": 2,
            },
            "ensemble": {"members": 8, "noise_dim": 32},
            "masking": {"strategies": {"targets": 1.0}},
        }
    )
    return series, cfg


def test_predict_keeps_known_tokens_and_fills_hidden_ones(one_thread):
    series, cfg = toy()
    cfg = cfg.model_copy(
        update={"masking": cfg.masking.model_copy(update={"strategies": {"forecast": 1.0}})}
    )
    model = AtmoRep(cfg, {"a": 1, "b": 1}).eval()
    batch = torch.utils.data.default_collate(
        [FixedCubes(series, cfg, [(0, 0, 0), (5, 8, 4)], "forecast")[i] for i in range(2)]
    )
    untrained = model.predict(batch, members=3)[
        "b"
    ]  # the output layer starts at zero: members = persistence
    assert torch.equal(untrained, batch["base"]["b"].unsqueeze(1).expand_as(untrained))
    torch.nn.init.normal_(
        model.head["b"][-1].weight, std=0.1
    )  # as if trained: the noise now reaches the output
    out = model.predict(batch, members=5)["b"]
    assert out.shape == (2, 5, 1, 2, 2, 2, 16)
    known = ~batch["masked"]["b"]
    assert torch.equal(out[:, 3][known], batch["target"]["b"][known])
    hidden = out[:, :, 0, 1]  # the forecast time token
    assert hidden.std(dim=1).min() > 0  # members differ
    assert torch.isfinite(out).all()


def test_ensemble_tail_learns_the_conditional_distribution(one_thread):
    """Trained with the fair CRPS, the members centre on a and spread by S: spread-skill near 1,
    and a CRPS below what any deterministic forecast can reach (MAE >= S sqrt(2/pi) = 0.40)."""
    torch.manual_seed(0)
    series, cfg = toy()
    model = AtmoRep(cfg, {"a": 1, "b": 1})
    loader = torch.utils.data.DataLoader(
        CubeDataset(series, cfg, length=600 * 16, seed=0), batch_size=16
    )
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for batch in loader:
        loss = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-50:]) < 0.7 * np.mean(losses[:20])

    test = CubeDataset(series, cfg, length=64, seed=99)
    batch = torch.utils.data.default_collate([test[i] for i in range(64)])
    with torch.no_grad():
        p = model(batch, members=16, generator=torch.Generator().manual_seed(1))["b"]  # (N, 16, D)
    mask = batch["masked"]["b"].flatten(1)
    y = batch["target"]["b"].flatten(1, -2)[mask]
    a = batch["input"]["a"].flatten(1, -2)[mask]
    crps = fair_crps(p.transpose(1, 2), y).mean().item()
    spread = p.var(dim=1).mean().sqrt().item()
    rmse = (p.mean(dim=1) - y).pow(2).mean().sqrt().item()
    ssr = np.sqrt(17 / 16) * spread / rmse
    ideal = S / np.sqrt(np.pi)  # CRPS of the true N(a, S^2)
    assert crps < 0.32, (crps, ideal)
    assert 0.85 < ssr < 1.15, ssr
    assert abs(spread - S) < 0.1 * S, spread
    assert (p.mean(dim=1) - a).abs().mean().item() < 0.2  # centred on a


def detail_toy(detail: list[str]) -> tuple[Series, AtmoRepConfig]:
    """Field b = 0.8 x s for a white-noise static field s: 64 independent values per token, more
    than the model's 16 features can carry, so only a point-by-point path from s can predict b."""
    rng = np.random.default_rng(1)
    t, h, w = 8, 32, 32
    s = np.broadcast_to(rng.standard_normal((1, 1, h, w)), (t, 1, h, w)).astype(np.float32)
    zero = np.zeros_like(s)
    lat, lon = np.meshgrid(np.linspace(45, 47, h), np.linspace(6, 10, w), indexing="ij")
    series = Series(
        np.datetime64("2020-01-01T00", "h") + np.arange(t),
        lat,
        lon,
        {
            name: torch.from_numpy(np.ascontiguousarray(v))
            for name, v in {"s": s, "b": 0.8 * s, "b0": zero}.items()
        },
        {"s": None, "b": None, "b0": None},
    )
    cfg = AtmoRepConfig.model_validate(
        {
            "data": {
                "lr": {"path": "x", "variables": {"b0": "b0"}},
                "hr": {"path": "y", "variables": {"b": "b"}},
                "static": {"path": "z", "variables": {"s": "s"}},
            },
            "fields": {
                "s": {"source": "static", "predict": False},
                "b0": {"source": "lr", "predict": False},
                "b": {"source": "hr", "base": "b0", "detail": detail},
            },
            "token": {"time": 1, "y": 8, "x": 8},
            "neighbourhood": {"time": 1, "y": 2, "x": 2},
            "network": {
                "width": 16,
                "heads": 2,
                "encoder_layers": 1,
                "decoder_layers": 0,
                "tail_layers": 1,
            },
            "ensemble": {"members": 4, "noise_dim": 8},
            "masking": {"strategies": {"targets": 1.0}},
        }
    )
    return series, cfg


@pytest.mark.parametrize("detail", [["s"], []])
def test_detail_inputs_reach_the_members_point_by_point(one_thread, detail):
    """With s as detail the model learns b = 0.8 s value by value; without, 16 features per token
    cannot carry 64 independent values and the error stays near the spread of b."""
    torch.manual_seed(0)
    series, cfg = detail_toy(detail)
    model = AtmoRep(cfg, {"s": 1, "b": 1, "b0": 1})
    loader = torch.utils.data.DataLoader(
        CubeDataset(series, cfg, length=300 * 8, seed=0), batch_size=8
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for batch in loader:
        loss = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    test = torch.utils.data.default_collate(
        [CubeDataset(series, cfg, length=16, seed=9)[i] for i in range(16)]
    )
    with torch.no_grad():
        p = model(test, members=4)["b"].mean(dim=1)
    y = test["target"]["b"].flatten(1, -2)[test["masked"]["b"].flatten(1)]
    error = (p - y).abs().mean().item() / y.abs().mean().item()
    if detail:
        assert error < 0.1, error
    else:
        assert error > 0.5, error


def test_detail_must_name_an_input_field():
    _, cfg = detail_toy(["s"])
    tree = cfg.model_dump(mode="json")
    tree["fields"]["b"]["detail"] = ["b"]
    with pytest.raises(ValueError, match="fields.b.detail: 'b' must be an input field"):
        AtmoRepConfig.model_validate(tree)


def test_missing_target_values_are_left_out_of_the_loss(small_pair, tmp_path, one_thread):
    # every other HR column of t2m is missing (NaN, the source sets missing: mask): half the targets
    hr = xr.load_dataset(small_pair / "hr.nc")
    hr["t2m"][:, :, ::2] = np.nan
    hr.to_netcdf(tmp_path / "hr.nc")
    t2m = {"t2m": {"name": "t2m", "units": "K"}}
    cfg = AtmoRepConfig.model_validate(
        {
            "data": {
                "lr": {"path": str(small_pair / "lr.nc"), "variables": t2m},
                "hr": {"path": str(tmp_path / "hr.nc"), "variables": t2m, "missing": "mask"},
            },
            "fields": {
                "coarse": {"source": "lr", "variables": ["t2m"], "predict": False},
                "t2m": {"source": "hr"},
            },
            "token": {"time": 2, "y": 4, "x": 4},
            "neighbourhood": {"time": 2, "y": 2, "x": 2},
            "network": {
                "width": 16,
                "heads": 2,
                "encoder_layers": 1,
                "decoder_layers": 1,
                "tail_layers": 1,
            },
            "ensemble": {"members": 4, "noise_dim": 8},
            "masking": {"strategies": {"targets": 1.0}},
        }
    )
    pair = open_pair(cfg.data)
    series = load_series(cfg, pair, load_or_compute_stats(pair, cfg.data))
    data = CubeDataset(series, cfg, length=4, seed=0)
    batch = torch.utils.data.default_collate([data[i] for i in range(4)])
    target, valid = batch["target"]["t2m"], batch["valid"]["t2m"]
    columns = batch["origin"][:, 2, None] + torch.arange(8)  # each sample's HR columns
    odd = (columns % 2 == 1)[:, None, None, None, :].expand(
        -1, 1, 4, 8, -1
    )  # (B, L, hours, rows, columns)
    assert torch.equal(untokenize(valid, data.geometry.token), odd)  # exactly the missing columns
    assert (target[~valid] == 0).all() and torch.isfinite(batch["input"]["coarse"]).all()

    model = AtmoRep(cfg, {name: series.levels(name) for name in cfg.fields}).eval()
    torch.nn.init.normal_(model.head["t2m"][-1].weight, std=0.1)  # as if trained: members differ

    def loss(batch: dict) -> torch.Tensor:
        return model.loss(batch, generator=torch.Generator().manual_seed(1))

    before = loss(batch)
    refilled = {**batch, "target": {"t2m": torch.where(valid, target, 1e3)}}
    assert torch.equal(loss(refilled), before)  # the missing values' fill is ignored
    assert not torch.equal(
        loss({**batch, "target": {"t2m": torch.where(valid, target + 1, target)}}), before
    )
    without_validity = {k: v for k, v in refilled.items() if k != "valid"}
    assert loss(without_validity) > 10 * before  # as the loss was: the fill counted

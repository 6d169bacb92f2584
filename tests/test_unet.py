"""The conditional UNet backbone: shapes, zero start, periodicity, learning, precision, layout."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from finescale.nn import UNet, UNetArchitecture, UNetSettings, count_parameters
from finescale.nn.unet import SelfAttention

pytestmark = pytest.mark.usefixtures("one_thread")


def small(**overrides: object) -> UNetSettings:
    """A small three-level network (downsampling factor 4) that runs fast on a CPU."""
    fields: dict[str, object] = {
        "in_channels": 2,
        "cond_channels": 3,
        "out_channels": 2,
        "base_width": 16,
        "channel_mult": (1, 2, 2),
        "blocks_per_level": 1,
        "attention_levels": (2,),
        "attention_heads": 2,
        "noise_embedding_dim": 32,
    }
    return UNetSettings(**(fields | overrides))


def inputs(s: UNetSettings, b: int, h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, s.in_channels, h, w, generator=g)
    c_noise = torch.randn(b, generator=g)
    cond = torch.randn(b, s.cond_channels, h, w, generator=g)
    return x, c_noise, cond


def randomise_output(model: UNet, seed: int = 0) -> UNet:
    """Give the zero-initialised output layer weights, so the output depends on the input."""
    torch.manual_seed(seed)
    torch.nn.init.normal_(model.output.weight, std=0.1)
    torch.nn.init.normal_(model.output.bias, std=0.1)
    return model


@pytest.mark.parametrize("use_noise", [True, False])
@pytest.mark.parametrize("attention_levels", [(2,), (1, 2), ()])
@pytest.mark.parametrize("periodic_x", [False, True])
def test_odd_sizes_give_the_input_shape(use_noise, attention_levels, periodic_x):
    s = small(use_noise=use_noise, attention_levels=attention_levels, periodic_x=periodic_x)
    model = randomise_output(UNet(s))
    x, c_noise, cond = inputs(s, 3, 37, 50)
    y = model(x, c_noise if use_noise else None, cond)
    assert y.shape == (3, s.out_channels, 37, 50)
    assert torch.isfinite(y).all() and y.std() > 0


def test_attention_is_built_only_where_asked():
    def n_attention(levels: tuple[int, ...]) -> int:
        model = UNet(small(attention_levels=levels))
        return sum(m.attention is not None for m in model.modules() if hasattr(m, "attention"))

    assert n_attention(()) == 0
    # level 2 (coarsest): 1 encoder block + 2 middle blocks + 2 decoder blocks
    assert n_attention((2,)) == 5
    assert n_attention((1, 2)) == 5 + 1 + 2


def test_self_attention_matches_a_reference_per_head():
    channels, heads = 12, 3
    torch.manual_seed(0)
    attention = SelfAttention(channels, heads)
    x = torch.randn(2, channels, 5, 7).to(memory_format=torch.channels_last)
    with torch.no_grad():
        qkv = attention.qkv(attention.norm(x)).flatten(2)  # (B, 3C, HW): q, k, v, heads within
        q, k, v = (t.reshape(2, heads, channels // heads, 35) for t in qkv.split(channels, dim=1))
        weights = torch.softmax(
            torch.einsum("bhdi,bhdj->bhij", q, k) / (channels // heads) ** 0.5, -1
        )
        mixed = torch.einsum("bhij,bhdj->bhdi", weights, v).reshape(2, channels, 5, 7)
        expected = (x + attention.proj(mixed)) / 2**0.5
        torch.testing.assert_close(attention(x), expected, rtol=1e-4, atol=1e-5)


def test_untrained_model_returns_zeros():
    s = small()
    model = UNet(s)
    x, c_noise, cond = inputs(s, 3, 21, 30)
    y = model(x, c_noise, cond)
    assert torch.equal(y, torch.zeros_like(y))


def test_noise_level_changes_the_output():
    s = small()
    model = randomise_output(UNet(s))
    x, c_noise, cond = inputs(s, 2, 16, 16)
    assert not torch.allclose(model(x, c_noise, cond), model(x, c_noise + 0.5, cond), atol=1e-4)


@pytest.mark.parametrize("periodic_x", [True, False])
def test_periodic_x_makes_the_network_equivariant_to_shifts_in_x(periodic_x):
    s = small(periodic_x=periodic_x)
    model = randomise_output(UNet(s)).eval()
    # W divisible by the downsampling factor 4 so pooling cells align; H odd to exercise padding.
    x, c_noise, cond = inputs(s, 2, 13, 32)
    k = 8  # a multiple of 4

    def roll(t: torch.Tensor) -> torch.Tensor:
        return torch.roll(t, shifts=k, dims=-1)

    with torch.no_grad():
        y = model(x, c_noise, cond)
        y_rolled = model(roll(x), c_noise, roll(cond))
    err = (y_rolled - roll(y)).abs().max() / y.abs().max()
    if periodic_x:
        assert err < 1e-5
    else:
        assert err > 1e-2  # zero padding at the x edges breaks the symmetry


def _train(model: UNet, batch, steps: int, lr: float = 3e-3) -> tuple[float, float]:
    """Adam on MSE for fresh batches; returns the loss on a held-out batch before and after."""
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    x, c_noise, cond, target = batch()

    def held_out() -> float:
        with torch.no_grad():
            return F.mse_loss(model(x, c_noise, cond), target).item()

    before = held_out()
    for _ in range(steps):
        xb, cb, condb, yb = batch()
        loss = F.mse_loss(model(xb, cb, condb), yb)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return before, held_out()


def toy_settings(use_noise: bool) -> UNetSettings:
    return UNetSettings(
        in_channels=1,
        cond_channels=1,
        out_channels=1,
        base_width=16,
        channel_mult=(1, 2),
        blocks_per_level=1,
        attention_levels=(),
        noise_embedding_dim=32,
        use_noise=use_noise,
    )


def toy_batches(target_of, seed: int = 1):
    """Batches of 8 16x16 patches: x is noise, cond a random field, c_noise uniform in [-3, 3]."""
    g = torch.Generator().manual_seed(seed)

    def batch():
        x = torch.randn(8, 1, 16, 16, generator=g)
        c_noise = (2 * torch.rand(8, generator=g) - 1) * 3
        cond = torch.randn(8, 1, 16, 16, generator=g)
        return x, c_noise, cond, target_of(c_noise, cond)

    return batch


def noise_dependent_target(c_noise: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    return torch.sin(c_noise)[:, None, None, None] * cond


@pytest.mark.parametrize("use_noise", [True, False])
def test_the_noise_embedding_lets_the_model_fit_a_noise_dependent_target(use_noise):
    torch.manual_seed(0)
    model = UNet(toy_settings(use_noise))
    before, after = _train(model, toy_batches(noise_dependent_target), steps=150)
    if use_noise:
        assert after < before / 10
    else:
        # Blind to c_noise, the best guess of sin(c_noise) * cond is 0: no real progress possible.
        assert after > before / 2


def test_plain_conditional_unet_learns_a_conditional_mapping():
    torch.manual_seed(0)
    model = UNet(toy_settings(use_noise=False))

    def smoothed_square(c_noise: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(cond**2, 3, stride=1, padding=1, count_include_pad=False)

    before, after = _train(model, toy_batches(smoothed_square), steps=150)
    assert after < before / 10


def global_batches(seed: int = 1):
    """Batches whose target sin(3 g) * field depends on a state g in [-1, 1] that the
    conditioning carries as a channel constant over the patch (as a domain mean is)."""
    g = torch.Generator().manual_seed(seed)

    def batch():
        x = torch.randn(8, 1, 16, 16, generator=g)
        field = torch.randn(8, 1, 16, 16, generator=g)
        state = (2 * torch.rand(8, 1, 1, 1, generator=g) - 1).expand(-1, 1, 16, 16)
        return x, None, torch.cat([field, state], dim=1), torch.sin(3 * state) * field

    return batch


def test_global_channels_through_film_fit_a_state_dependent_target_better():
    after = {}
    for film in (False, True):
        torch.manual_seed(0)
        settings = toy_settings(use_noise=False).model_copy(
            update={"cond_channels": 2, "global_channels": (1,) if film else ()}
        )
        model = UNet(UNetSettings(**settings.model_dump()))
        before, after[film] = _train(model, global_batches(), steps=150)
    # measured: 0.386 before; 0.030 as a plain channel, 0.019-0.020 through FiLM (two seeds)
    assert after[True] < before / 15
    assert after[True] < 0.8 * after[False]


def test_global_channels_must_be_channels_of_cond():
    with pytest.raises(ValidationError, match="global_channels"):
        small(global_channels=(3,))


def test_bf16_autocast_is_close_to_fp32():
    s = small()
    torch.manual_seed(0)
    model = UNet(s)
    x, c_noise, cond = inputs(s, 4, 16, 16)
    target = torch.sin(cond[:, :2]) * torch.cos(c_noise)[:, None, None, None]
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(5):  # move the output layer off zero
        loss = F.mse_loss(model(x, c_noise, cond), target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        y32 = model(x, c_noise, cond)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y16 = model(x, c_noise, cond)
    assert y16.dtype == torch.float32  # returned in the input's dtype
    assert y32.abs().max() > 1e-3
    rel = (y16 - y32).norm() / y32.norm()
    assert rel < 0.05


def test_channels_last_matches_contiguous():
    s = small(periodic_x=True)
    model = randomise_output(UNet(s)).eval()
    x, c_noise, cond = inputs(s, 2, 19, 24)
    with torch.no_grad():
        y = model(x, c_noise, cond)
        model_cl = model.to(memory_format=torch.channels_last)
        cl = torch.channels_last
        y_cl = model_cl(x.to(memory_format=cl), c_noise, cond.to(memory_format=cl))
    torch.testing.assert_close(y_cl, y, rtol=1e-4, atol=1e-5)


def test_forward_compiles_as_one_graph():
    s = small(periodic_x=True)
    model = randomise_output(UNet(s)).eval()
    x, c_noise, cond = inputs(s, 2, 13, 18)
    compiled = torch.compile(model, backend="eager", fullgraph=True)  # fails on any graph break
    with torch.no_grad():
        torch.testing.assert_close(compiled(x, c_noise, cond), model(x, c_noise, cond))


def test_parameter_count_grows_quadratically_with_width():
    counts = [count_parameters(UNet(small(base_width=w))) for w in (16, 32, 64)]
    assert counts[0] < counts[1] < counts[2]
    # Convolutions dominate and scale with width^2; biases, norms and the stem scale linearly.
    for smaller, larger in itertools.pairwise(counts):
        assert 3.0 < larger / smaller < 4.0
    model = UNet(small())
    model.stem.weight.requires_grad_(False)
    assert (
        count_parameters(model)
        == count_parameters(model, trainable_only=False) - model.stem.weight.numel()
    )


def test_settings_are_checked_and_frozen():
    with pytest.raises(ValidationError, match="attention_levels"):
        small(channel_mult=(1, 2), attention_levels=(2,))
    with pytest.raises(ValidationError, match="attention_heads"):
        small(attention_heads=3)
    with pytest.raises(ValidationError):
        small(unknown=1)
    with pytest.raises(ValidationError):
        small().base_width = 8


def test_defaults_are_the_config_s_and_reach_the_network():
    """UNetSettings is the config's network section (UNetArchitecture) plus wiring: its defaults
    are the config's (one block per level, no attention), and they shape the network built."""
    wiring = {"in_channels": 1, "cond_channels": 2, "out_channels": 1}
    s = UNetSettings(**wiring)
    assert isinstance(s, UNetArchitecture)
    assert s == UNetSettings(**wiring, **UNetArchitecture().model_dump())
    model = UNet(s)
    assert [len(blocks) for blocks in model.encoder] == [1, 1, 1]
    assert [len(blocks) for blocks in model.decoder] == [2, 2, 2]
    assert not any(isinstance(m, SelfAttention) for m in model.modules())
    deeper = UNet(UNetSettings(**wiring, blocks_per_level=2, attention_levels=(2,)))
    assert [len(blocks) for blocks in deeper.encoder] == [2, 2, 2]
    assert sum(isinstance(m, SelfAttention) for m in deeper.modules()) == 2 + 2 + 3  # enc, mid, dec
    # the architecture is checked on its own (a config section fails before any network is built)
    with pytest.raises(ValidationError, match="attention_heads=4 does not divide the width 6"):
        UNetArchitecture(base_width=6, attention_levels=(0,))
    with pytest.raises(ValidationError, match="channel_mult entries must be >= 1"):
        UNetArchitecture(channel_mult=(1, 0))
    with pytest.raises(ValidationError, match="channel_mult"):
        UNetArchitecture(channel_mult=())
    with pytest.raises(ValidationError, match="noise_embedding_dim must be even"):
        UNetSettings(**wiring, noise_embedding_dim=33)


def test_missing_inputs_are_named():
    s = small()
    x, _, cond = inputs(s, 1, 8, 8)
    with pytest.raises(ValueError, match="c_noise"):
        UNet(s)(x, None, cond)
    with pytest.raises(ValueError, match="cond"):
        UNet(s)(x, torch.zeros(1), None)

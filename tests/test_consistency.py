"""Consistency distillation (finescale.diffusion.consistency) on a toy with a known answer."""

import pytest
import torch
from torch import nn

from finescale.diffusion.consistency import (
    consistency,
    distillation_levels,
    distillation_loss,
    sample_consistency,
)
from finescale.diffusion.samplers import karras_sigmas, sample

pytestmark = pytest.mark.usefixtures("one_thread")

SIGMA_MIN, SIGMA_MAX, SIGMA_DATA = 0.002, 80.0, 1.0
WIDTH = 0.1  # each mode's standard deviation
P_UP = {0: 0.25, 1: 0.75}  # the condition sets the weight of the mode at +1


def exact_denoiser(x, sigma, cond):
    """E[y | x] for y ~ p N(+1, w^2) + (1 - p) N(-1, w^2) and x = y + sigma eps, p from ``cond``."""
    p_up = torch.where(cond == 1, P_UP[1], P_UP[0]).to(x.dtype).reshape(x.shape)
    var = WIDTH**2 + sigma**2
    log_up = torch.log(p_up) - (x - 1) ** 2 / (2 * var)
    log_down = torch.log(1 - p_up) - (x + 1) ** 2 / (2 * var)
    r_up = torch.sigmoid(log_up - log_down)
    shrink = WIDTH**2 / var
    mean_up, mean_down = 1 + shrink * (x - 1), -1 + shrink * (x + 1)
    return r_up * mean_up + (1 - r_up) * mean_down


def draw_data(n, cond, generator):
    up = torch.rand(n, 1, generator=generator) < torch.where(cond == 1, P_UP[1], P_UP[0]).reshape(
        n, 1
    )
    return torch.where(up, 1.0, -1.0) + WIDTH * torch.randn(n, 1, generator=generator)


class Toy(nn.Module):
    """F(x_in, c_noise, cond): a small MLP of the scaled input, noise level and condition."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(3, 64), nn.SiLU(), nn.Linear(64, 64), nn.SiLU(), nn.Linear(64, 1)
        )

    def forward(self, x_in, c_noise, cond):
        return self.net(torch.cat([x_in, c_noise[:, None], cond.to(x_in.dtype)[:, None]], dim=1))


def test_the_consistency_function_is_the_identity_at_sigma_min():
    x = torch.randn(5, 1)
    wild = lambda x_in, c_noise, cond: 1e3 * torch.ones_like(x_in)
    assert torch.equal(
        consistency(wild, x, torch.tensor(SIGMA_MIN), None, SIGMA_DATA, SIGMA_MIN), x
    )
    assert not torch.allclose(
        consistency(wild, x, torch.tensor(1.0), None, SIGMA_DATA, SIGMA_MIN), x
    )


def test_the_toy_teacher_samples_its_distribution():
    # the exact denoiser through the teacher's ODE solver: the reference the student must match
    g = torch.Generator().manual_seed(0)
    cond = torch.tensor([0, 1]).repeat_interleave(4000)
    y = sample(
        lambda x, s: exact_denoiser(x, s, cond),
        torch.randn(8000, 1, generator=g),
        karras_sigmas(40, SIGMA_MIN, SIGMA_MAX),
        solver="heun",
    )
    for c, p in P_UP.items():
        assert (y[cond == c] > 0).float().mean() == pytest.approx(p, abs=0.03)
    assert ((y.abs() - 1).abs() < 4 * WIDTH).float().mean() > 0.99


@pytest.fixture(scope="module")
def student():
    """A student distilled from the exact teacher, from scratch (5000 steps of 256, cosine
    learning-rate decay; about 16 s of one core)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    net, target = Toy(), Toy()
    target.load_state_dict(net.state_dict())
    target.requires_grad_(False)
    levels = distillation_levels(18, SIGMA_MIN, SIGMA_MAX)
    steps = 5000
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        cond = (torch.rand(256, generator=g) < 0.5).long()
        y = draw_data(256, cond, g)
        loss = distillation_loss(
            net,
            target,
            lambda x, s, c=cond: exact_denoiser(x, s, c),
            y,
            cond,
            levels,
            SIGMA_DATA,
            generator=g,
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        decay.step()
        with torch.no_grad():  # the target follows the student slowly
            for t, s in zip(target.parameters(), net.parameters()):
                t.lerp_(s, 0.05)
    return net.eval()


@pytest.mark.parametrize(
    ("levels", "at_modes", "widest"),
    [([SIGMA_MAX], 0.8, 2.6), ([SIGMA_MAX, 0.8], 0.88, 2.2)],
    ids=["1 call", "2 calls"],
)
def test_the_distilled_student_samples_both_modes_with_their_weights(
    student, levels, at_modes, widest
):
    # the teacher's own samples (test above): the weights within 0.03, 99 % within 4 widths of
    # a mode; the student's within the bounds below (1 call: 0.85 at the modes, width 2.4 w;
    # 2 calls: 0.91, 1.9 w when written)
    g = torch.Generator().manual_seed(2)
    cond = torch.tensor([0, 1]).repeat_interleave(4000)

    def f(x, sigma):
        return consistency(student, x, sigma, cond, SIGMA_DATA, SIGMA_MIN)

    y = sample_consistency(f, torch.randn(8000, 1, generator=g), levels, SIGMA_MIN, generator=g)[
        :, 0
    ]
    for c, p in P_UP.items():  # the condition's mode weights: members are draws, not one answer
        assert (y[cond == c] > 0).float().mean() == pytest.approx(p, abs=0.05)
    # at the modes, not between them (a student regressing to the mean would sit at +-0.5)
    assert ((y.abs() - 1).abs() < 3 * WIDTH).float().mean() > at_modes
    assert y[(cond == 1) & (y > 0)].std() < widest * WIDTH

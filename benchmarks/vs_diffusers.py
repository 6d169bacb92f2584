"""Benchmark: finescale's UNet and sampler beside diffusers' UNet2DModel and its EDM schedulers.

What a user would pick instead of finescale's network and sampler: diffusers' ``UNet2DModel``
with as many parameters as ours (same layout: three levels, one residual block per level down
and two up, no attention; the width is searched to match the parameter count), sampled with
diffusers' EDM schedulers: ``EDMEulerScheduler`` (Karras levels) and
``EDMDPMSolverMultistepScheduler`` (DPM-Solver++(2M) in EDM form) on its default Karras levels
and on its "exponential" levels, which are ours (equal steps in ln sigma). Every scheduler is
configured as ours where the concept is the same (sigma range 0.002-80, rho 7, sigma_data as
our model's, EDM's F as the network output, final level 0, order 2, midpoint form);
:data:`DIFFUSERS_DIFFERENCES` lists what cannot be matched. Both networks are trained the same
way, as the raw network F of the same residual EDM model (the same data, loss,
preconditioning, optimiser and steps) on the alps-small world, then:

1. training step time (forward, backward, Adam; the same batch), the two alternating step by
   step, median after warm-up;
2. fair CRPS and spread per variable against network calls on validation hours (the test block
   is never read): every sampler on a grid of network calls (diffusers' every 4 calls up to 64,
   ours every 4 up to 32), each driving the *same* trained network from the same initial
   noise (this isolates the solver), beside the converged solution of the same ODE (Heun, 40
   steps on Karras levels: 79 calls) as the reference; their network with every sampler at a
   few calls too;
3. for each sampler, the fewest calls N* on its grid from which every point comes within 2 % of
   the reference's CRPS, either side (and N** that also keep the spread within 5 %); so N* is
   located to 4 calls. N* is chosen on validation hours;
4. the time to generate a 16-member ensemble of a 256 x 256 domain with 4 variables: ours (our
   network, our sampler, its N*) and each diffusers sampler (their network, its N*), run
   interleaved call by call in one process; per-call medians and interquartile ranges, the
   load average before and after. The headline ratio is ours against the *best* diffusers
   sampler (the fastest to within 2 %);
5. peak memory of a training step and of one generation call, each model in a fresh process
   (CPU: peak RSS minus the RSS before the task; CUDA: peak allocated minus allocated before);
6. throughput (training samples/s, members/s) and model FLOPs per step (FlopCounterMode); on a
   GPU with a known bf16 peak, the model FLOP utilisation.

    python benchmarks/vs_diffusers.py --out runs/vs-diffusers                # CPU: ~35 min, 2 cores
    python benchmarks/vs_diffusers.py --out runs/vs-diffusers-quick --quick  # smoke test, minutes
    python benchmarks/vs_diffusers.py --out runs/vs-diffusers-gpu --device cuda --bf16

Needs the ``bench`` extra (``pip install -e .[bench]``: diffusers). Stages whose output exists
are reused (the world, the two trained checkpoints). Prints the tables and writes every number
to ``--json`` (default ``<out>/vs-diffusers.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil
import torch
from diffusers import EDMDPMSolverMultistepScheduler, EDMEulerScheduler, UNet2DModel
from results import begin, write_results  # benchmarks/results.py (run from their folder)
from stages import Stages
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from finescale.atmorep.model import fair_crps
from finescale.config import ExperimentConfig, ModelConfig, TrainConfig
from finescale.data.pairs import split_times
from finescale.data.patches import LazyFields, PatchDataset
from finescale.data.world import preset, simulate
from finescale.data.world.simulate import WORLD_FILE
from finescale.diffusion import samplers
from finescale.diffusion.edm import edm_loss
from finescale.diffusion.settings import EDMSettings
from finescale.models.build import build_model
from finescale.models.diffusion import DiffusionModel
from finescale.nn.settings import UNetArchitecture, UNetSettings
from finescale.nn.unet import UNet, count_parameters
from finescale.pipeline import world_config
from finescale.training import fit, prepare, residual_scale

#: DPM-Solver++(2M) as ours where the concept is the same (order 2, data prediction, midpoint,
#: final sigma 0)
DPM_SOLVER = {
    "solver_order": 2,
    "algorithm_type": "dpmsolver++",
    "solver_type": "midpoint",
    "lower_order_final": True,
    "euler_at_final": False,
    "thresholding": False,
    "final_sigmas_type": "zero",
}

#: the JSON's layout; 1 (no key) was the Euler-only comparison of issue 6
FORMAT = 2
OUR_NETWORK = UNetArchitecture(
    base_width=16, channel_mult=(1, 2, 2)
)  # the skill benchmark's CPU network
OURS = "dpmpp_2m"  # DPM++(2M) on log-uniform levels: the configs' sampler
SHIPPED_CALLS = 12  # the configs' number of calls (docs/configuration.md)
#: 40 Heun steps on Karras levels: the converged solution of the ODE
REFERENCE, REFERENCE_CALLS = "heun", 79
CRPS_TOLERANCE, SPREAD_TOLERANCE = 0.02, 0.05
SIGMA_MIN, SIGMA_MAX, RHO = 0.002, 80.0, 7.0
#: diffusers' schedulers compared: name -> (class, settings besides sigma_data, which is the
#: model's). "epsilon" is EDM's F (c_out = s s_d / sqrt(s^2 + s_d^2), not the noise).
DIFFUSERS: dict[str, tuple[type, dict[str, Any]]] = {
    "edm_euler": (
        EDMEulerScheduler,
        {"sigma_schedule": "karras", "final_sigmas_type": "zero"},
    ),
    "edm_dpmsolver_karras": (
        EDMDPMSolverMultistepScheduler,
        {"sigma_schedule": "karras", **DPM_SOLVER},
    ),
    # equal steps in ln sigma: our levels
    "edm_dpmsolver_exponential": (
        EDMDPMSolverMultistepScheduler,
        {"sigma_schedule": "exponential", **DPM_SOLVER},
    ),
}
#: what cannot be set in diffusers to match ours (the same for every diffusers scheduler)
DIFFUSERS_DIFFERENCES = [
    (
        "initial noise: diffusers scales it by init_noise_sigma = sqrt(sigma_max^2 + 1) = 80.006,"
        " ours by sigma_max = 80 (a fixed property, +0.008 %)"
    ),
    (
        "state: diffusers keeps the sample in the network's dtype (float32) and its levels in"
        " float32; ours integrates in float64"
    ),
    (
        "c_noise: diffusers passes its timestep 0.25 ln(sigma), computed in float32; the same"
        " formula as ours"
    ),
]
#: what each diffusers scheduler is, beside ours
NOTES = {
    "edm_euler": "first order, on Karras levels (EDM's choice for Euler and Heun)",
    "edm_dpmsolver_karras": "our algorithm (DPM-Solver++(2M), midpoint form, first order on the "
    "first step and on the last step to 0) on diffusers' default levels (Karras, rho 7)",
    "edm_dpmsolver_exponential": "our algorithm on our levels (equal steps in ln sigma): ours "
    "up to the differences listed",
}
LABELS = {
    REFERENCE: "finescale Heun, Karras (reference)",
    OURS: "finescale DPM++(2M), log-uniform (ours)",
    "edm_euler": "diffusers EDMEulerScheduler, Karras",
    "edm_dpmsolver_karras": "diffusers EDMDPMSolverMultistep, Karras",
    "edm_dpmsolver_exponential": "diffusers EDMDPMSolverMultistep, exponential",
}
#: dense bf16 peak FLOP/s of GPUs by name fragment, for the model FLOP utilisation
GPU_PEAK_BF16 = {
    "H100 SXM": 989e12,
    "H100 PCIe": 756e12,
    "H100": 989e12,
    "H200": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10G": 70e12,
}


@dataclass(frozen=True)
class Sizes:
    """How much the run does. Grids count network calls, not steps."""

    days: float = 30.0  # alps-small world length
    train_steps: int = 150  # per network
    batch: int = 8  # training patches per step
    patch: int = 64
    eval_times: int = 2  # validation hours scored (whole 80 x 200 domain)
    eval_members: int = 8
    grid: tuple[int, ...] = tuple(range(4, 65, 4))  # each diffusers sampler, our network
    our_grid: tuple[int, ...] = tuple(range(4, 33, 4))  # ours, our network
    their_calls: tuple[int, ...] = (12,)  # their network: every sampler at these calls
    timing_steps: int = 10  # training steps timed per network (after 3 of warm-up)
    call_repeats: int = 5  # bare network calls timed per network, alternating
    domain: int = 256  # generation: members x variables x domain x domain
    members: int = 16


QUICK = Sizes(
    days=4.0,
    train_steps=20,
    eval_times=1,
    eval_members=4,
    grid=(4, 8),
    our_grid=(4, 8),
    their_calls=(4,),
    timing_steps=2,
    call_repeats=2,
    domain=64,
    members=4,
)


# --------------------------------------------------------------------------------------------
# the two networks


class DiffusersNet(nn.Module):
    """diffusers' UNet2DModel as the raw network F(x_in, c_noise, cond) of finescale's EDM model:
    x_in (B, C, H, W) and cond concatenated along channels, c_noise (B,) as its timestep."""

    def __init__(self, unet: UNet2DModel):
        super().__init__()
        self.unet = unet

    def forward(self, x: Tensor, c_noise: Tensor, cond: Tensor) -> Tensor:
        return self.unet(torch.cat([x, cond.to(x.dtype)], dim=1), c_noise).sample.to(x.dtype)


def diffusers_unet(in_channels: int, out_channels: int, width: int) -> UNet2DModel:
    """UNet2DModel laid out like our UNet with OUR_NETWORK: widths (w, 2w, 2w), one block per level
    down (two up), no attention; GroupNorm groups of at least 3 channels, as ours."""
    groups = max(g for g in range(1, min(32, width // 3) + 1) if width % g == 0)
    return UNet2DModel(
        in_channels=in_channels,
        out_channels=out_channels,
        layers_per_block=1,
        block_out_channels=(width, 2 * width, 2 * width),
        down_block_types=("DownBlock2D",) * 3,
        up_block_types=("UpBlock2D",) * 3,
        norm_num_groups=groups,
        add_attention=False,
    )


def matching_width(in_channels: int, out_channels: int, parameters: int) -> int:
    """The UNet2DModel width whose parameter count is nearest to ``parameters``."""
    counts = {
        w: count_parameters(diffusers_unet(in_channels, out_channels, w)) for w in range(8, 65)
    }
    return min(counts, key=lambda w: abs(counts[w] - parameters))


@dataclass(frozen=True)
class Dims:
    """Channels of the diffusion model: targets and conditioning (LR, statics, features)."""

    out: int
    cond: int


def raw_network(kind: str, dims: Dims, width: int) -> nn.Module:
    """Our UNet or diffusers' (``width``) as F(x_in, c_noise, cond) for cond = [conditioning,
    mu]."""
    if kind == "ours":
        net = OUR_NETWORK.model_dump()
        return UNet(
            UNetSettings(
                in_channels=dims.out,
                cond_channels=dims.cond + dims.out,
                out_channels=dims.out,
                use_noise=True,
                **net,
            )
        )
    return DiffusersNet(diffusers_unet(2 * dims.out + dims.cond, dims.out, width))


def experiment(world: Path, out: Path, sizes: Sizes, device: str, bf16: bool) -> ExperimentConfig:
    """The world's data with a residual diffusion model over the interpolation (no regression
    stage)."""
    train = TrainConfig(
        out=out,
        patch_size=sizes.patch,
        batch_size=sizes.batch,
        max_steps=sizes.train_steps,
        learning_rate=1e-3,
        warmup_steps=min(50, sizes.train_steps // 4),
        val_every_steps=sizes.train_steps,
        val_batches=1,
        accelerator="gpu" if device == "cuda" else "cpu",
        precision="bf16-mixed" if bf16 else "32",
        num_workers=0,
    )
    model = ModelConfig(kind="diffusion", residual="interpolation", network=OUR_NETWORK)
    return ExperimentConfig(
        name="vs-diffusers", data=world_config(world).data, model=model, train=train
    )


def ema_weights(checkpoint: Path) -> dict[str, Tensor]:
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    return {
        k.removeprefix("ema.module."): v for k, v in state.items() if k.startswith("ema.module.")
    }


# --------------------------------------------------------------------------------------------
# sampling


def diffusers_scheduler(name: str, sigma_data: float) -> Any:
    """A fresh diffusers scheduler ``name`` (a key of :data:`DIFFUSERS`) for ``sigma_data``."""
    cls, settings = DIFFUSERS[name]
    return cls(
        sigma_min=SIGMA_MIN,
        sigma_max=SIGMA_MAX,
        sigma_data=sigma_data,
        rho=RHO,
        prediction_type="epsilon",
        **settings,
    )


def scheduler_settings(name: str, sigma_data: float) -> dict[str, Any]:
    """The whole configuration diffusers holds for scheduler ``name`` (defaults included)."""
    config = diffusers_scheduler(name, sigma_data).config
    return {k: v for k, v in config.items() if not k.startswith("_")}


def diffusers_sample(
    scheduler: Any, call: Callable[[Tensor, Tensor], Tensor], noise: Tensor, steps: int
) -> Tensor:
    """A diffusers EDM scheduler's loop as its pipelines run it: ``call(x_in, c_noise)`` is F.

    Both EDM schedulers make one network call per step, so ``steps`` is the number of calls.
    """
    scheduler.set_timesteps(steps, device=noise.device)
    x = noise * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        x_in = scheduler.scale_model_input(x, t)
        x = scheduler.step(call(x_in, t.expand(x.shape[0])), t, x).prev_sample
    return x


def steps_for(sampler: str, calls: int) -> int:
    """Steps of ``sampler`` that make ``calls`` network calls (Heun: 2 N - 1; the others: N)."""
    if sampler == REFERENCE:
        if calls % 2 == 0:
            raise ValueError(f"Heun to sigma 0 makes an odd number of calls, not {calls}")
        return (calls + 1) // 2
    return calls


def _nothing() -> None:
    return None


@torch.no_grad()
def members(
    model: DiffusionModel,
    cond: Tensor,
    mu: Tensor,
    noise: Tensor,
    sampler: str,
    calls: int,
    hook: Callable[[], None] = _nothing,
) -> Tensor:
    """Scaled residuals z (B, C, H, W) from ``noise`` (B, C, H, W), standardised units.

    ``sampler``: ours ("dpmpp_2m", log-uniform levels), the reference ("heun", Karras levels)
    or a key of :data:`DIFFUSERS`; ``calls`` network calls; ``hook()`` runs before each call.
    """
    steps = steps_for(sampler, calls)
    if sampler in (OURS, REFERENCE):
        if sampler == OURS:
            sigmas = samplers.log_uniform_sigmas(steps, SIGMA_MIN, SIGMA_MAX)
        else:
            sigmas = samplers.karras_sigmas(steps, SIGMA_MIN, SIGMA_MAX, RHO)

        def denoise(z: Tensor, sigma: Tensor) -> Tensor:
            hook()
            return model.denoise(z, sigma, cond, mu)

        return samplers.sample(denoise, noise, sigmas, solver=sampler)
    cond_mu = torch.cat([cond, mu], dim=1)

    def network(x_in: Tensor, c_noise: Tensor) -> Tensor:
        hook()
        return model.net(x_in, c_noise, cond_mu)

    scheduler = diffusers_scheduler(sampler, model.settings.sigma_data)
    return diffusers_sample(scheduler, network, noise, steps)


def autocast(device: str, bf16: bool) -> contextlib.AbstractContextManager:
    return torch.autocast(device, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def skill_plan(sizes: Sizes) -> dict[str, list[tuple[str, int]]]:
    """(sampler, calls) run on each network."""
    return {
        "ours": [
            (REFERENCE, REFERENCE_CALLS),
            *((OURS, n) for n in sizes.our_grid),
            *((name, n) for name in DIFFUSERS for n in sizes.grid),
        ],
        "theirs": [(name, n) for name in (OURS, *DIFFUSERS) for n in sizes.their_calls],
    }


def skill(
    models: dict[str, DiffusionModel],
    samples: list[dict[str, Tensor]],
    variables: tuple[str, ...],
    sizes: Sizes,
    device: str,
    bf16: bool,
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Fair CRPS and spread per variable (standardised units) for every network, sampler and
    number of calls of :func:`skill_plan`, every one from the same noise per sample.

    Also returns, for each number of calls both were run at on our network, the largest
    difference between a member of diffusers' DPM-Solver on exponential levels and of ours
    from the same noise, over the members' std (first sample): the two are one algorithm, so
    this checks the wiring (levels, c_noise, sigma_data, output scaling) of the diffusers loop.
    """
    rows = []
    kept: dict[tuple[str, int], Tensor] = {}
    for name, model in models.items():
        for sampler, calls in skill_plan(sizes)[name]:
            start = time.perf_counter()
            crps, spread = [], []
            counted = 0
            for k, sample in enumerate(samples):
                cond, base, target = (sample[key].to(device) for key in ("cond", "base", "target"))
                m = sizes.eval_members
                cond, base = cond.expand(m, -1, -1, -1), base.expand(m, -1, -1, -1)
                generator = torch.Generator(device).manual_seed(k)
                noise = torch.randn(base.shape, generator=generator, device=device)
                mu = model.mu(cond, base)
                calls_made = [0]

                def count(made: list[int] = calls_made) -> None:
                    made[0] += 1

                with autocast(device, bf16):
                    z = members(model, cond, mu, noise, sampler, calls, count)
                    y = model.combine(z.float(), mu)
                counted += calls_made[0]
                if name == "ours" and k == 0 and sampler in (OURS, "edm_dpmsolver_exponential"):
                    kept[sampler, calls] = y
                crps.append(fair_crps(y.permute(1, 2, 3, 0), target).mean(dim=(1, 2)))
                spread.append(y.std(dim=0).mean(dim=(1, 2)))
            if counted != calls * len(samples):
                raise RuntimeError(
                    f"{sampler} made {counted} network calls for {len(samples)} samples, "
                    f"expected {calls} each"
                )
            mean_crps, mean_spread = torch.stack(crps).mean(0), torch.stack(spread).mean(0)
            rows.append(
                {
                    "network": name,
                    "sampler": sampler,
                    "steps": steps_for(sampler, calls),
                    "calls": calls,
                    "wall_s": time.perf_counter() - start,
                    "crps": dict(zip(variables, mean_crps.tolist(), strict=True)),
                    "spread": dict(zip(variables, mean_spread.tolist(), strict=True)),
                }
            )
            print(
                f"  {name:6s} {sampler:26s} {calls:3d} calls: CRPS "
                f"{statistics.fmean(rows[-1]['crps'].values()):.4f} ({rows[-1]['wall_s']:.0f} s)",
                flush=True,
            )
    agreement = {}
    for (sampler, calls), y in kept.items():
        other = kept.get(("edm_dpmsolver_exponential", calls))
        if sampler == OURS and other is not None:
            agreement[str(calls)] = ((other - y).abs().max() / y.std(dim=0).mean()).item()
    return rows, agreement


def relative(rows: list[dict[str, Any]]) -> None:
    """CRPS and spread of each row relative to the reference (our network, Heun, 79 calls): per
    variable and the mean of the variables' ratios. For our network that is the solver's error
    alone; for theirs, network and solver."""
    ref = next(r for r in rows if r["network"] == "ours" and r["sampler"] == REFERENCE)
    for row in rows:
        for key in ("crps", "spread"):
            ratios = {v: row[key][v] / ref[key][v] for v in row[key]}
            row[f"{key}_rel_by_variable"] = ratios
            row[f"{key}_rel"] = statistics.fmean(ratios.values())


#: when a row counts as converged to the reference. "crps" (the headline's): the mean of the
#: variables' CRPS ratios within CRPS_TOLERANCE, either side; "crps_every_variable": each
#: variable's; "crps_and_spread": "crps" and the mean spread ratio within SPREAD_TOLERANCE (a
#: too narrow ensemble can lower the CRPS of a young model: docs/benchmarks.md)
CRITERIA = ("crps", "crps_every_variable", "crps_and_spread")


def converged(row: dict[str, Any], criterion: str) -> bool:
    """Whether ``row`` (with :func:`relative`'s ratios) meets ``criterion`` of :data:`CRITERIA`."""
    if criterion == "crps_every_variable":
        ratios = row["crps_rel_by_variable"].values()
        return all(abs(r - 1) <= CRPS_TOLERANCE for r in ratios)
    crps = abs(row["crps_rel"] - 1) <= CRPS_TOLERANCE
    if criterion == "crps":
        return crps
    return crps and abs(row["spread_rel"] - 1) <= SPREAD_TOLERANCE


def calls_needed(
    rows: list[dict[str, Any]], network: str, sampler: str, criterion: str
) -> int | None:
    """Fewest calls of ``sampler`` on ``network`` from which every row of its grid is
    :func:`converged`; None: not even the last one is."""
    line = sorted(
        (r for r in rows if r["network"] == network and r["sampler"] == sampler),
        key=lambda r: r["calls"],
    )
    for k, row in enumerate(line):
        if all(converged(r, criterion) for r in line[k:]):
            return row["calls"]
    return None


# --------------------------------------------------------------------------------------------
# timing


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: str) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def train_step(
    model: DiffusionModel,
    optimiser: torch.optim.Optimizer,
    batch: dict[str, Tensor],
    bf16: bool,
    device: str,
) -> None:
    optimiser.zero_grad(set_to_none=True)
    with autocast(device, bf16):
        loss = model.loss(batch)
    loss.backward()
    optimiser.step()


def training_speed(
    models: dict[str, DiffusionModel],
    batch: dict[str, Tensor],
    sizes: Sizes,
    device: str,
    bf16: bool,
) -> dict[str, dict[str, float]]:
    """Median step time of each network, the two alternating step by step on the same batch; FLOPs
    of one step."""
    copies = {name: copy.deepcopy(model).train() for name, model in models.items()}
    optimisers = {name: torch.optim.Adam(m.parameters(), lr=1e-4) for name, m in copies.items()}
    times: dict[str, list[float]] = {name: [] for name in copies}
    for _ in range(3 + sizes.timing_steps):
        for name, model in copies.items():
            times[name].append(
                timed(
                    lambda m=model, n=name: train_step(m, optimisers[n], batch, bf16, device),
                    device,
                )
            )
    out = {}
    for name, model in copies.items():
        with FlopCounterMode(display=False) as flops:
            train_step(model, optimisers[name], batch, bf16, device)
        step = statistics.median(times[name][3:])
        out[name] = {
            "step_s": step,
            "samples_per_s": sizes.batch / step,
            "flops_per_step": flops.get_total_flops(),
            "times_s": times[name][3:],
        }
    return out


def take_turns(
    jobs: dict[str, tuple[Callable[[Callable[[], None]], Any], int]], device: str
) -> dict[str, list[float]]:
    """Run ``jobs`` (name -> (job, network calls)) in threads that take turns one network call
    at a time; return each job's seconds per call.

    ``job(hook)`` must call ``hook()`` before each network call: there it hands the turn back.
    Only one job runs at a time, so each is timed alone but under the same load as the others,
    and the turn goes to the job furthest behind in its share of calls (stride scheduling), so
    a 12-call job's calls are spread over the whole run of a 64-call one. A timed call is one
    turn: the network call and the solver's work up to the next call (the last: to the end).
    The work before the first call (setting up levels, scaling the noise) is not timed.
    """
    go = {name: threading.Event() for name in jobs}
    back = {name: threading.Event() for name in jobs}
    finished: set[str] = set()
    errors: dict[str, BaseException] = {}

    def hand_back(name: str) -> None:
        sync(device)
        back[name].set()
        go[name].wait()
        go[name].clear()

    def work(name: str, job: Callable[[Callable[[], None]], Any]) -> None:
        go[name].wait()
        go[name].clear()
        try:
            job(lambda: hand_back(name))
            sync(device)
        except BaseException as error:  # noqa: BLE001 (re-raised in the main thread by turn())
            errors[name] = error
        finally:
            finished.add(name)
            back[name].set()

    def turn(name: str) -> float:
        back[name].clear()
        start = time.perf_counter()
        go[name].set()
        back[name].wait()
        elapsed = time.perf_counter() - start
        if name in errors:
            raise RuntimeError(f"timing job {name} failed") from errors[name]
        return elapsed

    threads = [
        threading.Thread(target=work, args=(name, job), name=name, daemon=True)
        for name, (job, _) in jobs.items()
    ]
    for thread in threads:
        thread.start()
    for name in jobs:
        turn(name)  # up to its first network call
    times: dict[str, list[float]] = {name: [] for name in jobs}
    live = [name for name in jobs if name not in finished]
    while live:
        name = min(live, key=lambda n: (len(times[n]) + 1) / jobs[n][1])
        times[name].append(turn(name))
        if name in finished:
            live.remove(name)
    for thread in threads:
        thread.join()
    for name, (_, calls) in jobs.items():
        if len(times[name]) != calls:
            raise RuntimeError(f"timing job {name} made {len(times[name])} calls, expected {calls}")
    return times


def spread_of(times: list[float]) -> dict[str, float]:
    """Median, quartiles and interquartile range (s) of per-call times."""
    q1, median, q3 = statistics.quantiles(times, n=4, method="inclusive")
    return {"median_s": median, "q1_s": q1, "q3_s": q3, "iqr_s": q3 - q1}


def generation_speed(
    models: dict[str, DiffusionModel],
    runs: dict[str, tuple[str, str, int]],
    dims: Dims,
    sizes: Sizes,
    device: str,
    bf16: bool,
) -> dict[str, Any]:
    """One ensemble (members x variables x domain^2) per run (name -> (network, sampler, calls)),
    the runs interleaved call by call (:func:`take_turns`); and the time of one bare network
    call, the networks alternating. Random conditioning: the cost does not depend on values.

    Per run: per-call median and IQR, the ensemble time as calls x median (robust to bursts of
    load) and as the sum of its calls, and the load average before and after.
    """
    generator = torch.Generator(device).manual_seed(0)
    shape = (sizes.members, dims.out, sizes.domain, sizes.domain)
    cond = torch.randn(
        (sizes.members, dims.cond, sizes.domain, sizes.domain), generator=generator, device=device
    )
    mu, noise = (
        torch.randn(shape, generator=generator, device=device),
        torch.randn(shape, generator=generator, device=device),
    )
    c_noise, cond_mu = torch.full((sizes.members,), 0.1, device=device), torch.cat([cond, mu], 1)
    bare: dict[str, list[float]] = {name: [] for name in models}
    networks: dict[str, Any] = {}
    load_before = os.getloadavg()
    with torch.no_grad(), autocast(device, bf16):
        for _ in range(sizes.call_repeats):  # alternately
            for name, model in models.items():
                bare[name].append(timed(lambda m=model: m.net(noise, c_noise, cond_mu), device))
        for name, model in models.items():
            with FlopCounterMode(display=False) as counter:
                model.net(noise, c_noise, cond_mu)
            networks[name] = {
                "call_s": statistics.median(bare[name]),
                "call": spread_of(bare[name]),
                "times_s": bare[name],
                "flops_per_call": counter.get_total_flops(),
            }

    def job(network: str, sampler: str, calls: int) -> Callable[[Callable[[], None]], Any]:
        def run_it(hook: Callable[[], None]) -> Tensor:
            # autocast and no_grad are per thread: entered here, in the job's own thread
            with torch.no_grad(), autocast(device, bf16):
                return members(models[network], cond, mu, noise, sampler, calls, hook)

        return run_it

    load_between = os.getloadavg()
    times = take_turns({name: (job(*spec), spec[2]) for name, spec in runs.items()}, device)
    load_after = os.getloadavg()
    out: dict[str, Any] = {}
    for name, (network, sampler, calls) in runs.items():
        per_call = spread_of(times[name])
        out[name] = {
            "network": network,
            "sampler": sampler,
            "calls": calls,
            "per_call": per_call,
            "times_s": times[name],
            "ensemble_s": calls * per_call["median_s"],
            "ensemble_sum_s": sum(times[name]),
            "members_per_s": sizes.members / (calls * per_call["median_s"]),
        }
    return {
        "networks": networks,
        "runs": out,
        "load_average": {"before": load_before, "between": load_between, "after": load_after},
    }


# --------------------------------------------------------------------------------------------
# memory, each model in a fresh process


def probe(
    kind: str, task: str, dims: Dims, width: int, sizes: Sizes, device: str, bf16: bool
) -> dict[str, float]:
    """Peak memory of one task of one network in this (fresh) process: 'train' (two steps, Adam
    state included) or 'generate' (one call on the generation batch, no autograd).

    CPU: the peak resident set (VmHWM) during the task, reset before it through
    /proc/self/clear_refs (the peak of the imports would hide a smaller task's), minus the
    resident set before it."""
    net = raw_network(kind, dims, width).to(device)
    generator = torch.Generator(device).manual_seed(0)
    if task == "train":
        b, side = sizes.batch, sizes.patch
    else:
        b, side = sizes.members, sizes.domain
    y = torch.randn((b, dims.out, side, side), generator=generator, device=device)
    cond = torch.randn((b, dims.cond + dims.out, side, side), generator=generator, device=device)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-4)
    before = _memory_now(device)
    for _ in range(2 if task == "train" else 1):
        with autocast(device, bf16):
            if task == "train":
                optimiser.zero_grad(set_to_none=True)
                edm_loss(net, y, cond, EDMSettings(sigma_data=1.0)).loss.backward()
                optimiser.step()
            else:
                with torch.no_grad():
                    net(y, torch.full((b,), 0.1, device=device), cond)
    peak = _peak_memory(device)
    return {
        "before_mb": before / 2**20,
        "peak_mb": peak / 2**20,
        "working_mb": (peak - before) / 2**20,
    }


def _memory_now(device: str) -> int:
    """Memory in use now (bytes), the peak counter reset."""
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    Path("/proc/self/clear_refs").write_text("5")  # Linux: resets VmHWM to the current RSS
    return psutil.Process().memory_info().rss


def _peak_memory(device: str) -> int:
    """Peak memory (bytes) since :func:`_memory_now`."""
    if device == "cuda":
        return torch.cuda.max_memory_allocated()
    status = Path("/proc/self/status").read_text()
    return next(
        int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmHWM:")
    )  # kB


def memory(dims: Dims, width: int, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """:func:`probe` of each network and task in its own process."""
    out = {}
    for kind in ("ours", "theirs"):
        for task in ("train", "generate"):
            command = [
                sys.executable,
                __file__,
                "--probe",
                f"{kind}:{task}",
                "--dims",
                f"{dims.out},{dims.cond}",
                "--width",
                str(width),
                "--device",
                args.device,
                *(["--bf16"] if args.bf16 else []),
                *(["--quick"] if args.quick else []),
            ]
            result = subprocess.run(command, capture_output=True, text=True, check=True)
            out[f"{kind}:{task}"] = json.loads(result.stdout.strip().splitlines()[-1])
    return out


# --------------------------------------------------------------------------------------------
# the run


def trained_models(
    args: argparse.Namespace, sizes: Sizes, stages: Stages
) -> tuple[dict[str, DiffusionModel], Any, ExperimentConfig, Dims, int]:
    """The world, both models trained on it (or reused), the prepared data, the config, channels
    and diffusers' width."""
    out = args.out.absolute()
    world = out / "world"
    params = preset("alps-small").model_copy(update={"days": sizes.days})
    stages("world", world / WORLD_FILE, lambda: simulate(world, params, seed=0))
    cfg = experiment(world, out, sizes, args.device, args.bf16)
    prepared = prepare(cfg)
    layout, to_hr, t = prepared.layout, prepared.to_hr, cfg.train
    dims = Dims(len(layout.target_variables), layout.cond_channels)
    models = {
        name: build_model(cfg.model, layout, prepared.periodic_lon) for name in ("ours", "theirs")
    }
    width = matching_width(2 * dims.out + dims.cond, dims.out, count_parameters(models["ours"].net))
    models["theirs"].net = raw_network("theirs", dims, width)
    # the residual's scale depends on the data only (mu is the interpolated LR): the same for both
    patches = PatchDataset(
        prepared.train, layout, to_hr, t.patch_size, 32 * t.batch_size, t.seed + 2
    )
    scale = residual_scale(models["ours"], torch.utils.data.DataLoader(patches, t.batch_size))
    train_set = PatchDataset(
        prepared.train, layout, to_hr, t.patch_size, t.max_steps * t.batch_size, t.seed
    )
    val_set = PatchDataset(
        prepared.validation, layout, to_hr, t.patch_size, t.batch_size, t.seed + 1
    )
    for name, model in models.items():
        model.residual_scale.copy_(scale)
        checkpoint = out / name / "checkpoints" / "last.ckpt"
        settings = t.model_copy(update={"out": out / name})
        stages(
            f"train {name}",
            checkpoint,
            lambda m=model, s=settings: fit(m, s, {"kind": "benchmark"}, train_set, val_set),
        )
        model.load_state_dict(ema_weights(checkpoint))
        model.to(args.device).eval()
    return models, prepared, cfg, dims, width


def items(dataset: PatchDataset) -> list[dict[str, Tensor]]:
    """Every sample of a dataset (``list()`` would not stop: a PatchDataset draws any index)."""
    return [dataset[i] for i in range(len(dataset))]


def scored_hours(fields: LazyFields, samples: list[dict[str, Tensor]]) -> list[str]:
    """The hour of each whole-domain sample, found by matching its target among the HR fields of
    ``fields``' hours (a PatchDataset does not say which hour it drew)."""
    found: list[str | None] = [None] * len(samples)
    everything = slice(None)
    for t, hour in enumerate(fields.times):
        target = fields.target_window(t, everything, everything)[0]
        for k, sample in enumerate(samples):
            if found[k] is None and torch.equal(target, sample["target"]):
                found[k] = str(hour)
    missing = [k for k, hour in enumerate(found) if hour is None]
    if missing:
        raise RuntimeError(f"scored samples {missing} match none of the block's hours")
    return [hour for hour in found if hour is not None]


def blocks_record(prepared: Any, cfg: ExperimentConfig, hours: list[str]) -> dict[str, Any]:
    """The train/validation/test blocks (first and last hour, count) and a check that the scored
    ``hours`` lie in the validation block and in no other, and that the fields scored are the
    validation block's."""
    blocks = split_times(prepared.pair.hr.time.values, cfg.data.splits)
    if [str(t) for t in prepared.validation.times] != [str(t) for t in blocks["validation"]]:
        raise RuntimeError("the fields scored are not the validation block of data.splits")
    record: dict[str, Any] = {}
    for name, times in blocks.items():
        inside = set(map(str, times)) & set(hours)
        if name == "validation" and inside != set(hours):
            raise RuntimeError(f"scored hours {sorted(set(hours) - inside)} lie outside validation")
        if name != "validation" and inside:
            raise RuntimeError(f"scored hours {sorted(inside)} lie in the {name} block")
        record[name] = {
            "first": str(times[0]) if times.size else None,
            "last": str(times[-1]) if times.size else None,
            "hours": int(times.size),
        }
    return record | {"splits": cfg.data.splits.model_dump()}


def headline(runs: dict[str, Any], needed: dict[str, dict[str, int | None]]) -> dict[str, Any]:
    """Ours against the best diffusers sampler: the one whose ensemble within 2 % of the
    reference ("crps" of :data:`CRITERIA`) takes the least time (calls x per-call median);
    among all of them when none comes within 2 % on its grid (then its time is a lower bound
    and the ratio an upper bound).

    The other criteria's ratios are estimates: their calls x the same per-call medians (a
    call's time does not depend on how many follow it); None where a side never meets one.
    """
    reached = {name: needed[name]["crps"] is not None for name in runs}
    theirs = [name for name in runs if name != OURS]
    pool = [name for name in theirs if reached[name]] or theirs
    best = min(pool, key=lambda name: runs[name]["ensemble_s"])
    ours = runs[OURS]
    others: dict[str, Any] = {}
    for criterion in CRITERIA[1:]:
        time_to = {
            name: needed[name][criterion] * runs[name]["per_call"]["median_s"]
            for name in runs
            if needed[name][criterion] is not None
        }
        met = [name for name in theirs if name in time_to]
        if OURS not in time_to or not met:
            others[criterion] = None
            continue
        fastest = min(met, key=time_to.__getitem__)
        others[criterion] = {
            "ours_calls": needed[OURS][criterion],
            "best_diffusers": fastest,
            "best_diffusers_calls": needed[fastest][criterion],
            "ratio": time_to[OURS] / time_to[fastest],
        }
    return {
        "ours": OURS,
        "ours_calls": ours["calls"],
        "best_diffusers": best,
        "best_diffusers_calls": runs[best]["calls"],
        "within_2_percent": {OURS: reached[OURS], best: reached[best]},
        "ratio": ours["ensemble_s"] / runs[best]["ensemble_s"],
        "ratio_from_sums": ours["ensemble_sum_s"] / runs[best]["ensemble_sum_s"],
        "ratio_against": {name: ours["ensemble_s"] / runs[name]["ensemble_s"] for name in theirs},
        "definition": "time to one ensemble (sizes: members, domain) within 2 % of the reference "
        "CRPS, ours / theirs: calls x per-call median, from the interleaved run",
        "other_criteria": others,
    }


def schedulers_record(sizes: Sizes, sigma_data: float) -> dict[str, Any]:
    """Every sampler compared, with its settings and grid of network calls."""
    record: dict[str, Any] = {
        REFERENCE: {
            "library": "finescale",
            "role": "reference (converged ODE solution)",
            "call": "finescale.diffusion.samplers.sample(solver='heun')",
            "levels": f"karras_sigmas(40, {SIGMA_MIN}, {SIGMA_MAX}, rho={RHO}), then 0",
            "state": "float64",
            "grid_calls": [REFERENCE_CALLS],
        },
        OURS: {
            "library": "finescale",
            "role": "ours",
            "call": "finescale.diffusion.samplers.sample(solver='dpmpp_2m')",
            "levels": f"log_uniform_sigmas(N, {SIGMA_MIN}, {SIGMA_MAX}), then 0",
            "state": "float64",
            "shipped_calls": SHIPPED_CALLS,
            "grid_calls": list(sizes.our_grid),
        },
    }
    for name, (cls, _) in DIFFUSERS.items():
        record[name] = {
            "library": "diffusers",
            "class": cls.__name__,
            "settings": scheduler_settings(name, sigma_data),
            "note": NOTES[name],
            "loop": "scale_model_input, network, step (one call per step)",
            "differences_from_ours": DIFFUSERS_DIFFERENCES,
            "grid_calls": list(sizes.grid),
        }
    return record


def grids_record(sizes: Sizes) -> dict[str, Any]:
    """The network calls each sampler was run at, per network."""
    record: dict[str, Any] = {"unit": "network calls"}
    for network, plan in skill_plan(sizes).items():
        calls: dict[str, list[int]] = {}
        for sampler, n in plan:
            calls.setdefault(sampler, []).append(n)
        record[f"{network}_network"] = calls
    return record


def run(args: argparse.Namespace, sizes: Sizes) -> dict[str, Any]:
    """Every measurement of the module docstring, as one JSON-able dict."""
    import diffusers
    import lightning

    stages = Stages()
    models, prepared, cfg, dims, width = trained_models(args, sizes, stages)
    device = args.device
    train_set = PatchDataset(
        prepared.train, prepared.layout, prepared.to_hr, sizes.patch, sizes.batch, seed=5
    )
    batch = {k: v.to(device) for k, v in torch.utils.data.default_collate(items(train_set)).items()}
    print("training steps, side by side", flush=True)
    training = training_speed(models, batch, sizes, device, args.bf16)
    print("CRPS against network calls (validation hours)", flush=True)
    whole = PatchDataset(
        prepared.validation, prepared.layout, prepared.to_hr, 10**6, sizes.eval_times, seed=7
    )
    samples = items(whole)
    hours = scored_hours(prepared.validation, samples)
    blocks = blocks_record(prepared, cfg, hours)
    variables = tuple(prepared.layout.target_variables)
    rows, agreement = skill(models, samples, variables, sizes, device, args.bf16)
    relative(rows)
    compared = (OURS, *DIFFUSERS)
    needed = {
        name: {criterion: calls_needed(rows, "ours", name, criterion) for criterion in CRITERIA}
        for name in compared
    }
    grids = {OURS: sizes.our_grid, **{name: sizes.grid for name in DIFFUSERS}}
    # none within 2 %: the most calls measured (the ratio is then a bound, see headline)
    runs = {
        name: ("ours" if name == OURS else "theirs", name, needed[name]["crps"] or max(grids[name]))
        for name in compared
    }
    print(
        "generation, interleaved call by call: "
        + ", ".join(f"{name} {calls} calls on {net}" for name, (net, _, calls) in runs.items()),
        flush=True,
    )
    generation = generation_speed(models, runs, dims, sizes, device, args.bf16)
    best = headline(generation["runs"], needed)
    print("peak memory, each model in a fresh process", flush=True)
    mem = memory(dims, width, args)
    gpu = torch.cuda.get_device_name() if device == "cuda" else None
    peak = (
        next((v for k, v in GPU_PEAK_BF16.items() if gpu and k in gpu), None) if args.bf16 else None
    )
    for numbers in training.values():
        numbers["mfu"] = numbers["flops_per_step"] / numbers["step_s"] / peak if peak else None
    return {
        "format": FORMAT,
        "quick": args.quick,
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "gpu_peak_flops": peak,
        "versions_compared": {
            "diffusers": diffusers.__version__,
            "lightning": lightning.__version__,
        },
        "sizes": asdict(sizes),
        "device": device,
        "bf16": args.bf16,
        "parameters": {
            "ours": count_parameters(models["ours"].net),
            "theirs": count_parameters(models["theirs"].net),
            "theirs_width": width,
        },
        "training_wall_s": stages.timings,
        "training": training,
        "schedulers": schedulers_record(sizes, models["ours"].settings.sigma_data),
        "grids": grids_record(sizes),
        "variables": list(variables),
        "selected_on": "validation",
        "scored_hours": hours,
        "blocks": blocks,
        "skill": rows,
        "tolerances": {"crps": CRPS_TOLERANCE, "spread": SPREAD_TOLERANCE},
        "calls_needed": needed,
        "dpm_exponential_vs_ours_max_member_difference": agreement,
        "generation": generation,
        "headline": best,
        "memory": mem,
    }


# --------------------------------------------------------------------------------------------
# tables


def report(result: dict[str, Any]) -> None:
    """Markdown tables of a run's numbers."""
    tr, gen, mem, p = (
        result["training"],
        result["generation"],
        result["memory"],
        result["parameters"],
    )
    s, load = result["sizes"], result["load_average"] | gen["load_average"]
    smoke = " SMOKE RUN (--quick): sizes too small to mean anything" if result["quick"] else ""
    print(f"\n{result['machine']}; bf16: {result['bf16']}; {result['date']}{smoke}")
    print(f"command: {result['command']}")
    print(
        f"load average (1, 5, 15 min): start {_load(load['start'])}, generation "
        f"{_load(load['before'])} -> {_load(load['after'])}, "
        f"end {_load(load['end'])}\n"
    )
    print(
        "| network | parameters | train step (s) | samples/s | GFLOP/step | GFLOP/s | MFU "
        f"| peak memory train (MB) | peak memory {s['members']} x {s['domain']}^2 call (MB) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name in ("ours", "theirs"):
        t = tr[name]
        mfu = f"{t['mfu']:.1%}" if t.get("mfu") else "n/a"
        print(
            f"| {name} | {p[name]:,} | {t['step_s']:.3f} | {t['samples_per_s']:.1f} "
            f"| {t['flops_per_step'] / 1e9:.1f} | {t['flops_per_step'] / t['step_s'] / 1e9:.1f} "
            f"| {mfu} | {mem[name + ':train']['working_mb']:.0f} "
            f"| {mem[name + ':generate']['working_mb']:.0f} |"
        )
    ratio = tr["ours"]["step_s"] / tr["theirs"]["step_s"]
    print(f"\ntraining step time ours / theirs: {ratio:.2f}")
    variables = result["variables"]
    print(
        f"\nCRPS against network calls, {s['eval_members']} members at "
        f"{result['selected_on']} hours {', '.join(result['scored_hours'])}:\n"
    )
    print(
        "| network | sampler | calls | CRPS / reference | spread / reference | "
        + " | ".join(f"{v} CRPS / ref" for v in variables)
        + " | fair CRPS (mean) |"
    )
    print("|---|---|---|---|---|" + "---|" * len(variables) + "---|")
    for r in result["skill"]:
        by_variable = " | ".join(f"{r['crps_rel_by_variable'][v]:.3f}" for v in variables)
        mean = statistics.fmean(r["crps"].values())
        print(
            f"| {r['network']} | {LABELS[r['sampler']]} | {r['calls']} | {r['crps_rel']:.3f} "
            f"| {r['spread_rel']:.3f} | {by_variable} | {mean:.4f} |"
        )
    print(
        "\n| sampler (our network) | grid (calls) | calls to CRPS within 2 % (mean of variables) "
        "| every variable's within 2 % | mean within 2 % and spread within 5 % |"
    )
    print("|---|---|---|---|---|")
    for name, needed in result["calls_needed"].items():
        grid = ", ".join(map(str, result["schedulers"][name]["grid_calls"]))
        print(
            f"| {LABELS[name]} | {grid} | " + " | ".join(_calls(needed[c]) for c in CRITERIA) + " |"
        )
    agreement = result["dpm_exponential_vs_ours_max_member_difference"]
    print(
        "\ndiffusers DPM-Solver on exponential levels against ours, same network and noise, "
        "largest member difference / members' std: "
        + ", ".join(f"{v:.1e} at {c} calls" for c, v in agreement.items())
    )
    print(
        f"\n| sampler | network | calls | per-call median (s) | IQR (s) "
        f"| {s['members']}-member {s['domain']}^2 ensemble, calls x median (s) | sum of calls (s) "
        "| members/s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, g in gen["runs"].items():
        c = g["per_call"]
        print(
            f"| {LABELS[name]} | {g['network']} | {g['calls']} | {c['median_s']:.3f} "
            f"| {c['iqr_s']:.3f} | {g['ensemble_s']:.2f} | {g['ensemble_sum_s']:.2f} "
            f"| {g['members_per_s']:.3f} |"
        )
    bare = gen["networks"]
    print(
        "\none bare network call (s), median [IQR]: "
        + ", ".join(f"{n} {b['call_s']:.3f} [{b['call']['iqr_s']:.3f}]" for n, b in bare.items())
        + f"; ours / theirs {bare['ours']['call_s'] / bare['theirs']['call_s']:.2f}"
    )
    h = result["headline"]
    bound = "" if all(h["within_2_percent"].values()) else " (a bound: not within 2 % on its grid)"
    print(
        f"\nheadline: time to an ensemble within 2 % of the reference, ours ({LABELS[h['ours']]}, "
        f"{h['ours_calls']} calls) / best diffusers ({LABELS[h['best_diffusers']]}, "
        f"{h['best_diffusers_calls']} calls): {h['ratio']:.3f}{bound} "
        f"(from sums of calls: {h['ratio_from_sums']:.3f}); against each: "
        + ", ".join(f"{name} {ratio:.3f}" for name, ratio in h["ratio_against"].items())
    )
    for criterion, other in h["other_criteria"].items():
        if other is None:
            print(f"  {criterion}: not met on the grids by ours or by any diffusers sampler")
        else:
            print(
                f"  {criterion} (calls x the same per-call medians): ours {other['ours_calls']} "
                f"calls / {other['best_diffusers']} {other['best_diffusers_calls']} calls: "
                f"{other['ratio']:.3f}"
            )


def _load(triple: list[float]) -> str:
    return "/".join(f"{v:.1f}" for v in triple)


def _calls(n: int | None) -> str:
    return "not within its grid" if n is None else str(n)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=Path("runs/vs-diffusers"), help="world, checkpoints, JSON"
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="numbers (default <out>/vs-diffusers.json)"
    )
    parser.add_argument("--quick", action="store_true", help="a small smoke test of every stage")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument(
        "--bf16", action="store_true", help="bf16 autocast in training and sampling"
    )
    parser.add_argument(
        "--from-json", type=Path, default=None, help="print an earlier run's tables"
    )
    parser.add_argument(
        "--probe", help=argparse.SUPPRESS
    )  # internal: one memory probe (see memory)
    parser.add_argument("--dims", help=argparse.SUPPRESS)
    parser.add_argument("--width", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = QUICK if args.quick else Sizes()
    if args.probe:
        kind, task = args.probe.split(":")
        dims = Dims(*(int(v) for v in args.dims.split(",")))
        print(json.dumps(probe(kind, task, dims, args.width, sizes, args.device, args.bf16)))
        return
    if args.from_json:
        result = json.loads(args.from_json.read_text())
        if result.get("format") != FORMAT:
            parser.error(
                f"--from-json {args.from_json}: format {result.get('format', 1)}, this script "
                f"prints format {FORMAT} (format 1, the Euler-only comparison, is tabled in "
                "docs/benchmarks.md)"
            )
        report(result)
        return
    header = begin()
    path = write_results(args.json or args.out / "vs-diffusers.json", header, run(args, sizes))
    report(json.loads(path.read_text()))


if __name__ == "__main__":
    main()

"""Benchmark: finescale's UNet and sampler beside diffusers' UNet2DModel and EDMEulerScheduler, in one run.

What a user would pick instead of finescale's network and sampler: diffusers' ``UNet2DModel``
with as many parameters as ours (same layout: three levels, one residual block per level down
and two up, no attention; the width is searched to match the parameter count), sampled with
diffusers' ``EDMEulerScheduler`` (Karras levels, rho 7, sigma_data as our model's). Both
networks are trained the same way, as the raw network F of the same residual EDM model (the
same data, loss, preconditioning, optimiser and steps) on the alps-small world, then:

1. training step time (forward, backward, Adam; the same batch), the two alternating step by
   step, median after warm-up;
2. fair CRPS and spread against network calls on held-out (validation) hours: our DPM++(2M)
   with 12 calls on log-uniform levels, and diffusers' Euler with N calls, each driving the
   *same* trained network from the same initial noise (this isolates the solver), beside the
   converged solution of the same ODE (Heun, 40 steps on Karras levels: 79 calls) as the
   reference; their network with both samplers too;
3. the Euler calls N* whose CRPS comes within 2 % of the reference's, either side, as our
   sampler's does (and N** that also keep the spread within 5 %), and the time to generate a
   16-member ensemble of a 256 x 256 domain with 4 variables: ours (12 calls) against theirs
   (N* calls), the two run one after the other;
4. peak memory of a training step and of one generation call, each model in a fresh process
   (CPU: peak RSS minus the RSS before the task; CUDA: peak allocated minus allocated before);
5. throughput (training samples/s, members/s) and model FLOPs per step (FlopCounterMode); on a
   GPU with a known bf16 peak, the model FLOP utilisation.

    python benchmarks/vs_diffusers.py --out runs/vs-diffusers                 # CPU: ~65 min on 2 busy cores
    python benchmarks/vs_diffusers.py --out runs/vs-diffusers-quick --quick   # smoke test, ~5 min
    python benchmarks/vs_diffusers.py --out runs/vs-diffusers-gpu --device cuda --bf16

Needs the ``bench`` extra (``pip install -e .[bench]``: diffusers). Stages whose output exists
are reused (the world, the two trained checkpoints). Prints the tables and writes every number
to ``--json`` (default ``<out>/vs-diffusers.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil
import torch
from diffusers import EDMEulerScheduler, UNet2DModel
from machine import describe  # benchmarks/machine.py (scripts run from their folder)
from stages import Stages
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from finescale.config import ExperimentConfig, ModelConfig, NetworkConfig, TrainConfig
from finescale.data.samples import PatchDataset
from finescale.data.world import preset, simulate
from finescale.data.world.simulate import WORLD_FILE
from finescale.diffusion import samplers
from finescale.diffusion.edm import EDMSettings, edm_loss
from finescale.models.atmorep import fair_crps
from finescale.models.build import build_model
from finescale.models.diffusion import DiffusionModel
from finescale.nn.unet import UNet, UNetSettings, count_parameters
from finescale.pipeline import world_config
from finescale.train import fit, prepare, residual_scale

OUR_NETWORK = NetworkConfig(
    base_width=16, channel_mult=(1, 2, 2)
)  # the skill benchmark's CPU network
OUR_STEPS = 12  # DPM++(2M) on log-uniform levels: the configs' sampler
REFERENCE_STEPS = (
    40  # Heun on Karras levels, 79 calls: the converged ODE solution (docs/benchmarks.md, samplers)
)
CRPS_TOLERANCE, SPREAD_TOLERANCE = 0.02, 0.05
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
    """How much the run does."""

    days: float = 30.0  # alps-small world length
    train_steps: int = 150  # per network
    batch: int = 8  # training patches per step
    patch: int = 64
    eval_times: int = 2  # validation hours scored (whole 80 x 200 domain)
    eval_members: int = 8
    euler_steps: tuple[int, ...] = (12, 24, 48, 64)
    their_euler_steps: tuple[int, ...] = (12, 48)  # their network: a few points of the same curve
    timing_steps: int = 10  # training steps timed per network (after 3 of warm-up)
    domain: int = 256  # generation: members x variables x domain x domain
    members: int = 16


QUICK = Sizes(
    days=4.0,
    train_steps=20,
    eval_times=1,
    eval_members=4,
    euler_steps=(4, 8),
    their_euler_steps=(4,),
    timing_steps=2,
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
    """Our UNet or diffusers' (``width``) as F(x_in, c_noise, cond) for cond = [conditioning, mu]."""
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
    """The world's data with a residual diffusion model over the interpolation (no regression stage)."""
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


def euler_diffusers(
    call: Callable[[Tensor, Tensor], Tensor], noise: Tensor, steps: int, sigma_data: float
) -> Tensor:
    """diffusers' EDMEulerScheduler loop (as its pipelines run it): ``call(x_in, c_noise)`` is F."""
    scheduler = EDMEulerScheduler(
        sigma_min=0.002,
        sigma_max=80.0,
        sigma_data=sigma_data,
        sigma_schedule="karras",
        rho=7.0,
        prediction_type="epsilon",
    )  # "epsilon": EDM's F (c_out = s s_d / ...)
    scheduler.set_timesteps(steps, device=noise.device)
    x = noise * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        x_in = scheduler.scale_model_input(x, t)
        x = scheduler.step(call(x_in, t.expand(x.shape[0])), t, x).prev_sample
    return x


@torch.no_grad()
def members(
    model: DiffusionModel, cond: Tensor, mu: Tensor, noise: Tensor, solver: str, steps: int
) -> Tensor:
    """Scaled residuals z (B, C, H, W) from ``noise``: ours ("dpmpp_2m", log-uniform levels), the reference
    ("heun", Karras levels) or diffusers' Euler ("euler")."""
    if solver in ("dpmpp_2m", "heun"):
        if solver == "dpmpp_2m":
            sigmas = samplers.log_uniform_sigmas(steps, 0.002, 80.0)
        else:
            sigmas = samplers.karras_sigmas(steps, 0.002, 80.0, 7.0)
        return samplers.sample(
            lambda z, s: model.denoise(z, s, cond, mu), noise, sigmas, solver=solver
        )
    cond_mu = torch.cat([cond, mu], dim=1)
    return euler_diffusers(
        lambda x, c: model.net(x, c, cond_mu), noise, steps, model.settings.sigma_data
    )


def autocast(device: str, bf16: bool) -> contextlib.AbstractContextManager:
    return torch.autocast(device, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def skill(
    models: dict[str, DiffusionModel],
    samples: list[dict[str, Tensor]],
    sizes: Sizes,
    device: str,
    bf16: bool,
) -> list[dict[str, Any]]:
    """Fair CRPS and spread per variable (standardised units) for every network and solver, from the same noise."""
    runs = {
        "ours": [
            ("heun", REFERENCE_STEPS),
            ("dpmpp_2m", OUR_STEPS),
            *(("euler", n) for n in sizes.euler_steps),
        ],
        "theirs": [("dpmpp_2m", OUR_STEPS), *(("euler", n) for n in sizes.their_euler_steps)],
    }
    rows = []
    for name, model in models.items():
        for solver, steps in runs[name]:
            start = time.perf_counter()
            crps, spread = [], []
            for k, sample in enumerate(samples):
                cond, base, target = (sample[key].to(device) for key in ("cond", "base", "target"))
                m = sizes.eval_members
                cond, base = cond.expand(m, -1, -1, -1), base.expand(m, -1, -1, -1)
                generator = torch.Generator(device).manual_seed(k)
                noise = torch.randn(base.shape, generator=generator, device=device)
                mu = model.mu(cond, base)
                with autocast(device, bf16):
                    y = model.combine(members(model, cond, mu, noise, solver, steps).float(), mu)
                crps.append(fair_crps(y.permute(1, 2, 3, 0), target).mean(dim=(1, 2)))
                spread.append(y.std(dim=0).mean(dim=(1, 2)))
            rows.append(
                {
                    "network": name,
                    "solver": solver,
                    "steps": steps,
                    "calls": samplers.n_calls(solver, steps),
                    "wall_s": time.perf_counter() - start,
                    "crps": torch.stack(crps).mean(0).tolist(),
                    "spread": torch.stack(spread).mean(0).tolist(),
                }
            )
            print(
                f"  {name:6s} {solver:8s} {rows[-1]['calls']:3d} calls: CRPS {sum(rows[-1]['crps']) / len(crps[0]):.4f}"
                f" ({rows[-1]['wall_s']:.0f} s)",
                flush=True,
            )
    return rows


def relative(rows: list[dict[str, Any]]) -> None:
    """CRPS and spread of each row relative to the reference (our network, Heun 40 steps): means of the
    per-variable ratios. For our network that is the solver's error alone; for theirs, network and solver."""

    def ratio(a: list[float], b: list[float]) -> float:
        return statistics.fmean(x / y for x, y in zip(a, b, strict=True))

    ref = next(r for r in rows if r["network"] == "ours" and r["solver"] == "heun")
    for row in rows:
        row["crps_rel"], row["spread_rel"] = (
            ratio(row["crps"], ref["crps"]),
            ratio(row["spread"], ref["spread"]),
        )


def converged(row: dict[str, Any], spread: bool) -> bool:
    """CRPS within CRPS_TOLERANCE of the reference's, either side (and the spread within SPREAD_TOLERANCE)."""
    return abs(row["crps_rel"] - 1) <= CRPS_TOLERANCE and (
        not spread or abs(row["spread_rel"] - 1) <= SPREAD_TOLERANCE
    )


def calls_needed(rows: list[dict[str, Any]], network: str, solver: str, spread: bool) -> int | None:
    """Fewest calls of ``solver`` on ``network`` from which on every row is :func:`converged`; None: none is."""
    line = sorted(
        (r for r in rows if r["network"] == network and r["solver"] == solver),
        key=lambda r: r["calls"],
    )
    for k, row in enumerate(line):
        if all(converged(r, spread) for r in line[k:]):
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
    """Median step time of each network, the two alternating step by step on the same batch; FLOPs of one step."""
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


def generation_speed(
    models: dict[str, DiffusionModel],
    runs: dict[str, tuple[str, int]],
    dims: Dims,
    sizes: Sizes,
    device: str,
    bf16: bool,
) -> dict[str, dict[str, float]]:
    """Wall time of one ensemble (members x variables x domain^2) per network with its solver, run alternately,
    and the median time of one network call; random conditioning (the cost does not depend on values)."""
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
    calls: dict[str, list[float]] = {name: [] for name in models}
    flops: dict[str, int] = {}
    with torch.no_grad(), autocast(device, bf16):
        for _ in range(2):  # alternately
            for name, model in models.items():
                calls[name].append(timed(lambda m=model: m.net(noise, c_noise, cond_mu), device))
        for name, model in models.items():
            with FlopCounterMode(display=False) as counter:
                model.net(noise, c_noise, cond_mu)
            flops[name] = counter.get_total_flops()
    out = {
        name: {"call_s": statistics.median(calls[name]), "flops_per_call": flops[name]}
        for name in models
    }
    for name, model in models.items():
        solver, steps = runs[name]
        with autocast(device, bf16):
            wall = timed(
                lambda m=model, s=solver, n=steps: members(m, cond, mu, noise, s, n), device
            )
        out[name] |= {
            "solver": solver,
            "calls": steps,
            "ensemble_s": wall,
            "members_per_s": sizes.members / wall,
        }
    return out


# --------------------------------------------------------------------------------------------
# memory, each model in a fresh process


def probe(
    kind: str, task: str, dims: Dims, width: int, sizes: Sizes, device: str, bf16: bool
) -> dict[str, float]:
    """Peak memory of one task of one network in this (fresh) process: 'train' (two steps, Adam state
    included) or 'generate' (one call on the generation batch, no autograd).

    CPU: the peak resident set (VmHWM) during the task, reset before it through /proc/self/clear_refs
    (the peak of the imports would hide a smaller task's), minus the resident set before it."""
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
) -> tuple[dict[str, DiffusionModel], Any, Dims, int]:
    """The world, both models trained on it (or reused), the prepared data, channels and diffusers' width."""
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
    return models, prepared, dims, width


def items(dataset: PatchDataset) -> list[dict[str, Tensor]]:
    """Every sample of a dataset (``list()`` would not stop: a PatchDataset draws any index)."""
    return [dataset[i] for i in range(len(dataset))]


def run(args: argparse.Namespace, sizes: Sizes) -> dict[str, Any]:
    """Every measurement of the module docstring, as one JSON-able dict."""
    import diffusers
    import lightning

    import finescale

    load_before = os.getloadavg()
    stages = Stages()
    models, prepared, dims, width = trained_models(args, sizes, stages)
    device = args.device
    train_set = PatchDataset(
        prepared.train, prepared.layout, prepared.to_hr, sizes.patch, sizes.batch, seed=5
    )
    batch = {k: v.to(device) for k, v in torch.utils.data.default_collate(items(train_set)).items()}
    print("training steps, side by side", flush=True)
    training = training_speed(models, batch, sizes, device, args.bf16)
    print("CRPS against network calls", flush=True)
    whole = PatchDataset(
        prepared.validation, prepared.layout, prepared.to_hr, 10**6, sizes.eval_times, seed=7
    )
    rows = skill(models, items(whole), sizes, device, args.bf16)
    relative(rows)
    needed = {
        "ours_dpmpp_2m": {
            "crps": calls_needed(rows, "ours", "dpmpp_2m", spread=False),
            "crps_and_spread": calls_needed(rows, "ours", "dpmpp_2m", spread=True),
        },
        "euler": {
            "crps": calls_needed(rows, "ours", "euler", spread=False),
            "crps_and_spread": calls_needed(rows, "ours", "euler", spread=True),
        },
    }
    euler = needed["euler"]["crps"] or max(
        sizes.euler_steps
    )  # none within 2 %: the most calls measured
    print(f"generation: ours {OUR_STEPS} DPM++(2M) calls, theirs {euler} Euler calls", flush=True)
    generation = generation_speed(
        models,
        {"ours": ("dpmpp_2m", OUR_STEPS), "theirs": ("euler", euler)},
        dims,
        sizes,
        device,
        args.bf16,
    )
    print("peak memory, each model in a fresh process", flush=True)
    mem = memory(dims, width, args)
    gpu = torch.cuda.get_device_name() if device == "cuda" else None
    peak = (
        next((v for k, v in GPU_PEAK_BF16.items() if gpu and k in gpu), None) if args.bf16 else None
    )
    for numbers in training.values():
        numbers["mfu"] = numbers["flops_per_step"] / numbers["step_s"] / peak if peak else None
    return {
        "command": "python benchmarks/vs_diffusers.py " + " ".join(sys.argv[1:]),
        "machine": describe(),
        "gpu_peak_flops": peak,
        "versions": {
            "finescale": finescale.__version__,
            "torch": torch.__version__,
            "diffusers": diffusers.__version__,
            "lightning": lightning.__version__,
        },
        "load_average": {"start": load_before, "end": os.getloadavg()},
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
        "skill": rows,
        "euler_calls_needed": needed,
        "generation": generation,
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
    s = result["sizes"]
    print(f"\n{result['machine']}; load average {result['load_average']}; bf16: {result['bf16']}")
    print(f"command: {result['command']}\n")
    print(
        f"| network | parameters | train step (s) | samples/s | GFLOP/step | GFLOP/s | MFU | peak memory train (MB) "
        f"| peak memory {s['members']} x {s['domain']}^2 call (MB) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name in ("ours", "theirs"):
        t = tr[name]
        mfu = f"{t['mfu']:.1%}" if t.get("mfu") else "n/a"
        print(
            f"| {name} | {p[name]:,} | {t['step_s']:.3f} | {t['samples_per_s']:.1f} | {t['flops_per_step'] / 1e9:.1f} "
            f"| {t['flops_per_step'] / t['step_s'] / 1e9:.1f} | {mfu} | {mem[name + ':train']['working_mb']:.0f} "
            f"| {mem[name + ':generate']['working_mb']:.0f} |"
        )
    print(
        f"\ntraining step time ours / theirs: {tr['ours']['step_s'] / tr['theirs']['step_s']:.2f}"
    )
    print(
        "\n| network | solver | calls | CRPS / reference | spread / reference | CRPS (mean of variables) |"
    )
    print("|---|---|---|---|---|---|")
    for r in result["skill"]:
        print(
            f"| {r['network']} | {r['solver']} | {r['calls']} | {r['crps_rel']:.3f} | {r['spread_rel']:.3f} "
            f"| {statistics.fmean(r['crps']):.4f} |"
        )
    print(f"\nEuler calls needed: {result['euler_calls_needed']}")
    print(
        f"\n| network | solver | calls | one call (s) | {s['members']}-member ensemble {s['domain']} x {s['domain']} (s) "
        "| members/s |"
    )
    print("|---|---|---|---|---|---|")
    for name in ("ours", "theirs"):
        g = gen[name]
        print(
            f"| {name} | {g['solver']} | {g['calls']} | {g['call_s']:.2f} | {g['ensemble_s']:.1f} | {g['members_per_s']:.2f} |"
        )
    print(
        f"\nensemble time ours / theirs: {gen['ours']['ensemble_s'] / gen['theirs']['ensemble_s']:.2f}"
    )


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
        report(json.loads(args.from_json.read_text()))
        return
    result = run(args, sizes)
    path = args.json or args.out / "vs-diffusers.json"
    path.write_text(json.dumps(result, indent=1))
    report(result)


if __name__ == "__main__":
    main()

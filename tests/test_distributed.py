"""Data-parallel training (Lightning DDP, gloo on CPU) follows the same path as one process with
the same global batch.

Two runs of tests/ddp_fit.py on a tiny regression model: 2 processes with batch 2 each, and one
process with batch 4, on the same sequence of samples. Tolerances (float32):

- the loss of each step (DDP: the mean of the two processes' losses) within 1e-5 relative: the
  processes see exactly the same samples as the single process, so the only difference is the
  order of float additions (gradient averaged by an all-reduce instead of one sum over the
  batch), about 1e-7 relative per step here;
- the final weights (and their EMA) within 1e-4 absolute, 3 % of the learning rate (3e-3), the
  largest change one Adam step makes: Adam divides each gradient by its own running RMS, so
  for the few weights whose gradient is close to zero those rounding differences become a
  visible part of the update (2e-5 seen).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HELPER = Path(__file__).with_name("ddp_fit.py")
STEPS = 6


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Both runs at once (three processes: imports dominate the time, ~20 s on two cores)."""
    out = {"ddp": tmp_path_factory.mktemp("ddp"), "single": tmp_path_factory.mktemp("single")}
    args = {
        "ddp": ["--devices", "2", "--batch-size", "2"],
        "single": ["--devices", "1", "--batch-size", "4"],
    }
    procs = {
        name: subprocess.Popen(
            [sys.executable, str(HELPER), str(out[name]), "--steps", str(STEPS), *args[name]],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in out
    }
    for name, proc in procs.items():
        output, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{name} run failed:\n{output[-3000:]}"
    return out


def _steps(out: Path, rank: int) -> list[dict]:
    return json.loads((out / f"rank{rank}.json").read_text())


def _weights(out: Path) -> dict[str, torch.Tensor]:
    state = torch.load(out / "run" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    return {k: v for k, v in state.items() if v.is_floating_point()}


def test_processes_split_each_global_batch_of_the_single_run(runs):
    ranks = [_steps(runs["ddp"], r) for r in (0, 1)]
    single = _steps(runs["single"], 0)
    assert len(single) == len(ranks[0]) == len(ranks[1]) == STEPS
    for k, (a, b, one) in enumerate(zip(*ranks, single, strict=True)):
        assert not set(a["index"]) & set(b["index"]), (
            f"step {k}: both processes drew the same samples"
        )
        assert (
            sorted(a["index"] + b["index"]) == sorted(one["index"]) == list(range(4 * k, 4 * k + 4))
        )


def test_loss_trajectory_matches_one_process(runs):
    ranks = [_steps(runs["ddp"], r) for r in (0, 1)]
    single = _steps(runs["single"], 0)
    ddp = torch.tensor(
        [(a["loss"] + b["loss"]) / 2 for a, b in zip(*ranks, strict=True)], dtype=torch.float64
    )
    one = torch.tensor([s["loss"] for s in single], dtype=torch.float64)
    assert one[-1] < one[0]  # it trains
    torch.testing.assert_close(ddp, one, rtol=1e-5, atol=0)


def test_final_weights_and_ema_match_one_process(runs):
    ddp, one = _weights(runs["ddp"]), _weights(runs["single"])
    assert ddp.keys() == one.keys() and any(k.startswith("ema.module.") for k in one)
    for name in one:
        torch.testing.assert_close(ddp[name], one[name], rtol=0, atol=1e-4, msg=name)


def test_rank_zero_logs_the_mean_loss_and_ranks_draw_different_noise(runs):
    versions = list((runs["ddp"] / "run" / "logs").iterdir())
    assert len(versions) == 1  # one log, written by rank 0
    rows = list(csv.DictReader((versions[0] / "metrics.csv").open()))
    logged = [float(r["train_loss"]) for r in rows if r["train_loss"]]
    ranks = [_steps(runs["ddp"], r) for r in (0, 1)]
    assert logged[-1] == pytest.approx((ranks[0][-1]["loss"] + ranks[1][-1]["loss"]) / 2, rel=1e-6)
    # the training noise (diffusion levels, AtmoRep members) comes from each process's own stream
    assert ranks[0][0]["noise"] != ranks[1][0]["noise"]

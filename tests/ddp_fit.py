"""Helper of test_distributed.py: fits a tiny regression model with ``finescale.training.fit`` and
records, per optimisation step, the loss of each process's batch, the samples in it and a
draw from its random stream.

    python tests/ddp_fit.py OUT --devices 2 --batch-size 2 --steps 6

With ``--devices`` > 1 Lightning's DDP (gloo on CPU) starts the other processes itself, by
running this script again. Writes ``OUT/rank<r>.json`` per process and the run's checkpoints
and logs under ``OUT/run``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from finescale.config import TrainConfig
from finescale.models.regression import RegressionModel
from finescale.nn.unet import UNetSettings
from finescale.training import fit

SIZE = 8  # grid points on each side of a sample


class ToySamples(torch.utils.data.Dataset):
    """Sample i: a smooth random field c (1, 8, 8), target 2c + noise, drawn from seed (seed, i)."""

    def __init__(self, length: int, seed: int):
        self.length, self.seed = length, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        c = torch.randn(1, 1, 2, 2, generator=generator)
        c = torch.nn.functional.interpolate(
            c, size=(SIZE, SIZE), mode="bilinear", align_corners=False
        )[0]
        target = 2 * c + 0.3 * torch.randn(1, SIZE, SIZE, generator=generator)
        return {"cond": c, "base": torch.zeros_like(c), "target": target, "index": torch.tensor(i)}


class Recorded(RegressionModel):
    """A regression model that notes each training batch's loss and sample indices."""

    def __init__(self, *args: Any):
        super().__init__(*args)
        self.steps: list[dict[str, Any]] = []

    def loss(
        self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None
    ) -> torch.Tensor:
        loss = super().loss(batch, generator)
        if torch.is_grad_enabled():  # training, not validation
            # a draw from the process's random stream, which a diffusion loss would use for its
            # noise
            noise = torch.rand(()).item()
            self.steps.append(
                {"loss": loss.item(), "index": batch["index"].tolist(), "noise": noise}
            )
        return loss


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(1)  # two or three processes share a small CPU
    torch.manual_seed(0)
    settings = UNetSettings(
        in_channels=1,
        cond_channels=1,
        out_channels=1,
        use_noise=False,
        base_width=8,
        channel_mult=(1, 2),
        blocks_per_level=1,
        attention_levels=(),
    )
    model = Recorded(settings, torch.ones(1))
    t = TrainConfig(
        out=args.out / "run",
        batch_size=args.batch_size,
        max_steps=args.steps,
        learning_rate=3e-3,
        warmup_steps=2,
        val_every_steps=args.steps,
        val_batches=1,
        accelerator="cpu",
        num_workers=0,  # tiny samples made in memory: no loader processes
        devices=args.devices,
        strategy="ddp" if args.devices > 1 else "auto",
    )
    train_set = ToySamples(t.max_steps * t.global_batch_size, seed=0)
    val_set = ToySamples(t.val_batches * t.global_batch_size, seed=1)
    fit(model, t, {"kind": "test"}, train_set, val_set)
    rank = dist.get_rank() if dist.is_initialized() else 0
    (args.out / f"rank{rank}.json").write_text(json.dumps(model.steps))


if __name__ == "__main__":
    main()

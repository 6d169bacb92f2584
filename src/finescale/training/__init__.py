"""Training with Lightning: data set-up, the Lightning module, checkpoints that carry everything.

``train(cfg)`` opens the pair, computes (or reuses) the normalisation statistics on the training
block, cuts random patches, and fits the regression or diffusion model with Adam (warm-up then
cosine decay), an exponential moving average of the weights, CSV logs and checkpoints. A
checkpoint holds, besides the weights, the config, the statistics, the channel layout and the
HR grid, all as plain types and tensors, so it loads with ``torch.load(weights_only=True)`` and
is checked against the data it is later given; :mod:`finescale.checkpoints` reads it without
Lightning.

Where things are:

- :mod:`~finescale.training.downscaling`: ``train`` for the downscaling models, the residual
  scale, what their checkpoints carry;
- :mod:`~finescale.training.distill`: ``distill``, a consistency student from a trained diffusion
  model (``finescale distill``);
- :mod:`~finescale.training.loop`: ``fit`` (Lightning's trainer for any model with a ``loss``),
  ``resume_point``, atomic checkpoint writing;
- :mod:`~finescale.training.task`: the Lightning module (EMA, Adam, schedule),
  ``compile_networks``;
- :mod:`~finescale.training.data`: ``prepare`` (the pair for training), the patch sets
  of a run, the loaders;
- :mod:`~finescale.training.progress`: the progress bar of optimisation steps.
"""

from finescale.training.data import PatchLoaders, TrainingData, patch_sets, prepare
from finescale.training.downscaling import checkpoint_meta, regression_for, residual_scale, train
from finescale.training.loop import AtomicCheckpointIO, fit, resume_point
from finescale.training.task import COMPILED, Task, compile_networks, ema_update

__all__ = [
    "COMPILED",
    "AtomicCheckpointIO",
    "PatchLoaders",
    "Task",
    "TrainingData",
    "checkpoint_meta",
    "compile_networks",
    "ema_update",
    "fit",
    "patch_sets",
    "prepare",
    "regression_for",
    "residual_scale",
    "resume_point",
    "train",
]

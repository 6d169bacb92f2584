"""An ensemble's work cut into blocks: which process does which, each block's random seed, and
the request (members, times, grid, blocks) that a resumed or shared run must repeat exactly.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from finescale.io.stores import EnsembleStore


def process_share(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """(rank, number of processes) of this process among those sharing an output.

    Each is the option where given, else torchrun's ``RANK`` / ``WORLD_SIZE`` environment
    variable, else (0, 1): one process does everything.
    """

    def from_env(name: str, default: int) -> int:
        text = os.environ.get(name, "")
        try:
            return int(text) if text else default
        except ValueError:
            raise ValueError(f"environment variable {name}={text!r} is not an integer") from None

    rank = from_env("RANK", 0) if rank is None else rank
    world_size = from_env("WORLD_SIZE", 1) if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(
            f"rank {rank} with {world_size} processes: the rank must be in 0..{world_size - 1}"
        )
    return rank, world_size


def block_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed for one block of random draws from the run's ``seed`` and the block's keys
    (first member, time in seconds, ...): the same whichever process draws the block, and when."""
    entropy = [int(k) % 2**64 for k in (seed, *keys)]  # SeedSequence takes non-negative integers
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> np.uint64(1))


@dataclass(frozen=True)
class Block:
    """One unit of work of an ensemble: a group of members over a run of times (whole Zarr
    chunks)."""

    index: int
    members: slice
    times: slice


def ensemble_blocks(member_groups: Sequence[slice], n_times: int, chunk_times: int) -> list[Block]:
    """The blocks of an ensemble, numbered time block first, then member group.

    Time blocks are the store's chunks along time (``chunk_times`` as :meth:`EnsembleStore.create`
    uses it), members are chunked one by one: no two blocks share a chunk, so processes can write
    their blocks into the same store at once.
    """
    chunk = max(1, min(chunk_times, n_times))
    starts = range(0, n_times, chunk)
    pairs = [
        (members, slice(t0, min(t0 + chunk, n_times))) for t0 in starts for members in member_groups
    ]
    return [Block(i, members, times) for i, (members, times) in enumerate(pairs)]


@dataclass
class EnsembleSpec:
    """Everything an ensemble store is created from (the arguments of
    :meth:`EnsembleStore.create`)."""

    variables: dict[str, dict[str, Any]]
    members: int
    times: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    chunk_times: int
    attrs: dict[str, Any]

    def create(self, path: str | Path) -> EnsembleStore:
        return EnsembleStore(path).create(
            self.variables,
            self.members,
            self.times,
            self.lat,
            self.lon,
            self.chunk_times,
            self.attrs,
        )

    def nbytes(self, block: Block) -> int:
        """Uncompressed size of a block (float32 values)."""
        m = len(range(self.members)[block.members])
        t = block.times.stop - block.times.start
        return 4 * m * t * len(self.variables) * int(np.asarray(self.lat).size)

    def request(self, blocks: Sequence[Block]) -> dict[str, Any]:
        """What is generated, as plain types: attributes, variables, members, times, grid and
        blocks."""

        def digest(values: Any) -> str:
            return hashlib.sha256(np.ascontiguousarray(values).tobytes()).hexdigest()

        times = np.asarray(self.times).astype("datetime64[ns]")
        layout = [[b.members.start, b.members.stop, b.times.start, b.times.stop] for b in blocks]
        request = {
            "attrs": self.attrs,
            "variables": self.variables,
            "members": self.members,
            "times": {
                "count": int(times.size),
                "first": str(times[0]),
                "last": str(times[-1]),
                "sha256": digest(times),
            },
            "grid": {
                "shape": list(np.shape(self.lat)),
                "sha256": digest(np.stack([self.lat, self.lon]).astype(np.float64)),
            },
            "chunk_times": self.chunk_times,
            "blocks": {"count": len(layout), "sha256": digest(np.asarray(layout, dtype=np.int64))},
        }
        return json.loads(
            json.dumps(request, sort_keys=True, default=str)
        )  # as read back from request.json

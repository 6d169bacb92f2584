"""Writing outputs so that a crash never leaves a file that looks complete.

Everything written whole goes to a temporary name beside its destination and is renamed into
place only when complete (:mod:`~finescale.io.atomic`). Ensembles too long to generate in one
go are written block by block into a partial store beside their destination
(:func:`~finescale.io.partial.fill_ensemble`, blocks cut by :mod:`~finescale.io.blocks`): a
killed run resumes with the blocks still missing, several processes share the blocks, and the
store is renamed into place once every block is written. Deterministic fields (baselines,
AtmoRep's references) are written whole as one-member ensembles
(:func:`~finescale.io.stores.forecast_dataset`). Outputs that cannot be written are refused
before the work (:mod:`~finescale.io.checks`).
"""

from finescale.io.atomic import ZARR_FORMAT, atomic_path, write_json, write_text, write_zarr
from finescale.io.blocks import Block, EnsembleSpec, block_seed, ensemble_blocks, process_share
from finescale.io.checks import (
    REFUSE_BELOW,
    LowSpaceWarning,
    OutputError,
    check_free_space,
    check_writable,
)
from finescale.io.partial import FillReport, PartialEnsemble, fill_ensemble
from finescale.io.stores import EnsembleStore, forecast_dataset

__all__ = [
    "REFUSE_BELOW",
    "ZARR_FORMAT",
    "Block",
    "EnsembleSpec",
    "EnsembleStore",
    "FillReport",
    "LowSpaceWarning",
    "OutputError",
    "PartialEnsemble",
    "atomic_path",
    "block_seed",
    "check_free_space",
    "check_writable",
    "ensemble_blocks",
    "fill_ensemble",
    "forecast_dataset",
    "process_share",
    "write_json",
    "write_text",
    "write_zarr",
]

"""The Alps world: a synthetic but physical atmosphere over real terrain, with an exact oracle.

The large-scale state (``largescale``) is advected smoothly; LR inputs (``fields.lr_fields``)
depend on it alone; HR targets add terrain effects and random small scales (``noise``, convective
cells in ``precipitation``). ``simulate`` writes a world to Zarr, ``oracle`` draws new small
scales for the same large-scale state: exact samples of p(HR | LR).
"""

from finescale.data.world.model import World
from finescale.data.world.params import PRESETS, WorldParams, preset
from finescale.data.world.simulate import open_world, oracle, simulate

__all__ = ["PRESETS", "World", "WorldParams", "open_world", "oracle", "preset", "simulate"]

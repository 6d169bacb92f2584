"""Neural-network building blocks (no training logic, no data files).

The settings (:mod:`.settings`) import only pydantic, so the config can embed them; the network
(:mod:`.unet`) needs torch, so its names are imported on first use. AtmoRep's transformer
blocks live with AtmoRep (``finescale.atmorep.network``).
"""

from __future__ import annotations

from typing import Any

from finescale.nn.settings import UNetArchitecture, UNetSettings

__all__ = ["UNet", "UNetArchitecture", "UNetSettings", "count_parameters"]
_UNET = ("UNet", "count_parameters")


def __getattr__(name: str) -> Any:
    if name in _UNET:
        from finescale.nn import unet

        return getattr(unet, name)
    raise AttributeError(f"module 'finescale.nn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_UNET])

"""finescale: calibrated fine-scale ensembles from coarse atmospheric fields.

``finescale.load(checkpoint)`` gives a :class:`~finescale.api.Model` whose ``downscale`` draws
an ensemble in memory; ``finescale.evaluate(forecast, truth)`` scores one (docs/python-api.md).
They are imported on first use, so ``import finescale`` stays light.
"""

from __future__ import annotations

from typing import Any

from finescale.version import __version__

__all__ = ["Model", "__version__", "evaluate", "load"]
_API = ("load", "evaluate", "Model")


def __getattr__(name: str) -> Any:
    if name in _API:
        from finescale import api

        return getattr(api, name)
    raise AttributeError(f"module 'finescale' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])

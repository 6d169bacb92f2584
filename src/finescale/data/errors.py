"""The errors of the data pipeline, and how its messages name the data they are about.

Every stage (opening, reading chunk by chunk, aligning, pairing) refuses bad input with a
:class:`PairError` whose message names the file and the variable; the subclasses also behave as
the built-in error a caller may expect (FileNotFoundError, KeyError). Apart so that each stage
raises them without importing the others.
"""

from __future__ import annotations

import xarray as xr

__all__ = [
    "IN_MEMORY",
    "MissingVariableError",
    "PairError",
    "SourceNotFoundError",
    "source_name",
]

#: What error messages name instead of a file for a dataset passed to
#: :func:`finescale.data.sources.open_source`.
IN_MEMORY = "in-memory dataset"


class PairError(ValueError):
    """LR/HR data that cannot be opened or paired; the message names the file and variable."""


class SourceNotFoundError(PairError, FileNotFoundError):
    """A source path that does not exist (also a FileNotFoundError)."""


class MissingVariableError(PairError, KeyError):
    """A mapped variable that is not in its file (also a KeyError); lists the ones that are."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def source_name(ds: xr.Dataset) -> str:
    """What messages name for ``ds``: the file it was opened from, or "in memory"."""
    return str(ds.attrs.get("finescale_source", "in memory"))

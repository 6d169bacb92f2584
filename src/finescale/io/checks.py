"""Checks before long work: can the output folder be written, and does the output fit?

Kept apart from the writers: a command runs them first, to refuse an output before hours of
work rather than after.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path


class OutputError(ValueError):
    """An output that cannot be written (a folder without write permission, a full disk); the
    message names the path."""


class LowSpaceWarning(UserWarning):
    """Less free space than the uncompressed size of an output: it fits only if it compresses."""


#: an output is refused where the free space is below this fraction of its uncompressed size,
#: which no ensemble reaches: with the default lz4 an Alps-world ensemble took 59 % (t2m 57 %,
#: winds 76-79 %, precipitation, mostly zeros, 22 %), so such a run would fill the disk part-way
REFUSE_BELOW = 0.1


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(folder: str | Path) -> Path:
    """Check that files can be created in ``folder`` (or, if it does not exist yet, in its nearest
    existing parent, where it would be created), by creating and removing one; returns ``folder``.

    Raises :class:`OutputError` naming ``folder`` otherwise, so an output that cannot be written
    is refused before the work, not after it. Nothing is created or left behind.
    """
    folder = Path(folder)
    base = _existing_ancestor(folder)
    if not base.is_dir():
        raise OutputError(f"{folder}: cannot write here ({base} is not a folder)")
    try:
        with tempfile.NamedTemporaryFile(dir=base, prefix=".finescale-write-check-"):
            pass
    except OSError as exc:
        raise OutputError(f"{folder}: cannot write here ({base}: {exc.strerror or exc})") from None
    return folder


def check_free_space(folder: str | Path, needed: int) -> None:
    """Refuse (:class:`OutputError`) an output of ``needed`` uncompressed bytes where the free space
    of ``folder``'s file system is below ``REFUSE_BELOW`` x ``needed``; warn
    (:class:`LowSpaceWarning`) where it is below ``needed``. The compressed size is not known
    before the data exist.
    """
    free = shutil.disk_usage(_existing_ancestor(Path(folder))).free
    if free >= needed:
        return
    text = f"{folder}: {free / 1e9:.3g} GB free for an output of {needed / 1e9:.3g} GB uncompressed"
    if free < REFUSE_BELOW * needed:
        raise OutputError(
            f"{text}, which does not fit even compressed: free some space or write elsewhere"
        )
    warnings.warn(f"{text}; it fits only if it compresses well", LowSpaceWarning, stacklevel=2)

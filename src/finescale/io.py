"""Writing outputs so that a crash never leaves a file that looks complete.

Everything written whole goes to a temporary name beside its destination and is renamed into
place only when complete (rename is atomic on POSIX within one file system). Ensembles too long
to generate in one go are written block by block into a partial store beside their destination
(:func:`fill_ensemble`): a killed run resumes with the blocks still missing, several processes
share the blocks, and the store is renamed into place once every block is written. Deterministic
fields (baselines, AtmoRep's references) are written whole as one-member ensembles
(:func:`forecast_dataset`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

# Zarr format 2 with consolidated metadata: readable by every xarray/zarr/netCDF-C in use today
ZARR_FORMAT: dict[str, Any] = {"zarr_format": 2, "consolidated": True}


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed.

    Works for files and for directories (Zarr stores).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def write_json(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    return Path(path)


def write_text(text: str, path: str | Path) -> Path:
    """Write ``text`` to ``path``, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_zarr(ds: xr.Dataset, path: str | Path, **kwargs: Any) -> Path:
    """Write a whole dataset to a Zarr store, atomically (consolidated metadata)."""
    with atomic_path(path) as tmp:
        ds.to_zarr(tmp, mode="w", **(ZARR_FORMAT | kwargs))
    return Path(path)


class EnsembleStore:
    """An ensemble (member, time, y, x) Zarr store filled block by block, for outputs too big to hold.

    ``create`` writes the metadata and coordinates (data lazily as dask zeros, never computed);
    ``write`` fills a block of members and times in place. Use it on a temporary path inside
    :func:`atomic_path`, or through :func:`fill_ensemble`, so the store appears under its name
    only once every block is written.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def create(
        self,
        variables: dict[str, dict[str, Any]],
        members: int,
        times: Any,
        lat: Any,
        lon: Any,
        chunk_times: int,
        attrs: dict[str, Any] | None = None,
    ) -> EnsembleStore:
        """variables: name -> CF attrs; times: (T,) datetime64; lat, lon: (y, x) degrees."""
        import dask.array

        lat, lon = np.asarray(lat), np.asarray(lon)
        times = np.asarray(times).astype("datetime64[ns]")
        shape = (members, times.size, *lat.shape)
        chunks = (1, max(1, min(chunk_times, times.size)), *lat.shape)
        data = {
            name: (("member", "time", "y", "x"), dask.array.zeros(shape, chunks=chunks, dtype=np.float32), var_attrs)
            for name, var_attrs in variables.items()
        }
        coords = {
            "member": np.arange(members),
            "time": times,
            "lat": (("y", "x"), lat, {"units": "degrees_north", "standard_name": "latitude"}),
            "lon": (("y", "x"), lon, {"units": "degrees_east", "standard_name": "longitude"}),
        }
        first = np.datetime_as_string(times[0], unit="h") if times.size else "1970-01-01T00"
        encoding: dict[str, Any] = {name: {"chunks": chunks} for name in variables}
        encoding["time"] = {"units": f"hours since {first}:00", "dtype": "int64"}
        ds = xr.Dataset(data, coords=coords, attrs=attrs or {})
        ds.to_zarr(self.path, mode="w", compute=False, encoding=encoding, **ZARR_FORMAT)
        return self

    def write(self, members: slice, times: slice, blocks: dict[str, Any]) -> None:
        """Fill ``blocks`` (name -> array (m, t, y, x)) at the given member and time slices."""
        ds = xr.Dataset({name: (("member", "time", "y", "x"), block) for name, block in blocks.items()})
        ds.to_zarr(self.path, region={"member": members, "time": times}, **ZARR_FORMAT)


def forecast_dataset(
    fields: xr.Dataset, truth: xr.Dataset, attrs: Mapping[str, str | int | float]
) -> xr.Dataset:
    """Deterministic HR fields as a one-member ensemble in finescale's forecast format.

    fields: (time, ..., y, x) per variable on the HR grid. truth: the HR truth, whose variable
    attrs (units, long_name, standard_name, ...) and lat/lon coordinates are copied.
    Returns float32 variables (member, time, ..., y, x) with member = [0], coordinates
    lat(y, x), lon(y, x) and time, and global ``attrs``; write it with :func:`write_zarr`.
    """
    out = {}
    for name, da in fields.data_vars.items():
        da = da.astype(np.float32).expand_dims(member=1).transpose("member", "time", ...)
        out[name] = da.assign_attrs(dict(truth[name].attrs)).drop_vars(["lat", "lon"],
                                                                      errors="ignore")
    ds = xr.Dataset(out, coords={"member": np.arange(1)})
    ds = ds.assign_coords(lat=truth["lat"].reset_coords(drop=True).compute(),
                          lon=truth["lon"].reset_coords(drop=True).compute())
    ds.attrs = dict(attrs)
    for variable in ds.variables.values():
        variable.encoding = {}
    return ds


# --------------------------------------------------------------------------------------------
# checks before long work


class OutputError(ValueError):
    """An output that cannot be written (a folder without write permission, a full disk); the message names the path."""


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
    of ``folder``'s file system is below ``REFUSE_BELOW`` x ``needed``; warn (:class:`LowSpaceWarning`)
    where it is below ``needed``. The compressed size is not known before the data exist.
    """
    free = shutil.disk_usage(_existing_ancestor(Path(folder))).free
    if free >= needed:
        return
    text = f"{folder}: {free / 1e9:.3g} GB free for an output of {needed / 1e9:.3g} GB uncompressed"
    if free < REFUSE_BELOW * needed:
        raise OutputError(f"{text}, which does not fit even compressed: free some space or write elsewhere")
    warnings.warn(f"{text}; it fits only if it compresses well", LowSpaceWarning, stacklevel=2)


# --------------------------------------------------------------------------------------------
# ensembles written block by block: resumable, shared between processes


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
        raise ValueError(f"rank {rank} with {world_size} processes: the rank must be in 0..{world_size - 1}")
    return rank, world_size


def block_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed for one block of random draws from the run's ``seed`` and the block's keys
    (first member, time in seconds, ...): the same whichever process draws the block, and when."""
    entropy = [int(k) % 2**64 for k in (seed, *keys)]  # SeedSequence takes non-negative integers
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> np.uint64(1))


@dataclass(frozen=True)
class Block:
    """One unit of work of an ensemble: a group of members over a run of times (whole Zarr chunks)."""

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
    pairs = [(members, slice(t0, min(t0 + chunk, n_times))) for t0 in starts for members in member_groups]
    return [Block(i, members, times) for i, (members, times) in enumerate(pairs)]


@dataclass
class EnsembleSpec:
    """Everything an ensemble store is created from (the arguments of :meth:`EnsembleStore.create`)."""

    variables: dict[str, dict[str, Any]]
    members: int
    times: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    chunk_times: int
    attrs: dict[str, Any]

    def create(self, path: str | Path) -> EnsembleStore:
        return EnsembleStore(path).create(
            self.variables, self.members, self.times, self.lat, self.lon, self.chunk_times, self.attrs
        )

    def nbytes(self, block: Block) -> int:
        """Uncompressed size of a block (float32 values)."""
        m = len(range(self.members)[block.members])
        t = block.times.stop - block.times.start
        return 4 * m * t * len(self.variables) * int(np.asarray(self.lat).size)

    def request(self, blocks: Sequence[Block]) -> dict[str, Any]:
        """What is generated, as plain types: attributes, variables, members, times, grid and blocks."""

        def digest(values: Any) -> str:
            return hashlib.sha256(np.ascontiguousarray(values).tobytes()).hexdigest()

        times = np.asarray(self.times).astype("datetime64[ns]")
        layout = [[b.members.start, b.members.stop, b.times.start, b.times.stop] for b in blocks]
        request = {
            "attrs": self.attrs,
            "variables": self.variables,
            "members": self.members,
            "times": {"count": int(times.size), "first": str(times[0]), "last": str(times[-1]), "sha256": digest(times)},
            "grid": {"shape": list(np.shape(self.lat)), "sha256": digest(np.stack([self.lat, self.lon]).astype(np.float64))},
            "chunk_times": self.chunk_times,
            "blocks": {"count": len(layout), "sha256": digest(np.asarray(layout, dtype=np.int64))},
        }
        return json.loads(json.dumps(request, sort_keys=True, default=str))  # as read back from request.json


def _differences(found: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """Keys (``attrs.sampler``, ``members``, ...) whose values differ between two requests."""
    out = []
    for key in sorted(set(found) | set(wanted)):
        a, b = found.get(key), wanted.get(key)
        if key == "attrs" and isinstance(a, dict) and isinstance(b, dict):
            out += [f"attrs.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif a != b:
            out.append(key)
    return out


class PartialEnsemble:
    """An ensemble being written block by block in ``.{name}.partial`` beside its destination ``out``.

    The folder holds ``request.json`` (what is generated), ``store.zarr`` (the ensemble, created
    once with every coordinate and attribute) and ``done/<block index>``, an empty file created
    only after the block's data are written. It appears whole (made under a temporary name and
    renamed), so whichever process comes first creates it and the others use it.
    """

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.folder = self.out.with_name(f".{self.out.name}.partial")
        self.store = EnsembleStore(self.folder / "store.zarr")
        self._claimed = self.folder / "final.zarr"  # store.zarr while one process moves it to out

    def done(self, request: dict[str, Any]) -> set[int]:
        """Indices of the blocks written so far (none without a partial output).

        Raises ValueError where the partial output was made for another request.
        """
        if not self.folder.is_dir():
            return set()
        found = json.loads((self.folder / "request.json").read_text())
        if found != request:
            raise ValueError(
                f"{self.folder}: a partial output of another request (differs in "
                f"{', '.join(_differences(found, request))}); rerun with the same arguments to complete it, "
                "or remove it to start over"
            )
        return {int(p.name) for p in (self.folder / "done").iterdir() if p.name.isdigit()}

    def recover(self) -> None:
        """Take back a store that a process died moving to ``out`` (between the two renames of
        :meth:`finish`). Only for a process that runs alone: another one may be moving it now."""
        if self._claimed.is_dir() and not self.store.path.exists():
            os.rename(self._claimed, self.store.path)

    def create(self, spec: EnsembleSpec, request: dict[str, Any]) -> None:
        """Make the partial output unless it exists (another process may make it at the same time)."""
        if self.folder.is_dir():
            return
        tmp = self.folder.with_name(f"{self.folder.name}.tmp-{uuid.uuid4().hex[:8]}")
        try:
            tmp.mkdir(parents=True)
            spec.create(tmp / "store.zarr")
            (tmp / "done").mkdir()
            (tmp / "request.json").write_text(json.dumps(request, indent=1, sort_keys=True) + "\n")
            try:
                os.rename(tmp, self.folder)  # atomic; fails where another process was first
            except OSError:
                if not self.folder.is_dir():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def write(self, block: Block, data: dict[str, np.ndarray]) -> None:
        """Write a block's data (name -> (m, t, y, x)), then mark it done."""
        self.store.write(block.members, block.times, data)
        (self.folder / "done" / str(block.index)).touch()

    def finish(self, request: dict[str, Any], n_blocks: int) -> bool:
        """Move the store to ``out`` (replacing an older output) once all ``n_blocks`` are done.

        Returns True when this process did; False while blocks are missing, or when another
        process, done at the same moment, moves it (renaming the store first decides which).
        """
        if len(self.done(request)) < n_blocks:
            return False
        try:
            os.rename(self.store.path, self._claimed)
        except FileNotFoundError:
            return False
        old = self.folder / "old.zarr"
        shutil.rmtree(old, ignore_errors=True)
        if self.out.exists() or self.out.is_symlink():
            os.rename(self.out, old)
        os.rename(self._claimed, self.out)
        shutil.rmtree(self.folder)
        return True


@dataclass
class Filled:
    """What one :func:`fill_ensemble` call did."""

    path: Path  #: the output when complete, else the partial folder
    complete: bool
    blocks: int  #: blocks of the whole output
    resumed: int  #: of those, written before this call
    written: int  #: of those, written by this call


def fill_ensemble(
    out: str | Path,
    spec: EnsembleSpec,
    blocks: Sequence[Block],
    draw: Callable[[Block], dict[str, np.ndarray]],
    *,
    rank: int = 0,
    world_size: int = 1,
    note: Callable[[str], None] | None = None,
) -> Filled:
    """Write the ensemble ``spec`` to ``out``, block by block, with ``draw(block)`` -> name -> (m, t, y, x).

    Resumable: the blocks go to a :class:`PartialEnsemble` beside ``out``; a rerun with the same
    request (attributes, members, times, grid, blocks) draws only the blocks not yet marked done,
    and a partial output of another request is refused (ValueError naming it: remove it or rerun
    with the same arguments). Shared: process ``rank`` of ``world_size`` draws the blocks whose
    index modulo ``world_size`` is ``rank``; the process that finds every block done after its own
    moves the store to ``out``. A rank that dies leaves its blocks missing: rerunning it, or one
    process with the same arguments and no rank (once the others have stopped), completes the output. ``draw`` should seed its
    random numbers by block (:func:`block_seed`) so the result does not depend on who draws what.
    Free space is checked for this process's missing blocks first (:func:`check_free_space`).
    """
    partial = PartialEnsemble(out)
    request = spec.request(blocks)
    mine = [b for b in blocks if b.index % world_size == rank]
    if not mine:
        if note:
            note(f"rank {rank} of {world_size}: no blocks to write (the output has {len(blocks)})")
        return Filled(partial.folder, False, len(blocks), 0, 0)
    done = partial.done(request)
    if world_size == 1:
        partial.recover()
    todo = [b for b in mine if b.index not in done]
    check_free_space(partial.folder.parent, sum(spec.nbytes(b) for b in todo))
    if done and note:
        note(f"resuming {partial.folder}: {len(done)} of {len(blocks)} blocks already written")
    partial.create(spec, request)
    for block in todo:
        partial.write(block, draw(block))
    if partial.finish(request, len(blocks)):
        return Filled(partial.out, True, len(blocks), len(done), len(todo))
    if note:
        note(f"rank {rank} of {world_size}: its blocks are written to {partial.folder}; {partial.out} appears "
             "once every process has written its blocks")
    return Filled(partial.folder, False, len(blocks), len(done), len(todo))

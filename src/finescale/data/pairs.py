"""LR/HR pairs: the last stage of the data pipeline (open -> align/check -> pair & split).

:func:`open_pair` opens the sources (:mod:`finescale.data.sources`), intersects their times and
checks their alignment (:mod:`finescale.data.alignment`); :func:`split_times` cuts the times
into train/validation/test blocks, and :func:`report_table` shows what the checks measured.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
from rich.table import Table

from finescale.config import ConfigError, DataConfig, SplitConfig
from finescale.data.alignment import AlignmentReport, check_alignment
from finescale.data.errors import PairError
from finescale.data.sources import INFERRED, open_source, open_static
from finescale.data.times import TimeReport, align_time, hours_since

__all__ = [
    "SPLITS",
    "Pair",
    "open_pair",
    "report_table",
    "require_validation",
    "shared_times",
    "split_block",
    "split_times",
]

# --------------------------------------------------------------------------------------------
# splits


def split_times(times: Any, cfg: SplitConfig) -> dict[str, np.ndarray]:
    """Contiguous ``train``, ``validation`` and ``test`` blocks of ``times``, in that order.

    times: strictly increasing 1-D times (datetime64 or cftime). Block boundaries fall at the
    cumulative fractions of the number of times; then the first times of the validation and test
    blocks that lie within ``gap_hours`` of the end of the previous block are dropped, so every
    block starts more than ``gap_hours`` after the last time of the block before it. Returns the
    time values of each block (``validation`` may be empty when its fraction is 0).
    Raises ValueError when a block with a non-zero fraction ends up empty.
    """
    times = np.asarray(times)
    n = times.size
    i1 = round(cfg.train * n)
    i2 = round((cfg.train + cfg.validation) * n)
    blocks = {"train": times[:i1], "validation": times[i1:i2], "test": times[i2:]}
    previous = blocks["train"]
    for name in ("validation", "test"):
        block = blocks[name]
        if cfg.gap_hours > 0 and previous.size and block.size:
            after = hours_since(block, previous[-1])
            block = block[after > cfg.gap_hours]
            blocks[name] = block
        if block.size:
            previous = block
    wanted = {"train": cfg.train, "validation": cfg.validation, "test": cfg.test}
    for name, block in blocks.items():
        if wanted[name] > 0 and block.size == 0:
            raise ValueError(
                f"the {name} block is empty: {n} times split {cfg.train:g}/{cfg.validation:g}/"
                f"{cfg.test:g} with a gap of {cfg.gap_hours:g} h; use more times or a smaller gap"
            )
    return blocks


#: The names a split is chosen by (``all``: every time).
SPLITS = ("train", "validation", "test", "all")


def split_block(times: Any, cfg: SplitConfig, split: str) -> np.ndarray:
    """The times of one ``split`` (train, validation, test or all) of ``times``.

    ``times`` should be the times LR and HR share (:func:`shared_times`), which is what training
    splits. ValueError for an unknown split name or an empty block.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}'; choose from {', '.join(SPLITS)}")
    if split == "all":
        return np.asarray(times)
    chosen = np.asarray(split_times(times, cfg)[split])
    if chosen.size == 0:
        raise ValueError(f"the {split} split is empty (its fraction is 0); choose another split")
    return chosen


def require_validation(cfg: SplitConfig) -> None:
    """ConfigError unless the splits keep a validation block: a training run validates on it, and
    validating on the test block would tune the run on the data it is later scored on."""
    if cfg.validation <= 0:
        raise ConfigError(
            "data.splits.validation is 0: training needs a validation block of its own (the test "
            "block is kept for scoring); give data.splits.validation a positive fraction, e.g. "
            "--set 'data.splits={train: 0.7, validation: 0.15, test: 0.15}'"
        )


def shared_times(cfg: DataConfig) -> np.ndarray:
    """The times the config's LR and HR sources share: the time axis training splits."""
    _, hr, _ = align_time(open_source(cfg.lr), open_source(cfg.hr))
    return hr["time"].values


# --------------------------------------------------------------------------------------------
# the pair


@dataclass(frozen=True)
class Pair:
    """Aligned LR and HR data (and static HR fields), ready for sampling.

    lr, hr: datasets in finescale's layout, on the same times. static: time-independent HR
    fields on the HR grid, or None. ratio: LR spacing / HR spacing.
    """

    lr: xr.Dataset
    hr: xr.Dataset
    static: xr.Dataset | None
    ratio: float
    time_report: TimeReport
    alignment: AlignmentReport


def _match_longitudes(ds: xr.Dataset, ref: xr.Dataset) -> xr.Dataset:
    """``ds`` with longitudes shifted by whole turns into the convention of ``ref``."""
    turns = np.round((np.nanmedian(ref["lon"].values) - np.nanmedian(ds["lon"].values)) / 360.0)
    if turns == 0:
        return ds
    return ds.assign_coords(lon=ds["lon"] + 360.0 * turns)


def open_pair(cfg: DataConfig) -> Pair:
    """Open LR, HR and static sources, intersect their times and check their alignment.

    Longitudes of LR and static fields are put into the HR convention ([-180, 180) or
    [0, 360)). Raises PairError (or a subclass: SourceNotFoundError, MissingVariableError,
    MisalignedError) or units.UnitsError with a message naming the file and what is wrong.
    """
    hr = open_source(cfg.hr)
    lr = _match_longitudes(open_source(cfg.lr), hr)
    static = _match_longitudes(open_static(cfg.static), hr) if cfg.static is not None else None
    known = set(map(str, hr.data_vars)) | set(map(str, lr.data_vars))
    if static is not None:
        known |= set(map(str, static.data_vars))
    unknown = sorted(set(cfg.transforms) - known)
    if unknown:
        raise PairError(
            f"transforms are given for {', '.join(unknown)}, which no source provides "
            f"(variables: {', '.join(sorted(known))})"
        )
    lr, hr, time_report = align_time(lr, hr)
    alignment = check_alignment(lr, hr, cfg.alignment, static)
    return Pair(lr, hr, static, alignment.ratio, time_report, alignment)


# --------------------------------------------------------------------------------------------
# reporting


def _num(v: float | None, fmt: str = ".3g") -> str:
    return "-" if v is None or not np.isfinite(v) else format(v, fmt)


def report_tables(
    pair_or_reports: Pair | TimeReport | AlignmentReport | Iterable[TimeReport | AlignmentReport],
) -> list[Table]:
    """The tables of :func:`report_table`, separately: times, grids, variables (those known)
    and, given a Pair, the units and accumulation periods of every variable it opened.

    Laid out to be read whole at 80 columns: names never cut, long values wrapped or folded.
    """
    pair = pair_or_reports if isinstance(pair_or_reports, Pair) else None
    if pair is not None:
        items: list[Any] = [pair.time_report, pair.alignment]
    elif isinstance(pair_or_reports, (TimeReport, AlignmentReport)):
        items = [pair_or_reports]
    else:
        items = list(pair_or_reports)
    tables: list[Table] = []
    for item in items:
        if isinstance(item, TimeReport):
            tables.append(_time_table(item))
        elif isinstance(item, AlignmentReport):
            tables.append(_grid_table(item))
            if item.variables:
                tables.append(_variable_table(item))
    if pair is not None:
        tables.append(_units_table({"LR": pair.lr, "HR": pair.hr, "static": pair.static}))
    return tables


def report_table(
    pair_or_reports: Pair | TimeReport | AlignmentReport | Iterable[TimeReport | AlignmentReport],
) -> Table:
    """One rich table (for ``finescale pairs check``) holding the time report, the grids and
    ratio, per-variable correlation, bias and RMSE and (given a Pair) the unit conversions and
    accumulation periods applied on opening."""
    outer = Table.grid(padding=(1, 0))
    for table in report_tables(pair_or_reports):
        outer.add_row(table)
    return outer


def _table(title: str, *columns: str, right: Iterable[str] = ()) -> Table:
    """A table whose first column (names) is never wrapped nor cut; the others fold long words
    rather than cut them. Columns named in ``right`` (numbers) are right-justified."""
    table = Table(title=title, title_justify="left", caption_justify="left")
    right = set(right)
    for i, col in enumerate(columns):
        justify = "right" if col in right else "left"
        table.add_column(col, no_wrap=i == 0, overflow="fold", justify=justify)
    return table


def _time_table(t: TimeReport) -> Table:
    table = _table("Times", "", "LR", "HR")
    table.add_row("first", t.lr_range[0], t.hr_range[0])
    table.add_row("last", t.lr_range[1], t.hr_range[1])
    table.add_row("times", str(t.lr_times), str(t.hr_times))
    table.add_row("kept", str(t.kept), str(t.kept))
    table.add_row("dropped", str(t.lr_dropped), str(t.hr_dropped))
    table.add_row("first dropped", t.lr_first_dropped or "-", t.hr_first_dropped or "-")
    table.add_row("last dropped", t.lr_last_dropped or "-", t.hr_last_dropped or "-")
    table.caption = f"kept {t.first} .. {t.last}, calendar {t.calendar}"
    return table


def _grid_table(a: AlignmentReport) -> Table:
    table = _table("Grids", "", "LR", "HR")
    table.add_row(
        "points (y x x)", f"{a.lr_shape[0]} x {a.lr_shape[1]}", f"{a.hr_shape[0]} x {a.hr_shape[1]}"
    )
    table.add_row(
        "spacing (deg)",
        f"{a.lr_spacing[0]:.4g} x {a.lr_spacing[1]:.4g}",
        f"{a.hr_spacing[0]:.4g} x {a.hr_spacing[1]:.4g}",
    )
    if a.lr_extent is not None and a.hr_extent is not None:
        # (south, north, west, east) cell edges, one row per axis so that each fits on a line
        lr, hr = a.lr_extent, a.hr_extent
        table.add_row("lat (cell edges)", f"{lr[0]:.3f}..{lr[1]:.3f}", f"{hr[0]:.3f}..{hr[1]:.3f}")
        table.add_row("lon (cell edges)", f"{lr[2]:.3f}..{lr[3]:.3f}", f"{hr[2]:.3f}..{hr[3]:.3f}")
        table.add_row("longitude", _periodic_text(a.lr_periodic), _periodic_text(a.hr_periodic))
    table.caption = (
        f"ratio {a.ratio:.3g} (y {a.ratio_y:.3g}, x {a.ratio_x:.3g}); HR brought to LR by "
        f"{a.method or '-'}"
        + (f"; static: {', '.join(a.static)}" if a.static else "")
        + ("".join(f"\n{n}" for n in a.notes))
    )
    return table


def _periodic_text(periodic: bool) -> str:
    return "periodic (global)" if periodic else "regional"


def _variable_table(a: AlignmentReport) -> Table:
    numeric = ("times", "corr.", "pattern corr.", "bias", "RMSE")
    table = _table("LR vs HR on the LR grid", "variable", "units", *numeric, right=numeric)
    alternatives = []
    for v in a.variables.values():
        table.add_row(
            v.name,
            v.units or "-",
            str(v.times),
            _num(v.correlation, ".3f"),
            _num(v.pattern_correlation, ".3f"),
            _num(v.bias),
            _num(v.rmse),
        )
        if v.alternative:
            corr = _num(v.alternative_correlation, ".2f")
            alternatives.append(f"{v.name} {v.alternative} (corr. {corr})")
    # the best other layout of LR (flip, shift, transpose) goes under the table: a column of
    # its own would not fit in 80 columns
    table.caption = "corr.: of the anomalies; pattern corr.: of the values" + "".join(
        f"\nbest other layout of LR: {alt}" for alt in alternatives
    )
    return table


def _units_table(sources: dict[str, xr.Dataset | None]) -> Table:
    """Per variable of each source: the file's units -> those used, and the accumulation period
    (as recorded by :func:`finescale.data.sources.open_source`)."""
    table = _table(
        "Units and accumulation periods", "variable", "source", "units", "accumulated over"
    )
    for label, ds in sources.items():
        if ds is None:
            continue
        for name, da in ds.data_vars.items():
            used = str(da.attrs.get("units", "-"))
            source = da.attrs.get("source_units")
            converted = used if source is None else f"{source} -> {used}"
            period = da.attrs.get("accumulation_period")
            how = da.attrs.get("accumulation_period_source")
            how = "inferred" if how == INFERRED else how
            over = "-" if period is None else f"{period} ({how})" if how else str(period)
            table.add_row(str(name), label, converted, over)
    table.caption = (
        "units: in the file -> used, where converted; accumulated over: the period amounts were "
        "divided by, stated in the config or inferred from the (regular) time step"
    )
    return table

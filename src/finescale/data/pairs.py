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

from finescale.config import DataConfig, SplitConfig
from finescale.data.alignment import (
    AlignmentReport,
    TimeReport,
    _fmt_extent,
    align_time,
    check_alignment,
)
from finescale.data.sources import PairError, _hours, open_source, open_static

__all__ = [
    "Pair",
    "open_pair",
    "report_table",
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
            after = _hours(block, previous[-1])
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
    """The tables of :func:`report_table`, separately: times, grids, variables (those known)."""
    if isinstance(pair_or_reports, Pair):
        items: list[Any] = [pair_or_reports.time_report, pair_or_reports.alignment]
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
    return tables


def report_table(
    pair_or_reports: Pair | TimeReport | AlignmentReport | Iterable[TimeReport | AlignmentReport],
) -> Table:
    """One rich table (for ``finescale pairs check``) holding the time report, the grids and
    ratio, and per-variable correlation, bias and RMSE."""
    outer = Table.grid(padding=(1, 0))
    for table in report_tables(pair_or_reports):
        outer.add_row(table)
    return outer


def _time_table(t: TimeReport) -> Table:
    table = Table(title="Times", title_justify="left")
    for col in ("", "LR", "HR"):
        table.add_column(col)
    table.add_row(
        "range", f"{t.lr_range[0]} .. {t.lr_range[1]}", f"{t.hr_range[0]} .. {t.hr_range[1]}"
    )
    table.add_row("times", str(t.lr_times), str(t.hr_times))
    table.add_row("kept", str(t.kept), str(t.kept))
    table.add_row("dropped", str(t.lr_dropped), str(t.hr_dropped))
    table.add_row("first dropped", t.lr_first_dropped or "-", t.hr_first_dropped or "-")
    table.add_row("last dropped", t.lr_last_dropped or "-", t.hr_last_dropped or "-")
    table.caption = f"kept {t.first} .. {t.last}, calendar {t.calendar}"
    return table


def _grid_table(a: AlignmentReport) -> Table:
    table = Table(title="Grids", title_justify="left")
    for col in ("", "LR", "HR"):
        table.add_column(col)
    table.add_row(
        "points (y x x)", f"{a.lr_shape[0]} x {a.lr_shape[1]}", f"{a.hr_shape[0]} x {a.hr_shape[1]}"
    )
    table.add_row(
        "spacing (deg)",
        f"{a.lr_spacing[0]:.4g} x {a.lr_spacing[1]:.4g}",
        f"{a.hr_spacing[0]:.4g} x {a.hr_spacing[1]:.4g}",
    )
    if a.lr_extent is not None and a.hr_extent is not None:
        table.add_row("extent (cell edges)", _fmt_extent(a.lr_extent), _fmt_extent(a.hr_extent))
    table.caption = (
        f"ratio {a.ratio:.3g} (y {a.ratio_y:.3g}, x {a.ratio_x:.3g}); HR brought to LR by "
        f"{a.method or '-'}"
        + (f"; static: {', '.join(a.static)}" if a.static else "")
        + ("".join(f"\n{n}" for n in a.notes))
    )
    return table


def _variable_table(a: AlignmentReport) -> Table:
    table = Table(title="LR vs HR on the LR grid", title_justify="left")
    numeric = ("times", "correlation", "pattern corr.", "bias", "RMSE")
    for col in ("variable", "units", *numeric, "best alternative"):
        table.add_column(col, justify="right" if col in numeric else "left")
    for v in a.variables.values():
        alt = (
            f"{v.alternative} ({_num(v.alternative_correlation, '.2f')})" if v.alternative else "-"
        )
        table.add_row(
            v.name,
            v.units or "-",
            str(v.times),
            _num(v.correlation, ".3f"),
            _num(v.pattern_correlation, ".3f"),
            _num(v.bias),
            _num(v.rmse),
            alt,
        )
    return table

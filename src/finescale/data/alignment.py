"""Checking LR/HR alignment, second stage of the pipeline (open -> align/check -> pair & split).

Works on the datasets :mod:`finescale.data.sources` opens, once
:func:`finescale.data.times.align_time` has intersected their times;
:func:`finescale.data.pairs.open_pair` calls both. :func:`check_alignment` refuses pairs that are
clearly misaligned: LR finer than HR, a non-integer spacing ratio, different domains, LR cell
centres off the coarsened HR centres, or LR data that do not match HR coarsened to the LR grid
(a flipped, shifted or transposed LR is recognised and named). The geometry of the domains is in
:mod:`finescale.data.domains`, the comparison of the data in :mod:`finescale.data.consistency`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import xarray as xr

from finescale.config import AlignmentConfig
from finescale.data import grids
from finescale.data.consistency import VariableCheck, compare_variables
from finescale.data.domains import (
    block_mean,
    extent,
    extent_offset,
    extent_text,
    extent_within,
    node_index,
)
from finescale.data.errors import PairError, source_name

__all__ = [
    "AlignmentReport",
    "MisalignedError",
    "check_alignment",
    "check_covers",
]

#: Share of an LR cell added to ``tolerance_deg`` when domain edges and centres are compared:
#: edges computed as centre +- half a spacing carry the rounding of the coordinates in the file.
_EDGE_FRACTION = 0.05
#: A spacing ratio within this of a whole number counts as whole.
_RATIO_TOLERANCE = 0.02


class MisalignedError(PairError):
    """LR and HR that do not describe the same state on matching grids.

    ``report`` holds the checks done before the refusal (may be None).
    """

    def __init__(self, message: str, report: AlignmentReport | None = None) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class AlignmentReport:
    """What :func:`check_alignment` measured. Spacings and extents are in degrees.

    Extents are cell edges (south, north, west, east), latitude clipped to +-90; on a grid that
    goes round the globe (``lr_periodic``/``hr_periodic``: longitude is periodic) east - west
    is 360. ``ratio`` is LR spacing / HR spacing (mean of y and x); ``method`` says how HR was
    brought to the LR grid for the consistency check: ``coarsen`` (block means, grids nested as
    cells), ``nodes`` (HR values at the LR points, grids nested as points: every LR point is an
    HR point) or ``interpolate`` (non-nested grids).
    Fields after a refusal may be missing (None / empty) in the report a MisalignedError holds.
    """

    lr_shape: tuple[int, int]
    hr_shape: tuple[int, int]
    lr_spacing: tuple[float, float]
    hr_spacing: tuple[float, float]
    ratio: float
    ratio_y: float
    ratio_x: float
    lr_extent: tuple[float, float, float, float] | None = None
    hr_extent: tuple[float, float, float, float] | None = None
    method: str | None = None
    lr_periodic: bool = False
    hr_periodic: bool = False
    variables: Mapping[str, VariableCheck] = field(default_factory=dict)
    static: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "variables", MappingProxyType(dict(self.variables)))


def check_alignment(
    lr: xr.Dataset,
    hr: xr.Dataset,
    cfg: AlignmentConfig,
    static: xr.Dataset | None = None,
) -> AlignmentReport:
    """Refuse LR/HR pairs that are clearly misaligned; measure how well they agree otherwise.

    Checks, in order (the first failure raises MisalignedError with a partial report and a
    message that starts with the LR and HR sources):

    1. grids: LR must not be finer than HR; the spacing ratio must be a whole number, the same
       in y and x, when ``cfg.require_integer_ratio`` (nested grids);
    2. domains: nested grids must have the same cell-edge extents, and the LR cell centres must
       be the block means of the HR centres; non-nested grids need the HR domain inside the LR
       one. Tolerance: ``cfg.tolerance_deg`` plus 5 % of an LR cell;
    3. data: each variable in both LR and HR is compared with HR brought to the LR grid
       (``grids.coarsen`` for nested grids, bilinear ``regrid.interpolate`` otherwise) on up to
       48 evenly spaced times, by the correlation of anomalies about each point's time mean
       (see :class:`VariableCheck`). The pair is refused when LR flipped in y/x, rotated,
       transposed or shifted by 1-2 LR cells fits clearly better than LR as given (correlation
       higher by 0.02 and ``1 - r`` at most half as large), which catches a shifted smooth
       field that still correlates well, or when the correlation is below
       ``cfg.min_correlation``. The message names the rearrangement that fits;
    4. static HR fields must be on the HR grid (shape, and lat/lon within the tolerance).
    """
    lr_lat, lr_lon = lr["lat"].values, lr["lon"].values
    hr_lat, hr_lon = hr["lat"].values, hr["lon"].values
    # compare longitudes in one convention: shift LR by whole turns towards HR
    lr_lon = lr_lon + 360.0 * np.round((np.nanmedian(hr_lon) - np.nanmedian(lr_lon)) / 360.0)
    lr_dy, lr_dx = grids.grid_spacing(lr["lat"], lr["lon"])
    hr_dy, hr_dx = grids.grid_spacing(hr["lat"], hr["lon"])
    ratio_y, ratio_x = lr_dy / hr_dy, lr_dx / hr_dx
    partial: dict[str, Any] = {
        "lr_shape": tuple(lr_lat.shape),
        "hr_shape": tuple(hr_lat.shape),
        "lr_spacing": (lr_dy, lr_dx),
        "hr_spacing": (hr_dy, hr_dx),
        "ratio": (ratio_y + ratio_x) / 2,
        "ratio_y": ratio_y,
        "ratio_x": ratio_x,
    }

    def refuse(message: str) -> MisalignedError:
        files = f"LR {source_name(lr)} vs HR {source_name(hr)}: "
        return MisalignedError(files + message, AlignmentReport(**partial))

    spacing = f"LR spacing {lr_dy:.4g}° x {lr_dx:.4g}°, HR {hr_dy:.4g}° x {hr_dx:.4g}°"
    if ratio_y < 1 - 1e-3 or ratio_x < 1 - 1e-3:
        raise refuse(f"LR grid is finer than HR ({spacing}): are lr and hr swapped in the config?")
    nested = cfg.require_integer_ratio
    ratio = round(partial["ratio"])
    if nested:
        whole = all(abs(r - round(r)) <= _RATIO_TOLERANCE for r in (ratio_y, ratio_x))
        if not whole or round(ratio_y) != round(ratio_x):
            raise refuse(
                f"LR/HR spacing ratio is {ratio_y:.3g} in y and {ratio_x:.3g} in x, not one whole "
                f"number ({spacing}); for grids that are not nested set "
                "alignment.require_integer_ratio: false"
            )
        partial["ratio"] = float(ratio)

    tol = cfg.tolerance_deg + _EDGE_FRACTION * min(lr_dy, lr_dx)
    lr_ext = extent(lr_lat, lr_lon)
    hr_ext = extent(hr_lat, hr_lon)
    partial.update(
        lr_extent=lr_ext,
        hr_extent=hr_ext,
        lr_periodic=grids.is_global(lr_lon),
        hr_periodic=grids.is_global(hr_lon),
    )
    nodes = None
    if nested:
        periodic = partial["lr_periodic"] and partial["hr_periodic"]
        nodes = node_index(lr_lat, lr_lon, hr_lat, hr_lon, ratio, periodic)
        if nodes is not None:
            # Nested as points: every LR point must be the HR point it names (this also
            # checks the domains, whose cell edges differ by (ratio - 1) / 2 HR cells).
            at = np.ix_(*nodes)
            d_lat = float(np.nanmax(np.abs(hr_lat[at] - lr_lat)))
            d_lon = float(np.nanmax(np.abs(grids.wrap180(hr_lon[at] - lr_lon))))
            if max(d_lat, d_lon) > tol:
                nodes = None  # not nested as points: judged as nested cells below
    if nested and nodes is None:
        off = extent_offset(lr_ext, hr_ext, tol)
        if off > tol:
            raise refuse(
                f"LR and HR cover different domains: LR {extent_text(lr_ext)}; "
                f"HR {extent_text(hr_ext)} (edges differ by up to {off:.3g}°, "
                f"tolerance {tol:.3g}°)"
            )
        if hr_lat.shape != (lr_lat.shape[0] * ratio, lr_lat.shape[1] * ratio):
            raise refuse(
                f"HR grid {hr_lat.shape[0]} x {hr_lat.shape[1]} is not {ratio} times the LR grid "
                f"{lr_lat.shape[0]} x {lr_lat.shape[1]}"
            )
        d_lat = float(np.nanmax(np.abs(block_mean(hr_lat, ratio) - lr_lat)))
        d_lon = float(np.nanmax(np.abs(grids.wrap180(block_mean(hr_lon, ratio) - lr_lon))))
        if max(d_lat, d_lon) > tol:
            raise refuse(
                "LR cell centres are not the centres of the HR blocks they cover: off by up to "
                f"{d_lat:.3g}° in latitude and {d_lon:.3g}° in longitude (tolerance {tol:.3g}°; "
                f"half an LR cell is {lr_dy / 2:.3g}°: cell corners given as centres?)"
            )
    else:
        if not extent_within(hr_ext, lr_ext, tol):
            raise refuse(
                f"the HR domain is not inside the LR domain: LR {extent_text(lr_ext)}; "
                f"HR {extent_text(hr_ext)} (tolerance {tol:.3g}°)"
            )
    partial["method"] = "nodes" if nodes is not None else "coarsen" if nested else "interpolate"

    layout: int | tuple[np.ndarray, np.ndarray] | None = (
        nodes if nodes is not None else ratio if nested else None
    )
    checks, problems, notes = compare_variables(lr, hr, layout, cfg, lr_lon)
    partial.update(variables=checks, notes=tuple(notes))
    if problems:
        raise refuse("; ".join(problems))

    if static is not None:
        hr_tol = cfg.tolerance_deg + _EDGE_FRACTION * min(hr_dy, hr_dx)
        problems = list(_static_problems(static, hr, hr_tol))
        if problems:
            raise refuse("; ".join(problems))
        partial["static"] = tuple(str(n) for n in static.data_vars)
    return AlignmentReport(**partial)


def check_covers(lr: xr.Dataset, hr: xr.Dataset, tolerance_deg: float) -> None:
    """Refuse LR that does not cover the HR grid (LR and HR on different domains).

    lr, hr: datasets with lat/lon(y, x) in degrees; ``hr`` may hold HR data or static fields.
    The HR cell-edge extent must lie inside the LR one, within ``tolerance_deg`` plus 5 % of an
    LR cell (as in :func:`check_alignment`). Raises MisalignedError naming both sources.
    """
    lr_lon = lr["lon"].values
    hr_lon = hr["lon"].values
    lr_lon = lr_lon + 360.0 * np.round((np.nanmedian(hr_lon) - np.nanmedian(lr_lon)) / 360.0)
    lr_ext = extent(lr["lat"].values, lr_lon)
    hr_ext = extent(hr["lat"].values, hr_lon)
    tol = tolerance_deg + _EDGE_FRACTION * min(grids.grid_spacing(lr["lat"], lr["lon"]))
    if not extent_within(hr_ext, lr_ext, tol):
        raise MisalignedError(
            f"LR {source_name(lr)} vs HR {source_name(hr)}: the HR grid is not inside the LR "
            f"domain: LR {extent_text(lr_ext)}; HR {extent_text(hr_ext)} (tolerance {tol:.3g}°)"
        )


def _static_problems(static: xr.Dataset, hr: xr.Dataset, tol: float) -> Iterable[str]:
    hr_shape = (hr.sizes["y"], hr.sizes["x"])
    for name, da in static.data_vars.items():
        shape = (da.sizes.get("y"), da.sizes.get("x"))
        if shape != hr_shape:
            yield (
                f"static field '{name}' ({source_name(static)}) is not on the HR grid: "
                f"{shape[0]} x {shape[1]} points vs HR {hr_shape[0]} x {hr_shape[1]}"
            )
            continue
        d_lat = float(np.nanmax(np.abs(static["lat"].values - hr["lat"].values)))
        d_lon = float(np.nanmax(np.abs(grids.wrap180(static["lon"].values - hr["lon"].values))))
        if max(d_lat, d_lon) > tol:
            yield (
                f"static field '{name}' ({source_name(static)}) is not on the HR grid: lat/lon "
                f"differ by up to {d_lat:.3g}° / {d_lon:.3g}° (tolerance {tol:.3g}°)"
            )

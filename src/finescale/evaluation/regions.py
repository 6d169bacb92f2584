"""Regions scored alone: boxes in degrees or 0/1 masks on the truth grid."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from finescale.evaluation.open import match_grid, open_dataset, standardise
from finescale.verify.fields import region_mask

Box = tuple[float, float, float, float]  # lat0, lat1, lon0, lon1 in degrees
Region = Box | Sequence[float] | xr.DataArray | np.ndarray  # a box, or a mask on the truth grid


def load_mask(path: str | Path, variable: str) -> xr.DataArray:
    """A region mask from a file: ``variable`` of a NetCDF/Zarr file, True or 1 inside.

    Read into memory (one 2-D field); checked against the truth grid by :func:`prepare`.
    """
    ds = open_dataset(path, "mask")
    if variable not in ds.data_vars:
        raise KeyError(
            f"mask {path}: no variable {variable!r} "
            f"(it has {', '.join(map(str, ds.data_vars)) or 'none'})"
        )
    mask = ds[variable].load()
    mask.attrs["source"] = f"{path}:{variable}"
    return mask


def parse_regions(boxes: Iterable[str] = (), masks: Iterable[str] = ()) -> dict[str, Region]:
    """Command-line regions -> ``{NAME: box or mask}`` for :func:`prepare`'s ``regions``.

    ``boxes``: ``NAME=LAT0,LAT1,LON0,LON1`` in degrees (LON0 > LON1 crosses the date line).
    ``masks``: ``NAME=PATH:VAR``, a 0/1 or boolean variable of a NetCDF/Zarr file on the truth
    grid (read at once). Names must be unique.
    """
    out: dict[str, Region] = {}

    def add(name: str, region: Region) -> None:
        if name in out:
            raise ValueError(f"region name {name!r} given twice")
        out[name] = region

    for item in boxes:
        name, sep, text = item.partition("=")
        try:
            box = tuple(float(v) for v in text.split(","))
        except ValueError:
            box = ()
        if not sep or not name.strip() or len(box) != 4:
            raise ValueError(
                f"region {item!r}: expected NAME=LAT0,LAT1,LON0,LON1, e.g. alps=45.5,47,7,10"
            )
        add(name.strip(), box)
    for item in masks:
        name, sep, spec = item.partition("=")
        path, colon, variable = spec.strip().rpartition(":")
        if not sep or not name.strip() or not colon or not path or not variable:
            raise ValueError(
                f"mask {item!r}: expected NAME=PATH:VAR, e.g. land=static.zarr:land_sea_mask"
            )
        add(name.strip(), load_mask(path, variable))
    return out


def _mask_values(
    mask: xr.DataArray | np.ndarray, truth: xr.Dataset, where: str
) -> tuple[np.ndarray, dict[str, Any]]:
    """Boolean (y, x) array of a mask on the truth grid; NaN counts as outside."""
    shape = (truth.sizes["y"], truth.sizes["x"])
    info: dict[str, Any] = {"kind": "mask"}
    if isinstance(mask, xr.DataArray):
        if mask.attrs.get("source"):
            info["source"] = mask.attrs["source"]
        ds = standardise(mask.rename("mask").to_dataset(), where)
        ds = ds.squeeze(
            [d for d in ds["mask"].dims if d not in ("y", "x") and ds.sizes[d] == 1], drop=True
        )
        if set(ds["mask"].dims) != {"y", "x"}:
            raise ValueError(
                f"{where}: a mask needs dims (y, x) or (lat, lon), not {ds['mask'].dims}"
            )
        ds, notes = match_grid(ds, truth, where, "the truth grid")
        if notes:
            info["reordered"] = notes[0]
        values = np.asarray(ds["mask"].transpose("y", "x").values)
    else:
        values = np.asarray(mask)
        if values.shape != shape:
            raise ValueError(f"{where}: mask of shape {values.shape}, the truth grid is {shape}")
    if values.dtype != bool:
        numbers = values.astype(float)
        if not np.isin(numbers[np.isfinite(numbers)], (0.0, 1.0)).all():
            raise ValueError(
                f"{where}: a mask holds True/False or 0/1 (NaN: outside), found other values "
                "(a fraction such as a land-sea mask: threshold it first)"
            )
        values = numbers == 1.0
    return values, info


def region_masks(
    regions: Mapping[str, Region], truth: xr.Dataset
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Boolean (y, x) masks of the regions on the truth grid, and their description for meta."""
    masks, meta = {}, {}
    lat, lon = (
        np.asarray(truth["lat"].values, dtype=float),
        np.asarray(truth["lon"].values, dtype=float),
    )
    for name, region in regions.items():
        where = f"region {name!r}"
        if isinstance(region, (xr.DataArray, np.ndarray)):
            mask, info = _mask_values(region, truth, where)
        else:
            box = tuple(float(v) for v in region)
            if len(box) != 4 or not box[0] < box[1]:
                raise ValueError(
                    f"{where}: a box is (lat0, lat1, lon0, lon1) with lat0 < lat1, got {region!r}"
                )
            mask = np.asarray(region_mask(lat, lon, *box), dtype=bool)
            info = {"kind": "box", "lat": list(box[:2]), "lon": list(box[2:])}
        points = int(mask.sum())
        if points == 0:
            raise ValueError(
                f"{where}: covers no point of the truth grid "
                f"(lat {lat.min():.3g} to {lat.max():.3g}, "
                f"lon {lon.min():.3g} to {lon.max():.3g})"
            )
        masks[name] = mask
        meta[name] = {**info, "points": points, "fraction": points / mask.size}
    return masks, meta

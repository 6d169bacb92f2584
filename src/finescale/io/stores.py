"""The forecast format on disk: ensembles (member, time, y, x) in Zarr stores filled block by
block, and deterministic fields (baselines, AtmoRep's references) as one-member ensembles.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from finescale.io.atomic import ZARR_FORMAT


class EnsembleStore:
    """An ensemble (member, time, y, x) Zarr store filled block by block, for outputs too big to
    hold.

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
            name: (
                ("member", "time", "y", "x"),
                dask.array.zeros(shape, chunks=chunks, dtype=np.float32),
                var_attrs,
            )
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
        ds = xr.Dataset(
            {name: (("member", "time", "y", "x"), block) for name, block in blocks.items()}
        )
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
        out[name] = da.assign_attrs(dict(truth[name].attrs)).drop_vars(
            ["lat", "lon"], errors="ignore"
        )
    ds = xr.Dataset(out, coords={"member": np.arange(1)})
    ds = ds.assign_coords(
        lat=truth["lat"].reset_coords(drop=True).compute(),
        lon=truth["lon"].reset_coords(drop=True).compute(),
    )
    ds.attrs = dict(attrs)
    for variable in ds.variables.values():
        variable.encoding = {}
    return ds

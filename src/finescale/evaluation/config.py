"""The truth and LR input of an evaluation read through the data layer, as training read them.

With a config, the truth is ``open_source(cfg.data.hr)`` and the LR input
``open_source(cfg.data.lr)``: the config's variable names, units, accumulation periods,
orientation (south->north, west->east) and missing-value policy, read lazily through the
source's checks. What the data layer did to the files is written as notes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import xarray as xr

from finescale.config import DataConfig, SourceConfig
from finescale.data.times import time_text


@dataclass
class ConfigSources:
    """Truth and LR in finescale's layout, with where they came from and what was done."""

    truth: xr.Dataset
    lr: xr.Dataset
    truth_label: str  # "era5_hr.nc via config", for messages
    lr_label: str
    file_names: dict[str, str]  # finescale name -> the truth file's variable name
    notes: list[str] = field(default_factory=list)


def _variable_notes(ds: xr.Dataset, cfg: SourceConfig, label: str) -> list[str]:
    """One note per variable whose name, units or accumulation the data layer changed."""
    notes = []
    for name, spec in cfg.variables.items():
        attrs = ds[name].attrs
        done = []
        if spec.name != name:
            done.append(f"file variable {spec.name!r}")
        if attrs.get("source_units"):
            done.append(
                f"converted from {attrs['source_units']} to {attrs.get('units', spec.units)}"
            )
        period = attrs.get("accumulation_period")
        if period:
            source = attrs.get("accumulation_period_source", "")
            done.append(f"accumulation period {period}" + (f" ({source})" if source else ""))
        if done:
            notes.append(f"{label}: {name} is " + ", ".join(done))
    return notes


def select_times(
    truth: xr.Dataset,
    lr: xr.Dataset | None,
    data: DataConfig | None,
    *,
    split: str | None = None,
    times: slice | None = None,
) -> tuple[xr.Dataset, list[str]]:
    """``truth`` at the times of ``split`` (the config's splits of the times LR and HR share,
    as training split them) or within ``times`` (a slice of times, inclusive); and a note."""
    from finescale.data.pairs import split_block
    from finescale.data.times import align_time

    notes = []
    if split is not None:
        if data is None or lr is None:
            raise ValueError(f"--split {split}: needs --config (the splits are the config's)")
        _, aligned, _ = align_time(lr, truth)
        every = aligned["time"].values
        chosen = split_block(every, data.splits, split)
        truth = truth.sel(time=chosen)
        notes.append(
            f"{split} split: {chosen.size} of the {every.size} times LR and HR share "
            f"({time_text(chosen[0])} to {time_text(chosen[-1])})"
        )
    if times is not None:
        truth = truth.sel(time=times)
        if truth.sizes["time"] == 0:
            raise ValueError(
                f"--times {times.start}..{times.stop}: no time of the truth in this range"
            )
        notes.append(f"times {times.start}..{times.stop}: {truth.sizes['time']} times of the truth")
    return truth, notes


def open_config(
    data: DataConfig, *, split: str | None = None, times: slice | None = None
) -> ConfigSources:
    """Truth (``data.hr``) and LR (``data.lr``) through :func:`finescale.data.sources.open_source`.

    ``split``: train, validation, test or all (the config's ``splits``); ``times``: a slice of
    times. Raises what ``open_source`` raises (PairError naming the file, UnitsError) and
    ValueError for an unknown or empty split.
    """
    from finescale.data.sources import open_source

    truth_label, lr_label = f"{data.hr.path} via config", f"{data.lr.path} via config"
    truth, lr = open_source(data.hr), open_source(data.lr)
    notes = [
        (
            f"truth read through the config's data.hr ({data.hr.path}): its variable names, "
            "units, orientation (y south->north, x west->east) and missing-value policy"
        )
    ]
    if truth.attrs.get("finescale_orientation"):
        notes.append(f"truth ({truth_label}): {truth.attrs['finescale_orientation']}")
    notes += _variable_notes(truth, data.hr, f"truth ({truth_label})")
    truth, more = select_times(truth, lr, data, split=split, times=times)
    return ConfigSources(
        truth=truth,
        lr=lr,
        truth_label=truth_label,
        lr_label=lr_label,
        file_names={name: spec.name for name, spec in data.hr.variables.items()},
        notes=notes + more,
    )

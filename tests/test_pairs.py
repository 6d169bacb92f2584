"""Opening, aligning, checking and splitting LR/HR pairs, on small synthetic pairs built here."""

from __future__ import annotations

from pathlib import Path

import cftime
import numpy as np
import pytest
import xarray as xr
from rich.console import Console

from finescale.config import AlignmentConfig, DataConfig, SplitConfig
from finescale.data import units
from finescale.data.alignment import AlignmentReport, MisalignedError, check_alignment
from finescale.data.errors import MissingVariableError, PairError, SourceNotFoundError
from finescale.data.pairs import Pair, open_pair, report_table, report_tables, split_times
from finescale.data.sources import open_source, open_static
from finescale.data.times import TimeReport, align_time

RATIO = 4
LR_STEP = 1.0  # degrees
T0 = np.datetime64("2020-01-01T00", "ns")


# --------------------------------------------------------------------------------------------
# synthetic pairs


def hours(n: int, start: int = 0) -> np.ndarray:
    return T0 + (start + np.arange(n)) * np.timedelta64(1, "h")


def block_mean(v: np.ndarray, r: int) -> np.ndarray:
    """Block mean over the last two axes."""
    *lead, ny, nx = v.shape
    return v.reshape(*lead, ny // r, r, nx // r, r).mean(axis=(-3, -1))


def weather(lat: np.ndarray, lon: np.ndarray, nt: int, seed: int = 0) -> dict[str, np.ndarray]:
    """t2m (K) and precipitation rate (mm/h) on 2-D lat/lon, (time, y, x).

    A climatological south-north gradient, travelling waves (the weather) and small-scale noise.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(nt)[:, None, None]
    phase = 0.35 * t
    wave = np.sin(np.deg2rad(lon) * 9.0 + np.deg2rad(lat) * 4.0 + phase) + 0.7 * np.cos(
        np.deg2rad(lat) * 11.0 - 0.5 * phase
    )
    noise = rng.normal(0.0, 1.0, (nt, *lat.shape))
    t2m = 300.0 - 0.8 * lat + 3.0 * wave + noise
    rain = np.maximum(0.0, 2.0 * wave + 0.5 * noise - 1.0)
    return {"t2m": t2m, "tp": rain}


def regular_axes(ny: int, nx: int, step: float, lat0: float = 40.0, lon0: float = 5.0):
    lat = lat0 + (np.arange(ny) + 0.5) * step
    lon = lon0 + (np.arange(nx) + 0.5) * step
    return lat, lon


def to_file_dataset(fields: dict[str, np.ndarray], lat, lon, times) -> xr.Dataset:
    """A dataset laid out as files usually are: (time, lat, lon) with CF attributes."""
    ds = xr.Dataset(
        {
            "t2m": (("time", "lat", "lon"), fields["t2m"].astype("float32"), {"units": "K"}),
            # accumulated over the hour, in metres, as ERA5 stores it
            "tp": (
                ("time", "lat", "lon"),
                (fields["tp"] / 1000.0).astype("float32"),
                {"units": "m"},
            ),
        },
        coords={"time": times, "lat": lat, "lon": lon},
    )
    ds["lat"].attrs = {"units": "degrees_north", "standard_name": "latitude"}
    ds["lon"].attrs = {"units": "degrees_east", "standard_name": "longitude"}
    return ds


def make_pair(
    nt: int = 24, ny: int = 8, nx: int = 10, seed: int = 0, lr_noise: float = 0.1
) -> tuple[xr.Dataset, xr.Dataset]:
    """HR on a 0.25 deg grid and LR = HR coarsened 4x (plus a little model noise)."""
    hr_lat, hr_lon = regular_axes(ny * RATIO, nx * RATIO, LR_STEP / RATIO)
    lat2, lon2 = np.meshgrid(hr_lat, hr_lon, indexing="ij")
    hr_fields = weather(lat2, lon2, nt, seed)
    lr_fields = {k: block_mean(v, RATIO) for k, v in hr_fields.items()}
    rng = np.random.default_rng(seed + 100)
    lr_fields["t2m"] = lr_fields["t2m"] + rng.normal(0, lr_noise, lr_fields["t2m"].shape)
    lr_lat, lr_lon = regular_axes(ny, nx, LR_STEP)
    times = hours(nt)
    return (
        to_file_dataset(lr_fields, lr_lat, lr_lon, times),
        to_file_dataset(hr_fields, hr_lat, hr_lon, times),
    )


def write(ds: xr.Dataset, path: Path) -> Path:
    if path.suffix == ".zarr":
        ds.to_zarr(path, mode="w", consolidated=False)
    else:
        ds.to_netcdf(path)
    return path


def config(lr: Path, hr: Path, **extra) -> DataConfig:
    variables = {"t2m": {"name": "t2m", "units": "K"}}
    tree = {
        "lr": {"path": str(lr), "variables": variables},
        "hr": {"path": str(hr), "variables": variables},
        **extra,
    }
    return DataConfig.model_validate(tree)


def pair_files(tmp_path: Path, lr: xr.Dataset, hr: xr.Dataset, suffix: str = ".nc"):
    return write(lr, tmp_path / f"lr{suffix}"), write(hr, tmp_path / f"hr{suffix}")


# --------------------------------------------------------------------------------------------
# a well-aligned pair


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_aligned_pair_passes(tmp_path, suffix):
    lr_path, hr_path = pair_files(tmp_path, *make_pair(), suffix=suffix)
    pair = open_pair(config(lr_path, hr_path))
    assert isinstance(pair, Pair)
    assert pair.ratio == RATIO
    check = pair.alignment.variables["t2m"]
    assert check.correlation > 0.95
    assert check.pattern_correlation > 0.95
    assert abs(check.bias) < 0.1 and check.rmse < 0.2
    assert check.units == "K"
    assert pair.alignment.method == "coarsen"
    assert pair.alignment.lr_extent == pytest.approx((40.0, 48.0, 5.0, 15.0))
    assert pair.alignment.hr_extent == pytest.approx((40.0, 48.0, 5.0, 15.0))
    # layout: canonical dims, 2-D lat/lon, lazy data
    for ds in (pair.lr, pair.hr):
        assert ds["t2m"].dims == ("time", "y", "x")
        assert ds["lat"].dims == ("y", "x") and ds["lon"].dims == ("y", "x")
        assert ds["t2m"].chunks is not None
        assert np.all(np.diff(ds["lat"].values, axis=0) > 0)
        assert np.all(np.diff(ds["lon"].values, axis=1) > 0)


def test_report_table_renders(tmp_path):
    pair = open_pair(config(*pair_files(tmp_path, *make_pair())))
    console = Console(record=True, width=160)
    console.print(report_table(pair))
    text = console.export_text()
    for word in ("Times", "Grids", "t2m", "ratio 4", "corr.", "Units and accumulation"):
        assert word in text
    console.print(report_table([pair.time_report, pair.alignment]))


def test_report_tables_readable_at_80_columns(tmp_path):
    lr, hr = make_pair()
    hr["t2m"] = (hr["t2m"] - 273.15).assign_attrs(units="degC")
    lr_path, hr_path = pair_files(tmp_path, lr, hr)
    names = {
        "air_temperature_2m": {"name": "t2m", "units": "K"},
        "precipitation_rate": {"name": "tp", "units": "mm h-1", "accumulation": "1h"},
    }
    cfg = DataConfig.model_validate(
        {
            "lr": {"path": str(lr_path), "variables": names},
            "hr": {"path": str(hr_path), "variables": names},
        }
    )
    pair = open_pair(cfg)
    console = Console(record=True, width=80)
    for table in report_tables(pair):
        console.print(table)
    text = console.export_text()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in text  # nothing cut
    # every name, header and number whole, on one line
    for whole in (
        "air_temperature_2m",
        "precipitation_rate",
        "variable",
        "units",
        "times",
        "corr.",
        "pattern",
        "bias",
        "RMSE",
        "first dropped",
        "spacing (deg)",
        "lat (cell edges)",
        "2020-01-01T00:00",
        "2020-01-01T23:00",
        "40.000..48.000",
        "5.000..15.000",
        "degC -> K",
        "m -> mm h-1",
        "1 h (stated)",
        "accumulated over",
    ):
        assert whole in text, whole
    check = pair.alignment.variables["air_temperature_2m"]
    row = next(line for line in lines if "air_temperature_2m" in line and " K " in line)
    for value in (check.correlation, check.pattern_correlation):
        assert f"{value:.3f}" in row
    for value in (check.bias, check.rmse):
        assert f"{value:.3g}" in row
    if check.alternative:
        assert f"air_temperature_2m {check.alternative} (corr." in text


def test_north_to_south_file_is_sorted(tmp_path):
    lr, hr = make_pair()
    lr_path, hr_path = pair_files(tmp_path, lr.isel(lat=slice(None, None, -1)), hr)
    pair = open_pair(config(lr_path, hr_path))
    assert pair.alignment.variables["t2m"].correlation > 0.95
    # the values follow their coordinates
    opened = pair.lr["t2m"].isel(time=0).values
    np.testing.assert_allclose(opened, lr["t2m"].isel(time=0).values, rtol=1e-6)


def test_non_integer_ratio_allowed_when_not_required(tmp_path):
    lr, _ = make_pair()
    hr_lat, hr_lon = regular_axes(20, 25, 0.4)
    lat2, lon2 = np.meshgrid(hr_lat, hr_lon, indexing="ij")
    hr = to_file_dataset(weather(lat2, lon2, 24), hr_lat, hr_lon, hours(24))
    cfg = config(*pair_files(tmp_path, lr, hr), alignment={"require_integer_ratio": False})
    pair = open_pair(cfg)
    assert pair.alignment.method == "interpolate"
    assert pair.alignment.ratio == pytest.approx(2.5)
    assert pair.alignment.variables["t2m"].correlation > 0.8


# --------------------------------------------------------------------------------------------
# misaligned pairs are refused


def refused(tmp_path, lr, hr, **extra) -> str:
    with pytest.raises(MisalignedError) as info:
        open_pair(config(*pair_files(tmp_path, lr, hr), **extra))
    assert isinstance(info.value.report, AlignmentReport)
    return str(info.value)


def test_flipped_latitude_refused(tmp_path):
    lr, hr = make_pair()
    lr["t2m"].values = lr["t2m"].values[:, ::-1, :]  # data reversed, coordinates not
    message = refused(tmp_path, lr, hr)
    assert "LR latitude appears flipped" in message
    assert "when flipped vs" in message


def test_shift_by_one_lr_cell_refused(tmp_path):
    lr, hr = make_pair()
    lr["t2m"].values = np.roll(lr["t2m"].values, 1, axis=1)
    message = refused(tmp_path, lr, hr)
    assert "shifted north by 1 LR cell" in message


def test_swapped_axes_refused(tmp_path):
    lr, hr = make_pair(ny=8, nx=8)
    lr["t2m"].values = lr["t2m"].values.transpose(0, 2, 1).copy()
    message = refused(tmp_path, lr, hr)
    assert "axes appear swapped" in message


def test_different_state_refused(tmp_path):
    lr, hr = make_pair()
    lr["t2m"].values = lr["t2m"].values[::-1]  # each LR time shows another hour's weather
    message = refused(tmp_path, lr, hr)
    assert "do not describe the same state" in message


def test_different_domains_refused(tmp_path):
    lr, hr = make_pair()
    lr = lr.assign_coords(lat=lr["lat"] + 3.0)
    message = refused(tmp_path, lr, hr)
    assert "different domains" in message
    assert "lat 43.000..51.000" in message and "lat 40.000..48.000" in message


def test_lr_finer_than_hr_refused(tmp_path):
    lr, hr = make_pair()
    message = refused(tmp_path, hr, lr)  # swapped
    assert "LR grid is finer than HR" in message


def test_non_integer_ratio_refused(tmp_path):
    lr, _ = make_pair()
    hr_lat, hr_lon = regular_axes(20, 25, 0.4)
    lat2, lon2 = np.meshgrid(hr_lat, hr_lon, indexing="ij")
    hr = to_file_dataset(weather(lat2, lon2, 24), hr_lat, hr_lon, hours(24))
    message = refused(tmp_path, lr, hr)
    assert "ratio is 2.5" in message and "not one whole number" in message


def test_half_hr_cell_offset_refused(tmp_path):
    lr, hr = make_pair()
    message = refused(tmp_path, lr, hr.assign_coords(lat=hr["lat"] + 0.125))
    assert "different domains" in message


def test_static_field_checked(tmp_path):
    lr, hr = make_pair()
    lr_path, hr_path = pair_files(tmp_path, lr, hr)
    orog = xr.Dataset(
        {"orog": (("lat", "lon"), np.random.default_rng(1).random((32, 40)), {"units": "m"})},
        coords={"lat": hr["lat"], "lon": hr["lon"]},
    )
    good = write(orog, tmp_path / "orog.nc")
    static = {"path": str(good), "variables": {"orog": "orog"}}
    pair = open_pair(config(lr_path, hr_path, static=static))
    assert pair.static is not None and pair.static["orog"].dims == ("y", "x")
    assert pair.alignment.static == ("orog",)

    coarse = orog.coarsen(lat=2, lon=2).mean()
    bad = write(coarse, tmp_path / "orog_coarse.nc")
    with pytest.raises(MisalignedError, match="static field 'orog'.*not on the HR grid"):
        open_pair(
            config(lr_path, hr_path, static={"path": str(bad), "variables": {"orog": "orog"}})
        )


def test_check_alignment_directly_on_datasets(tmp_path):
    lr_path, hr_path = pair_files(tmp_path, *make_pair())
    cfg = config(lr_path, hr_path)
    lr, hr = open_source(cfg.lr), open_source(cfg.hr)
    report = check_alignment(lr, hr, AlignmentConfig(min_correlation=0.9))
    assert report.ratio == RATIO and report.lr_shape == (8, 10) and report.hr_shape == (32, 40)
    assert report.lr_spacing == pytest.approx((1.0, 1.0))
    assert report.hr_spacing == pytest.approx((0.25, 0.25))


# --------------------------------------------------------------------------------------------
# times


def test_time_intersection_reports_dropped(tmp_path):
    lr, hr = make_pair(nt=30)
    lr = lr.isel(time=slice(0, 24))  # 00:00 .. 23:00
    hr = hr.isel(time=slice(4, 30))  # 04:00 .. 05:00 next day
    pair = open_pair(config(*pair_files(tmp_path, lr, hr)))
    t = pair.time_report
    assert isinstance(t, TimeReport)
    assert (t.lr_times, t.hr_times, t.kept) == (24, 26, 20)
    assert (t.lr_dropped, t.hr_dropped) == (4, 6)
    assert t.lr_first_dropped == "2020-01-01T00:00" and t.lr_last_dropped == "2020-01-01T03:00"
    assert t.hr_first_dropped == "2020-01-02T00:00" and t.hr_last_dropped == "2020-01-02T05:00"
    assert (t.first, t.last) == ("2020-01-01T04:00", "2020-01-01T23:00")
    assert pair.lr.sizes["time"] == pair.hr.sizes["time"] == 20


def test_no_overlap_error_states_both_ranges(tmp_path):
    lr, hr = make_pair()
    hr = hr.assign_coords(time=hours(24, start=100))
    with pytest.raises(PairError, match="no time in common") as info:
        open_pair(config(*pair_files(tmp_path, lr, hr)))
    message = str(info.value)
    assert "2020-01-01T00:00 .. 2020-01-01T23:00" in message
    assert "2020-01-05T04:00 .. 2020-01-06T03:00" in message


def test_duplicated_time_error(tmp_path):
    lr, _ = make_pair()
    times = hours(24)
    times[5] = times[4]
    path = write(lr.assign_coords(time=times), tmp_path / "dup.nc")
    cfg = config(path, path)
    with pytest.raises(
        PairError,
        match=r"dup.nc: times must be strictly increasing.*"
        r"2020-01-01T04:00 \(index 5\) repeats",
    ):
        open_source(cfg.lr)


def test_non_monotonic_time_error(tmp_path):
    lr, _ = make_pair()
    times = hours(24)
    times[[7, 8]] = times[[8, 7]]
    path = write(lr.assign_coords(time=times), tmp_path / "order.nc")
    with pytest.raises(
        PairError, match=r"2020-01-01T07:00 \(index 8\) comes after 2020-01-01T08:00"
    ):
        open_source(config(path, path).lr)


def test_mixed_calendars_error():
    lat, lon = regular_axes(4, 4, 1.0)
    grid = {
        "lat": (("y", "x"), np.meshgrid(lat, lon, indexing="ij")[0]),
        "lon": (("y", "x"), np.meshgrid(lat, lon, indexing="ij")[1]),
    }
    noleap = [cftime.DatetimeNoLeap(2020, 1, 1, h) for h in range(3)]
    a = xr.Dataset(
        {"t2m": (("time", "y", "x"), np.zeros((3, 4, 4)))}, coords={"time": noleap, **grid}
    )
    b = a.assign_coords(time=hours(3))
    with pytest.raises(PairError, match="calendar 'noleap'.*'standard'"):
        align_time(a, b)
    # the same calendar on both sides works with cftime times too
    _, _, report = align_time(a, a.isel(time=slice(1, 3)))
    assert report.kept == 2 and report.lr_first_dropped == "2020-01-01T00:00"


# --------------------------------------------------------------------------------------------
# opening: errors, units, grids


def test_missing_file_error(tmp_path):
    path = tmp_path / "nothere.nc"
    with pytest.raises(SourceNotFoundError, match="nothere.nc: no such file") as info:
        open_source(config(path, path).lr)
    assert isinstance(info.value, FileNotFoundError)


def test_missing_variable_lists_available(tmp_path):
    lr_path, _ = pair_files(tmp_path, *make_pair())
    cfg = DataConfig.model_validate(
        {
            "lr": {"path": str(lr_path), "variables": {"u10": "u10"}},
            "hr": {"path": str(lr_path), "variables": {"u10": "u10"}},
        }
    )
    with pytest.raises(MissingVariableError) as info:
        open_source(cfg.lr)
    message = str(info.value)
    assert isinstance(info.value, KeyError)
    assert str(lr_path) in message and "'u10'" in message and "t2m, tp" in message


def test_unknown_units_error(tmp_path):
    lr, _ = make_pair()
    lr["t2m"].attrs["units"] = "furlongs per fortnight"
    path = write(lr, tmp_path / "odd.nc")
    for target in ("K", None):
        cfg = DataConfig.model_validate(
            {
                "lr": {"path": str(path), "variables": {"t2m": {"name": "t2m", "units": target}}},
                "hr": {"path": str(path), "variables": {"t2m": "t2m"}},
            }
        )
        with pytest.raises(units.UnitsError, match=r"odd.nc: variable 't2m'.*furlongs"):
            open_source(cfg.lr)


def test_units_converted_on_open(tmp_path):
    lr, _ = make_pair()
    celsius = lr.copy()
    celsius["t2m"] = (lr["t2m"] - 273.15).assign_attrs(units="degC")
    path = write(celsius, tmp_path / "celsius.nc")
    cfg = DataConfig.model_validate(
        {
            "lr": {
                "path": str(path),
                "variables": {
                    "t2m": {"name": "t2m", "units": "K"},
                    "tp": {"name": "tp", "units": "mm h-1", "accumulation": True},
                },
            },
            "hr": {"path": str(path), "variables": {"t2m": "t2m"}},
        }
    )
    ds = open_source(cfg.lr)
    assert ds["t2m"].attrs["units"] == "K" and ds["tp"].attrs["units"] == "mm h-1"
    np.testing.assert_allclose(ds["t2m"].values, lr["t2m"].values, atol=1e-3)
    # metres accumulated over one hour -> mm per hour
    np.testing.assert_allclose(ds["tp"].values, lr["tp"].values * 1000.0, rtol=1e-5, atol=1e-6)
    assert ds["tp"].chunks is not None  # still lazy


def test_accumulation_over_three_hours(tmp_path):
    lr, _ = make_pair(nt=6)
    lr = lr.assign_coords(time=T0 + np.arange(6) * np.timedelta64(3, "h"))
    path = write(lr, tmp_path / "3h.nc")
    spec = {"tp": {"name": "tp", "units": "mm h-1", "accumulation": True}}
    cfg = DataConfig.model_validate(
        {"lr": {"path": str(path), "variables": spec}, "hr": {"path": str(path), "variables": spec}}
    )
    ds = open_source(cfg.lr)
    np.testing.assert_allclose(ds["tp"].values, lr["tp"].values * 1000.0 / 3, rtol=1e-5, atol=1e-6)


def test_level_selection(tmp_path):
    lr, _ = make_pair(nt=4)
    t = lr["t2m"]
    stacked = xr.concat([t, t + 10.0], dim=xr.DataArray([850.0, 500.0], dims="plev", name="plev"))
    ds = xr.Dataset({"ta": stacked.transpose("time", "plev", "lat", "lon")})
    path = write(ds, tmp_path / "levels.nc")
    cfg = DataConfig.model_validate(
        {
            "lr": {
                "path": str(path),
                "level": "plev",
                "variables": {"t500": {"name": "ta", "level": 500}, "ta": "ta"},
            },
            "hr": {"path": str(path), "variables": {"ta": "ta"}},
        }
    )
    opened = open_source(cfg.lr)
    assert opened["t500"].dims == ("time", "y", "x")
    np.testing.assert_allclose(opened["t500"].values, t.values + 10.0)
    assert opened["ta"].dims == ("time", "level", "y", "x")
    bad = cfg.lr.model_copy(
        update={"variables": {"t": cfg.lr.variables["t500"].model_copy(update={"level": 700.0})}}
    )
    with pytest.raises(PairError, match="no level 700; levels: 850, 500"):
        open_source(bad)


def test_static_variables_of_a_source_are_kept(tmp_path):
    lr, _ = make_pair(nt=4)
    lr["orog"] = (("lat", "lon"), np.ones((8, 10)), {"units": "m"})
    path = write(lr, tmp_path / "with_orog.nc")
    cfg = DataConfig.model_validate(
        {
            "lr": {"path": str(path), "variables": {"t2m": "t2m", "orog": "orog"}},
            "hr": {"path": str(path), "variables": {"t2m": "t2m"}},
        }
    )
    ds = open_source(cfg.lr)
    assert ds["orog"].dims == ("y", "x") and ds["t2m"].dims == ("time", "y", "x")


def test_static_file_with_single_time(tmp_path):
    lr, _ = make_pair(nt=1)
    path = write(lr[["t2m"]].rename(t2m="z"), tmp_path / "invariant.nc")
    from finescale.config import StaticConfig

    ds = open_static(StaticConfig.model_validate({"path": str(path), "variables": {"z": "z"}}))
    assert ds["z"].dims == ("y", "x")


def test_in_memory_dataset_opens_as_its_file(tmp_path):
    lr, _ = make_pair(nt=6)
    # north-to-south and in degrees C, so that flipping and conversion are exercised too
    lr = lr.isel(lat=slice(None, None, -1))
    lr["t2m"] = (lr["t2m"] - 273.15).assign_attrs(units="degC")
    lr["orog"] = (("lat", "lon"), np.arange(80.0).reshape(8, 10), {"units": "m"})
    path = write(lr, tmp_path / "lr.nc")
    spec = {
        "t2m": {"name": "t2m", "units": "K"},
        "tp": {"name": "tp", "units": "mm h-1", "accumulation": True},
        "orog": "orog",
    }
    cfg = DataConfig.model_validate(
        {
            "lr": {"path": str(path), "variables": spec},
            "hr": {"path": "unused.nc", "variables": spec},
        }
    )
    from_file = open_source(cfg.lr).compute()
    assert from_file["t2m"].attrs["units"] == "K"
    with xr.open_dataset(path) as opened:
        memory_cfg = cfg.lr.model_copy(update={"path": Path("not-read.nc")})
        for given in (opened, lr, lr.chunk({"time": 4})):
            ds = open_source(memory_cfg, given)
            assert ds.attrs["finescale_source"] == "in-memory dataset"
            xr.testing.assert_identical(
                ds.drop_attrs(deep=False).compute(), from_file.drop_attrs(deep=False)
            )
    assert open_source(memory_cfg, lr.chunk({"time": 4}))["t2m"].chunks[0] == (4, 2)

    from finescale.config import StaticConfig

    static_cfg = StaticConfig.model_validate({"path": "unused.nc", "variables": {"orog": "orog"}})
    xr.testing.assert_identical(
        open_static(static_cfg, lr).drop_attrs(deep=False),
        open_static(static_cfg.model_copy(update={"path": path})).drop_attrs(deep=False),
    )


def test_in_memory_nan_refused_naming_the_variable():
    lr, _ = make_pair(nt=6)
    lr["t2m"][3, 2, 5] = np.nan
    cfg = config(Path("unused.nc"), Path("unused.nc"))
    ds = open_source(cfg.lr, lr)  # lazy: refused when read
    with pytest.raises(
        PairError, match=r"in-memory dataset: variable 't2m' holds NaN.* at time 2020-01-01T03:00"
    ):
        ds["t2m"].compute()
    masked = open_source(cfg.lr.model_copy(update={"missing": "mask"}), lr)["t2m"].values
    assert np.isnan(masked).sum() == 1


def test_grib_needs_cfgrib(tmp_path):
    path = tmp_path / "era5.grib"
    path.write_bytes(b"GRIB")
    with pytest.raises(PairError, match="cfgrib"):
        open_source(config(path, path).lr)


def test_unknown_suffix_error(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"")
    with pytest.raises(PairError, match="set engine"):
        open_source(config(path, path).lr)


def rotated_grid(
    ny: int, nx: int, step: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rotated-pole axes (rlat, rlon) and geographic lat/lon (ny, nx) of their grid points."""
    rlat = (np.arange(ny) - (ny - 1) / 2) * step
    rlon = (np.arange(nx) - (nx - 1) / 2) * step
    phi, lam = np.meshgrid(np.deg2rad(rlat), np.deg2rad(rlon), indexing="ij")
    v = np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)])
    b, a = np.deg2rad(-45.0), np.deg2rad(10.0)  # tilt the rotated equator north, turn east
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    x, y, z = np.einsum("ij,jkl->ikl", rz @ ry, v)
    return rlat, rlon, np.rad2deg(np.arcsin(z)), np.rad2deg(np.arctan2(y, x))


def rotated_dataset(fields, rlat, rlon, lat, lon, times) -> xr.Dataset:
    dims = ("time", "rlat", "rlon")
    return xr.Dataset(
        {"t2m": (dims, fields["t2m"].astype("float32"), {"units": "K"})},
        coords={
            "time": times,
            "rlat": rlat,
            "rlon": rlon,
            "lat": (("rlat", "rlon"), lat, {"units": "degrees_north"}),
            "lon": (("rlat", "rlon"), lon, {"units": "degrees_east"}),
        },
    )


def test_projected_grid_opens_and_pairs(tmp_path):
    rlat, rlon, lat, lon = rotated_grid(32, 40, 0.25)
    fields = weather(lat, lon, 12)
    hr = rotated_dataset(fields, rlat, rlon, lat, lon, hours(12))
    lr_rlat, lr_rlon, lr_lat, lr_lon = rotated_grid(8, 10, 1.0)
    lr_fields = {"t2m": block_mean(fields["t2m"], RATIO)}
    lr = rotated_dataset(lr_fields, lr_rlat, lr_rlon, lr_lat, lr_lon, hours(12))
    # stored north -> south with the dims in (lon, lat) order: still opened the right way round
    hr_file = hr.isel(rlat=slice(None, None, -1)).transpose("time", "rlon", "rlat")
    lr_path, hr_path = pair_files(tmp_path, lr, hr_file)
    opened = open_source(config(lr_path, hr_path).hr)
    assert opened["t2m"].dims == ("time", "y", "x") and opened.sizes == {
        "time": 12,
        "y": 32,
        "x": 40,
    }
    assert opened["lat"].dims == ("y", "x")
    assert np.all(np.diff(opened["lat"].values, axis=0) > 0)
    np.testing.assert_allclose(opened["t2m"].values, hr["t2m"].values, rtol=1e-6)

    pair = open_pair(config(lr_path, hr_path))
    assert pair.ratio == RATIO
    assert pair.alignment.variables["t2m"].correlation > 0.95


def test_zarr_folder_without_suffix(tmp_path):
    lr, hr = make_pair()
    write(hr, tmp_path / "hr.zarr").rename(tmp_path / "hr_store")
    pair = open_pair(config(write(lr, tmp_path / "lr.nc"), tmp_path / "hr_store"))
    assert pair.hr.sizes == {"time": 24, "y": 32, "x": 40}


def test_multi_file_pattern(tmp_path):
    lr, hr = make_pair()
    (tmp_path / "hr").mkdir()
    write(hr.isel(time=slice(0, 12)), tmp_path / "hr" / "a.nc")
    write(hr.isel(time=slice(12, 24)), tmp_path / "hr" / "b.nc")
    lr_path = write(lr, tmp_path / "lr.nc")
    pair = open_pair(config(lr_path, tmp_path / "hr" / "*.nc"))
    assert pair.hr.sizes["time"] == 24


# --------------------------------------------------------------------------------------------
# splits


@pytest.mark.parametrize("gap", [0.0, 6.0])
def test_splits_contiguous_without_leakage(gap):
    times = hours(100)
    cfg = SplitConfig(train=0.7, validation=0.15, test=0.15, gap_hours=gap)
    blocks = split_times(times, cfg)
    train, val, test = blocks["train"], blocks["validation"], blocks["test"]
    # order and no overlap
    assert train[-1] < val[0] and val[-1] < test[0]
    assert not set(train) & set(val) and not set(val) & set(test) and not set(train) & set(test)
    # contiguous blocks: consecutive runs of the original times
    for block in (train, val, test):
        idx = np.searchsorted(times, block)
        assert np.all(np.diff(idx) == 1)
    # sizes: train keeps its share; the gap comes out of the start of the next blocks
    assert train.size == 70
    dropped = int(gap)  # hourly times: `gap` hours -> that many times dropped
    assert val.size == 15 - dropped and test.size == 15 - dropped
    gap_h = np.timedelta64(int(gap), "h")
    assert val[0] - train[-1] > gap_h and test[0] - val[-1] > gap_h


def test_split_without_validation_and_errors():
    blocks = split_times(hours(10), SplitConfig(train=0.8, validation=0.0, test=0.2))
    assert blocks["validation"].size == 0 and blocks["test"].size == 2
    with pytest.raises(ValueError, match="test block is empty"):
        split_times(hours(10), SplitConfig(train=0.8, validation=0.0, test=0.2, gap_hours=5))


def test_split_cftime():
    times = np.array(
        [cftime.DatetimeNoLeap(2001, 2, 27) + np.timedelta64(i, "D").item() for i in range(10)]
    )
    blocks = split_times(times, SplitConfig(train=0.6, validation=0.2, test=0.2, gap_hours=24))
    assert blocks["train"].size == 6 and blocks["validation"].size == 1 and blocks["test"].size == 1

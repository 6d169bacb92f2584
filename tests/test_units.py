"""Units: CF spellings, exact conversions, rate vs accumulation, errors that say where."""

import re
from fractions import Fraction

import dask.array
import numpy as np
import pytest
import xarray as xr
from hypothesis import given
from hypothesis import strategies as st

from finescale.data.units import UnitsError, convert, parse_units, same_units


def with_units(values, units, **attrs):
    return xr.DataArray(
        np.asarray(values, dtype=float), dims="time", name="v", attrs={"units": units, **attrs}
    )


@pytest.mark.parametrize(
    ("spellings", "factor", "dims"),
    [
        (["K"], 1, (0, 0, 0, 1)),
        (["m s-1", "m/s", "m s**-1", "m.s-1", "m s^-1"], 1, (1, 0, -1, 0)),
        (["km h-1", "km/h"], Fraction(5, 18), (1, 0, -1, 0)),
        (["kt", "knots"], Fraction(1852, 3600), (1, 0, -1, 0)),
        (["m"], 1, (1, 0, 0, 0)),
        (["mm"], Fraction(1, 1000), (1, 0, 0, 0)),
        (["cm"], Fraction(1, 100), (1, 0, 0, 0)),
        (["km"], 1000, (1, 0, 0, 0)),
        (["mm h-1", "mm/h", "mm hr-1"], Fraction(1, 3_600_000), (1, 0, -1, 0)),
        (["mm day-1", "mm/day", "mm d-1"], Fraction(1, 86_400_000), (1, 0, -1, 0)),
        (["kg m-2 s-1"], 1, (-2, 1, -1, 0)),
        (["kg m-2", "kg m**-2"], 1, (-2, 1, 0, 0)),
        (["s"], 1, (0, 0, 1, 0)),
        (["h"], 3600, (0, 0, 1, 0)),
        (["s-1"], 1, (0, 0, -1, 0)),
        (["1", "", "dimensionless", "fraction", "kg kg-1"], 1, (0, 0, 0, 0)),
        (["%"], Fraction(1, 100), (0, 0, 0, 0)),
        (["g kg-1"], Fraction(1, 1000), (0, 0, 0, 0)),
        (["Pa"], 1, (-1, 1, -2, 0)),
        (["hPa"], 100, (-1, 1, -2, 0)),
        (["J kg-1", "m2 s-2", "m**2 s**-2"], 1, (2, 0, -2, 0)),
        (["W m-2"], 1, (0, 1, -3, 0)),
    ],
)
def test_parse_common_spellings(spellings, factor, dims):
    for text in spellings:
        unit = parse_units(text)
        assert (unit.factor, unit.dims, unit.offset) == (factor, dims, 0), text


@pytest.mark.parametrize("text", ["degC", "deg_C", "°C", "C", "celsius", " degC "])
def test_parse_celsius_spellings(text):
    assert parse_units(text) == parse_units("degC")
    assert parse_units(text).offset == Fraction(27315, 100)


def test_kelvin_celsius_exact_both_ways():
    kelvin = with_units([273.15, 300.0, 250.5], "K", long_name="2 m temperature")
    celsius = convert(kelvin, "degC")
    np.testing.assert_array_equal(celsius.values, kelvin.values - 273.15)
    assert celsius.values[0] == 0.0
    assert celsius.attrs == {"units": "degC", "long_name": "2 m temperature"}
    assert kelvin.attrs["units"] == "K" and celsius.name == "v"
    np.testing.assert_array_equal(convert(celsius, "K").values, celsius.values + 273.15)
    np.testing.assert_allclose(
        convert(with_units([212.0, 32.0], "degF"), "degC"), [100.0, 0.0], atol=1e-12
    )


def test_wind_speed_units():
    speed = with_units([10.0, 0.0], "m s-1")
    np.testing.assert_array_equal(convert(speed, "km/h").values, [36.0, 0.0])
    np.testing.assert_allclose(convert(speed, "kt").values[0], 10 * 3600 / 1852, rtol=1e-15)
    np.testing.assert_allclose(convert(convert(speed, "knots"), "m/s"), speed, rtol=1e-15)


def test_precipitation_flux_to_mm_per_hour():
    flux = with_units([1e-3, 0.0], "kg m-2 s-1")
    np.testing.assert_allclose(convert(flux, "mm h-1").values, [3.6, 0.0], rtol=1e-15)
    np.testing.assert_allclose(convert(with_units([2.0], "kg m-2"), "mm").values, [2.0])
    np.testing.assert_allclose(convert(with_units([24.0], "mm/day"), "mm/h").values, [1.0])


def test_accumulation_over_an_hour_to_rate_and_back():
    accumulated = with_units([0.001, 0.0025], "m")
    rate = convert(accumulated, "mm h-1", accumulation_seconds=3600)
    np.testing.assert_allclose(rate.values, [1.0, 2.5], rtol=1e-15)
    six_hours = convert(rate, "mm", accumulation_seconds=6 * 3600)
    np.testing.assert_allclose(six_hours.values, [6.0, 15.0], rtol=1e-15)
    np.testing.assert_allclose(
        convert(with_units([3600.0], "J m-2"), "W m-2", accumulation_seconds=3600), [1.0]
    )


def test_accumulation_without_seconds_is_an_error():
    with pytest.raises(UnitsError) as err:
        convert(with_units([0.001], "m"), "mm h-1", where="era5.nc: variable 'tp'")
    message = str(err.value)
    assert message.startswith("era5.nc: variable 'tp': ")
    assert "'m'" in message and "'mm h-1'" in message and "accumulation_seconds" in message


def test_unknown_units_error_names_where_and_unit():
    with pytest.raises(UnitsError) as err:
        convert(with_units([1.0], "furlongs"), "m", where="era5.nc: variable 'tp'")
    message = str(err.value)
    assert message.startswith("era5.nc: variable 'tp': unknown units 'furlongs'")
    assert "known:" in message and "kg m-2 s-1" in message


@pytest.mark.parametrize("text", ["10", "m//s", "m/", "kg furlong-1", "degC s-1", "mm h-1 x"])
def test_malformed_or_unknown_units_are_errors_naming_the_text(text):
    with pytest.raises(UnitsError, match=re.escape(repr(text))):
        parse_units(text)


def test_incompatible_dimensions_error():
    with pytest.raises(UnitsError, match=r"^f\.nc: cannot convert units 'K' to 'm s-1'"):
        convert(with_units([1.0], "K"), "m s-1", where="f.nc")
    with pytest.raises(UnitsError, match="dimensions differ"):
        convert(with_units([1.0], "Pa"), "J kg-1", accumulation_seconds=3600)


def test_missing_attribute_uses_source_units():
    bare = xr.DataArray([1.0, 2.0], dims="time", attrs={"long_name": "rain"})
    out = convert(bare, "mm", source_units="m")
    np.testing.assert_allclose(out.values, [1000.0, 2000.0])
    assert out.attrs == {"long_name": "rain", "units": "mm"}
    with pytest.raises(UnitsError, match="^here: no 'units' attribute and no source_units"):
        convert(bare, "mm", where="here")


def test_dask_stays_lazy_and_float32_stays_float32():
    lazy = with_units(np.arange(4.0), "m/s").astype(np.float32).chunk(time=2)
    out = convert(lazy, "km h-1")
    assert isinstance(out.data, dask.array.Array) and out.dtype == np.float32
    np.testing.assert_allclose(out.values, 3.6 * np.arange(4.0), rtol=1e-6)


def test_same_units():
    assert same_units("m s-1", "m/s")
    assert same_units("kg m-2", "mm")
    assert not same_units("mm", "m")
    assert not same_units("K", "degC")
    with pytest.raises(UnitsError):
        same_units("m", "parsec")


COMPATIBLE = [
    ["K", "degC", "degF"],
    ["m s-1", "km/h", "kt"],
    ["mm h-1", "kg m-2 s-1", "mm/day"],
    ["Pa", "hPa"],
    ["1", "%", "g kg-1"],
]


@given(
    group=st.sampled_from(COMPATIBLE),
    data=st.data(),
    value=st.floats(-1e6, 1e6),
)
def test_property_round_trip(group, data, value):
    a, b = data.draw(st.sampled_from(group)), data.draw(st.sampled_from(group))
    there = convert(with_units([value], a), b)
    back = convert(there, a)
    np.testing.assert_allclose(back.values, [value], rtol=1e-12, atol=1e-9)

"""Units: parse CF ``units`` attribute strings and convert fields between them.

Only the spellings listed here are known; anything else is an error, never a guess. A unit is
a factor (and, for temperatures, an offset) to SI and a vector of SI dimension exponents.
Mass of water per area counts as water depth: 1 kg m-2 = 1 mm (water density 1000 kg m-3),
so precipitation in ``kg m-2 s-1`` converts to ``mm h-1`` and ``kg m-2`` to ``mm``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

import xarray as xr

WATER_DENSITY = Fraction(1000)  # kg m-3

Dims = tuple[int, int, int, int]
BASE_UNITS = ("m", "kg", "s", "K")  # the order of Unit.dims


class UnitsError(ValueError):
    """Units that are unknown or cannot be converted; the message names them and the place."""


@dataclass(frozen=True)
class Unit:
    """A unit: ``SI value = value * factor + offset``.

    factor: exact scale to SI; offset: exact SI offset (non-zero only for degC and degF);
    dims: exponents of (m, kg, s, K).
    """

    factor: Fraction
    dims: Dims = (0, 0, 0, 0)
    offset: Fraction = Fraction(0)

    def __mul__(self, other: Unit) -> Unit:
        dims = tuple(a + b for a, b in zip(self.dims, other.dims))
        return Unit(self.factor * other.factor, dims)

    def __pow__(self, exponent: int) -> Unit:
        return Unit(self.factor**exponent, tuple(a * exponent for a in self.dims))


def _unit(factor: int | Fraction, m: int = 0, kg: int = 0, s: int = 0, K: int = 0) -> Unit:
    return Unit(Fraction(factor), (m, kg, s, K))


ONE = _unit(1)
_CELSIUS = Unit(Fraction(1), (0, 0, 0, 1), Fraction(27315, 100))
_FAHRENHEIT = Unit(Fraction(5, 9), (0, 0, 0, 1), Fraction(27315, 100) - Fraction(32 * 5, 9))
_HOUR, _DAY = _unit(3600, s=1), _unit(86400, s=1)
_KNOT = _unit(Fraction(1852, 3600), m=1, s=-1)
_PASCAL = _unit(1, m=-1, kg=1, s=-2)

# Symbols that can be combined with exponents: 'kg m-2 s-1', 'm/s', 'm s**-1', 'm.s-1'.
_SYMBOLS: dict[str, Unit] = {
    "1": ONE,
    "%": _unit(Fraction(1, 100)),
    "m": _unit(1, m=1),
    "cm": _unit(Fraction(1, 100), m=1),
    "mm": _unit(Fraction(1, 1000), m=1),
    "km": _unit(1000, m=1),
    "kg": _unit(1, kg=1),
    "g": _unit(Fraction(1, 1000), kg=1),
    "s": _unit(1, s=1),
    "min": _unit(60, s=1),
    "h": _HOUR,
    "hr": _HOUR,
    "hour": _HOUR,
    "d": _DAY,
    "day": _DAY,
    "K": _unit(1, K=1),
    "kelvin": _unit(1, K=1),
    "Pa": _PASCAL,
    "hPa": _PASCAL * _unit(100),
    "J": _unit(1, m=2, kg=1, s=-2),
    "W": _unit(1, m=2, kg=1, s=-3),
    "kt": _KNOT,
    "knot": _KNOT,
    "knots": _KNOT,
}

# Spellings that only stand alone: offset temperatures and names of "no unit".
_ALONE: dict[str, Unit] = {
    "": ONE,
    "dimensionless": ONE,
    "fraction": ONE,
    "(0 - 1)": ONE,
    **dict.fromkeys(
        ["degC", "deg_C", "°C", "C", "celsius", "Celsius", "degree_Celsius", "degrees_Celsius"],
        _CELSIUS,
    ),
    **dict.fromkeys(
        [
            "degF",
            "deg_F",
            "°F",
            "fahrenheit",
            "Fahrenheit",
            "degree_Fahrenheit",
            "degrees_Fahrenheit",
        ],
        _FAHRENHEIT,
    ),
}

_TOKEN = re.compile(r"(?P<symbol>[A-Za-z_%°]+)\^?(?P<exponent>[+-]?\d+)?")
_KNOWN = (
    ", ".join(sorted(set(_SYMBOLS) | set(_ALONE) - {""}, key=str.lower))
    + "; combined as in 'kg m-2 s-1', 'm/s', 'm s**-1'"
)


def parse_units(text: str, *, where: str = "") -> Unit:
    """The Unit of a CF/UDUNITS ``units`` string such as 'K', 'm s-1', 'mm/h', 'kg m**-2'.

    Symbols are separated by spaces, '.' or '*', '/' divides by the next symbol, and an
    exponent follows a symbol directly or after '^' or '**' ('m2', 's-1', 'm**-2').
    Raises UnitsError, its message starting with ``where``, for anything not known.
    """
    key = text.strip()
    if key in _ALONE:
        return _ALONE[key]
    unit, sign = ONE, 1
    for token in re.findall(r"/|[^\s.*/]+", key.replace("**", "^")):
        if token == "/":
            if sign < 0:
                raise UnitsError(f"{_prefix(where)}unknown units {text!r}: '/' twice in a row")
            sign = -1
            continue
        unit, sign = unit * _token_unit(token, text, where) ** sign, 1
    if sign < 0:
        raise UnitsError(f"{_prefix(where)}unknown units {text!r}: nothing after '/'")
    return unit


def _token_unit(token: str, text: str, where: str) -> Unit:
    if token in _SYMBOLS:
        return _SYMBOLS[token]
    match = _TOKEN.fullmatch(token)
    symbol = match["symbol"] if match else token
    if symbol in _ALONE:
        raise UnitsError(
            f"{_prefix(where)}units {text!r}: {symbol!r} cannot be combined with other units"
        )
    if match is None or symbol not in _SYMBOLS:
        raise UnitsError(
            f"{_prefix(where)}unknown units {text!r}: {token!r} is not a known unit "
            f"(known: {_KNOWN})"
        )
    return _SYMBOLS[symbol] ** int(match["exponent"] or 1)


def same_units(a: str, b: str) -> bool:
    """Whether converting from units ``a`` to ``b`` leaves values unchanged ('m/s' and 'm s-1';
    also 'kg m-2' and 'mm', see the module docstring). Raises UnitsError for unknown units."""
    return _as_water_depth(parse_units(a)) == _as_water_depth(parse_units(b))


def needs_period(source: str, target: str, *, where: str = "") -> bool:
    """Whether converting units ``source`` to ``target`` turns an amount into a rate or a rate
    into an amount ('m' -> 'mm h-1'), which takes the length of the accumulation period.

    False for units that cannot be converted at all (:func:`convert` says why). Raises
    UnitsError for unknown units; ``where`` starts its message.
    """
    src = _as_water_depth(parse_units(source, where=where))
    dst = _as_water_depth(parse_units(target, where=where))
    same_otherwise = src.dims[:2] + src.dims[3:] == dst.dims[:2] + dst.dims[3:]
    return same_otherwise and abs(dst.dims[2] - src.dims[2]) == 1


def convert(
    da: xr.DataArray,
    to: str,
    *,
    source_units: str | None = None,
    accumulation_seconds: float | None = None,
    where: str = "",
) -> xr.DataArray:
    """``da`` converted to units ``to``, with ``attrs["units"] = to`` and its other attrs kept.

    da: any shape; its units are ``da.attrs["units"]``, or ``source_units`` when the attribute
        is missing. Dask-backed arrays stay lazy.
    accumulation_seconds: length in s of the period an amount is accumulated over. It is needed,
        and used, only to turn an amount into a rate (the target is the source per time, e.g.
        'm' -> 'mm h-1', 'kg m-2' -> 'mm h-1', 'J m-2' -> 'W m-2': divide by it) or a rate into
        an amount (multiply by it); otherwise it is ignored.
    where: what is being converted, e.g. "era5.nc: variable 'tp'"; every error message starts
        with it.
    Raises UnitsError for missing or unknown units, incompatible dimensions, or a missing or
    non-positive accumulation_seconds when one is needed.
    """
    text = da.attrs.get("units", source_units)
    if text is None:
        raise UnitsError(f"{_prefix(where)}no 'units' attribute and no source_units given")
    source, target = parse_units(text, where=where), parse_units(to, where=where)
    scale, shift = _linear_map(source, target, text, to, accumulation_seconds, where)
    return (da * scale + shift).assign_attrs(da.attrs, units=to).rename(da.name)


def _linear_map(
    source: Unit,
    target: Unit,
    source_text: str,
    target_text: str,
    accumulation_seconds: float | None,
    where: str,
) -> tuple[float, float]:
    """(scale, shift) with target value = source value * scale + shift, exact until rounded."""
    src, dst = _as_water_depth(source), _as_water_depth(target)
    time_power = dst.dims[2] - src.dims[2]
    same_otherwise = src.dims[:2] + src.dims[3:] == dst.dims[:2] + dst.dims[3:]
    if not same_otherwise or time_power not in (-1, 0, 1):
        raise UnitsError(
            f"{_prefix(where)}cannot convert units {source_text!r} to {target_text!r}: their "
            f"dimensions differ (SI {_dims_text(source.dims)} vs {_dims_text(target.dims)})"
        )
    period = Fraction(1)
    if time_power:
        period = _accumulation_period(
            accumulation_seconds, source_text, target_text, time_power, where
        )
    scale = src.factor * period**time_power / dst.factor
    shift = (src.offset - dst.offset) / dst.factor
    return float(scale), float(shift)


def _accumulation_period(
    seconds: float | None, source_text: str, target_text: str, time_power: int, where: str
) -> Fraction:
    kind = (
        "the amount {!r} to the rate {!r}" if time_power < 0 else "the rate {!r} to the amount {!r}"
    )
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        raise UnitsError(
            f"{_prefix(where)}converting {kind.format(source_text, target_text)} needs "
            f"accumulation_seconds, the positive length of the accumulation period "
            f"(got {seconds!r})"
        )
    return Fraction(seconds)


def _as_water_depth(unit: Unit) -> Unit:
    """kg m-2 (per time) of water as m (per time) of depth; any other unit unchanged."""
    length, mass, time, temperature = unit.dims
    if (length, mass) != (-2, 1):
        return unit
    return Unit(unit.factor / WATER_DENSITY, (1, 0, time, temperature), unit.offset)


def _dims_text(dims: Dims) -> str:
    parts = [
        symbol if power == 1 else f"{symbol}{power}"
        for symbol, power in zip(BASE_UNITS, dims)
        if power
    ]
    return " ".join(parts) or "1"


def _prefix(where: str) -> str:
    return f"{where}: " if where else ""


#: Canonical names of precipitation variables (rates or amounts) across data sets.
PRECIPITATION_NAMES = frozenset(
    {"tp", "pr", "precip", "precipitation", "rain", "rr", "prate", "tprate"}
)


def is_precipitation(name: str, da: xr.DataArray | None = None) -> bool:
    """Whether a variable is a precipitation rate or amount (non-negative, with dry times).

    By its canonical name (tp, pr, precip, ...) or a CF standard_name containing
    'precipitation'.
    """
    standard = str(da.attrs.get("standard_name", "")) if da is not None else ""
    return name.lower() in PRECIPITATION_NAMES or "precipitation" in standard

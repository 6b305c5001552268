"""Physical quantities written as strings in specs: ``"20 ms"``, ``"0.6 nS"``, ``"-60 mV"``.

The spec layer must not import JAX, and brainunit does, so parsing happens here
with a small table of SI units and prefixes.  ``tests/test_units.py`` checks every
entry of the table against brainunit, so the two never disagree.

Inside compiled models everything is a plain float in one consistent unit
system (the one Brian2 and NEST users think in)::

    time ms, voltage mV, conductance nS, capacitance pF, current pA, rate Hz

which is consistent: nS * mV = pA and pF * mV / ms = pA.  ``Quantity.internal``
returns the value in that system, so a ``"6 nS"`` weight is ``6.0`` and a
``"10 Hz"`` rate is ``10.0`` (per second; runners convert with ``dt`` in ms).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

# Dimensions are exponent tuples over (m, kg, s, A).
Dim = tuple[int, int, int, int]
DIMENSIONLESS: Dim = (0, 0, 0, 0)
TIME: Dim = (0, 0, 1, 0)
FREQUENCY: Dim = (0, 0, -1, 0)
VOLTAGE: Dim = (2, 1, -3, -1)
CONDUCTANCE: Dim = (-2, -1, 3, 2)
CAPACITANCE: Dim = (-2, -1, 4, 2)
CURRENT: Dim = (0, 0, 0, 1)
RESISTANCE: Dim = (2, 1, -3, -2)

DIM_NAMES: dict[Dim, str] = {
    DIMENSIONLESS: "dimensionless",
    TIME: "time",
    FREQUENCY: "frequency",
    VOLTAGE: "voltage",
    CONDUCTANCE: "conductance",
    CAPACITANCE: "capacitance",
    CURRENT: "current",
    RESISTANCE: "resistance",
}

# Base units: symbol -> (SI factor, dimension).
_BASE: dict[str, tuple[float, Dim]] = {
    "s": (1.0, TIME),
    "second": (1.0, TIME),
    "Hz": (1.0, FREQUENCY),
    "V": (1.0, VOLTAGE),
    "S": (1.0, CONDUCTANCE),
    "siemens": (1.0, CONDUCTANCE),
    "F": (1.0, CAPACITANCE),
    "A": (1.0, CURRENT),
    "ohm": (1.0, RESISTANCE),
    "Ohm": (1.0, RESISTANCE),
    "m": (1.0, (1, 0, 0, 0)),
    "g": (1e-3, (0, 1, 0, 0)),
}
_PREFIX = {"T": 1e12, "G": 1e9, "M": 1e6, "k": 1e3, "": 1.0, "c": 1e-2, "m": 1e-3,
           "u": 1e-6, "µ": 1e-6, "n": 1e-9, "p": 1e-12, "f": 1e-15}

# Scale of the internal unit system for each dimension (SI value of one internal unit).
_INTERNAL_SCALE: dict[Dim, float] = {
    DIMENSIONLESS: 1.0,
    TIME: 1e-3,          # ms
    FREQUENCY: 1.0,      # Hz
    VOLTAGE: 1e-3,       # mV
    CONDUCTANCE: 1e-9,   # nS
    CAPACITANCE: 1e-12,  # pF
    CURRENT: 1e-12,      # pA
    RESISTANCE: 1e9,     # GOhm (= mV / pA)
}

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_QTY_RE = re.compile(rf"^\s*({_NUMBER})\s*(.*?)\s*$")
_TOKEN_RE = re.compile(r"([A-Za-zµ]+)(?:\^?(-?\d+))?")


class UnitError(ValueError):
    """A string that is not a quantity, or a quantity of the wrong dimension."""

    def __init__(self, message: str, expected: str = ""):
        self.expected = expected
        super().__init__(message)


def _lookup(symbol: str) -> tuple[float, Dim]:
    if symbol in _BASE:
        return _BASE[symbol]
    for plen in (1,):
        prefix, rest = symbol[:plen], symbol[plen:]
        if prefix in _PREFIX and rest in _BASE:
            factor, dim = _BASE[rest]
            return _PREFIX[prefix] * factor, dim
    raise UnitError(f"unknown unit {symbol!r}",
                    expected="an SI unit such as ms, s, mV, nS, pF, pA, Hz")


def parse_unit(text: str) -> tuple[float, Dim]:
    """Parse a unit expression such as ``mV``, ``nS/ms``, ``1/s`` or ``m^2`` -> (SI factor, dim)."""
    factor, dim = 1.0, [0, 0, 0, 0]
    text = text.replace(" ", "").replace("**", "^")
    if not text:
        return 1.0, DIMENSIONLESS
    sign = 1
    pos = 0
    while pos < len(text):
        ch = text[pos]
        if ch in "*/":
            sign = 1 if ch == "*" else -1
            pos += 1
            continue
        if ch == "1" and (pos + 1 == len(text) or text[pos + 1] in "*/"):
            pos += 1
            continue
        m = _TOKEN_RE.match(text, pos)
        if not m:
            raise UnitError(f"cannot read unit {text!r}", expected="e.g. 'mV', 'nS', 'ms', 'Hz', 'nS/ms'")
        f, d = _lookup(m.group(1))
        power = int(m.group(2) or 1) * sign
        factor *= f ** power
        for i in range(4):
            dim[i] += d[i] * power
        pos = m.end()
        sign = 1
    return factor, tuple(dim)  # type: ignore[return-value]


@dataclass(frozen=True)
class Quantity:
    """An immutable physical quantity: a value in SI units plus its dimension."""

    si: float
    dim: Dim
    text: str = ""

    @property
    def internal(self) -> float:
        """Value in neurodsl's internal unit system (ms, mV, nS, pF, pA, Hz)."""
        try:
            return self.si / _INTERNAL_SCALE[self.dim]
        except KeyError:  # pragma: no cover - only reachable with exotic units
            raise UnitError(f"no internal unit for dimension {dim_name(self.dim)}") from None

    def to(self, unit: str) -> float:
        """Value in ``unit`` (which must have the same dimension)."""
        factor, dim = parse_unit(unit)
        if dim != self.dim:
            raise UnitError(f"cannot express {self} in {unit}")
        return self.si / factor

    def __str__(self) -> str:
        return self.text or f"{self.si:g} (SI {dim_name(self.dim)})"


def dim_name(dim: Dim) -> str:
    return DIM_NAMES.get(dim, f"m^{dim[0]} kg^{dim[1]} s^{dim[2]} A^{dim[3]}")


def parse_quantity(value: object, expected: Dim | None = None) -> Quantity:
    """Parse ``"20 ms"`` (or a bare number for dimensionless quantities).

    Raises :class:`UnitError` with a message saying what was expected when the
    text is malformed or has the wrong dimension.
    """
    if isinstance(value, Quantity):
        q = value
    elif isinstance(value, bool):
        raise UnitError(f"{value!r} is not a quantity", expected=_expect(expected))
    elif isinstance(value, (int, float)):
        if expected not in (None, DIMENSIONLESS) and value != 0:
            raise UnitError(f"{value!r} has no unit", expected=_expect(expected))
        q = Quantity(float(value), expected or DIMENSIONLESS, str(value))
    elif isinstance(value, str):
        m = _QTY_RE.match(value)
        if not m:
            raise UnitError(f"{value!r} is not a number with a unit", expected=_expect(expected))
        factor, dim = parse_unit(m.group(2))
        number = float(m.group(1))
        if not math.isfinite(number):
            raise UnitError(f"{value!r} is not finite", expected=_expect(expected))
        if not m.group(2) and expected not in (None, DIMENSIONLESS) and number == 0:
            dim = expected  # a bare 0 is zero in any unit
        q = Quantity(number * factor, dim, value.strip())
    else:
        raise UnitError(f"{value!r} is not a quantity", expected=_expect(expected))
    if expected is not None and q.dim != expected:
        raise UnitError(f"{value!r} is a {dim_name(q.dim)}, not a {dim_name(expected)}",
                        expected=_expect(expected))
    return q


_EXAMPLES = {TIME: "'20 ms'", VOLTAGE: "'-60 mV'", CONDUCTANCE: "'0.6 nS'",
             CAPACITANCE: "'200 pF'", CURRENT: "'100 pA'", FREQUENCY: "'6 Hz'",
             DIMENSIONLESS: "a plain number", RESISTANCE: "'100 Mohm'"}


def _expect(dim: Dim | None) -> str:
    if dim is None:
        return "a number with a unit, e.g. '20 ms'"
    return f"a {dim_name(dim)}, e.g. {_EXAMPLES.get(dim, '')}".rstrip(", e.g. ")

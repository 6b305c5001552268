"""The JAX-free unit parser agrees with brainunit, and rejects wrong dimensions."""
import brainunit as u
import pytest

from neurodsl import units as U

CASES = [("20 ms", u.ms, U.TIME), ("0.6 nS", u.nS, U.CONDUCTANCE), ("-60 mV", u.mV, U.VOLTAGE),
         ("6 Hz", u.Hz, U.FREQUENCY), ("200 pF", u.pF, U.CAPACITANCE), ("100 pA", u.pA, U.CURRENT),
         ("1.5 s", u.second, U.TIME), ("3 uS", u.uS, U.CONDUCTANCE), ("2 nA", u.nA, U.CURRENT),
         ("100 Mohm", u.Mohm, U.RESISTANCE)]


@pytest.mark.parametrize("text,unit,dim", CASES)
def test_si_value_matches_brainunit(text, unit, dim):
    q = U.parse_quantity(text, dim)
    number = float(text.split()[0])
    ref = (number * unit).to_decimal(_si(unit))
    assert q.si == pytest.approx(ref, rel=1e-12)


def _si(unit):
    dim = u.get_dim(unit)
    return u.Unit(dim=dim, scale=0)


def test_internal_system_is_consistent():
    # nS * mV = pA and pF * mV / ms = pA: the internal system needs no conversion factors.
    g, v, c, t = (U.parse_quantity(x) for x in ("3 nS", "2 mV", "5 pF", "4 ms"))
    assert g.internal * v.internal == pytest.approx(U.parse_quantity(f"{3e-9 * 2e-3} A").internal)
    assert c.internal * v.internal / t.internal == pytest.approx(
        U.parse_quantity(f"{5e-12 * 2e-3 / 4e-3} A").internal)


@pytest.mark.parametrize("text,dim", [("20 mV", U.TIME), ("abc", U.TIME), ("5", U.VOLTAGE),
                                      ("3 furlongs", U.TIME), ("1e999 ms", U.TIME)])
def test_wrong_dimension_or_syntax_is_an_error(text, dim):
    with pytest.raises(U.UnitError) as e:
        U.parse_quantity(text, dim)
    assert e.value.expected  # says what was expected


def test_zero_needs_no_unit():
    assert U.parse_quantity(0, U.TIME).si == 0.0

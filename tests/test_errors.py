"""NeurodslError's one-line form and its further errors."""
from neurodsl.errors import Location, NeurodslError, SpecError


def test_field_prefix_is_not_doubled():
    e = SpecError("--resume: the spec differs", field="--resume", location=Location("s.yaml"))
    assert e.one_line() == "s.yaml: --resume: the spec differs"
    assert NeurodslError("x", field="a").one_line() == "<input>: a: x"


def test_further_errors_are_lines_of_their_own():
    e = SpecError("first", field="a", location=Location("f", 2, 3),
                  others=(SpecError("second", field="b", expected="c", location=Location("f", 4, 1)),))
    assert e.lines() == ["f:2:3: a: first", "f:4:1: b: second (expected c)"]
    assert str(e) == "\n".join(e.lines())

"""Building blocks of every spec model: frozen pydantic models and unit-checked fields."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, PlainSerializer, ValidationInfo, WithJsonSchema

from neurodsl import units as U
from neurodsl.units import Quantity, UnitError


class SpecModel(BaseModel):
    """Base of all spec objects: immutable, unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True,
                              populate_by_name=True)


class CrossFieldError(ValueError):
    """Raised by model validators to point at a sub-field: ``path`` is relative to the model."""

    def __init__(self, path: tuple[str | int, ...], message: str, expected: str = ""):
        self.path = path
        self.expected = expected
        super().__init__(message)


def _quantity(dim: U.Dim):
    def parse(v: Any) -> Quantity:
        try:
            return U.parse_quantity(v, dim)
        except UnitError as e:
            # Re-raised as ValueError so pydantic attaches the field location.
            raise CrossFieldError((), str(e), e.expected) from None

    example = U._EXAMPLES.get(dim, "")
    schema = {"type": "string", "description": f"a {U.dim_name(dim)} with unit, e.g. {example}"}
    if dim == U.DIMENSIONLESS:
        schema = {"type": ["number", "string"], "description": "a plain number"}
    return Annotated[
        Quantity,
        BeforeValidator(parse),
        PlainSerializer(lambda q: q.text or q.si, return_type=Any),
        WithJsonSchema(schema),
    ]


Time = _quantity(U.TIME)
Voltage = _quantity(U.VOLTAGE)
Conductance = _quantity(U.CONDUCTANCE)
Capacitance = _quantity(U.CAPACITANCE)
Current = _quantity(U.CURRENT)
Rate = _quantity(U.FREQUENCY)
Scalar = _quantity(U.DIMENSIONLESS)


def _any_quantity(v: Any) -> Quantity:
    try:
        return U.parse_quantity(v)
    except UnitError as e:
        raise CrossFieldError((), str(e), e.expected) from None


AnyQuantity = Annotated[
    Quantity,
    BeforeValidator(_any_quantity),
    PlainSerializer(lambda q: q.text or q.si, return_type=Any),
    WithJsonSchema({"type": ["string", "number"], "description": "a number, optionally with a unit"}),
]


PACKAGE_DATA = Path(__file__).resolve().parents[1] / "data"


def resolve_path(value: str, info: ValidationInfo | None) -> Path:
    """Resolve a spec path: ``neurodsl:NAME`` is shipped data; a relative path in the file is
    relative to the spec file, one given on the command line (``--set``) to the current folder."""
    if value.startswith("neurodsl:"):
        return PACKAGE_DATA / value.split(":", 1)[1]
    p = Path(value).expanduser()
    if not p.is_absolute():
        ctx = (info.context or {}) if info is not None else {}
        base = Path.cwd() if value in ctx.get("cli_strings", ()) else ctx.get("base_dir")
        p = Path(base or ".") / p
    return p


def existing_file(v: str | None, info: ValidationInfo | None, what: str) -> str | None:
    """A spec path resolved by :func:`resolve_path` that must exist (None passes)."""
    if v is None:
        return v
    p = resolve_path(v, info)
    if not p.exists():
        raise ValueError(f"{what} {v!r} not found (looked at {p})")
    return str(p)


def _nonnegative(v: Quantity) -> Quantity:
    if v.si < 0:
        raise ValueError(f"rate {v} is negative")
    return v


NonNegRate = Annotated[Rate, AfterValidator(_nonnegative)]

# training.method of the spiking kinds: BPTT, or one of braintrace's online algorithms (neurodsl.runners.eprop)
TrainingMethod = Literal["bptt", "eprop", "d_rtrl"]

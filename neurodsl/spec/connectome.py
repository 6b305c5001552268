"""Declaration of connectome generators (assembly-structured E/I networks with feedforward inputs)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from neurodsl.spec.base import CrossFieldError, SpecModel

PAIRS = ("EE", "EI", "IE", "II")  # pre then post: "EI" = E -> I


class PairProbability(SpecModel):
    """Connection probabilities of one pre->post cell-type pair, within and between assemblies."""

    within: float = Field(ge=0, le=1)
    between: float = Field(ge=0, le=1)


class WeightDist(SpecModel):
    """Weight magnitudes (dimensionless multipliers of g_max); the sign follows Dale's law."""

    dist: Literal["lognormal", "normal", "constant"] = "lognormal"
    mean: float = Field(1.0, gt=0)
    std: float = Field(0.5, ge=0)


def _default_p():
    return {"EE": PairProbability(within=0.1, between=0.02), "EI": PairProbability(within=0.1, between=0.1),
            "IE": PairProbability(within=0.1, between=0.1), "II": PairProbability(within=0.1, between=0.1)}


class GeneratorSpec(SpecModel):
    """An assembly-structured E/I recurrent layer driven by ``n_inputs`` feedforward channels.

    Neurons are ordered E first, then I; both types are split into ``n_assemblies``
    contiguous, near-equal blocks.  ``p`` gives pre->post probabilities per cell-type
    pair (keys EE, EI, IE, II); ``p_ff`` input->E and input->I probabilities;
    ``weights`` per pair (and ``ff``) the magnitude distribution.
    """

    kind: Literal["assemblies"] = "assemblies"
    n_neurons: int = Field(1000, gt=1)
    frac_exc: float = Field(0.8, gt=0, lt=1)
    n_inputs: int = Field(300, ge=0)
    n_assemblies: int = Field(10, gt=0)
    p: dict[str, PairProbability] = Field(default_factory=_default_p)
    p_ff: dict[Literal["E", "I"], float] = Field(default_factory=lambda: {"E": 0.1, "I": 0.1})
    weights: dict[str, WeightDist] = Field(default_factory=dict)
    allow_self: bool = False

    @model_validator(mode="after")
    def _pairs(self):
        for k in self.p:
            if k not in PAIRS:
                raise CrossFieldError(("p", k), f"unknown pair {k!r}", "one of EE, EI, IE, II (pre then post)")
        for k in self.weights:
            if k not in PAIRS + ("ff",):
                raise CrossFieldError(("weights", k), f"unknown pair {k!r}", "one of EE, EI, IE, II, ff")
        for k, v in self.p_ff.items():
            if not 0 <= v <= 1:
                raise CrossFieldError(("p_ff", k), f"{v} is not a probability", "0 <= p <= 1")
        return self

    @property
    def n_exc(self) -> int:
        return int(round(self.n_neurons * self.frac_exc))

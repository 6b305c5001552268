"""Declarations of spiking networks: populations, receptors, projections, inputs, initial state.

Conventions
-----------
* Populations and inputs are mappings ``name -> declaration``; projections name
  them in ``pre`` / ``post``.
* Receptor kinetics are declared once, by name, in ``receptors``.  Every
  postsynaptic population gets one state variable per receptor name that
  projections onto it use (post-synaptic alignment, as brainpy's
  ``AlignPostProj``), so E->E and input->E AMPA share one conductance.
* Dale's law: the sign of a synapse is its presynaptic population's cell type.
  Conductance weights are magnitudes (>= 0; the receptor's reversal potential
  makes them excitatory or inhibitory); current weights must carry the sign.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field, ValidationInfo, field_validator, model_validator

from neurodsl import units as U
from neurodsl.spec.trainable import TrainableSpec
from neurodsl.spec.base import (AnyQuantity, Conductance, CrossFieldError, Current,
                                Rate, SpecModel, Time, Voltage, Capacitance, existing_file, resolve_path)
from neurodsl.spec.odour import OdourInput


class FileRef(SpecModel):
    """A file on disk; relative paths are relative to the spec file."""

    file: str
    key: str | None = None

    @field_validator("file")
    @classmethod
    def _exists(cls, v: str, info: ValidationInfo) -> str:
        p = resolve_path(v, info)
        if not p.exists():
            raise ValueError(f"file {v!r} not found (looked at {p})")
        return str(p)


# ----------------------------------------------------------------------------- distributions
class Normal(SpecModel):
    dist: Literal["normal"]
    mean: AnyQuantity
    std: AnyQuantity

    @model_validator(mode="after")
    def _dims(self):
        if self.std.si < 0:
            raise CrossFieldError(("std",), "std must be >= 0", "a non-negative quantity")
        if self.mean.dim != self.std.dim and self.std.si != 0:
            raise CrossFieldError(("std",), f"unit of std ({self.std}) differs from mean ({self.mean})",
                                  "the same dimension as mean")
        return self


class LogNormal(SpecModel):
    """Log-normal with the given mean and std *of the values* (not of their log)."""

    dist: Literal["lognormal"]
    mean: AnyQuantity
    std: AnyQuantity

    @model_validator(mode="after")
    def _positive(self):
        if self.mean.si <= 0:
            raise CrossFieldError(("mean",), "a log-normal mean must be > 0", "a positive quantity")
        if self.std.si < 0:
            raise CrossFieldError(("std",), "std must be >= 0", "a non-negative quantity")
        return self


class Uniform(SpecModel):
    dist: Literal["uniform"]
    low: AnyQuantity
    high: AnyQuantity

    @model_validator(mode="after")
    def _order(self):
        if self.low.dim != self.high.dim:
            raise CrossFieldError(("high",), "low and high have different units", "the same dimension")
        if self.high.si < self.low.si:
            raise CrossFieldError(("high",), f"high ({self.high}) < low ({self.low})", "high >= low")
        return self


Dist = Annotated[Union[Normal, LogNormal, Uniform], Field(discriminator="dist")]
Value = Union[AnyQuantity, Dist]
InitValue = Union[AnyQuantity, Dist, FileRef]


def value_dim(v: Value | FileRef) -> U.Dim | None:
    if isinstance(v, U.Quantity):
        return v.dim
    if isinstance(v, (Normal, LogNormal)):
        return v.mean.dim
    if isinstance(v, Uniform):
        return v.low.dim
    return None


# ----------------------------------------------------------------------------- neurons
class LIFCond(SpecModel):
    """Conductance-based leaky integrate-and-fire neuron with an absolute refractory period.

    ``C dV/dt = g_L (E_L - V) + sum_r g_r (E_r - V) + I_syn + I_ext``; give either
    ``C`` or ``tau_m`` (then ``C = tau_m * g_L``).  During ``t_ref`` after a spike
    V is clamped at ``V_reset``.  ``method``: ``exp_euler`` (exact for fixed
    conductances over a step) or ``euler``.
    """

    model: Literal["lif_cond"] = "lif_cond"
    tau_m: Time | None = None
    C: Capacitance | None = None
    g_L: Conductance
    E_L: Voltage
    V_th: Voltage
    V_reset: Voltage
    t_ref: Time = U.parse_quantity("0 ms", U.TIME)
    method: Literal["exp_euler", "euler"] = "exp_euler"

    @model_validator(mode="after")
    def _capacitance(self):
        if (self.tau_m is None) == (self.C is None):
            raise CrossFieldError(("tau_m",), "give exactly one of tau_m and C", "tau_m (with g_L) or C")
        if self.g_L.si <= 0:
            raise CrossFieldError(("g_L",), "leak conductance must be > 0", "a positive conductance")
        if self.tau_m is not None and self.tau_m.si <= 0:
            raise CrossFieldError(("tau_m",), "tau_m must be > 0", "a positive time")
        if self.C is not None and self.C.si <= 0:
            raise CrossFieldError(("C",), "C must be > 0", "a positive capacitance")
        if self.t_ref.si < 0:
            raise CrossFieldError(("t_ref",), "t_ref must be >= 0", "a non-negative time")
        if self.V_reset.si >= self.V_th.si:
            raise CrossFieldError(("V_reset",), f"V_reset ({self.V_reset}) is not below V_th ({self.V_th})",
                                  "V_reset < V_th")
        return self

    @property
    def capacitance_pF(self) -> float:
        if self.C is not None:
            return self.C.internal
        return self.tau_m.internal * self.g_L.internal  # ms * nS = pF


NeuronModel = Annotated[Union[LIFCond], Field(discriminator="model")]


class Population(SpecModel):
    size: int = Field(gt=0)
    cell_type: Literal["E", "I"]
    neuron: NeuronModel


# ----------------------------------------------------------------------------- receptors
class Receptor(SpecModel):
    """Synaptic kinetics: ``exp`` (instant rise, decay tau_decay) or ``dual_exp``.

    A ``dual_exp`` conductance after one spike of weight w is
    ``w * (exp(-t/tau_decay) - exp(-t/tau_rise)) / peak`` so its peak equals w.
    With ``E_rev`` the receptor is a conductance (weights in nS); without it, a
    current (weights in pA, signed).
    """

    kind: Literal["exp", "dual_exp"] = "exp"
    tau_decay: Time
    tau_rise: Time | None = None
    E_rev: Voltage | None = None

    @model_validator(mode="after")
    def _taus(self):
        if self.tau_decay.si <= 0:
            raise CrossFieldError(("tau_decay",), "tau_decay must be > 0", "a positive time")
        if self.kind == "dual_exp":
            if self.tau_rise is None:
                raise CrossFieldError(("tau_rise",), "a dual_exp receptor needs tau_rise", "e.g. '1 ms'")
            if not 0 < self.tau_rise.si < self.tau_decay.si:
                raise CrossFieldError(("tau_rise",), f"tau_rise ({self.tau_rise}) must be in (0, tau_decay)",
                                      "0 < tau_rise < tau_decay")
        elif self.tau_rise is not None:
            raise CrossFieldError(("tau_rise",), "tau_rise is only for kind: dual_exp", "no tau_rise")
        return self

    @property
    def weight_dim(self) -> U.Dim:
        return U.CONDUCTANCE if self.E_rev is not None else U.CURRENT


# ----------------------------------------------------------------------------- connectivity
class Bernoulli(SpecModel):
    """Each pre->post pair is connected independently with probability p."""

    kind: Literal["bernoulli"]
    p: float = Field(ge=0, le=1)
    allow_self: bool = False


class FixedIndegree(SpecModel):
    """Every postsynaptic neuron receives exactly k distinct presynaptic partners."""

    kind: Literal["fixed_indegree"]
    k: int = Field(ge=0)
    allow_self: bool = False


class Assemblies(SpecModel):
    """Neurons of pre and post are split into n equal assemblies (contiguous blocks);
    pairs in the same assembly connect with p_within, others with p_between."""

    kind: Literal["assemblies"]
    n: int = Field(gt=0)
    p_within: float = Field(ge=0, le=1)
    p_between: float = Field(ge=0, le=1)
    allow_self: bool = False


class AllToAll(SpecModel):
    kind: Literal["all_to_all"]
    allow_self: bool = False


class OneToOne(SpecModel):
    kind: Literal["one_to_one"]


class FromFile(SpecModel):
    """A dense matrix (pre x post) or an edge list ``pre, post[, weight]`` (npz/npy/csv).

    ``sign: signed`` (default) requires weights to carry Dale's sign of the
    presynaptic population (an I row with a positive weight is an error);
    ``sign: magnitude`` reads absolute values (e.g. synapse counts).
    """

    kind: Literal["file"]
    file: str
    key: str | None = None
    layout: Literal["auto", "dense", "edges"] = "auto"
    sign: Literal["signed", "magnitude"] = "signed"

    @field_validator("file")
    @classmethod
    def _exists(cls, v: str, info: ValidationInfo) -> str:
        p = resolve_path(v, info)
        if not p.exists():
            raise ValueError(f"connectivity file {v!r} not found (looked at {p})")
        if p.suffix.lower() not in (".npz", ".npy", ".csv", ".txt"):
            raise ValueError(f"cannot read {p.suffix!r} connectivity files")
        return str(p)


class FromStructure(SpecModel):
    """The synapses of one (presynaptic type, postsynaptic type) pair of a network structure
    (``network_structure.npz``, :mod:`neurodsl.io.structure`): ``pre_type`` E/I (recurrent
    synapses) or ``input`` (feedforward), ``post_type`` E/I.  Neurons of each type keep the
    structure's order; weights are the structure's magnitudes (``weight`` multiplies them).
    ``file`` may be omitted when the network is expanded from a template that holds the
    structure in memory (the olfactory teacher)."""

    kind: Literal["structure"]
    file: str | None = None
    pre_type: Literal["E", "I", "input"]
    post_type: Literal["E", "I"]
    scaling: bool = Field(True, description="multiply the weights by the structure's own scaling factor "
                                            "of this pair (false: the projection's weight already holds "
                                            "the effective factor, as in the expanded olfactory template)")

    @field_validator("file")
    @classmethod
    def _exists(cls, v: str | None, info: ValidationInfo) -> str | None:
        return existing_file(v, info, "structure file")


Connectivity = Annotated[Union[Bernoulli, FixedIndegree, Assemblies, AllToAll, OneToOne, FromFile,
                               FromStructure], Field(discriminator="kind")]


class Projection(SpecModel):
    """Synapses from ``pre`` (a population or input) onto ``post`` (a population).

    Either ``receptor: NAME`` with ``weight`` in that receptor's unit, or
    ``receptors: {NAME: g_max, ...}`` (several receptors, e.g. AMPA+NMDA) with a
    dimensionless ``weight`` multiplying each g_max.  ``delay`` must be a whole
    number of time steps: a spike at step t arrives at step t + delay/dt.
    """

    name: str | None = None
    pre: str
    post: str
    connectivity: Connectivity
    receptor: str | None = None
    receptors: dict[str, AnyQuantity] | None = None
    weight: Value = U.parse_quantity(1.0)
    delay: Time = U.parse_quantity("0 ms", U.TIME)
    trainable: TrainableSpec | None = None

    @field_validator("trainable", mode="before")
    @classmethod
    def _trainable_flag(cls, v):
        if v is True:
            return {"param": "weight"}
        return None if v is False else v

    @model_validator(mode="after")
    def _one_receptor_form(self):
        if (self.receptor is None) == (self.receptors is None):
            raise CrossFieldError(("receptor",), "give exactly one of receptor and receptors",
                                  "receptor: NAME, or receptors: {NAME: g_max}")
        if self.delay.si < 0:
            raise CrossFieldError(("delay",), "delay must be >= 0", "a non-negative time")
        return self

    @property
    def label(self) -> str:
        return self.name or f"{self.pre}->{self.post}"

    def receptor_scales(self) -> dict[str, U.Quantity]:
        if self.receptors is not None:
            return dict(self.receptors)
        return {self.receptor: U.parse_quantity(1.0)}


# ----------------------------------------------------------------------------- inputs
class PiecewiseRate(SpecModel):
    """Rate ``values[i]`` from ``times[i]`` until the next time (times ascending from 0)."""

    kind: Literal["piecewise"]
    times: list[Time]
    values: list[Rate]

    @model_validator(mode="after")
    def _lengths(self):
        if len(self.times) != len(self.values) or not self.times:
            raise CrossFieldError(("values",), f"{len(self.values)} values for {len(self.times)} times",
                                  "one value per time")
        ts = [t.si for t in self.times]
        if ts[0] != 0 or any(b <= a for a, b in zip(ts, ts[1:])):
            raise CrossFieldError(("times",), "times must start at 0 and increase", "e.g. [0 ms, 200 ms]")
        if any(v.si < 0 for v in self.values):
            raise CrossFieldError(("values",), "rates must be >= 0", "non-negative rates")
        return self


class PoissonGroup(SpecModel):
    """``size`` independent Poisson spike sources (a presynaptic source for projections)."""

    kind: Literal["poisson"]
    size: int = Field(gt=0)
    rate: Union[Rate, PiecewiseRate]
    cell_type: Literal["E", "I"] = "E"

    @field_validator("rate")
    @classmethod
    def _nonneg(cls, v):
        if isinstance(v, U.Quantity) and v.si < 0:
            raise ValueError(f"rate {v} is negative")
        return v


class ConstantCurrent(SpecModel):
    """A current injected into every neuron of ``target`` (optionally only in [start, stop))."""

    kind: Literal["current"]
    target: str
    amplitude: Current
    start: Time | None = None
    stop: Time | None = None


Input = Annotated[Union[PoissonGroup, OdourInput, ConstantCurrent], Field(discriminator="kind")]


class PopulationInit(SpecModel):
    """Initial state of one population: membrane potential and receptor conductances/currents."""

    V: InitValue | None = None
    g: dict[str, InitValue] = Field(default_factory=dict)

    @field_validator("V")
    @classmethod
    def _v_dim(cls, v):
        d = value_dim(v) if v is not None else None
        if d is not None and d != U.VOLTAGE:
            raise ValueError(f"V must be a voltage, got a {U.dim_name(d)}")
        return v


def check_weight_dim(weight: Any, dim: U.Dim) -> str | None:
    d = value_dim(weight)
    if d is not None and d != dim:
        return U.dim_name(d)
    return None

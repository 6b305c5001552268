"""Top-level spec documents.

Every document has the common header (``name``, ``kind``, ``seed``, ``dt``,
``duration``, ``precision``, ``outputs``, ``tracking``).  ``kind`` selects the
class that validates the rest: :data:`neurodsl.spec.KINDS` maps kind names to
classes, so a workflow adds its sections by subclassing :class:`SpecHeader`
(or :class:`NetworkSpec`) in a module of its own.
"""
from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from neurodsl import units as U
from neurodsl.spec.base import CrossFieldError, SpecModel, Time
from neurodsl.spec.network import (ConstantCurrent, Input, Population, PopulationInit,
                                   Projection, Receptor, check_weight_dim, value_dim)

KIND_NAMES = ("simulation", "rnn_fit", "teacher", "student", "network_inference", "homeostatic", "fit")


class WandbSpec(SpecModel):
    project: str = "neurodsl"
    mode: Literal["offline", "online", "disabled"] = "disabled"
    entity: str | None = None


class TrackingSpec(SpecModel):
    wandb: WandbSpec = WandbSpec()


class OutputSpec(SpecModel):
    """What is written.  ``rate_bin``: bin of the stored rates; ``chunk``: simulated
    time per compiled chunk (memory stays bounded by one chunk)."""

    rate_bin: Time = U.parse_quantity("10 ms", U.TIME)
    chunk: Time = U.parse_quantity("1 s", U.TIME)
    record_voltage: bool = False
    progress: bool = True


class SpecHeader(SpecModel):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    kind: Literal[KIND_NAMES]  # type: ignore[valid-type]
    seed: int = 0
    dt: Time = U.parse_quantity("0.1 ms", U.TIME)
    duration: Time = U.parse_quantity("1 s", U.TIME)
    precision: Literal["float32", "float64"] = "float32"
    outputs: OutputSpec = OutputSpec()
    tracking: TrackingSpec = TrackingSpec()

    @model_validator(mode="after")
    def _times(self):
        if self.dt.si <= 0:
            raise CrossFieldError(("dt",), "dt must be > 0", "e.g. '0.1 ms'")
        if self.duration.si <= 0:
            raise CrossFieldError(("duration",), "duration must be > 0", "e.g. '1 s'")
        return self

    @property
    def n_steps(self) -> int:
        return int(round(self.duration.si / self.dt.si))


def _whole_steps(t: U.Quantity, dt: U.Quantity) -> int | None:
    n = t.si / dt.si
    return int(round(n)) if math.isclose(n, round(n), rel_tol=0, abs_tol=1e-6) else None


class NetworkSpec(SpecHeader):
    """A spiking network: populations, receptors, inputs, projections, initial state."""

    trials: int = Field(1, gt=0, description="independent trials simulated in parallel (batch)")
    populations: dict[str, Population]
    receptors: dict[str, Receptor] = Field(default_factory=dict)
    inputs: dict[str, Input] = Field(default_factory=dict)
    projections: list[Projection] = Field(default_factory=list)
    initial_state: dict[str, PopulationInit] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _cross_references(self):
        if not self.populations:
            raise CrossFieldError(("populations",), "no populations", "at least one population")
        clash = set(self.populations) & set(self.inputs)
        if clash:
            raise CrossFieldError(("inputs", sorted(clash)[0]), "name used by a population and an input",
                                  "unique names")
        sources = {**{k: "population" for k in self.populations},
                   **{k: "input" for k, v in self.inputs.items() if not isinstance(v, ConstantCurrent)}}
        for i, pr in enumerate(self.projections):
            if pr.pre not in sources:
                raise CrossFieldError(("projections", i, "pre"), f"unknown population or input {pr.pre!r}",
                                      "one of " + ", ".join(sorted(sources)))
            if pr.post not in self.populations:
                raise CrossFieldError(("projections", i, "post"), f"unknown population {pr.post!r}",
                                      "one of " + ", ".join(self.populations))
            for rname, scale in pr.receptor_scales().items():
                where = ("projections", i, "receptor" if pr.receptor else "receptors")
                if rname not in self.receptors:
                    raise CrossFieldError(where, f"unknown receptor {rname!r}",
                                          "one of " + (", ".join(self.receptors) or "(none declared)"))
                rec = self.receptors[rname]
                wdim = value_dim(pr.weight)
                if pr.receptors is not None:
                    if scale.dim != rec.weight_dim:
                        raise CrossFieldError(where + (rname,), f"g_max is a {U.dim_name(scale.dim)}",
                                              f"a {U.dim_name(rec.weight_dim)}")
                    if wdim not in (None, U.DIMENSIONLESS):
                        raise CrossFieldError(("projections", i, "weight"),
                                              "with receptors: {...} the weight is a multiplier",
                                              "a dimensionless weight")
                else:
                    bad = check_weight_dim(pr.weight, rec.weight_dim)
                    if bad is not None and not (bad == "dimensionless" and pr.connectivity.kind in ("file", "structure")):
                        raise CrossFieldError(("projections", i, "weight"), f"weight is a {bad}",
                                              f"a {U.dim_name(rec.weight_dim)} for receptor {rname!r}")
            self._check_dale(i, pr, sources)
            if _whole_steps(pr.delay, self.dt) is None:
                raise CrossFieldError(("projections", i, "delay"),
                                      f"delay {pr.delay} is not a whole number of steps of dt={self.dt}",
                                      "a multiple of dt")
        for name, inp in self.inputs.items():
            if isinstance(inp, ConstantCurrent) and inp.target not in self.populations:
                raise CrossFieldError(("inputs", name, "target"), f"unknown population {inp.target!r}",
                                      "one of " + ", ".join(self.populations))
        used = self.receptors_by_population()
        for pop, init in self.initial_state.items():
            if pop not in self.populations:
                raise CrossFieldError(("initial_state", pop), f"unknown population {pop!r}",
                                      "one of " + ", ".join(self.populations))
            for rname, v in init.g.items():
                if rname not in used.get(pop, ()):
                    raise CrossFieldError(("initial_state", pop, "g", rname),
                                          f"population {pop!r} has no receptor {rname!r}",
                                          "one of " + (", ".join(used.get(pop, ())) or "(none)"))
                d = value_dim(v)
                want = self.receptors[rname].weight_dim
                if d is not None and d != want:
                    raise CrossFieldError(("initial_state", pop, "g", rname), f"a {U.dim_name(d)}",
                                          f"a {U.dim_name(want)}")
        return self

    def _check_dale(self, i: int, pr: Projection, sources: dict[str, str]) -> None:
        pre_type = self.cell_type(pr.pre)
        for rname in pr.receptor_scales():
            rec = self.receptors[rname]
            w = pr.weight
            lo = value_dim(w) is not None and _min_value(w)
            if rec.E_rev is not None and lo is not False and lo < 0:
                raise CrossFieldError(("projections", i, "weight"),
                                      f"negative conductance {w}; inhibition comes from E_rev",
                                      "a conductance >= 0")
            if rec.E_rev is None and lo is not False:
                hi = _max_value(w)
                if (pre_type == "E" and lo < 0) or (pre_type == "I" and hi > 0):
                    raise CrossFieldError(("projections", i, "weight"),
                                          f"Dale's law: {pr.pre!r} is {pre_type} but the weight {w} has the other sign",
                                          "a weight >= 0" if pre_type == "E" else "a weight <= 0")

    def cell_type(self, name: str) -> str:
        if name in self.populations:
            return self.populations[name].cell_type
        return self.inputs[name].cell_type

    def receptors_by_population(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {p: [] for p in self.populations}
        for pr in self.projections:
            if pr.post in out:
                for r in pr.receptor_scales():
                    if r not in out[pr.post]:
                        out[pr.post].append(r)
        return out


def _min_value(v) -> float:
    if isinstance(v, U.Quantity):
        return v.si
    if hasattr(v, "low"):
        return v.low.si
    if v.dist == "lognormal":
        return 0.0
    return v.mean.si if v.std.si == 0 else -math.inf if v.mean.si < 0 else 0.0


def _max_value(v) -> float:
    if isinstance(v, U.Quantity):
        return v.si
    if hasattr(v, "high"):
        return v.high.si
    if v.dist == "lognormal":
        return math.inf
    return v.mean.si if v.std.si == 0 else (math.inf if v.mean.si > 0 else 0.0)


class SimulationSpec(NetworkSpec):
    """``kind: simulation``: run the network and write ``simulation.nc``.

    ``engine``: how the compiled network is stepped.  ``xla``: the core's step inside one jitted loop
    per chunk (any network, any device); ``loop``: the same network generated as one Numba loop per
    chunk (:mod:`neurodsl.compile.loop`; CPU; input sources drawn from the core's random stream; in float64 the
    same spikes as ``xla``); ``auto``: ``loop`` when it applies and JAX runs on the CPU, else ``xla``."""

    kind: Literal["simulation"]
    engine: Literal["auto", "xla", "loop"] = "auto"

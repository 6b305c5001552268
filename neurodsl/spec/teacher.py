"""``kind: teacher``: simulate the olfactory network (workflow 2, stage 3) and save its spikes.

Sections
--------
``network``     the shared :class:`~neurodsl.spec.olfactory.OlfactoryNetwork` (cells,
                receptors, g_bar, structure file or generator, scaling).
``connectome``  optional: a real connectome as a CSV matrix + cell labels
                (:class:`ConnectomeCSV`); used instead of the generator when
                ``network.structure`` is not given.
``mitral``      the feedforward layer: number of mitral cells (default: the
                structure's ``n_inputs``) and their baseline rate.
``odours``      what an odour does to the mitral rates: ``random`` (each odour raises a
                random ``fraction`` of mitral cells by ``modulation``) or ``table``
                (per-odour rates per input channel read from a CSV, e.g. Hallem &
                Carlson 2006; channels are mapped onto mitral cells).
``schedule``    which odour is presented when: ``fixed`` (one odour per trial, -1 =
                baseline, no odour) or ``ou`` (a slow Ornstein-Uhlenbeck process per
                odour passed through a softmax with a temperature: odours switch and mix).
``trials``      number of trials simulated in parallel (the batch).
``dashboard``   the three short conditions (odour, baseline, odour again with new
                noise) that ``neurodsl analyze odourants`` compares.

Structure precedence: ``network.structure`` (npz) > ``connectome`` (CSV) > ``network.generator``.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from neurodsl import units as U
from neurodsl.spec.base import CrossFieldError, NonNegRate, SpecModel, Time
from neurodsl.spec.network import Uniform, Value
from neurodsl.spec.odour import (FixedSchedule, Odours, OUSchedule, RandomOdours, Schedule,  # noqa: F401
                                 TableOdours, _existing)
from neurodsl.spec.olfactory import OlfactoryNetwork
from neurodsl.spec.spec import OutputSpec, SpecHeader

q = U.parse_quantity


class ConnectomeCSV(SpecModel):
    """A connectome as a matrix of synapse counts (row = presynaptic) plus one label per row.

    ``roles`` maps each label to ``E`` or ``I`` (a recurrent neuron of that type),
    ``input`` (a feedforward input channel) or ``drop`` (ignored).  The default
    is the Drosophila larva mushroom body (Eichler et al. 2017): projection
    neurons ``P`` are the inputs, Kenyon cells ``K`` and output neurons ``O`` the
    recurrent layer, both excitatory (KCs are cholinergic; MBON transmitters vary
    and are not in the labels), and modulatory neurons ``I`` are dropped.  A
    synapse count c becomes the weight ``c * weight`` (a multiplier of g_bar);
    counts below ``min_count`` are dropped.
    """

    adjacency: str
    labels: str
    layout: Literal["auto", "dense", "edges"] = "auto"
    roles: dict[str, Literal["E", "I", "input", "drop"]] = Field(
        default_factory=lambda: {"P": "input", "K": "E", "O": "E", "I": "drop"})
    weight: float = Field(1.0, gt=0)
    min_count: float = Field(1.0, ge=0)

    @field_validator("adjacency", "labels")
    @classmethod
    def _exists(cls, v: str, info: ValidationInfo) -> str:
        return _existing(v, info, "connectome file")


class MitralSpec(SpecModel):
    """Poisson mitral cells; ``n`` defaults to the structure's ``n_inputs`` (must match it)."""

    n: int | None = Field(None, gt=0)
    baseline: NonNegRate = q("6 Hz", U.FREQUENCY)


class DashboardSpec(SpecModel):
    """Three short trials for the odourant dashboard: ``odour``, baseline, ``odour`` again."""

    enabled: bool = True
    odour: int = Field(0, ge=0)
    duration: Time = q("2 s", U.TIME)


class TeacherOutputSpec(OutputSpec):
    rate_bin: Time = q("50 ms", U.TIME)


def _default_initial_v():
    return Uniform(dist="uniform", low="-60 mV", high="-45 mV")


class TeacherSpec(SpecHeader):
    """``kind: teacher``: see the module docstring."""

    kind: Literal["teacher"]
    dt: Time = q("1 ms", U.TIME)
    duration: Time = q("10 s", U.TIME)
    trials: int = Field(50, gt=0, description="trials simulated in parallel (batch)")
    network: OlfactoryNetwork = Field(default_factory=OlfactoryNetwork)
    connectome: ConnectomeCSV | None = None
    mitral: MitralSpec = MitralSpec()
    odours: Odours = Field(default_factory=RandomOdours)
    schedule: Schedule = Field(default_factory=FixedSchedule)
    initial_V: Value = Field(default_factory=_default_initial_v,
                             description="initial membrane potential of every recurrent neuron")
    dashboard: DashboardSpec = DashboardSpec()
    outputs: TeacherOutputSpec = TeacherOutputSpec()

    @model_validator(mode="before")
    @classmethod
    def _default_kinds(cls, data):
        """``odours`` / ``schedule`` without ``kind`` are ``random`` / ``fixed`` (so --set works)."""
        if isinstance(data, dict):
            data = dict(data)
            for key, kind in (("odours", "random"), ("schedule", "fixed")):
                if isinstance(data.get(key), dict) and "kind" not in data[key]:
                    data[key] = {"kind": kind, **data[key]}
        return data

    @model_validator(mode="after")
    def _teacher_checks(self):
        if self.network.structure is not None and self.connectome is not None:
            raise CrossFieldError(("connectome",), "both network.structure and connectome are given",
                                  "one structure source")
        if isinstance(self.schedule, FixedSchedule) and self.schedule.odours is not None:
            n_odours = self.odours.n if isinstance(self.odours, RandomOdours) else None
            for i, k in enumerate(self.schedule.odours):
                if k < -1 or (n_odours is not None and k >= n_odours):
                    raise CrossFieldError(("schedule", "odours", i), f"odour index {k} out of range",
                                          f"-1 (baseline) .. {n_odours - 1 if n_odours else 'n-1'}")
        if isinstance(self.odours, RandomOdours) and self.dashboard.odour >= self.odours.n:
            raise CrossFieldError(("dashboard", "odour"), f"odour {self.dashboard.odour} out of range",
                                  f"0 .. {self.odours.n - 1}")
        if isinstance(self.schedule, OUSchedule) and self.schedule.update.si < self.dt.si:
            raise CrossFieldError(("schedule", "update"), "update is shorter than dt", "update >= dt")
        d = self.initial_V
        dim = d.dim if isinstance(d, U.Quantity) else getattr(d, "mean", getattr(d, "low", None)).dim
        if dim != U.VOLTAGE:
            raise CrossFieldError(("initial_V",), f"a {U.dim_name(dim)}", "a voltage, e.g. '-60 mV'")
        return self

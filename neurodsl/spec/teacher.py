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

from typing import Annotated, Literal, Union

from pydantic import Field, ValidationInfo, field_validator, model_validator

from neurodsl import units as U
from neurodsl.spec.base import CrossFieldError, Rate, SpecModel, Time
from neurodsl.spec.network import Uniform, Value, resolve_path
from neurodsl.spec.olfactory import OlfactoryNetwork
from neurodsl.spec.spec import OutputSpec, SpecHeader

q = U.parse_quantity


def _existing(v: str, info: ValidationInfo, what: str) -> str:
    p = resolve_path(v, info)
    if not p.exists():
        raise ValueError(f"{what} {v!r} not found (looked at {p})")
    return str(p)


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
    baseline: Rate = q("6 Hz", U.FREQUENCY)

    @field_validator("baseline")
    @classmethod
    def _nonneg(cls, v):
        if v.si < 0:
            raise ValueError(f"rate {v} is negative")
        return v


class RandomOdours(SpecModel):
    """``n`` odours; odour k raises a random ``fraction`` of mitral cells by ``modulation``."""

    kind: Literal["random"] = "random"
    n: int = Field(10, gt=0)
    fraction: float = Field(0.1, gt=0, le=1)
    modulation: Rate = q("30 Hz", U.FREQUENCY)


class TableOdours(SpecModel):
    """Per-odour rates per input channel from a CSV (odour x channel).

    Rows whose first cell equals the first header cell (e.g. ``odor``) are header
    rows (the last one names the channels); non-numeric columns (e.g. CAS numbers)
    are ignored.  ``values: change``: the table holds changes from the row named
    ``spontaneous`` (absolute rate = spontaneous + gain * change, clipped at 0);
    ``absolute``: rates as they are (baseline = ``mitral.baseline``).  Channels map
    onto mitral cells by ``channel_map``: ``blocks`` (mitral i -> channel
    floor(i C / N)) or ``cycle`` (i mod C).  ``select``: odour names (default all).
    """

    kind: Literal["table"]
    file: str
    select: list[str] | None = None
    values: Literal["change", "absolute"] = "change"
    spontaneous: str = "spontaneous firing rate"
    gain: float = Field(1.0, ge=0)
    channel_map: Literal["blocks", "cycle"] = "blocks"

    @field_validator("file")
    @classmethod
    def _exists(cls, v: str, info: ValidationInfo) -> str:
        return _existing(v, info, "odour table")


Odours = Annotated[Union[RandomOdours, TableOdours], Field(discriminator="kind")]


class FixedSchedule(SpecModel):
    """One odour held for a whole trial: trial i presents ``odours[i % len(odours)]``
    (odour indices from 0; -1 = baseline, no odour).  Default: trial i -> odour i mod n."""

    kind: Literal["fixed"] = "fixed"
    odours: list[int] | None = None


class OUSchedule(SpecModel):
    """Odour mixture weights ``softmax(x / temperature)`` of an OU process x per odour and trial.

    ``dx = -x/tau dt + sigma sqrt(2/tau) dW`` (``sigma`` is the stationary std; x
    starts from the stationary distribution); updated every ``update``.
    """

    kind: Literal["ou"]
    tau: Time = q("700 s", U.TIME)
    sigma: float = Field(5.0, ge=0)
    temperature: float = Field(0.2, gt=0)
    update: Time = q("10 ms", U.TIME)


Schedule = Annotated[Union[FixedSchedule, OUSchedule], Field(discriminator="kind")]


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

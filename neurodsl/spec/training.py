"""Surrogate-gradient training of the olfactory network: ``kind: homeostatic`` and ``kind: student``.

Both compile the shared :class:`~neurodsl.spec.olfactory.OlfactoryNetwork` into a
network on the one core (:mod:`neurodsl.compile.olfactory_train`) and train it with
truncated BPTT (:mod:`neurodsl.runners.spiking_train`).

``homeostatic`` (issue 6b) tunes a network toward target statistics per cell type
(rate, ISI CV, no silent neurons, membrane fluctuations, recurrent/feedforward
weight ratio) under Poisson mitral input at the baseline rate, and writes the
tuned ``network_structure.npz``.

``student`` (issue 5) fits a network to a teacher's recorded spikes: same inputs
(the teacher's mitral spikes), same connectivity mask, chosen parameters trained.
``teacher`` is a folder written by ``neurodsl teacher`` (teacher.nc +
network_structure.npz + spec.yaml); make one first with::

    neurodsl teacher spec/olfactory.yaml --out results/olfactory
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from neurodsl import units as U
from neurodsl.spec.base import CrossFieldError, Rate, SpecModel, Time, TrainingMethod
from neurodsl.spec.network import Uniform, Value, resolve_path
from neurodsl.spec.olfactory import OlfactoryNetwork
from neurodsl.spec.spec import SpecHeader

q = U.parse_quantity
Trainable = Literal["scaling", "weights", "recurrent", "feedforward"]


class SurrogateSpec(SpecModel):
    """Surrogate gradient of the spike: ``kind`` from braintools (fast_sigmoid = SoftSign),
    ``scale`` its sharpness on (V - V_th) / (V_th - V_reset).  ``recurrent_grad`` scales the
    gradient through recurrent spikes (0 = only each neuron's own dynamics, 1 = full BPTT,
    which explodes in strongly recurrent conductance networks; the forward pass is unchanged)."""

    kind: Literal["fast_sigmoid", "sigmoid", "arctan"] = "fast_sigmoid"
    scale: float = Field(10.0, gt=0)
    detach_reset: bool = True
    recurrent_grad: float = Field(0.1, ge=0, le=1)
    propagation: Literal["auto", "dense", "sparse"] = "auto"


class TrainingSpec(SpecModel):
    """Truncated BPTT: chunks of ``chunk_size`` steps (state carried, gradient cut), gradients
    summed over ``chunks_per_update`` chunks (alias ``accumulation_interval``) per Adam step.

    ``updates_per_epoch``: None = as many update windows as fit in the teacher recording
    (student) or 5 (homeostatic).  The neuron state restarts at every epoch.
    ``plot_interval``: figures every that many updates (0 = only at the end);
    ``keep_figures``: newest ``figures/epoch_XXXX`` folders kept.
    ``divergence_retries``: after a non-finite loss or parameter, training restarts that many
    times from the last checkpoint with the step scaled by ``retry_step_factor`` each time,
    then stops with an error (0: stop at once); nothing non-finite is written.
    ``method``: ``bptt`` (above), or an online eligibility-trace algorithm of braintrace
    (``eprop``, ``d_rtrl``: :class:`neurodsl.runners.eprop.OnlineSpikingUpdate`, kind student
    :class:`neurodsl.runners.student_online.StudentOnlineUpdate`; scaling trained, detached reset);
    ``kappa``: e-prop's low-pass filter of the traces.
    """

    learning_rate: float = Field(0.05, gt=0)
    lr_final_fraction: float = Field(1.0, gt=0, le=1, description="cosine decay to this fraction of learning_rate")
    batch: int = Field(8, gt=0)
    chunk_size: int = Field(50, gt=0, description="steps per chunk")
    chunks_per_update: int = Field(10, gt=0, alias="accumulation_interval")
    epochs: int = Field(10, gt=0)
    updates_per_epoch: int | None = Field(None, gt=0)
    grad_clip: float = Field(1.0, gt=0)
    checkpoint_interval: int = Field(10, gt=0)
    log_interval: int = Field(1, gt=0)
    plot_interval: int = Field(0, ge=0)
    keep_figures: int = Field(3, ge=1)
    divergence_retries: int = Field(2, ge=0)
    retry_step_factor: float = Field(0.5, gt=0, lt=1)
    trainable: Trainable = "scaling"
    surrogate: SurrogateSpec = SurrogateSpec()
    method: TrainingMethod = "bptt"
    kappa: float = Field(0.0, ge=0, lt=1)


def _online_checks(t: TrainingSpec, kind: str) -> None:
    """What the online methods of the olfactory model do not cover (located errors)."""
    m = t.method
    if kind not in ("homeostatic", "student"):
        raise CrossFieldError(("training", "method"), f"method {m} is not available for kind {kind} yet",
                              "training.method bptt")
    if t.trainable != "scaling":
        raise CrossFieldError(("training", "trainable"), f"method {m} trains the scaling only",
                              "trainable: scaling, or training.method bptt")
    if not t.surrogate.detach_reset:
        raise CrossFieldError(("training", "surrogate", "detach_reset"), f"method {m} needs a detached reset",
                              "detach_reset: true")


class CellTarget(SpecModel):
    rate: Rate
    cv: float | None = Field(None, ge=0)


class TargetsSpec(SpecModel):
    """Per cell type rate (and ISI CV), silent-neuron penalty ``alpha``, membrane
    ``threshold_ratio`` (std V / (V_th - mean V)) and recurrent/feedforward ``weight_ratio``."""

    E: CellTarget = CellTarget(rate=q("0.5 Hz", U.FREQUENCY), cv=1.0)
    I: CellTarget = CellTarget(rate=q("2 Hz", U.FREQUENCY), cv=1.0)
    alpha: float = Field(1.0, ge=0)
    threshold_ratio: float = Field(0.3, gt=0)
    weight_ratio: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _positive(self):
        for t in ("E", "I"):
            if getattr(self, t).rate.si <= 0:
                raise CrossFieldError((t, "rate"), "target rate must be > 0", "e.g. '1 Hz'")
        return self


class LossesSpec(SpecModel):
    """Weight of each loss term (0 = off); see neurodsl.runners.spiking_losses for the definitions."""

    rate: float = Field(1.0, ge=0)
    rate_mode: Literal["type", "neuron"] = "type"
    cv: float = Field(0.0, ge=0)
    van_rossum: float = Field(0.0, ge=0)
    silent: float = Field(0.0, ge=0)
    membrane: float = Field(0.0, ge=0)
    weight_ratio: float = Field(0.0, ge=0)
    van_rossum_rise: Time = q("10 ms", U.TIME)
    van_rossum_decay: Time = q("100 ms", U.TIME)

    @model_validator(mode="after")
    def _kernel(self):
        if not 0 < self.van_rossum_rise.si < self.van_rossum_decay.si:
            raise CrossFieldError(("van_rossum_rise",), "need 0 < rise < decay", "e.g. 10 ms / 100 ms")
        return self


class HomeostaticInputs(SpecModel):
    """Poisson mitral cells at ``baseline`` rate; their number comes from the structure."""

    baseline: Rate = q("6 Hz", U.FREQUENCY)


def _default_v():
    return Uniform(dist="uniform", low="-60 mV", high="-45 mV")


class HomeostaticSpec(SpecHeader):
    """``kind: homeostatic``: tune scaling factors or weights toward target statistics.
    ``duration``: simulated time of the before/after evaluation."""

    kind: Literal["homeostatic"]
    dt: Time = q("1 ms", U.TIME)
    network: OlfactoryNetwork = Field(default_factory=OlfactoryNetwork)
    inputs: HomeostaticInputs = HomeostaticInputs()
    initial_V: Value = Field(default_factory=_default_v)
    targets: TargetsSpec = TargetsSpec()
    losses: LossesSpec = LossesSpec()
    training: TrainingSpec = TrainingSpec()

    @model_validator(mode="after")
    def _method(self):
        if self.training.method != "bptt":
            _online_checks(self.training, "homeostatic")
        return self


class StudentInit(SpecModel):
    """``teacher_perturbed``: the teacher's values times exp(sigma * N(0, 1)) (log-normal,
    ``sigma`` the log-space std); ``fresh``: scaling all ``fresh_value`` / the structure's
    weights with ``sigma`` log-normal noise."""

    kind: Literal["teacher_perturbed", "fresh"] = "teacher_perturbed"
    sigma: float = Field(0.3, ge=0)
    fresh_value: float = Field(1.0, gt=0)
    seed: int | None = None


class StudentSpec(SpecHeader):
    """``kind: student``: fit the chosen parameters to a teacher's spike trains.

    ``teacher_forcing`` (default on): during training the recurrent synaptic drive of the
    student comes from the *teacher's* recorded spikes of the same trial and step (each
    neuron's own dynamics, inputs and parameters are the student's), so a small parameter
    error cannot be amplified by the network's chaotic recurrent dynamics and every loss
    window constrains each (post, pre) pair directly; at the teacher's parameters the
    student reproduces the teacher spike for spike either way.  Off: closed loop (the
    student's own spikes drive it; gradients through them scaled by
    ``training.surrogate.recurrent_grad``).  Evaluation (``comparison.npz``) is closed loop."""

    kind: Literal["student"]
    teacher: str
    init: StudentInit = StudentInit()
    trials: int | None = Field(None, gt=0, description="teacher trials used (default all)")
    teacher_forcing: bool = True
    targets: TargetsSpec = TargetsSpec()
    losses: LossesSpec = LossesSpec(rate=1.0, rate_mode="neuron", van_rossum=1.0)
    training: TrainingSpec = TrainingSpec()

    @model_validator(mode="after")
    def _method(self):
        if self.training.method != "bptt":
            _online_checks(self.training, "student")
        return self

    @field_validator("teacher")
    @classmethod
    def _teacher_dir(cls, v: str, info: ValidationInfo) -> str:
        p = resolve_path(v, info)
        missing = [f for f in ("teacher.nc", "network_structure.npz", "spec.yaml") if not (p / f).exists()]
        if missing:
            raise ValueError(f"teacher folder {v!r} (looked at {p}) lacks {', '.join(missing)}; make it with "
                             "`neurodsl teacher spec/olfactory.yaml --out results/olfactory`")
        return str(p)

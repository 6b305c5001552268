"""``kind: fit``: train any declared spiking network toward objectives.

A fit spec is a network spec (populations, receptors, inputs, projections, initial
state) plus

* ``trainable`` on projections (:class:`neurodsl.spec.network.TrainableSpec`): what is
  learned;
* ``objectives``: weighted terms, each on one population or ``all``.  Every term is the
  documented differentiable counterpart of a metric defined in :mod:`neurodsl.analysis`
  (see :mod:`neurodsl.runners.fit_objectives`);
* ``training``: truncated BPTT with surrogate gradients, or an online eligibility-trace
  algorithm of braintrace (``training.method``: eprop, d_rtrl).

``trials`` and ``duration`` of the header describe the *evaluation*: after training the
trained network is simulated with the event-driven simulator for ``duration`` x
``trials`` and the rates measured after ``training.warmup`` go to ``summary.json``.
"""
from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from neurodsl import units as U
from neurodsl.spec.base import CrossFieldError, Rate, SpecModel, Time, TrainingMethod
from neurodsl.spec.spec import NetworkSpec

q = U.parse_quantity


class _Objective(SpecModel):
    population: str = "all"
    weight: float = Field(1.0, ge=0)


class RateObjective(_Objective):
    """``per: population``: ((mean rate of the population - target) / target)^2;
    ``per: neuron``: mean over neurons of ((rate_i - target) / target)^2."""

    kind: Literal["rate"]
    target: Rate
    per: Literal["population", "neuron"] = "population"

    @model_validator(mode="after")
    def _positive(self):
        if self.target.si <= 0:
            raise CrossFieldError(("target",), "target rate must be > 0", "e.g. '5 Hz'")
        return self


class CVObjective(_Objective):
    """(mean ISI CV of the population's neurons with >= 2 ISIs - target)^2."""

    kind: Literal["cv"]
    target: float = Field(ge=0)


class FanoObjective(_Objective):
    """(mean Fano factor of spike counts in ``bin`` windows - target)^2."""

    kind: Literal["fano"]
    target: float = Field(ge=0)
    bin: Time = q("50 ms", U.TIME)


class SilentObjective(_Objective):
    """mean over neurons of exp(-n_i), n_i the window's spike count pooled over trials."""

    kind: Literal["silent"]


class MembraneObjective(_Objective):
    """(mean_i std_t(V_i) / max(V_th - mean_t V_i, 1 mV) - target)^2 over each chunk."""

    kind: Literal["membrane"]
    target: float = Field(0.3, gt=0)


Objective = Annotated[Union[RateObjective, CVObjective, FanoObjective, SilentObjective, MembraneObjective],
                      Field(discriminator="kind")]


class FitSurrogate(SpecModel):
    """Surrogate gradient of the spike (braintools; fast_sigmoid = SoftSign) with sharpness
    ``scale`` on (V - V_th) / (V_th - V_reset).  ``synaptic_grad`` scales the gradient through
    the propagated spikes (0: each neuron's own dynamics; 1: full BPTT, which explodes in
    strongly recurrent networks); the forward pass is unchanged."""

    kind: Literal["fast_sigmoid", "sigmoid", "arctan"] = "fast_sigmoid"
    scale: float = Field(10.0, gt=0)
    detach_reset: bool = True
    synaptic_grad: float = Field(0.0, ge=0, le=1)


Optimizer = Literal["adam", "optimistic_adam"]


class OnlineTraining(SpecModel):
    """Values of ``training`` that the online methods (``method: eprop | d_rtrl``) use in place of
    training's own (unset: training's value); ``method: bptt`` does not read them.  So one spec
    can be tuned for BPTT and train by ``--set training.method=eprop`` as well."""

    learning_rate: float | None = Field(None, gt=0)
    grad_clip: float | None = Field(None, gt=0)
    adam_b2: float | None = Field(None, gt=0, lt=1)
    optimizer: Optimizer | None = None


class FitTraining(SpecModel):
    """Truncated BPTT: windows of ``chunks_per_update`` chunks of ``chunk`` simulated time for
    ``batch`` trials; each chunk is differentiated with its entering state detached, the chunk
    gradients are averaged and one Adam step (global-norm clipping ``grad_clip``, optional cosine
    decay to ``lr_final_fraction``) is taken.  The state carries over from update to update; every
    epoch restarts from the initial state and simulates ``warmup`` without gradients first.
    ``propagation``: auto (event kernels where no gradient passes, else dense or sparse), or one
    scheme for every projection.

    ``method``: ``bptt`` (above), or an online algorithm of braintrace (``eprop``, ``d_rtrl``;
    its ``pp_prop`` does not take scalar element-wise weights) on the same network: the gradient of every
    step's linearised window loss is accumulated over the update window from eligibility traces
    carried across chunks and updates (memory constant in the window), then the same Adam step
    (:mod:`neurodsl.runners.eprop`).  ``kappa``: e-prop's low-pass filter of the traces (0: none).
    ``online``: values the online methods use instead of the ones above (:class:`OnlineTraining`)."""

    learning_rate: float = Field(0.05, gt=0)
    lr_final_fraction: float = Field(1.0, gt=0, le=1)
    momentum: float = Field(0.9, ge=0, lt=1, description="Adam's b1; lower overshoots less on noisy rate losses")
    adam_b2: float = Field(0.999, gt=0, lt=1, description="Adam's b2: the memory of the squared gradients "
                           "(~1 / (1 - b2) updates); lower forgets the large gradients of the first updates")
    optimizer: Optimizer = Field("adam", description="adam, or optimistic_adam (optax.optimistic_adam_v2: "
                                 "Nesterov moments, step -lr (2 r_t - r_(t-1)) of Adam's direction r; damps the "
                                 "limit cycles of coupled objectives)")
    batch: int = Field(4, gt=0)
    chunk: Time = q("50 ms", U.TIME)
    chunks_per_update: int = Field(4, gt=0)
    warmup: Time = q("0 ms", U.TIME)
    epochs: int = Field(1, gt=0)
    updates_per_epoch: int = Field(20, gt=0)
    grad_clip: float = Field(1.0, gt=0)
    checkpoint_interval: int = Field(10, gt=0)
    log_interval: int = Field(1, gt=0)
    surrogate: FitSurrogate = FitSurrogate()
    propagation: Literal["auto", "event", "dense", "sparse"] = "auto"
    method: TrainingMethod = "bptt"
    kappa: float = Field(0.0, ge=0, lt=1)
    online: OnlineTraining = OnlineTraining()

    def for_method(self) -> "FitTraining":
        """The settings ``method`` trains with: training's own, with ``online``'s for eprop / d_rtrl."""
        if self.method == "bptt":
            return self
        return self.model_copy(update=self.online.model_dump(exclude_none=True))


class FitSpec(NetworkSpec):
    """``kind: fit`` (see the module docstring)."""

    kind: Literal["fit"]
    objectives: list[Objective] = Field(min_length=1)
    training: FitTraining = FitTraining()

    @model_validator(mode="after")
    def _fit_checks(self):
        for i, o in enumerate(self.objectives):
            if o.population != "all" and o.population not in self.populations:
                raise CrossFieldError(("objectives", i, "population"), f"unknown population {o.population!r}",
                                      "all, or one of " + ", ".join(self.populations))
        if not any(p.trainable is not None for p in self.projections):
            raise CrossFieldError(("projections",), "nothing is trainable",
                                  "trainable: {param: scale} (or weight) on at least one projection")
        if self.training.method != "bptt":
            self._online_checks()
        for name in ("chunk", "warmup"):
            t = getattr(self.training, name)
            n = t.si / self.dt.si
            if abs(n - round(n)) > 1e-6 or (name == "chunk" and round(n) < 1):
                raise CrossFieldError(("training", name), f"{name} {t} is not a whole number of steps of {self.dt}",
                                      "a multiple of dt")
        return self

    def _online_checks(self):
        """What the online methods (the braintrace layout of the core) do not cover yet."""
        m = self.training.method
        for i, o in enumerate(self.objectives):
            if o.kind == "fano":
                raise CrossFieldError(("objectives", i, "kind"), f"objective fano is not available with method {m}",
                                      "rate, cv, silent or membrane, or training.method bptt")
        for i, p in enumerate(self.projections):
            if p.trainable is not None and p.trainable.param != "scale":
                raise CrossFieldError(("projections", i, "trainable", "param"),
                                      f"method {m} trains scales only", "param: scale, or training.method bptt")
        if not self.training.surrogate.detach_reset:
            raise CrossFieldError(("training", "surrogate", "detach_reset"), f"method {m} needs a detached reset",
                                  "detach_reset: true")

    def steps(self, t: U.Quantity) -> int:
        return int(round(t.si / self.dt.si))

"""``kind: rnn_fit``: fit an excitatory-inhibitory rate RNN to recorded single trials.

Sections: ``data`` (which file, variable names, inputs, mask policy, split),
``model`` (units, Dale's law, time constants, input embedding, readout) and
``training`` (losses, optimiser, schedule, stopping, checkpoints).  The header's
``dt`` is the model's integration step and must equal the data's bin width
(checked when the data are loaded); ``duration`` is unused (the data set it).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from neurodsl import units as U
from neurodsl.spec.base import CrossFieldError, SpecModel, Time
from neurodsl.spec.network import resolve_path
from neurodsl.spec.spec import SpecHeader

NONLINEARITIES = ("softplus", "relu", "tanh", "sigmoid", "elu_plus")
DATA_SUFFIXES = (".mat", ".npz", ".nc", ".nc4", ".cdf", ".nwb")


class FieldMapSpec(SpecModel):
    """Where one rnn_export variable is in a file of another layout (``data.fields``; MAT v5/v7.3, npz).

    Exactly one of ``path``, ``stack``, ``value``, ``onehot``; then ``value * scale + offset``.
    Arrays are in python layout (MATLAB axes reversed; a MATLAB cell of equal-shaped arrays becomes
    one array, cell axes first, and singleton axes are dropped), so a MATLAB ``1 x trials`` cell of
    ``bins x 1`` arrays reads as ``(trials, bins)``.
    """

    path: str | None = Field(None, description="a variable, dotted into structs: TE.direction")
    stack: str | None = Field(None, description="a pattern on the last component (D.neuron*): the matching "
                                                "fields, in natural order (2 before 10), stacked on a new last "
                                                "axis -- (trials, bins) each -> (trials, bins, neurons)")
    value: float | None = Field(None, description="a constant; neuron_type is repeated per neuron")
    onehot: str | None = Field(None, description="a per-trial label (a path): one input channel per distinct "
                                                 "value, 1 in the bins of `during`, 0 elsewhere")
    during: tuple[Time, Time] | None = Field(None, description="onehot only: bins whose time_axis centre lies "
                                                               "in [start, stop] (default: all bins)")
    scale: float = Field(1.0, description="multiply (e.g. 1000: seconds -> ms)")
    offset: float = Field(0.0, description="add after scaling (e.g. z-scored signals shifted to >= 0, which "
                                           "the rates of the model are; Pearson r does not change)")

    @model_validator(mode="after")
    def _one_source(self):
        given = [k for k in ("path", "stack", "value", "onehot") if getattr(self, k) is not None]
        if len(given) != 1:
            raise CrossFieldError((given[1] if len(given) > 1 else "path",), f"{len(given)} sources given "
                                  f"({', '.join(given) or 'none'})", "exactly one of path, stack, value, onehot")
        if self.during is not None and self.onehot is None:
            raise CrossFieldError(("during",), "during is only used by onehot", "onehot: LABEL, or no during")
        return self


class NWBMapSpec(SpecModel):
    """How an NWB file (``data.file: x.nwb``) becomes trials x bins (``data.nwb``).

    Spike times of the units table are counted in bins of the spec's ``dt`` (rate = count / dt).
    Each trial (a row of the trials table) is cut from ``align + window_start`` for
    ``window`` (default: to the latest stop_time); its columns become trial labels
    (``condition_keys``), ``trial_duration_ms`` is stop_time - align unless a
    ``duration_ms`` column exists.  Inputs: time series (mean of the samples in each bin, else the
    last earlier sample) and interval tables.
    """

    ei_column: str = Field("cell_type", description="units column with E/I: 'E'/'I' (or excitatory/"
                                                    "inhibitory) or 1/2")
    align: str = Field("start_time", description="trials column (seconds) that is time 0 of each trial")
    window_start: Time | None = Field(None, description="first bin's left edge relative to align (default: "
                                                        "start_time - align, the same in every trial)")
    window: Time | None = Field(None, description="length of each trial's window (default: the longest "
                                                  "trial, stop_time - window start, in whole bins)")
    series: list[str] | None = Field(None, description="TimeSeries (stimulus, acquisition or a processing "
                                                       "module) used as inputs, in order (default: all in "
                                                       "stimulus)")
    intervals: list[str] = Field(default_factory=list, description="interval tables as inputs: NAME is 1 in "
                                                                   "bins whose centre lies in an interval; "
                                                                   "NAME.COLUMN one channel per value")


class RNNDataSpec(SpecModel):
    """The recordings: an ``rnn_export`` file (MAT v7.3/v5, npz or netCDF), NWB, or any MAT/npz via ``fields``."""

    file: str = Field(description="path (relative to the spec) or 'neurodsl:NAME' for shipped data")
    rename: dict[str, str] = Field(default_factory=dict,
                                   description="our variable name -> the file's, e.g. {firing_rates: rates}")
    fields: dict[str, str | FieldMapSpec] = Field(
        default_factory=dict, description="rnn_export variable (firing_rates, neuron_type, bin_size_ms, "
                                          "time_axis, input_*, trial_*) -> where it is in a MAT/npz file of "
                                          "another layout: a dotted path, or {path|stack|value|onehot, ...}; "
                                          "they replace the file's own variables of that name")
    nwb: NWBMapSpec | None = Field(None, description="NWB files only: units, trials and inputs (defaults "
                                                     "when absent)")
    inputs: list[str] | None = Field(None, description="input channels to use, in order (default: all)")
    mask: Literal["none", "trial_duration", "nan"] = Field(
        "none", description="which bins count: none (all), trial_duration, nan (NaN rates)")
    condition_keys: list[str] = Field(default_factory=lambda: ["location", "identity", "reward"],
                                      min_length=1, description="trial labels that define a condition")
    val_fraction: float = Field(0.2, ge=0.0, lt=1.0, description="validation share per condition")
    split_seed: int | None = Field(None, description="seed of the split (default: the spec's seed)")
    max_trials: int | None = Field(None, gt=0, description="use only the first N trials (tests)")

    @field_validator("file")
    @classmethod
    def _exists(cls, v: str, info: ValidationInfo) -> str:
        p = resolve_path(v, info)
        if not p.is_file():
            raise ValueError(f"data file {v!r} not found (looked at {p})")
        if p.suffix.lower() not in DATA_SUFFIXES:
            raise ValueError(f"cannot read {p.suffix!r} files; use one of {', '.join(DATA_SUFFIXES)}")
        return str(p)

    @field_validator("fields")
    @classmethod
    def _field_names(cls, v: dict) -> dict:
        for name in v:
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,62}", name):
                raise ValueError(f"fields: {name!r} is not a variable name (letter, then letters/digits/_)")
        return v

    @model_validator(mode="after")
    def _layout(self):
        nwb_file = self.path.suffix.lower() == ".nwb"
        if self.nwb is not None and not nwb_file:
            raise CrossFieldError(("nwb",), f"data.nwb maps NWB files, but file is {self.path.name}",
                                  "a .nwb file, or no nwb block")
        for name in ("fields", "rename"):
            if nwb_file and getattr(self, name):
                raise CrossFieldError((name,), f"{name} maps MAT/npz/netCDF variables; {self.path.name} is NWB",
                                      "data.nwb for NWB files")
        return self

    @property
    def path(self) -> Path:
        return Path(self.file)

    def reader_options(self, dt) -> dict:
        """Keyword arguments of :func:`neurodsl.io.rnn_export.load_rnn_export`; ``dt``: the spec's step."""
        fields = {}
        for k, v in self.fields.items():
            v = FieldMapSpec(path=v) if isinstance(v, str) else v
            fields[k] = {**v.model_dump(exclude_none=True, exclude={"during"}),
                         "during_ms": None if v.during is None else [float(q.internal) for q in v.during]}
        nwb = None
        if self.path.suffix.lower() == ".nwb":
            m = self.nwb or NWBMapSpec()
            ms = {k: None if getattr(m, k) is None else float(getattr(m, k).internal)
                  for k in ("window_start", "window")}
            nwb = {**m.model_dump(exclude={"window_start", "window"}), "dt_ms": float(dt.internal),
                   "window_start_ms": ms["window_start"], "window_ms": ms["window"]}
        return {"rename": self.rename or None, "inputs": self.inputs, "mask": self.mask,
                "fields": fields or None, "nwb": nwb}


class EmbeddingSpec(SpecModel):
    """Input embedding before ``W_in``: none, linear, or attention across input channels."""

    kind: Literal["none", "linear", "attention"] = "attention"
    dim: int = Field(56, gt=0, description="embedding dimension")
    heads: int = Field(4, gt=0, description="attention heads (dim must be divisible by heads)")

    @model_validator(mode="after")
    def _heads(self):
        if self.kind == "attention" and self.dim % self.heads:
            raise CrossFieldError(("dim",), f"dim {self.dim} is not divisible by heads {self.heads}",
                                  f"a multiple of {self.heads}")
        return self


class RNNModelSpec(SpecModel):
    """Rate units ``tau dx/dt = -x + W_rec f(x) + W_in e(u) + b + noise``, ``r = f(x)`` (sp/s)."""

    hidden_exc: int = Field(0, ge=0, description="extra (unrecorded) excitatory units")
    hidden_inh: int = Field(0, ge=0, description="extra (unrecorded) inhibitory units")
    tau: Time = U.parse_quantity("50 ms", U.TIME)
    noise: float = Field(0.1, ge=0.0, description="process noise std (sqrt(dt/tau) scaled)")
    nonlinearity: Literal[NONLINEARITIES] = "softplus"  # type: ignore[valid-type]
    spectral_radius: float = Field(0.9, gt=0.0, description="of W_rec at initialisation")
    h0_init: float = Field(0.1, description="initial value of the learnable initial state")
    learn_h0: bool = True
    embedding: EmbeddingSpec = EmbeddingSpec()
    readout: int = Field(0, ge=0, description="size of an optional linear readout W_out from E units "
                                              "(0 = none; not used by the losses)")
    observation: Literal["none", "poisson", "gaussian"] = Field(
        "none", description="how the recorded values arise from the rates of the recorded units: none (compared "
                            "as they are; the report's Fano uses rate x bin and says so), poisson (spike counts "
                            "rate x bin ~ Poisson: sampled counts for Fano, Poisson NLL for training.losses."
                            "lambda_obs), gaussian (calcium or z-scored signals: value ~ N(rate, sigma^2), sigma "
                            "per neuron estimated from the training trials' within-condition spread and fixed, "
                            "not learned)")

    @model_validator(mode="after")
    def _tau(self):
        if self.tau.si <= 0:
            raise CrossFieldError(("tau",), "tau must be > 0", "e.g. '50 ms'")
        return self


class RNNLossSpec(SpecModel):
    """Loss terms (see runners/rnn_losses.py for the formulas)."""

    lambda_neuron: float = Field(1.0, ge=0.0, description="weight of the per-neuron PSTH loss")
    psth_smooth: Time = U.parse_quantity("50 ms", U.TIME)
    ltrial_scale: float = Field(0.5, ge=0.0, description="weight of the trial-matching (Sinkhorn) loss")
    trial_smooth: Time = U.parse_quantity("50 ms", U.TIME)
    sinkhorn_eps: float = Field(0.05, gt=0.0, description="entropic regularisation, relative to mean cost")
    sinkhorn_iters: int = Field(30, gt=0)
    trial_downsample: int = Field(4, gt=0, description="keep every k-th bin of trial trajectories")
    lambda_reg: float = Field(1e-4, ge=0.0, description="L2 on weights")
    lambda_scale: float = Field(0.1, ge=0.0, description="mean-rate scale match")
    lambda_var: float = Field(0.05, ge=0.0, description="temporal-variance match")
    lambda_obs: float = Field(0.0, ge=0.0, description="weight of the observation model's negative "
                              "log-likelihood of the recorded single trials (Poisson NLL of counts or Gaussian "
                              "NLL, mean per valid trial x bin x neuron; needs model.observation poisson or "
                              "gaussian); 0 = off, the PSTH losses alone")
    use_grad_balancing: bool = True
    balancer_decay: float = Field(0.999, gt=0.0, lt=1.0, description="EMA decay of gradient norms")


class RNNForceSpec(SpecModel):
    """``training.method: force``: FORCE learning by recursive least squares (runners/rnn_force.py).

    Each epoch is one pass over the training trials; every trial runs from ``h0`` and the
    weights into the *recorded* units (hidden units have no target) are updated online toward
    the trial's recorded rates.  ``training.epochs``, ``test_epochs``, ``early_stopping_patience``,
    ``checkpoint_every``, ``detail_every`` and ``line_every`` keep their meaning (per pass); the
    optimiser fields, ``batch_size`` and ``losses`` belong to bptt (the losses are still logged
    on the validation trials, for comparison).
    """

    alpha: float = Field(1000.0, gt=0.0, description="P starts as I / alpha for regressors in units of the "
                                                     "rate scale (mean recorded rate): the RLS ridge; small "
                                                     "alpha = large first updates (noisy rates need ~100+)")
    update_every: int = Field(1, gt=0, description="one RLS update every k time steps (bins)")
    train_input: bool = Field(True, description="also train W_in and b of the recorded units (regressors: "
                                                "the embedded input, embedding frozen, and a constant); "
                                                "false: W_rec only")
    batch_trials: int = Field(1, gt=0, description="trials run side by side with shared weights and one "
                                                   "block (rank-k) RLS update per step from all of them "
                                                   "(1 = trial by trial, as CURBD)")
    shuffle: bool = Field(True, description="a new seeded order of the training trials every pass "
                                            "(false: the same order every pass)")
    h0_from_data: bool = Field(True, description="before the first pass set h0 of the recorded units to "
                                                 "f^-1 of their mean first-bin training rate (needs "
                                                 "model.learn_h0)")
    target_smooth: Time = Field(U.parse_quantity("0 ms", U.TIME),
                                description="Gaussian sigma applied to each trial's recorded rates "
                                            "before they are RLS targets (0 ms: the raw rates)")


class RNNTrainingSpec(SpecModel):
    """Optimiser, schedule, stopping and checkpoints (epochs count passes over the training set)."""

    method: Literal["bptt", "force"] = Field(
        "bptt", description="bptt: Adam on the losses below, through time; force: recursive least "
                            "squares online (FORCE, as CURBD), settings in `force`")
    force: RNNForceSpec = Field(RNNForceSpec(), description="FORCE/RLS settings (method: force only)")
    epochs: int = Field(2000, gt=0)
    batch_size: int | None = Field(None, gt=0, description="trials per step (default: all training trials)")
    learning_rate: float = Field(1e-3, gt=0.0)
    lr_factor: float = Field(0.5, gt=0.0, lt=1.0)
    lr_patience: int = Field(50, gt=0, description="epochs without improvement before the LR drops")
    min_lr: float = Field(1e-5, ge=0.0)
    plateau_on: Literal["val_loss", "val_correlation", "train_loss"] = Field(
        "val_loss", description="what reduce-on-plateau watches, once per epoch (validation without "
                                "process noise; train_loss = mean of the epoch's noisy minibatch losses)")
    warmup_epochs: int = Field(0, ge=0, description="linear learning-rate warm-up over this many epochs")
    clip_norm: float = Field(1.0, gt=0.0)
    weight_average: float = Field(
        0.0, ge=0.0, lt=1.0, description="decay per optimiser step of an exponential moving average of the "
                                         "parameters (Polyak averaging; 0 = off): validation, the best epoch and "
                                         "every output use the averaged parameters, the optimiser the raw ones")
    early_stopping_patience: int = Field(300, gt=0, description="epochs without a better val correlation")
    checkpoint_every: int = Field(100, gt=0)
    detail_every: int = Field(100, gt=0, description="epochs between detailed log entries / console blocks")
    line_every: int = Field(10, gt=0, description="epochs between console lines")
    test_epochs: int = Field(5, gt=0, description="epochs run by --test")
    losses: RNNLossSpec = RNNLossSpec()
    device: Literal["auto", "cpu", "gpu"] = "auto"

    @model_validator(mode="after")
    def _lr(self):
        if self.min_lr > self.learning_rate:
            raise CrossFieldError(("min_lr",), f"min_lr {self.min_lr} > learning_rate {self.learning_rate}",
                                  "min_lr <= learning_rate")
        return self

    @model_validator(mode="after")
    def _average(self):
        if self.method == "force" and self.weight_average:
            raise CrossFieldError(("weight_average",), "weight_average averages the optimiser's steps, but "
                                  "method: force has no optimiser", "weight_average: 0 with method: force")
        return self

    @model_validator(mode="after")
    def _force_block(self):
        # a block equal to the defaults is allowed: every run folder's spec.yaml writes it out
        if self.method != "force" and self.force != RNNForceSpec():
            raise CrossFieldError(("force",), f"training.force is only used by method: force (method is "
                                  f"{self.method})", "method: force, or no force block (or its defaults)")
        return self


class RNNFitSpec(SpecHeader):
    """``kind: rnn_fit`` -- ``neurodsl run`` fits the model and writes results/<name>/."""

    kind: Literal["rnn_fit"]
    dt: Time = U.parse_quantity("25 ms", U.TIME)
    data: RNNDataSpec
    model: RNNModelSpec = RNNModelSpec()
    training: RNNTrainingSpec = RNNTrainingSpec()

    @model_validator(mode="after")
    def _dt_tau(self):
        if self.dt.si > self.model.tau.si:
            raise CrossFieldError(("dt",), f"dt {self.dt} is longer than tau {self.model.tau}",
                                  "dt <= model.tau (Euler step)")
        return self

    @model_validator(mode="after")
    def _obs_loss(self):
        if self.training.losses.lambda_obs > 0 and self.model.observation == "none":
            raise CrossFieldError(("training", "losses", "lambda_obs"), "lambda_obs weights the observation "
                                  "model's likelihood, but model.observation is none",
                                  "model.observation: poisson (spike counts) or gaussian, or lambda_obs: 0")
        return self

    @model_validator(mode="after")
    def _force_h0(self):
        t = self.training
        if t.method == "force" and t.force.h0_from_data and not self.model.learn_h0:
            raise CrossFieldError(("training", "force", "h0_from_data"), "h0_from_data sets h0, but "
                                  "model.learn_h0 is false", "h0_from_data: false, or model.learn_h0: true")
        return self


__all__ = ["RNNFitSpec", "RNNDataSpec", "FieldMapSpec", "NWBMapSpec", "RNNModelSpec", "RNNLossSpec",
           "RNNTrainingSpec", "RNNForceSpec", "EmbeddingSpec", "NONLINEARITIES"]

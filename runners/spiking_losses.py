"""Loss terms of surrogate-gradient spiking training (registry :data:`LOSSES`) and the trackers they read.

Truncated BPTT runs an update window of ``chunks_per_update`` chunks; each chunk
is differentiated on its own with the state entering it detached.  The
*trackers* (:func:`observe`, run after every simulated step) accumulate

* ``count``: spikes per (trial, neuron) since the window started;
* ``isi``: soft inter-spike-interval moments (below);
* ``vr_sq``: squared difference of kernel-filtered student and teacher trains;
* ``sV``/``sV2``: sums of V and V^2 over the current chunk (V before reset).

Window statistics entering a chunk are constants of that chunk's gradient, so
the loss of chunk k is an honest function of the parameters given that state:
its gradient flows through chunk k's own spikes and voltages; the reported loss
of an update is the mean over its chunks.

Terms (each a function ``(ctx, obs, eff) -> scalar``; weights come from the spec):

``rate``          type mode: sum over cell types of ((r_type - target) / target)^2 with
                  r_type the window's mean rate of that type (over trials and neurons);
                  neuron mode: mean_i ((r_i - target_i) / mean target of i's type)^2.
                  Targets are fixed rates or, with a teacher, the teacher's rates in the
                  same window and trials (same inputs), normalised by its mean type rate.
``cv``            a differentiable ISI CV.  With surrogate spikes s_t, ``tau`` (time since
                  the last spike) obeys ``tau <- (tau + dt)(1 - s_t)`` and ``have`` (a
                  previous spike exists) ``have <- 1 - (1 - have)(1 - s_t)``; each step
                  adds ``s_t have (tau + dt)^k`` to moment k = 0, 1, 2 (exact ISI sums for
                  binary spikes, differentiable through s_t and tau).  Pooled over
                  trials, CV_i = sqrt(m2 - m1^2) / m1 from the normalised moments;
                  neurons with fewer than two ISIs get weight ``clip(n_isi - 1, 0, 1)``;
                  loss = sum over types of (weighted mean CV - target)^2.
``van_rossum``    the differentiable counterpart of
                  :func:`neurodsl.analysis.stats.van_rossum_distance` (kernel ``double_exp``,
                  rise/decay default 10/100 ms, ``include_tail=False``, over the window):
                  both trains are filtered in the scan by K(t) = exp(-t/decay) - exp(-t/rise),
                  D_i^2 = dt sum_t (f_student - f_teacher)^2 / van_rossum_norm(...), and the
                  term is the mean of D_i^2 over trials and neurons per second of window
                  (so its weight does not depend on the window length).  Parity test:
                  tests/runners/test_spiking_losses.py.  (Before 2026-12-02 the kernel was
                  peak-normalised and divided by tau_decay: 1.52x this value for 10/100 ms.)
``silent``        ``alpha * mean_i exp(-n_i)``, n_i the window's spike count of neuron i
                  pooled over trials (1 for a silent neuron, gradient -1 per spike).
``membrane``      (mean_i std_t(V_i) / max(V_th - mean_t V_i, 1 mV) - threshold_ratio)^2
                  over the chunk (V not detached).
``weight_ratio``  log(ratio / target)^2, ratio = summed effective recurrent excitatory
                  weights / summed effective feedforward weights (scaling included).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from neurodsl.analysis.stats import van_rossum_norm  # one definition of D^2's denominator

from .fit_objectives import neuron_cv  # one definition of the soft ISI CV


@dataclass(frozen=True)
class LossContext:
    """Constants the losses need (numpy, internal neuron order)."""

    type_idx: np.ndarray                 # (N,) 0 = E, 1 = I
    V_th: np.ndarray                     # (N,) mV
    dt: float                            # ms
    rate_target: np.ndarray              # (N,) Hz, per neuron
    type_rate_target: np.ndarray         # (2,) Hz (nan: type absent)
    rate_mode: str = "type"
    cv_target: np.ndarray = field(default_factory=lambda: np.full(2, np.nan))
    alpha: float = 1.0
    threshold_ratio: float = 0.5
    weight_ratio: float = 1.0
    vr_rise: float = 10.0                # ms
    vr_decay: float = 100.0
    has_teacher: bool = False
    rec_is_exc: np.ndarray | None = None  # (S,) recurrent synapse has an E presynaptic neuron
    teacher_forcing: bool = False        # recurrent drive from the teacher's spikes (student)


# ----------------------------------------------------------------------------- trackers
def init_obs(batch: int, n: int, dtype) -> dict:
    z = jnp.zeros((batch, n), dtype)
    return {"tau": z, "have": z, "vr_s": jnp.zeros((2, batch, n), dtype), "vr_t": jnp.zeros((2, batch, n), dtype),
            **new_window(z)}


def new_window(z) -> dict:
    """Window accumulators (reset at the start of every update)."""
    return {"count": z, "tcount": z, "isi0": z, "isi1": z, "isi2": z, "vr_sq": z, "sV": z, "sV2": z,
            "steps": jnp.zeros((), jnp.int32), "chunk_steps": jnp.zeros((), jnp.int32)}


def reset_window(obs: dict) -> dict:
    return {**obs, **new_window(jnp.zeros_like(obs["tau"]))}


def reset_chunk(obs: dict) -> dict:
    z = jnp.zeros_like(obs["tau"])
    return {**obs, "sV": z, "sV2": z, "chunk_steps": jnp.zeros((), jnp.int32)}


def make_observer(ctx: LossContext):
    """``observe(obs, out, teacher_t) -> (obs, {})`` for OlfactoryTrainModel.run."""
    dt = ctx.dt
    dr, dd = math.exp(-dt / ctx.vr_rise), math.exp(-dt / ctx.vr_decay)

    def filt(x, s):  # K(t) = exp(-t/decay) - exp(-t/rise), a spike at t adds 1 to both
        x = jnp.stack([x[0] * dd + s, x[1] * dr + s])
        return x, x[0] - x[1]

    def observe(obs, out, teacher_t):
        s, V = out["spikes"], out["V"]
        isi = obs["tau"] + dt
        w = s * obs["have"]
        new = {"count": obs["count"] + s, "isi0": obs["isi0"] + w, "isi1": obs["isi1"] + w * isi,
               "isi2": obs["isi2"] + w * isi * isi, "tau": isi * (1 - s),
               "have": 1 - (1 - obs["have"]) * (1 - s), "sV": obs["sV"] + V, "sV2": obs["sV2"] + V * V,
               "steps": obs["steps"] + 1, "chunk_steps": obs["chunk_steps"] + 1}
        if ctx.has_teacher:
            vs, fs = filt(obs["vr_s"], s)
            vt, ft = filt(obs["vr_t"], jnp.asarray(teacher_t, s.dtype))
            new.update(vr_s=vs, vr_t=vt, vr_sq=obs["vr_sq"] + (fs - ft) ** 2,
                       tcount=obs["tcount"] + jnp.asarray(teacher_t, s.dtype))
        return {**obs, **new}, {}

    return observe


# ----------------------------------------------------------------------------- statistics
def _type_mean(ctx: LossContext, x, weight=None):
    """(2,) mean of a per-neuron (N,) quantity within each type (nan-free: 0 for absent types)."""
    onehot = jnp.asarray(np.eye(2)[ctx.type_idx].T, x.dtype)  # (2, N)
    w = onehot if weight is None else onehot * weight
    return (w @ x) / (w.sum(1) + (1e-6 if weight is not None else 0.0) + (w.sum(1) == 0))


def window_seconds(obs) -> jax.Array:
    return jnp.maximum(obs["steps"], 1)


def neuron_rates(ctx: LossContext, obs, key: str = "count"):
    """(N,) Hz over the window, pooled over trials (``tcount``: the teacher's)."""
    b = obs[key].shape[0]
    return obs[key].sum(0) / (b * window_seconds(obs) * ctx.dt * 1e-3)


def type_stats(ctx: LossContext, obs) -> dict:
    r = neuron_rates(ctx, obs)
    cv, wcv = neuron_cv(obs)
    active = (obs["count"].sum(0) > 0).astype(r.dtype)
    return {"rate": _type_mean(ctx, r), "cv": _type_mean(ctx, cv, wcv), "active": active.mean()}


# ----------------------------------------------------------------------------- terms
def rate_loss(ctx: LossContext, obs, eff):
    target = neuron_rates(ctx, obs, "tcount") if ctx.has_teacher else jnp.asarray(ctx.rate_target)
    if ctx.rate_mode == "neuron":
        r = neuron_rates(ctx, obs)
        tbar = np.asarray(ctx.type_rate_target)[ctx.type_idx]
        return jnp.mean(((r - target) / np.maximum(tbar, 1e-3)) ** 2)
    r = _type_mean(ctx, neuron_rates(ctx, obs))
    if ctx.has_teacher:
        t = np.asarray(ctx.type_rate_target)
        rt = _type_mean(ctx, target)
        return sum(((r[k] - rt[k]) / t[k]) ** 2 for k in range(2) if (ctx.type_idx == k).any())
    t = np.asarray(ctx.type_rate_target)
    present = np.isfinite(t) & (np.bincount(ctx.type_idx, minlength=2) > 0)
    return sum(((r[k] - t[k]) / t[k]) ** 2 for k in range(2) if present[k])


def cv_loss(ctx: LossContext, obs, eff):
    cv, w = neuron_cv(obs)
    m = _type_mean(ctx, cv, w)
    t = np.asarray(ctx.cv_target)
    return sum((m[k] - t[k]) ** 2 for k in range(2) if np.isfinite(t[k]) and (ctx.type_idx == k).any())


def van_rossum_loss(ctx: LossContext, obs, eff):
    if not ctx.has_teacher:
        return jnp.zeros((), obs["tau"].dtype)
    secs = window_seconds(obs) * ctx.dt * 1e-3
    norm = van_rossum_norm("double_exp", tau_rise_ms=ctx.vr_rise, tau_decay_ms=ctx.vr_decay)
    return jnp.mean(obs["vr_sq"]) * ctx.dt / norm / secs


def silent_loss(ctx: LossContext, obs, eff):
    return ctx.alpha * jnp.mean(jnp.exp(-obs["count"].sum(0)))


def membrane_loss(ctx: LossContext, obs, eff):
    n = jnp.maximum(obs["chunk_steps"], 1)
    mean = obs["sV"] / n
    std = jnp.sqrt(jnp.maximum(obs["sV2"] / n - mean * mean, 1e-9))
    ratio = std / jnp.maximum(ctx.V_th - mean, 1.0)
    return (jnp.mean(ratio) - ctx.threshold_ratio) ** 2


def weight_ratio_loss(ctx: LossContext, obs, eff):
    rec = jnp.sum(eff["rec_exc"])
    ff = jnp.sum(eff["ff"])
    return jnp.log(rec / jnp.maximum(ff, 1e-12) / ctx.weight_ratio) ** 2


LOSSES = {"rate": rate_loss, "cv": cv_loss, "van_rossum": van_rossum_loss, "silent": silent_loss,
          "membrane": membrane_loss, "weight_ratio": weight_ratio_loss}


def effective_for_losses(model, params) -> dict:
    """Scaled effective weights the weight-ratio loss reads."""
    eff = model.effective(params)
    sc = eff["scaling"]
    rec = jnp.abs(eff["rec_weight"]) * sc[model.post_type_rec, model.rec_pre_type]
    rec_exc = jnp.where(jnp.asarray(model.rec_pre_type == 0), rec, 0.0)
    return {"rec_exc": rec_exc, "ff": eff["ff_weight"] * sc[model.post_type_ff, 2]}


def make_chunk_loss(model, ctx: LossContext, weights: dict[str, float]):
    """``loss(params, carry, data) -> (total, (carry, parts, spikes))`` for one chunk.

    ``carry = {"model": state, "obs": trackers}``; ``data = {"inputs": (T, B, n_in),
    "teacher": (T, B, N) or None}`` (teacher in the model's core order; with
    ``ctx.teacher_forcing`` the projections deliver the teacher's spikes).
    """
    active = {k: float(w) for k, w in weights.items() if w}
    unknown = set(active) - set(LOSSES)
    if unknown:
        raise KeyError(f"unknown loss terms {sorted(unknown)}; known: {sorted(LOSSES)}")
    observe = make_observer(ctx)

    def loss(params, carry, data):
        obs = reset_chunk(carry["obs"])
        force = data["teacher"] if ctx.teacher_forcing else None
        (state, obs), out = model.run(params, carry["model"], data["inputs"], observe, obs, data.get("teacher"),
                                      force=force, outputs=("spikes",))
        eff = effective_for_losses(model, params)
        parts = {k: LOSSES[k](ctx, obs, eff) for k in active}
        total = sum(active[k] * v for k, v in parts.items()) if parts else jnp.zeros((), obs["tau"].dtype)
        return total, ({"model": state, "obs": obs}, parts, out["spikes"])

    return loss

"""Differentiable objectives of ``kind: fit`` and the window trackers they read.

Each objective is the differentiable counterpart of a metric defined in
:mod:`neurodsl.analysis` (numpy): on 0/1 spikes the tracked quantity *equals* the
analysis metric computed from the same spikes (tests/runners/test_fit_objectives.py
checks each pair); gradients flow through the surrogate spikes.

Trackers (per trial and neuron, the network-wide neuron axis) accumulate over an
update window of several chunks; the values entering a chunk are constants of that
chunk's gradient (truncated BPTT):

* ``count`` -- spikes; rate_i = sum_trials count / (trials * window seconds), as
  :func:`neurodsl.analysis.stats.per_neuron_rates` pooled over trials;
* ``isi0/1/2`` -- ISI moments within each trial: with ``tau`` the time since the last
  spike and ``have`` whether there was one, each step adds ``s have (tau + dt)^k``
  (exact sums for 0/1 spikes); pooled over trials, CV_i = sqrt(m2 - m1^2) / m1 as
  :func:`neurodsl.analysis.stats.cv_isi` (ddof 0, neurons with >= 2 ISIs);
* ``fano1/fano2/fano_bins`` -- sums of counts and squared counts in ``bin`` windows, pooled
  over trials and bins: Fano_i = var / mean (ddof 0) as
  :func:`neurodsl.analysis.stats.per_neuron_fano`;
* ``sV/sV2`` -- sums of V and V^2 over the current chunk (the membrane term, V after the
  step), as :func:`neurodsl.analysis.stats.threshold_ratio`.

A population's value is the mean over its neurons where the metric is defined.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np


@dataclass(frozen=True)
class Term:
    kind: str
    weight: float
    mask: np.ndarray          # (N,) bool: the neurons of the objective's population
    target: float
    per: str = "population"
    bin_steps: int = 0


def compile_objectives(spec, infos) -> list[Term]:
    n = sum(i.size for i in infos)
    terms = []
    for o in spec.objectives:
        mask = np.zeros(n, bool)
        for i in infos:
            if o.population in ("all", i.name):
                mask[i.offset:i.offset + i.size] = True
        target = o.target.internal if o.kind == "rate" else getattr(o, "target", 0.0)
        bin_steps = spec.steps(o.bin) if o.kind == "fano" else 0
        terms.append(Term(o.kind, float(o.weight), mask, float(target), getattr(o, "per", "population"),
                          bin_steps))
    return terms


def init_obs(batch: int, n: int, dtype) -> dict:
    z = jnp.zeros((batch, n), dtype)
    return {"tau": z, "have": z, **new_window(z)}


def new_window(z) -> dict:
    return {"count": z, "isi0": z, "isi1": z, "isi2": z, "fano1": z, "fano2": z, "sV": z, "sV2": z,
            "steps": jnp.zeros((), jnp.int32), "fano_bins": jnp.zeros((), jnp.int32),
            "chunk_steps": jnp.zeros((), jnp.int32)}


def reset_window(obs: dict) -> dict:
    return {**obs, **new_window(jnp.zeros_like(obs["tau"]))}


def track(obs: dict, s, V, dt: float, fano_bin: int) -> dict:
    """Add a chunk's spikes ``s`` and voltages ``V`` (T, B, N) to the trackers."""
    def isi(carry, s_t):
        tau, have, m0, m1, m2 = carry
        gap = tau + dt
        w = s_t * have
        return (gap * (1 - s_t), 1 - (1 - have) * (1 - s_t), m0 + w, m1 + w * gap, m2 + w * gap * gap), None

    (tau, have, m0, m1, m2), _ = jax.lax.scan(isi, (obs["tau"], obs["have"], obs["isi0"], obs["isi1"],
                                                   obs["isi2"]), s)
    new = {"tau": tau, "have": have, "isi0": m0, "isi1": m1, "isi2": m2, "count": obs["count"] + s.sum(0),
           "sV": V.sum(0), "sV2": (V * V).sum(0), "steps": obs["steps"] + s.shape[0],
           "chunk_steps": jnp.asarray(s.shape[0], jnp.int32)}
    if fano_bin:
        k = s.shape[0] // fano_bin
        c = s[:k * fano_bin].reshape(k, fano_bin, *s.shape[1:]).sum(1)
        new.update(fano1=obs["fano1"] + c.sum(0), fano2=obs["fano2"] + (c * c).sum(0),
                   fano_bins=obs["fano_bins"] + k)
    return {**obs, **new}


# ----------------------------------------------------------------------------- metrics (per neuron)
def neuron_rate(obs, dt: float):
    return obs["count"].sum(0) / (obs["count"].shape[0] * jnp.maximum(obs["steps"], 1) * dt * 1e-3)


def neuron_cv(obs):
    """(N,) ISI CV pooled over trials and its weight clip(n_isi - 1, 0, 1) (0 below 2 ISIs)."""
    n0, n1, n2 = (obs[k].sum(0) for k in ("isi0", "isi1", "isi2"))
    safe = jnp.maximum(n0, 1e-6)
    m1, m2 = n1 / safe, n2 / safe
    cv = jnp.sqrt(jnp.maximum(m2 - m1 * m1, 1e-9)) / jnp.maximum(m1, 1e-6)
    return cv, jnp.clip(n0 - 1.0, 0.0, 1.0)


def neuron_fano(obs):
    """(N,) Fano factor of bin counts pooled over trials and bins; weight 0 where the mean is 0."""
    k = jnp.maximum(obs["fano_bins"] * obs["fano1"].shape[0], 1)
    m = obs["fano1"].sum(0) / k
    v = obs["fano2"].sum(0) / k - m * m
    return v / jnp.maximum(m, 1e-9), (m > 0).astype(m.dtype)


def threshold_ratio(obs, V_th):
    n = jnp.maximum(obs["chunk_steps"], 1)
    mean = obs["sV"] / n
    std = jnp.sqrt(jnp.maximum(obs["sV2"] / n - mean * mean, 1e-12))
    return (std / jnp.maximum(V_th - mean, 1.0)).mean(0)


def _wmean(x, mask, w=None):
    m = jnp.asarray(mask, x.dtype) if w is None else jnp.asarray(mask, x.dtype) * w
    return (m * x).sum() / jnp.maximum(m.sum(), 1e-6)


def term_value(t: Term, obs, dt: float, V_th):
    """The (differentiable) loss of one term."""
    if t.kind == "rate":
        r = neuron_rate(obs, dt)
        if t.per == "neuron":
            return _wmean(((r - t.target) / t.target) ** 2, t.mask)
        return ((_wmean(r, t.mask) - t.target) / t.target) ** 2
    if t.kind == "cv":
        cv, w = neuron_cv(obs)
        return (_wmean(cv, t.mask, w) - t.target) ** 2
    if t.kind == "fano":
        f, w = neuron_fano(obs)
        return (_wmean(f, t.mask, w) - t.target) ** 2
    if t.kind == "silent":
        return _wmean(jnp.exp(-obs["count"].sum(0)), t.mask)
    if t.kind == "membrane":
        return (_wmean(threshold_ratio(obs, V_th), t.mask) - t.target) ** 2
    raise KeyError(t.kind)  # pragma: no cover - the spec union is closed


def term_name(i: int, t: Term, infos) -> str:
    pop = next((x.name for x in infos if t.mask[x.offset:x.offset + x.size].all() and t.mask.sum() == x.size),
               "all")
    return f"{i}_{t.kind}_{pop}"

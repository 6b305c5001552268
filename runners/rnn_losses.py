"""Losses, gradient balancing and the jitted training epoch of ``kind: rnn_fit``.

Notation: rates ``r`` (B trials, T bins, N recorded neurons) in sp/s, ``valid``
(B, T) in {0, 1}, ``onehot`` (B, conditions).  ``mu``, ``sd`` are per-neuron
mean/std of the smoothed training-set condition PSTHs: both model and target
are z-scored with the *target's* statistics, so scale errors count.

* ``L_neuron`` -- mean over (condition present in the batch, bin, neuron) of the
  squared difference of smoothed, z-scored condition PSTHs (model from the
  batch, target from all training trials).
* ``L_trial`` -- entropic optimal transport (log-domain Sinkhorn) between the
  model's and the recorded single trials of the batch: trial = smoothed,
  z-scored, down-sampled population trajectory; cost = mean squared
  difference, +1e3 x eps between trials of different conditions (so mass
  moves within conditions); ``eps = sinkhorn_eps x`` the mean pairwise cost of
  the recorded trials (constant in the parameters).  The value is the entropic
  OT objective; its gradient is the envelope gradient ``<P*, dC>``.
* ``L_reg = lambda_reg sum(W^2) + lambda_scale mean_n ((m_model - m)/(m + 1))^2
  + lambda_var mean_n ((v_model - v)/(v + 1))^2`` (m: mean rate, v: temporal
  variance of the smoothed condition PSTHs, averaged over conditions).
* ``L_obs`` (only when ``lambda_obs > 0``, ``model.observation`` poisson or
  gaussian) -- the observation model's negative log-likelihood of the recorded
  single trials, mean over valid (trial, bin, neuron): Poisson
  ``lam - n log lam + log n!`` with ``lam = r * bin``, ``n`` the recorded counts
  (``lam = 0`` -> 1e-9), or Gaussian ``0.5 log(2 pi s^2) + (y - r)^2 / (2 s^2)``
  with ``s = st["obs_sigma"]``; the per-element means of
  :mod:`neurodsl.analysis.nlb`'s totals (checked by tests/analysis/test_nlb.py).
  With ``lambda_obs = 0`` the term is not built at all: the three terms above,
  bit for bit.

Gradient balancing (Défossez et al. 2023, EnCodec's balancer): the gradient of
each rate-based term w.r.t. the model output ``r`` is divided by an EMA
(bias-corrected) of its per-trial norm and multiplied by its weight share, the
sum is back-propagated once; the L2 term's gradient is added unbalanced.

Optimiser (:class:`Optimizer`): global-norm clip -> Adam per minibatch step,
times a reduce-on-plateau factor that is stepped once per epoch on
``training.plateau_on`` (default the validation loss without process noise;
the mean minibatch loss is noisy and cut the LR too early on real data), with
an optional linear warm-up (``training.warmup_epochs``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from neurodsl.compile.rate_rnn import RateRNNConfig, simulate_batch

TERMS = ("L_neuron", "L_trial", "L_rate", "L_obs")


def smoothing_matrix(n_time: int, sigma_bins: float, step: int = 1) -> np.ndarray:
    """Gaussian kernel rows (every ``step``-th output bin) x input bins; unnormalised."""
    t = np.arange(n_time)
    out = t[::step]
    if sigma_bins <= 0:
        return (out[:, None] == t[None, :]).astype(np.float64)
    return np.exp(-0.5 * ((out[:, None] - t[None, :]) / sigma_bins) ** 2)


def condition_psth(rates, valid, onehot, smooth):
    """Smoothed condition PSTHs (C, S, N) and the weight of each (C, S) cell (0 = no data)."""
    b, t, n = rates.shape
    num = (onehot.T @ (rates * valid[..., None]).reshape(b, t * n)).reshape(-1, t, n)
    den = onehot.T @ valid
    num = jnp.einsum("st,ctn->csn", smooth, num)
    den = den @ smooth.T
    ok = den > 1e-6
    return num / jnp.where(ok, den, 1.0)[..., None], ok.astype(rates.dtype)


@dataclass(frozen=True)
class LossConfig:
    lambda_neuron: float
    ltrial_scale: float
    lambda_reg: float
    lambda_scale: float
    lambda_var: float
    sinkhorn_eps: float
    sinkhorn_iters: int
    balancing: bool
    decay: float
    lambda_obs: float = 0.0
    observation: str = "none"     # model.observation
    bin_s: float = 0.0            # data bin (s): counts = rate x bin_s

    @classmethod
    def from_spec(cls, s, observation: str = "none", bin_ms: float = 0.0) -> "LossConfig":
        return cls(s.lambda_neuron, s.ltrial_scale, s.lambda_reg, s.lambda_scale, s.lambda_var,
                   s.sinkhorn_eps, s.sinkhorn_iters, s.use_grad_balancing, s.balancer_decay,
                   getattr(s, "lambda_obs", 0.0), observation, bin_ms / 1000.0)

    @property
    def obs(self) -> bool:
        """Whether the observation likelihood ``L_obs`` is a term (weight > 0 and a model to weigh)."""
        return self.lambda_obs > 0 and self.observation != "none"

    @property
    def weights(self) -> tuple[float, ...]:
        """Balancer weight of each rate-based term (its share of the gradient norm); L_obs last, if a term."""
        w = (self.lambda_neuron, self.ltrial_scale, self.lambda_scale + self.lambda_var)
        return w + (self.lambda_obs,) if self.obs else w


def target_stats(rates: np.ndarray, valid: np.ndarray, onehot: np.ndarray, smooth: np.ndarray,
                 observation: str = "none") -> dict:
    """Training-set statistics the losses compare against (numpy float64); with a gaussian
    ``observation`` also its fixed noise s.d. ``obs_sigma`` (:func:`neurodsl.analysis.nlb.within_condition_sd`)."""
    p, w = condition_psth(jnp.asarray(rates, jnp.float32), jnp.asarray(valid, jnp.float32),
                          jnp.asarray(onehot, jnp.float32), jnp.asarray(smooth, jnp.float32))
    p, w = np.asarray(p, np.float64), np.asarray(w, np.float64)
    cells = w > 0
    mu = p[cells].mean(0)
    sd = np.maximum(p[cells].std(0), 1e-3)
    v = rates * valid[..., None]
    mean_rate = v.sum((0, 1)) / max(valid.sum(), 1.0)
    out = {"psth": p, "psth_w": w, "mu": mu, "sd": sd, "mean_rate": mean_rate, "tvar": _temporal_var(p, w)}
    if observation == "gaussian":
        from neurodsl.analysis.nlb import within_condition_sd
        out["obs_sigma"] = within_condition_sd(rates, valid, np.argmax(onehot, 1))
    return out


def _temporal_var(p, w):
    wn = w / jnp.maximum(w.sum(1, keepdims=True), 1e-6)
    m = (p * wn[..., None]).sum(1, keepdims=True)
    v = (((p - m) ** 2) * wn[..., None]).sum(1)          # (C, N)
    cw = (w.sum(1) > 0).astype(p.dtype)
    return (v * cw[:, None]).sum(0) / jnp.maximum(cw.sum(), 1.0)


def trajectories(rates, valid, smooth_ds, mu, sd):
    """Smoothed, down-sampled, z-scored single-trial trajectories, flattened: (B, S * N)."""
    b, t, n = rates.shape
    x = jnp.swapaxes(rates * valid[..., None], 0, 1).reshape(t, b * n)
    num = jnp.swapaxes((smooth_ds @ x).reshape(-1, b, n), 0, 1)
    den = valid @ smooth_ds.T
    ok = (den > 1e-6).astype(rates.dtype)
    z = (num / jnp.where(den > 1e-6, den, 1.0)[..., None] - mu) / sd
    return (z * ok[..., None]).reshape(b, -1)


def sinkhorn_plan(cost, eps, iters):
    """Log-domain Sinkhorn with uniform marginals: plan P (B, B) and dual value."""
    n, m = cost.shape
    la, lb = -jnp.log(n), -jnp.log(m)

    def body(_, fg):
        f, g = fg
        f = -eps * jax.nn.logsumexp((g[None, :] - cost) / eps + lb, axis=1)
        g = -eps * jax.nn.logsumexp((f[:, None] - cost) / eps + la, axis=0)
        return f, g

    f, g = jax.lax.fori_loop(0, iters, body, (jnp.zeros(n, cost.dtype), jnp.zeros(m, cost.dtype)))
    plan = jnp.exp((f[:, None] + g[None, :] - cost) / eps + la + lb)
    return plan, f.mean() + g.mean()


def trial_loss(rates, batch, st, cfg: LossConfig):
    zm = trajectories(rates, batch["valid"], st["smooth_ds"], st["mu"], st["sd"])
    zr = batch["traj"]
    d = zm.shape[1]
    eps = cfg.sinkhorn_eps * 2.0 * jnp.var(zr, axis=0).sum() / d + 1e-6
    cost = ((zm ** 2).sum(1)[:, None] + (zr ** 2).sum(1)[None, :] - 2.0 * zm @ zr.T) / d
    same = batch["onehot"] @ batch["onehot"].T
    cost = cost + (1.0 - same) * (1e3 * eps)
    plan, value = sinkhorn_plan(jax.lax.stop_gradient(cost), eps, cfg.sinkhorn_iters)
    plan = jax.lax.stop_gradient(plan)
    lin = (plan * cost).sum()
    return lin + jax.lax.stop_gradient(value - lin)


def neuron_loss(rates, batch, st, cfg: LossConfig):
    p, w = condition_psth(rates, batch["valid"], batch["onehot"], st["smooth"])
    present = w * (st["psth_w"] > 0)
    z = (p - st["psth"]) / st["sd"]
    return (present[..., None] * z ** 2).sum() / (jnp.maximum(present.sum(), 1.0) * rates.shape[-1])


def rate_loss(rates, batch, st, cfg: LossConfig):
    p, w = condition_psth(rates, batch["valid"], batch["onehot"], st["smooth"])
    m = (rates * batch["valid"][..., None]).sum((0, 1)) / jnp.maximum(batch["valid"].sum(), 1.0)
    scale = jnp.mean(((m - st["mean_rate"]) / (st["mean_rate"] + 1.0)) ** 2)
    var = jnp.mean(((_temporal_var(p, w) - st["tvar"]) / (st["tvar"] + 1.0)) ** 2)
    return cfg.lambda_scale * scale + cfg.lambda_var * var


def obs_loss(rates, batch, st, cfg: LossConfig):
    """Observation NLL per valid (trial, bin, neuron): Poisson on counts or Gaussian (module docstring)."""
    v = batch["valid"][..., None]
    if cfg.observation == "poisson":
        lam, n = rates * cfg.bin_s, batch["target"] * cfg.bin_s
        lam = jnp.where(lam > 0, lam, 1e-9)
        e = lam - n * jnp.log(lam) + jax.scipy.special.gammaln(n + 1.0)
    else:
        s = st["obs_sigma"]
        e = 0.5 * jnp.log(2 * jnp.pi * s ** 2) + (batch["target"] - rates) ** 2 / (2 * s ** 2)
    return (e * v).sum() / (jnp.maximum(v.sum(), 1.0) * rates.shape[-1])


def _zero(rates, batch, st, cfg):
    return jnp.zeros((), rates.dtype)


def term_fns(cfg: LossConfig):
    """The rate-based terms (a zero stands in for a term whose weight is 0); ``obs_loss`` only if ``cfg.obs``."""
    fns = (neuron_loss if cfg.lambda_neuron > 0 else _zero, trial_loss if cfg.ltrial_scale > 0 else _zero,
           rate_loss if cfg.lambda_scale + cfg.lambda_var > 0 else _zero)
    return fns + (obs_loss,) if cfg.obs else fns


def rate_terms(rates, batch, st, cfg: LossConfig):
    """(L_neuron, L_trial, L_rate[, L_obs]) of recorded-unit rates."""
    return tuple(fn(rates, batch, st, cfg) for fn in term_fns(cfg))


def _named(parts, l2):
    """Logged names of the terms (L_rate and the L2 penalty are logged together as L_reg)."""
    out = {"L_neuron": parts[0], "L_trial": parts[1], "L_reg": parts[2] + l2}
    return {**out, "L_obs": parts[3]} if len(parts) > 3 else out


def _weighted(w, parts):
    """``lambda_neuron L_neuron + ltrial_scale L_trial + L_rate (+ lambda_obs L_obs)``."""
    total = w[0] * parts[0] + w[1] * parts[1] + parts[2]
    return total + w[3] * parts[3] if len(parts) > 3 else total


def l2_term(params, cfg: LossConfig):
    keys = [k for k in params if k.startswith("w") or k in ("emb_w", "tok_w")]
    return cfg.lambda_reg * sum(jnp.sum(params[k] ** 2) for k in keys)


def total_loss(params, model: RateRNNConfig, table, batch, st, cfg: LossConfig, key=None, noise=None):
    """Weighted total loss and its parts (the value logged as train/val loss)."""
    r = simulate_batch(params, model, table, batch, key, noise)[..., :model.n_recorded]
    return loss_of_rates(r, params, batch, st, cfg)


def loss_of_rates(r, params, batch, st, cfg: LossConfig):
    """:func:`total_loss` of recorded-unit rates ``r`` already simulated."""
    parts = rate_terms(r, batch, st, cfg)
    l2 = l2_term(params, cfg)
    return _weighted(cfg.weights, parts) + l2, _named(parts, l2)


def loss_and_grads(params, bal, model: RateRNNConfig, table, batch, st, cfg: LossConfig, key):
    """Loss parts, parameter gradients and the new balancer state (one forward, one backward)."""
    fwd = lambda p: simulate_batch(p, model, table, batch, key)[..., :model.n_recorded]  # noqa: E731
    rates, vjp = jax.vjp(fwd, params)
    parts, grads = [], []
    for fn in term_fns(cfg):
        v, g = jax.value_and_grad(fn)(rates, batch, st, cfg)
        parts.append(v)
        grads.append(g)
    w = cfg.weights
    if cfg.balancing:
        norms = jnp.stack([jnp.sqrt((g ** 2).sum((1, 2))).mean() for g in grads])
        m = cfg.decay * bal["m"] + (1 - cfg.decay) * norms
        c = cfg.decay * bal["c"] + (1 - cfg.decay)
        ema = m / c
        wsum = max(sum(w), 1e-12)
        g_out = sum((w[i] / wsum) * grads[i] / (ema[i] + 1e-8) for i in range(len(grads)))
        bal = {"m": m, "c": c}
    else:  # plain gradient of the total loss (L_rate already carries its lambdas)
        g_out = _weighted(w, grads)
    (g_params,) = vjp(g_out)
    l2, g_l2 = jax.value_and_grad(l2_term)(params, cfg)
    g_params = jax.tree.map(jnp.add, g_params, g_l2)
    return _weighted(w, parts) + l2, _named(parts, l2), g_params, bal


class Optimizer(NamedTuple):
    """clip(global norm) -> Adam, scaled by a reduce-on-plateau factor stepped once per epoch.

    The plateau transform is *not* updated per minibatch: :func:`build_epoch`
    feeds it one value per epoch (``training.plateau_on``: the deterministic
    validation loss by default), so noisy minibatch losses cannot cut the LR.
    State: ``(adam_state, plateau_state, step)``; ``state[1].scale`` is the LR factor.
    """

    inner: optax.GradientTransformation
    plateau: optax.GradientTransformationExtraArgs
    warmup: int = 0            # optimiser steps of linear LR warm-up (0 = none)

    def init(self, params):
        return (self.inner.init(params), self.plateau.init(params), jnp.zeros((), jnp.int32))

    def step(self, grads, state, params):
        """Scaled updates of one minibatch step and the new state (plateau state untouched)."""
        updates, inner = self.inner.update(grads, state[0], params)
        scale = state[1].scale
        if self.warmup:
            scale = scale * jnp.minimum(1.0, (state[2] + 1.0) / self.warmup)
        updates = jax.tree.map(lambda u: (u * scale).astype(u.dtype), updates)
        return updates, (inner, state[1], state[2] + 1)

    def epoch_end(self, state, params, value):
        """Step reduce-on-plateau with this epoch's monitored value."""
        zeros = jax.tree.map(jnp.zeros_like, params)
        _, plateau = self.plateau.update(zeros, state[1], params, value=value)
        return (state[0], plateau, state[2])


def make_optimizer(t, n_batches: int = 1) -> Optimizer:
    """clip(global norm) -> Adam -> reduce-on-plateau (stepped per epoch, see :class:`Optimizer`)."""
    return Optimizer(
        optax.chain(optax.clip_by_global_norm(t.clip_norm), optax.adam(t.learning_rate)),
        optax.contrib.reduce_on_plateau(factor=t.lr_factor, patience=t.lr_patience,
                                        min_scale=t.min_lr / t.learning_rate, accumulation_size=1),
        int(getattr(t, "warmup_epochs", 0)) * max(int(n_batches), 1))


def pooled_correlation(model, target, valid):
    """Per-neuron Pearson r of the trial-averaged (valid bins) PSTHs along time."""
    w = valid[..., None]
    den = jnp.maximum(valid.sum(0), 1e-6)[:, None]
    pm, pt = (model * w).sum(0) / den, (target * w).sum(0) / den
    ok = (valid.sum(0) > 0)[:, None].astype(model.dtype)
    n = ok.sum()
    am = (pm - (pm * ok).sum(0) / n) * ok
    at = (pt - (pt * ok).sum(0) / n) * ok
    d = jnp.sqrt((am ** 2).sum(0) * (at ** 2).sum(0))
    return jnp.where(d > 0, (am * at).sum(0) / jnp.where(d > 0, d, 1.0), jnp.nan)


def _take(batch, idx):
    return {k: jnp.take(v, idx, axis=0) for k, v in batch.items()}


def build_epoch(model: RateRNNConfig, cfg: LossConfig, tx: Optimizer, n_train: int, batch_size: int,
                plateau_on: str = "val_loss", average: float = 0.0):
    """jit-compiled ``epoch(state, train, val, table, st) -> (state, metrics)`` (one pass + validation).

    ``average`` > 0: ``state["avg"]`` is an exponential moving average of the parameters (decay
    ``average`` per optimiser step, started at the initial parameters); validation runs on it.

    ``train``/``val``: dicts of per-trial arrays (index or u, target, valid, onehot, traj);
    ``table``: distinct input vectors (unused when the dicts carry inputs ``u``: per-batch embedding); ``st``: :func:`target_stats` + smoothing matrices.
    """
    n_batches = max(1, n_train // batch_size)
    full = n_batches * batch_size == n_train

    def epoch(state, train, val, table, st):
        key, k_perm, k_noise = jax.random.split(state["key"], 3)
        if full and n_batches == 1:
            perm = jnp.arange(n_train)[None]
        else:
            perm = jax.random.permutation(k_perm, n_train)[:n_batches * batch_size].reshape(n_batches, -1)
        keys = jax.random.split(k_noise, n_batches)

        def step(carry, xs):
            params, opt, bal, avg = carry
            idx, k = xs
            batch = train if (full and n_batches == 1) else _take(train, idx)
            total, parts, grads, bal = loss_and_grads(params, bal, model, table, batch, st, cfg, k)
            updates, opt = tx.step(grads, opt, params)
            params = optax.apply_updates(params, updates)
            if average:
                avg = optax.incremental_update(params, avg, 1.0 - average)
            return (params, opt, bal, avg), (total, parts)

        (params, opt, bal, avg), (tot, parts) = jax.lax.scan(
            step, (state["params"], state["opt"], state["bal"], state.get("avg", ())), (perm, keys))
        evaluated = avg if average else params
        rv = simulate_batch(evaluated, model, table, val, None, 0.0)[..., :model.n_recorded]
        val_total, _ = loss_of_rates(rv, evaluated, val, st, cfg)  # one validation simulation
        r = pooled_correlation(rv, val["target"], val["valid"])
        monitored = {"val_loss": val_total, "train_loss": tot.mean(),
                     "val_correlation": -jnp.nan_to_num(jnp.nanmean(r), nan=0.0)}[plateau_on]
        opt = tx.epoch_end(opt, params, monitored)
        metrics = {"train_loss": tot.mean(), **{k: v.mean() for k, v in parts.items()},
                   "val_loss": val_total, "val_correlation": jnp.nanmean(r), "r_neuron": r,
                   "lr_scale": opt[1].scale}
        new = {"params": params, "opt": opt, "bal": bal, "key": key}
        return ({**new, "avg": avg} if average else new), metrics

    return jax.jit(epoch), n_batches

"""Model-free baselines of the rate-RNN report: the validation trials predicted from the training
trials only, every choice (smoothing, rank, ridge penalty) made on halves of the training trials, and
scored with the fit's validation r (:func:`.psth.pooled_psth_r`), so that model, baselines and noise
ceiling sit on one scale.

* ``raw_psth``: the training trials' PSTH; ``smoothed_psth``: Gaussian-smoothed (sigma chosen);
  ``condition_psth``: each validation trial gets its condition's smoothed training PSTH.
* ``lowrank_psth``: the smoothed training PSTH (time x neuron, z-scored per neuron) truncated to its
  first ``k`` singular components and scaled back (sigma and ``k`` chosen jointly; ``k`` = all neurons
  is the smoothed PSTH itself): how much a model gains by sharing temporal structure across neurons.
* ``ridge_lagged_inputs``: ridge regression of the rates on lagged inputs (trial-specific timing).
"""
from __future__ import annotations

import itertools

import numpy as np

from .psth import _pearson_np, _psth_predict, _smoothed_psth, pooled_psth_r

RIDGE_ALPHAS, SMOOTH_SIGMAS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3), (0, 0.5, 1, 1.5, 2, 3, 4, 6, 8)


def _halves(train, cond, rng):  # a random split of ``train`` in halves, within each condition
    a = np.concatenate([rng.permutation(train[cond[train] == c])[: (cond[train] == c).sum() // 2]
                        for c in np.unique(cond[train])])
    return np.sort(a), np.setdiff1d(train, a)


def choose_sigma(rate, valid, cond, train, by_condition: bool, n_rep: int = 4, seed: int = 0,
                 sigmas=SMOOTH_SIGMAS) -> float:
    """Smoothing (bins) whose half-A PSTH best predicts the half-B trials (and vice versa), mean
    :func:`pooled_psth_r` over ``n_rep`` splits of the *training* trials (within conditions)."""
    rng = np.random.default_rng([seed, 2])
    score = np.zeros(len(sigmas))
    for _ in range(n_rep):
        a, b = _halves(train, cond, rng)
        for (fit_i, ev), (j, s) in itertools.product(((a, b), (b, a)), enumerate(sigmas)):
            p = _psth_predict(rate, valid, cond, fit_i, ev, s, by_condition)
            score[j] += np.nanmean(pooled_psth_r(p, rate[ev], valid[ev]))
    return float(sigmas[int(np.argmax(score))])


def _truncate(p: np.ndarray, rank: int) -> np.ndarray:
    """(time, neuron) ``p`` z-scored per neuron, kept to its first ``rank`` singular components, scaled back."""
    mu, sd = p.mean(0), p.std(0)
    sd = np.where(sd > 1e-12, sd, 1.0)
    u, s, vt = np.linalg.svd((p - mu) / sd, full_matrices=False)
    return (u[:, :rank] * s[:rank]) @ vt[:rank] * sd + mu


def choose_lowrank(rate, valid, cond, train, n_rep: int = 4, seed: int = 0, sigmas=SMOOTH_SIGMAS,
                   max_rank: int = 10) -> tuple[float, int]:
    """(sigma in bins, rank) whose truncated half-A PSTH best predicts the half-B trials (and vice
    versa), mean :func:`pooled_psth_r` over ``n_rep`` within-condition splits of the training trials.
    Ranks 1..``max_rank`` and the full rank (= the smoothed PSTH)."""
    n = rate.shape[-1]
    ranks = sorted(set(range(1, min(max_rank, n) + 1)) | {n})
    rng = np.random.default_rng([seed, 4])
    score = np.zeros((len(sigmas), len(ranks)))
    for _ in range(n_rep):
        a, b = _halves(train, cond, rng)
        for fit_i, ev in ((a, b), (b, a)):
            # pooled_psth_r of a prediction shared by every trial: its r with ev's valid-bin PSTH
            w = valid[ev][..., None]
            ok = w.sum(0)[:, 0] > 0
            tgt = (np.nan_to_num(rate[ev]) * w).sum(0)[ok] / w.sum(0)[ok]
            for i, s in enumerate(sigmas):
                p = _smoothed_psth(rate[fit_i], valid[fit_i], s)
                for j, k in enumerate(ranks):
                    score[i, j] += np.nanmean(_pearson_np(_truncate(p, k)[ok], tgt))
    i, j = np.unravel_index(int(np.argmax(score)), score.shape)
    return float(sigmas[i]), int(ranks[j])


def lagged_features(u, n_lags: int) -> np.ndarray:
    """Means of ``u`` over lag windows [0], [1], [2, 3], [4, 7], ... < n_lags bins back (0 before the trial)."""
    k, t, c = u.shape
    cs, now = np.concatenate([np.zeros((k, n_lags + 1, c)), np.cumsum(u, 1)], 1), np.arange(t) + n_lags + 1
    edges = [0, 1] + [2 ** i for i in range(1, 32) if 2 ** i < n_lags] + [n_lags]
    return np.concatenate([(cs[:, now - lo] - cs[:, now - hi]) / (hi - lo) for lo, hi in zip(edges[:-1], edges[1:])], -1)


def _moments(u, y, w, idx, n_lags: int, chunk: int = 64) -> tuple:
    """Valid-bin moments of lagged inputs and rates ``y`` over trials ``idx`` (by trial chunks)."""
    f = lagged_features(u[:1, :1], n_lags).shape[-1]
    n, sx, sxx, sy, sxy = 0.0, np.zeros(f), np.zeros((f, f)), 0.0, 0.0
    for c in (idx[i:i + chunk] for i in range(0, len(idx), chunk)):
        keep = w[c].reshape(-1) > 0
        x, yy = lagged_features(u[c], n_lags).reshape(-1, f)[keep], np.nan_to_num(y[c].reshape(-1, y.shape[-1]))[keep]
        n, sx, sxx, sy, sxy = n + len(x), sx + x.sum(0), sxx + x.T @ x, sy + yy.sum(0), sxy + x.T @ yy
    return n, sx / n, sxx, sy / n, sxy


def _ridge(u, mom, n_lags: int, alpha: float):
    """Ridge on standardised features (penalty ``alpha`` x rows); returns ``predict(trials)``."""
    n, mu, sxx, ym, sxy = mom
    sd = np.sqrt(np.maximum(np.diag(sxx) / n - mu ** 2, 0.0))
    sd = np.where(sd > 1e-9, sd, 1.0)
    zz = (sxx - n * np.outer(mu, mu)) / np.outer(sd, sd)
    beta = np.linalg.solve(zz + alpha * n * np.eye(len(mu)), (sxy - n * np.outer(mu, ym)) / sd[:, None])
    return lambda trials: ((lagged_features(u[trials], n_lags) - mu) / sd) @ beta + ym


def ridge_predict(u, rate, valid, cond, train, pred_idx, n_lags: int, seed: int = 0,
                  alphas=RIDGE_ALPHAS) -> tuple[np.ndarray, float]:
    """Ridge regression of every neuron's rate on lagged inputs (training trials only; the
    penalty chosen by :func:`pooled_psth_r` on a within-condition 2-fold split of them)."""
    u = np.nan_to_num(np.asarray(u, np.float64))
    a, b = _halves(train, cond, np.random.default_rng([seed, 3]))
    score = np.zeros(len(alphas))
    for fit_i, ev in ((a, b), (b, a)):
        mom = _moments(u, rate, valid, fit_i, n_lags)
        for j, al in enumerate(alphas):
            score[j] += np.nanmean(pooled_psth_r(_ridge(u, mom, n_lags, al)(ev), rate[ev], valid[ev]))
    alpha = float(alphas[int(np.argmax(score))])
    return _ridge(u, _moments(u, rate, valid, train, n_lags), n_lags, alpha)(pred_idx), alpha


def psth_baselines(rate, valid, inputs, cond, train, val, bin_ms: float, seed: int = 0, lag_ms: float = 1600.0):
    """``{name: (per-neuron pooled_psth_r on the val trials, description)}``: ``raw_psth`` (training PSTH),
    ``smoothed_psth`` (Gaussian, sigma chosen on training halves), ``condition_psth`` (the trial's
    condition PSTH, own sigma), ``lowrank_psth`` (sigma and rank chosen likewise),
    ``ridge_lagged_inputs`` (lags 0..lag_ms, penalty chosen likewise)."""
    rate, valid, cond = np.asarray(rate, np.float64), np.asarray(valid, np.float64), np.asarray(cond)
    train, val, out = np.asarray(train), np.asarray(val), {}
    tgt, vv = rate[val], valid[val]
    for name, by in (("raw_psth", None), ("smoothed_psth", False), ("condition_psth", True)):
        s = 0.0 if by is None else choose_sigma(rate, valid, cond, train, by, seed=seed)
        p = _psth_predict(rate, valid, cond, train, val, s, bool(by))
        out[name] = (pooled_psth_r(p, tgt, vv), "unsmoothed" if by is None else f"sigma {s * bin_ms:g} ms")
    s, k = choose_lowrank(rate, valid, cond, train, seed=seed)
    p = np.broadcast_to(_truncate(_smoothed_psth(rate[train], valid[train], s), k), tgt.shape)
    out["lowrank_psth"] = (pooled_psth_r(p, tgt, vv), f"sigma {s * bin_ms:g} ms, rank {k} of {rate.shape[-1]}")
    n_lags = max(1, int(round(lag_ms / bin_ms)) + 1)
    p, alpha = ridge_predict(inputs, rate, valid, cond, train, val, n_lags, seed)
    out["ridge_lagged_inputs"] = (pooled_psth_r(p, tgt, vv), f"lags 0-{(n_lags - 1) * bin_ms:g} ms, alpha {alpha:g}")
    return out

"""Synthetic ``rnn_export`` data from a KNOWN E-I rate RNN (numpy only).

Model (row = postsynaptic, column = presynaptic; Dale's law by column)::

    r[t]   = softplus(x[t])                                   (sp/s)
    x[0]   = h0
    x[t+1] = (1 - a) x[t] + a (W_rec r[t] + W_in u[t] + b) + sqrt(a) * noise * xi[t]
    a      = dt / tau,   dt = bin_size_ms,   xi ~ N(0, 1)

``W_rec = |W| * sign(presynaptic type)`` (E columns >= 0, I columns <= 0, no
self-connections).  Recorded ``firing_rates`` are Poisson counts of ``r`` in
each bin divided by the bin width (so multiples of 1000/bin_size_ms sp/s, as in
the real export); trial-averaged PSTHs converge to those of ``r``.

Task inputs mimic the real export (14 channels): ``fixation_on``,
``target_loc`` (4 one-hot channels), ``go_signal``, ``reward_on``, ``eye_x``,
``eye_y``, ``is_face``, ``is_nonface``, ``is_bullseye``, ``high_salience``,
``low_salience``.  Conditions: location (1-4) x identity (1 face, 2 nonface,
3 bullseye) x reward (0 small, 1 large) = 24, balanced; ``trial_salience`` is
0 for faces/nonfaces and 1 (high) or 2 (low) for bullseyes, as in the real file.
Timeline (after ``n_pre`` baseline bins; t = 0 at fixation onset): fixation,
target + identity + salience on until the end, go (fixation off) with jitter,
eye moves to the target 4 bins later, reward pulse (longer when reward = 1).
``trial_duration_ms`` is the reward onset time in ms, the meaning it has in
the real file (an event time, not the end of the data).

``continuous=True`` makes ``eye_x`` / ``eye_y`` continuous traces as real eye
positions are (:func:`_eye_traces`): fixational drift (an Ornstein-Uhlenbeck
process, sd 0.05, 100 ms), a 2-bin saccade to a per-trial scattered end point
near the target (sd 0.1), so every (trial, bin) input vector is distinct.  The
generator network is the same; ground truth holds the inputs (``inputs``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from neurodsl.io.rnn_export import write_rnn_export

INPUT_NAMES = ("fixation_on", "target_loc_1", "target_loc_2", "target_loc_3", "target_loc_4",
               "go_signal", "reward_on", "eye_x", "eye_y", "is_face", "is_nonface", "is_bullseye",
               "high_salience", "low_salience")
_CH = {n: i for i, n in enumerate(INPUT_NAMES)}


def softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def _task(n_trials: int, n_time: int, n_pre: int, bin_ms: float, rng: np.random.Generator,
          continuous: bool = False):
    """Inputs (K, T, 14) and trial labels for a balanced location x identity x reward design."""
    if n_time < n_pre + 16:
        raise ValueError(f"n_time={n_time} is too short: need >= n_pre + 16 = {n_pre + 16} bins")
    conds = np.array([(loc, idn, rew) for loc in (1, 2, 3, 4) for idn in (1, 2, 3) for rew in (0, 1)])
    pick = conds[rng.permutation(np.arange(n_trials) % len(conds))]
    loc, idn, rew = pick[:, 0], pick[:, 1], pick[:, 2]
    sal = np.where(idn == 3, rng.integers(1, 3, n_trials), 0)
    span = n_time - n_pre
    t_tgt = n_pre + max(1, round(0.15 * span))
    t_go = t_tgt + max(1, round(0.25 * span)) + rng.integers(0, max(1, round(0.07 * span)) + 1, n_trials)
    t_eye = np.minimum(t_go + max(1, round(0.06 * span)), n_time - 1)
    t_rew = np.minimum(t_eye + max(1, round(0.08 * span)), n_time - 2)
    rew_len = np.where(rew == 1, max(2, round(0.12 * span)), max(1, round(0.05 * span)))
    tt = np.arange(n_time)[None, :]
    u = np.zeros((n_trials, n_time, len(INPUT_NAMES)))
    u[..., _CH["fixation_on"]] = (tt >= n_pre) & (tt < t_go[:, None])
    after_tgt = (tt >= t_tgt).astype(float)
    k = np.arange(n_trials)
    u[k, :, _CH["target_loc_1"] + loc - 1] = after_tgt[0]
    u[k, :, _CH["is_face"] + idn - 1] = after_tgt[0]
    bull = idn == 3
    u[k[bull], :, _CH["high_salience"] + sal[bull] - 1] = after_tgt[0]
    u[..., _CH["go_signal"]] = tt >= t_go[:, None]
    u[..., _CH["reward_on"]] = (tt >= t_rew[:, None]) & (tt < (t_rew + rew_len)[:, None])
    angle = np.deg2rad(45.0 + 90.0 * (loc - 1))
    if continuous:
        u[..., _CH["eye_x"]], u[..., _CH["eye_y"]] = _eye_traces(angle, t_eye, n_time, bin_ms, rng)
    else:
        moved = tt >= t_eye[:, None]
        u[..., _CH["eye_x"]] = moved * np.cos(angle)[:, None]
        u[..., _CH["eye_y"]] = moved * np.sin(angle)[:, None]
    dur_ms = (t_rew - n_pre) * bin_ms
    labels = {"trial_location": loc, "trial_identity": idn, "trial_reward": rew,
              "trial_salience": sal, "trial_duration_ms": dur_ms}
    return u, {k_: np.asarray(v, dtype=np.float64) for k_, v in labels.items()}


def _eye_traces(angle, t_eye, n_time: int, bin_ms: float, rng: np.random.Generator,
                drift_sd: float = 0.05, drift_ms: float = 100.0, scatter: float = 0.1):
    """Continuous eye position (x, y), each (K, T): OU drift around the fixation point, then a
    linear 2-bin saccade to ``(cos, sin)(angle) + N(0, scatter^2)`` and drift around it."""
    k = len(angle)
    rho = np.exp(-bin_ms / drift_ms)
    drift = np.empty((2, k, n_time))
    drift[:, :, 0] = rng.normal(0.0, drift_sd, (2, k))
    kick = rng.normal(0.0, drift_sd * np.sqrt(1.0 - rho ** 2), (2, k, n_time))
    for t in range(1, n_time):
        drift[:, :, t] = rho * drift[:, :, t - 1] + kick[:, :, t]
    end = np.stack([np.cos(angle), np.sin(angle)]) + rng.normal(0.0, scatter, (2, k))
    frac = np.clip((np.arange(n_time)[None, :] - t_eye[:, None] + 1) / 2.0, 0.0, 1.0)  # (K, T)
    xy = frac[None] * end[:, :, None] + drift
    return xy[0], xy[1]


def _network(n_exc: int, n_inh: int, n_in: int, rng: np.random.Generator, rho: float = 0.7):
    """Dale's-law W_rec (post, pre), W_in (post, input), bias b."""
    n = n_exc + n_inh
    sign = np.r_[np.ones(n_exc), -np.ones(n_inh)]
    mag = rng.lognormal(0.0, 0.5, (n, n)) * (rng.random((n, n)) < 0.6)
    np.fill_diagonal(mag, 0.0)
    if n_inh:  # inhibition balances excitation on average (1.3x)
        mag[:, n_exc:] *= 1.3 * n_exc / n_inh
    w = mag * sign[None, :]
    radius = np.max(np.abs(np.linalg.eigvals(w))) if n > 1 else 0.0
    if radius > 0:
        w *= rho / radius
    w_in = rng.normal(0.0, 5.0, (n, n_in)) * (rng.random((n, n_in)) < 0.7)
    pref = rng.integers(0, 4, n)  # each unit prefers one target location
    w_in[np.arange(n), _CH["target_loc_1"] + pref] += 10.0
    b = rng.uniform(4.0, 10.0, n)
    return w, w_in, b


def _simulate(w, w_in, b, h0, u, alpha, noise, rng):
    k, t_len, _ = u.shape
    drive = u @ w_in.T + b  # (K, T, N)
    x = np.broadcast_to(h0, (k, len(h0))).copy()
    rates = np.empty((k, t_len, len(h0)))
    for t in range(t_len):
        r = softplus(x)
        rates[:, t] = r
        x = (1 - alpha) * x + alpha * (r @ w.T + drive[:, t])
        if noise:
            x += np.sqrt(alpha) * noise * rng.standard_normal(x.shape)
    return rates


def make_rnn_export(n_exc: int = 8, n_inh: int = 2, n_trials: int = 192, n_time: int = 60,
                    bin_size_ms: float = 25.0, seed: int = 0, *, tau_ms: float = 50.0,
                    noise: float = 0.5, n_pre: int = 4, continuous: bool = False,
                    input_gain: float = 1.0) -> tuple[dict, dict]:
    """Return ``(arrays, ground_truth)``: rnn_export variables (python layout) and the model.

    Units are ordered E first, then I (``neuron_type`` 1 then 2).  Ground truth:
    ``W_rec`` (post, pre), ``W_in`` (post, input), ``b``, ``h0``, ``tau_ms``,
    ``dt_ms``, ``noise``, ``ei``, ``neuron_type``, ``input_names``,
    ``rates_latent`` (the Poisson intensity, with process noise) and
    ``rates_noiseless`` (same inputs, noise = 0), both (trial, time, neuron) sp/s, and
    ``inputs`` (trial, time, input) with ``continuous=True`` (see the module docstring).
    ``input_gain`` scales ``W_in`` (1: the shipped export).
    """
    if n_exc < 1 or n_inh < 0 or n_trials < 1:
        raise ValueError("need n_exc >= 1, n_inh >= 0, n_trials >= 1")
    rng = np.random.default_rng(seed)
    u, labels = _task(n_trials, n_time, n_pre, bin_size_ms, rng, continuous)
    w, w_in, b = _network(n_exc, n_inh, len(INPUT_NAMES), rng)
    w_in = w_in * input_gain  # > 1: stronger task modulation against the Poisson noise (higher ceiling)
    alpha = bin_size_ms / tau_ms
    h0 = b + rng.normal(0.0, 1.0, len(b))
    latent = _simulate(w, w_in, b, h0, u, alpha, noise, rng)
    clean = _simulate(w, w_in, b, h0, u, alpha, 0.0, rng)
    dt_s = bin_size_ms / 1000.0
    fr = rng.poisson(latent * dt_s) / dt_s
    n = n_exc + n_inh
    nt = np.r_[np.ones(n_exc), 2 * np.ones(n_inh)]
    arrays: dict = {
        "firing_rates": fr, "neuron_type": nt, "neuron_ids": np.arange(1.0, n + 1),
        "bin_size_ms": np.float64(bin_size_ms),
        "time_axis": (np.arange(n_time) - n_pre + 0.5) * bin_size_ms,
        "n_trials": np.float64(n_trials), "n_time_bins": np.float64(n_time), "n_neurons": np.float64(n),
        "session_name": f"synthetic_seed{seed}", "pipeline_version": "neurodsl-synthetic-1",
        "input_fixation_on": u[..., _CH["fixation_on"]],
        "input_target_loc": u[..., _CH["target_loc_1"]:_CH["target_loc_4"] + 1],
        **{f"input_{name}": u[..., _CH[name]] for name in INPUT_NAMES[5:]},
        **labels,
    }
    truth = {"W_rec": w, "W_in": w_in, "b": b, "h0": h0, "tau_ms": np.float64(tau_ms),
             "dt_ms": np.float64(bin_size_ms), "noise": np.float64(noise),
             "ei": np.where(nt == 1, "E", "I"), "neuron_type": nt, "input_names": np.array(INPUT_NAMES),
             "nonlinearity": np.array("softplus"), "rates_latent": latent, "rates_noiseless": clean}
    if continuous:
        truth["inputs"] = u
    return arrays, truth


def write_synthetic(path: str | Path, *, version: str = "7.3", **kw) -> tuple[Path, Path]:
    """Write ``make_rnn_export(**kw)`` to ``path`` (MAT ``version``, or .npz/.nc by suffix)
    and the ground truth to ``<stem>_ground_truth.npz`` beside it (float32 rates)."""
    arrays, truth = make_rnn_export(**kw)
    path = Path(path)
    out = write_rnn_export(path, arrays, version=version)
    gt = path.with_name(f"{path.stem}_ground_truth.npz")
    small = {k: (v.astype(np.float32) if k.startswith("rates_") or k == "inputs" else v) for k, v in truth.items()}
    np.savez_compressed(gt, **small)
    return out, gt

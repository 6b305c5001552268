"""Observation models and the Neural Latents Benchmark metrics (numpy only, no jax).

Definitions (the training losses in ``runners/rnn_losses.py`` are checked against
these by ``tests/analysis/test_nlb.py``):

* **Counts** of a rate ``r`` (sp/s) in a bin of ``bin_ms``: ``c = r * bin_ms / 1000``.
* **Poisson negative log-likelihood** (nlb_tools ``neg_log_likelihood``): of
  expected counts ``lam`` given observed counts ``n``,
  ``sum(lam - n log(lam) + log(n!))`` over entries where ``n`` is not NaN; a
  zero ``lam`` is replaced by ``1e-9`` (negative ``lam`` are refused).
* **Bits per spike** (nlb_tools ``bits_per_spike``, co-bps when the evaluated
  neurons are held out): ``(NLL_null - NLL_model) / sum(n) / ln 2``, the null
  predicting every neuron's mean count over all (trial, bin) of the *evaluated*
  data.  > 0: the model predicts the counts better than a constant rate.
* **Calibrated bits per spike**: the same metric of ``a lam + b`` (floored at
  ``1e-9``), with a gain ``a`` and offset ``b`` per neuron fitted by Poisson
  maximum likelihood to the *training* trials' counts given the model's rates on
  those trials (:func:`poisson_calibration`), the validation counts unseen: the
  affine observation stage a Poisson readout would learn (``a >= 0``, ``b`` at
  least 1e-3 x the neuron's mean training count).  A model fitted to
  PSTHs is not fitted to single-trial counts; a gain < 1 says its modulation is
  deeper than the counts support.
* **Gaussian negative log-likelihood** of values ``y`` given mean ``m`` and
  per-neuron s.d. ``sigma``: ``sum(0.5 log(2 pi sigma^2) + (y - m)^2 / (2 sigma^2))``.
* **PSTH R2** (nlb_tools ``eval_psth``): ``psth`` is each evaluated trial's
  condition PSTH (smoothed, from all trials of the condition), ``rates`` the
  model's single-trial prediction; per neuron ``1 - SS_res / SS_tot`` over all
  (trial, bin) rows without NaN (``SS_tot`` about the PSTH's mean), averaged
  over neurons (sklearn ``r2_score``: a constant column scores 1 if matched
  exactly, else 0).
* **Observation noise** of ``model.observation``: poisson -- counts
  ``~ Poisson(r * bin)``; gaussian -- ``y ~ N(r, sigma_n^2)`` with ``sigma_n``
  *estimated* (not learned) from the training trials: the pooled within-condition
  s.d. of the recorded values about their condition mean, per neuron
  (:func:`within_condition_sd`); none -- the rate itself.
"""
from __future__ import annotations

import numpy as np
from scipy.special import gammaln

OBSERVATIONS = ("none", "poisson", "gaussian")
ZERO_RATE = 1e-9


def to_counts(rate, bin_ms: float) -> np.ndarray:
    """Counts per bin of rates in sp/s."""
    return np.asarray(rate, np.float64) * (bin_ms / 1000.0)


def poisson_nll(lam, n) -> float:
    """Total Poisson NLL of counts ``n`` under expected counts ``lam`` (nlb_tools' definition)."""
    lam, n = np.asarray(lam, np.float64), np.asarray(n, np.float64)
    if lam.shape != n.shape:
        raise ValueError(f"rates {lam.shape} and counts {n.shape} differ in shape")
    ok = ~np.isnan(n)
    lam, n = lam[ok], n[ok]
    if np.isnan(lam).any():
        raise ValueError("NaN rate predictions")
    if (lam < 0).any():
        raise ValueError("negative rate predictions")
    lam = np.where(lam == 0, ZERO_RATE, lam)
    return float(np.sum(lam - n * np.log(lam) + gammaln(n + 1.0)))


def null_counts(n) -> np.ndarray:
    """nlb_tools' null prediction: each neuron's mean count over (trial, bin), tiled to ``n``'s shape."""
    n = np.asarray(n, np.float64)
    return np.broadcast_to(np.nanmean(n, axis=(0, 1), keepdims=True), n.shape).copy()


def bits_per_spike(lam, n) -> float:
    """Bits per spike of expected counts ``lam`` (trials, bins, neurons) given counts ``n`` (NaN = skip)."""
    n = np.asarray(n, np.float64)
    return (poisson_nll(null_counts(n), n) - poisson_nll(lam, n)) / np.nansum(n) / np.log(2)


def bits_per_spike_per_neuron(lam, n) -> np.ndarray:
    """:func:`bits_per_spike` of each neuron on its own (NaN for a neuron without spikes)."""
    lam, n = np.asarray(lam, np.float64), np.asarray(n, np.float64)
    out = np.full(n.shape[-1], np.nan)
    for j in range(n.shape[-1]):
        if np.nansum(n[..., j]) > 0:
            out[j] = bits_per_spike(lam[..., j:j + 1], n[..., j:j + 1])
    return out


def poisson_calibration(lam, n, floor: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Per neuron, the gain ``a >= 0`` and offset ``b`` (counts per bin) maximising the Poisson likelihood of
    counts ``n`` under ``a lam + b`` (``lam``, ``n``: (trials, bins, neurons), NaN counts skipped; convex,
    solved by L-BFGS-B from ``a = 1`` and the least offset).  ``b >= floor x`` the neuron's mean count, so
    that no bin is predicted silent (a spike there would cost ~20 nats at nlb_tools' 1e-9 floor; at this
    floor it costs ``ln(1 / floor)`` more than the mean rate would).  A neuron without counts keeps ``a = 1, b = 0``."""
    from scipy.optimize import minimize
    lam, n = np.asarray(lam, np.float64), np.asarray(n, np.float64)
    a, b = np.ones(n.shape[-1]), np.zeros(n.shape[-1])
    for j in range(n.shape[-1]):
        ok = ~np.isnan(n[..., j])
        x, y = np.maximum(lam[..., j][ok], 0.0), n[..., j][ok]
        if y.sum() <= 0:
            continue

        def nll(q, x=x, y=y):
            m = q[0] * x + q[1]
            return float(np.sum(m - y * np.log(m))), np.array([np.sum((1 - y / m) * x), np.sum(1 - y / m)])
        lo = floor * y.mean()
        res = minimize(nll, np.array([1.0, lo]), jac=True, method="L-BFGS-B",
                       bounds=[(0.0, None), (lo, None)])
        if not res.success:
            raise RuntimeError(f"Poisson calibration of neuron {j} did not converge: {res.message}")
        a[j], b[j] = res.x
    return a, b


def calibrated(lam, a, b) -> np.ndarray:
    """``max(a lam + b, 1e-9)`` per neuron (the last axis)."""
    return np.maximum(np.asarray(lam, np.float64) * a + b, ZERO_RATE)


def gaussian_nll(mean, y, sigma) -> float:
    """Total Gaussian NLL of ``y`` (NaN = skip) given ``mean`` and s.d. ``sigma`` (broadcast on the last axis)."""
    mean, y = np.asarray(mean, np.float64), np.asarray(y, np.float64)
    s = np.broadcast_to(np.asarray(sigma, np.float64), y.shape)
    ok = ~np.isnan(y)
    e = 0.5 * np.log(2 * np.pi * s[ok] ** 2) + (y[ok] - mean[ok]) ** 2 / (2 * s[ok] ** 2)
    return float(e.sum())


def psth_r2(psth, rates) -> float:
    """nlb_tools' PSTH R2: ``psth`` and ``rates`` (trials, bins, neurons); rows with a NaN PSTH skipped."""
    return float(psth_r2_per_neuron(psth, rates).mean())


def psth_r2_per_neuron(psth, rates) -> np.ndarray:
    """The per-neuron R2 values :func:`psth_r2` averages."""
    p = np.asarray(psth, np.float64).reshape(-1, np.shape(psth)[-1])
    r = np.asarray(rates, np.float64).reshape(-1, np.shape(rates)[-1])
    keep = ~np.isnan(p).any(1)
    p, r = p[keep], r[keep]
    if np.isnan(r).any():
        raise ValueError("NaN rate predictions where the PSTH is defined")
    ss_res = ((p - r) ** 2).sum(0)
    ss_tot = ((p - p.mean(0)) ** 2).sum(0)
    return np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0), np.where(ss_res == 0, 1.0, 0.0))


def condition_psth_per_trial(values, valid, cond, trials, sigma_bins: float) -> np.ndarray:
    """Each of ``trials``' condition PSTH (Gaussian ``sigma_bins``, from *all* trials of the condition, as
    nlb_tools' make_tensors): (len(trials), bins, neurons); NaN where no trial of the condition is valid."""
    from scipy.ndimage import gaussian_filter1d
    x = np.where(valid[..., None] > 0, np.asarray(values, np.float64), 0.0)
    w = (np.asarray(valid) > 0).astype(np.float64)
    out = np.full((len(trials),) + x.shape[1:], np.nan)
    for c in np.unique(cond[trials]):
        sel = cond == c
        num, den = x[sel].sum(0), w[sel].sum(0)
        if sigma_bins > 0:
            num = gaussian_filter1d(num, sigma_bins, axis=0, mode="nearest")
            den = gaussian_filter1d(den, sigma_bins, axis=0, mode="nearest")
        p = np.where(den[:, None] > 1e-9, num / np.where(den > 1e-9, den, 1.0)[:, None], np.nan)
        out[cond[trials] == c] = p
    return out


def within_condition_sd(values, valid, cond, floor: float = 1e-3) -> np.ndarray:
    """Per-neuron pooled s.d. of recorded values about their (condition, bin) mean: the Gaussian
    observation noise, ``sqrt(sum (y - ybar)^2 / sum (n_cell - 1))`` over valid bins, >= ``floor``."""
    y = np.asarray(values, np.float64)
    w = (np.asarray(valid) > 0).astype(np.float64)[..., None]
    ss, dof = np.zeros(y.shape[-1]), 0.0
    for c in np.unique(cond):
        sel = cond == c
        n = w[sel].sum(0)                                          # (T, 1)
        m = (y[sel] * w[sel]).sum(0) / np.maximum(n, 1.0)
        ss += (((y[sel] - m) ** 2) * w[sel]).sum((0, 1))
        dof += float(np.maximum(n - 1.0, 0.0).sum())
    return np.maximum(np.sqrt(ss / max(dof, 1.0)), floor)


def sample_observations(rate, bin_ms: float, observation: str, sigma=None, seed: int = 0) -> np.ndarray:
    """Observed values drawn from ``observation`` given model rates, in the rates' units (sp/s):
    poisson ``Poisson(r * bin) / bin`` (negative rates count as 0), gaussian ``r + sigma N(0, 1)``,
    none ``r`` unchanged."""
    if observation not in OBSERVATIONS:
        raise ValueError(f"observation {observation!r} is not one of {OBSERVATIONS}")
    r = np.asarray(rate, np.float64)
    rng = np.random.default_rng(seed)
    if observation == "poisson":
        return rng.poisson(np.maximum(to_counts(r, bin_ms), 0.0)) / (bin_ms / 1000.0)
    if observation == "gaussian":
        if sigma is None:
            raise ValueError("a gaussian observation needs its noise s.d. sigma")
        return r + np.asarray(sigma, np.float64) * rng.standard_normal(r.shape)
    return r


def trial_matching_cost(a, b, cond_a, cond_b, sigma_bins: float) -> float:
    """Mean cost of the optimal one-to-one matching of trials of ``a`` to trials of ``b`` of the same
    condition (``scipy.optimize.linear_sum_assignment``; min(n_a, n_b) pairs per condition); cost = mean
    squared difference of Gaussian-smoothed (``sigma_bins``) single trials, each neuron divided by its
    s.d. in ``b``.  NaN bins count as 0.  Trials of one distribution matched to another draw of it score
    what trial matching can reach; trials without spread (noise-free rates) can score below that, so a
    model's *samples* are what to read against it."""
    from scipy.ndimage import gaussian_filter1d
    from scipy.optimize import linear_sum_assignment
    sd = np.maximum(np.nanstd(np.asarray(b, np.float64), axis=(0, 1)), 1e-9)
    a, b = (gaussian_filter1d(np.nan_to_num(np.asarray(x, np.float64)) / sd, max(sigma_bins, 1e-9), axis=1,
                              mode="nearest") for x in (a, b))
    total, pairs = 0.0, 0
    for c in np.intersect1d(cond_a, cond_b):
        xa, xb = (x[k == c].reshape(int((k == c).sum()), -1) for x, k in ((a, cond_a), (b, cond_b)))
        cost = ((xa[:, None, :] - xb[None, :, :]) ** 2).mean(-1)
        i, j = linear_sum_assignment(cost)
        total, pairs = total + cost[i, j].sum(), pairs + len(i)
    return total / pairs if pairs else float("nan")


def _observed(rates, valid, trials) -> tuple[np.ndarray, np.ndarray]:
    """(valid bins (len(trials), T), recorded values of ``trials`` as float64 with NaN outside them)."""
    ok = np.asarray(valid)[trials] > 0
    return ok, np.where(ok[..., None], np.asarray(rates, np.float64)[trials], np.nan)


def observation_metrics(model, rates, valid, cond, val, bin_ms: float, sigma_bins: float,
                        observation: str = "none", sigma=None, sampled=None, train=None,
                        model_train=None) -> tuple[dict, dict]:
    """NLB metrics of noise-free model rates ``model`` (len(val), T, N) sp/s on the validation trials
    ``val`` of ``rates`` / ``valid`` / ``cond`` (all trials): per-neuron arrays and headline numbers.

    ``bits_per_spike`` (pooled and per neuron; only if the recorded values are non-negative counts; with
    ``train`` also of the smoothed pooled and per-condition PSTHs of the training trials, as references),
    ``psth_r2`` (PSTH from all trials of each condition, Gaussian ``sigma_bins``), and for a gaussian
    ``observation`` the mean Gaussian NLL per valid value of the model and of the per-neuron-mean null.
    With ``sampled`` (the model's observed values on ``val``) and ``train`` (trial indices): the
    :func:`trial_matching_cost` of the samples, of ``model`` and of the recorded training trials against
    the recorded validation trials (the last, with as many training trials per condition as validation
    trials, is the reference a faithful trial distribution reaches).  With ``train`` and ``model_train`` (the
    noise-free model rates on ``train``): ``bits_per_spike_calibrated`` and the per-neuron
    ``calibration_gain`` / ``calibration_offset_hz`` of :func:`poisson_calibration` on the training trials."""
    ok, y = _observed(rates, valid, val)
    model = np.asarray(model, np.float64)
    per, head = {}, {"observation": observation}
    n = to_counts(y, bin_ms)
    if np.nanmin(n) >= 0 and np.nansum(n) > 0 and np.nanmin(model[ok]) >= 0:
        lam = np.where(ok[..., None], to_counts(model, bin_ms), 0.0)
        per["bits_per_spike"] = bits_per_spike_per_neuron(lam, n)
        head["bits_per_spike"] = float(bits_per_spike(lam, n))
        if train is not None:  # model-free references: smoothed PSTHs of the training trials only
            w = np.zeros_like(np.asarray(valid, np.float64))
            w[train] = np.asarray(valid)[train]
            for k, cc in (("train_psth", np.zeros_like(cond)), ("train_condition_psth", cond)):
                ref = to_counts(condition_psth_per_trial(rates, w, cc, val, sigma_bins), bin_ms)
                head[f"bits_per_spike_{k}"] = float(bits_per_spike(np.where(ok[..., None], ref, 0.0), n))
        if train is not None and model_train is not None:
            n_train = to_counts(_observed(rates, valid, train)[1], bin_ms)
            gain, off = poisson_calibration(to_counts(model_train, bin_ms), n_train)
            lam_c = np.where(ok[..., None], calibrated(lam, gain, off), 0.0)
            per.update(calibration_gain=gain, calibration_offset_hz=off * 1000.0 / bin_ms,
                       bits_per_spike_calibrated=bits_per_spike_per_neuron(lam_c, n))
            head.update(bits_per_spike_calibrated=float(bits_per_spike(lam_c, n)),
                        calibration_gain_median=float(np.median(gain)))
    p = np.where(ok[..., None], condition_psth_per_trial(rates, valid, cond, val, sigma_bins), np.nan)
    per["psth_r2"] = psth_r2_per_neuron(p, np.where(ok[..., None], model, 0.0))
    head["psth_r2"] = float(per["psth_r2"].mean())
    if observation == "gaussian" and sigma is not None:
        k = max(int(np.isfinite(y).sum()), 1)
        head["gaussian_nll_model"] = gaussian_nll(model, y, sigma) / k
        head["gaussian_nll_null"] = gaussian_nll(null_counts(y), y, sigma) / k
    if sampled is not None and train is not None:  # as many training trials per condition as validation ones
        train = np.concatenate([train[cond[train] == c][:int((cond[val] == c).sum())] for c in np.unique(cond[val])])
        yt = _observed(rates, valid, train)[1]
        mask = lambda x: np.where(ok[..., None], x, np.nan)  # noqa: E731
        for k, x, cx in (("model", mask(sampled), cond[val]), ("model_rate", mask(model), cond[val]),
                         ("data", yt, cond[train])):
            head[f"trial_matching_{k}"] = trial_matching_cost(x, y, cx, cond[val], sigma_bins)
    return per, head


__all__ = ["OBSERVATIONS", "to_counts", "poisson_nll", "null_counts", "bits_per_spike", "bits_per_spike_per_neuron",
           "poisson_calibration", "calibrated",
           "gaussian_nll", "psth_r2", "psth_r2_per_neuron", "condition_psth_per_trial", "within_condition_sd",
           "sample_observations", "observation_metrics", "trial_matching_cost"]

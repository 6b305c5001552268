"""Peri-stimulus time histograms, PSTH similarity and the noise ceiling.

Input rates are a DataArray ``rate (trial, time, neuron)`` in sp/s (or a
Dataset holding one as var ``rate``); per-trial condition coordinates live on
``trial``.  The bin width comes from attr ``bin_ms`` / ``bin_size_ms`` or, if
absent, from the spacing of coord ``time`` (ms).
"""
from __future__ import annotations

import warnings

import numpy as np
import xarray as xr
from scipy.ndimage import gaussian_filter1d

__all__ = ["as_rate", "bin_width_ms", "smooth_time", "psth", "zscore_psth",
           "psth_correlation", "noise_ceiling", "noise_ceiling_ci", "pooled_psth_r"]


def as_rate(obj) -> xr.DataArray:
    """The ``rate`` DataArray of a Dataset (or the DataArray itself)."""
    if isinstance(obj, xr.Dataset):
        if "rate" not in obj:
            raise KeyError("dataset has no 'rate' variable (for spikes use "
                           "neurodsl.analysis.spikes.rates_from_events first)")
        return obj["rate"]
    if isinstance(obj, xr.DataArray):
        return obj
    raise TypeError(f"expected xarray Dataset/DataArray, got {type(obj).__name__}")


def bin_width_ms(da: xr.DataArray) -> float:
    """Bin width in ms: attr ``bin_ms`` or ``bin_size_ms``, else median spacing of ``time``."""
    for key in ("bin_ms", "bin_size_ms"):
        if key in da.attrs:
            return float(da.attrs[key])
    if "time" in da.coords and da.sizes["time"] > 1:
        return float(np.median(np.diff(np.asarray(da["time"].values, dtype=float))))
    raise ValueError("bin width unknown: set attr bin_ms or a regular 'time' coord")


def smooth_time(da: xr.DataArray, smooth_ms: float) -> xr.DataArray:
    """Gaussian smoothing along ``time``, standard deviation ``smooth_ms`` (ms).

    ``sigma = smooth_ms / bin_ms`` bins, edges ``mode="nearest"``.  NaNs are
    handled by normalised convolution (NaN samples get zero weight); points
    whose whole neighbourhood is NaN stay NaN.
    """
    sigma = float(smooth_ms) / bin_width_ms(da)
    axis = da.get_axis_num("time")
    x = np.asarray(da.values, dtype=np.float64)
    ok = np.isfinite(x)
    num = gaussian_filter1d(np.where(ok, x, 0.0), sigma, axis=axis, mode="nearest")
    den = gaussian_filter1d(ok.astype(np.float64), sigma, axis=axis, mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 1e-12, num / np.where(den > 1e-12, den, 1.0), np.nan)
    return da.copy(data=out).assign_attrs(smooth_ms=float(smooth_ms))


def _group_index(da: xr.DataArray, by: list[str]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Flat group id per trial and the sorted unique labels of each ``by`` coord."""
    uniques, inverses = [], []
    for name in by:
        if name not in da.coords or da[name].dims != ("trial",):
            raise KeyError(f"{name!r} is not a coordinate along 'trial'")
        u, inv = np.unique(np.asarray(da[name].values), return_inverse=True)
        uniques.append(u)
        inverses.append(inv.ravel())
    flat = np.ravel_multi_index(inverses, [len(u) for u in uniques]) if by else \
        np.zeros(da.sizes["trial"], dtype=np.int64)
    return flat, uniques


def _as_list(by) -> list[str]:
    return [] if by is None else [by] if isinstance(by, str) else list(by)


def psth(ds, by=None, smooth_ms: float | None = None) -> xr.DataArray:
    """Trial-averaged rate (sp/s), optionally per condition.

    ``by=None`` -> mean over ``trial``, dims ``(time, neuron)``.  ``by="coord"``
    or a list of trial coords -> one PSTH per combination of their values,
    dims ``(*by, time, neuron)`` (dense grid; combinations without trials are
    NaN), with coord ``n_trials`` on the condition dims.  NaN samples are
    ignored in the average.  ``smooth_ms``: optional Gaussian smoothing along
    time (std in ms, see :func:`smooth_time`).
    """
    rate = as_rate(ds)
    by = _as_list(by)
    rate = rate.transpose("trial", ...)
    flat, uniques = _group_index(rate, by)
    shape = [len(u) for u in uniques]
    n_groups = int(np.prod(shape)) if by else 1
    x = np.asarray(rate.values, dtype=np.float64).reshape(rate.sizes["trial"], -1)
    ok = np.isfinite(x)
    onehot = (flat[None, :] == np.arange(n_groups)[:, None]).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (onehot @ np.where(ok, x, 0.0)) / (onehot @ ok)
    rest = rate.dims[1:]
    data = mean.reshape(*shape, *[rate.sizes[d] for d in rest])
    coords = {k: v for k, v in rate.coords.items() if "trial" not in v.dims}
    coords.update({name: (name, u) for name, u in zip(by, uniques)})
    if by:
        coords["n_trials"] = (tuple(by), onehot.sum(1).reshape(shape).astype(np.int64))
    out = xr.DataArray(data, dims=(*by, *rest), coords=coords, name="psth",
                       attrs=dict(rate.attrs))
    if "bin_ms" not in out.attrs and "bin_size_ms" not in out.attrs and "time" in out.dims:
        out.attrs["bin_ms"] = bin_width_ms(rate)
    return smooth_time(out, smooth_ms) if smooth_ms else out


def zscore_psth(p: xr.DataArray, dim: str = "neuron") -> xr.DataArray:
    """Z-score each neuron over all its other dims (conditions x time).

    ``z = (x - mean) / std`` with mean/std (ddof=0) over every dim except
    ``dim`` (NaNs skipped).  Neurons with zero std become 0 (no modulation).
    Dimensionless (attr ``units="z"``).
    """
    other = [d for d in p.dims if d != dim]
    mu = p.mean(other, skipna=True)
    sd = p.std(other, skipna=True)
    z = ((p - mu) / sd.where(sd > 0)).where(sd > 0, 0.0).where(p.notnull())
    return z.transpose(*p.dims).rename("zscore").assign_attrs(units="z")


def _pearson(a: xr.DataArray, b: xr.DataArray, dims) -> xr.DataArray:
    """Pearson r along ``dims`` using samples finite in both; NaN if undefined."""
    ok = a.notnull() & b.notnull()
    a, b = a.where(ok), b.where(ok)
    da_, db_ = a - a.mean(dims), b - b.mean(dims)
    num = (da_ * db_).sum(dims)
    den = np.sqrt((da_ ** 2).sum(dims) * (db_ ** 2).sum(dims))
    return (num / den.where(den > 0)).clip(-1.0, 1.0)


def _pearson_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Column-wise Pearson r of (sample, neuron) arrays over samples finite in both."""
    ok = np.isfinite(a) & np.isfinite(b)
    n = ok.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        a0 = np.where(ok, a - np.where(ok, a, 0).sum(0) / n, 0.0)
        b0 = np.where(ok, b - np.where(ok, b, 0).sum(0) / n, 0.0)
        den = np.sqrt((a0 ** 2).sum(0) * (b0 ** 2).sum(0))
        return np.where(den > 0, (a0 * b0).sum(0) / np.where(den > 0, den, 1.0), np.nan)


def _align(model: xr.DataArray, target: xr.DataArray, dim: str):
    """Align by label on every dim except ``dim`` (positional); sizes must match."""
    if set(model.dims) != set(target.dims):
        raise ValueError(f"dims differ: model {model.dims} vs target {target.dims}")
    strip = lambda x: x.drop_vars([c for c in x.coords if dim in x[c].dims])  # noqa: E731
    m, t = xr.align(strip(model), strip(target), join="inner")
    for d in m.dims:
        if m.sizes[d] != model.sizes[d] or m.sizes[d] != target.sizes[d]:
            raise ValueError(f"model and target do not match along {d!r}: "
                             f"{model.sizes[d]} vs {target.sizes[d]} (aligned {m.sizes[d]})")
    return m.transpose(*t.dims), t


def psth_correlation(model, target, dim: str = "time") -> xr.Dataset:
    """Per-neuron Pearson r between model and target PSTHs.

    Both are PSTHs with dims ``(*conditions, time, neuron)`` aligned by label
    (``time`` positionally).  Returns a Dataset (dim ``neuron``):

    * ``r``: conditions concatenated along ``time`` (all condition x time
      samples pooled), so it scores both temporal and condition tuning;
    * ``r_pooled``: r of the condition-averaged PSTHs along ``time``;
    * ``r_by_condition`` (*conditions, neuron): r along ``time`` per condition.

    Without condition dims all three coincide (only ``r`` is returned).
    """
    m, t = _align(as_rate(model), as_rate(target), dim)
    conds = [d for d in t.dims if d not in (dim, "neuron")]
    neuron_coords = {k: v for k, v in t.coords.items() if v.dims == ("neuron",)}
    out = {"r": _pearson(m, t, [*conds, dim])}
    if conds:
        out["r_pooled"] = _pearson(m.mean(conds), t.mean(conds), [dim])
        out["r_by_condition"] = _pearson(m, t, [dim])
    ds = xr.Dataset({k: v.drop_vars([c for c in v.coords if c not in v.dims], errors="ignore")
                     for k, v in out.items()})
    return ds.assign_coords(neuron_coords).assign_attrs(units="1", dim=dim)


def _split_half_r(x: np.ndarray, groups: list[np.ndarray], n_splits: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Mean over random splits of per-neuron r(PSTH of half A, PSTH of half B).

    ``x`` is (trial, time, neuron); halves are drawn within each group (of
    ``h_g = n_g // 2`` trials each; one trial is left out when n_g is odd) and
    the group PSTHs are concatenated along time before correlating.
    """
    rs = []
    for _ in range(n_splits):
        a_parts, b_parts = [], []
        for g in groups:
            perm = rng.permutation(g)
            h = len(g) // 2
            a_parts.append(np.nanmean(x[perm[:h]], axis=0))
            b_parts.append(np.nanmean(x[perm[h:2 * h]], axis=0))
        rs.append(_pearson_np(np.concatenate(a_parts), np.concatenate(b_parts)))
    return np.nanmean(np.stack(rs), axis=0) if rs else np.nan


def _groups_of(da: xr.DataArray, by: list[str]) -> list[np.ndarray]:
    flat, _ = _group_index(da, by)
    return [np.flatnonzero(flat == g) for g in np.unique(flat)]


def _harmonic(sizes) -> float:
    sizes = np.asarray(sizes, dtype=float)
    return float(len(sizes) / np.sum(1.0 / sizes))


def _reliability(r_half: np.ndarray, m: float, k: float) -> np.ndarray:
    """Spearman-Brown: reliability of a k-trial PSTH from r between m-trial PSTHs."""
    r = np.clip(np.asarray(r_half, dtype=np.float64), 0.0, 1.0)  # NaN stays NaN
    return k * r / (k * r + m * (1.0 - r))


def noise_ceiling(rate_train, rate_val, n_splits: int = 100, seed: int = 0,
                  by=None) -> xr.Dataset:
    """Noise ceiling: the r a perfect model (the true mean) reaches against the val PSTH.

    Model: trial ``x_k(t) = mu(t) + e_k(t)``, noise of per-trial variance
    ``N`` (time-averaged), signal variance ``S = var_t mu``.  A PSTH of ``k``
    trials has reliability ``rel(k) = S / (S + N/k)`` (the squared correlation
    of the PSTH with ``mu``), so ``r(mu, PSTH_val) ~= sqrt(rel(n_val))``.

    Estimator (per neuron):

    1. ``r_half``: mean over ``n_splits`` random splits (seeded) of the Pearson
       r between the PSTHs of two disjoint halves of the *training* trials,
       ``m = n_train // 2`` trials each (drawn within each condition of ``by``;
       condition PSTHs concatenated along time).  ``E[r_half] ~= rel(m)``.
    2. Spearman-Brown prophecy to ``k`` trials:
       ``rel(k) = k r / (k r + m (1 - r))``; for ``k = 2m`` this is the classic
       ``r_full = 2 r / (1 + r)`` (``reliability_train``).
    3. ``reliability_val = rel(n_val)``: the validation PSTH's reliability,
       extrapolated with the training noise-to-signal ratio (assumes train and
       val trials share the noise level, which the far more numerous training
       trials estimate better than the few validation trials).
    4. ``ceiling = sqrt(reliability_val)``.

    The ceiling is on the scale of :func:`psth_correlation`'s ``r`` (with
    ``by``: conditions concatenated along time); a model's normalised score is
    ``r / ceiling``.  ``r_half <= 0`` gives reliability and ceiling 0.  With unequal trial counts
    per condition, ``m`` and ``n_val`` are harmonic means over conditions.
    Diagnostic ``reliability_val_direct``: the same split-half estimate made on
    the validation trials alone (noisy; much lower values than
    ``reliability_val`` flag a noisier validation set).
    """
    tr = as_rate(rate_train).transpose("trial", "time", "neuron")
    va = as_rate(rate_val).transpose("trial", "time", "neuron")
    by = _as_list(by)
    rng = np.random.default_rng(seed)
    g_tr, g_va = _groups_of(tr, by), _groups_of(va, by)
    if min(len(g) for g in g_tr) < 2:
        raise ValueError("need >= 2 training trials per condition for split halves")
    x_tr = np.asarray(tr.values, dtype=np.float64)
    r_half = _split_half_r(x_tr, g_tr, n_splits, rng)
    m = _harmonic([len(g) // 2 for g in g_tr])
    n_tr, n_va = _harmonic([len(g) for g in g_tr]), _harmonic([len(g) for g in g_va])
    rel_val = _reliability(r_half, m, n_va)
    if min(len(g) for g in g_va) >= 2:
        x_va = np.asarray(va.values, dtype=np.float64)
        r_half_val = _split_half_r(x_va, g_va, n_splits, rng)
        direct = _reliability(r_half_val, _harmonic([len(g) // 2 for g in g_va]), n_va)
    else:
        direct = np.full(x_tr.shape[-1], np.nan)
    coords = {k: v for k, v in tr.coords.items() if v.dims == ("neuron",)}
    return xr.Dataset(
        {"ceiling": ("neuron", np.sqrt(rel_val)),
         "reliability_val": ("neuron", rel_val),
         "reliability_train": ("neuron", _reliability(r_half, m, n_tr)),
         "r_half": ("neuron", r_half),
         "reliability_val_direct": ("neuron", direct)},
        coords=coords,
        attrs={"n_splits": int(n_splits), "seed": int(seed), "half_trials": m,
               "n_train_trials": n_tr, "n_val_trials": n_va, "units": "1"})


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`_pearson_np` for a stack: (rep, sample, neuron) -> (rep, neuron)."""
    return _pearson_np(np.moveaxis(a, 1, 0), np.moveaxis(b, 1, 0))


def _boot_half_psths(x: np.ndarray, groups: list[np.ndarray], w: list[np.ndarray], n_splits: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Half-A / half-B PSTHs (rep * split, sum_g T, N) of bootstrap multiplicities ``w[g]`` (rep, n_g)
    and each split's effective trials per half (harmonic over conditions and halves).

    Halves split the *original* trials of a condition, so the copies of a resampled trial
    always fall in the same half (duplicates across halves would inflate r_half); a half
    weighted by multiplicities ``w`` averages ``(sum w)^2 / sum w^2`` trials' worth of noise."""
    reps = w[0].shape[0]
    halves, inv_m = ([], []), np.zeros(reps * n_splits)
    for g, wg in zip(groups, w):
        xs = x[g].reshape(len(g), -1)
        ok = np.isfinite(xs)
        xs = np.where(ok, xs, 0.0)
        h = len(g) // 2
        masks = np.zeros((2, n_splits, len(g)))
        for s in range(n_splits):
            perm = rng.permutation(len(g))
            masks[0, s, perm[:h]], masks[1, s, perm[h:2 * h]] = 1.0, 1.0
        for side in (0, 1):
            ws = (wg[:, None, :] * masks[side][None]).reshape(reps * n_splits, len(g))
            with np.errstate(invalid="ignore", divide="ignore"):  # 1 / effective trials of the half
                inv_m += (ws ** 2).sum(1) / ws.sum(1) ** 2 / (2 * len(groups))
            with np.errstate(invalid="ignore", divide="ignore"):
                p = (ws @ xs) / (ws @ ok)
            halves[side].append(p.reshape(reps * n_splits, x.shape[1], x.shape[2]))
    return np.concatenate(halves[0], 1), np.concatenate(halves[1], 1), 1.0 / inv_m


def noise_ceiling_ci(rate_train, rate_val, n_boot: int = 100, n_splits: int = 10, seed: int = 0,
                     by=None, level: float = 0.95, chunk: int = 10) -> xr.Dataset:
    """Bootstrap confidence interval of :func:`noise_ceiling` (per neuron and for the neuron mean).

    Each of ``n_boot`` replicates resamples the training trials with replacement within each
    condition of ``by`` (seeded) and re-runs the split-half estimate (``n_splits`` splits,
    halves drawn among the original trials, a trial weighted by its multiplicity) and the
    Spearman-Brown step to ``n_val``; the interval is the replicates' central ``level``
    percentile range.  It covers the estimate's sampling error from the *training* trials; a
    model's r on the validation trials has its own sampling error on top.  Returns
    ``ceiling`` (the point estimate, :func:`noise_ceiling` with this ``seed``), ``ceiling_lo``,
    ``ceiling_hi`` (neuron), and ``ceiling_mean`` / ``_lo`` / ``_hi`` (0-d: mean over neurons).
    """
    point = noise_ceiling(rate_train, rate_val, seed=seed, by=by)
    tr = as_rate(rate_train).transpose("trial", "time", "neuron")
    va = as_rate(rate_val).transpose("trial", "time", "neuron")
    by = _as_list(by)
    g_tr, g_va = _groups_of(tr, by), _groups_of(va, by)
    x = np.asarray(tr.values, dtype=np.float64)
    rng = np.random.default_rng([seed, 1])
    n_va = _harmonic([len(g) for g in g_va])
    ceil = []
    for start in range(0, n_boot, chunk):
        reps = min(chunk, n_boot - start)
        w = [rng.multinomial(len(g), np.full(len(g), 1.0 / len(g)), size=reps).astype(float) for g in g_tr]
        a, b, m_eff = _boot_half_psths(x, g_tr, w, n_splits, rng)
        r = _pearson_rows(a, b).reshape(reps, n_splits, -1)
        m_eff = 1.0 / np.mean(1.0 / m_eff.reshape(reps, n_splits), 1)
        with warnings.catch_warnings():  # all-NaN neurons (silent) stay NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            ceil.append(np.sqrt(_reliability(np.nanmean(r, 1), m_eff[:, None], n_va)))
    c = np.concatenate(ceil, 0)                                   # (n_boot, neuron)
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    lo, hi = np.nanpercentile(c, q, axis=0)
    mean_lo, mean_hi = np.nanpercentile(np.nanmean(c, 1), q)
    out = point[["ceiling"]].assign(ceiling_lo=("neuron", lo), ceiling_hi=("neuron", hi))
    out["ceiling_mean"] = float(np.nanmean(point["ceiling"].values))
    out["ceiling_mean_lo"], out["ceiling_mean_hi"] = float(mean_lo), float(mean_hi)
    return out.assign_attrs(n_boot=int(n_boot), n_splits=int(n_splits), seed=int(seed), level=float(level),
                            units="1")


# ------------------------------------------- PSTH baselines (see analysis.baselines)

def pooled_psth_r(pred, target, valid) -> np.ndarray:
    """Per-neuron Pearson r over time of the valid-bin trial averages of ``pred`` and ``target``
    (trial, time, neuron): the rate-RNN fit's validation correlation (``rnn_losses.pooled_correlation``)."""
    w = np.asarray(valid, np.float64)[..., None]
    den = np.maximum(w.sum(0), 1e-6)
    pm = (np.nan_to_num(np.asarray(pred, np.float64)) * w).sum(0) / den
    pt = (np.nan_to_num(np.asarray(target, np.float64)) * w).sum(0) / den
    ok = w.sum(0)[:, 0] > 0
    am, at = pm[ok] - pm[ok].mean(0), pt[ok] - pt[ok].mean(0)
    d = np.sqrt((am ** 2).sum(0) * (at ** 2).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(d > 0, (am * at).sum(0) / np.where(d > 0, d, 1.0), np.nan)


def _smoothed_psth(rate, valid, sigma: float) -> np.ndarray:
    """Valid-weighted trial average (time, neuron), Gaussian-smoothed by normalised convolution."""
    w = np.asarray(valid, np.float64)
    num, den = (np.nan_to_num(rate) * w[..., None]).sum(0), w.sum(0)[:, None]
    if sigma > 0:
        num = gaussian_filter1d(num, sigma, axis=0, mode="nearest")
        den = gaussian_filter1d(den, sigma, axis=0, mode="nearest")
    p = num / np.where(den > 1e-9, den, np.nan)
    return np.where(np.isfinite(p), p, np.nanmean(p, 0) if np.isfinite(p).any() else 0.0)


def _psth_predict(rate, valid, cond, fit_idx, pred_idx, sigma: float, by_condition: bool) -> np.ndarray:
    """Prediction (len(pred_idx), T, N): the (condition's) smoothed PSTH of the ``fit_idx`` trials."""
    pooled = _smoothed_psth(rate[fit_idx], valid[fit_idx], sigma)
    out = np.broadcast_to(pooled, (len(pred_idx),) + pooled.shape).copy()
    if by_condition:
        for c in np.unique(cond[pred_idx]):
            f = fit_idx[cond[fit_idx] == c]
            if len(f):
                out[cond[pred_idx] == c] = _smoothed_psth(rate[f], valid[f], sigma)
    return out

"""Single-neuron and population spike statistics.

Definitions (these are the contract the Brian2 reference tests check):

* **Mean rate** of neuron ``j`` in trial ``i``: ``n_spikes[i, j] / T`` in Hz,
  ``T = n_steps * dt_ms / 1000`` s.  Group means average over *all* neurons of
  the group, silent ones included.  For rate datasets (no spike events) the
  per-neuron rate is the time-average of var ``rate`` (sp/s).
* **CV of ISIs**: ``std(ISI) / mean(ISI)`` with the population std (ddof=0),
  ISIs taken within trials (never across a trial boundary) and pooled over
  trials; NaN when a neuron has fewer than 2 ISIs (one trial: < 3 spikes).
  Poisson process -> 1, perfectly regular train -> 0.
* **Fano factor** of spike *counts*: ``var(counts) / mean(counts)`` along the
  given axis (ddof=0 by default), NaN where the mean is 0.  Poisson -> 1.  It
  is *not* scale-free: rates in sp/s must first be converted to counts per
  bin, ``count = rate * bin_ms / 1000`` (see :func:`fano_from_rates`);
  computing it on rates in sp/s scales it by ``1000 / bin_ms``.
* **van Rossum distance** (van Rossum 2001): each train is filtered with a
  causal kernel ``K`` (``f(t) = sum_i K(t - t_i)``) and
  ``D^2 = int_0^inf (f_a - f_b)^2 dt / (2 int_0^inf K^2 dt)``.  For the
  exponential kernel ``K(t) = exp(-t/tau)`` this is the original
  ``D^2 = (1/tau) int (f_a - f_b)^2 dt``: one unmatched spike gives
  ``D = 1/sqrt(2)``; two single spikes ``delta`` ms apart give
  ``D^2 = 1 - exp(-delta/tau)``.  (Implementations normalising by ``2/tau``
  return ``sqrt(2)`` times this value.)
"""
from __future__ import annotations

import warnings

import numpy as np
import xarray as xr

from .spikes import (_coords, bin_spikes, duration_ms, n_neurons,
                     spike_counts, spike_events)

__all__ = ["per_neuron_rates", "mean_rates", "cv_isi", "fano_factor",
           "fano_from_rates", "per_neuron_fano", "van_rossum_distance", "van_rossum_norm", "population_summary", "threshold_ratio"]


def _has_events(ds: xr.Dataset) -> bool:
    return "spike_step" in ds and "dt_ms" in ds.attrs


def per_neuron_rates(ds: xr.Dataset) -> xr.DataArray:
    """Mean firing rate (Hz) of each neuron in each trial, dims ``(trial, neuron)``.

    Spiking datasets: ``count / duration``.  Rate datasets: time-mean of ``rate``
    (NaNs skipped).
    """
    if _has_events(ds):
        r = spike_counts(ds) / (duration_ms(ds) / 1000.0)
    elif "rate" in ds:
        r = ds["rate"].mean("time", skipna=True)
    else:
        raise ValueError("dataset has neither spike events nor a 'rate' variable")
    return r.rename("rate").assign_attrs(units="Hz")


def _groups(ds: xr.Dataset | xr.DataArray, by: str | None) -> list[tuple[str, np.ndarray]]:
    """(label, boolean neuron mask) per group of neuron coord ``by`` (None -> 'all')."""
    nn = ds.sizes["neuron"] if "neuron" in ds.sizes else n_neurons(ds)
    if by is None:
        return [("all", np.ones(nn, dtype=bool))]
    if by not in ds.coords:
        raise KeyError(f"no neuron coordinate {by!r} to group by")
    labels = np.asarray(ds[by].values).astype(str)
    return [(lab, labels == lab) for lab in np.unique(labels)]


def mean_rates(ds: xr.Dataset, by: str | None = "ei") -> xr.Dataset:
    """Group-mean firing rates (Hz) over all neurons, silent ones included.

    Returns a Dataset with dim ``by`` (or ``group`` = ['all'] if ``by=None``):

    * ``mean_rate_trial`` (trial, group): mean over the group's neurons of the
      per-trial rate, Hz.
    * ``mean_rate`` (group): pooled over trials (mean of the above; equals
      total spikes / (n_neurons * n_trials * T) for equal trial durations).
    * ``std_rate`` (group): std (ddof=0) across neurons of the trial-averaged
      per-neuron rate, Hz.
    * ``n_neurons`` (group).
    """
    r = per_neuron_rates(ds)
    groups = _groups(ds, by)
    dim = by or "group"
    labels = [g for g, _ in groups]
    per_trial = np.stack([r.values[:, m].mean(axis=1) if m.any()
                          else np.full(r.sizes["trial"], np.nan) for _, m in groups], axis=1)
    r_neuron = r.values.mean(axis=0)
    std = np.array([r_neuron[m].std() if m.any() else np.nan for _, m in groups])
    trial_coords = {k: v for k, v in r.coords.items() if v.dims == ("trial",)}
    return xr.Dataset(
        {"mean_rate_trial": (("trial", dim), per_trial, {"units": "Hz"}),
         "mean_rate": (dim, per_trial.mean(axis=0), {"units": "Hz"}),
         "std_rate": (dim, std, {"units": "Hz"}),
         "n_neurons": (dim, np.array([m.sum() for _, m in groups]))},
        coords={dim: labels, **trial_coords})


def cv_isi(ds: xr.Dataset, min_isi: int = 2) -> xr.DataArray:
    """Coefficient of variation of inter-spike intervals per neuron (dim ``neuron``).

    ``CV = std(ISI) / mean(ISI)`` (ddof=0).  ISIs are differences of
    consecutive spike times of a neuron *within* a trial, pooled over trials.
    NaN for neurons with fewer than ``min_isi`` (=2) ISIs, i.e. fewer than 3
    spikes when there is one trial.  Dimensionless.
    """
    tr, st, ne = spike_events(ds)
    nn = n_neurons(ds)
    order = np.lexsort((st, ne, tr))
    tr, st, ne = tr[order], st[order], ne[order]
    same = (tr[1:] == tr[:-1]) & (ne[1:] == ne[:-1])
    isi = (np.diff(st)[same]).astype(np.float64) * float(ds.attrs["dt_ms"])
    owner = ne[1:][same]
    n = np.bincount(owner, minlength=nn)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(owner, weights=isi, minlength=nn) / n
        var = np.bincount(owner, weights=(isi - mean[owner]) ** 2, minlength=nn) / n
        cv = np.sqrt(var) / mean
    cv[n < max(int(min_isi), 1)] = np.nan
    return xr.DataArray(cv, dims=("neuron",), coords=_coords(ds, ("neuron",)),
                        name="cv_isi", attrs={"units": "1"})


def fano_factor(counts, axis=-1, ddof: int = 0):
    """Fano factor of spike counts: ``var(counts, ddof) / mean(counts)`` along ``axis``.

    ``counts`` are spike counts per bin (not rates).  ``axis`` is an int/tuple
    for arrays or a dim name/list of names for DataArrays (NaNs skipped).
    NaN where the mean count is 0.  Poisson counts -> 1 (ddof=1 is unbiased
    for the variance; ddof=0 matches ``np.var``).
    """
    if isinstance(counts, xr.DataArray):
        if isinstance(axis, (int, np.integer)):
            dims = [counts.dims[axis]]
        else:
            dims = [axis] if isinstance(axis, str) else list(axis)
        m = counts.mean(dims, skipna=True)
        v = counts.var(dims, ddof=ddof, skipna=True)
        return (v / m.where(m != 0)).rename("fano").assign_attrs(units="1")
    c = np.asarray(counts, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # all-NaN slices
        m = np.nanmean(c, axis=axis)
        v = np.nanvar(c, axis=axis, ddof=ddof)
        return np.where(m != 0, v / np.where(m != 0, m, 1.0), np.nan)


def per_neuron_fano(ds: xr.Dataset, bin_ms: float = 100.0) -> xr.DataArray:
    """Fano factor of each neuron's spike counts in ``bin_ms`` bins, dim ``neuron``.

    Counts from :func:`~neurodsl.analysis.spikes.bin_spikes`; all *full* bins
    of all trials are pooled (a partial last bin is dropped), ddof=0; NaN for
    neurons with zero mean count.  Rate datasets (no events): the ``rate``
    var's own bins via :func:`fano_from_rates` (``bin_ms`` is then ignored).
    """
    if not _has_events(ds):
        rate = ds["rate"]
        f = fano_from_rates(rate, None, axis=[d for d in rate.dims if d != "neuron"])
        return f.assign_attrs(units="1", bin_ms=_bin_ms_of(rate, None))
    counts = bin_spikes(ds, bin_ms)
    full = np.isclose(counts["bin_width_ms"].values, bin_ms)
    f = fano_factor(counts.isel(time=full), axis=("trial", "time"))
    return f.drop_vars([c for c in f.coords if "neuron" not in f[c].dims]).assign_attrs(
        units="1", bin_ms=float(bin_ms))


def _bin_ms_of(rate, bin_ms: float | None) -> float:
    if bin_ms is not None:
        return float(bin_ms)
    attrs = getattr(rate, "attrs", {})
    for key in ("bin_ms", "bin_size_ms"):
        if key in attrs:
            return float(attrs[key])
    raise ValueError("bin width unknown: pass bin_ms or set attr bin_ms/bin_size_ms")


def fano_from_rates(rate, bin_ms: float | None = None, axis="time", ddof: int = 0):
    """Fano factor of binned *rates* in sp/s, after converting them to counts.

    ``counts = rate * bin_ms / 1000`` (``bin_ms`` from attrs ``bin_ms`` or
    ``bin_size_ms`` if not given), then :func:`fano_factor` along ``axis``.
    Valid when the rates are plain spike counts / bin width (unsmoothed).
    """
    b = _bin_ms_of(rate, bin_ms)
    return fano_factor(rate * (b / 1000.0), axis=axis, ddof=ddof)


def _kernel(kernel: str, tau_ms: float, tau_rise_ms: float, tau_decay_ms: float):
    """Kernel as a sum of exponentials: amplitudes and time constants (ms)."""
    if kernel == "exp":
        return np.array([1.0]), np.array([float(tau_ms)])
    if kernel in ("double_exp", "biexp"):
        if not 0 < tau_rise_ms < tau_decay_ms:
            raise ValueError("need 0 < tau_rise_ms < tau_decay_ms")
        return np.array([1.0, -1.0]), np.array([float(tau_decay_ms), float(tau_rise_ms)])
    raise ValueError(f"unknown kernel {kernel!r} (expected 'exp' or 'double_exp')")


def van_rossum_norm(kernel: str = "exp", tau_ms: float = 10.0, tau_rise_ms: float = 10.0,
                    tau_decay_ms: float = 100.0) -> float:
    """``2 int_0^inf K(t)^2 dt`` (ms) of the unit-amplitude kernel of :func:`van_rossum_distance`.

    The denominator of ``D^2``; differentiable counterparts (the spiking training loss)
    divide by this same number, so the two agree on the same spikes."""
    amp, tau = _kernel(kernel, tau_ms, tau_rise_ms, tau_decay_ms)
    tau_pair = 1.0 / (1.0 / tau[:, None] + 1.0 / tau[None, :])
    return float(2.0 * np.sum(np.outer(amp, amp) * tau_pair))


def van_rossum_distance(train_a, train_b, tau_ms: float = 10.0, dt_ms: float | None = 0.1,
                        t_max: float | None = None, kernel: str = "exp",
                        tau_rise_ms: float = 10.0, tau_decay_ms: float = 100.0,
                        include_tail: bool = True) -> float:
    """van Rossum distance between two spike trains (times in ms), dimensionless.

    ``D^2 = int_0^inf (f_a - f_b)^2 dt / (2 int_0^inf K^2 dt)`` with
    ``f = sum_i K(t - t_i)`` and the causal kernel

    * ``kernel="exp"``: ``K(t) = exp(-t / tau_ms)``, i.e. the original
      ``D^2 = (1/tau) int (f_a - f_b)^2 dt``;
    * ``kernel="double_exp"``: ``K(t) = exp(-t/tau_decay_ms) - exp(-t/tau_rise_ms)``
      (defaults rise 10 ms / decay 100 ms; the kernel's scale cancels).

    Spike times are rounded to the simulation grid ``dt_ms`` (``None``: used
    as given); spikes after ``t_max`` (ms) are ignored.  Between consecutive
    spikes ``f_a - f_b`` is a sum of decaying exponentials, so the integral is
    evaluated in closed form interval by interval -- no discretisation error.
    ``include_tail=True`` integrates the kernel tails to infinity (the
    definition above); ``False`` stops at ``t_max``.  Analytic values: one
    unmatched spike -> ``1/sqrt(2)``; single spikes ``delta`` ms apart ->
    ``sqrt(1 - C(delta)/C(0))``, ``C(d) = int K(t) K(t+d) dt``, which for the
    exp kernel is ``sqrt(1 - exp(-delta/tau))``.
    """
    amp, tau = _kernel(kernel, tau_ms, tau_rise_ms, tau_decay_ms)
    t = np.concatenate([np.asarray(train_a, float).ravel(), np.asarray(train_b, float).ravel()])
    sign = np.concatenate([np.ones(np.size(train_a)), -np.ones(np.size(train_b))])
    if (t < 0).any():
        raise ValueError("spike times must be >= 0 ms")
    if dt_ms:
        t = np.rint(t / dt_ms) * dt_ms
    if t_max is not None:
        t, sign = t[t <= t_max], sign[t <= t_max]
    ev_t, inv = np.unique(t, return_inverse=True)
    ev_x = np.bincount(inv.ravel(), weights=sign, minlength=ev_t.size)
    if not np.any(ev_x):
        return 0.0
    end = np.inf if include_tail or t_max is None else float(t_max)
    length = np.diff(np.append(ev_t, end))  # ms from each event to the next (or end)
    states = np.empty((ev_t.size, amp.size))  # f_a - f_b components just after each event
    s = np.zeros(amp.size)
    for i in range(ev_t.size):
        s = s * (np.exp(-length[i - 1] / tau) if i else 1.0) + amp * ev_x[i]
        states[i] = s
    tau_pair = 1.0 / (1.0 / tau[:, None] + 1.0 / tau[None, :])  # tau_cc' (ms)
    weight = tau_pair * -np.expm1(-length[:, None, None] / tau_pair)  # int_0^L e^{-u/tau_cc'}
    integral = np.einsum("ic,id,icd->", states, states, weight)
    norm = van_rossum_norm(kernel, tau_ms, tau_rise_ms, tau_decay_ms)  # 2 int K^2 dt
    return float(np.sqrt(max(integral / norm, 0.0)))


def population_summary(ds: xr.Dataset, by: str | None = "ei",
                       fano_bin_ms: float = 100.0) -> xr.Dataset:
    """Per-group (E/I) summary table, dim ``by``.

    * ``mean_rate`` / ``std_rate`` (Hz): mean / std (ddof=0) across the group's
      neurons (silent included) of the trial-averaged per-neuron rate.
    * ``mean_cv``: mean CV of ISIs over neurons with a defined CV (NaN for
      rate datasets).
    * ``fano``: mean over neurons of the per-neuron Fano factor of spike counts
      in ``fano_bin_ms`` bins pooled over all full bins of all trials (rate
      datasets: their own bins, via :func:`fano_from_rates`); neurons with
      zero mean count are excluded.
    * ``fraction_silent``: fraction of neurons with no spike (zero rate) in
      any trial.  ``n_neurons``: group size.
    """
    r = per_neuron_rates(ds).values.mean(axis=0)
    cv = cv_isi(ds).values if _has_events(ds) else np.full(r.shape, np.nan)
    fano_da = per_neuron_fano(ds, fano_bin_ms)
    fano, fano_bin_ms = fano_da.values, fano_da.attrs["bin_ms"]
    groups = _groups(ds, by)
    dim = by or "group"

    def agg(values, fn):
        with warnings.catch_warnings():  # nanmean of an all-NaN group -> NaN, quietly
            warnings.simplefilter("ignore", category=RuntimeWarning)
            return np.array([fn(values[m]) if m.any() else np.nan for _, m in groups])

    return xr.Dataset(
        {"mean_rate": (dim, agg(r, np.mean), {"units": "Hz"}),
         "std_rate": (dim, agg(r, np.std), {"units": "Hz"}),
         "mean_cv": (dim, agg(cv, np.nanmean), {"units": "1"}),
         "fano": (dim, agg(fano, np.nanmean), {"units": "1", "bin_ms": float(fano_bin_ms)}),
         "fraction_silent": (dim, agg(r == 0, np.mean), {"units": "1"}),
         "n_neurons": (dim, np.array([m.sum() for _, m in groups]))},
        coords={dim: [g for g, _ in groups]})




def threshold_ratio(V, V_th, axis_time: int = 0, axis_trial: int = 1) -> np.ndarray:
    """Membrane fluctuation relative to the distance to threshold, per neuron (dimensionless):
    ``std_t(V) / max(V_th - mean_t(V), 1 mV)`` within each trial (ddof 0), averaged over trials.
    ``V`` in mV with time and trial axes (default (time, trial, neuron)); ``V_th`` in mV (scalar or
    per neuron).  The ``membrane`` objective of ``kind: fit`` is this quantity over each chunk."""
    V = np.asarray(V, np.float64)
    mean, std = V.mean(axis_time), V.std(axis_time)
    trial = axis_trial - (axis_trial > axis_time)
    return (std / np.maximum(np.asarray(V_th, np.float64) - mean, 1.0)).mean(trial)

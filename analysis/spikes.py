"""Spike-event utilities: event list -> spike trains, binned counts and rates.

Spiking datasets (``simulation.nc``, ``teacher.nc``) store spikes as a compact
event list along dim ``spike``:

* ``spike_trial``  (int32) -- positional trial index, ``0 <= i < n_trial``
* ``spike_step``   (int32) -- integration step, ``0 <= k < n_steps``
* ``spike_neuron`` (int32) -- positional neuron index, ``0 <= j < n_neuron``

with attrs ``dt_ms`` (integration step, ms) and ``n_steps``.  **Spike time
convention:** an event at step ``k`` happened at ``t = k * dt_ms`` (ms, from
trial onset).  The recorded window is ``[0, n_steps * dt_ms)``.

All functions are pure: they return new objects and never modify ``ds``.
"""
from __future__ import annotations

import numpy as np
import xarray as xr
from scipy.ndimage import gaussian_filter1d

__all__ = [
    "duration_ms",
    "n_trials",
    "n_neurons",
    "spike_events",
    "spike_trains",
    "spike_counts",
    "bin_spikes",
    "rates_from_events",
]

_EVENT_VARS = ("spike_trial", "spike_step", "spike_neuron")


def _require_events(ds: xr.Dataset) -> None:
    missing = [v for v in _EVENT_VARS if v not in ds]
    if missing or "dt_ms" not in ds.attrs:
        raise ValueError(
            "not a spiking dataset: need vars spike_trial/spike_step/spike_neuron "
            f"and attr dt_ms (missing: {missing + ([] if 'dt_ms' in ds.attrs else ['dt_ms'])})"
        )


def n_trials(ds: xr.Dataset) -> int:
    """Number of trials: size of dim ``trial``, else 1 + max(spike_trial), else 1."""
    if "trial" in ds.sizes:
        return int(ds.sizes["trial"])
    if "spike_trial" in ds and ds["spike_trial"].size:
        return int(ds["spike_trial"].max()) + 1
    return 1


def n_neurons(ds: xr.Dataset) -> int:
    """Number of neurons: size of dim ``neuron``, else 1 + max(spike_neuron)."""
    if "neuron" in ds.sizes:
        return int(ds.sizes["neuron"])
    if "spike_neuron" in ds and ds["spike_neuron"].size:
        return int(ds["spike_neuron"].max()) + 1
    return 0


def _n_steps(ds: xr.Dataset) -> int:
    if "n_steps" in ds.attrs:
        return int(ds.attrs["n_steps"])
    if "duration_ms" in ds.attrs:
        return int(round(float(ds.attrs["duration_ms"]) / float(ds.attrs["dt_ms"])))
    raise ValueError("spiking dataset has neither attr n_steps nor duration_ms")


def duration_ms(ds: xr.Dataset) -> float:
    """Recorded duration of one trial in ms: ``n_steps * dt_ms`` (else attr ``duration_ms``)."""
    if "n_steps" in ds.attrs and "dt_ms" in ds.attrs:
        return float(ds.attrs["n_steps"]) * float(ds.attrs["dt_ms"])
    if "duration_ms" in ds.attrs:
        return float(ds.attrs["duration_ms"])
    raise ValueError("cannot determine duration: need attrs n_steps+dt_ms or duration_ms")


def spike_events(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(trial, step, neuron)`` int64 arrays of the valid events.

    Events outside ``0 <= step < n_steps``, ``0 <= trial < n_trial`` or
    ``0 <= neuron < n_neuron`` (padding, if any) are dropped.
    """
    _require_events(ds)
    tr = np.asarray(ds["spike_trial"].values, dtype=np.int64).ravel()
    st = np.asarray(ds["spike_step"].values, dtype=np.int64).ravel()
    ne = np.asarray(ds["spike_neuron"].values, dtype=np.int64).ravel()
    ok = ((st >= 0) & (st < _n_steps(ds)) & (tr >= 0) & (tr < n_trials(ds))
          & (ne >= 0) & (ne < n_neurons(ds)))
    return tr[ok], st[ok], ne[ok]


def spike_trains(ds: xr.Dataset, trial: int | None = None) -> list[np.ndarray]:
    """Per-neuron sorted spike times (ms, ``t = step * dt_ms``) for one trial.

    Parameters
    ----------
    ds : spiking dataset (event list, see module docstring).
    trial : positional trial index.  ``None`` is allowed only when the
        dataset holds a single trial.

    Returns
    -------
    list of length ``n_neuron``; element ``j`` is a float64 array of the spike
    times of neuron ``j`` in ms (possibly empty), sorted ascending.
    """
    ntr = n_trials(ds)
    if trial is None:
        if ntr != 1:
            raise ValueError(f"dataset has {ntr} trials: pass trial=<index>")
        trial = 0
    if not 0 <= trial < ntr:
        raise IndexError(f"trial {trial} out of range [0, {ntr})")
    tr, st, ne = spike_events(ds)
    sel = tr == trial
    st, ne = st[sel], ne[sel]
    order = np.lexsort((st, ne))  # by neuron, then step
    st, ne = st[order], ne[order]
    nn = n_neurons(ds)
    bounds = np.cumsum(np.bincount(ne, minlength=nn))[:-1]
    times = st.astype(np.float64) * float(ds.attrs["dt_ms"])
    return np.split(times, bounds)


def spike_counts(ds: xr.Dataset) -> xr.DataArray:
    """Total spike count per (trial, neuron) over the whole recording (int64)."""
    tr, _, ne = spike_events(ds)
    ntr, nn = n_trials(ds), n_neurons(ds)
    counts = np.bincount(tr * nn + ne, minlength=ntr * nn).reshape(ntr, nn)
    return xr.DataArray(counts, dims=("trial", "neuron"),
                        coords=_coords(ds, ("trial", "neuron")),
                        name="spike_count", attrs={"units": "spikes"})


def _coords(ds: xr.Dataset, dims: tuple[str, ...]) -> dict:
    """Coordinates of ``ds`` that live only on the given dims (e.g. population, ei)."""
    return {k: c for k, c in ds.coords.items() if c.dims and set(c.dims) <= set(dims)}


def _bin_index(ds: xr.Dataset, bin_ms: float) -> tuple[np.ndarray, int, np.ndarray]:
    """Map steps to bins; return (bin_of_step, n_bins, bin_width_ms per bin)."""
    dt = float(ds.attrs["dt_ms"])
    n_steps = _n_steps(ds)
    if bin_ms <= 0:
        raise ValueError("bin_ms must be > 0")
    ratio = bin_ms / dt
    if abs(ratio - round(ratio)) < 1e-6 and round(ratio) >= 1:
        k = int(round(ratio))
        bin_of_step = np.arange(n_steps) // k
    else:  # bin_ms not a multiple of dt: bin containing the spike time
        bin_of_step = np.floor(np.arange(n_steps) * dt / bin_ms + 1e-9).astype(np.int64)
    n_bins = int(bin_of_step[-1]) + 1 if n_steps else 0
    width = np.bincount(bin_of_step, minlength=n_bins) * dt  # actual covered ms
    return bin_of_step, n_bins, width


def bin_spikes(ds: xr.Dataset, bin_ms: float) -> xr.DataArray:
    """Spike counts in consecutive time bins, dims ``(trial, time, neuron)``.

    Bin ``b`` covers ``[b * bin_ms, (b + 1) * bin_ms)`` ms; coord ``time`` is the
    bin start (ms).  The last bin may be partial when the duration is not a
    multiple of ``bin_ms``; its covered width is in coord ``bin_width_ms``
    (ms, on ``time``), so every spike is counted exactly once (counts are
    conserved).  Built with one ``np.bincount`` over the event list.
    """
    tr, st, ne = spike_events(ds)
    bin_of_step, n_bins, width = _bin_index(ds, float(bin_ms))
    ntr, nn = n_trials(ds), n_neurons(ds)
    flat = (tr * n_bins + bin_of_step[st]) * nn + ne
    counts = np.bincount(flat, minlength=ntr * n_bins * nn).reshape(ntr, n_bins, nn)
    coords = _coords(ds, ("trial", "neuron"))
    coords["time"] = ("time", np.arange(n_bins) * float(bin_ms), {"units": "ms"})
    coords["bin_width_ms"] = ("time", width, {"units": "ms"})
    return xr.DataArray(counts.astype(np.int32), dims=("trial", "time", "neuron"),
                        coords=coords, name="spike_count",
                        attrs={"units": "spikes", "bin_ms": float(bin_ms),
                               "dt_ms": float(ds.attrs["dt_ms"])})


def rates_from_events(ds: xr.Dataset, bin_ms: float,
                      smooth_ms: float | None = None) -> xr.DataArray:
    """Firing rate (Hz) per (trial, time, neuron) from the spike event list.

    ``rate = count / (bin_width_ms / 1000)`` with counts from
    :func:`bin_spikes` (a partial last bin is divided by its actual width).
    If ``smooth_ms`` is given the rates are smoothed along ``time`` with a
    Gaussian of standard deviation ``smooth_ms`` (ms), i.e.
    ``sigma = smooth_ms / bin_ms`` bins, ``mode="nearest"`` at the edges.
    Attrs ``units="Hz"`` and ``bin_ms`` follow the simulator's ``rate`` var.
    """
    counts = bin_spikes(ds, bin_ms)
    rate = counts.values / (counts["bin_width_ms"].values[None, :, None] / 1000.0)
    if smooth_ms:
        rate = gaussian_filter1d(rate, sigma=float(smooth_ms) / float(bin_ms),
                                 axis=1, mode="nearest")
    attrs = {"units": "Hz", "bin_ms": float(bin_ms)}
    if smooth_ms:
        attrs["smooth_ms"] = float(smooth_ms)
    return xr.DataArray(rate, dims=counts.dims, coords=counts.coords,
                        name="rate", attrs=attrs)

"""Synthetic datasets in the simulator's conventions for the analysis tests."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr


def spiking_dataset(steps, dt_ms=0.1, n_steps=10_000, ei=None, rate_bin_ms=None):
    """Spiking dataset from ``steps[trial][neuron]`` -> array of spike steps.

    Follows the simulator layout: int32 event list ``spike_trial/step/neuron``
    along dim ``spike``, attrs ``dt_ms``, ``n_steps``, ``duration_ms``; neuron
    coords ``ei`` and ``population``; optionally a binned ``rate`` (Hz).
    """
    n_trial, n_neuron = len(steps), len(steps[0])
    tr, st, ne = [], [], []
    for i, per_neuron in enumerate(steps):
        for j, s in enumerate(per_neuron):
            s = np.asarray(s, dtype=np.int64)
            tr.append(np.full(s.size, i))
            st.append(s)
            ne.append(np.full(s.size, j))
    def cat(parts):
        return np.concatenate(parts).astype(np.int32) if parts else np.zeros(0, np.int32)

    ei = np.asarray(ei if ei is not None else ["E"] * n_neuron)
    ds = xr.Dataset(
        {"spike_trial": ("spike", cat(tr)), "spike_step": ("spike", cat(st)),
         "spike_neuron": ("spike", cat(ne))},
        coords={"trial": np.arange(n_trial), "neuron": np.arange(n_neuron),
                "ei": ("neuron", ei), "population": ("neuron", np.where(ei == "E", "exc", "inh"))},
        attrs={"dt_ms": float(dt_ms), "n_steps": int(n_steps),
               "duration_ms": float(dt_ms * n_steps), "seed": 0})
    if rate_bin_ms:
        from neurodsl.analysis.spikes import rates_from_events
        r = rates_from_events(ds, rate_bin_ms)
        ds["rate"] = r.astype(np.float32).assign_attrs(units="Hz", bin_ms=float(rate_bin_ms))
        ds = ds.assign_coords(time=r["time"])
    return ds


def poisson_dataset(rng, n_e=40, n_i=10, n_trial=2, rate_e=10.0, rate_i=25.0,
                    dt_ms=0.1, n_steps=50_000, rate_bin_ms=None):
    """Homogeneous Poisson spiking (Bernoulli per step, p = rate * dt) for E and I cells."""
    rates = np.r_[np.full(n_e, rate_e), np.full(n_i, rate_i)]
    steps = [[np.flatnonzero(rng.random(n_steps) < r * dt_ms / 1000.0) for r in rates]
             for _ in range(n_trial)]
    return spiking_dataset(steps, dt_ms, n_steps, ei=["E"] * n_e + ["I"] * n_i,
                           rate_bin_ms=rate_bin_ms)


@pytest.fixture
def make_spiking():
    return spiking_dataset


@pytest.fixture
def poisson_ds():
    return poisson_dataset(np.random.default_rng(0), rate_bin_ms=10.0)

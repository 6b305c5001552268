"""The Dataset contract of spiking outputs and atomic netCDF writing (no JAX here).

Spiking datasets (``simulation.nc``, ``teacher.nc``) have dims ``trial``,
``time``, ``neuron`` and ``spike``:

* ``spike_trial``, ``spike_step``, ``spike_neuron`` (int32, dim ``spike``): the
  event list, sorted by step; ``t = spike_step * dt_ms``;
* ``rate`` (trial, time, neuron) float32 in Hz over bins of ``bin_ms``; coord
  ``time`` is the bin start in ms;
* coords on ``neuron``: ``population`` and ``ei`` ("E"/"I");
* attrs: ``dt_ms``, ``n_steps``, ``duration_ms``, ``bin_ms`` and provenance
  (``spec_yaml``, ``spec_sha256``, ``seed``, package versions, ``created``).
"""
from __future__ import annotations

import datetime as _dt
import os
from importlib import metadata
from pathlib import Path

import numpy as np
import xarray as xr


def package_versions() -> dict[str, str]:
    out = {}
    for pkg in ("neurodsl", "brainpy", "brainstate", "brainevent", "jax", "numpy", "xarray"):
        try:
            out[f"version_{pkg}"] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[f"version_{pkg}"] = "not installed"
    return out


def provenance_attrs(spec_yaml: str, spec_sha256: str, seed: int, **extra) -> dict:
    attrs = {"spec_yaml": spec_yaml, "spec_sha256": spec_sha256, "seed": int(seed),
             "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
             "Conventions": "neurodsl-1"}
    attrs.update(package_versions())
    attrs.update(extra)
    return attrs


def spiking_dataset(events: dict[str, np.ndarray], rate: np.ndarray, *, dt_ms: float, n_steps: int,
                    bin_ms: float, population: list[str], ei: list[str], attrs: dict,
                    voltage: np.ndarray | None = None) -> xr.Dataset:
    """Assemble the labelled dataset of one simulation (see module docstring)."""
    n_trials, n_bins, n_neurons = rate.shape
    ds = xr.Dataset(
        {
            "spike_trial": ("spike", events["trial"].astype(np.int32)),
            "spike_step": ("spike", events["step"].astype(np.int32)),
            "spike_neuron": ("spike", events["neuron"].astype(np.int32)),
            "rate": (("trial", "time", "neuron"), rate.astype(np.float32),
                     {"units": "Hz", "long_name": "firing rate", "bin_ms": bin_ms}),
        },
        coords={
            "trial": np.arange(n_trials),
            "time": ("time", np.arange(n_bins) * bin_ms, {"units": "ms", "long_name": "bin start"}),
            "neuron": np.arange(n_neurons),
            "population": ("neuron", np.asarray(population, dtype=object)),
            "ei": ("neuron", np.asarray(ei, dtype=object)),
        },
        attrs={"dt_ms": float(dt_ms), "n_steps": int(n_steps), "duration_ms": float(n_steps * dt_ms),
               "bin_ms": float(bin_ms), **attrs},
    )
    ds["spike_step"].attrs.update(units="steps", long_name="time step of the spike (t = step * dt_ms)")
    if voltage is not None:
        ds["V"] = (("trial", "step", "neuron"), voltage.astype(np.float32), {"units": "mV"})
    return ds


def write_netcdf(ds: xr.Dataset, path: str | Path) -> Path:
    """Write atomically (:mod:`neurodsl.io.atomic`): a temporary file in the same folder, then rename."""
    from neurodsl.io import atomic
    path = Path(path)
    fd, tmp = atomic.temp_file(path)
    os.close(fd)
    try:
        encoding = {v: {"zlib": True, "complevel": 4} for v in ds.data_vars
                    if ds[v].dtype.kind in "iuf" and ds[v].size > 1024}
        ds.to_netcdf(tmp, engine="netcdf4", encoding=encoding)
        return atomic.finish(tmp, path)
    finally:
        atomic.discard(tmp)

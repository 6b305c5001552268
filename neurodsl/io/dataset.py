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


class SpikingWriter:
    """Stream a spiking dataset to netCDF chunk by chunk (memory bounded by one chunk).

    The file read back with :func:`xarray.open_dataset` is identical to writing
    :func:`spiking_dataset` of the whole run with :func:`write_netcdf`; only the ``spike``
    dimension is unlimited.  Written to a temporary file; :meth:`close` sets the attrs and renames
    it into place (atomically), :meth:`abort` removes it.  :meth:`write` takes one chunk: its events
    (sorted by step, trial, neuron; chunks in time order), its rate bins from ``bin0`` and its
    voltage steps from ``step0``.
    """

    SPIKE_CHUNK = 1 << 18

    def __init__(self, path: str | Path, *, n_trials: int, n_bins: int, n_neurons: int, dt_ms: float,
                 n_steps: int, bin_ms: float, population: list[str], ei: list[str], voltage: bool = False):
        import netCDF4
        from neurodsl.io import atomic
        self.path = Path(path)
        fd, self.tmp = atomic.temp_file(self.path)
        os.close(fd)
        self.head = {"dt_ms": float(dt_ms), "n_steps": int(n_steps), "duration_ms": float(n_steps * dt_ms),
                     "bin_ms": float(bin_ms)}
        self.n_spikes = 0
        nc = self.nc = netCDF4.Dataset(self.tmp, "w", format="NETCDF4")
        for dim, size in (("spike", None), ("trial", n_trials), ("time", n_bins), ("neuron", n_neurons)):
            nc.createDimension(dim, size)
        if voltage:
            nc.createDimension("step", n_steps)
        zip_ = {"zlib": True, "complevel": 4}
        for v in ("trial", "step", "neuron"):
            nc.createVariable(f"spike_{v}", "i4", ("spike",), chunksizes=(self.SPIKE_CHUNK,), **zip_)
        nc["spike_step"].setncatts({"units": "steps", "long_name": "time step of the spike (t = step * dt_ms)"})
        grid = (1, max(1, min(n_bins, 64)), max(1, min(n_neurons, 4096)))
        rate = nc.createVariable("rate", "f4", ("trial", "time", "neuron"), fill_value=np.float32(np.nan),
                                 chunksizes=grid, **zip_)
        rate.setncatts({"units": "Hz", "long_name": "firing rate", "bin_ms": float(bin_ms),
                        "coordinates": "ei population"})
        nc.createVariable("trial", "i8", ("trial",))[:] = np.arange(n_trials)
        t = nc.createVariable("time", "f8", ("time",), fill_value=np.float64(np.nan))
        t.setncatts({"units": "ms", "long_name": "bin start"})
        t[:] = np.arange(n_bins) * bin_ms
        nc.createVariable("neuron", "i8", ("neuron",))[:] = np.arange(n_neurons)
        for name, values in (("population", population), ("ei", ei)):
            nc.createVariable(name, str, ("neuron",))[:] = np.asarray(values, dtype=object)
        if voltage:
            v = nc.createVariable("V", "f4", ("trial", "step", "neuron"), fill_value=np.float32(np.nan),
                                  chunksizes=(1, max(1, min(n_steps, 64)), grid[2]), **zip_)
            v.setncatts({"units": "mV", "coordinates": "ei population"})

    def write(self, events: dict[str, np.ndarray], rate: np.ndarray, bin0: int,
              voltage: np.ndarray | None = None, step0: int = 0) -> None:
        n = len(events["step"])
        for v in ("trial", "step", "neuron"):
            self.nc[f"spike_{v}"][self.n_spikes:self.n_spikes + n] = np.asarray(events[v], np.int32)
        self.n_spikes += n
        self.nc["rate"][:, bin0:bin0 + rate.shape[1], :] = np.asarray(rate, np.float32)
        if voltage is not None:
            self.nc["V"][:, step0:step0 + voltage.shape[1], :] = np.asarray(voltage, np.float32)

    def close(self, attrs: dict) -> Path:
        from neurodsl.io import atomic
        try:
            self.nc.setncatts({**self.head, **attrs})
            self.nc.close()
            return atomic.finish(self.tmp, self.path)
        finally:
            self.abort()

    def abort(self) -> None:
        from neurodsl.io import atomic
        if self.nc.isopen():
            self.nc.close()
        atomic.discard(self.tmp)

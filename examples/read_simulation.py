"""Read a neurodsl simulation with plain xarray: mean rates, a raster, CV of ISIs.

    neurodsl simulate spec/coba.yaml --out results/coba
    python examples/read_simulation.py results/coba/simulation.nc
"""
import sys

import matplotlib
import numpy as np
import xarray as xr

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ds = xr.open_dataset(sys.argv[1] if len(sys.argv) > 1 else "results/coba/simulation.nc")
print(ds)

# mean rate per E/I type (rates are binned spikes in Hz)
print(ds["rate"].mean(("trial", "time")).groupby("ei").mean())

# spike times of trial 0 from the event list: t = step * dt
t0 = ds.spike_trial.values == 0
t_ms = ds.spike_step.values[t0] * ds.attrs["dt_ms"]
neuron = ds.spike_neuron.values[t0]

# coefficient of variation of inter-spike intervals, neurons with >= 3 spikes
order = np.lexsort((t_ms, neuron))
n_sorted, t_sorted = neuron[order], t_ms[order]
cvs = []
for n in np.unique(n_sorted):
    isi = np.diff(t_sorted[n_sorted == n])
    if len(isi) >= 2:
        cvs.append(isi.std() / isi.mean())
print(f"mean ISI CV: {np.mean(cvs):.2f} over {len(cvs)} neurons")

fig, ax = plt.subplots(figsize=(8, 4))
sel = neuron < 200
ax.plot(t_ms[sel], neuron[sel], "|", ms=2, color="k")
ax.set(xlabel="time (ms)", ylabel="neuron", title=ds.attrs.get("spec_name", ""))
fig.savefig("raster.png", dpi=120)
print("wrote raster.png")

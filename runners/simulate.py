"""``neurodsl simulate``: run a compiled network in chunks and write ``simulation.nc``."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neurodsl.spec import LoadedSpec


def configure_precision(precision: str) -> None:
    """float64 needs JAX's x64 mode, which must be switched on before arrays are made."""
    import jax
    jax.config.update("jax_enable_x64", precision == "float64")


@dataclass
class SimulationResult:
    events: dict[str, np.ndarray]  # trial, step, neuron (network-wide index)
    rate: np.ndarray               # (trial, bin, neuron) Hz
    voltage: np.ndarray | None     # (trial, step, neuron) mV
    wall_s: float
    loop_s: float                  # time spent in compiled chunks, compilation excluded


def chunk_plan(n_steps: int, chunk_steps: int, bin_steps: int) -> list[tuple[int, int]]:
    chunk_steps = max(bin_steps, (chunk_steps // bin_steps) * bin_steps)
    return [(s, min(s + chunk_steps, n_steps)) for s in range(0, n_steps, chunk_steps)]


def run_network(net, n_steps: int, bin_steps: int, chunk_steps: int, record_voltage=False,
                progress: bool = True) -> SimulationResult:
    """Advance an initialised network ``n_steps``; memory is bounded by one chunk."""
    import brainstate
    import jax
    import jax.numpy as jnp
    from tqdm.auto import tqdm

    names = list(net.populations)

    def body(n):
        spikes = net.update(n)
        s = jnp.concatenate([spikes[k] for k in names], axis=-1)
        if record_voltage:
            return s, jnp.concatenate([net.populations[k].V.value for k in names], axis=-1)
        return s, None

    @brainstate.transform.jit
    def run_chunk(steps):
        return brainstate.transform.for_loop(body, steps)

    plan = chunk_plan(n_steps, chunk_steps, bin_steps)
    batch = net.populations[names[0]].V.value.shape[0]
    n_total = net.n_neurons
    n_bins = -(-n_steps // bin_steps)
    counts = np.zeros((batch, n_bins, n_total), np.int32)
    ev_t, ev_b, ev_n, volts = [], [], [], []
    t0 = time.perf_counter()
    loop_s = 0.0
    seen_lengths = set()
    bar = tqdm(total=n_steps, unit="step", desc="simulate", disable=not progress, leave=False)
    for start, stop in plan:
        c0 = time.perf_counter()
        spikes, v = run_chunk(jnp.arange(start, stop, dtype=jnp.int32))
        spikes = np.asarray(jax.block_until_ready(spikes))  # (T, B, N)
        if (stop - start) in seen_lengths:
            loop_s += time.perf_counter() - c0
        seen_lengths.add(stop - start)
        t, b, n = np.nonzero(spikes)
        ev_t.append(t + start)
        ev_b.append(b)
        ev_n.append(n)
        np.add.at(counts, (b, (t + start) // bin_steps, n), 1)
        if record_voltage:
            volts.append(np.asarray(v).transpose(1, 0, 2))
        bar.update(stop - start)
    bar.close()
    wall = time.perf_counter() - t0
    dt = net.dt
    widths = np.minimum(bin_steps, n_steps - np.arange(n_bins) * bin_steps) * dt * 1e-3  # seconds
    rate = counts / widths[None, :, None]
    events = {"trial": np.concatenate(ev_b), "step": np.concatenate(ev_t), "neuron": np.concatenate(ev_n)}
    order = np.lexsort((events["neuron"], events["trial"], events["step"]))
    events = {k: v[order] for k, v in events.items()}
    voltage = np.concatenate(volts, axis=1) if record_voltage else None
    return SimulationResult(events, rate, voltage, wall, loop_s)


def simulate(loaded: LoadedSpec, out_dir: str | Path | None = None, *, progress: bool = True,
             write: bool = True):
    """Compile ``loaded.spec``, simulate ``duration`` for ``trials`` trials and return the Dataset.

    With ``out_dir`` the Dataset is written to ``out_dir/simulation.nc`` (atomically)
    together with the resolved spec ``out_dir/spec.yaml``.
    """
    spec = loaded.spec
    configure_precision(spec.precision)
    from neurodsl.compile import compile_network
    from neurodsl.io.dataset import provenance_attrs, spiking_dataset, write_netcdf

    net = compile_network(spec)
    net.init_state(spec.trials, spec.seed)
    dt = spec.dt.internal
    bin_steps = max(1, int(round(spec.outputs.rate_bin.internal / dt)))
    chunk_steps = max(1, int(round(spec.outputs.chunk.internal / dt)))
    res = run_network(net, spec.n_steps, bin_steps, chunk_steps, spec.outputs.record_voltage, progress)
    population = [i.name for i in net.infos for _ in range(i.size)]
    ei = [i.cell_type for i in net.infos for _ in range(i.size)]
    attrs = provenance_attrs(loaded.resolved_yaml, loaded.sha256, spec.seed, spec_name=spec.name,
                             precision=spec.precision, wall_time_s=res.wall_s,
                             n_synapses=int(sum(p.n_synapses for p in net.projections)))
    ds = spiking_dataset(res.events, res.rate, dt_ms=dt, n_steps=spec.n_steps, bin_ms=bin_steps * dt,
                         population=population, ei=ei, attrs=attrs, voltage=res.voltage)
    if write and out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "spec.yaml").write_text(loaded.resolved_yaml)
        write_netcdf(ds, out / "simulation.nc")
    return ds

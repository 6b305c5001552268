"""``neurodsl simulate``: run a compiled network in chunks and write ``simulation.nc``.

Spikes are recorded sparsely inside the compiled loop (:class:`SpikeRecorder`): every step the
(trial, neuron) spike matrix is packed into 32-bit words and the non-zero words are appended,
with their flat word index, to a fixed-capacity buffer of the chunk; the per-step counts of
non-zero words are returned too.  A chunk whose buffer (or per-step slot) was too small is run
again from its saved start state with the capacities the counts say it needs -- or, past
``max_entries``, over a shorter span -- so no spike is ever dropped.  Each finished chunk's
events and binned rates go to a sink: kept in memory (:class:`SimulationResult`) or streamed to
the netCDF file (:class:`neurodsl.io.dataset.SpikingWriter`), so memory is bounded by one chunk.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neurodsl.spec import LoadedSpec

MAX_ENTRIES = 1 << 27  # buffer entries (8 bytes each) above which a chunk is shortened instead


def configure_precision(precision: str) -> None:
    """float64 needs JAX's x64 mode, which must be switched on before arrays are made.

    brainstate sets the mode when it is first imported, so it is imported first.
    """
    import brainstate
    import jax
    brainstate.environ.set(precision=64 if precision == "float64" else 32)
    jax.config.update("jax_enable_x64", precision == "float64")


@dataclass
class SimulationResult:
    """In memory: ``events`` and ``rate`` of the whole run.  With a ``sink`` they went to the sink
    chunk by chunk and are None here."""
    events: dict[str, np.ndarray] | None  # trial, step, neuron (network-wide index), sorted by step, trial, neuron
    rate: np.ndarray | None        # (trial, bin, neuron) Hz, float32
    voltage: np.ndarray | None     # (trial, step, neuron) mV
    wall_s: float
    loop_s: float                  # time spent in compiled chunks, compilation excluded
    source_events: dict[str, dict[str, np.ndarray]] | None = None  # source -> trial, step, neuron
    n_spikes: int = 0              # network spikes (sources excluded)
    reruns: int = 0                # chunks run again because a recording buffer was too small
    timed_steps: int = 0           # steps that loop_s covers
    engine: str = "xla"            # what stepped the network: xla or loop


def chunk_plan(n_steps: int, chunk_steps: int, bin_steps: int) -> list[tuple[int, int]]:
    chunk_steps = max(bin_steps, (chunk_steps // bin_steps) * bin_steps)
    return [(s, min(s + chunk_steps, n_steps)) for s in range(0, n_steps, chunk_steps)]


def _pow2(x: int) -> int:
    return 1 << max(0, int(x) - 1).bit_length()


def _concat_events(parts) -> dict[str, np.ndarray]:
    """Merge per-chunk (trial, step, neuron) arrays, sorted by step, trial, neuron."""
    if parts:
        b, t, n = (np.concatenate(x) for x in zip(*parts))
    else:
        b = t = n = np.zeros(0, np.int64)
    order = np.lexsort((n, b, t))
    return {"trial": np.asarray(b)[order], "step": np.asarray(t)[order], "neuron": np.asarray(n)[order]}


class SpikeRecorder:
    """The compiled chunk loop with sparse spike recording (module docstring).

    Columns: the network's neurons in population order, then (``record_sources``) each source's.
    ``capacity`` (buffer entries per chunk) and ``step_capacity`` (non-zero words per step) are
    starting values; they only grow.
    """

    engine = "xla"

    def __init__(self, net, chunk_steps: int, record_voltage: bool, record_sources: bool,
                 capacity: int | None = None, step_capacity: int | None = None):
        self.net = net
        self.names = list(net.populations)
        self.sources = list(net.sources) if record_sources else []
        self.batch = int(net.populations[self.names[0]].V.value.shape[0])
        sizes = [net.populations[k].info.size for k in self.names] + [net.sources[k].size for k in self.sources]
        self.offsets = dict(zip(self.names + self.sources, np.cumsum([0] + sizes[:-1]).tolist()))
        self.sizes = dict(zip(self.names + self.sources, sizes))
        self.n_cols = int(sum(sizes))
        self.n_words = -(-self.n_cols // 32)
        self.record_voltage = record_voltage
        total = self.batch * self.n_words
        self.step_capacity = min(total, step_capacity or _pow2(max(1024, total // 4)))
        self.capacity = capacity or min(chunk_steps * total, _pow2(chunk_steps * self.step_capacity // 2))
        self._fns: dict = {}
        self.compiled: set = set()

    def _chunk(self, C: int, K: int, steps):
        import brainstate
        import jax
        import jax.numpy as jnp
        net, B, W = self.net, self.batch, self.n_words
        pad = W * 32 - self.n_cols
        shifts = jnp.arange(32, dtype=jnp.uint32)

        def body(carry, n):
            ib, vb, count = carry
            spikes = net.update(n)
            s = jnp.concatenate([spikes[k] for k in self.names + self.sources], axis=-1) != 0
            if pad:
                s = jnp.pad(s, ((0, 0), (0, pad)))
            w = (s.reshape(B, W, 32).astype(jnp.uint32) << shifts).sum(-1, dtype=jnp.uint32).reshape(-1)
            nnz = jnp.count_nonzero(w).astype(jnp.int32)
            idx = jnp.nonzero(w, size=K, fill_value=0)[0].astype(jnp.int32)
            pos = jnp.minimum(count, C)
            ib = jax.lax.dynamic_update_slice(ib, idx, (pos,))
            vb = jax.lax.dynamic_update_slice(vb, w[idx], (pos,))
            v = (jnp.concatenate([net.populations[k].V.value for k in self.names], axis=-1)
                 if self.record_voltage else None)
            return (ib, vb, count + nnz), (nnz, v)

        init = (jnp.zeros(C + K, jnp.int32), jnp.zeros(C + K, jnp.uint32), jnp.int32(0))
        (ib, vb, count), (nnz, v) = brainstate.transform.scan(body, init, steps)
        return ib, vb, count, nnz, v

    def run(self, first: int, n: int):
        """Run steps ``first .. first + n`` once -> (ok, flat word index, words, per-step counts, V, seconds)."""
        import brainstate
        import jax
        import jax.numpy as jnp
        C, K = self.capacity, self.step_capacity
        if (C, K) not in self._fns:
            self._fns[(C, K)] = brainstate.transform.jit(functools.partial(self._chunk, C, K))
        t0 = time.perf_counter()
        ib, vb, count, nnz, v = jax.block_until_ready(self._fns[(C, K)](jnp.arange(first, first + n, dtype=jnp.int32)))
        secs = time.perf_counter() - t0
        fresh = (C, K, n) not in self.compiled
        self.compiled.add((C, K, n))
        nnz = np.asarray(nnz).astype(np.int64)
        count = int(nnz.sum())
        ok = count <= C and (nnz.max(initial=0) <= K)
        idx, val = np.asarray(ib)[:count], np.asarray(vb)[:count]
        return ok, idx, val, nnz, (None if v is None else np.asarray(v)), (None if fresh else secs)

    def grow(self, nnz: np.ndarray) -> None:
        self.step_capacity = max(self.step_capacity, min(self.batch * self.n_words, _pow2(nnz.max(initial=1))))
        self.capacity = max(self.capacity, _pow2(nnz.sum()))

    def decode(self, idx: np.ndarray, val: np.ndarray, nnz: np.ndarray, start: int, block: int = 1 << 20):
        """Buffer entries -> (trial, step, column) int64, sorted by step, trial, column."""
        steps = np.repeat(np.arange(start, start + len(nnz), dtype=np.int64), nnz)
        parts = []
        for a in range(0, len(idx), block):
            words = val[a:a + block].astype("<u4").view(np.uint8).reshape(-1, 4)
            e, bit = np.nonzero(np.unpackbits(words, axis=1, bitorder="little"))
            flat = idx[a:a + block][e].astype(np.int64)
            parts.append((flat // self.n_words, steps[a:a + block][e], (flat % self.n_words) * 32 + bit))
        if not parts:
            return tuple(np.zeros(0, np.int64) for _ in range(3))
        return tuple(np.concatenate(x) for x in zip(*parts))

    def split(self, trial, step, col) -> tuple[dict, dict]:
        """(network events, events per source) of one chunk's decoded columns."""
        def pick(name):
            o, n = self.offsets[name], self.sizes[name]
            m = (col >= o) & (col < o + n)
            return {"trial": trial[m], "step": step[m], "neuron": col[m] - o}
        n_net = sum(self.sizes[k] for k in self.names)
        if not self.sources:
            return {"trial": trial, "step": step, "neuron": col}, {}
        m = col < n_net
        return {"trial": trial[m], "step": step[m], "neuron": col[m]}, {k: pick(k) for k in self.sources}


def chunk_rates(ev: dict, start: int, stop: int, bin_steps: int, n_steps: int, batch: int, n_neurons: int,
                dt: float) -> np.ndarray:
    """(trial, bin, neuron) float32 Hz of one chunk's events; ``start`` is a multiple of ``bin_steps``."""
    nb = -(-(stop - start) // bin_steps)
    out = np.zeros((batch, nb, n_neurons), np.float32)
    edges = np.searchsorted(ev["step"], start + np.arange(nb + 1) * bin_steps)  # events are sorted by step
    for j in range(nb):
        a, b = edges[j], edges[j + 1]
        if a == b:
            continue
        counts = np.bincount(ev["trial"][a:b] * n_neurons + ev["neuron"][a:b], minlength=batch * n_neurons)
        width = min(bin_steps, n_steps - (start + j * bin_steps)) * dt * 1e-3  # seconds
        out[:, j] = counts.reshape(batch, n_neurons) / width
    return out


class MemorySink:
    """Keeps the whole run: events, rates and voltages (the sink of :func:`run_network` by default)."""

    def __init__(self, batch: int, n_bins: int, n_neurons: int):
        self.parts, self.volts = [], []
        self.rate = np.zeros((batch, n_bins, n_neurons), np.float32)

    def write(self, events: dict, rate: np.ndarray, bin0: int, voltage=None, step0: int = 0) -> None:
        self.parts.append((events["trial"], events["step"], events["neuron"]))
        self.rate[:, bin0:bin0 + rate.shape[1]] = rate
        if voltage is not None:
            self.volts.append(voltage)

    def events(self) -> dict[str, np.ndarray]:
        """Chunks arrive in time order, each sorted by step, trial, neuron: concatenation keeps the order."""
        if not self.parts:
            return {k: np.zeros(0, np.int64) for k in ("trial", "step", "neuron")}
        b, t, n = (np.concatenate(x) for x in zip(*self.parts))
        return {"trial": b, "step": t, "neuron": n}


def _fitting_span(nnz: np.ndarray, max_entries: int, bin_steps: int) -> int:
    """Steps from the chunk start whose entries fit in ``max_entries`` (whole bins, at least one)."""
    if nnz.sum() <= max_entries:
        return len(nnz)
    k = int(np.searchsorted(np.cumsum(nnz), max_entries, side="right"))
    return min(len(nnz), max(bin_steps, (k // bin_steps) * bin_steps))


def run_network(net, n_steps: int, bin_steps: int, chunk_steps: int, record_voltage=False,
                progress: bool = True, record_sources: bool = False, start_step: int = 0, *,
                sink=None, capacity: int | None = None, step_capacity: int | None = None,
                max_entries: int = MAX_ENTRIES, engine: str = "xla") -> SimulationResult:
    """Advance an initialised network ``n_steps`` from ``start_step``; memory is bounded by one chunk.

    Event steps count from ``start_step``.  With ``record_sources`` the spikes of the input sources (e.g. mitral cells)
    are returned too, as one event list per source (kept in memory).  ``sink`` (e.g.
    :class:`neurodsl.io.dataset.SpikingWriter`) receives each chunk's network events, rates and voltages
    instead of the result; ``capacity`` / ``step_capacity`` / ``max_entries``: see :class:`SpikeRecorder`.
    The trials are split over the visible devices (:mod:`neurodsl.runners.devices`; same spikes).
    ``engine``: ``xla``, ``loop`` or ``auto`` (:class:`neurodsl.spec.spec.SimulationSpec`).
    """
    from neurodsl.progress import progress_bar

    from . import devices
    plan = chunk_plan(n_steps, chunk_steps, bin_steps)
    if engine != "xla":
        from .loop_recorder import LoopRecorder, loop_applies
        if loop_applies(net, engine):
            rec = LoopRecorder(net, plan[0][1] if plan else 1, record_voltage, capacity, record_sources)
            return _run_chunks(net, rec, plan, n_steps, bin_steps, record_voltage, progress, record_sources,
                               start_step, sink, max_entries, progress_bar)
    rec = SpikeRecorder(net, plan[0][1] if plan else 1, record_voltage, record_sources, capacity, step_capacity)
    mesh = devices.trial_mesh(rec.batch)  # trials split over the devices (runners/devices.py); None: one
    devices.shard_network(net, mesh)
    with devices.event_kernels(mesh):
        return _run_chunks(net, rec, plan, n_steps, bin_steps, record_voltage, progress, record_sources,
                           start_step, sink, max_entries, progress_bar)


def _run_chunks(net, rec, plan, n_steps, bin_steps, record_voltage, progress, record_sources, start_step, sink,
                max_entries, progress_bar) -> SimulationResult:
    memory = MemorySink(rec.batch, -(-n_steps // bin_steps), net.n_neurons) if sink is None else None
    out = memory or sink
    src_parts = {k: [] for k in rec.sources}
    t0 = time.perf_counter()
    loop_s, reruns, n_spikes, timed = 0.0, 0, 0, 0
    bar = progress_bar(total=n_steps, unit="step", desc="simulate", disable=not progress, leave=False)
    todo = plan[::-1]
    while todo:
        start, stop = todo.pop()
        saved = net.read_state()
        ok, idx, val, nnz, v, secs = rec.run(start_step + start, stop - start)
        while not ok:  # a buffer was too small: run the chunk again from its start with what it needs
            reruns += 1
            keep = _fitting_span(nnz, max_entries, bin_steps)
            if start + keep < stop:
                todo.append((start + keep, stop))
                stop = start + keep
            rec.grow(nnz[:keep])
            net.write_state(saved)
            ok, idx, val, nnz, v, secs = rec.run(start_step + start, stop - start)
        if secs is not None:
            loop_s, timed = loop_s + secs, timed + stop - start
        ev, src = rec.split(*rec.decode(idx, val, nnz, start))
        del idx, val
        for k, e in src.items():
            src_parts[k].append((e["trial"], e["step"], e["neuron"]))
        n_spikes += len(ev["step"])
        rate = chunk_rates(ev, start, stop, bin_steps, n_steps, rec.batch, net.n_neurons, net.dt)
        out.write(ev, rate, start // bin_steps, None if v is None else v.transpose(1, 0, 2), start)
        bar.update(stop - start)
    bar.close()
    wall = time.perf_counter() - t0
    source_events = {k: _concat_events(p) for k, p in src_parts.items()} if record_sources else None
    if memory is None:
        return SimulationResult(None, None, None, wall, loop_s, source_events, n_spikes, reruns, timed, rec.engine)
    voltage = np.concatenate(memory.volts, axis=1) if record_voltage else None
    return SimulationResult(memory.events(), memory.rate, voltage, wall, loop_s, source_events, n_spikes,
                            reruns, timed, rec.engine)


def simulate(loaded: LoadedSpec, out_dir: str | Path | None = None, *, progress: bool = True,
             write: bool = True, **record):
    """Compile ``loaded.spec``, simulate ``duration`` for ``trials`` trials and return the Dataset.

    With ``out_dir`` the Dataset is streamed chunk by chunk to ``out_dir/simulation.nc`` (atomically:
    renamed into place when complete) together with the resolved spec ``out_dir/spec.yaml``, and
    returned opened (lazily) from that file; otherwise it is built in memory.  ``record``:
    ``capacity``, ``step_capacity``, ``max_entries`` of :func:`run_network`.
    """
    spec = loaded.spec
    configure_precision(spec.precision)
    from neurodsl.compile import compile_network
    from neurodsl.io.dataset import SpikingWriter, provenance_attrs, spiking_dataset

    net = compile_network(spec)
    net.init_state(spec.trials, spec.seed)
    dt = spec.dt.internal
    bin_steps = max(1, int(round(spec.outputs.rate_bin.internal / dt)))
    chunk_steps = max(1, int(round(spec.outputs.chunk.internal / dt)))
    population = [i.name for i in net.infos for _ in range(i.size)]
    ei = [i.cell_type for i in net.infos for _ in range(i.size)]
    voltage = spec.outputs.record_voltage

    def attrs(res):
        return provenance_attrs(loaded.resolved_yaml, loaded.sha256, spec.seed, spec_name=spec.name,
                                precision=spec.precision, wall_time_s=res.wall_s, loop_time_s=res.loop_s,
                                timed_steps=res.timed_steps, recording_reruns=res.reruns, engine=res.engine,
                                n_synapses=int(sum(p.n_synapses for p in net.projections)))

    if not (write and out_dir is not None):
        res = run_network(net, spec.n_steps, bin_steps, chunk_steps, voltage, progress, engine=spec.engine,
                          **record)
        return spiking_dataset(res.events, res.rate, dt_ms=dt, n_steps=spec.n_steps, bin_ms=bin_steps * dt,
                               population=population, ei=ei, attrs=attrs(res), voltage=res.voltage)
    import xarray as xr
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "spec.yaml").write_text(loaded.resolved_yaml)
    writer = SpikingWriter(out / "simulation.nc", n_trials=spec.trials, n_bins=-(-spec.n_steps // bin_steps),
                           n_neurons=net.n_neurons, dt_ms=dt, n_steps=spec.n_steps, bin_ms=bin_steps * dt,
                           population=population, ei=ei, voltage=voltage)
    try:
        res = run_network(net, spec.n_steps, bin_steps, chunk_steps, voltage, progress, sink=writer,
                          engine=spec.engine, **record)
        path = writer.close(attrs(res))
    finally:
        writer.abort()
    return xr.open_dataset(path)

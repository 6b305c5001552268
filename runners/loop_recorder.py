"""The chunk recorder of ``engine: loop``: :class:`neurodsl.compile.loop.ChunkLoop` behind the interface
of :class:`neurodsl.runners.simulate.SpikeRecorder`, so that :func:`~neurodsl.runners.simulate.run_network`
reruns, streams and bins its chunks the same way.

Spikes come back as per-trial (step, neuron) lists of a fixed capacity; a chunk with more spikes in
some trial than that is run again from its start with the capacity it needed.  Input sources are drawn
with JAX from the network's key exactly as the core's step draws them, part of a chunk at a time.
"""
from __future__ import annotations

import time

import numpy as np


def loop_applies(net, engine: str) -> bool:
    """Whether ``engine`` (``loop`` or ``auto``) runs ``net`` as a generated loop; ``loop`` on a network
    it cannot run is an error that says why.  ``auto``: the loop on a CPU backend when it applies."""
    import jax

    from neurodsl.compile.loop import unsupported
    from neurodsl.errors import SpecError
    why = unsupported(net)
    if engine == "loop" and why is not None:
        raise SpecError(f"engine loop cannot run this network: {why}", field="engine", expected="engine: xla or auto")
    return why is None and (engine == "loop" or jax.default_backend() == "cpu")


def _pow2(x: int) -> int:
    return 1 << max(0, int(x) - 1).bit_length()


class LoopRecorder:
    engine = "loop"

    #: bytes of drawn source spikes held at once: a chunk is run in parts of at most this much input
    SOURCE_BYTES = 1 << 25

    def __init__(self, net, chunk_steps: int, record_voltage: bool, capacity: int | None = None,
                 record_sources: bool = False):
        from neurodsl.compile.loop import ChunkLoop
        self.net, self.loop = net, ChunkLoop(net)
        self.sources = list(net.sources) if record_sources else []
        self.batch = int(next(iter(net.populations.values())).V.value.shape[0])
        self.record_voltage = record_voltage
        self.capacity = capacity or _pow2(max(1024, chunk_steps * net.n_neurons // 200))  # per trial: 50 Hz at dt 0.1 ms
        width = self.batch * sum(s.size for s in net.sources.values())
        self.part = max(1, self.SOURCE_BYTES // width) if width else None
        self._draw = _source_sampler(net, self.batch) if net.sources else None
        self.compiled = False  # the first run compiles the loop (one batch size per recorder)

    def run(self, first: int, n: int):
        """Steps ``first .. first + n`` -> (ok, steps, neurons, per-step counts, V, seconds or None when compiling).

        Source spikes are drawn part by part (at most :attr:`SOURCE_BYTES` at once) from the network's
        key, as the core's step draws them, and the loop advances through each part."""
        import jax
        import jax.numpy as jnp
        state = jax.tree.map(np.array, self.net.read_state())
        fresh, self.compiled = not self.compiled, True
        dtype = state["pops"][self.loop.names[0]]["V"].dtype
        out = self.loop.buffers(self.batch, n, self.capacity, self.record_voltage, dtype)
        self._src = {k: [] for k in self.sources}
        t0, key = time.perf_counter(), state["key"]
        part = self.part or n
        for a in range(0, n, part):
            m = min(n - a, part)
            drawn = ()
            if self._draw is not None:
                key, drawn = self._draw(jnp.asarray(key), jnp.arange(first + a, first + a + m, dtype=jnp.int32))
                drawn = [np.asarray(d) for d in drawn]
                for k, d in zip(self.net.sources, drawn):
                    if k in self._src:
                        step, trial, neuron = np.nonzero(d)  # sorted by step, trial, neuron
                        self._src[k].append((trial, step + a, neuron))
            self.loop.run_into(state, first + a, m, out, rel0=a, sources=drawn)
        state["key"] = np.asarray(key)
        secs = time.perf_counter() - t0
        self.net.write_state(jax.tree.map(jnp.asarray, state))
        count = out["count"]
        ok = bool(count.max(initial=0) <= self.capacity)
        self._count = count
        volt = out["volt"] if self.record_voltage else None
        return ok, out["steps"], out["cols"], out["per_step"].sum(0).astype(np.int64), volt, (None if fresh else secs)

    def grow(self, nnz: np.ndarray) -> None:
        self.capacity = max(self.capacity, _pow2(int(self._count.max(initial=1))))

    def decode(self, steps, cols, nnz, start: int):
        """(trial, step, neuron) int64 of the chunk, sorted by step, trial, neuron."""
        count = np.minimum(self._count, self.capacity)
        trial = np.repeat(np.arange(self.batch, dtype=np.int64), count)
        step = np.concatenate([steps[b, :count[b]] for b in range(self.batch)]).astype(np.int64) + start
        col = np.concatenate([cols[b, :count[b]] for b in range(self.batch)]).astype(np.int64)
        order = np.lexsort((col, trial, step))
        self._start = start
        return trial[order], step[order], col[order]

    def split(self, trial, step, col):
        """(network events, events per recorded source) of the chunk just decoded."""
        src = {}
        for k, parts in self._src.items():
            tr, st, ne = ((np.concatenate(x).astype(np.int64) for x in zip(*parts)) if parts
                          else (np.zeros(0, np.int64),) * 3)
            src[k] = {"trial": tr, "step": st + self._start, "neuron": ne}
        return {"trial": trial, "step": step, "neuron": col}, src


def _source_sampler(net, batch: int):
    """A jitted ``(key, steps) -> (key, spikes per source (len(steps), batch, size))``: the core's own
    per-step draw (:meth:`SpikingNetwork.draw_sources`) scanned over the steps."""
    import brainstate
    import jax

    def draw(key, steps):
        def body(key, n):
            key, drawn = net.draw_sources(key, n, batch)
            return key, tuple(drawn.values())
        return jax.lax.scan(body, key, steps)
    return brainstate.transform.jit(draw)

"""The chunk recorder of ``engine: loop``: :class:`neurodsl.compile.loop.ChunkLoop` behind the interface
of :class:`neurodsl.runners.simulate.SpikeRecorder`, so that :func:`~neurodsl.runners.simulate.run_network`
reruns, streams and bins its chunks the same way.

Spikes come back as per-trial (step, neuron) lists of a fixed capacity; a chunk with more spikes in
some trial than that is run again from its start with the capacity it needed.
"""
from __future__ import annotations

import time

import numpy as np


def loop_applies(net, engine: str) -> bool:
    """Whether ``engine`` (``loop`` or ``auto``) runs ``net`` as a generated loop; ``loop`` on a network
    it cannot run is an error that says why."""
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

    def __init__(self, net, chunk_steps: int, record_voltage: bool, capacity: int | None = None):
        from neurodsl.compile.loop import ChunkLoop
        self.net, self.loop, self.sources = net, ChunkLoop(net), []
        self.batch = int(next(iter(net.populations.values())).V.value.shape[0])
        self.record_voltage = record_voltage
        self.capacity = capacity or _pow2(max(1024, chunk_steps * net.n_neurons // 200))  # per trial: 50 Hz at dt 0.1 ms
        self.compiled = False  # the first run compiles the loop (one batch size per recorder)

    def run(self, first: int, n: int):
        """Steps ``first .. first + n`` -> (ok, steps, neurons, per-step counts, V, seconds or None when compiling)."""
        import jax
        import jax.numpy as jnp
        state = jax.tree.map(np.array, self.net.read_state())
        fresh, self.compiled = not self.compiled, True
        t0 = time.perf_counter()
        steps, cols, count, per_step, volt = self.loop.run(state, first, n, self.capacity, self.record_voltage)
        secs = time.perf_counter() - t0
        self.net.write_state(jax.tree.map(jnp.asarray, state))
        ok = bool(count.max(initial=0) <= self.capacity)
        self._count = count
        return ok, steps, cols, per_step.sum(0).astype(np.int64), volt, (None if fresh else secs)

    def grow(self, nnz: np.ndarray) -> None:
        self.capacity = max(self.capacity, _pow2(int(self._count.max(initial=1))))

    def decode(self, steps, cols, nnz, start: int):
        """(trial, step, neuron) int64 of the chunk, sorted by step, trial, neuron."""
        count = np.minimum(self._count, self.capacity)
        trial = np.repeat(np.arange(self.batch, dtype=np.int64), count)
        step = np.concatenate([steps[b, :count[b]] for b in range(self.batch)]).astype(np.int64) + start
        col = np.concatenate([cols[b, :count[b]] for b in range(self.batch)]).astype(np.int64)
        order = np.lexsort((col, trial, step))
        return trial[order], step[order], col[order]

    def split(self, trial, step, col):
        return {"trial": trial, "step": step, "neuron": col}, {}

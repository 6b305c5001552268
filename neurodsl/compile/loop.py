"""The simulation core as one compiled loop per chunk (``engine: loop`` of ``kind: simulation``).

XLA runs the core's step (:meth:`SpikingNetwork.step`) as ~20 small kernels per step, and on a CPU
their dispatch, not the arithmetic, sets the cost.  Brian2's C++ backend avoids that by generating one
loop over the steps.  :class:`ChunkLoop` does the same for a compiled :class:`SpikingNetwork`: it
reads the network's own objects (each population's parameters and integrator, each receptor's
kinetics, each :class:`SynapseBank`'s merged synapse arrays, the delay ring buffers and the
currents) and generates one Numba function that advances every trial through a chunk of steps in the
core's step order (integrate, threshold, reset, deliver, history; ``network.py``'s docstring), with the
same state arrays in and out.  It is not a second model: nothing in it is declared twice except the
loop-form of each receptor kind (:data:`LOOP_KINETICS`), and in float64 its spikes are identical to
the core's (tests/compile/test_loop.py).  In float32 it sums arriving spikes in float32 (as the bank
kernels do) but evaluates the cell arithmetic in float64 and stores float32 (XLA keeps float32
throughout), so spike trains agree statistically, not bit by bit.

Applies to simulation only (Heaviside spikes, untrained event projections): :func:`unsupported` says
why not.  Input sources (Poisson, odour-modulated) are drawn by the caller from the core's own random
stream (:class:`neurodsl.runners.loop_recorder.LoopRecorder`) and passed in as spike arrays, so in
float64 the spikes equal the core's with sources too.
The integrators of :data:`neurodsl.compile.kinetics.INTEGRATORS` are compiled as they are, with
NumPy in place of ``jax.numpy`` and an exp that vectorises (:mod:`neurodsl.compile.loop_math`).
"""
from __future__ import annotations

import functools
import types

import numpy as np

from neurodsl.compile.cells import LIFCondPopulation
from neurodsl.compile.kinetics import DualExpKinetics, ExpKinetics
from neurodsl.compile.spikes import Heaviside


def _exp_code(k: ExpKinetics, x: list[str]) -> tuple[str, list[str]]:
    """(value expression, decay statements) over the receptor's variables ``x`` (as the object's methods)."""
    return x[0], [f"{x[0]} = {x[0]} * {float(np.exp(-k.dt / k.tau))!r}"]


def _dual_code(k: DualExpKinetics, x: list[str]) -> tuple[str, list[str]]:
    return (f"{k.norm!r} * ({x[0]} - {x[1]})",
            [f"{x[0]} = {x[0]} * {float(np.exp(-k.dt / k.tau_decay))!r}",
             f"{x[1]} = {x[1]} * {float(np.exp(-k.dt / k.tau_rise))!r}"])


LOOP_KINETICS = {ExpKinetics: _exp_code, DualExpKinetics: _dual_code}


def _numpy_twin(fn):
    """``fn`` with ``jnp`` bound to NumPy with a vectorisable exp (the same source, compiled by Numba;
    :mod:`neurodsl.compile.loop_math`)."""
    from neurodsl.compile import loop_math
    g = dict(fn.__globals__)
    g["jnp"] = loop_math
    return types.FunctionType(fn.__code__, g, fn.__name__, fn.__defaults__, fn.__closure__)


@functools.lru_cache(maxsize=None)
def integrator_twin(fn):
    """The Numba-compiled :func:`_numpy_twin` of integrator ``fn`` (inlined into the chunk functions)."""
    import numba
    return numba.njit(inline="always", error_model="numpy")(_numpy_twin(fn))


def unsupported(net) -> str | None:
    """Why ``net`` cannot run as a :class:`ChunkLoop`, or None when it can."""
    if not isinstance(net.spike_fn, Heaviside):
        return "its spikes are not plain Heaviside spikes (training)"
    for name, pop in net.populations.items():
        if type(pop) is not LIFCondPopulation:
            return f"population {name!r} is a {type(pop).__name__}"
        for r, k in pop.kinetics.items():
            if type(k) not in LOOP_KINETICS:
                return f"receptor {r!r} is a {type(k).__name__}"
    for p in net.projections:
        if not p.banked:
            return f"projection {p.label!r} is trained or not event-driven"
    return None


class ChunkLoop:
    """One generated Numba function for a network's chunk (module docstring).

    :meth:`run` advances the network's states ``n`` steps from step ``first`` and returns each
    trial's spikes as (relative step, network-wide neuron) lists with at most ``capacity`` entries
    per trial, the true counts per trial and step, and V after every step when asked.
    """

    def __init__(self, net):
        why = unsupported(net)
        if why is not None:
            raise ValueError(f"the loop engine does not apply: {why}")
        self.net = net
        self.names = list(net.populations)
        self.src, self.arrays = _generate(net)
        self._fns: dict = {}

    def _fn(self, parallel: bool):
        if parallel not in self._fns:
            integrators = tuple((name, pop.integrator) for name, pop in self.net.populations.items())
            self._fns[parallel] = _compiled(self.src, integrators, parallel)
        return self._fns[parallel]

    def buffers(self, batch: int, n: int, capacity: int, record_voltage: bool, dtype) -> dict:
        """Empty outputs of ``n`` steps: per-trial (step, neuron) lists of ``capacity`` entries, the true
        counts per trial, the counts per trial and step, V (n, batch, neurons) when asked."""
        return {"steps": np.zeros((batch, capacity), np.int32), "cols": np.zeros((batch, capacity), np.int32),
                "count": np.zeros(batch, np.int64), "per_step": np.zeros((batch, n), np.int32),
                "volt": np.zeros((n, batch, self.net.n_neurons) if record_voltage else (1, 1, 1), dtype),
                "record_voltage": record_voltage}

    def run_into(self, state: dict, first: int, n: int, out: dict, rel0: int = 0, sources=()) -> None:
        """Advance ``state`` (:meth:`SpikingNetwork.read_state` as NumPy arrays, in place) ``n`` steps from
        step ``first``, appending to ``out`` (:meth:`buffers`) from its step ``rel0`` on. ``sources``: each
        source's spikes of these steps, (n, batch, size) bool, in ``net.sources`` order (drawn by the caller
        from the core's random stream)."""
        pops, hist = state["pops"], state["history"]
        B = next(iter(pops.values()))["V"].shape[0]
        args = []
        for name in self.names:
            p = pops[name]
            args += [p["V"], p["last"], *(p["syn"][r] for r in self.net.populations[name].kinetics)]
        args += [hist[s] for s in sorted(hist)]
        args += list(sources)
        args += self.arrays
        self._fn(B > 1)(np.int64(first), np.int64(n), *args, out["steps"], out["cols"], out["count"],
                        out["per_step"], out["volt"], out["record_voltage"], np.int64(rel0))

    def run(self, state: dict, first: int, n: int, capacity: int, record_voltage: bool):
        """:meth:`run_into` fresh buffers (a network without sources) -> (steps (B, capacity), neurons
        (B, capacity), counts (B,), per-step counts (B, n), V or None)."""
        B = next(iter(state["pops"].values()))["V"].shape[0]
        out = self.buffers(B, n, capacity, record_voltage, state["pops"][self.names[0]]["V"].dtype)
        self.run_into(state, first, n, out)
        return out["steps"], out["cols"], out["count"], out["per_step"], (out["volt"] if record_voltage else None)


@functools.lru_cache(maxsize=16)
def _compiled(src: str, integrators: tuple, parallel: bool):
    """The Numba dispatcher of a generated chunk source, one per (source, integrators, parallel) in a
    process: a network built again with the same structure (another seed, the next grid point) reuses
    the machine code instead of compiling it again (~5 s); across processes through the on-disk cache
    of :mod:`neurodsl.compile.loop_cache` when there is one."""
    from neurodsl.compile import loop_cache
    cached = loop_cache.load(src, integrators, parallel)
    if cached is not None:
        return cached
    import numba
    env = {"np": np, "prange": numba.prange if parallel else range}
    for name, fn in integrators:
        env[f"integ_{name}"] = integrator_twin(fn)
    exec(compile(src, "<neurodsl loop>", "exec"), env)  # noqa: S102 -- generated by _generate
    return numba.njit(parallel=parallel, nogil=True, error_model="numpy")(env["chunk"])


def _generate(net) -> tuple[str, list[np.ndarray]]:
    """The chunk function's source and its constant arrays (the banks' synapses).

    A bank's spikes of step n are summed into its accumulator ``acc`` (presynaptic order, as the
    bank's kernel sums them) and added to the receptor variables when step n + 1 reads them, in the
    populations' loop (``x + acc``: the core's ``receive``); the last step's sums are added at the end."""
    hist_names = sorted(net.history)
    params, arrays = [], []
    for name, pop in net.populations.items():
        params += [f"V_{name}", f"last_{name}"] + [f"x_{name}_{r}" for r in pop.kinetics]
    params += [f"hist_{s}" for s in hist_names]
    params += [f"src_{s}" for s in net.sources]
    offsets = {i.name: i.offset for i in net.infos}
    for k, bank in enumerate(net.banks):
        kern = bank.kernel.arrays.value
        if bank.kernel.layout == "ell":
            idx, w, deg = (np.asarray(a) for a in kern["ell"])
            arrays += [np.ascontiguousarray(idx), np.ascontiguousarray(w), np.asarray(deg, np.int64)]
        else:
            w, idx, ptr = (np.asarray(a) for a in kern["csr"])
            arrays += [np.asarray(idx), np.asarray(w), np.asarray(ptr, np.int64)]
        params += [f"idx{k}", f"w{k}", f"ptr{k}"]
    params += ["ev_step", "ev_col", "ev_count", "per_step", "volt", "rec_v", "rel0"]
    incoming = {}  # (post, receptor) -> [(bank, slot offset)] in bank order
    for k, bank in enumerate(net.banks):
        for post, r, off, _ in bank.slots:
            incoming.setdefault((post, r), []).append((k, off))
    words = -(-net.n_neurons // 8)
    L = ["def chunk(first, n_steps, " + ", ".join(params) + "):",
         f"    B = V_{next(iter(net.populations))}.shape[0]",
         "    cap = ev_step.shape[1]",
         "    for b in prange(B):",
         f"        spk = np.zeros({8 * words}, np.bool_)",
         "        spk_w = spk.view(np.uint64)",
         f"        fl = np.zeros({net.n_neurons}, np.int64)"]
    acc_t = np.dtype(net.dtype).name  # the bank kernels sum in the network's dtype
    L += [f"        acc{k} = np.zeros({bank.kernel.shape[1]}, np.{acc_t})" for k, bank in enumerate(net.banks)]
    L += ["        m = ev_count[b]",
          "        for t in range(n_steps):",
          "            n = first + t"]
    for name, pop in net.populations.items():
        L += _population_code(net, name, pop, offsets[name], incoming)
    L += _fired_code(words)
    for k, bank in enumerate(net.banks):
        L += _bank_code(net, k, bank, offsets, bank.kernel.layout == "ell")
    for s in hist_names:
        now = f"src_{s}[t, b, i]" if s in net.sources else f"spk[{offsets[s]} + i]"
        L += [f"            for i in range({net._size(s)}):",
              f"                hist_{s}[n % hist_{s}.shape[0], b, i] = {now}"]
    L += ["            per_step[b, rel0 + t] = nf"]
    for (post, r), banks in incoming.items():  # the last step's deliveries
        n_vars = net.populations[post].kinetics[r].n_vars
        L.append(f"        for i in range({net._size(post)}):")
        for j in range(n_vars):
            x = f"x_{post}_{r}[{j}, b, i]"
            L.append(f"            {x} = " + " + ".join([x] + [f"acc{k}[{off} + i]" for k, off in banks]))
    L += ["        ev_count[b] = m"]
    return "\n".join(L) + "\n", arrays


def _population_code(net, name: str, pop, off: int, incoming: dict) -> list[str]:
    """Integrate, threshold and reset population ``name`` (``LIFCondPopulation.integrate`` and ``fire``):
    a loop without branches on the data (vectorisable) that sets the population's part of ``spk``."""
    L = [f"            for i in range({pop.info.size}):",
         "                I = 0.0"]
    for target, amp, start, stop in net.currents:
        if target == name:
            L.append(f"                I = I + ({amp!r} if (n >= {start} and n < {stop}) else 0.0)")
    L += ["                g_syn = 0.0", "                gE_syn = 0.0"]
    decays = []
    for r, kin in pop.kinetics.items():
        xs = [f"x_{name}_{r}_{j}" for j in range(kin.n_vars)]
        arrived = [f"acc{k}[{o} + i]" for k, o in incoming.get((name, r), [])]
        for j, x in enumerate(xs):
            L.append(f"                {x} = " + " + ".join([f"x_{name}_{r}[{j}, b, i]"] + arrived))
        L += [f"                {a} = 0.0" for a in arrived]
        value, decay = LOOP_KINETICS[type(kin)](kin, xs)
        L.append(f"                g = {value}")
        if kin.E_rev is None:
            L.append("                I = I + g")
        else:
            L += ["                g_syn = g_syn + g", f"                gE_syn = gE_syn + g * {kin.E_rev!r}"]
        decays += decay + [f"x_{name}_{r}[{j}, b, i] = {x}" for j, x in enumerate(xs)]
    L += [f"                {d}" for d in decays]
    dtype = np.dtype(net.dtype).name
    L += [f"                V = V_{name}[b, i]",
          f"                V_new = np.{dtype}(integ_{name}(V, {pop.g_L!r}, {pop.E_L!r}, {pop.C!r}, g_syn, gE_syn, I, "
          f"{pop.dt!r}))",
          f"                last = last_{name}[b, i]",
          f"                not_ref = (n - last) >= {pop.ref_steps}",
          "                V = V_new if not_ref else V",
          f"                fired = not_ref & (V > {pop.V_th!r})",
          f"                V_{name}[b, i] = np.{dtype}({pop.V_reset!r}) if fired else V",
          f"                last_{name}[b, i] = n if fired else last",
          f"                spk[{off} + i] = fired",
          "            if rec_v:",
          f"                for i in range({pop.info.size}):",
          f"                    volt[rel0 + t, b, {off} + i] = V_{name}[b, i]"]
    return L


def _fired_code(words: int) -> list[str]:
    """This step's spikes as the fired list ``fl[:nf]`` (network-wide neurons, ascending), found eight
    neurons at a time (``spk`` read as 64-bit words: a silent word costs one compare), then recorded."""
    return ["            nf = 0",
            f"            for wd in range({words}):",
            "                if spk_w[wd] != 0:",
            "                    for q in range(8 * wd, 8 * wd + 8):",
            "                        if spk[q]:",
            "                            fl[nf] = q",
            "                            nf += 1",
            "            for q in range(nf):",
            "                if m < cap:",
            "                    ev_step[b, m] = rel0 + t",
            "                    ev_col[b, m] = fl[q]",
            "                m += 1"]


def _bank_code(net, k: int, bank, offsets: dict, ell: bool) -> list[str]:
    """Sum bank ``k``'s arriving spikes into ``acc{k}`` (``SynapseBank``: presynaptic order, rows in stored order)."""
    L, pre_off = [], 0
    for s in bank.sources:
        size = net._size(s)
        if bank.delay_steps or s in net.sources:  # a flag per presynaptic neuron: history or source spikes
            spiked = (f"hist_{s}[(n - {bank.delay_steps}) % hist_{s}.shape[0], b, i]" if bank.delay_steps
                      else f"src_{s}[t, b, i]")
            L += [f"            for i in range({size}):", f"                if {spiked}:"]
        else:  # this step's spikes: the fired list, in neuron order
            L += ["            for q in range(nf):", f"                i = fl[q] - {offsets[s]}",
                  f"                if i >= 0 and i < {size}:"]
        L.append(f"                    row = {pre_off} + i")
        if ell:
            L += [f"                    for j in range(ptr{k}[row]):",
                  f"                        acc{k}[idx{k}[row, j]] += w{k}[row, j]"]
        else:
            L += [f"                    for j in range(ptr{k}[row], ptr{k}[row + 1]):",
                  f"                        acc{k}[idx{k}[j]] += w{k}[j]"]
        pre_off += size
    return L

"""The compiled spiking network: brainstate modules built from a validated NetworkSpec.

Step order (one call of :meth:`SpikingNetwork.update` advances step ``n`` -> ``n+1``,
as Brian2's default schedule does):

1. **integrate**: every population's V is advanced by the integrator using the
   receptor states at the start of the step (neurons still refractory, i.e.
   ``n - last_spike < t_ref/dt``, keep V); receptor states decay exactly;
2. **threshold**: ``spike = V > V_th`` and not refractory;
3. **reset**: ``V = V_reset`` and ``last_spike = n`` for spiking neurons;
4. **inputs**: Poisson sources spike with probability ``rate(n dt) * dt``;
5. **deliver**: every projection adds ``w`` to its receptor states of the
   postsynaptic neurons for each spike emitted at step ``n - delay/dt``
   (a delay of 0 acts on V from step n+1 on, exactly like Brian2's ``on_pre``).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import brainevent
import brainstate
import jax
import jax.numpy as jnp
import numpy as np
from brainevent._csr.main import _make_binary_task_workspace

from neurodsl.compile.connectivity import Synapses, build_synapses, sample_values
from neurodsl.compile.kinetics import INTEGRATORS, RECEPTORS
from neurodsl.errors import DataError, Location, SpecError
from neurodsl.spec.network import ConstantCurrent, FileRef, PiecewiseRate, PoissonGroup
from neurodsl.spec.spec import NetworkSpec

NEVER = -(2 ** 30)  # last_spike of a neuron that has not spiked


@dataclass(frozen=True)
class PopulationInfo:
    name: str
    size: int
    cell_type: str
    offset: int  # index of the first neuron in the network-wide neuron axis


def ell_layout(syn: Synapses) -> tuple[np.ndarray, np.ndarray] | None:
    """Rows padded to the largest out-degree (index 0, weight 0.0), or None when padding
    would more than double the work (hub-dominated connectomes keep CSR)."""
    deg = np.bincount(syn.pre, minlength=syn.n_pre)
    width = int(deg.max()) if len(deg) else 0
    if width == 0 or width * syn.n_pre > 2 * len(syn.pre) + 8 * syn.n_pre:
        return None
    idx = np.zeros((syn.n_pre, width), np.int32)
    w = np.zeros((syn.n_pre, width), np.float64)
    slot = np.arange(len(syn.pre)) - np.repeat(np.cumsum(deg) - deg, deg)  # position within its row
    idx[syn.pre, slot] = syn.post
    w[syn.pre, slot] = syn.weight
    return idx, w


@functools.lru_cache(maxsize=None)
def _batch_csr_kernel():
    """Numba kernel: batch-major event scatter, parallel over trials (one FFI call per step)."""
    import numba

    @numba.njit(parallel=True, fastmath=True, nogil=True, cache=True)
    def kernel(w, idx, ptr, spikes, out):
        for b in numba.prange(spikes.shape[0]):
            for k in range(out.shape[1]):
                out[b, k] = 0.0
            for i in range(spikes.shape[1]):
                if spikes[b, i]:
                    for j in range(ptr[i], ptr[i + 1]):
                        out[b, idx[j]] += w[j]

    return kernel


class EventKernel:
    """Event-driven sparse product ``spikes (B, n_pre) -> (B, n_post)`` over a Synapses object.

    One trial: brainevent's fixed-connection-number (ELL) kernel when out-degrees
    are even enough (padding adds ``+0.0`` to neuron 0, which changes nothing), else
    its CSR kernel.  Several trials: a batch-major CSR kernel parallel over trials
    (brainevent's column-major ``binary_fcnmm``/``csrmm`` under vmap does several
    times more work).  brainevent calls CPU kernels through a Python FFI handler,
    tens of microseconds per call, so callers merge projections into few kernels.
    A neuron's inputs within one step are summed in presynaptic order.
    """

    FEW = 16  # spikes per single-trial step handled in XLA, without a kernel call

    def __init__(self, syn: Synapses, dtype):
        self.syn = syn
        self.dtype = dtype
        self.shape = (syn.n_pre, syn.n_post)
        self.n_synapses = len(syn.pre)
        ell = ell_layout(syn)
        self.layout = "ell" if ell is not None else "csr"
        self._ell = None if ell is None else (jnp.asarray(ell[0]), jnp.asarray(ell[1], dtype))
        if ell is not None:  # one extra all-zero row (targets neuron 0 with +0.0) for unused slots
            self._ell_padded = (jnp.asarray(np.vstack([ell[0], np.zeros((1, ell[0].shape[1]), ell[0].dtype)])),
                                jnp.asarray(np.vstack([ell[1], np.zeros((1, ell[1].shape[1]))]), dtype))
        # built eagerly: arrays made while tracing would leak into later traces
        indptr = jnp.asarray(syn.indptr, jnp.int32)
        self.csr = (jnp.asarray(syn.weight, dtype), jnp.asarray(syn.post, jnp.int32), indptr,
                    _make_binary_task_workspace(indptr))

    @property
    def weight(self):
        """The weights in the single-trial layout (ELL matrix or CSR data)."""
        return self._ell[1] if self.layout == "ell" else self.csr[0]

    def __call__(self, spikes, weight=None):
        if self.n_synapses == 0:
            return jnp.zeros((spikes.shape[0], self.shape[1]), self.dtype)
        if spikes.shape[0] > 1 and weight is None:
            w, idx, ptr, _ = self.csr
            out = jax.ShapeDtypeStruct((spikes.shape[0], self.shape[1]), w.dtype)
            return brainevent.numba_kernel(_batch_csr_kernel(), outs=out)(w, idx, ptr, spikes)
        w = self.weight if weight is None else weight
        if self.layout == "ell" and spikes.shape[0] == 1 and weight is None:
            return self._few_events(spikes[0])[None]
        if self.layout == "ell":
            idx = self._ell[0]
            one = lambda s: brainevent.binary_fcnmv(w, idx, s, shape=self.shape, transpose=True)  # noqa: E731
        else:
            _, idx, ptr, ws = self.csr
            one = lambda s: brainevent.binary_csrmv(w, idx, ptr, s, shape=self.shape,  # noqa: E731
                                                    transpose=True, workspace=ws)
        return one(spikes[0])[None] if spikes.shape[0] == 1 else jax.vmap(one)(spikes)

    def _few_events(self, s):
        """One trial, ELL layout: with at most FEW spikes, gather their rows and scatter-add them
        in XLA (no FFI call); otherwise call brainevent's kernel.  Same summation order (spiking
        rows in presynaptic order, each row in its stored order), so results are identical."""
        idx, w = self._ell
        pad_idx, pad_w = self._ell_padded
        n_pre = self.shape[0]
        k = min(self.FEW, n_pre)

        def few(s):
            _, rows = jax.lax.top_k(s.astype(jnp.float32), k)  # spiking rows first (int8 is ~20x slower)
            rows = jnp.sort(jnp.where(s[rows], rows, n_pre))
            out = jnp.zeros(self.shape[1], w.dtype)
            return out.at[pad_idx[rows].ravel()].add(pad_w[rows].ravel(), indices_are_sorted=False,
                                                     unique_indices=False, mode="promise_in_bounds")

        def many(s):
            return brainevent.binary_fcnmv(w, idx, s, shape=self.shape, transpose=True)

        return jax.lax.cond(s.sum() <= k, few, many, s)


class EventProjection(brainstate.nn.Module):
    """Synapses from ``pre`` onto receptors of ``post`` (weights in internal units).

    ``scales`` maps receptor names to the factor applied to the summed weights
    (g_max for dimensionless weights, else 1).  Non-trainable projections with the
    same delay are merged by :class:`SynapseBank` into one kernel call per step;
    trainable ones keep their weights in a ``ParamState`` and propagate alone.
    """

    def __init__(self, label: str, syn: Synapses, pre: str, post: str, delay_steps: int,
                 scales: dict[str, float], dtype, trainable: bool = False):
        super().__init__()
        self.label, self.pre, self.post = label, pre, post
        self.delay_steps = delay_steps
        self.scales = scales
        self.shape = (syn.n_pre, syn.n_post)
        self.n_synapses = len(syn.pre)
        self.synapses = syn
        self.dtype = dtype
        self.trainable = trainable
        self._kernel = None
        if trainable:
            self.kernel  # noqa: B018 - builds the layout the ParamState indexes
            self.weight = brainstate.ParamState(self._kernel.weight)

    @property
    def kernel(self) -> EventKernel:
        if self._kernel is None:
            self._kernel = EventKernel(self.synapses, self.dtype)
        return self._kernel

    def propagate(self, spikes):
        """(B, n_pre) bool -> (B, n_post) summed weights of the spiking inputs."""
        return self.kernel(spikes, self.weight.value if self.trainable else None)


class SynapseBank:
    """All non-trainable event projections with one delay, as a single kernel call.

    Presynaptic space: the sources' spikes concatenated; postsynaptic space: one
    slot of size n_post per (post population, receptor).  Each synapse appears
    once per receptor of its projection with weight ``w * scale``, so the kernel
    output is directly the increment of every receptor state.
    """

    def __init__(self, projections: list[EventProjection], sizes: dict[str, int], dtype):
        self.delay_steps = projections[0].delay_steps
        self.sources = list(dict.fromkeys(p.pre for p in projections))
        pre_off = dict(zip(self.sources, np.cumsum([0] + [sizes[s] for s in self.sources[:-1]])))
        slots: dict[tuple[str, str], int] = {}
        n_slots = 0
        pres, posts, ws = [], [], []
        for p in projections:
            for r, scale in p.scales.items():
                if (p.post, r) not in slots:
                    slots[(p.post, r)] = n_slots
                    n_slots += sizes[p.post]
                pres.append(p.synapses.pre.astype(np.int64) + pre_off[p.pre])
                posts.append(p.synapses.post.astype(np.int64) + slots[(p.post, r)])
                ws.append(p.synapses.weight * scale)
        pre, post, w = (np.concatenate(x) for x in (pres, posts, ws))
        order = np.lexsort((post, pre))  # presynaptic order, as every projection alone
        n_pre = sum(sizes[s] for s in self.sources)
        self.kernel = EventKernel(Synapses(pre[order].astype(np.int32), post[order].astype(np.int32),
                                           w[order], n_pre, n_slots), dtype)
        self.slots = [(post_, r, off, sizes[post_]) for (post_, r), off in slots.items()]


class LIFCondPopulation(brainstate.nn.Module):
    """A batch of conductance-based LIF neurons with per-receptor synaptic state."""

    def __init__(self, info: PopulationInfo, neuron, receptors: dict, dt: float):
        super().__init__()
        self.info = info
        self.g_L, self.E_L = neuron.g_L.internal, neuron.E_L.internal
        self.V_th, self.V_reset = neuron.V_th.internal, neuron.V_reset.internal
        self.C = neuron.capacitance_pF
        self.ref_steps = int(round(neuron.t_ref.internal / dt))
        self.integrator = INTEGRATORS[neuron.method]
        self.kinetics = receptors  # name -> kinetics object
        self.dt = dt
        self.V = brainstate.HiddenState(jnp.zeros((1, info.size)))
        self.last = brainstate.HiddenState(jnp.full((1, info.size), NEVER, jnp.int32))
        self.syn = {r: brainstate.HiddenState(jnp.zeros((k.n_vars, 1, info.size)))
                    for r, k in receptors.items()}

    def integrate(self, n, I_ext):
        g_syn = 0.0
        gE_syn = 0.0
        I = I_ext
        for r, kin in self.kinetics.items():
            g = kin.value(self.syn[r].value)
            if kin.E_rev is None:
                I = I + g
            else:
                g_syn = g_syn + g
                gE_syn = gE_syn + g * kin.E_rev
            self.syn[r].value = kin.decay(self.syn[r].value)
        V = self.V.value
        V_new = self.integrator(V, self.g_L, self.E_L, self.C, g_syn, gE_syn, I, self.dt)
        not_ref = (n - self.last.value) >= self.ref_steps
        self.V.value = jnp.where(not_ref, V_new, V)
        return not_ref

    def fire(self, n, not_ref):
        spike = (self.V.value > self.V_th) & not_ref
        self.V.value = jnp.where(spike, self.V_reset, self.V.value)
        self.last.value = jnp.where(spike, n, self.last.value)
        return spike

    def receive(self, receptor: str, inc):
        kin = self.kinetics[receptor]
        self.syn[receptor].value = kin.add(self.syn[receptor].value, inc)


class PoissonSource(brainstate.nn.Module):
    """Independent Poisson spike trains; rate piecewise constant in time."""

    def __init__(self, name: str, group: PoissonGroup, dt: float, dtype):
        super().__init__()
        self.source, self.size, self.dt = name, group.size, dt
        if isinstance(group.rate, PiecewiseRate):
            self.t_steps = jnp.asarray([round(t.internal / dt) for t in group.rate.times], jnp.int32)
            self.p = jnp.asarray([v.internal * dt * 1e-3 for v in group.rate.values], dtype)
        else:
            self.t_steps = jnp.zeros(1, jnp.int32)
            self.p = jnp.asarray([group.rate.internal * dt * 1e-3], dtype)
        if float(jnp.max(self.p)) > 1:
            raise DataError(f"input {name!r}: rate * dt > 1", expected="rate < 1/dt")

    def sample(self, n, key, batch: int):
        i = jnp.searchsorted(self.t_steps, n, side="right") - 1
        return jax.random.uniform(key, (batch, self.size)) < self.p[i]


@dataclass
class SpikingNetwork:
    """Populations, sources and projections, plus the per-step update.

    Build it with :func:`compile_network` from a NetworkSpec, or with
    :meth:`assemble` from parts (workflows whose structure comes from a file,
    e.g. the olfactory teacher).  A source is any module with ``size`` and
    ``sample(n, key, batch) -> (batch, size) bool``.
    """

    populations: dict[str, LIFCondPopulation]
    sources: dict[str, object]
    projections: list[EventProjection]
    currents: list[tuple[str, float, int, int]]  # (target, pA, start step, stop step)
    dt: float
    dtype: object
    initial: dict = field(default_factory=dict)  # population -> PopulationInit
    history: dict[str, brainstate.HiddenState] = field(default_factory=dict)
    key: brainstate.HiddenState | None = None
    banks: list = field(default_factory=list)

    @classmethod
    def assemble(cls, populations, sources, projections, currents, dt, dtype, initial=None, seed=0):
        net = cls(populations, sources, projections, currents, dt, dtype, dict(initial or {}))
        sizes = {k: net._size(k) for k in (*populations, *sources)}
        by_delay: dict[int, list] = {}
        for p in projections:
            if type(p) is EventProjection and not p.trainable:
                by_delay.setdefault(p.delay_steps, []).append(p)
        net.banks = [SynapseBank(ps, sizes, dtype) for _, ps in sorted(by_delay.items())]
        # States exist from here on and are only re-valued by init_state, so a jitted
        # run never holds on to stale State objects.
        net.history = {src: brainstate.HiddenState(jnp.zeros((d, 1, net._size(src)), bool))
                       for src, d in net._history_depths().items()}
        net.key = brainstate.HiddenState(jax.random.PRNGKey(seed))
        return net

    @property
    def infos(self) -> list[PopulationInfo]:
        return [p.info for p in self.populations.values()]

    @property
    def n_neurons(self) -> int:
        return sum(p.info.size for p in self.populations.values())

    # ------------------------------------------------------------------ state
    def init_state(self, batch: int, seed: int) -> None:
        """(Re)set every state variable: initial values from the spec, fresh RNG key."""
        rng = np.random.default_rng([seed, 1])
        for name, pop in self.populations.items():
            init = self.initial.get(name)
            shape = (batch, pop.info.size)
            V = _init_array(init.V if init else None, shape, pop.E_L, rng, name, "V")
            pop.V.value = jnp.asarray(V, self.dtype)
            pop.last.value = jnp.full(shape, NEVER, jnp.int32)
            for r, kin in pop.kinetics.items():
                g0 = _init_array(init.g.get(r) if init else None, shape, 0.0, rng, name, f"g.{r}")
                pop.syn[r].value = jnp.asarray(kin.from_value(jnp.asarray(g0, self.dtype)), self.dtype)
        for src, depth in self._history_depths().items():
            self.history[src].value = jnp.zeros((depth, batch, self._size(src)), bool)
        self.key.value = jax.random.PRNGKey(seed)

    @property
    def _banked(self) -> set:
        return {id(p) for p in self.projections if type(p) is EventProjection and not p.trainable}

    def _delayed(self, spikes: dict, src: str, n, delay_steps: int):
        """Spikes of ``src`` emitted at step ``n - delay_steps``."""
        if not delay_steps:
            return spikes[src]
        hist = self.history[src].value
        return hist[(n - delay_steps) % hist.shape[0]]

    def _size(self, name: str) -> int:
        return self.populations[name].info.size if name in self.populations else self.sources[name].size

    def _history_depths(self) -> dict[str, int]:
        depths: dict[str, int] = {}
        for pr in self.projections:
            if pr.delay_steps:
                depths[pr.pre] = max(depths.get(pr.pre, 0), pr.delay_steps)
        return depths

    # ------------------------------------------------------------------ dynamics
    def update(self, n):
        """Advance one step (see the module docstring for the order); returns spikes per population."""
        batch = next(iter(self.populations.values())).V.value.shape[0]
        not_ref = {}
        for name, pop in self.populations.items():
            I_ext = 0.0
            for target, amp, start, stop in self.currents:
                if target == name:
                    I_ext = I_ext + jnp.where((n >= start) & (n < stop), amp, 0.0)
            not_ref[name] = pop.integrate(n, I_ext)
        spikes = {name: pop.fire(n, not_ref[name]) for name, pop in self.populations.items()}
        if self.sources:
            key, *subs = jax.random.split(self.key.value, len(self.sources) + 1)
            self.key.value = key
            for sub, (name, src) in zip(subs, self.sources.items()):
                spikes[name] = src.sample(n, sub, batch)
        for bank in self.banks:
            pre = [self._delayed(spikes, src, n, bank.delay_steps) for src in bank.sources]
            arrived = bank.kernel(pre[0] if len(pre) == 1 else jnp.concatenate(pre, axis=-1))
            for post, r, off, size in bank.slots:
                self.populations[post].receive(r, arrived[:, off:off + size])
        for pr in self.projections:
            if id(pr) in self._banked:
                continue
            arrived = pr.propagate(self._delayed(spikes, pr.pre, n, pr.delay_steps))
            post = self.populations[pr.post]
            for r, scale in pr.scales.items():
                post.receive(r, arrived * scale if scale != 1.0 else arrived)
        for src, st in self.history.items():
            st.value = st.value.at[n % st.value.shape[0]].set(spikes[src])
        return spikes


NEURONS = {"lif_cond": LIFCondPopulation}


def _init_array(v, shape, default: float, rng, pop: str, var: str) -> np.ndarray:
    if v is None:
        return np.full(shape, default)
    if isinstance(v, FileRef):
        with np.load(v.file) as z:
            key = v.key or var
            if key not in z:
                raise DataError(f"no array {key!r} for {pop}.{var}", field=f"initial_state.{pop}.{var}",
                                expected="one of " + ", ".join(z.files), location=Location(v.file))
            arr = np.asarray(z[key], dtype=np.float64)
        if arr.shape not in (shape[1:], shape):
            raise DataError(f"array {key!r} has shape {arr.shape}", field=f"initial_state.{pop}.{var}",
                            expected=f"{shape[1:]} or {shape}", location=Location(v.file))
        return np.broadcast_to(arr, shape).copy()
    return sample_values(v, math.prod(shape), rng, sign=0.0).reshape(shape)


def precision_dtype(precision: str):
    """The array dtype of a spec's ``precision``; float64 needs JAX's x64 mode already on."""
    if precision == "float64" and not jax.config.jax_enable_x64:
        raise SpecError("precision float64 needs JAX's x64 mode, which the runners switch on before "
                        "compiling", field="precision", expected="float32 here, or run through neurodsl.runners")
    return jnp.float64 if precision == "float64" else jnp.float32


def compile_network(spec: NetworkSpec) -> SpikingNetwork:
    """Build the brainstate modules of ``spec`` (connectivity drawn from ``spec.seed``)."""
    dtype = precision_dtype(spec.precision)
    dt = spec.dt.internal
    by_pop = spec.receptors_by_population()
    infos, offset = {}, 0
    for name, pop in spec.populations.items():
        infos[name] = PopulationInfo(name, pop.size, pop.cell_type, offset)
        offset += pop.size
    pops = {}
    for name, pop in spec.populations.items():
        kin = {r: RECEPTORS[spec.receptors[r].kind](spec.receptors[r], dt) for r in by_pop[name]}
        pops[name] = NEURONS[pop.neuron.model](infos[name], pop.neuron, kin, dt)
    sources = {n: PoissonSource(n, g, dt, dtype) for n, g in spec.inputs.items() if isinstance(g, PoissonGroup)}
    sizes = {**{n: p.size for n, p in spec.populations.items()}, **{n: s.size for n, s in sources.items()}}
    rng = np.random.default_rng([spec.seed, 0])
    projections = []
    for i, pr in enumerate(spec.projections):
        signed = all(spec.receptors[r].E_rev is None for r in pr.receptor_scales())
        syn = build_synapses(pr, i, sizes[pr.pre], sizes[pr.post], spec.cell_type(pr.pre), rng, signed=signed)
        scales = {r: q.internal for r, q in pr.receptor_scales().items()}
        delay = int(round(pr.delay.internal / dt))
        projections.append(EventProjection(pr.label, syn, pr.pre, pr.post, delay, scales, dtype, pr.trainable))
    currents = []
    for name, inp in spec.inputs.items():
        if isinstance(inp, ConstantCurrent):
            start = 0 if inp.start is None else int(round(inp.start.internal / dt))
            stop = 2 ** 31 - 1 if inp.stop is None else int(round(inp.stop.internal / dt))
            currents.append((inp.target, inp.amplitude.internal, start, stop))
    return SpikingNetwork.assemble(pops, sources, projections, currents, dt, dtype, spec.initial_state, spec.seed)

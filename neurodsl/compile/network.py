"""The compiled spiking network: ONE core for simulation and training, built from a NetworkSpec.

Step order (one call of :meth:`SpikingNetwork.update` advances step ``n`` -> ``n+1``,
as Brian2's default schedule does):

1. **integrate**: every population's V is advanced by the integrator using the
   receptor states at the start of the step (neurons still refractory, i.e.
   ``n - last_spike < t_ref/dt``, keep V); receptor states decay exactly;
2. **threshold**: the population's spike function (:mod:`neurodsl.compile.spikes`) of
   ``(V - V_th) / (V_th - V_reset)``, not refractory;
3. **reset**: ``V = V_reset`` and ``last_spike = n`` for spiking neurons;
4. **inputs**: Poisson sources spike with probability ``rate(n dt) * dt``;
5. **deliver**: every projection adds ``w`` to its receptor states of the
   postsynaptic neurons for each spike emitted at step ``n - delay/dt``
   (a delay of 0 acts on V from step n+1 on, exactly like Brian2's ``on_pre``),
   through its propagation scheme (:mod:`neurodsl.compile.propagation`).

What differs between simulating and training is chosen at compile time as objects: the
spike function (Heaviside for simulation; Heaviside forward with a surrogate gradient, or
smooth, for training) and each projection's propagation (event kernels, dense or sparse
products).  Everything is brainstate state: ``HiddenState`` for V, the refractory clock,
receptor states, delay buffers and the RNG key; :class:`TrainableParam` (a ``ParamState``)
for what is trained, so the trainable set is ``net.trainable_states()`` -- chosen by type.

Trained quantities are log-magnitudes, so Dale's signs never change and the connectivity
mask is fixed: ``scale`` (one factor per projection, or per ``group`` of projections)
multiplies the summed weights; ``weight`` (one per synapse) replaces ``|w|``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import brainstate
import jax
import jax.numpy as jnp
import numpy as np

from neurodsl.compile import propagation as P
from neurodsl.compile.cells import (NEURONS, NEVER, LIFCondOnline, LIFCondPopulation, PoissonSource, PopulationInfo,
                                    _init_array)
from neurodsl.compile.connectivity import Synapses, build_synapses
from neurodsl.compile.events import EventKernel, SynapseBank, ell_layout
from neurodsl.compile.kinetics import RECEPTORS
from neurodsl.compile.trainables import TrainableParam, trainables as _trainables
from neurodsl.compile.spikes import Heaviside, Smooth
from neurodsl.errors import SpecError
from neurodsl.spec.network import ConstantCurrent
from neurodsl.spec.spec import NetworkSpec

__all__ = ["SpikingNetwork", "Projection", "EventProjection", "TrainableParam", "compile_network",
           "precision_dtype", "NEURONS", "NEVER", "LIFCondPopulation", "PoissonSource", "PopulationInfo",
           "EventKernel", "SynapseBank", "ell_layout"]


class Projection(brainstate.nn.Module):
    """Synapses from ``pre`` onto receptors of ``post`` (weights in internal units).

    ``scales`` maps receptor names to the factor applied to the summed weights (g_max for
    dimensionless weights, else 1).  ``propagation``: a scheme name of
    :data:`neurodsl.compile.propagation.SCHEMES`.  Untrained event projections of one delay
    are merged by :class:`SynapseBank` into one kernel call per step.
    """

    def __init__(self, label: str, syn: Synapses, pre: str, post: str, delay_steps: int,
                 scales: dict[str, float], dtype, propagation: str = "event",
                 log_scale: TrainableParam | None = None, log_weight: TrainableParam | None = None,
                 etrace: bool = False):
        super().__init__()
        self.etrace = etrace  # trained scale through braintrace's element-wise op (online learning)
        self.label, self.pre, self.post = label, pre, post
        self.delay_steps = delay_steps
        self.scales = scales
        self.shape = (syn.n_pre, syn.n_post)
        self.n_synapses = len(syn.pre)
        self.synapses = syn
        self.dtype = dtype
        self.scheme = P.SCHEMES[propagation](syn, dtype)
        self.log_scale, self.log_weight = log_scale, log_weight
        self.sign = None if log_weight is None else np.where(syn.weight < 0, -1.0, 1.0)  # of trained weights
        if self.scheme.name == "event" and self.trainable:
            self.scheme.build()  # propagates alone: its arrays must exist before any tracing

    @property
    def trainable(self) -> bool:
        return self.log_scale is not None or self.log_weight is not None

    @property
    def banked(self) -> bool:
        return self.scheme.name == "event" and not self.trainable

    @property
    def kernel(self) -> EventKernel:
        return self.scheme.kernel

    def propagate(self, spikes, params: dict | None = None):
        """(B, n_pre) spikes -> (B, n_post) summed (trained) weights of the spiking inputs.
        ``params`` (label -> log value) replaces the states' values (functional use)."""
        def val(st):
            return st.value if params is None else params[st.label]
        w = None
        if self.log_weight is not None:
            w = jnp.asarray(self.sign, self.dtype) * jnp.exp(val(self.log_weight))
        x = self.scheme(spikes, w)
        if self.log_scale is None:
            return x
        if self.etrace:
            import braintrace
            return x * braintrace.element_wise(val(self.log_scale), weight_fn=jnp.exp)
        return x * jnp.exp(val(self.log_scale))


EventProjection = Projection  # the simulator's default scheme is "event"


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
    projections: list[Projection]
    currents: list[tuple[str, float, int, int]]  # (target, pA, start step, stop step)
    dt: float
    dtype: object
    initial: dict = field(default_factory=dict)  # population -> PopulationInit
    history: dict[str, brainstate.HiddenState] = field(default_factory=dict)
    key: brainstate.HiddenState | None = None
    banks: list = field(default_factory=list)

    @classmethod
    def assemble(cls, populations, sources, projections, currents, dt, dtype, initial=None, seed=0,
                 online: bool = False):
        """``online``: delay buffers and the RNG key as ``ShortTermState`` (not hidden: braintrace's
        traces cover only the neurons' own float states)."""
        net = cls(populations, sources, projections, currents, dt, dtype, dict(initial or {}))
        sizes = {k: net._size(k) for k in (*populations, *sources)}
        by_delay: dict[int, list] = {}
        for p in projections:
            if p.banked:
                by_delay.setdefault(p.delay_steps, []).append(p)
        net.banks = [SynapseBank(ps, sizes, dtype) for _, ps in sorted(by_delay.items())]
        # States exist from here on and are only re-valued by init_state, so a jitted
        # run never holds on to stale State objects.
        state = brainstate.ShortTermState if online else brainstate.HiddenState
        net.history = {src: state(jnp.zeros((d, 1, net._size(src)), net.spike_dtype))
                       for src, d in net._history_depths().items()}
        net.key = state(jax.random.PRNGKey(seed))
        return net

    @property
    def spike_fn(self):
        return next(iter(self.populations.values())).spike_fn

    @property
    def spike_dtype(self):
        return jnp.bool_ if self.spike_fn.binary else self.dtype

    @property
    def infos(self) -> list[PopulationInfo]:
        return [p.info for p in self.populations.values()]

    @property
    def n_neurons(self) -> int:
        return sum(p.info.size for p in self.populations.values())

    def trainable_states(self) -> dict[str, TrainableParam]:
        """Every trained parameter once (shared scales appear once), by label, in projection order."""
        out: dict[str, TrainableParam] = {}
        for p in self.projections:
            for st in (p.log_scale, p.log_weight):
                if st is not None:
                    out.setdefault(st.label, st)
        return out

    def hidden_states(self) -> dict[str, brainstate.State]:
        """Every dynamic state by a stable name (checkpoints)."""
        out = {}
        for name, pop in self.populations.items():
            out[f"{name}.V"], out[f"{name}.last"] = pop.V, pop.last
            out.update({f"{name}.syn.{r}": s for r, s in pop.syn.items()})
        out.update({f"history.{k}": s for k, s in self.history.items()})
        out["key"] = self.key
        return out

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
            self.history[src].value = jnp.zeros((depth, batch, self._size(src)), self.spike_dtype)
        self.key.value = jax.random.PRNGKey(seed)

    @staticmethod
    def _delayed(history: dict, spikes: dict, src: str, n, delay_steps: int):
        """Spikes of ``src`` emitted at step ``n - delay_steps``."""
        if not delay_steps:
            return spikes[src]
        hist = history[src]
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
    def read_state(self) -> dict:
        """The dynamic state as a pytree: ``{"pops": {name: {V, last, syn}}, "history", "key"}``."""
        return {"pops": {k: p.read() for k, p in self.populations.items()},
                "history": {k: h.value for k, h in self.history.items()}, "key": self.key.value}

    def write_state(self, st: dict) -> None:
        for k, p in self.populations.items():
            p.write(st["pops"][k])
        for k, h in self.history.items():
            h.value = st["history"][k]
        self.key.value = st["key"]

    def params(self) -> dict:
        """Trained log-values by label (the TrainableParam states' values)."""
        return {k: p.value for k, p in self.trainable_states().items()}

    def update(self, n, inputs: dict | None = None, force: dict | None = None):
        """Advance the states one step (:meth:`step` on the states' values); returns the spikes."""
        st, spikes = self.step(self.read_state(), self.params(), n, inputs, force)
        self.write_state(st)
        return spikes

    def draw_sources(self, key, n, batch: int, given: dict | None = None):
        """(next key, spikes per source) of step ``n``: one split into the next key and a key per source,
        the draw every engine makes (the loop engine's too, runners/loop_recorder.py); a source in
        ``given`` takes those spikes instead of its draw."""
        key, *subs = jax.random.split(key, len(self.sources) + 1)
        return key, {name: given[name] if given and name in given else src.sample(n, sub, batch)
                     for sub, (name, src) in zip(subs, self.sources.items())}

    def step(self, st: dict, params: dict, n, inputs: dict | None = None, force: dict | None = None,
             record_v: bool = False):
        """Pure: one step (module docstring order) -> ``(state, spikes per population and source)``.

        ``inputs``: spikes of sources given instead of sampled (e.g. recorded mitral spikes);
        ``force``: presynaptic spikes of populations that projections deliver instead of the
        network's own (teacher forcing: each neuron's dynamics are unchanged).  ``record_v``: also
        return V before the reset per population, as a third value."""
        pops = dict(st["pops"])
        batch = next(iter(pops.values()))["V"].shape[0]
        not_ref, spikes = {}, {}
        for name, pop in self.populations.items():
            I_ext = 0.0
            for target, amp, start, stop in self.currents:
                if target == name:
                    I_ext = I_ext + jnp.where((n >= start) & (n < stop), amp, 0.0)
            pops[name], not_ref[name] = pop.integrate(pops[name], n, I_ext)
        v_pre = {k: p["V"] for k, p in pops.items()} if record_v else None
        for name, pop in self.populations.items():
            pops[name], spikes[name] = pop.fire(pops[name], n, not_ref[name])
        key = st["key"]
        if self.sources:
            key, drawn = self.draw_sources(key, n, batch, inputs)
            spikes.update(drawn)
        fn = self.spike_fn
        sent = {k: (fn.for_synapses(s) if k in self.populations else s) for k, s in spikes.items()}
        if force:
            sent.update({k: jnp.asarray(v, sent[k].dtype) for k, v in force.items()})
        history = st["history"]
        for bank in self.banks:
            pre = [self._delayed(history, sent, src, n, bank.delay_steps) for src in bank.sources]
            pre = [p if p.dtype == jnp.bool_ else jax.lax.stop_gradient(p) > 0.5 for p in pre]
            arrived = bank.kernel(pre[0] if len(pre) == 1 else jnp.concatenate(pre, axis=-1))
            for post, r, off, size in bank.slots:
                pops[post] = self.populations[post].receive(pops[post], r, arrived[:, off:off + size])
        for pr in self.projections:
            if pr.banked:
                continue
            arrived = pr.propagate(self._delayed(history, sent, pr.pre, n, pr.delay_steps), params)
            for r, scale in pr.scales.items():
                pops[pr.post] = self.populations[pr.post].receive(pops[pr.post], r,
                                                                  arrived * scale if scale != 1.0 else arrived)
        history = {src: h.at[n % h.shape[0]].set(sent[src].astype(h.dtype)) for src, h in history.items()}
        new = {"pops": pops, "history": history, "key": key}
        return (new, spikes, v_pre) if record_v else (new, spikes)


def precision_dtype(precision: str):
    """The array dtype of a spec's ``precision``; float64 needs JAX's x64 mode already on."""
    if precision == "float64" and not jax.config.jax_enable_x64:
        raise SpecError("precision float64 needs JAX's x64 mode, which the runners switch on before "
                        "compiling", field="precision", expected="float32 here, or run through neurodsl.runners")
    return jnp.float64 if precision == "float64" else jnp.float32


def _poisson_source(name, inp, spec, dt, dtype, trial_odours):
    return PoissonSource(name, inp, dt, dtype)


def _odour_source(name, inp, spec, dt, dtype, trial_odours):
    """Odour-modulated Poisson cells: patterns and schedule drawn from ``spec.seed`` for
    ``spec.trials`` trials of ``spec.duration`` (``trial_odours``: one fixed odour per trial)."""
    from neurodsl.compile.odour import OdourSource, odour_patterns, odour_schedule
    patterns = odour_patterns(inp.odours, inp.size, inp.baseline.internal, spec.seed)
    schedule = odour_schedule(inp.schedule, patterns.n_odours, spec.trials, spec.n_steps, dt, spec.seed,
                              trial_odours)
    return OdourSource(patterns, schedule, dt, dtype)


SOURCES = {"poisson": _poisson_source, "odour": _odour_source}  # input kind -> presynaptic source


def compile_network(spec: NetworkSpec, spike_fn=Heaviside(), propagation: str = "auto", *,
                    structure=None, trial_odours=None, online: bool = False) -> SpikingNetwork:
    """Build the brainstate modules of ``spec`` (connectivity drawn from ``spec.seed``).

    ``spike_fn`` (:mod:`neurodsl.compile.spikes`) and ``propagation`` (``auto`` or one scheme for
    every projection, :mod:`neurodsl.compile.propagation`) select simulation or training.
    ``structure``: the NetworkStructure that ``connectivity: {kind: structure}`` projections
    without a ``file`` read (a template's); ``trial_odours`` overrides odour inputs' schedules.
    ``online``: the layout braintrace's online learning needs (:class:`LIFCondOnline`, trained
    scales through its element-wise op; same spikes)."""
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
        cell = LIFCondOnline if online else NEURONS[pop.neuron.model]
        pops[name] = cell(infos[name], pop.neuron, kin, dt, spike_fn)
    sources = {n: SOURCES[g.kind](n, g, spec, dt, dtype, trial_odours) for n, g in spec.inputs.items()
               if g.kind in SOURCES}
    sizes = {**{n: p.size for n, p in spec.populations.items()}, **{n: s.size for n, s in sources.items()}}
    rng = np.random.default_rng([spec.seed, 0])
    projections, shared = [], {}
    for i, pr in enumerate(spec.projections):
        signed = all(spec.receptors[r].E_rev is None for r in pr.receptor_scales())
        syn = build_synapses(pr, i, sizes[pr.pre], sizes[pr.post], spec.cell_type(pr.pre), rng, signed=signed,
                             structure=structure)
        scales = {r: q.internal for r, q in pr.receptor_scales().items()}
        delay = int(round(pr.delay.internal / dt))
        log_scale, log_weight = _trainables(spec, i, pr, syn, shared, dtype)
        kind = _scheme(spec, i, pr, syn, spike_fn, propagation, log_weight is not None)
        projections.append(Projection(pr.label, syn, pr.pre, pr.post, delay, scales, dtype, kind,
                                      log_scale, log_weight, etrace=online))
    currents = []
    for name, inp in spec.inputs.items():
        if isinstance(inp, ConstantCurrent):
            start = 0 if inp.start is None else int(round(inp.start.internal / dt))
            stop = 2 ** 31 - 1 if inp.stop is None else int(round(inp.stop.internal / dt))
            currents.append((inp.target, inp.amplitude.internal, start, stop))
    return SpikingNetwork.assemble(pops, sources, projections, currents, dt, dtype, spec.initial_state, spec.seed,
                                   online=online)


def _scheme(spec, i, pr, syn, spike_fn, propagation: str, weight_trained: bool) -> str:
    """Propagation scheme of projection i; an event scheme where a gradient must pass is an error."""
    smooth = isinstance(spike_fn, Smooth)
    through_spikes = spike_fn.differentiable and pr.pre in spec.populations and spike_fn.synaptic_grad > 0
    needs = spike_fn.differentiable and (weight_trained or through_spikes) or smooth
    kind = P.choose(propagation, syn, needs_grad=needs)
    if kind == "event" and (smooth or (spike_fn.differentiable and weight_trained)):
        why = "smooth spikes" if smooth else "trained per-synapse weights"
        raise SpecError(f"projection {pr.label!r}: {why} need a differentiable propagation",
                        field=f"projections[{i}]", expected="propagation dense, sparse or auto")
    return kind

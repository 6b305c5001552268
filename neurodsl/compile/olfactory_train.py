"""The olfactory network for training (homeostatic tuning, student fitting), on the ONE core.

:class:`OlfactoryTrainModel` compiles an OlfactoryNetwork + NetworkStructure with
:func:`neurodsl.compile.olfactory.projection_edges` -- the same splitting into E/I/input
projections, the same :class:`~neurodsl.compile.network.SpikingNetwork` cells, receptors and
propagation as the teacher -- with a surrogate-gradient spike function
(:mod:`neurodsl.compile.spikes`) and exposes it functionally to the truncated-BPTT engine
(:mod:`neurodsl.runners.spiking_train`)::

    (state, obs), outs = model.run(params, state, inputs, observe, obs, data, force=teacher)

Free parameters (a dict pytree, log-magnitudes: Dale's signs and the mask never change):
``log_scaling`` (2, 3: post E/I x pre E/I/input), ``log_rec_weight`` (S,) and
``log_ff_weight`` (F,) in the structure's synapse order (:data:`TRAINABLE`); what is not
trained is a constant from the structure.  Every projection's summed weights are multiplied by
``exp(log_scaling[post, pre])`` after propagation, so training the scaling needs no gradient of
a matrix and works with event kernels.

Propagation per projection (``propagation``): ``auto`` uses the teacher's event kernels where no
gradient must pass through the presynaptic spikes or individual weights (the mitral inputs; the
recurrent ones under teacher forcing, whose presynaptic spikes are data), else a dense or sparse
product (:func:`neurodsl.compile.propagation.choose`).

Neurons are in the core's order, E then I (``perm[c]`` is the structure index of neuron c;
``to_structure`` maps back).  ``run``'s ``V`` output is the membrane potential before the reset.

``online=True``: the core in braintrace's layout (:class:`~neurodsl.compile.cells.LIFCondOnline`,
scales through braintrace's element-wise op; the same spikes) for e-prop / D-RTRL
(:class:`neurodsl.compile.online.OlfactoryOnlineModel`, :mod:`neurodsl.runners.eprop`); its
state's receptor variables are tuples of (B, N) arrays.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from neurodsl.compile import propagation as P
from neurodsl.compile.cells import NEURONS, NEVER, LIFCondOnline, PopulationInfo
from neurodsl.compile.kinetics import RECEPTORS
from neurodsl.compile.network import Projection, SpikingNetwork, TrainableParam
from neurodsl.compile.connectivity import type_order
from neurodsl.compile.olfactory import TYPES, projection_edges
from neurodsl.compile.spikes import Smooth, SurrogateHeaviside
from neurodsl.io.structure import NetworkStructure
from neurodsl.spec.olfactory import OlfactoryNetwork

TRAINABLE = {
    "scaling": ("log_scaling",),
    "weights": ("log_rec_weight", "log_ff_weight"),
    "recurrent": ("log_rec_weight",),
    "feedforward": ("log_ff_weight",),
}


def _log(x):
    return np.log(np.maximum(np.abs(np.asarray(x, np.float64)), 1e-12))


@dataclass(frozen=True)
class _Cells:
    V_th: np.ndarray      # (N,) mV, core order


class OlfactoryTrainModel:
    """See the module docstring."""

    def __init__(self, network: OlfactoryNetwork, structure: NetworkStructure, dt: float, *, base_scaling,
                 dtype=jnp.float32, surrogate: str = "fast_sigmoid", scale: float = 10.0,
                 propagation: str = "auto", forward: str = "heaviside", detach_reset: bool = True,
                 recurrent_grad: float = 0.0, trainable: str = "scaling", teacher_forcing: bool = False,
                 online: bool = False):
        s = structure
        self.online = online  # braintrace's layout (LIFCondOnline, etrace scales): neurodsl.runners.eprop
        self.structure, self.network, self.dt, self.dtype = s, network, float(dt), dtype
        self.n, self.n_inputs = s.n, s.n_inputs
        self.perm, _ = type_order(s)
        self.inv = np.empty(s.n, np.int64)
        self.inv[self.perm] = np.arange(s.n)
        self.n_exc = int((s.cell_type == "E").sum())
        self.type_idx = (s.cell_type[self.perm] == "I").astype(np.int32)
        self.base_scaling = np.asarray(base_scaling, np.float64)
        self.rec_pre_type = (s.cell_type[s.rec_pre] == "I").astype(np.int32)
        self.post_type_rec = (s.cell_type[s.rec_post] == "I").astype(np.int32)
        self.post_type_ff = (s.cell_type[s.ff_post] == "I").astype(np.int32)
        self.rec_mag, self.ff_mag = np.abs(s.rec_weight).astype(np.float64), s.ff_weight.astype(np.float64)
        Spike = Smooth if forward == "smooth" else SurrogateHeaviside
        self.spike_fn = Spike(surrogate, scale, recurrent_grad, detach_reset)
        self.trained = set(TRAINABLE[trainable])
        self.net = self._build(propagation, recurrent_grad > 0 and not teacher_forcing)
        self.cells = _Cells(np.concatenate([np.full(p.info.size, p.V_th) for p in self.net.populations.values()]))
        self.propagation = "/".join(sorted({p.scheme.name for p in self.net.projections}))

    def _build(self, propagation: str, grad_through_spikes: bool) -> SpikingNetwork:
        net_spec, dt, dtype = self.network, self.dt, self.dtype
        projections, self._maps = [], []
        for i, j, src, post, syn, idx, gbar in projection_edges(net_spec, self.structure, "input"):
            recurrent = src != "input"
            w_trained = ("log_rec_weight" if recurrent else "log_ff_weight") in self.trained
            needs = w_trained or (recurrent and grad_through_spikes) or isinstance(self.spike_fn, Smooth)
            kind = P.choose(propagation, syn, needs_grad=needs)
            label = f"{src}->{post}"
            ls = TrainableParam(jnp.zeros((), dtype), label=f"scale.{label}", kind="scale")
            lw = TrainableParam(jnp.asarray(_log(syn.weight), dtype), label=f"weight.{label}", kind="weight") \
                if w_trained else None
            projections.append(Projection(label, syn, src, post, 0, gbar, dtype, kind, ls, lw, etrace=self.online))
            self._maps.append((i, j, recurrent, idx))
        receptors_of = {t: [] for t in TYPES}
        for pr in projections:
            receptors_of[pr.post] += [r for r in pr.scales if r not in receptors_of[pr.post]]
        pops, offset = {}, 0
        for t in TYPES:
            size = int((self.structure.cell_type == t).sum())
            if size:
                cell, rec = net_spec.cells[t], net_spec.receptors
                kin = {r: RECEPTORS[rec[r].kind](rec[r], dt) for r in receptors_of[t]}
                cls = LIFCondOnline if self.online else NEURONS[cell.model]
                pops[t] = cls(PopulationInfo(t, size, t, offset), cell, kin, dt, self.spike_fn)
                offset += size
        source = _GivenSource(self.n_inputs) if self.n_inputs else None
        return SpikingNetwork.assemble(pops, {"input": source} if source else {}, projections, [], dt, dtype,
                                       online=self.online)

    # ----------------------------------------------------------------- parameters
    def init_params(self, trainable: str = "scaling", scaling=None, rec_weight=None, ff_weight=None) -> dict:
        """Free parameters of ``trainable`` (see TRAINABLE), from the given or the structure's values."""
        sc = self.base_scaling if scaling is None else scaling
        rw = self.structure.rec_weight if rec_weight is None else rec_weight
        fw = self.ff_mag if ff_weight is None else ff_weight
        full = {"log_scaling": _log(sc), "log_rec_weight": _log(rw), "log_ff_weight": _log(fw)}
        return {k: jnp.asarray(full[k], self.dtype) for k in TRAINABLE[trainable]}

    def effective(self, params: dict) -> dict:
        """Scaling (2, 3), signed recurrent weights (S,) and ff weights (F,) in structure order."""
        sc = jnp.exp(params["log_scaling"]) if "log_scaling" in params else jnp.asarray(self.base_scaling, self.dtype)
        rec = jnp.exp(params["log_rec_weight"]) if "log_rec_weight" in params else jnp.asarray(self.rec_mag, self.dtype)
        ff = jnp.exp(params["log_ff_weight"]) if "log_ff_weight" in params else jnp.asarray(self.ff_mag, self.dtype)
        sign = jnp.asarray(np.where(self.rec_pre_type == 0, 1.0, -1.0), self.dtype)
        return {"scaling": sc, "rec_weight": rec * sign, "ff_weight": ff}

    def core_params(self, params: dict) -> dict:
        """The core's TrainableParam values (label -> log value) for the free parameters."""
        ls = params["log_scaling"] if "log_scaling" in params else jnp.asarray(_log(self.base_scaling), self.dtype)
        out = {}
        for pr, (i, j, recurrent, idx) in zip(self.net.projections, self._maps):
            out[pr.log_scale.label] = ls[i, j]
            if pr.log_weight is not None:
                out[pr.log_weight.label] = params["log_rec_weight" if recurrent else "log_ff_weight"][idx]
        return out

    # ----------------------------------------------------------------- state and dynamics
    def init_state(self, V0) -> dict:
        """State for initial voltages ``V0`` (B, N) in core order; receptors at 0, never spiked."""
        V0 = jnp.asarray(V0, self.dtype)
        b = V0.shape[0]
        pops = {}
        for k, p in self.net.populations.items():
            o, n = p.info.offset, p.info.size
            pops[k] = {"V": V0[:, o:o + n], "last": jnp.full((b, n), NEVER, jnp.int32),
                       "syn": {r: self._syn_zeros(kin.n_vars, b, n) for r, kin in p.kinetics.items()}}
        return {"pops": pops, "history": {}, "key": jax.random.PRNGKey(0), "n": jnp.zeros((), jnp.int32)}

    def _syn_zeros(self, n_vars: int, b: int, n: int):
        """Receptor variables at 0: one (n_vars, B, N) array, or a tuple of (B, N) online."""
        if self.online:
            return tuple(jnp.zeros((b, n), self.dtype) for _ in range(n_vars))
        return jnp.zeros((n_vars, b, n), self.dtype)

    def to_internal(self, x):
        return x[..., self.perm]

    def to_structure(self, x):
        return x[..., self.inv]

    def step(self, cp: dict, state: dict, s_in, force=None):
        """One core step with given mitral spikes ``s_in`` (B, n_in); ``force`` (B, N) teacher forcing."""
        n = state["n"]
        f = None if force is None else {k: force[:, p.info.offset:p.info.offset + p.info.size]
                                        for k, p in self.net.populations.items()}
        core = {k: v for k, v in state.items() if k != "n"}
        new, spikes, v_pre = self.net.step(core, cp, n, {"input": s_in} if self.n_inputs else None, f,
                                           record_v=True)
        names = list(self.net.populations)
        out = {"spikes": jnp.concatenate([spikes[k].astype(self.dtype) for k in names], -1),
               "V": jnp.concatenate([v_pre[k] for k in names], -1)}
        return {**new, "n": n + 1}, out

    def run(self, params: dict, state: dict, inputs, observe=None, obs_state=None, data=None, force=None,
            outputs=("spikes", "V")):
        """Scan :meth:`step` over inputs (T, B, n_inputs); ``observe(obs, out, data_t)`` after each step
        on its outputs with ``data`` scanned alongside; ``force`` (T, B, N) core order.  Returns
        ``(state, obs_state), outs`` with the per-step ``outputs`` stacked over time."""
        cp = self.core_params(params)

        def body(carry, xs):
            st, ob = carry
            s_in, d, fc = xs
            st, out = self.step(cp, st, s_in, fc)
            if observe is not None:
                ob, extra = observe(ob, out, d)
                out = {**out, **extra}
            return (st, ob), {k: v for k, v in out.items() if k in outputs}

        return jax.lax.scan(body, (state, obs_state), (jnp.asarray(inputs), data, force))


class _GivenSource:
    """The mitral cells as a source whose spikes are always given (recorded or drawn by the runner)."""

    def __init__(self, size: int):
        self.size = size

    def sample(self, n, key, batch):  # pragma: no cover - inputs are always given
        raise RuntimeError("the olfactory training model's inputs must be given")


def build_surrogate(network: OlfactoryNetwork, structure: NetworkStructure, dt: float, *, base_scaling,
                    **kw) -> OlfactoryTrainModel:
    """Compile ``network`` with ``structure`` at step ``dt`` (ms) for training; options as the class."""
    return OlfactoryTrainModel(network, structure, dt, base_scaling=base_scaling, **kw)

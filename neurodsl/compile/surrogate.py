"""Differentiable (surrogate-gradient) compilation of an OlfactoryNetwork + NetworkStructure.

The same dynamics as the event-driven teacher (:mod:`neurodsl.compile.olfactory`,
:class:`~neurodsl.compile.network.SpikingNetwork`), as a pure function::

    state, out = model.step(w, state, input_spikes_t)      # w = model.weights(params)

Step order (identical to SpikingNetwork.update): **integrate** (receptor values at
the start of the step, exact receptor decay, the cell's integrator, refractory
clamp ``n - last < t_ref/dt`` keeps V) -> **threshold** -> **reset** ->
**inputs** (given: the recorded or sampled mitral spikes of step n) -> **deliver**
(recurrent and input spikes of step n add to the receptor states; no delays).

Spikes are floats: ``s = H(V - V_th)`` forward *exactly* (``V > V_th``, like the
event model) with the gradient of a braintools surrogate (default
``fast_sigmoid`` = ``braintools.surrogate.SoftSign``: ``0.5 a / (1 + a|x|)^2``)
of ``x = (V - V_th) / (V_th - V_reset)``.  ``forward="smooth"`` replaces the
step by the surrogate's own smooth function (gradients then are exact
derivatives: used to check gradients against finite differences).
``detach_reset`` (default on) stops the gradient through the reset, the usual
choice for surrogate-gradient training of LIF neurons.

Neurons are kept internally in E-then-I order (stable, like the teacher):
``perm[c]`` is the structure index of internal neuron c; spikes and voltages
returned by :meth:`run` are in internal order (``to_structure`` maps back).

Teacher forcing (``run(..., force=...)``, the student's default): the recurrent drive
comes from given presynaptic spikes (a teacher's recording) instead of the network's own;
with dense propagation the products of a whole chunk are one matrix product, or come
precomputed (``(x_E, x_I)``, e.g. :meth:`SurrogateNetwork.force_drive`: sparse x dense on
the host, valid while the recurrent weights are not trained).

Trainable parameters (a dict pytree, all ``log`` of positive magnitudes, so the
sign is fixed by Dale's law and the connectivity mask never changes):
``log_scaling`` (2, 3: post E/I x pre E/I/input), ``log_rec_weight`` (S,) and
``log_ff_weight`` (F,) in the structure's synapse order.  Whatever is not
trained is a constant from the structure.

Synaptic propagation (``propagation``): ``dense`` builds masked dense matrices
once per call of :meth:`weights` (scatter of the synapse list) and multiplies
``s_E @ W_E + s_I @ W_I + s_in @ W_ff`` each step -- fastest to differentiate
on CPU for small and medium networks; ``sparse`` gathers the presynaptic spikes
of each synapse and ``segment_sum``s them onto the postsynaptic neurons (memory
O(synapses), for large networks).  ``auto`` picks ``dense`` when
``N * (N + n_inputs) <= DENSE_MAX`` (4e6 entries, e.g. 1000 neurons + 300
inputs -> 1.3e6) and the matrices are at least 2 % full, else ``sparse``.
"""
from __future__ import annotations

from dataclasses import dataclass

import braintools
import jax
import jax.numpy as jnp
import numpy as np

from neurodsl.compile.kinetics import INTEGRATORS, RECEPTORS
from neurodsl.io.structure import NetworkStructure
from neurodsl.spec.olfactory import PRE_TYPES, OlfactoryNetwork

NEVER = -(2 ** 30)
DENSE_MAX = 4_000_000
TYPES = ("E", "I")

SURROGATES = {
    "fast_sigmoid": braintools.surrogate.SoftSign,
    "sigmoid": braintools.surrogate.Sigmoid,
    "arctan": braintools.surrogate.Arctan,
}

# trainable choice -> parameter names
TRAINABLE = {
    "scaling": ("log_scaling",),
    "weights": ("log_rec_weight", "log_ff_weight"),
    "recurrent": ("log_rec_weight",),
    "feedforward": ("log_ff_weight",),
}


def _log(x):
    return np.log(np.maximum(np.asarray(x, np.float64), 1e-12))


@dataclass(frozen=True)
class _Cells:
    g_L: np.ndarray
    E_L: np.ndarray
    C: np.ndarray
    V_th: np.ndarray
    V_reset: np.ndarray
    ref_steps: np.ndarray
    method: str


class SurrogateNetwork:
    """The compiled differentiable network (constants + pure functions); see the module docstring."""

    def __init__(self, network: OlfactoryNetwork, structure: NetworkStructure, dt: float, *,
                 dtype=jnp.float32, surrogate: str = "fast_sigmoid", scale: float = 10.0,
                 propagation: str = "auto", forward: str = "heaviside", detach_reset: bool = True,
                 base_scaling: np.ndarray | None = None, recurrent_grad: float = 0.0):
        s = structure
        self.structure, self.network, self.dt, self.dtype = s, network, float(dt), dtype
        self.n, self.n_inputs = s.n, s.n_inputs
        self.perm = np.concatenate([np.nonzero(s.cell_type == t)[0] for t in TYPES]).astype(np.int64)
        self.inv = np.empty(s.n, np.int64)
        self.inv[self.perm] = np.arange(s.n)
        self.n_exc = int((s.cell_type == "E").sum())
        ct = s.cell_type[self.perm]
        self.type_idx = (ct == "I").astype(np.int32)  # internal order: 0 = E, 1 = I
        cells = [network.cells[t] for t in ct]
        methods = {c.method for c in cells}
        if len(methods) > 1:
            raise ValueError("E and I cells must use the same integration method")
        self.cells = _Cells(*(np.array([f(c) for c in cells], np.float64) for f in (
            lambda c: c.g_L.internal, lambda c: c.E_L.internal, lambda c: c.capacitance_pF,
            lambda c: c.V_th.internal, lambda c: c.V_reset.internal,
            lambda c: round(c.t_ref.internal / dt))), methods.pop() if methods else "exp_euler")
        self.integrator = INTEGRATORS[self.cells.method]
        # receptors in order of first use over pre types E, I, input (the teacher's order)
        names = list(dict.fromkeys(r for t in PRE_TYPES for r in network.g_bar.get(t, {})))
        self.kinetics = {r: RECEPTORS[network.receptors[r].kind](network.receptors[r], dt) for r in names}
        self.gbar = np.array([[network.g_bar.get(t, {}).get(r, 0.0) and network.g_bar[t][r].internal
                               for t in PRE_TYPES] for r in names], np.float64)  # (R, 3)
        self.base_scaling = (np.asarray(s.scaling, np.float64) * network.scaling_matrix()
                             if base_scaling is None else np.asarray(base_scaling, np.float64))
        # synapses, in internal indices, grouped by presynaptic type
        pre_t = (s.cell_type[s.rec_pre] == "I").astype(np.int32)
        self.rec_pre, self.rec_post = self.inv[s.rec_pre], self.inv[s.rec_post]
        self.rec_pre_type = pre_t
        self.ff_pre, self.ff_post = s.ff_pre.astype(np.int64), self.inv[s.ff_post]
        self.rec_mag, self.ff_mag = np.abs(s.rec_weight).astype(np.float64), s.ff_weight.astype(np.float64)
        self.post_type_rec, self.post_type_ff = self.type_idx[self.rec_post], self.type_idx[self.ff_post]
        self.surrogate_name = surrogate
        self.spike_fn = SURROGATES[surrogate](alpha=scale)
        self.forward, self.detach_reset = forward, detach_reset
        self.recurrent_grad = float(recurrent_grad)
        if propagation == "auto":
            size = self.n * (self.n + self.n_inputs)
            fill = (len(self.rec_pre) + len(self.ff_pre)) / max(size, 1)
            propagation = "dense" if size <= DENSE_MAX and fill >= 0.02 else "sparse"
        if propagation not in ("dense", "sparse"):
            raise ValueError(f"propagation must be auto, dense or sparse, not {propagation!r}")
        self.propagation = propagation

    # ----------------------------------------------------------------- parameters
    def init_params(self, trainable: str = "scaling", scaling=None, rec_weight=None, ff_weight=None) -> dict:
        """Free parameters of ``trainable`` (see TRAINABLE), from the given or the structure's values."""
        sc = self.base_scaling if scaling is None else scaling
        rw = self.structure.rec_weight if rec_weight is None else rec_weight
        fw = self.ff_mag if ff_weight is None else ff_weight
        full = {"log_scaling": _log(sc), "log_rec_weight": _log(np.abs(rw)), "log_ff_weight": _log(fw)}
        return {k: jnp.asarray(full[k], self.dtype) for k in TRAINABLE[trainable]}

    def effective(self, params: dict) -> dict:
        """Scaling (2, 3), signed recurrent weights (S,) and ff weights (F,) in structure order."""
        sc = jnp.exp(params["log_scaling"]) if "log_scaling" in params else jnp.asarray(self.base_scaling, self.dtype)
        rec = (jnp.exp(params["log_rec_weight"]) if "log_rec_weight" in params
               else jnp.asarray(self.rec_mag, self.dtype))
        ff = jnp.exp(params["log_ff_weight"]) if "log_ff_weight" in params else jnp.asarray(self.ff_mag, self.dtype)
        sign = jnp.asarray(np.where(self.rec_pre_type == 0, 1.0, -1.0), self.dtype)
        return {"scaling": sc, "rec_weight": rec * sign, "ff_weight": ff}

    def weights(self, params: dict) -> dict:
        """Per-step propagation operands: unscaled magnitudes (dense matrices or synapse
        vectors) plus per-postsynaptic-neuron scaling ``col`` (3, N) applied after the product
        (so training the scaling never needs a gradient of a matrix)."""
        eff = self.effective(params)
        sc = eff["scaling"]
        col = sc[self.type_idx].T  # (3, N): pre type x post neuron
        rec, ff = jnp.abs(eff["rec_weight"]), eff["ff_weight"]
        if self.propagation == "sparse":
            return {"rec": rec, "ff": ff, "col": col}
        ne, n = self.n_exc, self.n
        is_e = self.rec_pre_type == 0
        pe, pi = self.rec_pre[is_e], self.rec_pre[~is_e] - ne
        W_E = jnp.zeros((ne, n), self.dtype).at[pe, self.rec_post[is_e]].add(rec[is_e])
        W_I = jnp.zeros((n - ne, n), self.dtype).at[pi, self.rec_post[~is_e]].add(rec[~is_e])
        W_ff = jnp.zeros((self.n_inputs, n), self.dtype).at[self.ff_pre, self.ff_post].add(ff)
        return {"E": W_E, "I": W_I, "ff": W_ff, "col": col}

    def _drive(self, w: dict, s, s_in, rec=None):
        """(3, B, N): scaled summed weights of spiking E, I and input presynaptic neurons.
        ``s_in`` is the input spikes (B, n_in), or with ``w["ff_done"]`` already ``s_in @ W_ff``;
        ``rec``: the unscaled recurrent products ``(s_E @ W_E, s_I @ W_I)`` already done."""
        col = w["col"]
        if self.propagation == "dense":
            ne = self.n_exc
            x_in = s_in if w.get("ff_done") else s_in @ w["ff"]
            x_e, x_i = rec if rec is not None else (s[:, :ne] @ w["E"], s[:, ne:] @ w["I"])
            return x_e * col[0], x_i * col[1], x_in * col[2]
        n = self.n
        if rec is not None:
            x_e, x_i = rec
        else:
            contrib = (s[:, self.rec_pre] * w["rec"]).T                # (S, B)
            is_i = jnp.asarray(self.rec_pre_type, bool)[:, None]
            x_e = jax.ops.segment_sum(jnp.where(is_i, 0.0, contrib), self.rec_post, n).T
            x_i = jax.ops.segment_sum(jnp.where(is_i, contrib, 0.0), self.rec_post, n).T
        x_in = jax.ops.segment_sum((s_in[:, self.ff_pre] * w["ff"]).T, self.ff_post, n).T
        return x_e * col[0], x_i * col[1], x_in * col[2]

    # ----------------------------------------------------------------- state
    def init_state(self, V0) -> dict:
        """State for initial voltages ``V0`` (B, N) in *internal* order; receptors at 0, never spiked."""
        V0 = jnp.asarray(V0, self.dtype)
        b = V0.shape[0]
        return {"V": V0, "last": jnp.full((b, self.n), NEVER, jnp.int32), "n": jnp.zeros((), jnp.int32),
                "syn": {r: jnp.zeros((k.n_vars, b, self.n), self.dtype) for r, k in self.kinetics.items()}}

    def to_internal(self, x):
        """Last axis from structure order to internal order."""
        return x[..., self.perm]

    def to_structure(self, x):
        return x[..., self.inv]

    # ----------------------------------------------------------------- dynamics
    def spike(self, V):
        c = self.cells
        x = (V - c.V_th) / (c.V_th - c.V_reset)
        if self.forward == "smooth":
            return self.spike_fn.surrogate_fun(x).astype(V.dtype)
        sg = self.spike_fn(x)
        hard = (V > c.V_th).astype(V.dtype)  # the event model's strict threshold
        return sg - jax.lax.stop_gradient(sg) + hard

    def step(self, w: dict, state: dict, s_in, force=None):
        """One step (module docstring order); returns (state, {"spikes", "V"}) with V before reset.

        ``force`` (teacher forcing): the recurrent drive comes from these presynaptic spikes
        (B, N) -- or, dense, their products ``(x_E, x_I)`` with W_E, W_I -- instead of the
        network's own spikes; each neuron's dynamics are unchanged."""
        c, n = self.cells, state["n"]
        g_syn, gE_syn, I = 0.0, 0.0, 0.0
        syn = {}
        for r, kin in self.kinetics.items():
            g = kin.value(state["syn"][r])
            if kin.E_rev is None:
                I = I + g
            else:
                g_syn = g_syn + g
                gE_syn = gE_syn + g * kin.E_rev
            syn[r] = kin.decay(state["syn"][r])
        V = state["V"]
        V_new = self.integrator(V, c.g_L, c.E_L, c.C, g_syn, gE_syn, I, self.dt)
        not_ref = (n - state["last"]) >= c.ref_steps
        V = jnp.where(not_ref, V_new, V)
        s = self.spike(V) * not_ref
        fired = s > 0.5 if self.forward == "heaviside" else (V > c.V_th) & not_ref
        r = jax.lax.stop_gradient(s) if self.detach_reset else s
        V_out = V
        if self.forward == "heaviside" and self.detach_reset:
            V = jnp.where(fired, c.V_reset, V)
        else:  # exact for s in {0, 1}; differentiable through s
            V = V * (1 - r) + c.V_reset * r
        last = jnp.where(fired, n, state["last"])
        s_rec = s
        if self.recurrent_grad != 1.0:  # forward unchanged (s - s = 0 exactly)
            s_rec = jax.lax.stop_gradient(s) + self.recurrent_grad * (s - jax.lax.stop_gradient(s))
        if force is None:
            x = self._drive(w, s_rec, jnp.asarray(s_in, self.dtype))
        elif isinstance(force, tuple):
            x = self._drive(w, None, jnp.asarray(s_in, self.dtype), rec=force)
        else:
            x = self._drive(w, jnp.asarray(force, self.dtype), jnp.asarray(s_in, self.dtype))
        for i, (name, kin) in enumerate(self.kinetics.items()):
            inc = sum(float(self.gbar[i, j]) * x[j] for j in range(3) if self.gbar[i, j] != 0.0)
            if not isinstance(inc, int):
                syn[name] = kin.add(syn[name], inc)
        return {"V": V, "last": last, "n": n + 1, "syn": syn}, {"spikes": s, "V": V_out}

    def run(self, params_or_w: dict, state: dict, inputs, observe=None, obs_state=None, data=None,
            force=None, outputs=("spikes", "V")):
        """Scan ``step`` over inputs (T, B, n_inputs).

        ``observe(obs_state, out, data_t) -> (obs_state, extra)`` (optional) runs after
        each step on its outputs (spike filters, ISI trackers); ``data`` (a pytree of
        (T, ...) arrays, e.g. teacher spikes) is scanned alongside.  ``force`` (T, B, N),
        internal order: teacher forcing (see :meth:`step`); dense propagation then does the
        recurrent products of the whole chunk at once; or ``(x_E, x_I)`` (each (T, B, N)) those
        products already done (:meth:`force_drive`).  ``outputs``: the per-step outputs
        stacked over time (others are dropped: less memory).  Returns
        ``(state, obs_state), outs``.
        """
        w = self.weights(params_or_w) if _is_params(params_or_w) else params_or_w
        if self.propagation == "dense":  # the input drive of the whole chunk as one product
            inputs = jnp.asarray(inputs, self.dtype) @ w["ff"]
            w = {**w, "ff_done": True}
            if force is not None and not isinstance(force, tuple):
                f = jnp.asarray(force, self.dtype)
                force = (f[..., :self.n_exc] @ w["E"], f[..., self.n_exc:] @ w["I"])

        def body(carry, xs):
            st, ob = carry
            s_in, d, fc = xs
            st, out = self.step(w, st, s_in, fc)
            if observe is not None:
                ob, extra = observe(ob, out, d)
                out = {**out, **extra}
            return (st, ob), {k: v for k, v in out.items() if k in outputs}

        return jax.lax.scan(body, (state, obs_state), (inputs, data, force))


    def force_drive(self, spikes) -> np.ndarray:
        """Host-side teacher-forcing products of presynaptic ``spikes`` (..., B, N) (bool, internal
        order) with the structure's recurrent weight magnitudes (valid while those are not
        trained): (..., 2, B, N) float, [E presynaptic, I presynaptic], unscaled.  A sparse
        (spikes) x dense (W) product: ~100x fewer operations than the dense one at 1 % spiking."""
        import scipy.sparse as sps
        if getattr(self, "_W_host", None) is None:
            ne, n, dt = self.n_exc, self.n, np.dtype(self.dtype)
            is_e = self.rec_pre_type == 0
            W_E, W_I = np.zeros((ne, n), dt), np.zeros((n - ne, n), dt)
            np.add.at(W_E, (self.rec_pre[is_e], self.rec_post[is_e]), self.rec_mag[is_e])
            np.add.at(W_I, (self.rec_pre[~is_e] - ne, self.rec_post[~is_e]), self.rec_mag[~is_e])
            self._W_host = (W_E, W_I)
        W_E, W_I = self._W_host
        s = np.asarray(spikes)
        lead, (B, n) = s.shape[:-2], s.shape[-2:]
        flat = s.reshape(-1, n)
        out = np.empty((flat.shape[0] // B, 2, B, n), W_E.dtype)
        for k, (part, W) in enumerate(((flat[:, :self.n_exc], W_E), (flat[:, self.n_exc:], W_I))):
            out[:, k] = (sps.csr_matrix(part, dtype=W.dtype) @ W).reshape(-1, B, n)
        return out.reshape(*lead, 2, B, n)


def _is_params(d: dict) -> bool:
    return any(k.startswith("log_") for k in d) or not d


def build_surrogate(network: OlfactoryNetwork, structure: NetworkStructure, dt: float, **kw) -> SurrogateNetwork:
    """Compile ``network`` with ``structure`` at step ``dt`` (ms); keyword options as SurrogateNetwork."""
    return SurrogateNetwork(network, structure, dt, **kw)

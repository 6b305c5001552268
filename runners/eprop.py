"""Online training of ``kind: fit`` (``training.method``: eprop, d_rtrl) with braintrace; for
``kind: homeostatic`` the same learner on the olfactory model: :class:`OnlineSpikingUpdate`.

The network is the core compiled in its online layout (``compile_network(..., online=True)``:
:class:`~neurodsl.compile.cells.LIFCondOnline`, trained scales through braintrace's element-wise
op; the same spikes as the core) wrapped in :class:`_Model`, whose step braintrace compiles into
an eligibility-trace learner (``braintrace.compile``).  Every neuron's own states (V and its
receptor variables) form one hidden group, so the traces carry ``d h_t / d log_scale`` through
the neuron's dynamics; what passes between neurons is what the surrogate's ``synaptic_grad``
lets pass, and e-prop / D-RTRL drop it (with ``synaptic_grad: 0`` they equal BPTT over the whole
sequence: tests/runners/test_eprop.py).

Learning signal: the objectives are window statistics (:mod:`neurodsl.runners.fit_objectives`).
At step ``t`` the trackers are advanced by the step's spikes and V (:func:`track_step`), and the
step's loss is the window loss linearised at that running estimate,
``sum_k stop_grad(dL/dobs_k)(obs_t) * obs_t,k / C`` with ``obs_{t-1}`` detached, each term's
derivative rescaled from the elapsed time to the end of the current chunk -- for a rate term
``2 (r_t - target) / target^2 * s_t / (trials N t_c dt)`` with ``t_c`` the window's steps at the
end of the chunk: the derivative truncated BPTT takes (its chunk losses read the running window
at the chunk's end, averaged over ``C`` chunks), with the running estimate ``r_t`` in place of
the chunk-end rate.  (Unscaled, the first steps of a window, whose estimates rest on a few
spikes, would weigh ``T / t`` times more: measured, it overshoots and does not settle.)  Its gradient is accumulated over the update window (``C`` chunks of ``T`` steps,
one sequence: traces are carried across chunks and updates and reset with the state at every
epoch), then the same clipped Adam step as BPTT.  Checkpoints hold the traces.
"""
from __future__ import annotations

from . import fit_objectives as FO
from .fit import FitTrainer

# the float trackers the learning signal differentiates (fit_objectives and spiking_losses name them alike)
FLOAT_FIELDS = ("count", "isi0", "isi1", "isi2", "sV", "sV2")
METHODS = {"eprop": "eprop", "d_rtrl": "d_rtrl"}  # braintrace's parameter-dimension algorithms


def track_step(obs: dict, s, V, dt: float, chunk_start):
    """The trackers after one step (spikes ``s`` and post-reset ``V``, (B, N)); the membrane sums
    restart where ``chunk_start``."""
    import jax.numpy as jnp
    new = FO.track(obs, s[None], V[None], dt, 0)
    keep = jnp.where(chunk_start, 0.0, 1.0).astype(V.dtype)
    return {**new, "sV": obs["sV"] * keep + V, "sV2": obs["sV2"] * keep + V * V,
            "chunk_steps": jnp.where(chunk_start, 0, obs["chunk_steps"]) + 1}


def chunk_end_factors(obs: dict, T: int) -> dict:
    """Per loss kind, the factor that rescales a term's gradient at the running trackers to the
    normaliser the term has at the end of its chunk of ``T`` steps (as BPTT's chunk loss reads it)."""
    chunk_end = ((obs["steps"] - 1) // T + 1) * T
    return {"rate": obs["steps"] / chunk_end, "cv": obs["steps"] / chunk_end,
            "membrane": obs["chunk_steps"] / T, "silent": 1.0}


class OnlineFitTrainer(FitTrainer):
    """:class:`~neurodsl.runners.fit.FitTrainer` with the update of the module docstring."""

    online = True

    def __init__(self, spec):
        # training.online's values (e.g. a learning rate) replace training's for this method
        t = spec.training.for_method()
        super().__init__(spec if t is spec.training else spec.model_copy(update={"training": t}))

    def _make_learner(self):
        import braintrace
        import jax
        import jax.numpy as jnp
        t = self.training
        opts = {"eprop": {"kappa_filter_decay": t.kappa}}
        from neurodsl.compile.online import OnlineModel, trace_states
        self.model = OnlineModel(self.net)
        learner = braintrace.compile(self.model, METHODS[t.method], jnp.asarray(0, jnp.int32), batch_size=self.B,
                                     **opts.get(t.method, {}))
        self.traces = trace_states(learner, {id(s): k for k, s in self.params.items()})
        self.trace_zeros = {k: jax.tree.map(jnp.zeros_like, s.value) for k, s in self.traces.items()}
        return learner

    def _make_update(self):
        import brainstate
        import jax
        import jax.numpy as jnp
        import optax
        self.learner = self._make_learner()
        dt, terms, C = self.net.dt, self.terms, self.C
        weights = jnp.asarray([t.weight for t in terms], self.net.dtype)

        T = self.T

        def signal(obs):
            """sum_i w_i dL_i/dobs at the running trackers, each term scaled from its running
            normaliser to the one at the end of the chunk (as BPTT's chunk loss reads it)."""
            fl = {k: obs[k] for k in FLOAT_FIELDS}
            factor = chunk_end_factors(obs, T)
            G = {k: jnp.zeros_like(v) for k, v in fl.items()}
            for t in terms:
                g = jax.grad(lambda f, t=t: FO.term_value(t, {**obs, **f}, dt, self.V_th))(fl)
                G = {k: G[k] + t.weight * factor[t.kind] * g[k] for k in G}
            return G

        def step_loss(n, obs, chunk_start):
            s, V = self.learner(n)
            new = track_step(jax.lax.stop_gradient(obs), s, V, dt, chunk_start)
            G = jax.lax.stop_gradient(signal(jax.lax.stop_gradient(new)))
            return sum((G[k] * new[k]).sum() for k in FLOAT_FIELDS) / C, new

        grad = brainstate.transform.grad(step_loss, grad_states=self.params, has_aux=True)

        def chunk(carry, steps):
            def body(c, n):
                g_acc, obs = c
                g, obs = grad(n, obs, n == steps[0])
                return (jax.tree.map(jnp.add, g_acc, g), obs), None
            carry, _ = brainstate.transform.scan(body, carry, steps)
            return carry, jnp.stack([FO.term_value(t, carry[1], dt, self.V_th) for t in terms])

        @brainstate.transform.jit
        def update(steps, obs, opt_state):  # steps (C, T)
            obs = FO.reset_window(obs)
            zeros = {k: jnp.zeros_like(p.value) for k, p in self.params.items()}
            (g, obs), parts = brainstate.transform.scan(chunk, (zeros, obs), steps)
            values = {k: p.value for k, p in self.params.items()}
            upd, opt_state = self.optimizer.update(g, opt_state, values)
            for k, v in optax.apply_updates(values, upd).items():
                b = self.params[k].bounds
                self.params[k].value = v if b is None else jnp.clip(v, *b)
            return obs, opt_state, {"loss": (parts * weights).sum(1).mean(), "parts": parts.mean(0),
                                    "grad_norm": optax.global_norm(g), "rate": FO.neuron_rate(obs, dt)}
        return update

    def start_epoch(self, epoch: int) -> int:
        """The state of ``epoch`` (as BPTT) and zero eligibility traces."""
        n = super().start_epoch(epoch)
        for k, s in self.traces.items():
            s.value = self.trace_zeros[k]
        return n

    def snapshot(self) -> dict:
        return {**super().snapshot(), "traces": {k: s.value for k, s in self.traces.items()}}

    def restore(self, tree: dict) -> None:
        import jax
        import jax.numpy as jnp
        super().restore(tree)
        for k, s in self.traces.items():
            s.value = jax.tree.map(jnp.asarray, tree["traces"][k])


class OnlineSpikingUpdate:
    """The update of :mod:`.spiking_train` (kind homeostatic) by e-prop / D-RTRL, with the engine's
    signature ``(params, opt_state, carry, data, step_scale) -> (params, opt_state, carry, metrics)``.

    The model is an :class:`~neurodsl.compile.olfactory_train.OlfactoryTrainModel` built with
    ``online=True``; its core's per-projection scales are what braintrace traces, and the gradient
    of ``log_scaling[post, pre]`` is the sum over its projections (each reads one entry).  The step
    losses are the window losses of :mod:`.spiking_losses` linearised at the running trackers (as
    :class:`OnlineFitTrainer`'s; rate and cv rescaled by steps / chunk end, membrane by the chunk's
    steps / T); ``weight_ratio`` reads the parameters only and is differentiated exactly.  The
    eligibility traces live in ``carry["traces"]`` (checkpointed; zero at every epoch start)."""

    def __init__(self, setup, optimizer):
        import braintrace
        import jax
        import jax.numpy as jnp
        from neurodsl.compile.online import OlfactoryOnlineModel, trace_states
        self.setup, self.optimizer, m, t = setup, optimizer, setup.model, setup.training
        self.B, self.C, self.T = t.batch, t.chunks_per_update, t.chunk_size
        net = m.net
        self.scales = [(pr.log_scale, i, j) for pr, (i, j, _, _) in zip(net.projections, m._maps)]
        self.grad_states = {str(k): st for k, (st, _, _) in enumerate(self.scales)}
        net.init_state(self.B, 0)
        self.module = OlfactoryOnlineModel(m)
        opts = {"eprop": {"kappa_filter_decay": t.kappa}}.get(t.method, {})
        example = (jnp.asarray(0, jnp.int32), jnp.zeros((self.B, m.n_inputs), bool))
        self.learner = braintrace.compile(self.module, METHODS[t.method], *example, batch_size=self.B, **opts)
        self.traces = trace_states(self.learner, {id(st): k for k, st in self.grad_states.items()})
        m.trace_zeros = {k: jax.tree.map(jnp.zeros_like, s.value) for k, s in self.traces.items()}
        self.active = {k: float(w) for k, w in setup.weights.items() if w}
        self._jitted = self._build()

    def __call__(self, params, opt_state, carry, data, step_scale=1.0):
        return self._jitted(params, opt_state, carry, data, step_scale)

    def _signal(self, obs):
        """sum_k w_k dL_k/dobs at the running trackers, rescaled to the chunk end (class docstring)."""
        import jax
        import jax.numpy as jnp
        from . import spiking_losses as SL
        ctx, T = self.setup.ctx, self.T
        fl = {k: obs[k] for k in FLOAT_FIELDS}
        factor = chunk_end_factors(obs, T)
        G = {k: jnp.zeros_like(v) for k, v in fl.items()}
        for name, w in self.active.items():
            if name in factor:
                g = jax.grad(lambda f, name=name: SL.LOSSES[name](ctx, {**obs, **f}, None))(fl)
                G = {k: G[k] + w * factor[name] * g[k] for k in G}
        return G

    def _chunk_fn(self, params):
        import brainstate
        import jax
        from . import spiking_losses as SL
        C, observe = self.C, SL.make_observer(self.setup.ctx)

        def step_loss(n, s_in, obs):
            s, V = self.learner(n, s_in)
            new, _ = observe(jax.lax.stop_gradient(obs), {"spikes": s, "V": V}, None)
            G = jax.lax.stop_gradient(self._signal(jax.lax.stop_gradient(new)))
            return sum((G[k] * new[k]).sum() for k in FLOAT_FIELDS) / C, new

        grad = brainstate.transform.grad(step_loss, grad_states=self.grad_states, has_aux=True)
        eff = SL.effective_for_losses(self.setup.model, params)

        return self._chunk_loop(grad, eff)

    def _chunk_loop(self, grad, eff):
        """One chunk: ``grad(n, *step_inputs, obs)`` accumulated over its steps, then the chunk's losses.
        The scanned inputs are the tuple of (T, B, ...) arrays of :meth:`scanned_inputs` (one argument each)."""
        import brainstate
        import jax
        import jax.numpy as jnp
        from . import spiking_losses as SL
        ctx = self.setup.ctx

        def chunk(carry, inputs):
            def body(c, x):
                g_acc, obs, n = c
                g, obs = grad(n, *x, obs)
                return (jax.tree.map(jnp.add, g_acc, g), obs, n + 1), None
            g, obs, n = carry
            (g, obs, n), _ = brainstate.transform.scan(body, (g, SL.reset_chunk(obs), n), inputs)
            parts = {k: SL.LOSSES[k](ctx, obs, eff) for k in self.active}
            total = sum(self.active[k] * v for k, v in parts.items()) if parts else jnp.zeros((), obs["tau"].dtype)
            return (g, obs, n), (total, parts)
        return chunk

    def _gradient(self, params, g_scales):
        """d loss / d params: the projections' scale gradients summed per (post, pre), plus the
        exact gradient of the parameter-only weight_ratio term."""
        import jax
        import jax.numpy as jnp
        from . import spiking_losses as SL
        G = jnp.zeros_like(params["log_scaling"])
        for k, (_, i, j) in enumerate(self.scales):
            G = G.at[i, j].add(g_scales[str(k)])
        grads = {"log_scaling": G}
        if "weight_ratio" in self.active:
            w, ctx, m = self.active["weight_ratio"], self.setup.ctx, self.setup.model
            gw = jax.grad(lambda p: w * SL.weight_ratio_loss(ctx, None, SL.effective_for_losses(m, p)))(params)
            grads = jax.tree.map(jnp.add, grads, gw)
        return grads

    def write_states(self, params, carry) -> None:
        """The model's states from ``params`` and ``carry``: scales, neuron state, traces."""
        for st, i, j in self.scales:
            st.value = params["log_scaling"][i, j]
        self.setup.model.net.write_state(carry["model"])
        for k, s in self.traces.items():
            s.value = carry["traces"][k]

    def scanned_inputs(self, data) -> tuple:
        """What the window scans over, one (C, T, B, ...) array per step argument of the learner."""
        import jax.numpy as jnp
        return (jnp.asarray(data["inputs"]),)

    def window(self, params, carry, data):
        """The update window from ``carry``: (d loss / d params, trackers, step, chunk losses, parts);
        writes the model's states (:meth:`write_states`) first."""
        import brainstate
        import jax.numpy as jnp
        from . import spiking_losses as SL
        self.write_states(params, carry)
        zeros = {k: jnp.zeros_like(st.value) for k, st in self.grad_states.items()}
        start = (zeros, SL.reset_window(carry["obs"]), carry["model"]["n"])
        (g, obs, n), (tots, parts) = brainstate.transform.scan(self._chunk_fn(params), start,
                                                               self.scanned_inputs(data))
        return self._gradient(params, g), obs, n, tots, parts

    def _build(self):
        import brainstate
        import jax
        import jax.numpy as jnp
        import optax
        from . import spiking_losses as SL
        net, ctx, optimizer = self.setup.model.net, self.setup.ctx, self.optimizer

        def update(params, opt_state, carry, data, step_scale):
            grads, obs, n, tots, parts = self.window(params, carry, data)
            upd, opt_state = optimizer.update(grads, opt_state, params)
            params = optax.apply_updates(params, jax.tree.map(lambda u: u * step_scale, upd))
            stats = SL.type_stats(ctx, obs)
            finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(p)) for p in jax.tree.leaves(params)]))
            carry = {"model": {**net.read_state(), "n": n}, "obs": obs,
                     "traces": {k: s.value for k, s in self.traces.items()}}
            metrics = {"loss": tots.mean(), "grad_norm": optax.global_norm(grads),
                       **{f"loss_{k}": v.mean() for k, v in parts.items()},
                       "rate_E": stats["rate"][0], "rate_I": stats["rate"][1], "cv_E": stats["cv"][0],
                       "cv_I": stats["cv"][1], "active_fraction": stats["active"],
                       "neuron_rate": SL.neuron_rates(ctx, obs), "finite": finite}
            return params, opt_state, carry, metrics
        return brainstate.transform.jit(update)


def make_trainer(spec) -> FitTrainer:
    """The trainer of ``spec.training.method``."""
    return FitTrainer(spec) if spec.training.method == "bptt" else OnlineFitTrainer(spec)


__all__ = ["OnlineFitTrainer", "OnlineSpikingUpdate", "make_trainer", "track_step"]

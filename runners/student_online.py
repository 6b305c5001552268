"""Online training (``training.method``: eprop, d_rtrl) of ``kind: student`` (``neurodsl fit-student``).

:class:`StudentOnlineUpdate` is :class:`~.eprop.OnlineSpikingUpdate` (the olfactory model's
e-prop / D-RTRL update of kind homeostatic) with what the student adds:

* the teacher's recorded spikes reach the learner every step: with ``teacher_forcing`` (the
  default) the projections deliver them instead of the student's own (:class:`StudentOnlineModel`,
  ``SpikingNetwork.update(..., force=...)``), so every neuron's dynamics depend on the parameters
  only through its own states and the diagonal eligibility traces are exact;
* the van Rossum term's learning signal.  Its window loss is ``sum_t (f_t - g_t)^2`` of the
  kernel-filtered student (``f``) and teacher (``g``) trains; the kernel ``K(0) = 0``, so a spike
  moves the loss only through the filter's future values.  The student's filter is therefore
  part of the learner: two (B, N_pop) ``HiddenState`` per population (decay and rise, each
  ``x <- x d + s``, the same recurrence as :func:`.spiking_losses.make_observer`), in the
  neurons' own hidden group, so braintrace's traces carry ``d f_t / d log_scale``.  The step
  loss adds ``stop_grad(dL/df_t) . f_t`` with ``dL/df_t = w 2 (f_t - g_t) dL/d(vr_sq)`` at the
  running window, rescaled to the chunk end as the rate term (``steps / chunk end``).  That is
  the exact derivative of BPTT's chunk-end loss (D^2 is a sum of per-step terms), so with one
  chunk per update the online gradient of the van Rossum term equals BPTT's
  (tests/runners/test_student_eprop.py); the rate term is linearised at the running rates
  (as kind homeostatic's).

The filters are synced from the checkpointed trackers (``carry["obs"]["vr_s"]``) at the start
of every update; the eligibility traces are in ``carry["traces"]`` (checkpointed, zero at
every epoch), so ``--resume`` is bit-identical.
"""
from __future__ import annotations

import brainstate
import jax
import jax.numpy as jnp

from neurodsl.compile.online import OlfactoryOnlineModel, trace_states

from . import spiking_losses as SL
from .eprop import FLOAT_FIELDS, METHODS, OnlineSpikingUpdate, chunk_end_factors


class StudentOnlineModel(OlfactoryOnlineModel):
    """:class:`~neurodsl.compile.online.OlfactoryOnlineModel` with the teacher's spikes ``teacher``
    (B, N, core order) as a step input (delivered by the projections when ``forcing``) and the
    student's van Rossum filter as hidden states; a step returns (spikes, V, filtered spikes)."""

    def __init__(self, model, batch: int, decay: float, rise: float, forcing: bool):
        super().__init__(model)
        self.decay, self.rise, self.forcing, self._n = decay, rise, forcing, model.n
        self.slices = [(k, p.info.offset, p.info.size) for k, p in model.net.populations.items()]
        self.vr = {k: [brainstate.HiddenState(jnp.zeros((batch, n), model.dtype)) for _ in range(2)]
                   for k, _, n in self.slices}

    def init_state(self, batch_size=None, **kw):
        super().init_state(batch_size, **kw)
        self.write_filters(jnp.zeros((2, batch_size or 1, self._n), self._dtype))

    def write_filters(self, vr_s) -> None:
        """Set the filters from the trackers' ``vr_s`` (2, B, N) (core order)."""
        for k, o, n in self.slices:
            for i in range(2):
                self.vr[k][i].value = vr_s[i, :, o:o + n]

    def update(self, n, s_in, teacher):
        force = {k: teacher[:, o:o + m] for k, o, m in self.slices} if self.forcing else None
        spikes = self._net.update(n, {"input": s_in}, force)
        pops = self._net.populations
        out, filt = [], []
        for k, _, _ in self.slices:
            s = spikes[k].astype(self._dtype)
            x_d, x_r = self.vr[k]
            x_d.value = x_d.value * self.decay + s
            x_r.value = x_r.value * self.rise + s
            out.append(s)
            filt.append(x_d.value - x_r.value)
        return (jnp.concatenate(out, -1), jnp.concatenate([p.V.value for p in pops.values()], -1),
                jnp.concatenate(filt, -1))


class StudentOnlineUpdate(OnlineSpikingUpdate):
    """The student's online update (module docstring); the engine's signature, as the parent's."""

    def __init__(self, setup, optimizer):
        import braintrace
        import math
        self.setup, self.optimizer, m, t = setup, optimizer, setup.model, setup.training
        ctx = setup.ctx
        self.B, self.C, self.T = t.batch, t.chunks_per_update, t.chunk_size
        net = m.net
        self.scales = [(pr.log_scale, i, j) for pr, (i, j, _, _) in zip(net.projections, m._maps)]
        self.grad_states = {str(k): st for k, (st, _, _) in enumerate(self.scales)}
        B = int(setup.initial_V(0).shape[0])   # the epoch's trials (training.batch capped at the teacher's)
        self.B = B
        net.init_state(B, 0)
        self.module = StudentOnlineModel(m, B, math.exp(-ctx.dt / ctx.vr_decay), math.exp(-ctx.dt / ctx.vr_rise),
                                         ctx.teacher_forcing)
        opts = {"eprop": {"kappa_filter_decay": t.kappa}}.get(t.method, {})
        example = (jnp.asarray(0, jnp.int32), jnp.zeros((B, m.n_inputs), bool), jnp.zeros((B, m.n), bool))
        self.learner = braintrace.compile(self.module, METHODS[t.method], *example, batch_size=B, **opts)
        self.traces = trace_states(self.learner, {id(st): k for k, st in self.grad_states.items()})
        m.trace_zeros = {k: jax.tree.map(jnp.zeros_like, s.value) for k, s in self.traces.items()}
        self.active = {k: float(w) for k, w in setup.weights.items() if w}
        self._jitted = self._build()

    def _vr_signal(self, obs):
        """dL/df at the running window for the van Rossum term, rescaled to the chunk end."""
        if "van_rossum" not in self.active:
            return jnp.zeros_like(obs["tau"])
        ctx = self.setup.ctx
        dq = jax.grad(lambda q: SL.van_rossum_loss(ctx, {**obs, "vr_sq": q}, None))(obs["vr_sq"])
        err = (obs["vr_s"][0] - obs["vr_s"][1]) - (obs["vr_t"][0] - obs["vr_t"][1])
        return self.active["van_rossum"] * chunk_end_factors(obs, self.T)["rate"] * dq * 2 * err

    def _chunk_fn(self, params):
        C, observe = self.C, SL.make_observer(self.setup.ctx)

        def step_loss(n, s_in, tea, obs):
            s, V, f = self.learner(n, s_in, tea)
            new, _ = observe(jax.lax.stop_gradient(obs), {"spikes": s, "V": V}, tea)
            fixed = jax.lax.stop_gradient(new)
            G = jax.lax.stop_gradient(self._signal(fixed))
            Gf = jax.lax.stop_gradient(self._vr_signal(fixed))
            return (sum((G[k] * new[k]).sum() for k in FLOAT_FIELDS) + (Gf * f).sum()) / C, new

        grad = brainstate.transform.grad(step_loss, grad_states=self.grad_states, has_aux=True)
        eff = SL.effective_for_losses(self.setup.model, params)

        return self._chunk_loop(grad, eff)

    def write_states(self, params, carry) -> None:
        """The base's states plus the van Rossum filters (hidden states of the learner)."""
        super().write_states(params, carry)
        self.module.write_filters(carry["obs"]["vr_s"])

    def scanned_inputs(self, data) -> tuple:
        """The input spikes (C, T, B, n_in) and the teacher's (C, T, B, N)."""
        return (jnp.asarray(data["inputs"]), jnp.asarray(data["teacher"]))


__all__ = ["StudentOnlineModel", "StudentOnlineUpdate"]

"""The spiking core as braintrace sees it (online, eligibility-trace learning).

:func:`neurodsl.compile.compile_network` with ``online=True`` lays the network out for braintrace
(:class:`~neurodsl.compile.cells.LIFCondOnline`; trained scales through braintrace's element-wise
op); :class:`OnlineModel` is the module ``braintrace.compile`` turns into a learner, and
:func:`trace_states` names the learner's eligibility traces for checkpoints.

The event kernels' constant arrays are states (:class:`~neurodsl.compile.events.KernelArrays`,
passed to jitted functions as arguments).  braintrace linearises its step with respect to every
state it reads, and the kernels' CPU FFI calls have no JVP rule; :class:`~neurodsl.compile.events.EventKernel`
reads those arrays through ``stop_gradient`` itself, so nothing is learned through them.
"""
from __future__ import annotations

import brainstate
import jax.numpy as jnp


def trace_states(learner, labels: dict) -> dict:
    """The learner's eligibility-trace states by stable names (``relation.param.group``: braintrace
    keys them by jaxpr variable ids, which differ between processes)."""
    out = {}
    for i, rel in enumerate(learner.graph.hidden_param_op_relations):
        param = next(iter(rel.trainable_param_states.values()))
        for g in rel.hidden_groups:
            out[f"{i}.{labels[id(param)]}.group{g.index}"] = learner.etrace_bwg[(id(rel.y_var), g.index)]
    return out


class OnlineModel(brainstate.nn.Module):
    """braintrace's view of a network compiled with ``online=True``: its modules and states as
    attributes; one call advances step ``n`` and returns (spikes, V after the reset) over the
    network-wide neuron axis."""

    def __init__(self, net):
        super().__init__()
        self.pops, self.projs = dict(net.populations), list(net.projections)
        self.hist, self.key = dict(net.history), net.key
        self._net = net

    def init_state(self, batch_size=None, **kw):
        self._net.init_state(batch_size, 0)

    def update(self, n):
        spikes = self._net.update(n)
        pops = self._net.populations
        V = [p.after_reset(p.read(), n) for p in pops.values()]
        return jnp.concatenate([spikes[k] for k in pops], -1), jnp.concatenate(V, -1)


class OlfactoryOnlineModel(OnlineModel):
    """braintrace's view of an :class:`~neurodsl.compile.olfactory_train.OlfactoryTrainModel` built
    with ``online=True``: one call advances step ``n`` with the given mitral spikes ``s_in`` (B, n_in)
    and returns (spikes as floats, V before the reset) in the model's core order (as its ``run``)."""

    def __init__(self, model):
        super().__init__(model.net)
        self._dtype = model.dtype

    def update(self, n, s_in):
        spikes = self._net.update(n, {"input": s_in})
        pops = self._net.populations
        return (jnp.concatenate([spikes[k].astype(self._dtype) for k in pops], -1),
                jnp.concatenate([p.V.value for p in pops.values()], -1))

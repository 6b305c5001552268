"""Trained quantities of the spiking core: :class:`TrainableParam` states and what a projection's
``trainable`` declaration compiles to (log-magnitudes, so Dale's signs never change)."""
from __future__ import annotations

import brainstate
import jax.numpy as jnp
import numpy as np

from neurodsl.compile.connectivity import Synapses
from neurodsl.spec.spec import NetworkSpec


class TrainableParam(brainstate.ParamState):
    """A trained log-magnitude: ``kind`` 'scale' (scalar) or 'weight' (one per synapse);
    ``bounds`` (log lower, log upper) are enforced after every update (projected gradient)."""

    def __init__(self, value, *, label: str, kind: str, bounds=None):
        super().__init__(value)
        self.label, self.kind, self.bounds = label, kind, bounds


def trainables(spec: NetworkSpec, i: int, pr, syn: Synapses, shared: dict, dtype):
    """(log_scale, log_weight) states of projection i from its ``trainable`` declaration."""
    tr = pr.trainable
    if tr is None:
        return None, None
    rng = np.random.default_rng([spec.seed if tr.seed is None else tr.seed, 7, i])
    bounds = None if tr.bounds is None else (float(np.log(tr.bounds[0])), float(np.log(tr.bounds[1])))
    if tr.param == "scale":
        label = f"scale.{tr.group or pr.label}"
        if label not in shared:
            v = np.asarray(tr.sigma * rng.standard_normal(), np.float64)
            v = v if bounds is None else np.clip(v, *bounds)
            shared[label] = TrainableParam(jnp.asarray(v, dtype), label=label, kind="scale", bounds=bounds)
        return shared[label], None
    mag = np.maximum(np.abs(syn.weight), 1e-12)
    pert = tr.sigma * rng.standard_normal(len(mag))
    pert = pert if bounds is None else np.clip(pert, *bounds)
    lb = None if bounds is None else (np.log(mag) + bounds[0], np.log(mag) + bounds[1])
    return None, TrainableParam(jnp.asarray(np.log(mag) + pert, dtype), label=f"weight.{pr.label}",
                                kind="weight", bounds=lb)

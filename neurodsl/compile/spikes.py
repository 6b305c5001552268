"""Spike functions: how a population turns its membrane potential into spikes (objects chosen at compile time).

Every spike function sees ``x = (V - V_th) / (V_th - V_reset)`` (0 at threshold, 1 one
threshold-to-reset distance above) and the refractory mask, and returns the spikes that
the network propagates:

* :class:`Heaviside` -- ``V > V_th`` as booleans (simulation; event kernels read them);
* :class:`SurrogateHeaviside` -- the same 0/1 values as floats, with the gradient of a
  braintools surrogate (``fast_sigmoid`` = ``braintools.surrogate.SoftSign``,
  ``0.5 a / (1 + a|x|)^2``) in the backward pass (surrogate-gradient training);
* :class:`Smooth` -- the surrogate's own smooth function forward as well, so that gradients
  are exact derivatives (used to check gradients against finite differences).

``synaptic_grad`` scales the gradient that flows *through the propagated spikes* to the
postsynaptic neurons (0: each neuron's own dynamics only; 1: full BPTT).  The forward
values are unchanged.  ``detach_reset`` stops the gradient through the reset.
"""
from __future__ import annotations

from dataclasses import dataclass

import braintools
import jax
import jax.numpy as jnp

SURROGATES = {
    "fast_sigmoid": braintools.surrogate.SoftSign,
    "sigmoid": braintools.surrogate.Sigmoid,
    "arctan": braintools.surrogate.Arctan,
}


@dataclass(frozen=True)
class Heaviside:
    """``V > V_th`` and not refractory, as booleans; not differentiable."""

    binary = True
    differentiable = False
    synaptic_grad = 0.0
    detach_reset = True

    def __call__(self, x, not_ref):
        return (x > 0) & not_ref

    def for_synapses(self, s):
        return s


@dataclass(frozen=True)
class SurrogateHeaviside:
    """Heaviside forward (exactly the event model's strict threshold), surrogate gradient backward."""

    kind: str = "fast_sigmoid"
    alpha: float = 10.0
    synaptic_grad: float = 0.1
    detach_reset: bool = True
    binary = False
    differentiable = True

    def __call__(self, x, not_ref):
        sg = SURROGATES[self.kind](alpha=self.alpha)(x)
        hard = (x > 0).astype(x.dtype)
        return (sg - jax.lax.stop_gradient(sg) + hard) * not_ref

    def for_synapses(self, s):
        if self.synaptic_grad == 1.0:
            return s
        s0 = jax.lax.stop_gradient(s)
        return s0 + self.synaptic_grad * (s - s0) if self.synaptic_grad else s0


@dataclass(frozen=True)
class Smooth(SurrogateHeaviside):
    """The surrogate's smooth function forward too (gradients are exact derivatives)."""

    synaptic_grad: float = 1.0
    detach_reset: bool = False

    def __call__(self, x, not_ref):
        return SURROGATES[self.kind](alpha=self.alpha).surrogate_fun(x).astype(x.dtype) * not_ref


def reset(fn, V, s, fired, V_reset):
    """V after the reset: ``V_reset`` where ``fired`` (the hard threshold; detached) for 0/1 spikes,
    else ``V (1 - s) + V_reset s`` (differentiable through s unless ``detach_reset``)."""
    if fn.binary or (fn.detach_reset and not isinstance(fn, Smooth)):
        return jnp.where(fired, V_reset, V)
    r = jax.lax.stop_gradient(s) if fn.detach_reset else s
    return V * (1 - r) + V_reset * r

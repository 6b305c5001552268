"""Synaptic propagation schemes (objects chosen at compile time): ``spikes (B, n_pre) -> (B, n_post)``.

Each scheme is built once per projection from its :class:`~neurodsl.compile.connectivity.Synapses`
and called as ``prop(spikes, weight=None)``: the summed weights of the spiking presynaptic
neurons onto every postsynaptic neuron, with the synapses' own weights or ``weight`` (one per
synapse, in the synapse list's order: trained weights).

* :class:`Event` -- brainevent event kernels (boolean spikes, cost proportional to the
  spikes; the simulator's scheme).  Spikes enter as booleans, so no gradient flows through
  them; a gradient flows to whatever multiplies the result (a trained scale).
* :class:`Dense` -- a masked dense matrix product, differentiable in spikes and weights;
  fastest for small and medium networks.
* :class:`Sparse` -- gather + ``segment_sum`` over the synapse list, differentiable, memory
  O(synapses), for large networks.

:func:`choose` picks one: ``event`` when nothing needs a gradient through the spikes or the
individual weights, else ``dense`` when the matrix has at most :data:`DENSE_MAX` entries and
is at least 2 % full, else ``sparse``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from neurodsl.compile.connectivity import Synapses
from neurodsl.compile.events import EventKernel, _batch_csr_kernel, batch_kernel, ell_layout

DENSE_MAX = 4_000_000


class Event:
    name = "event"
    differentiable = False

    def __init__(self, syn: Synapses, dtype):
        self.syn, self.dtype = syn, dtype
        self._kernel = None
        self._slot = None

    @property
    def kernel(self) -> EventKernel:
        if self._kernel is None:
            self.build()
        return self._kernel

    def build(self) -> None:
        """Make the kernel's arrays now (arrays made while tracing would leak into later traces)."""
        self._kernel = EventKernel(self.syn, self.dtype, keep_csr=True)  # CSR: per-synapse weights, trials
        deg = np.bincount(self.syn.pre, minlength=self.syn.n_pre)
        self._slot = np.arange(len(self.syn.pre)) - np.repeat(np.cumsum(deg) - deg, deg)

    def _layout(self, weight):
        """Per-synapse weights -> the kernel's single-trial layout (ELL matrix or CSR data)."""
        if self.kernel.layout == "csr":
            return weight
        shape = self.kernel.weight.shape
        return jnp.zeros(shape, weight.dtype).at[self.syn.pre, self._slot].set(weight)

    def __call__(self, spikes, weight=None):
        s = spikes if spikes.dtype == jnp.bool_ else jax.lax.stop_gradient(spikes) > 0.5
        if weight is not None and s.shape[0] > 1 and self.kernel.n_synapses:
            # several trials: the batch-major kernel with these weights (synapse order = CSR order)
            _, idx, ptr, _ = self.kernel.csr
            out = jax.ShapeDtypeStruct((s.shape[0], self.syn.n_post), self.dtype)
            return batch_kernel(_batch_csr_kernel(), out, jnp.asarray(weight, self.dtype), idx, ptr, s)
        return self.kernel(s, None if weight is None else self._layout(weight))


class Dense:
    name = "dense"
    differentiable = True

    def __init__(self, syn: Synapses, dtype):
        self.syn, self.dtype = syn, dtype
        self.shape = (syn.n_pre, syn.n_post)
        self.W = jnp.asarray(syn.dense(), dtype)
        self.pre, self.post = jnp.asarray(syn.pre), jnp.asarray(syn.post)

    def __call__(self, spikes, weight=None):
        W = self.W if weight is None else jnp.zeros(self.shape, self.dtype).at[self.pre, self.post].add(weight)
        return spikes.astype(self.dtype) @ W


class Sparse:
    name = "sparse"
    differentiable = True

    def __init__(self, syn: Synapses, dtype):
        self.syn, self.dtype = syn, dtype
        self.n_post = syn.n_post
        self.w = jnp.asarray(syn.weight, dtype)
        self.pre, self.post = jnp.asarray(syn.pre), jnp.asarray(syn.post)

    def __call__(self, spikes, weight=None):
        w = self.w if weight is None else weight
        contrib = spikes[:, self.pre].astype(self.dtype) * w  # (B, S)
        return jax.ops.segment_sum(contrib.T, self.post, self.n_post, indices_are_sorted=False).T


SCHEMES = {"event": Event, "dense": Dense, "sparse": Sparse}


def choose(kind: str, syn: Synapses, *, needs_grad: bool) -> str:
    """The scheme for one projection: ``kind`` unless ``auto`` (see the module docstring)."""
    if kind != "auto":
        return kind
    if not needs_grad:
        return "event"
    size = syn.n_pre * syn.n_post
    fill = len(syn.pre) / max(size, 1)
    return "dense" if size <= DENSE_MAX and fill >= 0.02 else "sparse"


__all__ = ["Event", "Dense", "Sparse", "SCHEMES", "choose", "DENSE_MAX", "ell_layout"]

"""Event-driven synaptic propagation: brainevent kernels over a projection's synapse list.

:class:`EventKernel` computes ``spikes (B, n_pre) bool -> (B, n_post)`` summed
weights; :class:`SynapseBank` merges projections of one delay into one kernel
call per step.  Used by :class:`neurodsl.compile.propagation.Event`.
"""
from __future__ import annotations

import functools

import brainevent
import jax
import jax.numpy as jnp
import numpy as np
from brainevent._csr.main import _make_binary_task_workspace

from neurodsl.compile.connectivity import Synapses


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


class SynapseBank:
    """All non-trainable event projections with one delay, as a single kernel call.

    Presynaptic space: the sources' spikes concatenated; postsynaptic space: one
    slot of size n_post per (post population, receptor).  Each synapse appears
    once per receptor of its projection with weight ``w * scale``, so the kernel
    output is directly the increment of every receptor state.
    """

    def __init__(self, projections: list, sizes: dict[str, int], dtype):
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

"""Event-driven synaptic propagation: brainevent kernels over a projection's synapse list.

:class:`EventKernel` computes ``spikes (B, n_pre) bool -> (B, n_post)`` summed
weights; :class:`SynapseBank` merges projections of one delay into one kernel
call per step.  Used by :class:`neurodsl.compile.propagation.Event`.

A kernel's arrays live in a :class:`KernelArrays` state, so ``brainstate.transform.jit``
passes them to the compiled function as arguments: closed over, XLA would hold a second
copy of them as constants.  One layout per kernel: ELL (rows padded to the largest
out-degree, int32 indices, weights in the network's dtype) when out-degrees are even
enough, else CSR; a bank writes its ELL directly from the projections' synapse lists.
"""
from __future__ import annotations

import functools

import brainevent
import brainstate
import jax
import jax.numpy as jnp
import numpy as np
from brainevent._csr.main import _make_binary_task_workspace

from neurodsl.compile.connectivity import Synapses


class KernelArrays(brainstate.State):
    """A kernel's constant arrays (never written): a state, so that jitted functions receive
    them as arguments instead of embedding them as constants.  Read through ``stop_gradient``
    (the CPU FFI kernels have no JVP rule; braintrace linearises every state it reads)."""


def _ell_worth(deg: np.ndarray, n_synapses: int) -> int:
    """The ELL width, or 0 when padding would more than double the work (hubs keep CSR)."""
    width = int(deg.max()) if len(deg) else 0
    return 0 if width == 0 or width * len(deg) > 2 * n_synapses + 8 * len(deg) else width


def _slots(pre: np.ndarray, deg: np.ndarray) -> np.ndarray:
    """Each synapse's position within its row (synapses sorted by pre)."""
    return np.arange(len(pre)) - np.repeat(np.cumsum(deg) - deg, deg)


def ell_layout(syn: Synapses, dtype=np.float64) -> tuple[np.ndarray, np.ndarray] | None:
    """Rows padded to the largest out-degree (index 0, weight 0.0), or None when padding
    would more than double the work (hub-dominated connectomes keep CSR)."""
    deg = np.bincount(syn.pre, minlength=syn.n_pre)
    width = _ell_worth(deg, len(syn.pre))
    if not width:
        return None
    idx = np.zeros((syn.n_pre, width), np.int32)
    w = np.zeros((syn.n_pre, width), dtype)
    slot = _slots(syn.pre, deg)
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


@functools.lru_cache(maxsize=None)
def _batch_ell_kernel():
    """The batch-major scatter over an ELL layout: row i's first ``deg[i]`` slots, in order
    (the same additions, in the same order, as the CSR kernel)."""
    import numba

    @numba.njit(parallel=True, fastmath=True, nogil=True, cache=True)
    def kernel(w, idx, deg, spikes, out):
        for b in numba.prange(spikes.shape[0]):
            for k in range(out.shape[1]):
                out[b, k] = 0.0
            for i in range(spikes.shape[1]):
                if spikes[b, i]:
                    for j in range(deg[i]):
                        out[b, idx[i, j]] += w[i, j]

    return kernel


def batch_kernel(kernel, out, *ins):
    """Call a batch-major Numba kernel ``(arrays..., spikes (B, n_pre)) -> out (B, n_post)``, each
    trial computed on its own.  Under a context mesh with a ``trial`` axis (``jax.set_mesh``: the
    runners' data parallelism, :mod:`neurodsl.runners.devices`) it runs per device through
    :func:`jax.shard_map` on that device's trials: GSPMD cannot partition the FFI call and would
    gather every trial's spikes onto every device.  Same result either way."""
    from jax.sharding import PartitionSpec as P
    mesh = jax.sharding.get_abstract_mesh()
    n = 1 if mesh.empty else dict(mesh.shape).get("trial", 1)
    if n == 1 or out.shape[0] % n:
        return brainevent.numba_kernel(kernel, outs=out)(*ins)
    local = brainevent.numba_kernel(kernel, outs=jax.ShapeDtypeStruct((out.shape[0] // n, out.shape[1]), out.dtype))
    specs = (*(P() for _ in ins[:-1]), P("trial", None))
    return jax.shard_map(local, in_specs=specs, out_specs=P("trial", None), check_vma=False)(*ins)


class EventKernel:
    """Event-driven sparse product ``spikes (B, n_pre) -> (B, n_post)`` over a Synapses object.

    One trial: brainevent's fixed-connection-number (ELL) kernel when out-degrees
    are even enough (padding adds ``+0.0`` to neuron 0, which changes nothing), else
    its CSR kernel.  Several trials: a batch-major kernel parallel over trials
    (brainevent's column-major ``binary_fcnmm``/``csrmm`` under vmap does several
    times more work).  brainevent calls CPU kernels through a Python FFI handler,
    tens of microseconds per call, so callers merge projections into few kernels.
    A neuron's inputs within one step are summed in presynaptic order.
    ``keep_csr``: also keep a CSR copy with an ELL layout (per-synapse weights over
    several trials, :class:`neurodsl.compile.propagation.Event`).
    """

    FEW = 16  # spikes per single-trial step handled in XLA, without a kernel call

    def __init__(self, syn: Synapses, dtype, keep_csr: bool = False):
        ell = ell_layout(syn, np.dtype(dtype))
        deg = np.bincount(syn.pre, minlength=syn.n_pre).astype(np.int32)
        indptr = np.concatenate([[0], np.cumsum(deg)]).astype(np.int32) if (ell is None or keep_csr) else None
        csr = None if indptr is None else (syn.weight, syn.post, indptr)
        self._setup((syn.n_pre, syn.n_post), len(syn.pre), dtype, ell, deg, csr)

    @classmethod
    def from_ell(cls, idx: np.ndarray, w: np.ndarray, deg: np.ndarray, n_post: int, n_synapses: int, dtype):
        """A kernel over an ELL layout built elsewhere (:class:`SynapseBank`)."""
        self = cls.__new__(cls)
        self._setup((idx.shape[0], n_post), n_synapses, dtype, (idx, w), deg, None)
        return self

    def _setup(self, shape, n_synapses, dtype, ell, deg, csr):
        # built eagerly: arrays made while tracing would leak into later traces
        self.dtype, self.shape, self.n_synapses = dtype, shape, n_synapses
        self.layout = "ell" if ell is not None else "csr"
        arrays = {}
        if ell is not None:
            arrays["ell"] = (jnp.asarray(ell[0], jnp.int32), jnp.asarray(ell[1], dtype), jnp.asarray(deg, jnp.int32))
        self._workspace = None
        if csr is not None:
            indptr = jnp.asarray(csr[2], jnp.int32)
            arrays["csr"] = (jnp.asarray(csr[0], dtype), jnp.asarray(csr[1], jnp.int32), indptr)
            self._workspace = _make_binary_task_workspace(indptr)
        self.arrays = KernelArrays(arrays)

    @property
    def csr(self):
        """(weights, post indices, indptr, workspace) of the CSR copy, or None."""
        arr = self.arrays.value
        return None if "csr" not in arr else (*arr["csr"], self._workspace)

    @property
    def weight(self):
        """The weights in the single-trial layout (ELL matrix or CSR data)."""
        arr = self.arrays.value
        return arr["ell"][1] if self.layout == "ell" else arr["csr"][0]

    def __call__(self, spikes, weight=None):
        if self.n_synapses == 0:
            return jnp.zeros((spikes.shape[0], self.shape[1]), self.dtype)
        arr = jax.tree.map(jax.lax.stop_gradient, self.arrays.value)  # constants: no tangents (no JVP rule)
        out = jax.ShapeDtypeStruct((spikes.shape[0], self.shape[1]), self.dtype)
        if spikes.shape[0] > 1 and weight is None:
            if self.layout == "ell":
                idx, w, deg = arr["ell"]
                return batch_kernel(_batch_ell_kernel(), out, w, idx, deg, spikes)
            w, idx, ptr = arr["csr"]
            return batch_kernel(_batch_csr_kernel(), out, w, idx, ptr, spikes)
        if self.layout == "ell":
            idx, w_ell, _ = arr["ell"]
            if spikes.shape[0] == 1 and weight is None:
                return self._few_events(spikes[0], idx, w_ell)[None]
            w = w_ell if weight is None else weight
            one = lambda s: brainevent.binary_fcnmv(w, idx, s, shape=self.shape, transpose=True)  # noqa: E731
        else:
            w_csr, idx, ptr = arr["csr"]
            w = w_csr if weight is None else weight
            one = lambda s: brainevent.binary_csrmv(w, idx, ptr, s, shape=self.shape,  # noqa: E731
                                                    transpose=True, workspace=self._workspace)
        return one(spikes[0])[None] if spikes.shape[0] == 1 else jax.vmap(one)(spikes)

    def _few_events(self, s, idx, w):
        """One trial, ELL layout: with at most FEW spikes, gather their rows and scatter-add them
        in XLA (no FFI call); otherwise call brainevent's kernel.  Same summation order (spiking
        rows in presynaptic order, each row in its stored order), so results are identical.
        Unused gather slots add ``+0.0`` to neuron 0 (what an all-zero padding row would)."""
        n_pre = self.shape[0]
        k = min(self.FEW, n_pre)

        def few(s):
            _, rows = jax.lax.top_k(s.astype(jnp.float32), k)  # spiking rows first (int8 is ~20x slower)
            rows = jnp.sort(jnp.where(s[rows], rows, n_pre))
            used = (rows < n_pre)[:, None]
            safe = jnp.minimum(rows, n_pre - 1)
            pad_idx = jnp.where(used, idx[safe], 0)
            pad_w = jnp.where(used, w[safe], jnp.zeros((), w.dtype))
            out = jnp.zeros(self.shape[1], w.dtype)
            return out.at[pad_idx.ravel()].add(pad_w.ravel(), indices_are_sorted=False,
                                               unique_indices=False, mode="promise_in_bounds")

        def many(s):
            return brainevent.binary_fcnmv(w, idx, s, shape=self.shape, transpose=True)

        return jax.lax.cond(s.sum() <= k, few, many, s)


def _bank_ell(parts: list, n_pre: int, dtype, block: int = 1 << 22):
    """The ELL layout of the merged synapse list, written part by part in blocks of synapses
    (``parts``: (pre offset, post offset, Synapses, scale) in merge order), or None when the
    merged list would need sorting (some row's postsynaptic indices would not increase) or is
    not worth an ELL layout.  Row i holds its synapses in merge order: what a stable sort by
    presynaptic index gives, i.e. the merged list's lexicographic order when rows increase."""
    deg = np.zeros(n_pre, np.int64)
    for off, _, syn, _ in parts:
        deg[off:off + syn.n_pre] += np.bincount(syn.pre, minlength=syn.n_pre)
    width = _ell_worth(deg, int(deg.sum()))
    if not width:
        return None
    idx = np.zeros((n_pre, width), np.int32)
    w = np.zeros((n_pre, width), np.dtype(dtype))
    fill = np.zeros(n_pre, np.int64)  # slots already used per row
    for off, post_off, syn, scale in parts:
        d = np.bincount(syn.pre, minlength=syn.n_pre)
        first = np.cumsum(d) - d - fill[off:off + syn.n_pre]  # synapse index of the row's first free slot
        for a in range(0, len(syn.pre), block):
            pre = syn.pre[a:a + block]
            col = np.arange(a, a + len(pre)) - first[pre]
            rows = pre.astype(np.int64) + off
            idx[rows, col] = syn.post[a:a + block].astype(np.int64) + post_off
            w[rows, col] = syn.weight[a:a + block] * scale
        fill[off:off + syn.n_pre] += d
    return (idx, w, deg.astype(np.int32)) if _rows_sorted(idx, deg) else None


def _rows_sorted(idx: np.ndarray, deg: np.ndarray, block: int = 1 << 16) -> bool:
    """Whether every row's first ``deg`` indices are non-decreasing (checked in row blocks)."""
    cols = np.arange(1, idx.shape[1])
    for a in range(0, idx.shape[0], block):
        x, d = idx[a:a + block], deg[a:a + block, None]
        if not np.all((x[:, 1:] >= x[:, :-1]) | (cols >= d)):
            return False
    return True


def _merged(parts: list, n_pre: int, n_slots: int) -> Synapses:
    """The merged synapse list in presynaptic order (as every projection alone), sorted."""
    pre = np.concatenate([syn.pre.astype(np.int32) + np.int32(off) for off, _, syn, _ in parts])
    post = np.concatenate([syn.post.astype(np.int32) + np.int32(p_off) for _, p_off, syn, _ in parts])
    order = np.lexsort((post, pre))
    pre, post = pre[order], post[order]
    w = np.concatenate([syn.weight * scale for _, _, syn, scale in parts])[order]
    return Synapses(pre, post, w, n_pre, n_slots)


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
        pre_off = dict(zip(self.sources, np.cumsum([0] + [sizes[s] for s in self.sources[:-1]]).tolist()))
        slots: dict[tuple[str, str], int] = {}
        n_slots = 0
        parts = []
        for p in projections:
            for r, scale in p.scales.items():
                if (p.post, r) not in slots:
                    slots[(p.post, r)] = n_slots
                    n_slots += sizes[p.post]
                parts.append((pre_off[p.pre], slots[(p.post, r)], p.synapses, scale))
        n_pre = sum(sizes[s] for s in self.sources)
        n_syn = sum(len(syn.pre) for _, _, syn, _ in parts)
        ell = _bank_ell(parts, n_pre, dtype)
        if ell is not None:
            self.kernel = EventKernel.from_ell(*ell, n_slots, n_syn, dtype)
        else:
            self.kernel = EventKernel(_merged(parts, n_pre, n_slots), dtype)
        self.slots = [(post_, r, off, sizes[post_]) for (post_, r), off in slots.items()]

"""Synapse lists from connectivity declarations (numpy; deterministic given a Generator).

Every builder returns ``(pre, post, file_weight)``: int32 index arrays sorted by
``pre`` (CSR order) and, for files that carry weights, their magnitudes (else
``None``).  Builders are registered by ``kind`` in :data:`CONNECTIVITY`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from neurodsl.errors import DataError, Location
from neurodsl.spec import network as N


@dataclass(frozen=True)
class Synapses:
    """A projection's synapses in CSR (pre-major) order; weights are magnitudes."""

    pre: np.ndarray
    post: np.ndarray
    weight: np.ndarray
    n_pre: int
    n_post: int

    @property
    def indptr(self) -> np.ndarray:
        counts = np.bincount(self.pre, minlength=self.n_pre)
        return np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)

    def dense(self) -> np.ndarray:
        W = np.zeros((self.n_pre, self.n_post), dtype=np.float64)
        np.add.at(W, (self.pre, self.post), self.weight)
        return W


def _choose(rng: np.random.Generator, n: int, k: int, exclude: int | None) -> np.ndarray:
    """k distinct integers from range(n), never ``exclude``."""
    if exclude is None:
        return rng.choice(n, size=k, replace=False)
    picks = rng.choice(n - 1, size=k, replace=False)
    return picks + (picks >= exclude)


def _finish(pre_list, post_list) -> tuple[np.ndarray, np.ndarray]:
    pre = np.concatenate(pre_list).astype(np.int32) if pre_list else np.zeros(0, np.int32)
    post = np.concatenate(post_list).astype(np.int32) if post_list else np.zeros(0, np.int32)
    order = np.lexsort((post, pre))
    return pre[order], post[order]


def bernoulli(c: N.Bernoulli, n_pre: int, n_post: int, same: bool, rng: np.random.Generator, _ctx=None):
    self_ok = c.allow_self or not same
    avail = n_post if self_ok else n_post - 1
    counts = rng.binomial(avail, c.p, size=n_pre)
    pres, posts = [], []
    for i in np.nonzero(counts)[0]:
        posts.append(_choose(rng, n_post, int(counts[i]), None if self_ok else int(i)))
        pres.append(np.full(int(counts[i]), i))
    return (*_finish(pres, posts), None)


def fixed_indegree(c: N.FixedIndegree, n_pre: int, n_post: int, same: bool, rng, _ctx=None):
    self_ok = c.allow_self or not same
    if c.k > (n_pre if self_ok else n_pre - 1):
        raise ValueError(f"in-degree {c.k} exceeds the {n_pre} available presynaptic neurons")
    pres, posts = [], []
    for j in range(n_post):
        pres.append(_choose(rng, n_pre, c.k, None if self_ok else j))
        posts.append(np.full(c.k, j))
    return (*_finish(pres, posts), None)


def assembly_labels(n: int, n_assemblies: int) -> np.ndarray:
    """Contiguous, near-equal blocks: neuron i belongs to assembly floor(i * n_assemblies / n)."""
    return (np.arange(n) * n_assemblies // max(n, 1)).astype(np.int32)


def assemblies(c: N.Assemblies, n_pre: int, n_post: int, same: bool, rng, _ctx=None):
    self_ok = c.allow_self or not same
    lab_pre, lab_post = assembly_labels(n_pre, c.n), assembly_labels(n_post, c.n)
    blocks = [np.nonzero(lab_post == a)[0] for a in range(c.n)]
    pres, posts = [], []
    for i in range(n_pre):
        for a, members in enumerate(blocks):
            p = c.p_within if lab_pre[i] == a else c.p_between
            cand = members if self_ok or not (members[0] <= i <= members[-1]) else members[members != i]
            k = rng.binomial(len(cand), p)
            if k:
                posts.append(rng.choice(cand, size=k, replace=False))
                pres.append(np.full(k, i))
    return (*_finish(pres, posts), None)


def all_to_all(c: N.AllToAll, n_pre: int, n_post: int, same: bool, rng, _ctx=None):
    pre, post = np.meshgrid(np.arange(n_pre), np.arange(n_post), indexing="ij")
    keep = np.ones_like(pre, bool) if (c.allow_self or not same) else pre != post
    return pre[keep].astype(np.int32), post[keep].astype(np.int32), None


def one_to_one(c: N.OneToOne, n_pre: int, n_post: int, same: bool, rng, _ctx=None):
    if n_pre != n_post:
        raise ValueError(f"one_to_one needs equal sizes, got {n_pre} -> {n_post}")
    idx = np.arange(n_pre, dtype=np.int32)
    return idx, idx.copy(), None


def read_matrix_file(path: str, key: str | None) -> np.ndarray | dict[str, np.ndarray]:
    p = Path(path)
    try:
        if p.suffix == ".npz":
            with np.load(p) as z:
                if key is not None:
                    if key not in z:
                        raise DataError(f"no array {key!r} in the file", field="key",
                                        expected="one of " + ", ".join(z.files), location=Location(path))
                    return np.asarray(z[key])
                if {"pre", "post"} <= set(z.files):
                    return {k: np.asarray(z[k]) for k in z.files}
                if len(z.files) != 1:
                    raise DataError("several arrays in the npz file and no 'key'", field="key",
                                    expected="key: one of " + ", ".join(z.files), location=Location(path))
                return np.asarray(z[z.files[0]])
        if p.suffix == ".npy":
            return np.load(p)
        text = p.read_text()
        delim = "," if "," in text.splitlines()[0] else None
        return np.loadtxt(p, delimiter=delim, ndmin=2)
    except (ValueError, OSError) as e:
        raise DataError(f"cannot read connectivity: {e}", location=Location(path)) from None


def from_file(c: N.FromFile, n_pre: int, n_post: int, same: bool, rng, ctx: dict):
    arr = read_matrix_file(c.file, c.key)
    loc = Location(c.file)
    if isinstance(arr, dict):
        pre, post = arr["pre"].astype(np.int64), arr["post"].astype(np.int64)
        w = arr.get("weight")
    elif c.layout == "dense" or (c.layout == "auto" and arr.shape == (n_pre, n_post)):
        if arr.shape != (n_pre, n_post):
            raise DataError(f"matrix has shape {arr.shape}", expected=f"({n_pre}, {n_post}) = (pre, post)",
                            location=loc)
        pre, post = np.nonzero(arr)
        w = arr[pre, post]
    elif arr.ndim == 2 and arr.shape[1] in (2, 3):
        pre, post = arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64)
        w = arr[:, 2] if arr.shape[1] == 3 else None
    else:
        raise DataError(f"array of shape {arr.shape} is neither a ({n_pre}, {n_post}) matrix nor an edge list",
                        expected="a dense pre x post matrix or columns pre, post[, weight]", location=loc)
    if len(pre) and (pre.min() < 0 or pre.max() >= n_pre or post.min() < 0 or post.max() >= n_post):
        raise DataError(f"indices out of range (pre max {pre.max()}, post max {post.max()})",
                        expected=f"pre < {n_pre}, post < {n_post}", location=loc)
    if w is not None:
        w = np.asarray(w, dtype=np.float64)
        if c.sign == "signed":
            wrong = (w < 0) if ctx["pre_type"] == "E" else (w > 0)
            if wrong.any():
                raise DataError(
                    f"Dale's law: population {ctx['pre']!r} is {ctx['pre_type']} but {int(wrong.sum())} of its "
                    f"{len(w)} weights have the {'negative' if ctx['pre_type'] == 'E' else 'positive'} sign",
                    field=f"projections[{ctx['index']}].connectivity",
                    expected="weights with the presynaptic cell type's sign, or sign: magnitude",
                    location=loc)
        w = np.abs(w)
    order = np.lexsort((post, pre))
    return pre[order].astype(np.int32), post[order].astype(np.int32), None if w is None else w[order]


TYPES = ("E", "I")


def type_order(s) -> tuple[np.ndarray, np.ndarray]:
    """Per structure neuron: ``perm`` (compiled neuron c, E then I, stable -> structure index)
    and ``local`` (the neuron's position within its type)."""
    perm = np.concatenate([np.nonzero(s.cell_type == t)[0] for t in TYPES]).astype(np.int64)
    local = np.empty(s.n, np.int64)
    for t in TYPES:
        idx = np.nonzero(s.cell_type == t)[0]
        local[idx] = np.arange(len(idx))
    return perm, local


def pair_mask(s, pre_type: str, post_type: str) -> np.ndarray:
    """Which synapses of the structure's ``ff_*`` (pre type ``input``) or ``rec_*`` arrays run
    from ``pre_type`` onto ``post_type``."""
    if pre_type == "input":
        return s.cell_type[s.ff_post] == post_type
    return (s.cell_type[s.rec_pre] == pre_type) & (s.cell_type[s.rec_post] == post_type)


def structure_pair(s, pre_type: str, post_type: str):
    """The synapses of one (pre type, post type) pair of a NetworkStructure, the ONE place a
    structure is split: ``(pre, post, |w|, idx)`` with pre/post indices within their type
    (``input`` = the feedforward channel), sorted by (pre, post), and ``idx`` each synapse's index
    into the structure's ``rec_*`` (pre E/I) or ``ff_*`` (pre input) arrays."""
    _, local = type_order(s)
    pre, post, w = (s.ff_pre, s.ff_post, s.ff_weight) if pre_type == "input" else \
        (s.rec_pre, s.rec_post, s.rec_weight)
    idx = np.nonzero(pair_mask(s, pre_type, post_type))[0]
    pre_idx = pre[idx] if pre_type == "input" else local[pre[idx]]
    order = np.lexsort((local[post[idx]], pre_idx))
    return (pre_idx[order].astype(np.int32), local[post[idx]][order].astype(np.int32),
            np.abs(w[idx][order]).astype(np.float64), idx[order])


def type_size(s, t: str) -> int:
    return int(s.n_inputs) if t == "input" else int((s.cell_type == t).sum())


def from_structure(c: N.FromStructure, n_pre: int, n_post: int, same: bool, rng, ctx: dict):
    s = ctx.get("structure")
    if c.file is not None:
        from neurodsl.io.structure import load_structure
        s = load_structure(c.file)
    if s is None:
        raise DataError("connectivity kind 'structure' without a file, and no structure was given",
                        field=f"projections[{ctx['index']}].connectivity.file",
                        expected="the path of a network_structure.npz")
    want = (type_size(s, c.pre_type), type_size(s, c.post_type))
    if want != (n_pre, n_post):
        raise DataError(f"the structure has {want[0]} {c.pre_type} and {want[1]} {c.post_type} neurons but "
                        f"{ctx['pre']!r} has {n_pre} and the post population {n_post}",
                        field=f"projections[{ctx['index']}].connectivity",
                        location=Location(c.file) if c.file else None,
                        expected=f"population sizes {want[0]} and {want[1]}")
    pre, post, w, _ = structure_pair(s, c.pre_type, c.post_type)
    if c.scaling:
        w = w * float(np.asarray(s.scaling, np.float64)[TYPES.index(c.post_type), ("E", "I", "input").index(c.pre_type)])
    return pre, post, w


CONNECTIVITY: dict[str, Callable] = {
    "bernoulli": bernoulli,
    "fixed_indegree": fixed_indegree,
    "assemblies": assemblies,
    "all_to_all": all_to_all,
    "one_to_one": one_to_one,
    "file": from_file,
    "structure": from_structure,
}


def sample_values(v, n: int, rng: np.random.Generator, sign: float = 1.0) -> np.ndarray:
    """Draw n values (internal units) of a constant or distribution.

    ``sign`` is Dale's sign (+1 E, -1 I) for signed (current) weights, 0 for
    magnitudes (conductances): normal draws are clipped at 0 on the wrong side,
    so no sample ever violates Dale's law.
    """
    from neurodsl.units import Quantity
    if isinstance(v, Quantity):
        out = np.full(n, v.internal)
    elif v.dist == "normal":
        out = rng.normal(v.mean.internal, v.std.internal if v.std.si else 0.0, n)
    elif v.dist == "lognormal":
        m, s = v.mean.internal, v.std.internal
        sigma2 = np.log1p((s / m) ** 2)
        out = rng.lognormal(np.log(m) - sigma2 / 2, np.sqrt(sigma2), n)
    elif v.dist == "uniform":
        out = rng.uniform(v.low.internal, v.high.internal, n)
    else:  # pragma: no cover - the spec union is closed
        raise TypeError(v)
    if sign > 0:
        out = np.maximum(out, 0.0)
    elif sign < 0:
        out = np.minimum(out, 0.0)
    return out


def build_synapses(pr: N.Projection, index: int, n_pre: int, n_post: int, pre_type: str,
                   rng: np.random.Generator, signed: bool = False, structure=None) -> Synapses:
    """Synapses of projection ``pr`` with weights in internal units.

    Conductance weights are magnitudes (clipped at 0); ``signed`` (current
    weights) keeps Dale's sign of the presynaptic type (clipped on the wrong side).
    """
    same = pr.pre == pr.post
    builder = CONNECTIVITY[pr.connectivity.kind]
    ctx = {"pre": pr.pre, "pre_type": pre_type, "index": index, "structure": structure}
    try:
        pre, post, file_w = builder(pr.connectivity, n_pre, n_post, same, rng, ctx)
    except ValueError as e:
        raise DataError(str(e), field=f"projections[{index}].connectivity") from None
    w = sample_values(pr.weight, len(pre), rng, sign=(1.0 if pre_type == "E" else -1.0) if signed else 1.0)
    if file_w is not None:
        w = w * file_w
    return Synapses(pre, post, w, n_pre, n_post)

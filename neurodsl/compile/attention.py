"""Input embeddings of the rate RNN: none, linear, multi-head self-attention across channels.

Every embedding maps one input vector ``u`` (C channels) to ``e(u)`` (``dim``
values; ``C`` for ``none``).  Attention treats the C channels of one time step
as C tokens ``tok_c = u_c * tok_w[c] + tok_b[c]`` (a value embedding plus a
channel embedding), runs H-head scaled dot-product self-attention over them
and returns ``sum_c (tok_c + attn_out_c)`` (residual, summed over tokens).

Embeddings depend on the input vector only, not on the recurrent state.  Two
exact ways to get ``W_in e(u)`` for a minibatch, chosen by :func:`use_table`:

* **table**: evaluate once per *distinct* input vector of the data set
  (``unique_rows``) and gather -- cheap when inputs are piecewise constant
  (83 distinct rows on the 08_13 recording);
* **per batch**: evaluate the batch's own (trial, time) rows with
  :func:`project`, which folds the linear maps of the tokens into the
  attention algebra (``q_c = u_c (tok_w wq)_c + (tok_b wq)_c`` etc.), so a row
  costs ``O(H C^2 + H C N)`` instead of ``O(C D^2)`` -- needed when inputs are
  continuous (eye traces: every (trial, time) is its own row).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

EMBEDDINGS = ("none", "linear", "attention")


def unique_rows(u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct input vectors of ``u`` (..., C): ``(table (n_u, C), index (...), counts (n_u,))``."""
    flat = np.ascontiguousarray(u.reshape(-1, u.shape[-1]))
    table, inv, counts = np.unique(flat, axis=0, return_inverse=True, return_counts=True)
    return table, inv.reshape(u.shape[:-1]).astype(np.int32), counts


def init_embedding(kind: str, n_in: int, dim: int, heads: int, rng: np.random.Generator) -> dict:
    """Parameters of an embedding (numpy float64; the caller casts)."""
    if kind == "none":
        return {}
    if kind == "linear":
        return {"emb_w": rng.normal(0.0, 1.0 / np.sqrt(max(n_in, 1)), (n_in, dim))}
    s = 1.0 / np.sqrt(dim)
    return {"tok_w": rng.normal(0.0, 1.0, (n_in, dim)), "tok_b": rng.normal(0.0, 0.1, (n_in, dim)),
            "wq": rng.normal(0.0, s, (dim, dim)), "wk": rng.normal(0.0, s, (dim, dim)),
            "wv": rng.normal(0.0, s, (dim, dim)), "wo": rng.normal(0.0, s, (dim, dim))}


def embed_dim(kind: str, n_in: int, dim: int) -> int:
    return n_in if kind == "none" else dim


def _heads(x: jnp.ndarray, heads: int) -> jnp.ndarray:
    return x.reshape(*x.shape[:-1], heads, x.shape[-1] // heads)


def attention(params: dict, u: jnp.ndarray, heads: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Embedding ``(n, dim)`` and attention weights ``(n, heads, C_query, C_key)`` of rows ``u`` (n, C)."""
    tok = u[..., None] * params["tok_w"] + params["tok_b"]           # (n, C, D)
    q, k, v = (_heads(tok @ params[w], heads) for w in ("wq", "wk", "wv"))  # (n, C, H, dh)
    scores = jnp.einsum("nchd,nkhd->nhck", q, k) / jnp.sqrt(q.shape[-1])
    att = jax.nn.softmax(scores, axis=-1)
    o = jnp.einsum("nhck,nkhd->nchd", att, v).reshape(tok.shape) @ params["wo"]
    return (tok + o).sum(axis=-2), att


def embed(kind: str, params: dict, u: jnp.ndarray, heads: int = 1) -> jnp.ndarray:
    """``e(u)`` for rows ``u`` (n, C)."""
    if kind == "none":
        return u
    if kind == "linear":
        return u @ params["emb_w"]
    return attention(params, u, heads)[0]


def _fold(params: dict, proj: jnp.ndarray, heads: int) -> dict:
    """Per-channel products of the attention weights that :func:`project` needs (no row dependence)."""
    tw, tb = params["tok_w"], params["tok_b"]                       # (C, D)
    d = tw.shape[-1]
    q = [_heads(x @ params["wq"], heads) for x in (tw, tb)]           # (C, H, dh)
    k = [_heads(x @ params["wk"], heads) for x in (tw, tb)]
    scale = 1.0 / jnp.sqrt(jnp.asarray(d // heads, tw.dtype))
    s = {f"s{i}{j}": jnp.einsum("chd,khd->hck", q[i], k[j]) * scale for i in (0, 1) for j in (0, 1)}
    wo = params["wo"].reshape(heads, d // heads, -1) @ proj            # (H, dh, N)
    v = [_heads(x @ params["wv"], heads) for x in (tw, tb)]           # (C, H, dh)
    return {**s, "vw": jnp.einsum("khd,hdn->hkn", v[0], wo), "vb": jnp.einsum("khd,hdn->hkn", v[1], wo),
            "tw": tw @ proj, "tb": tb.sum(0) @ proj}


def project(kind: str, params: dict, u: jnp.ndarray, proj: jnp.ndarray, heads: int = 1) -> jnp.ndarray:
    """``embed(kind, params, u, heads) @ proj`` for rows ``u`` (n, C), without (n, C, D) tokens.

    Exact algebra (same value up to rounding): scores ``q_c . k_k`` expand into four
    (H, C, C) tensors weighted by ``u_c u_k``, ``u_c``, ``u_k``, 1; the residual sum over
    query tokens only needs each key's total attention ``A_k = sum_c att_ck``.
    """
    if kind == "none":
        return u @ proj
    if kind == "linear":
        return u @ (params["emb_w"] @ proj)
    f = _fold(params, proj, heads)
    # rows on the innermost axis: the (H, C, C, n) element-wise work vectorises over rows (with C
    # innermost, a few channels per vector; see benchmarks/RESULTS.md, continuous inputs)
    ut = u.T                                                                 # (C, n)
    uq, uk = ut[None, :, None, :], ut[None, None, :, :]
    s = {k: f[k][..., None] for k in ("s00", "s01", "s10", "s11")}
    scores = uq * uk * s["s00"] + uq * s["s01"] + uk * s["s10"] + s["s11"]   # (H, C, C, n)
    a = jax.nn.softmax(scores, axis=2).sum(axis=1)                           # (H, C, n)
    return (u @ f["tw"] + f["tb"] + jnp.einsum("hkn,hkm->nm", a * ut[None], f["vw"])
            + jnp.einsum("hkn,hkm->nm", a, f["vb"]))


def row_cost(kind: str, n_in: int, dim: int, heads: int, n_out: int, folded: bool) -> float:
    """Multiply-adds per input row of ``e(u) @ proj``: tokens (table) or :func:`project` (folded)."""
    c, d, h, n = n_in, dim, heads, n_out
    if kind == "none":
        return c * n
    if kind == "linear":
        return c * n if folded else c * d + d * n
    return 7 * h * c * c + 2 * h * c * n + c * n if folded else 4 * c * d * d + 2 * c * c * d + d * n


def use_table(n_table: int, n_batch_rows: int, kind: str, n_in: int, dim: int, heads: int,
              n_out: int) -> bool:
    """Table + gather when embedding every distinct row costs less than the batch's own rows."""
    return n_table * row_cost(kind, n_in, dim, heads, n_out, False) <= \
        n_batch_rows * row_cost(kind, n_in, dim, heads, n_out, True)


def mean_embedding(kind: str, params: dict, table, weights, heads: int = 1, chunk: int = 4096) -> np.ndarray:
    """Weighted mean of ``e(row)`` over ``table`` rows, in chunks (bounded memory for large tables)."""
    w = np.asarray(weights, np.float64)
    total = 0.0
    for i in range(0, len(table), chunk):
        e = np.asarray(embed(kind, params, jnp.asarray(table[i:i + chunk], jnp.float32), heads))
        total = total + w[i:i + chunk] @ e
    return total / w.sum()

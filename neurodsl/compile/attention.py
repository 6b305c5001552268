"""Input embeddings of the rate RNN: none, linear, multi-head self-attention across channels.

Every embedding maps one input vector ``u`` (C channels) to ``e(u)`` (``dim``
values; ``C`` for ``none``).  Attention treats the C channels of one time step
as C tokens ``tok_c = u_c * tok_w[c] + tok_b[c]`` (a value embedding plus a
channel embedding), runs H-head scaled dot-product self-attention over them
and returns ``sum_c (tok_c + attn_out_c)`` (residual, summed over tokens).

Embeddings depend on the input vector only, not on the recurrent state, so the
runner evaluates them once per *distinct* input vector of the data set
(``unique_rows``) and gathers: exact, and far cheaper than per (trial, time).
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

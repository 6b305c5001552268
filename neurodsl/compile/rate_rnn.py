"""The excitatory-inhibitory rate RNN of ``kind: rnn_fit`` (built from an RNNModelSpec).

Units: the recorded neurons first (unit i <-> recorded neuron i, same E/I
type), then ``hidden_exc`` E units, then ``hidden_inh`` I units.  With
``a = dt / tau`` and ``f`` the nonlinearity (rates in sp/s)::

    r[t]   = f(x[t]),   x[0] = h0  (learnable, init h0_init)
    x[t+1] = (1 - a) x[t] + a (W_rec r[t] + W_in e(u[t]) + b) + sqrt(a) noise xi[t]
    W_rec  = |W| * sign(presynaptic type) * (1 - I)        (Dale's law, no self-connections)

which is the generator of :mod:`neurodsl.io.synthetic`.  ``W_in``, ``b`` and ``h0`` carry
sp/s, so they are stored divided by a rate scale ``s`` (the mean recorded rate,
>= 1): the trainable arrays are O(1) and Adam's step size means the same for
all of them; :func:`weights_np` returns the physical values.  ``e`` is the input
embedding (:mod:`neurodsl.compile.attention`); ``W_out`` (optional) reads out
from the E units.  Weights live in ``brainstate.ParamState`` objects of
:class:`RateRNN`; training works on the plain dict ``module.param_tree()`` with
the pure function :func:`simulate` (jit/grad/scan friendly) and writes back
with ``module.load_tree``.
"""
from __future__ import annotations

from dataclasses import dataclass

import brainstate
import jax
import jax.numpy as jnp
import numpy as np

from neurodsl.compile import attention as A


def _softplus_inv(y):
    y = np.maximum(y, 1e-3)
    return y + np.log(-np.expm1(-y))


def _elu_plus_inv(y):
    y = np.maximum(y, 1e-3)
    return np.where(y >= 1.0, y - 1.0, np.log(y))


# name -> (f, numpy inverse used to initialise the bias)
NONLINEARITIES = {
    "softplus": (jax.nn.softplus, _softplus_inv),
    "relu": (jax.nn.relu, lambda y: np.asarray(y, float)),
    "tanh": (jnp.tanh, lambda y: np.arctanh(np.clip(y, -0.99, 0.99))),
    "sigmoid": (jax.nn.sigmoid, lambda y: np.log(np.clip(y, 1e-3, 0.999) / (1 - np.clip(y, 1e-3, 0.999)))),
    "elu_plus": (lambda x: jax.nn.elu(x) + 1.0, _elu_plus_inv),
}


UNROLL = 2  # time steps per scan iteration
CHUNK_ROWS = 1024  # per-batch embedding in chunks of <= this many rows (cache-sized; on CPU 960-row chunks
#                   beat 480 and 3840 for 14 channels: benchmarks/RESULTS.md, continuous inputs)


@dataclass(frozen=True, eq=False)
class RateRNNConfig:
    """Static (non-trainable) description of the network."""

    n_recorded: int
    sign: np.ndarray          # (N,) +1 E, -1 I
    alpha: float              # dt / tau
    noise: float
    nonlinearity: str
    embedding: str
    emb_dim: int
    heads: int
    n_inputs: int
    learn_h0: bool
    readout: int
    scale: float = 1.0        # rate scale (sp/s) of W_in, b and h0 (see module docstring)

    @property
    def n_units(self) -> int:
        return len(self.sign)

    @property
    def e_mask(self) -> np.ndarray:
        return self.sign > 0

    @property
    def i_mask(self) -> np.ndarray:
        return self.sign < 0

    @property
    def ei(self) -> np.ndarray:
        return np.where(self.sign > 0, "E", "I")


def make_config(model_spec, ei_recorded, n_inputs: int, dt_ms: float, scale: float = 1.0) -> RateRNNConfig:
    """Config from an RNNModelSpec, the recorded E/I labels, the data's bin (ms) and rate scale."""
    ei = np.asarray(ei_recorded)
    sign = np.r_[np.where(ei == "E", 1.0, -1.0), np.ones(model_spec.hidden_exc),
                 -np.ones(model_spec.hidden_inh)]
    emb = model_spec.embedding
    return RateRNNConfig(n_recorded=len(ei), sign=sign, alpha=float(dt_ms / model_spec.tau.internal),
                         noise=float(model_spec.noise), nonlinearity=model_spec.nonlinearity,
                         embedding=emb.kind, emb_dim=A.embed_dim(emb.kind, n_inputs, emb.dim),
                         heads=emb.heads, n_inputs=n_inputs, learn_h0=model_spec.learn_h0,
                         readout=model_spec.readout, scale=float(scale))


def init_params(cfg: RateRNNConfig, seed: int, *, spectral_radius: float = 0.9, h0_init: float = 0.1,
                mean_rates: np.ndarray | None = None, input_table: np.ndarray | None = None,
                input_counts: np.ndarray | None = None, dtype=jnp.float32) -> dict:
    """Initial parameters (a dict of arrays).

    ``W``: |N(0,1)| magnitudes, I columns scaled so inhibition balances
    excitation, rescaled to ``spectral_radius``.  With ``mean_rates`` (per
    recorded unit) the bias puts the initial fixed point at those rates, given
    the mean embedded input over ``input_table`` rows weighted by ``input_counts``.
    """
    rng = np.random.default_rng(seed)
    n, e = cfg.n_units, cfg.e_mask
    mag = np.abs(rng.normal(0.0, 1.0, (n, n)))
    if e.any() and (~e).any():
        mag[:, ~e] *= e.sum() / (~e).sum()
    np.fill_diagonal(mag, 0.0)
    w = mag * cfg.sign[None, :]
    radius = float(np.max(np.abs(np.linalg.eigvals(w)))) if n > 1 else 0.0
    if radius > 0:
        mag *= spectral_radius / radius
    p = {"w_rec": mag,
         "w_in": rng.normal(0.0, 0.3 / np.sqrt(cfg.emb_dim), (n, cfg.emb_dim)),
         "b": np.zeros(n), "h0": np.full(n, float(h0_init) / cfg.scale)}
    p.update(A.init_embedding(cfg.embedding, cfg.n_inputs, cfg.emb_dim, cfg.heads, rng))
    if cfg.readout:
        p["w_out"] = rng.normal(0.0, 1.0 / np.sqrt(max(int(e.sum()), 1)), (cfg.readout, int(e.sum())))
    if mean_rates is not None:
        rbar = np.full(n, float(np.mean(mean_rates)))
        rbar[:cfg.n_recorded] = mean_rates
        drive = np.zeros(n)
        if input_table is not None and len(input_table):
            wts = np.ones(len(input_table)) if input_counts is None else np.asarray(input_counts, float)
            mean_e = A.mean_embedding(cfg.embedding, {k: jnp.asarray(v) for k, v in p.items()},
                                      np.asarray(input_table), wts, cfg.heads)
            drive = cfg.scale * p["w_in"] @ mean_e
        finv = NONLINEARITIES[cfg.nonlinearity][1]
        p["b"] = (finv(rbar) - effective_w_np(p["w_rec"], cfg.sign) @ rbar - drive) / cfg.scale
    return {k: jnp.asarray(v, dtype) for k, v in p.items()}


def effective_w_np(w_raw: np.ndarray, sign: np.ndarray) -> np.ndarray:
    w = np.abs(w_raw) * sign[None, :]
    np.fill_diagonal(w, 0.0)
    return w


def effective_w_rec(params: dict, cfg: RateRNNConfig) -> jnp.ndarray:
    """``W_rec`` with Dale's law applied: ``|W| * sign(pre)``, zero diagonal."""
    n = cfg.n_units
    return jnp.abs(params["w_rec"]) * jnp.asarray(cfg.sign, params["w_rec"].dtype)[None, :] \
        * (1.0 - jnp.eye(n, dtype=params["w_rec"].dtype))


def drive_table(params: dict, cfg: RateRNNConfig, input_table: jnp.ndarray) -> jnp.ndarray:
    """``W_in e(u) + b`` for each distinct input vector: (n_u, N)."""
    e = A.embed(cfg.embedding, params, input_table, cfg.heads)
    return cfg.scale * (e @ params["w_in"].T + params["b"])


def drive_rows(params: dict, cfg: RateRNNConfig, u: jnp.ndarray) -> jnp.ndarray:
    """``W_in e(u) + b`` for input rows ``u`` (n, C) without the (n, C, D) tokens
    (:func:`neurodsl.compile.attention.project`): the per-batch path."""
    e = A.project(cfg.embedding, params, u, params["w_in"].T, cfg.heads)
    return cfg.scale * (e + params["b"])


def simulate(params: dict, cfg: RateRNNConfig, input_table: jnp.ndarray, index: jnp.ndarray,
             key: jax.Array | None = None, noise: float | None = None) -> jnp.ndarray:
    """Rates (B, T, N) in sp/s of trials whose input at (b, t) is ``input_table[index[b, t]]``.

    ``key=None`` or ``noise=0`` runs without process noise (deterministic).
    """
    drive = jnp.take(drive_table(params, cfg, input_table), index.T, axis=0)  # (T, B, N)
    return _integrate(params, cfg, drive, key, noise)


def simulate_inputs(params: dict, cfg: RateRNNConfig, u: jnp.ndarray, key: jax.Array | None = None,
                    noise: float | None = None) -> jnp.ndarray:
    """:func:`simulate` for trials given by their inputs ``u`` (B, T, C): each (trial, time) row is
    embedded on its own (no table); same noise draws for the same ``key``."""
    b, t, c = u.shape
    k = max(d for d in range(1, t + 1) if t % d == 0 and (d == 1 or d * b <= CHUNK_ROWS))
    rows = jnp.swapaxes(u, 0, 1).reshape(t // k, k * b, c)          # chunks of k whole time steps
    drive = jax.lax.map(lambda x: drive_rows(params, cfg, x), rows).reshape(t, b, -1)
    return _integrate(params, cfg, drive, key, noise)


def simulate_batch(params: dict, cfg: RateRNNConfig, table, batch: dict, key=None, noise=None):
    """Rates of a batch dict holding either ``u`` (per-batch path) or ``index`` (table path)."""
    if "u" in batch:
        return simulate_inputs(params, cfg, batch["u"], key, noise)
    return simulate(params, cfg, table, batch["index"], key, noise)


def _integrate(params, cfg: RateRNNConfig, drive, key, noise):
    f = NONLINEARITIES[cfg.nonlinearity][0]
    a = cfg.alpha
    noise = cfg.noise if noise is None else noise
    w = effective_w_rec(params, cfg)
    h0 = cfg.scale * (params["h0"] if cfg.learn_h0 else jax.lax.stop_gradient(params["h0"]))
    x0 = jnp.broadcast_to(h0, (drive.shape[1], cfg.n_units)).astype(drive.dtype)
    if key is not None and noise > 0:
        c = a * drive + jax.random.normal(key, drive.shape, drive.dtype) * (np.sqrt(a) * noise)
    else:
        c = a * drive
    wt = a * w.T

    def step(x, c_t):
        r = f(x)
        return (1.0 - a) * x + r @ wt + c_t, r

    _, rates = jax.lax.scan(step, x0, c, unroll=UNROLL)
    return jnp.swapaxes(rates, 0, 1)


def readout(params: dict, cfg: RateRNNConfig, rates: jnp.ndarray) -> jnp.ndarray:
    """``W_out r_E`` (..., readout) or an empty last axis when there is no readout."""
    if not cfg.readout:
        return rates[..., :0]
    return rates[..., np.flatnonzero(cfg.e_mask)] @ params["w_out"].T


def attention_maps(params: dict, cfg: RateRNNConfig, input_table, counts) -> np.ndarray | None:
    """Attention weights (heads, C, C) averaged over the data (rows weighted by ``counts``)."""
    if cfg.embedding != "attention":
        return None
    w = np.asarray(counts, float) / np.sum(counts)
    out = 0.0
    for i in range(0, len(input_table), 4096):  # bounded memory for large (continuous-input) tables
        _, att = A.attention(params, jnp.asarray(input_table[i:i + 4096], params["tok_w"].dtype), cfg.heads)
        out = out + np.einsum("n,nhck->hck", w[i:i + 4096], np.asarray(att))
    return out


def weights_np(params: dict, cfg: RateRNNConfig) -> dict[str, np.ndarray]:
    """Named numpy weights as saved in weights/ (Dale applied to W_rec)."""
    s = cfg.scale
    out = {"W_rec": np.asarray(effective_w_rec(params, cfg)), "W_in": s * np.asarray(params["w_in"]),
           "b": s * np.asarray(params["b"]), "h0": s * np.asarray(params["h0"]),
           "E_mask": cfg.e_mask.copy(), "I_mask": cfg.i_mask.copy()}
    if cfg.readout:
        out["W_out"] = np.asarray(params["w_out"])
    names = {"emb_w": "W_emb", "tok_w": "attn_token_w", "tok_b": "attn_token_b", "wq": "attn_Q",
             "wk": "attn_K", "wv": "attn_V", "wo": "attn_out"}
    out.update({v: np.asarray(params[k]) for k, v in names.items() if k in params})
    return out


class RateRNN(brainstate.nn.Module):
    """brainstate module holding the trainable weights as ``ParamState`` (one per entry)."""

    def __init__(self, cfg: RateRNNConfig, params: dict):
        super().__init__()
        self.cfg = cfg
        self.names = tuple(sorted(params))
        for k in self.names:
            setattr(self, f"p_{k}", brainstate.ParamState(params[k]))

    def param_tree(self) -> dict:
        return {k: getattr(self, f"p_{k}").value for k in self.names}

    def load_tree(self, params: dict) -> None:
        for k in self.names:
            getattr(self, f"p_{k}").value = params[k]

    def update(self, input_table, index, key=None):
        return simulate(self.param_tree(), self.cfg, input_table, index, key)


def build_rate_rnn(model_spec, ei_recorded, n_inputs: int, dt_ms: float, seed: int, **init_kw) -> RateRNN:
    """Module from an RNNModelSpec (see :func:`make_config` and :func:`init_params`)."""
    scale = 1.0 if init_kw.get("mean_rates") is None else max(float(np.mean(init_kw["mean_rates"])), 1.0)
    cfg = make_config(model_spec, ei_recorded, n_inputs, dt_ms, scale)
    params = init_params(cfg, seed, spectral_radius=model_spec.spectral_radius,
                         h0_init=model_spec.h0_init, **init_kw)
    return RateRNN(cfg, params)

"""The E-I rate RNN: Dale's law, initialisation, equivalence with the synthetic generator,
attention embedding, and gradients against finite differences in float64."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import enable_x64

from neurodsl.compile import attention as A
from neurodsl.compile import rate_rnn as R
from neurodsl.io.synthetic import _simulate, make_rnn_export
from neurodsl.runners import rnn_losses as L
from neurodsl.spec.rnn import EmbeddingSpec, RNNModelSpec


def model_spec(kind="attention", **kw):
    return RNNModelSpec(embedding=EmbeddingSpec(kind=kind, dim=8, heads=2), **kw)


def test_dale_masks_and_spectral_radius():
    cfg = R.make_config(model_spec(hidden_exc=2, hidden_inh=1), ["E", "I", "E", "I"], 3, 25.0)
    p = R.init_params(cfg, 0, spectral_radius=0.9)
    w = np.asarray(R.effective_w_rec(p, cfg))
    assert list(cfg.ei) == ["E", "I", "E", "I", "E", "E", "I"]
    assert (w[:, cfg.e_mask] >= 0).all() and (w[:, cfg.i_mask] <= 0).all()
    assert np.all(np.diag(w) == 0)
    assert np.max(np.abs(np.linalg.eigvals(w))) == pytest.approx(0.9, rel=1e-4)
    # Dale holds for any raw weights, e.g. after an optimiser made them negative
    p2 = dict(p, w_rec=-jnp.abs(p["w_rec"]))
    w2 = np.asarray(R.effective_w_rec(p2, cfg))
    assert (w2[:, cfg.e_mask] >= 0).all() and (w2[:, cfg.i_mask] <= 0).all()


def test_matches_synthetic_generator():
    """With the generator's weights the model reproduces its noise-free rates exactly."""
    arrays, truth = make_rnn_export(n_exc=3, n_inh=2, n_trials=8, n_time=22, seed=3)
    u = np.concatenate([arrays["input_fixation_on"][..., None], arrays["input_target_loc"]]
                       + [arrays[f"input_{n}"][..., None] for n in R.A.__name__ and
                          ("go_signal", "reward_on", "eye_x", "eye_y", "is_face", "is_nonface",
                           "is_bullseye", "high_salience", "low_salience")], -1)
    with enable_x64():
        cfg = R.make_config(model_spec("none", noise=0.0), truth["ei"], u.shape[-1], 25.0)
        p = {"w_rec": jnp.asarray(np.abs(truth["W_rec"])), "w_in": jnp.asarray(truth["W_in"]),
             "b": jnp.asarray(truth["b"]), "h0": jnp.asarray(truth["h0"])}
        table, index, _ = A.unique_rows(u)
        r = np.asarray(R.simulate(p, cfg, jnp.asarray(table), jnp.asarray(index)))
    ref = _simulate(truth["W_rec"], truth["W_in"], truth["b"], truth["h0"], u, 0.5, 0.0, None)
    np.testing.assert_allclose(r, ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ref, truth["rates_noiseless"], rtol=1e-12)


def test_unique_rows_and_attention():
    rng = np.random.default_rng(0)
    u = rng.integers(0, 2, (5, 7, 3)).astype(float)
    table, index, counts = A.unique_rows(u)
    np.testing.assert_array_equal(table[index], u)
    assert counts.sum() == 35
    p = {k: jnp.asarray(v, jnp.float32) for k, v in A.init_embedding("attention", 3, 8, 2, rng).items()}
    e, att = A.attention(p, jnp.asarray(table, jnp.float32), 2)
    assert e.shape == (len(table), 8) and att.shape == (len(table), 2, 3, 3)
    np.testing.assert_allclose(np.asarray(att).sum(-1), 1.0, rtol=1e-5)


def test_noise_off_is_deterministic_and_noise_changes_rates():
    cfg = R.make_config(model_spec("linear"), ["E", "I"], 2, 25.0)
    p = R.init_params(cfg, 1, mean_rates=np.array([5.0, 8.0]))
    tab, idx = jnp.eye(2), jnp.zeros((3, 10), jnp.int32)
    a = R.simulate(p, cfg, tab, idx)
    assert np.array_equal(np.asarray(a), np.asarray(R.simulate(p, cfg, tab, idx)))
    b = R.simulate(p, cfg, tab, idx, jax.random.PRNGKey(0))
    assert not np.allclose(np.asarray(a), np.asarray(b))
    assert np.allclose(np.asarray(a)[:, 0], np.asarray(jax.nn.softplus(cfg.scale * p["h0"])))


def _tiny_problem(kind):
    rng = np.random.default_rng(0)
    B, T, C = 6, 8, 3
    u = rng.integers(0, 2, (B, T, C)).astype(float)
    table, index, _ = A.unique_rows(u)
    cond = np.array([0, 0, 0, 1, 1, 1])
    target = rng.gamma(2.0, 3.0, (B, T, 3))
    valid = np.ones((B, T))
    valid[1, 6:] = 0
    onehot = np.eye(2)[cond]
    cfg = R.make_config(model_spec(kind, hidden_inh=1), ["E", "E", "I"], C, 25.0, scale=5.0)
    p = R.init_params(cfg, 0, mean_rates=target.mean((0, 1)), input_table=table, dtype=jnp.float64)
    st = L.target_stats(target, valid, onehot, L.smoothing_matrix(T, 1.0))
    st.update(smooth=L.smoothing_matrix(T, 1.0), smooth_ds=L.smoothing_matrix(T, 1.0, 2))
    st = {k: jnp.asarray(v, jnp.float64) for k, v in st.items()}
    batch = {"index": jnp.asarray(index), "target": jnp.asarray(target), "valid": jnp.asarray(valid),
             "onehot": jnp.asarray(onehot)}
    batch["traj"] = L.trajectories(batch["target"], batch["valid"], st["smooth_ds"], st["mu"], st["sd"])
    return cfg, p, jnp.asarray(table), batch, st


def _jitted(fn, cfg, lc):
    """``fn(params, bal, cfg, table, batch, st, lc, key)`` compiled once, as the training epoch
    compiles it (op by op, the tiny problems below cost hundreds of small compilations)."""
    return jax.jit(lambda p, bal, table, batch, st, key=None: fn(p, bal, cfg, table, batch, st, lc, key))


@pytest.mark.parametrize("kind", ["attention", "none"])
def test_gradients_match_finite_differences_float64(kind):
    with enable_x64():
        cfg, p, table, batch, st = _tiny_problem(kind)
        lc = L.LossConfig(1.0, 0.5, 1e-2, 0.1, 0.05, sinkhorn_eps=0.5, sinkhorn_iters=200,
                          balancing=False, decay=0.9)
        key = jax.random.PRNGKey(1)
        bal = {"m": jnp.zeros(3), "c": jnp.zeros(())}
        total, _, g, _ = jax.jit(lambda q: L.loss_and_grads(q, bal, cfg, table, batch, st, lc, key))(p)
        f = jax.jit(lambda q: L.total_loss(q, cfg, table, batch, st, lc, key)[0])
        assert float(total) == pytest.approx(float(f(p)), rel=1e-10)
        rng = np.random.default_rng(2)
        for name in p:
            d = jnp.asarray(rng.normal(size=p[name].shape))
            h = 1e-6
            fd = (f({**p, name: p[name] + h * d}) - f({**p, name: p[name] - h * d})) / (2 * h)
            an = float(jnp.sum(g[name] * d))
            assert an == pytest.approx(float(fd), rel=1e-6, abs=1e-9), name


def test_balancer_normalises_each_term():
    with enable_x64():
        cfg, p, table, batch, st = _tiny_problem("linear")
        lc = L.LossConfig(1.0, 0.5, 0.0, 0.1, 0.05, 0.5, 50, balancing=True, decay=0.5)
        bal = {"m": jnp.zeros(3), "c": jnp.zeros(())}
        _, _, g1, bal1 = _jitted(L.loss_and_grads, cfg, lc)(p, bal, table, batch, st)
        assert float(bal1["c"]) == pytest.approx(0.5)
        # scaling the PSTH-loss weight by 1000 changes only the mix, not the gradient's scale
        lc2 = L.LossConfig(1000.0, 0.5, 0.0, 0.1, 0.05, 0.5, 50, balancing=True, decay=0.5)
        _, _, g2, _ = _jitted(L.loss_and_grads, cfg, lc2)(p, bal, table, batch, st)
        n1 = np.sqrt(sum(float(jnp.sum(v ** 2)) for v in g1.values()))
        n2 = np.sqrt(sum(float(jnp.sum(v ** 2)) for v in g2.values()))
        assert 0.05 < n2 / n1 < 20


@pytest.mark.parametrize("kind", ["attention", "linear", "none"])
def test_per_batch_embedding_matches_table_path_float64(kind):
    """Embedding each batch's own rows (folded attention algebra) gives the table path's loss and
    gradients: same model, same noise draws, continuous (all-distinct) inputs."""
    with enable_x64():
        cfg, p, table, batch, st = _tiny_problem(kind)
        rng = np.random.default_rng(5)
        u = rng.normal(0.0, 1.0, batch["index"].shape + (table.shape[1],))  # every row distinct
        tab, idx, _ = A.unique_rows(u)
        assert len(tab) == u.shape[0] * u.shape[1]
        b_tab = {**batch, "index": jnp.asarray(idx)}
        b_row = {k: v for k, v in batch.items() if k != "index"} | {"u": jnp.asarray(u)}
        e_tab = np.asarray(A.embed(kind, p, jnp.asarray(tab), cfg.heads) @ p["w_in"].T)
        e_row = np.asarray(A.project(kind, p, jnp.asarray(tab), p["w_in"].T, cfg.heads))
        np.testing.assert_allclose(e_row, e_tab, rtol=1e-10, atol=1e-10)
        lc = L.LossConfig(1.0, 0.5, 1e-2, 0.1, 0.05, 0.5, 50, balancing=True, decay=0.9)
        bal = {"m": jnp.zeros(3), "c": jnp.zeros(())}
        key = jax.random.PRNGKey(3)
        t1, parts1, g1, _ = _jitted(L.loss_and_grads, cfg, lc)(p, bal, jnp.asarray(tab), b_tab, st, key)
        t2, parts2, g2, _ = _jitted(L.loss_and_grads, cfg, lc)(p, bal, jnp.asarray(tab[:1]), b_row, st, key)
        assert float(t2) == pytest.approx(float(t1), rel=1e-10)
        for k in parts1:
            assert float(parts2[k]) == pytest.approx(float(parts1[k]), rel=1e-9, abs=1e-12), k
        for k in g1:
            np.testing.assert_allclose(np.asarray(g2[k]), np.asarray(g1[k]), rtol=1e-8, atol=1e-10, err_msg=k)
        assert float(jnp.abs(g1["w_in"]).sum()) > 0


def test_table_or_per_batch_choice():
    # piecewise-constant inputs (few distinct rows): the table; continuous (one row per bin): per batch
    assert A.use_table(83, 32 * 227, "attention", 14, 56, 4, 34)
    assert not A.use_table(72_000, 32 * 120, "attention", 14, 56, 4, 34)
    assert not A.use_table(5000, 4000, "none", 14, 14, 1, 34)


def _old_loss_and_grads(params, bal, cfg, table, batch, st, lc, key):
    """loss_and_grads as it was before the observation term (three rate terms), for the default check."""
    fwd = lambda p: R.simulate_batch(p, cfg, table, batch, key)[..., :cfg.n_recorded]  # noqa: E731
    rates, vjp = jax.vjp(fwd, params)
    fns = (L.neuron_loss, L.trial_loss, L.rate_loss)
    parts, grads = zip(*[jax.value_and_grad(fn)(rates, batch, st, lc) for fn in fns])
    w = (lc.lambda_neuron, lc.ltrial_scale, lc.lambda_scale + lc.lambda_var)
    norms = jnp.stack([jnp.sqrt((g ** 2).sum((1, 2))).mean() for g in grads])
    m = lc.decay * bal["m"] + (1 - lc.decay) * norms
    c = lc.decay * bal["c"] + (1 - lc.decay)
    ema = m / c
    wsum = max(sum(w), 1e-12)
    g_out = sum((w[i] / wsum) * grads[i] / (ema[i] + 1e-8) for i in range(3))
    (g,) = vjp(g_out)
    l2, g_l2 = jax.value_and_grad(L.l2_term)(params, lc)
    return w[0] * parts[0] + w[1] * parts[1] + parts[2] + l2, jax.tree.map(jnp.add, g, g_l2)


def test_default_observation_leaves_the_losses_unchanged():
    """lambda_obs = 0 (the default), with or without an observation model: three terms, the old values
    and gradients bit for bit; no L_obs logged."""
    from neurodsl.spec.rnn import RNNLossSpec
    cfg, p, table, batch, st = _tiny_problem("linear")
    st = {k: v.astype(jnp.float32) for k, v in st.items()}
    p = {k: v.astype(jnp.float32) for k, v in p.items()}
    batch = {k: (v if k == "index" else v.astype(jnp.float32)) for k, v in batch.items()}
    bal = {"m": jnp.zeros(3), "c": jnp.zeros(())}
    key = jax.random.PRNGKey(4)
    t0, g0 = _jitted(_old_loss_and_grads, cfg, L.LossConfig.from_spec(RNNLossSpec()))(p, bal, table, batch, st, key)
    for obs in ("none", "poisson"):
        lc = L.LossConfig.from_spec(RNNLossSpec(), obs, 25.0)
        assert not lc.obs and len(lc.weights) == 3 and len(L.term_fns(lc)) == 3
        t1, parts, g1, _ = _jitted(L.loss_and_grads, cfg, lc)(p, bal, table, batch, st, key)
        assert "L_obs" not in parts and float(t1) == float(t0)
        assert all(np.array_equal(np.asarray(g1[k]), np.asarray(g0[k])) for k in g0)


@pytest.mark.parametrize("observation", ["poisson", "gaussian"])
def test_observation_loss_gradients_match_finite_differences_float64(observation):
    with enable_x64():
        cfg, p, table, batch, st = _tiny_problem("linear")
        st["obs_sigma"] = jnp.asarray([2.0, 3.0, 4.0])
        lc = L.LossConfig(1.0, 0.0, 0.0, 0.0, 0.0, 0.5, 10, balancing=False, decay=0.9, lambda_obs=2.0,
                          observation=observation, bin_s=0.025)
        assert lc.obs and len(lc.weights) == 4
        bal = {"m": jnp.zeros(4), "c": jnp.zeros(())}
        total, parts, g, _ = _jitted(L.loss_and_grads, cfg, lc)(p, bal, table, batch, st)
        f = jax.jit(lambda q: L.total_loss(q, cfg, table, batch, st, lc)[0])
        assert float(total) == pytest.approx(float(f(p)), rel=1e-10)
        assert float(total) == pytest.approx(float(parts["L_neuron"] + 2.0 * parts["L_obs"] + parts["L_reg"]),
                                             rel=1e-12)
        d = jnp.asarray(np.random.default_rng(7).normal(size=p["b"].shape))
        fd = (f({**p, "b": p["b"] + 1e-6 * d}) - f({**p, "b": p["b"] - 1e-6 * d})) / 2e-6
        assert float(jnp.sum(g["b"] * d)) == pytest.approx(float(fd), rel=1e-6)

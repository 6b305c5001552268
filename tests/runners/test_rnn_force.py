"""training.method: force (runners/rnn_force.py): RLS recovers known weights, Dale's law after every
update, the spec fields do what they say, interrupted + resumed == uninterrupted (bit for bit)."""
from __future__ import annotations

import json
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from neurodsl.compile.rate_rnn import RateRNNConfig, init_params, simulate
from neurodsl.errors import SpecError
from neurodsl.runners import rnn_force as F
from neurodsl.runners.checkpoint import load_checkpoint
from neurodsl.runners.rnn_fit import make_data, run_rnn_fit
from neurodsl.spec import load_spec_text


def _dale_ok(w, sign):
    rows = w.shape[0]
    return (w[:, sign > 0] >= 0).all() and (w[:, sign < 0] <= 0).all() and (np.diag(w[:, :rows]) == 0).all()


def test_rls_recovers_a_linear_teacher():
    """y = Theta* z, Theta* inside Dale's set: block RLS (4 samples per update) finds Theta*."""
    rng = np.random.default_rng(0)
    sign = np.r_[np.ones(4), -np.ones(2)]
    n_rows, m = 3, 6 + 3
    w = np.abs(rng.normal(0, 1, (n_rows, 6))) * sign
    w[np.arange(n_rows), np.arange(n_rows)] = 0.0
    true = np.c_[w, rng.normal(0, 1, (n_rows, 3))]
    z = np.abs(rng.normal(2.0, 1.0, (400, m)))
    y = z @ true.T
    upd = jax.jit(F.rls_update)
    theta, P = jnp.zeros((n_rows, m)), jnp.eye(m) * 10.0
    for i in range(0, 400, 4):
        zb = jnp.asarray(z[i:i + 4], jnp.float32)
        theta, P = upd(theta, P, zb, zb @ theta.T - jnp.asarray(y[i:i + 4], jnp.float32), jnp.asarray(sign))
    assert np.abs(np.asarray(theta) - true).max() < 1e-2


def test_dale_and_masks_hold_after_every_update():
    """A teacher that violates Dale's law pushes every update across the constraints."""
    rng = np.random.default_rng(1)
    sign = np.r_[np.ones(5), -np.ones(3)]
    m = 8 + 2
    bad = rng.normal(0, 2, (4, m))
    upd = jax.jit(F.rls_update)
    theta, P = jnp.zeros((4, m)), jnp.eye(m)
    s = jnp.asarray(sign, jnp.float32)
    for _ in range(60):
        z = jnp.asarray(np.abs(rng.normal(1, 1, (2, m))), jnp.float32)
        theta, P = upd(theta, P, z, z @ theta.T - z @ jnp.asarray(bad, jnp.float32).T, s)
        assert _dale_ok(np.asarray(theta)[:, :8], sign)
    assert np.abs(np.asarray(theta)).max() > 0.1  # it did learn something


def _teacher(hidden: int = 0):
    n_e, n_i, c, t, k = 5, 2, 3, 30, 24
    sign = np.r_[np.ones(n_e), -np.ones(n_i), np.ones(hidden)]
    cfg = RateRNNConfig(n_recorded=n_e + n_i, sign=sign, alpha=0.5, noise=0.0, nonlinearity="softplus",
                        embedding="none", emb_dim=c, heads=1, n_inputs=c, learn_h0=True, readout=0, scale=5.0)
    teach = init_params(cfg, 0, spectral_radius=0.8, mean_rates=np.full(n_e + n_i, 5.0))
    rng = np.random.default_rng(1)
    teach["w_in"] = jnp.asarray(rng.normal(0, 1.0, teach["w_in"].shape), jnp.float32)
    table = jnp.asarray(np.eye(c), jnp.float32)
    index = jnp.asarray(rng.integers(0, c, (k, 1)).repeat(t, 1) * (np.arange(t) > 4), jnp.int32)
    y = simulate(teach, cfg, table, index, None, 0.0)[..., :n_e + n_i]
    student = init_params(cfg, 5, spectral_radius=0.8, mean_rates=np.full(n_e + n_i, 5.0))
    train = {"index": index, "target": y, "valid": jnp.ones(index.shape)}
    return cfg, teach, {**student, "h0": teach["h0"]}, train, table


def _fit(cfg, params, train, table, passes, **kw):
    fc = F.ForceConfig(**{"alpha": 4.0, **kw})
    fn, _, _ = F.make_pass(cfg, fc, train["index"].shape[0])
    st = F.init_state(params, cfg, fc, jax.random.PRNGKey(0))
    mets = []
    for _ in range(passes):
        st, m = fn(st, train, table)
        mets.append(jax.device_get(m))
    return st, mets


def test_force_recovers_a_teacher_network():
    cfg, teach, student, train, table = _teacher()
    r0 = simulate(student, cfg, table, train["index"], None, 0.0)[..., :cfg.n_recorded]
    st, mets = _fit(cfg, student, train, table, 12)
    r = simulate(st["params"], cfg, table, train["index"], None, 0.0)[..., :cfg.n_recorded]
    err0, err = (float(jnp.abs(x - train["target"]).max()) for x in (r0, r))
    assert err < 1.0 and err < 0.1 * err0  # sp/s, rates ~5
    assert mets[-1]["train_mse"] < 0.1 * mets[0]["train_mse"]
    w, wt = (np.asarray(F.theta_of(p, cfg))[:, :cfg.n_units] for p in (st["params"], teach))
    assert np.corrcoef(w.ravel(), wt.ravel())[0, 1] > 0.85
    assert all(m["dale_violation"] <= 0 for m in mets)
    assert _dale_ok(w, cfg.sign)
    assert np.array_equal(np.asarray(F.theta_of(F.params_of(F.theta_of(st["params"], cfg), st["params"], cfg), cfg)),
                          np.asarray(F.theta_of(st["params"], cfg)))  # stored magnitudes == RLS iterate


def test_force_fields_change_what_is_trained():
    cfg, _, student, train, table = _teacher(hidden=2)
    fixed, _ = _fit(cfg, student, train, table, 1, train_input=False)
    assert fixed["P"].shape == (cfg.n_units, cfg.n_units)
    for k in ("w_in", "b"):
        assert np.array_equal(np.asarray(fixed["params"][k]), np.asarray(student[k]))
    both, _ = _fit(cfg, student, train, table, 1)
    assert both["P"].shape == (cfg.n_units + 4, cfg.n_units + 4)
    assert not np.array_equal(np.asarray(both["params"]["w_in"]), np.asarray(student["w_in"]))
    rec = cfg.n_recorded  # hidden units have no target: their rows never change
    assert np.array_equal(np.asarray(both["params"]["w_rec"])[rec:], np.asarray(student["w_rec"])[rec:])
    sparse, _ = _fit(cfg, student, train, table, 1, update_every=3)
    shuffled, _ = _fit(cfg, student, train, table, 1, shuffle=False)
    for other in (sparse, shuffled):
        assert not np.array_equal(np.asarray(other["P"]), np.asarray(both["P"]))
    small, _ = _fit(cfg, student, train, table, 1, alpha=400.0)
    assert float(jnp.trace(small["P"])) < float(jnp.trace(both["P"]))


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("force")
    return make_data(d / "syn.mat", n_exc=4, n_inh=2, n_trials=48, n_time=20, seed=2)[0]


def spec(path, *over):
    text = (f"name: tiny\nkind: rnn_fit\nseed: 3\ndt: 25 ms\ndata: {{file: '{path}', condition_keys: [location]}}\n"
            "model: {embedding: {kind: linear, dim: 6}, hidden_exc: 2, hidden_inh: 1}\n"
            "training: {method: force, force: {alpha: 100, batch_trials: 2}, detail_every: 2,"
            " checkpoint_every: 3, line_every: 1, test_epochs: 3}\n")
    return load_spec_text(text, overrides=list(over))


def test_interrupted_run_resumes_bit_identically(tiny_data, tmp_path, monkeypatch):
    straight = run_rnn_fit(spec(tiny_data, "training.epochs=5"), tmp_path / "a", progress=False, outputs=False)
    entry = F._entry

    def sigint_at_2(eng, epoch, *a):
        if epoch == 2:
            signal.raise_signal(signal.SIGINT)  # StopSignals: finish pass 2, save, return
        return entry(eng, epoch, *a)
    monkeypatch.setattr(F, "_entry", sigint_at_2)
    cut = run_rnn_fit(spec(tiny_data, "training.epochs=5"), tmp_path / "b", progress=False, outputs=False)
    assert cut["interrupted"] and cut["signal"] == "SIGINT" and cut["epoch"] == 2
    monkeypatch.setattr(F, "_entry", entry)
    resumed = run_rnn_fit(spec(tiny_data, "training.epochs=5"), tmp_path / "b", resume=True, progress=False,
                          outputs=False)
    strip = lambda log: json.dumps([{k: v for k, v in e.items() if k != "epoch_time"} for e in log])  # noqa: E731
    assert strip(resumed["log"]) == strip(straight["log"])
    assert all(e["dale_violation"] == 0.0 and np.isfinite(e["pvar_val"]) for e in straight["log"])
    for rel in ("final.npz", "rls/latest.npz"):
        a = load_checkpoint(tmp_path / "a" / "checkpoints" / rel).tree
        b = load_checkpoint(tmp_path / "b" / "checkpoints" / rel).tree
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a), rel
    assert any(k.startswith("['state']['P']") for k in a)
    with pytest.raises(SpecError, match="differs"):
        run_rnn_fit(spec(tiny_data, "training.epochs=6", "training.force.alpha=50"), tmp_path / "b",
                    resume=True, progress=False, outputs=False)


def test_end_to_end_outputs(tiny_data, tmp_path):
    s = run_rnn_fit(spec(tiny_data), tmp_path / "r", test=True, progress=False)
    log = json.loads((tmp_path / "r" / "training_log.json").read_text())
    assert [e["epoch"] for e in log] == [1, 2, 3] and s["batch_size"] == 2
    for k in ("train_loss", "val_loss", "val_correlation", "pvar_train", "pvar_val", "L_neuron"):
        assert np.isfinite(log[-1][k]), k
    assert "per_neuron_correlation" in log[1] and "r_ground_truth" in s
    for rel in ("weights/W_rec.npy", "fit.nc", "training_report.md", "figures/training_curves.png",
                "checkpoints/best.npz", "checkpoints/epoch_00003.npz", "checkpoints/rls/epoch_00003.npz"):
        assert (tmp_path / "r" / rel).is_file(), rel
    w, ei = np.load(tmp_path / "r" / "weights" / "W_rec.npy"), np.load(tmp_path / "r" / "weights" / "E_mask.npy")
    assert _dale_ok(w, np.where(ei, 1.0, -1.0))


@pytest.mark.parametrize("over, match", [
    (("training.force.alpha=0",), "alpha"),
    (("training.force.update_every=0",), "update_every"),
    (("training.force.batch_trials=0",), "batch_trials"),
    (("training.force.colour=1",), "colour"),
    (("training.force.target_smooth=3",), "target_smooth"),
    (("training.method=bptt",), "only used by method: force"),
    (("model.learn_h0=false",), "learn_h0"),
    (("training.method=rtrl",), "method"),
])
def test_spec_rejects(tiny_data, over, match):
    with pytest.raises(SpecError, match=match):
        spec(tiny_data, *over)


def test_spec_accepts(tiny_data):
    t = spec(tiny_data, "training.force.target_smooth=50 ms", "training.force.update_every=2").spec.training
    assert t.method == "force" and t.force.target_smooth.internal == 50.0 and t.force.update_every == 2
    assert t.force.alpha == 100 and t.force.train_input and t.force.h0_from_data
    s = spec(tiny_data, "model.learn_h0=false", "training.force.h0_from_data=false").spec
    assert not s.training.force.h0_from_data

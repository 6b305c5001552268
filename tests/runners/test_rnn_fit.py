"""rnn_fit end to end on tiny synthetic data: --test pipeline, outputs, Dale after training,
bit-identical resume, checkpoint integrity, recovery of a known E-I RNN, real-data loading."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from neurodsl.errors import SpecError
from neurodsl.runners.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from neurodsl.runners.rnn_fit import make_data, prepare_data, run_rnn_fit
from neurodsl.spec import load_spec_text

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "activity" / \
    "rnn_export_Newton_08_13_2025_SC.mat"


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("rnn")
    paths = make_data(d / "syn.mat", n_exc=4, n_inh=2, n_trials=96, n_time=24, seed=1)
    assert all(p.is_file() for p in paths)
    return paths[0]


def spec(path, *over, kind="linear"):
    text = (f"name: tiny\nkind: rnn_fit\nseed: 3\ndt: 25 ms\ndata: {{file: '{path}'}}\n"
            f"model: {{embedding: {{kind: {kind}, dim: 8, heads: 2}}, hidden_exc: 2, hidden_inh: 1}}\n"
            "training: {detail_every: 2, checkpoint_every: 2, line_every: 1, test_epochs: 3}\n")
    return load_spec_text(text, overrides=list(over))


def test_test_mode_end_to_end(tiny_data, tmp_path):
    out = tmp_path / "res"
    s = run_rnn_fit(spec(tiny_data, kind="attention"), out, test=True, progress=False)
    assert s["epochs"] == 3 and s["test"]
    log = json.loads((out / "training_log.json").read_text())
    assert [e["epoch"] for e in log] == [1, 2, 3]
    for k in ("train_loss", "val_loss", "val_correlation", "learning_rate", "epoch_time", "L_neuron",
              "L_trial", "L_reg"):
        assert np.isfinite(log[0][k])
    assert {"per_neuron_correlation", "E_mean_correlation", "h0", "fano_model", "fano_real"} <= set(log[1])
    fit = xr.open_dataset(out / "fit.nc")
    assert {"trial", "time", "neuron", "pc"} <= set(fit.dims)
    assert fit.sizes["neuron"] == 6 and "ei" in fit.coords and "trial_condition" in fit.coords
    # Dale's law and E/I masks after training; recorded I neurons are fitted by I units
    w, uei = fit["W_rec"].values, fit["unit_ei"].values
    assert (w[:, uei == "E"] >= 0).all() and (w[:, uei == "I"] <= 0).all() and (np.diag(w) == 0).all()
    assert list(uei[:6]) == list(fit["ei"].values) and list(uei[6:]) == ["E", "E", "I"]
    assert np.array_equal(np.load(out / "weights" / "E_mask.npy"), uei == "E")
    for rel in ("weights/W_in.npy", "weights/attn_Q.npy", "weights/h0.npy", "outputs/rate_model.npy",
                "outputs/psth_target.npy", "metrics/r_pooled.npy", "metrics/fano_model.npy",
                "population/pca_components.npy", "figures/training_curves.png", "figures/attention.png",
                "figures/pca.png", "checkpoints/best.npz", "checkpoints/final.npz", "checkpoints/latest.npz",
                "checkpoints/epoch_00002.npz"):
        assert (out / rel).is_file(), rel
    report = (out / "training_report.md").read_text()
    assert "noise ceiling" in report and "xr.open_dataset" in report and "mask=none" in report
    assert 0.0 < s["ceiling_pooled"] <= 1.0 and "r_ground_truth" in s


def test_resume_is_bit_identical(tiny_data, tmp_path):
    straight = run_rnn_fit(spec(tiny_data, "training.epochs=4"), tmp_path / "a", progress=False, outputs=False)
    run_rnn_fit(spec(tiny_data, "training.epochs=2"), tmp_path / "b", progress=False, outputs=False)
    resumed = run_rnn_fit(spec(tiny_data, "training.epochs=4"), tmp_path / "b", resume=True, progress=False,
                          outputs=False)
    strip = lambda log: json.dumps([{k: v for k, v in e.items() if k != "epoch_time"} for e in log])  # noqa: E731
    assert strip(resumed["log"]) == strip(straight["log"])
    a = load_checkpoint(tmp_path / "a" / "checkpoints" / "final.npz").tree
    b = load_checkpoint(tmp_path / "b" / "checkpoints" / "final.npz").tree
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    with pytest.raises(SpecError, match="differs"):
        run_rnn_fit(spec(tiny_data, "training.epochs=5", "model.noise=0.2"), tmp_path / "b", resume=True,
                    progress=False, outputs=False)


def test_checkpoint_checksum_and_fallback(tmp_path):
    p = tmp_path / "c.npz"
    save_checkpoint(p, {"a": np.arange(3.0), "b": [np.ones(2), 4]}, {"epoch": 1}, rng_state={"s": 1})
    save_checkpoint(p, {"a": np.arange(3.0) + 1, "b": [np.ones(2), 5]}, {"epoch": 2})
    c = load_checkpoint(p, like={"a": np.zeros(3), "b": [np.zeros(2), 0]})
    assert c.metadata["epoch"] == 2 and c.tree["b"][1] == 5 and np.array_equal(c.tree["a"], [1, 2, 3])
    raw = bytearray(p.read_bytes())
    raw[200] ^= 0xFF
    p.write_bytes(bytes(raw))
    c = load_checkpoint(p)
    assert c.metadata["epoch"] == 1 and c.rng_state == {"s": 1} and c.path.name == "c.prev.npz"
    p.with_name("c.prev.npz").write_bytes(b"junk")
    with pytest.raises(CheckpointError):
        load_checkpoint(p)


def test_dt_must_equal_bin(tiny_data):
    with pytest.raises(SpecError, match="dt"):
        prepare_data(spec(tiny_data, "dt=10 ms"))


def test_recovers_known_ei_rnn(tmp_path):
    """Held-out PSTH correlation with the generator's (noise-free) rates >= 0.95."""
    path = make_data(tmp_path / "gt.mat", n_exc=4, n_inh=2, n_trials=480, n_time=40, seed=0)[0]
    s = run_rnn_fit(spec(path, "training.epochs=300", "training.learning_rate=0.01", "model.hidden_exc=0",
                         "model.hidden_inh=0", "training.detail_every=1000", "training.line_every=1000",
                         "training.checkpoint_every=1000", "training.losses.ltrial_scale=0.0", kind="none"),
                    tmp_path / "fit", progress=False)
    assert s["r_ground_truth"] >= 0.95, s


@pytest.mark.skipif(not REAL.is_file(), reason=f"real recording not available at {REAL}")
def test_real_file_prepares():
    d = prepare_data(load_spec_text(f"name: r\nkind: rnn_fit\ndata: {{file: '{REAL.resolve()}'}}\n"))
    assert d.rates.shape == (890, 227, 14) and len(d.val) + len(d.train) == 890
    assert 0.18 < len(d.val) / 890 < 0.22 and len(d.cond_names) == 24
    assert len(d.table) < 200  # distinct input vectors: the embedding is evaluated once per row


def test_plateau_steps_once_per_epoch_on_the_monitored_value():
    """Minibatch steps leave reduce-on-plateau alone; epoch_end with a flat value cuts the LR."""
    import jax.numpy as jnp
    from types import SimpleNamespace
    from neurodsl.runners import rnn_losses as L
    t = SimpleNamespace(clip_norm=1.0, learning_rate=0.1, lr_factor=0.5, lr_patience=2, min_lr=1e-3,
                        warmup_epochs=1)
    tx = L.make_optimizer(t, n_batches=4)
    p = {"w": jnp.ones(3)}
    s = tx.init(p)
    u, s = tx.step({"w": jnp.ones(3)}, s, p)   # warm-up: first of 4 steps -> 1/4 of the LR
    np.testing.assert_allclose(np.asarray(u["w"]), -0.025, rtol=1e-4)
    for _ in range(20):
        _, s = tx.step({"w": jnp.ones(3)}, s, p)
    assert float(s[1].scale) == 1.0
    for _ in range(4):
        s = tx.epoch_end(s, p, jnp.asarray(1.0))
    assert float(s[1].scale) == 0.5


@pytest.mark.parametrize("method", ["bptt", "force"])
def test_progress_in_a_log_file_is_plain_lines(tiny_data, tmp_path, capfd, monkeypatch, method):
    """Output to a file (a cluster log): the epoch bar prints whole lines, no carriage returns."""
    monkeypatch.setenv("NEURODSL_PROGRESS_INTERVAL", "0")
    run_rnn_fit(spec(tiny_data, "training.epochs=3", f"training.method={method}"), tmp_path, progress=True,
                outputs=False)
    err = capfd.readouterr().err
    assert "\r" not in err and "\x1b[" not in err
    assert "3/3" in err   # the bar's final state is kept in the log


def test_weight_average_is_the_moving_average_of_the_steps(tiny_data, tmp_path):
    """training.weight_average: the raw parameters follow the same optimiser path as without it; the
    kept average is decay * previous + (1 - decay) * new after each step (full batch: one step per
    epoch); validation, the best epoch and best.npz use the average; resume stays bit-identical."""
    import jax
    from neurodsl.compile.rate_rnn import simulate_batch
    from neurodsl.runners import rnn_losses as L
    from neurodsl.runners.rnn_fit import Trainer
    a = 0.6
    tr = Trainer(spec(tiny_data, f"training.weight_average={a}"), prepare_data(spec(tiny_data)))
    plain = Trainer(spec(tiny_data), prepare_data(spec(tiny_data)))
    assert tr.n_batches == 1 and "avg" not in plain.state0
    s1, m1 = tr.epoch_fn(tr.state0)
    s2, m2 = tr.epoch_fn(s1)
    q1, _ = plain.epoch_fn(plain.state0)
    q2, _ = plain.epoch_fn(q1)
    leaves = lambda t: [np.asarray(x, np.float64) for x in jax.tree_util.tree_leaves(t)]  # noqa: E731
    for x, y in zip(leaves(s2["params"]), leaves(q2["params"])):
        np.testing.assert_array_equal(x, y)
    for p0, p1, p2, avg in zip(leaves(tr.state0["params"]), leaves(s1["params"]), leaves(s2["params"]),
                               leaves(s2["avg"])):
        np.testing.assert_allclose(avg, a * (a * p0 + (1 - a) * p1) + (1 - a) * p2, rtol=1e-5, atol=1e-7)
    rv = simulate_batch(s2["avg"], tr.cfg, tr.table, tr.val_arrays, None, 0.0)[..., :tr.cfg.n_recorded]
    r = L.pooled_correlation(rv, tr.val_arrays["target"], tr.val_arrays["valid"])
    np.testing.assert_allclose(float(m2["val_correlation"]), float(np.nanmean(np.asarray(r))), rtol=1e-5)

    straight = run_rnn_fit(spec(tiny_data, "training.epochs=4", f"training.weight_average={a}",
                                "training.checkpoint_every=1"), tmp_path / "a", progress=False, outputs=False)
    run_rnn_fit(spec(tiny_data, "training.epochs=2", f"training.weight_average={a}"), tmp_path / "b",
                progress=False, outputs=False)
    resumed = run_rnn_fit(spec(tiny_data, "training.epochs=4", f"training.weight_average={a}"), tmp_path / "b",
                          resume=True, progress=False, outputs=False)
    strip = lambda log: json.dumps([{k: v for k, v in e.items() if k != "epoch_time"} for e in log])  # noqa: E731
    assert strip(resumed["log"]) == strip(straight["log"])  # (json: NaN entries compare equal)
    ck = tmp_path / "a" / "checkpoints"
    best = load_checkpoint(ck / "best.npz").tree
    final = load_checkpoint(ck / "final.npz").tree
    at_best = load_checkpoint(ck / f"epoch_{straight['best_epoch']:05d}.npz").tree
    # best.npz is that epoch's average, not its raw parameters
    assert all(np.array_equal(best[k], at_best[f"['state']['avg']{k}"]) for k in best)
    assert any(not np.array_equal(final[f"['state']['avg']{k}"], final[f"['state']['params']{k}"]) for k in best)


def test_weight_average_needs_an_optimiser(tiny_data):
    with pytest.raises(SpecError, match="weight_average"):
        spec(tiny_data, "training.weight_average=0.9", "training.method=force")

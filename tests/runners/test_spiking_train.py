"""Truncated-BPTT engine: loss-term gradients (vs finite differences), resume bit-identity, kill -9, fallbacks."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

SPEC = """name: h
kind: homeostatic
duration: 200 ms
network:
  generator: {{n_neurons: 60, n_inputs: 20, n_assemblies: 2}}
training: {{batch: 2, chunk_size: 20, chunks_per_update: 2, epochs: {epochs}, updates_per_epoch: 3,
           checkpoint_interval: {ckpt}, learning_rate: 0.05, log_interval: 100}}
losses: {{rate: 1.0, cv: 0.1, silent: 0.1, membrane: 0.1, weight_ratio: 0.1}}
"""


CACHE = Path(os.environ.get("TMPDIR", "/tmp")) / "neurodsl_test_jax_cache"


def use_compilation_cache():
    """Identical programs (the same update function built again) compile once per session."""
    import jax
    jax.config.update("jax_compilation_cache_dir", str(CACHE))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def loaded(epochs=2, ckpt=2, extra=""):
    from neurodsl.spec import load_spec_text
    return load_spec_text(SPEC.format(epochs=epochs, ckpt=ckpt) + extra)


def _train(out, resume=False, max_updates=None, epochs=2, ckpt=2):
    from neurodsl.runners.homeostatic import homeostatic_setup
    from neurodsl.runners.spiking_train import train
    import jax
    use_compilation_cache()
    try:
        setup = homeostatic_setup(loaded(epochs, ckpt).spec)
        return train(setup, out, resume=resume, progress=False, max_updates=max_updates)
    finally:
        jax.config.update("jax_compilation_cache_dir", None)


def _strip(history):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


def test_resume_is_bit_identical(tmp_path):
    a = _train(tmp_path / "a")
    b1 = _train(tmp_path / "b", max_updates=3)
    assert b1.updates == 3
    b = _train(tmp_path / "b", resume=True)
    assert b.updates == a.updates == 6
    for k in a.params:
        np.testing.assert_array_equal(np.asarray(a.params[k]), np.asarray(b.params[k]))
    assert _strip(a.history) == _strip(b.history)
    rows = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert len(rows) == 6 and (tmp_path / "b" / "metrics.csv").exists()
    assert (tmp_path / "b" / "checkpoints" / "checkpoint_best.npz").exists()


def test_corrupt_latest_falls_back_with_warning(tmp_path):
    _train(tmp_path / "c", max_updates=4, ckpt=2)  # latest at 2, 4 and at exit (4): .prev is good
    latest = tmp_path / "c" / "checkpoints" / "checkpoint_latest.npz"
    latest.write_bytes(latest.read_bytes()[:100])
    with pytest.warns(UserWarning, match="previous checkpoint"):
        r = _train(tmp_path / "c", resume=True)
    assert r.updates == 6


def test_kill9_between_checkpoints_resumes_identically(tmp_path):
    ref = _train(tmp_path / "ref", epochs=3, ckpt=2)
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_spiking_train import _train
        _train({str(tmp_path / 'k')!r}, epochs=3, ckpt=2)
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ck = tmp_path / "k" / "checkpoints" / "checkpoint_latest.npz"
    t0 = time.time()
    try:
        while time.time() - t0 < 60:
            if ck.exists() and (tmp_path / "k" / "metrics.json").exists():
                break
            time.sleep(0.05)
        time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert ck.exists(), "the run made no checkpoint before being killed"
    r = _train(tmp_path / "k", resume=True, epochs=3, ckpt=2)
    assert r.updates == ref.updates == 9
    for k in ref.params:
        np.testing.assert_array_equal(np.asarray(ref.params[k]), np.asarray(r.params[k]))
    assert _strip(ref.history) == _strip(r.history)


def test_wandb_missing_is_a_spec_error(tmp_path, monkeypatch):
    from neurodsl.errors import SpecError
    monkeypatch.setitem(sys.modules, "wandb", None)  # import fails
    from neurodsl.runners.homeostatic import homeostatic_setup
    from neurodsl.runners.spiking_train import train
    spec = loaded(1, 1, "tracking: {wandb: {mode: offline}}\n").spec
    with pytest.raises(SpecError, match=r"neurodsl\[wandb\]"):
        train(homeostatic_setup(spec), tmp_path / "w", progress=False)


def test_every_loss_term_has_a_gradient_that_matches_finite_differences(x64):
    """Smooth forward (exact derivatives): jax.grad == central differences for every term; with the
    spiking (Heaviside) forward every term's surrogate gradient is non-zero."""
    import jax
    import jax.numpy as jnp
    from neurodsl.compile.generator import generate
    from neurodsl.compile.olfactory_train import build_surrogate
    from neurodsl.runners import spiking_losses as SL
    from neurodsl.spec.connectome import GeneratorSpec
    from neurodsl.spec.olfactory import OlfactoryNetwork
    net = OlfactoryNetwork(generator=GeneratorSpec(n_neurons=30, n_inputs=12, n_assemblies=2))
    s = generate(net.generator, 3)
    rng = np.random.default_rng(1)
    B, T = 2, 25
    V0 = rng.uniform(-55, -40, (B, s.n))
    data = {"inputs": jnp.asarray(rng.random((T, B, s.n_inputs)) < 0.2),
            "teacher": jnp.asarray(rng.random((T, B, s.n)) < 0.03)}
    for forward, trainable in (("smooth", "scaling"), ("smooth", "weights"), ("heaviside", "scaling")):
        m = build_surrogate(net, s, 1.0, dtype=jnp.float64, forward=forward, scale=2.0, base_scaling=np.ones((2, 3)),
                            detach_reset=forward == "heaviside", recurrent_grad=1.0 if forward == "smooth" else 0.1,
                            trainable=trainable)
        ti = m.type_idx
        ctx = SL.LossContext(type_idx=ti, V_th=m.cells.V_th, dt=1.0, rate_target=np.where(ti == 0, 5.0, 20.0),
                             type_rate_target=np.array([5.0, 20.0]), rate_mode="neuron", cv_target=np.array([1.5, 1.5]),
                             alpha=1.0, threshold_ratio=0.8, weight_ratio=0.3, has_teacher=True)
        carry = {"model": m.init_state(V0), "obs": SL.init_obs(B, s.n, jnp.float64)}
        terms = list(SL.LOSSES)
        f = SL.make_chunk_loss(m, ctx, {t: 1.0 for t in terms})
        p = m.init_params(trainable)
        parts = jax.jit(lambda p: jnp.stack([f(p, carry, data)[1][1][t] for t in terms]))
        J = jax.jit(jax.jacrev(parts))(p)
        for i, term in enumerate(terms):
            g = {k: np.asarray(v[i]) for k, v in J.items()}
            flat = np.concatenate([v.ravel() for v in g.values()])
            assert np.isfinite(flat).all() and np.abs(flat).max() > 0, (forward, trainable, term)
            if forward == "smooth":
                k = next(iter(p))
                j = int(np.argmax(np.abs(g[k].ravel())))
                e = np.zeros(np.asarray(p[k]).size)
                e[j] = 1e-5
                e = e.reshape(np.shape(p[k]))
                fd = (parts({**p, k: p[k] + e})[i] - parts({**p, k: p[k] - e})[i]) / 2e-5
                np.testing.assert_allclose(g[k].ravel()[j], float(fd), rtol=1e-4,
                                           err_msg=f"{trainable} {term}")

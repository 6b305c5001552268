"""Truncated-BPTT engine: loss-term gradients (vs finite differences), resume bit-identity, kill -9, fallbacks."""
import json
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


def loaded(epochs=2, ckpt=2, extra=""):
    from neurodsl.spec import load_spec_text
    return load_spec_text(SPEC.format(epochs=epochs, ckpt=ckpt) + extra)


def _train(out, resume=False, max_updates=None, epochs=2, ckpt=2, slow=0.0, raise_at=None, signals=1):
    """The homeostatic engine on SPEC; ``slow``: seconds of sleep per update (outside the numerics,
    so a kill lands while updates remain); ``raise_at``: (epoch, update) whose data request raises
    SIGINT ``signals`` times."""
    from dataclasses import replace
    from neurodsl.runners.homeostatic import homeostatic_setup
    from neurodsl.runners.spiking_train import train
    from neurodsl.runners.simulate import configure_precision
    spec = loaded(epochs, ckpt).spec
    configure_precision(spec.precision)  # as run_homeostatic does: not whatever an earlier test left
    setup = homeostatic_setup(spec)
    provider = setup.provider

    def slowed(epoch, update):
        time.sleep(slow)
        for _ in range(signals if (epoch, update) == raise_at else 0):
            signal.raise_signal(signal.SIGINT)
        return provider(epoch, update)
    return train(replace(setup, provider=slowed), out, resume=resume, progress=False, max_updates=max_updates)


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


def test_kill9_while_updates_remain_resumes_identically(tmp_path):
    from neurodsl.runners.checkpoint import load_checkpoint
    ref = _train(tmp_path / "ref", epochs=3, ckpt=2)
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_spiking_train import _train
        _train({str(tmp_path / 'k')!r}, epochs=3, ckpt=2, slow=0.3)
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ck = tmp_path / "k" / "checkpoints" / "checkpoint_latest.npz"
    t0 = time.time()
    try:
        while not ck.exists():  # the first checkpoint (update 2 of 9); metrics.json comes only at the end
            assert proc.poll() is None and time.time() - t0 < 300, "the run ended before its first checkpoint"
            time.sleep(0.02)
        time.sleep(0.4)  # past the next update, before the next checkpoint
        assert proc.poll() is None, "the run finished before the kill"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed = load_checkpoint(ck).metadata["done"]
    assert 2 <= killed < 9 and not (tmp_path / "k" / "metrics.json").exists()
    r = _train(tmp_path / "k", resume=True, epochs=3, ckpt=2)
    assert r.updates == ref.updates == 9
    for k in ref.params:
        np.testing.assert_array_equal(np.asarray(ref.params[k]), np.asarray(r.params[k]))
    assert _strip(ref.history) == _strip(r.history)


@pytest.mark.parametrize("signals,stopped_at", [(1, 3), (2, 2)])
def test_sigint_stops_saves_and_resumes_identically(tmp_path, signals, stopped_at):
    """One SIGINT (at update 3's data): the update finishes, then the run saves and stops; a second
    one at once raises KeyboardInterrupt inside the update, which is dropped: state after update 2."""
    from neurodsl.runners.checkpoint import load_checkpoint
    ref = _train(tmp_path / "ref")
    out = tmp_path / "i"
    r = _train(out, raise_at=(0, 2), signals=signals)
    assert r.interrupted and r.signal == "SIGINT" and r.updates == stopped_at
    assert load_checkpoint(out / "checkpoints" / "checkpoint_latest.npz").metadata["done"] == stopped_at
    b = _train(out, resume=True)
    assert b.updates == 6 and not b.interrupted
    for k in ref.params:
        np.testing.assert_array_equal(np.asarray(ref.params[k]), np.asarray(b.params[k]))
    assert _strip(ref.history) == _strip(b.history)


def test_divergence_retries_from_the_last_checkpoint_with_smaller_steps_then_stops():
    from types import SimpleNamespace
    from neurodsl.runners.rnn_state import DivergedError
    from neurodsl.runners.spiking_state import SpikingRun, diverged
    t = SimpleNamespace(divergence_retries=2, retry_step_factor=0.5, learning_rate=0.3)
    saved = SpikingRun({"p": 1.0}, None, {}, done=4)
    bad = {"update": 7, "finite_loss": False, "finite_parameters": True}
    r1 = diverged(SpikingRun({"p": 9.0}, None, {}, done=6), saved, bad, t)
    assert (r1.done, r1.params, r1.step_scale, r1.retries) == (4, {"p": 1.0}, 0.5, 1)
    r2 = diverged(r1, r1, bad, t)
    assert (r2.step_scale, r2.retries) == (0.25, 2)
    with pytest.raises(DivergedError, match="diverged at update 7: non-finite loss; stopped after 2 retries"):
        diverged(r2, r2, bad, t)


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

"""The differentiable olfactory network: same forward spikes as the event-driven teacher, gradients."""
import numpy as np
import pytest

TEACHER = """name: t
kind: teacher
precision: {precision}
dt: 1 ms
duration: 300 ms
trials: 3
network:
  generator: {{n_neurons: 120, n_inputs: 50, n_assemblies: 3}}
  scaling: {{E: {{I: 1.3}}, I: {{input: 0.8}}}}
odours: {{n: 2}}
schedule: {{kind: fixed, odours: [0, 1, -1]}}
dashboard: {{enabled: false}}
"""


def _event_run(precision: str):
    from neurodsl.compile.olfactory import build_olfactory, resolve_structure
    from neurodsl.runners.simulate import run_network
    from neurodsl.spec import load_spec_text
    sp = load_spec_text(TEACHER.format(precision=precision)).spec
    s, _ = resolve_structure(sp)
    m = build_olfactory(sp, s, batch=3)
    m.net.init_state(3, sp.seed)
    V0 = np.concatenate([np.asarray(m.net.populations[t].V.value) for t in ("E", "I")], -1)
    T = sp.n_steps
    res = run_network(m.net, T, 10, T, progress=False, record_sources=True)
    ev, sev = res.events, res.source_events["mitral"]
    spk = np.zeros((T, 3, s.n), bool)
    spk[ev["step"], ev["trial"], ev["neuron"]] = True
    inp = np.zeros((T, 3, s.n_inputs), bool)
    inp[sev["step"], sev["trial"], sev["neuron"]] = True
    return sp, s, m, V0, spk, inp


def test_forward_spikes_equal_event_driven_float64(x64):
    import jax
    import jax.numpy as jnp
    from neurodsl.compile.surrogate import build_surrogate
    sp, s, m, V0, spk, inp = _event_run("float64")
    assert spk.sum() > 500  # a few spikes per neuron: the comparison means something
    for propagation in ("dense", "sparse"):
        sm = build_surrogate(sp.network, s, sp.dt.internal, dtype=jnp.float64, propagation=propagation)
        assert (sm.perm == m.perm).all() and sm.propagation == propagation
        np.testing.assert_allclose(sm.base_scaling, m.scaling)
        (_, _), out = jax.jit(lambda p, st, i: sm.run(p, st, i))(sm.init_params("weights"), sm.init_state(V0),
                                                                  jnp.asarray(inp))
        got = np.asarray(out["spikes"])
        assert set(np.unique(got)) <= {0.0, 1.0}
        np.testing.assert_array_equal(got > 0.5, spk)
        # teacher forcing with the teacher's own spikes (in jit, and the host products) changes nothing
        f = spk[:, :, sm.perm]
        if propagation == "dense":
            w = sm.weights(sm.init_params("weights"))
            for k, W in enumerate((w["E"], w["I"])):
                part = f[..., :sm.n_exc] if k == 0 else f[..., sm.n_exc:]
                np.testing.assert_allclose(sm.force_drive(f)[:, k], part @ np.asarray(W), rtol=1e-12, atol=1e-15)
        for force in (jnp.asarray(f), tuple(jnp.asarray(x) for x in np.moveaxis(sm.force_drive(f), 1, 0))):
            (_, _), out = jax.jit(lambda p, st, i, fc: sm.run(p, st, i, force=fc, outputs=("spikes",)))(
                sm.init_params("scaling"), sm.init_state(V0), jnp.asarray(inp), force)
            assert set(out) == {"spikes"}
            np.testing.assert_array_equal(np.asarray(out["spikes"]) > 0.5, spk)


def test_surrogate_gradient_nonzero_and_smooth_forward_matches_fd(x64):
    import jax
    import jax.numpy as jnp
    from neurodsl.compile.surrogate import build_surrogate
    from neurodsl.compile.generator import generate
    from neurodsl.spec.olfactory import OlfactoryNetwork
    from neurodsl.spec.connectome import GeneratorSpec
    net = OlfactoryNetwork(generator=GeneratorSpec(n_neurons=40, n_inputs=20, n_assemblies=2))
    s = generate(net.generator, 1)
    rng = np.random.default_rng(0)
    V0 = rng.uniform(-60, -40, (2, s.n))
    inp = jnp.asarray(rng.random((60, 2, s.n_inputs)) < 0.05)
    for kind in ("heaviside", "smooth"):
        sm = build_surrogate(net, s, 1.0, dtype=jnp.float64, forward=kind, detach_reset=kind == "heaviside",
                             recurrent_grad=1.0)
        p = sm.init_params("scaling")

        def f(p):
            (_, _), out = sm.run(p, sm.init_state(V0), inp)
            return out["spikes"].sum() + 1e-3 * out["V"].sum()

        g = np.asarray(jax.grad(f)(p)["log_scaling"])
        assert np.abs(g).sum() > 0
        if kind == "smooth":
            e = np.zeros((2, 3))
            e[0, 2] = 1e-6
            fd = (f({"log_scaling": p["log_scaling"] + e}) - f({"log_scaling": p["log_scaling"] - e})) / 2e-6
            np.testing.assert_allclose(g[0, 2], fd, rtol=1e-5)


def test_params_roundtrip_dale_signs():
    import jax.numpy as jnp
    from neurodsl.compile.generator import generate
    from neurodsl.compile.surrogate import build_surrogate
    from neurodsl.spec.connectome import GeneratorSpec
    from neurodsl.spec.olfactory import OlfactoryNetwork
    net = OlfactoryNetwork(generator=GeneratorSpec(n_neurons=30, n_inputs=10, n_assemblies=2))
    s = generate(net.generator, 0)
    sm = build_surrogate(net, s, 1.0)
    eff = sm.effective(sm.init_params("weights"))
    np.testing.assert_allclose(np.asarray(eff["rec_weight"]), s.rec_weight, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(eff["ff_weight"]), s.ff_weight, rtol=1e-6)
    W = sm.weights(sm.init_params("scaling"))
    assert W["E"].shape == (sm.n_exc, s.n) and float(jnp.min(W["I"])) >= 0

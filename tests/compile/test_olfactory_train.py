"""The olfactory network for training (on the core): same forward spikes as the event-driven teacher, gradients."""
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
    """The training model (the core with a surrogate spike function) spikes exactly as the teacher's
    event-driven simulator, with every propagation scheme and under teacher forcing."""
    import jax
    import jax.numpy as jnp
    from neurodsl.compile.olfactory_train import build_surrogate
    sp, s, m, V0, spk, inp = _event_run("float64")
    assert spk.sum() > 500  # a few spikes per neuron: the comparison means something
    for propagation in ("auto", "dense", "sparse"):
        for trainable in ("scaling", "weights"):
            sm = build_surrogate(sp.network, s, sp.dt.internal, dtype=jnp.float64, propagation=propagation,
                                 base_scaling=m.scaling, trainable=trainable)
            assert (sm.perm == m.perm).all()
            p = sm.init_params(trainable)
            (_, _), out = jax.jit(lambda p, st, i: sm.run(p, st, i))(p, sm.init_state(V0), jnp.asarray(inp))
            got = np.asarray(out["spikes"])
            assert set(np.unique(got)) <= {0.0, 1.0}
            np.testing.assert_array_equal(got > 0.5, spk, err_msg=f"{propagation} {trainable}")
            # teacher forcing with the teacher's own spikes changes nothing
            (_, _), out = jax.jit(lambda p, st, i, fc: sm.run(p, st, i, force=fc, outputs=("spikes",)))(
                p, sm.init_state(V0), jnp.asarray(inp), jnp.asarray(spk))
            assert set(out) == {"spikes"}
            np.testing.assert_array_equal(np.asarray(out["spikes"]) > 0.5, spk)
    auto = build_surrogate(sp.network, s, sp.dt.internal, dtype=jnp.float64, base_scaling=m.scaling,
                           teacher_forcing=True, recurrent_grad=0.1)
    assert auto.propagation == "event"  # forced presynaptic spikes are data: the teacher's kernels serve


def _small():
    from neurodsl.compile.generator import generate
    from neurodsl.spec.connectome import GeneratorSpec
    from neurodsl.spec.olfactory import OlfactoryNetwork
    net = OlfactoryNetwork(generator=GeneratorSpec(n_neurons=40, n_inputs=20, n_assemblies=2))
    return net, generate(net.generator, 1)


@pytest.mark.parametrize("trainable, key", [("scaling", "log_scaling"), ("weights", "log_rec_weight")])
def test_surrogate_gradient_nonzero_and_smooth_forward_matches_fd(x64, trainable, key):
    import jax
    import jax.numpy as jnp
    from neurodsl.compile.olfactory_train import build_surrogate
    net, s = _small()
    rng = np.random.default_rng(0)
    V0 = rng.uniform(-60, -40, (2, s.n))
    inp = jnp.asarray(rng.random((60, 2, s.n_inputs)) < 0.05)
    for kind in ("heaviside", "smooth"):
        sm = build_surrogate(net, s, 1.0, dtype=jnp.float64, forward=kind, detach_reset=kind == "heaviside",
                             recurrent_grad=1.0, base_scaling=np.ones((2, 3)), trainable=trainable)
        p = sm.init_params(trainable)

        def f(p):
            (_, _), out = sm.run(p, sm.init_state(V0), inp)
            return out["spikes"].sum() + 1e-3 * out["V"].sum()

        g = np.asarray(jax.grad(f)(p)[key])
        assert np.abs(g).sum() > 0
        if kind == "smooth":
            i = np.unravel_index(np.argmax(np.abs(g)), g.shape)
            e = np.zeros(g.shape)
            e[i] = 1e-6
            fd = (f({**p, key: p[key] + e}) - f({**p, key: p[key] - e})) / 2e-6
            np.testing.assert_allclose(g[i], fd, rtol=1e-5)


def test_params_roundtrip_dale_signs():
    from neurodsl.compile.olfactory_train import build_surrogate
    net, s = _small()
    sm = build_surrogate(net, s, 1.0, base_scaling=np.ones((2, 3)), trainable="weights")
    eff = sm.effective(sm.init_params("weights"))
    np.testing.assert_allclose(np.asarray(eff["rec_weight"]), s.rec_weight, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(eff["ff_weight"]), s.ff_weight, rtol=1e-6)
    cp = sm.core_params(sm.init_params("weights"))
    for pr in sm.net.projections:   # per-synapse log weights land on the right synapses
        np.testing.assert_allclose(np.exp(np.asarray(cp[pr.log_weight.label])), pr.synapses.weight, rtol=1e-6)


def test_scaling_held_twice_is_a_located_error():
    from neurodsl.compile.olfactory import effective_scaling
    from neurodsl.errors import SpecError
    net, s = _small()
    tuned = s.with_weights(scaling=np.full((2, 3), 1.5))
    np.testing.assert_allclose(effective_scaling(net, tuned), 1.5)
    twice = net.model_copy(update={"scaling": {"E": {"I": 2.0}}})
    np.testing.assert_allclose(effective_scaling(twice, s)[0, 1], 2.0)
    with pytest.raises(SpecError, match="network.scaling"):
        effective_scaling(twice, tuned)

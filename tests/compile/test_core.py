"""One network core: training's forward pass is the simulator's; gradients (with delays) are right."""
from __future__ import annotations

import numpy as np
import pytest

from neurodsl.spec import load_spec, load_spec_text

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]
FD_RTOL = 2e-4   # central differences, h = 1e-5 in log space, float64


TINY = """
name: tiny_delays
kind: fit
seed: 3
dt: 0.1 ms
duration: 20 ms
precision: float64
populations:
  E: {{size: 12, cell_type: E, neuron: &n {{model: lif_cond, tau_m: 10 ms, g_L: 10 nS, E_L: -60 mV,
                                          V_th: -50 mV, V_reset: -60 mV, t_ref: 0 ms}}}}
  I: {{size: 4, cell_type: I, neuron: *n}}
receptors:
  ampa: {{kind: exp, tau_decay: 3 ms, E_rev: 0 mV}}
  gaba: {{kind: dual_exp, tau_rise: 1 ms, tau_decay: 6 ms, E_rev: -80 mV}}
inputs:
  drive: {{kind: current, target: E, amplitude: 120 pA}}
  idrive: {{kind: current, target: I, amplitude: 110 pA}}
projections:
  - {{pre: E, post: E, receptor: ampa, weight: 2 nS, delay: 1.5 ms, connectivity: {{kind: bernoulli, p: 0.4}},
     trainable: {{param: weight, sigma: 0.2}}}}
  - {{pre: E, post: I, receptor: ampa, weight: 3 nS, delay: 0.5 ms, connectivity: {{kind: bernoulli, p: 0.5}},
     trainable: {{param: scale, sigma: 0.1}}}}
  - {{pre: I, post: E, receptor: gaba, weight: 4 nS, delay: 1 ms, connectivity: {{kind: bernoulli, p: 0.5}},
     trainable: {{param: scale, group: inh}}}}
  - {{pre: I, post: I, receptor: gaba, weight: 4 nS, delay: 1 ms, connectivity: {{kind: bernoulli, p: 0.5}},
     trainable: {{param: scale, group: inh}}}}
initial_state:
  E: {{V: {{dist: uniform, low: -60 mV, high: -50 mV}}}}
  I: {{V: {{dist: uniform, low: -60 mV, high: -50 mV}}}}
objectives:
  - {{kind: rate, population: E, target: 40 Hz}}
  - {{kind: rate, population: I, target: 60 Hz, per: neuron}}
  - {{kind: membrane, population: all, target: 0.3}}
training: {{propagation: {prop}, batch: 2, chunk: 10 ms}}
"""


def _loss_and_grad(spec, spike_fn, propagation):
    import brainstate
    import jax.numpy as jnp
    from neurodsl.compile import compile_network
    from neurodsl.runners import fit_objectives as FO
    net = compile_network(spec, spike_fn, propagation)
    params = net.trainable_states()
    terms = FO.compile_objectives(spec, net.infos)
    V_th = jnp.full(net.n_neurons, -50.0)

    def step(n):
        s = net.update(n)
        return (jnp.concatenate([s[k] for k in net.populations], -1),
                jnp.concatenate([p.V.value for p in net.populations.values()], -1))

    def loss(steps):
        net.init_state(2, 11)
        s, V = brainstate.transform.for_loop(step, steps)
        obs = FO.track(FO.init_obs(2, net.n_neurons, jnp.float64), s, V, net.dt, 0)
        return sum(FO.term_value(t, obs, net.dt, V_th) for t in terms)

    steps = jnp.arange(200, dtype=jnp.int32)
    g, v = brainstate.transform.grad(loss, grad_states=params, return_value=True)(steps)
    return params, g, v, (lambda: loss(steps))


@pytest.mark.parametrize("prop", ["dense", "sparse"])
def test_gradients_with_delays_match_finite_differences(x64, prop):
    from neurodsl.compile.spikes import Smooth
    spec = load_spec_text(TINY.format(prop=prop)).spec
    params, g, v, f = _loss_and_grad(spec, Smooth(alpha=2.0), prop)
    assert set(params) == {"weight.E->E", "scale.E->I", "scale.inh"}   # the shared scale is one parameter
    rng = np.random.default_rng(0)
    h = 1e-5
    for k, p in params.items():
        base = np.asarray(p.value).copy()
        idx = [()] if base.ndim == 0 else [(int(rng.integers(base.size)),), (int(np.argmax(np.abs(g[k]))),)]
        for i in idx:
            d = np.zeros_like(base)
            d[i] = h
            p.value = base + d
            up = float(f())
            p.value = base - d
            down = float(f())
            p.value = base
            fd = (up - down) / (2 * h)
            an = float(np.asarray(g[k])[i])
            assert abs(an - fd) <= FD_RTOL * max(abs(fd), 1e-3), (k, i, an, fd)
        assert np.abs(np.asarray(g[k])).max() > 0, k


def test_event_and_dense_propagation_give_the_same_spikes(x64):
    """Same network, Heaviside spikes: the event kernels and the dense product agree."""
    import brainstate
    import jax.numpy as jnp
    from neurodsl.compile import compile_network
    spec = load_spec_text(TINY.format(prop="auto")).spec
    out = []
    for prop in ("event", "dense", "sparse"):
        net = compile_network(spec, propagation=prop)
        net.init_state(2, 5)
        s = brainstate.transform.for_loop(
            lambda n: jnp.concatenate([v for v in net.update(n).values()], -1), jnp.arange(400, dtype=jnp.int32))
        out.append(np.asarray(s))
    assert out[0].sum() > 50
    np.testing.assert_array_equal(out[0], out[1])
    np.testing.assert_array_equal(out[0], out[2])


def test_training_forward_pass_equals_simulate_for_1s_of_coba(x64):
    """The forward pass training runs (surrogate spike function, event propagation) spikes exactly
    as `neurodsl simulate` does, for 1 s of COBA in float64."""
    import brainstate
    import jax.numpy as jnp
    from neurodsl.compile import compile_network
    from neurodsl.compile.spikes import SurrogateHeaviside
    from neurodsl.runners.simulate import simulate
    sim = load_spec(REPO / "spec" / "coba.yaml", ["precision=float64"])
    ds = simulate(sim, progress=False, write=False)
    want = np.stack([ds["spike_step"].values, ds["spike_neuron"].values], 1)
    net = compile_network(sim.spec, SurrogateHeaviside(synaptic_grad=0.0), "event")
    assert {p.scheme.name for p in net.projections} == {"event"} and not net.spike_fn.binary
    net.init_state(1, sim.spec.seed)
    names = list(net.populations)

    def step(n):
        spikes = net.update(n)
        return jnp.concatenate([spikes[k] for k in names], -1)

    s = brainstate.transform.jit(lambda steps: brainstate.transform.for_loop(step, steps))(
        jnp.arange(sim.spec.n_steps, dtype=jnp.int32))
    t, _, n = np.nonzero(np.asarray(s))
    got = np.stack([t, n], 1)
    assert len(want) > 10_000
    np.testing.assert_array_equal(got, want)


def test_trained_weights_propagate_alike_in_every_scheme_and_batch(x64):
    """Event (one trial and batch-major kernel), dense and sparse schemes with per-synapse weights."""
    import jax.numpy as jnp
    from neurodsl.compile.connectivity import Synapses
    from neurodsl.compile.propagation import SCHEMES
    rng = np.random.default_rng(2)
    pre = np.sort(rng.integers(0, 30, 200)).astype(np.int32)
    post = rng.integers(0, 20, 200).astype(np.int32)
    syn = Synapses(pre, post, rng.random(200), 30, 20)
    w = jnp.asarray(rng.random(200) + 0.5)
    for B in (1, 3):
        s = jnp.asarray(rng.random((B, 30)) < 0.3)
        want = np.asarray(s, float) @ Synapses(pre, post, np.asarray(w), 30, 20).dense()
        for name, scheme in SCHEMES.items():
            np.testing.assert_allclose(np.asarray(scheme(syn, jnp.float64)(s, w)), want, rtol=1e-12,
                                       err_msg=f"{name} B={B}")

"""Physical laws and analytic solutions of the compiled conductance-based LIF network."""
import math
import textwrap

import brainstate
import jax.numpy as jnp
import numpy as np
import pytest

from neurodsl.compile import compile_network
from neurodsl.errors import DataError
from neurodsl.spec import load_spec_text

NEURON = "{model: lif_cond, tau_m: 20 ms, g_L: 10 nS, E_L: -65 mV, V_th: -50 mV, V_reset: -70 mV, t_ref: 2 ms}"


def make(body: str, duration="50 ms", extra=""):
    text = textwrap.dedent(f"""\
        name: t
        kind: simulation
        dt: 0.1 ms
        duration: {duration}
        """) + textwrap.dedent(body) + textwrap.dedent(extra)
    return load_spec_text(text).spec


def run(spec, n_steps, record):
    """Run eagerly-traced for_loop; record(net) -> array per step."""
    net = compile_network(spec)
    net.init_state(spec.trials, spec.seed)

    def body(n):
        spikes = net.update(n)
        return {k: v for k, v in spikes.items()}, record(net)

    @brainstate.transform.jit
    def go(steps):
        return brainstate.transform.for_loop(body, steps)

    spikes, rec = go(jnp.arange(n_steps))
    return net, {k: np.asarray(v) for k, v in spikes.items()}, np.asarray(rec)


ONE_POP = f"""\
populations:
  P: {{size: 5, cell_type: E, neuron: {NEURON}}}
"""


def test_no_input_rests_at_E_L():
    spec = make(ONE_POP)
    _, spikes, V = run(spec, 500, lambda net: net.populations["P"].V.value)
    assert not spikes["P"].any()
    np.testing.assert_allclose(V, -65.0, atol=1e-5)


def test_zero_hz_poisson_gives_silence():
    body = ONE_POP + """\
inputs:
  bg: {kind: poisson, size: 50, rate: 0 Hz}
receptors:
  exc: {kind: exp, tau_decay: 5 ms, E_rev: 0 mV}
projections:
  - {pre: bg, post: P, receptor: exc, weight: 50 nS, connectivity: {kind: all_to_all}}
"""
    _, spikes, V = run(make(body), 500, lambda net: net.populations["P"].V.value)
    assert not spikes["bg"].any() and not spikes["P"].any()
    np.testing.assert_allclose(V, -65.0, atol=1e-5)


def single_spike_spec(receptor: str, delay="0 ms"):
    # A source that spikes exactly once, at step 10 (p = rate * dt = 1 for one step).
    return make(f"""\
populations:
  P: {{size: 2, cell_type: E, neuron: {{model: lif_cond, tau_m: 20 ms, g_L: 10 nS, E_L: -65 mV, V_th: 1000 mV, V_reset: -70 mV}}}}
inputs:
  src: {{kind: poisson, size: 1, rate: {{kind: piecewise, times: [0 ms, 1 ms, 1.1 ms], values: [0 Hz, 10000 Hz, 0 Hz]}}}}
receptors:
  r: {receptor}
projections:
  - {{pre: src, post: P, receptor: r, weight: 2 nS, delay: {delay}, connectivity: {{kind: all_to_all}}}}
""")


def _g(net):
    pop = net.populations["P"]
    kin = pop.kinetics["r"]
    return kin.value(pop.syn["r"].value)[0, 0]


def test_single_spike_exponential_kernel():
    spec = single_spike_spec("{kind: exp, tau_decay: 5 ms, E_rev: 0 mV}")
    _, spikes, g = run(spec, 400, _g)
    assert np.nonzero(spikes["src"][:, 0, 0])[0].tolist() == [10]
    # g is read after step n: the spike at step 10 is added at the end of step 10.
    n = np.arange(400)
    expected = np.where(n >= 10, 2.0 * np.exp(-(n - 10) * 0.1 / 5.0), 0.0)
    np.testing.assert_allclose(g, expected, rtol=1e-5, atol=1e-7)


def test_single_spike_dual_exponential_kernel_peaks_at_weight():
    spec = single_spike_spec("{kind: dual_exp, tau_rise: 1 ms, tau_decay: 6 ms, E_rev: -70 mV}")
    _, _, g = run(spec, 800, _g)
    t = (np.arange(800) - 10) * 0.1
    tr, td = 1.0, 6.0
    t_peak = td * tr / (td - tr) * math.log(td / tr)
    kernel = np.exp(-np.clip(t, 0, None) / td) - np.exp(-np.clip(t, 0, None) / tr)
    expected = np.where(t >= 0, 2.0 * kernel / (math.exp(-t_peak / td) - math.exp(-t_peak / tr)), 0.0)
    np.testing.assert_allclose(g, expected, rtol=1e-4, atol=1e-6)
    assert abs(g.max() - 2.0) < 2e-3  # the peak on the 0.1 ms grid is the weight
    assert abs(t[np.argmax(g)] - t_peak) <= 0.1


@pytest.mark.parametrize("delay_ms,steps", [("0 ms", 0), ("0.1 ms", 1), ("1.5 ms", 15), ("7 ms", 70)])
def test_delays_are_exact(delay_ms, steps):
    spec = single_spike_spec("{kind: exp, tau_decay: 5 ms, E_rev: 0 mV}", delay=delay_ms)
    _, _, g = run(spec, 120, _g)
    assert int(np.nonzero(g)[0][0]) == 10 + steps  # spike at step t arrives at step t + d/dt


def test_constant_current_matches_analytic_membrane_and_rate():
    # exp_euler is exact for constant input: V(t) = V_inf + (E_L - V_inf) exp(-t/tau)
    body = ONE_POP + "inputs:\n  i: {kind: current, target: P, amplitude: 200 pA}\n"
    spec = make(body.replace("V_th: -50 mV", "V_th: -40 mV"))
    _, spikes, V = run(spec, 2000, lambda net: net.populations["P"].V.value[0, 0])
    V_inf = -65.0 + 200.0 / 10.0  # -45 mV, below threshold: no spikes
    t = (np.arange(2000) + 1) * 0.1
    np.testing.assert_allclose(V, V_inf + (-65.0 - V_inf) * np.exp(-t / 20.0), atol=1e-4)
    assert not spikes["P"].any()
    # above threshold: ISI = t_ref + tau ln((V_inf - V_reset) / (V_inf - V_th)), on the step grid
    spec = make(body.replace("200 pA", "400 pA"), duration="500 ms")
    _, spikes, _ = run(spec, 5000, lambda net: net.populations["P"].V.value[0, 0])
    steps = np.nonzero(spikes["P"][:, 0, 0])[0]
    V_inf = -65.0 + 40.0
    isi = 2.0 + 20.0 * math.log((V_inf + 70.0) / (V_inf + 50.0))
    assert np.all(np.abs(np.diff(steps) * 0.1 - isi) <= 0.1 + 1e-9)


def test_refractory_period_is_honoured():
    body = ONE_POP + "inputs:\n  i: {kind: current, target: P, amplitude: 5000 pA}\n"
    _, spikes, V = run(make(body), 1000, lambda net: net.populations["P"].V.value)
    for k in range(5):
        steps = np.nonzero(spikes["P"][:, 0, k])[0]
        assert len(steps) > 10 and np.diff(steps).min() >= 20  # t_ref = 2 ms = 20 steps
    # V is clamped at V_reset while refractory
    first = np.nonzero(spikes["P"][:, 0, 0])[0][0]
    np.testing.assert_allclose(V[first:first + 19, 0, 0], -70.0)


def test_dale_sign_of_connectome_files_is_checked(tmp_path):
    W = np.zeros((3, 4))
    W[0, 1], W[2, 3] = -1.0, 0.5  # population I: one inhibitory (ok) and one positive (wrong) weight
    np.save(tmp_path / "w.npy", W)
    body = f"""\
populations:
  E: {{size: 4, cell_type: E, neuron: {NEURON}}}
  I: {{size: 3, cell_type: I, neuron: {NEURON}}}
receptors:
  inh: {{kind: exp, tau_decay: 10 ms, E_rev: -80 mV}}
projections:
  - {{pre: I, post: E, receptor: inh, weight: 1 nS, connectivity: {{kind: file, file: {tmp_path / 'w.npy'}}}}}
"""
    with pytest.raises(DataError) as e:
        compile_network(make(body))
    assert "population 'I' is I" in str(e.value) and "1 of its 2 weights" in str(e.value)
    W[2, 3] = -0.5
    np.save(tmp_path / "w.npy", W)
    net = compile_network(make(body))
    syn = net.projections[0].synapses
    assert sorted(zip(syn.pre.tolist(), syn.post.tolist())) == [(0, 1), (2, 3)]
    np.testing.assert_allclose(sorted(syn.weight), [0.5, 1.0])  # magnitudes x 1 nS


@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("density", [0.2, 0.9])
@pytest.mark.parametrize("p_spike", [0.1, 0.9])  # one trial: <= 16 events in XLA, more via brainevent
def test_event_kernel_equals_dense_product(batch, density, p_spike):
    import jax
    from neurodsl.compile.connectivity import Synapses
    from neurodsl.compile.network import EventKernel
    rng = np.random.default_rng(0)
    mask = rng.random((40, 30)) < density
    mask[3] = True  # one hub row: with density 0.2 this forces the CSR layout
    pre, post = np.nonzero(mask)
    syn = Synapses(pre.astype(np.int32), post.astype(np.int32), rng.random(len(pre)), 40, 30)
    kernel = EventKernel(syn, jnp.float32)
    spikes = jax.random.uniform(jax.random.PRNGKey(1), (batch, 40)) < p_spike
    assert (np.asarray(spikes).sum(1) > EventKernel.FEW).any() == (p_spike > 0.5)
    want = np.asarray(spikes, float) @ syn.dense()
    np.testing.assert_allclose(np.asarray(jax.jit(kernel)(spikes)), want, rtol=1e-5)

"""Mutated specs end in a one-line NeurodslError or a valid run, never a traceback."""
import copy

import jax.numpy as jnp
import numpy as np
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurodsl.compile import compile_network
from neurodsl.errors import NeurodslError
from neurodsl.spec import load_spec_text

BASE = yaml.safe_load("""
name: fuzz
kind: simulation
seed: 1
precision: float32
dt: 0.5 ms
duration: 2 ms
trials: 2
populations:
  E: {size: 6, cell_type: E, neuron: {model: lif_cond, tau_m: 20 ms, g_L: 10 nS, E_L: -60 mV,
      V_th: -50 mV, V_reset: -60 mV, t_ref: 1 ms, method: euler}}
  I: {size: 3, cell_type: I, neuron: {model: lif_cond, C: 200 pF, g_L: 10 nS, E_L: -60 mV,
      V_th: -50 mV, V_reset: -65 mV}}
receptors:
  exc: {kind: exp, tau_decay: 5 ms, E_rev: 0 mV}
  inh: {kind: dual_exp, tau_rise: 1 ms, tau_decay: 10 ms, E_rev: -80 mV}
  cur: {kind: exp, tau_decay: 3 ms}
inputs:
  bg: {kind: poisson, size: 4, rate: 50 Hz}
  drive: {kind: current, target: E, amplitude: 20 pA}
projections:
  - {pre: E, post: I, receptor: exc, weight: 1 nS, delay: 1 ms, connectivity: {kind: bernoulli, p: 0.5}}
  - {pre: I, post: E, receptor: inh, weight: {dist: normal, mean: 2 nS, std: 1 nS}, connectivity: {kind: fixed_indegree, k: 2}}
  - {pre: bg, post: E, receptors: {exc: 1 nS}, weight: {dist: lognormal, mean: 1, std: 0.3}, connectivity: {kind: all_to_all}}
  - {pre: E, post: E, receptor: cur, weight: 3 pA, connectivity: {kind: assemblies, n: 2, p_within: 0.5, p_between: 0.1}}
initial_state:
  E: {V: {dist: uniform, low: -60 mV, high: -50 mV}, g: {inh: 1 nS}}
""")

SCALARS = st.one_of(
    st.integers(-5, 5000), st.floats(-1e3, 1e3, allow_nan=True), st.booleans(), st.none(),
    st.sampled_from(["5 mV", "-3 ms", "0 ms", "2 nS", "10 Hz", "abc", "", "1e400 ms", "3 pF", "E", "I", "X",
                     "exc", "inh", "bernoulli", "file", "normal", "lognormal", "euler", "float64", "nowhere.npz"]),
    st.just([]), st.just({}), st.just({"kind": "bernoulli"}), st.just([1, "2 ms"]))


def paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from paths(v, prefix + (i,))


ALL_PATHS = [p for p in paths(BASE) if p]


@st.composite
def mutated(draw):
    spec = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(ALL_PATHS))
        node = spec
        try:
            for part in path[:-1]:
                node = node[part]
            op = draw(st.sampled_from(["set", "set", "set", "delete", "unknown"]))
            if op == "set":
                node[path[-1]] = draw(SCALARS)
            elif op == "delete" and isinstance(node, dict):
                node.pop(path[-1], None)
            elif isinstance(node, dict):
                node[draw(st.sampled_from(["sise", "tau", "weigth", "extra"]))] = 1
        except (KeyError, IndexError, TypeError):
            pass
    return yaml.safe_dump(spec)


@settings(max_examples=220, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_spec_is_error_or_runs(text):
    try:
        spec = load_spec_text(text, "fuzz.yaml").spec
        net = compile_network(spec)
        net.init_state(spec.trials, spec.seed)
        for n in range(2):
            spikes = net.update(jnp.int32(n))
        assert all(np.asarray(s).dtype == bool for s in spikes.values())
    except NeurodslError as e:
        line = e.one_line()
        assert "\n" not in line and line.startswith(("fuzz.yaml", "--set", "<")), line

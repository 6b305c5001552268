"""``engine: loop`` (neurodsl/compile/loop.py): the generated chunk loop against the XLA core.

In float64 the two compute the same arithmetic in the same order, so the spike trains must be
identical: a network with both receptor kinds, current- and conductance-based receptors, two
delays (two synapse banks), a stepped constant current and two trials, over chunks that split
the run, with a per-trial event capacity small enough that chunks are rerun.
"""
import numpy as np
import pytest

from neurodsl.runners.simulate import run_network
from neurodsl.spec import load_spec_text

SPEC = """
name: loop_check
kind: simulation
seed: 3
dt: 0.1 ms
duration: 60 ms
precision: float64
trials: 2
populations:
  E: {size: 243, cell_type: E, neuron: &lif {model: lif_cond, tau_m: 20 ms, g_L: 10 nS, E_L: -60 mV,
      V_th: -50 mV, V_reset: -60 mV, t_ref: 2 ms, method: METHOD}}
  I: {size: 62, cell_type: I, neuron: *lif}
receptors:
  ampa: {kind: dual_exp, tau_rise: 1 ms, tau_decay: 5 ms, E_rev: 0 mV}
  gaba: {kind: exp, tau_decay: 10 ms, E_rev: -80 mV}
  cur: {kind: exp, tau_decay: 3 ms}
inputs:
  drive: {kind: current, target: E, amplitude: 230 pA, start: 5 ms, stop: 50 ms}
  drive_i: {kind: current, target: I, amplitude: 210 pA}
projections:
  - {pre: E, post: E, receptor: ampa, weight: 3 nS, delay: 1.5 ms, connectivity: {kind: bernoulli, p: 0.1}}
  - {pre: E, post: I, receptor: ampa, weight: 3 nS, connectivity: {kind: bernoulli, p: 0.1}}
  - {pre: E, post: I, receptor: cur, weight: 20 pA, connectivity: {kind: bernoulli, p: 0.05}}
  - {pre: I, post: E, receptor: gaba, weight: 20 nS, connectivity: {kind: bernoulli, p: 0.2}}
  - {pre: I, post: I, receptor: gaba, weight: 20 nS, delay: 1.5 ms, connectivity: {kind: bernoulli, p: 0.2}}
initial_state:
  E: {V: {dist: uniform, low: -60 mV, high: -50 mV}}
  I: {V: {dist: uniform, low: -60 mV, high: -50 mV}}
"""


def _net(method="exp_euler"):
    from neurodsl.compile import compile_network
    spec = load_spec_text(SPEC.replace("METHOD", method)).spec
    net = compile_network(spec)
    net.init_state(spec.trials, spec.seed)
    return spec, net


@pytest.mark.parametrize("method", ["exp_euler", "euler"])
def test_loop_spikes_and_state_equal_the_core_in_float64(x64, method):
    spec, net = _net(method)
    ref = run_network(net, spec.n_steps, 50, 230, record_voltage=True, progress=False, engine="xla")
    ref_state = net.read_state()
    net.init_state(spec.trials, spec.seed)
    res = run_network(net, spec.n_steps, 50, 230, record_voltage=True, progress=False, engine="loop", capacity=8)
    assert res.engine == "loop" and ref.engine == "xla"
    assert res.reruns > 0  # 8 events per trial and chunk cannot hold them: chunks were rerun
    assert ref.n_spikes > 200 and set(np.unique(ref.events["trial"])) == {0, 1}
    assert (ref.events["neuron"] >= 243).any()  # I starts inside a 64-bit word of the loop's spike flags
    for k in ("trial", "step", "neuron"):
        np.testing.assert_array_equal(res.events[k], ref.events[k], err_msg=k)
    np.testing.assert_array_equal(res.rate, ref.rate)
    np.testing.assert_allclose(res.voltage, ref.voltage, rtol=0, atol=1e-9)
    import jax
    for a, b in zip(jax.tree.leaves(net.read_state()), jax.tree.leaves(ref_state)):
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=1e-12, atol=1e-12)


def test_loop_with_poisson_sources_equals_the_core_in_float64(x64, monkeypatch):
    """Sources are drawn from the core's random stream part by part (here 7 steps per part), one
    delayed and one immediate; spikes, rates, the recorded source spikes and the key equal the core's."""
    from neurodsl.runners.loop_recorder import LoopRecorder
    text = SPEC.replace("METHOD", "euler")
    text = text.replace("inputs:\n", "inputs:\n  noise: {kind: poisson, size: 20, rate: {kind: piecewise, times: [0 ms, "
                        "20 ms], values: [40 Hz, 200 Hz]}}\n  bg: {kind: poisson, size: 10, rate: 100 Hz}\n")
    text = text.replace("projections:\n", "projections:\n  - {pre: noise, post: E, receptor: ampa, weight: 4 nS, "
                        "connectivity: {kind: bernoulli, p: 0.3}}\n  - {pre: bg, post: I, receptor: ampa, weight: 4 nS, "
                        "delay: 1.5 ms, connectivity: {kind: bernoulli, p: 0.3}}\n")
    from neurodsl.compile import compile_network
    spec = load_spec_text(text).spec
    net = compile_network(spec)
    net.init_state(spec.trials, spec.seed)
    ref = run_network(net, spec.n_steps, 50, 230, progress=False, record_sources=True, engine="xla")
    key_ref = np.asarray(net.read_state()["key"])
    net.init_state(spec.trials, spec.seed)
    monkeypatch.setattr(LoopRecorder, "SOURCE_BYTES", 2 * 30 * 7)  # 7 steps of 2 trials x 30 source neurons
    res = run_network(net, spec.n_steps, 50, 230, progress=False, record_sources=True, engine="auto", capacity=8)
    assert res.engine == "loop" and res.reruns > 0
    for k in ("trial", "step", "neuron"):
        np.testing.assert_array_equal(res.events[k], ref.events[k], err_msg=k)
        for s in ("noise", "bg"):
            assert len(ref.source_events[s]["step"]) > 50
            np.testing.assert_array_equal(res.source_events[s][k], ref.source_events[s][k], err_msg=f"{s} {k}")
    np.testing.assert_array_equal(res.rate, ref.rate)
    np.testing.assert_array_equal(np.asarray(net.read_state()["key"]), key_ref)


def test_loop_refuses_a_training_network_and_auto_falls_back():
    """Surrogate spikes (the training compile) are not the loop's: ``loop`` says why, ``auto`` runs XLA."""
    from neurodsl.compile import compile_network
    from neurodsl.compile.spikes import SurrogateHeaviside
    from neurodsl.errors import SpecError
    from neurodsl.runners.simulate import configure_precision
    configure_precision("float32")
    spec = load_spec_text(SPEC.replace("METHOD", "euler").replace("precision: float64", "precision: float32")).spec
    net = compile_network(spec, spike_fn=SurrogateHeaviside())
    net.init_state(1, 0)
    with pytest.raises(SpecError, match="not plain Heaviside"):
        run_network(net, 20, 10, 20, progress=False, engine="loop")
    assert run_network(net, 20, 10, 20, progress=False, engine="auto").engine == "xla"


def test_loop_exp_is_within_two_ulp_of_libm_and_keeps_the_special_values():
    """The loop's vectorisable exp (neurodsl/compile/loop_math.py) against NumPy's (libm) exp."""
    import numba
    from neurodsl.compile import loop_math

    @numba.njit
    def apply(x, out):
        for i in range(x.shape[0]):
            out[i] = loop_math.exp(x[i])
    rng = np.random.default_rng(0)
    for lo, hi in [(-0.1, 0.0), (-5.0, 5.0), (-700.0, 700.0)]:
        x = rng.uniform(lo, hi, 200_000)
        out = np.empty_like(x)
        apply(x, out)
        assert np.max(np.abs(out - np.exp(x)) / np.spacing(np.exp(x))) <= 2.0, (lo, hi)
    x = np.array([0.0, np.inf, -np.inf, np.nan, 710.0, 800.0, -800.0, -740.0, -1e-300])
    out = np.empty_like(x)
    apply(x, out)
    np.testing.assert_array_equal(out[:7], [1.0, np.inf, 0.0, np.nan, np.inf, np.inf, 0.0])
    assert 0.0 < out[7] < 1e-320 and abs(out[7] - np.exp(-740.0)) <= np.spacing(np.exp(-740.0))  # subnormal
    assert out[8] == 1.0


_CACHED_RUN = """
import json, sys
from neurodsl.runners.simulate import simulate
from neurodsl.spec import load_spec
ds = simulate(load_spec("spec/coba.yaml", ["populations.E.size=80", "populations.I.size=20", "duration=20 ms",
                                           "outputs.rate_bin=20 ms"]), progress=False, write=False)
chunk = [m for k, m in sys.modules.items() if k.startswith("neurodsl_loop_")][0].chunk
print(json.dumps({"engine": ds.attrs["engine"], "hits": sum(chunk.stats.cache_hits.values()),
                  "misses": sum(chunk.stats.cache_misses.values()), "spikes": ds.spike_step.values.tolist()}))
"""


def test_a_second_process_loads_the_compiled_loop_from_the_disk_cache(tmp_path):
    """neurodsl/compile/loop_cache.py: the first process compiles and writes, the next one loads."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path
    env = {**os.environ, "NEURODSL_CACHE_DIR": str(tmp_path)}
    runs = []
    for _ in range(2):
        r = subprocess.run([sys.executable, "-c", _CACHED_RUN], cwd=Path(__file__).resolve().parents[2], env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    first, second = runs
    assert first["engine"] == second["engine"] == "loop"
    assert first["misses"] >= 1 and first["hits"] == 0  # compiled
    assert second["hits"] >= 1 and second["misses"] == 0  # loaded, not compiled
    assert second["spikes"] == first["spikes"] and len(first["spikes"]) > 0
    assert len(list((tmp_path / "loop").glob("chunk_*.py"))) == 1

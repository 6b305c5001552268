"""Online training (training.method eprop / d_rtrl, braintrace) of kind fit: the online layout of the
core has the core's spikes; e-prop's gradient equals BPTT's where theory says so; resume is
bit-identical with the eligibility traces in the checkpoint; unsupported specs are located errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from neurodsl.errors import SpecError
from neurodsl.spec import load_spec_text
from neurodsl.runners.fit import run_fit

SPEC = """
name: tiny_online
kind: fit
seed: 3
dt: 0.5 ms
duration: 100 ms
trials: 2
populations:
  E: {size: 30, cell_type: E, neuron: &lif {model: lif_cond, tau_m: 10 ms, g_L: 10 nS, E_L: -60 mV,
                                            V_th: -50 mV, V_reset: -60 mV, t_ref: 2 ms}}
  I: {size: 10, cell_type: I, neuron: *lif}
receptors:
  ampa: {kind: exp, tau_decay: 3 ms, E_rev: 0 mV}
  gaba: {kind: dual_exp, tau_rise: 1 ms, tau_decay: 6 ms, E_rev: -80 mV}
inputs:
  bg: {kind: poisson, size: 50, rate: 20 Hz}
projections:
  - {pre: bg, post: E, receptor: ampa, weight: 1.2 nS, connectivity: {kind: fixed_indegree, k: 20},
     trainable: {param: scale, bounds: [0.05, 20]}}
  - {pre: bg, post: I, receptor: ampa, weight: 1.2 nS, connectivity: {kind: fixed_indegree, k: 20}}
  - {pre: E, post: I, receptor: ampa, weight: 1 nS, connectivity: {kind: bernoulli, p: 0.3},
     trainable: {param: scale, group: exc}}
  - {pre: I, post: E, receptor: gaba, weight: 3 nS, delay: 1 ms, connectivity: {kind: bernoulli, p: 0.3},
     trainable: {param: scale}}
objectives:
  - {kind: rate, population: E, target: 30 Hz}
  - {kind: rate, population: I, target: 20 Hz}
training: {method: eprop, learning_rate: 0.1, momentum: 0.5, batch: 2, chunk: 10 ms, chunks_per_update: 2,
           warmup: 5 ms, epochs: 2, updates_per_epoch: 3, checkpoint_interval: 1}
"""


def _nets():
    from neurodsl.compile import compile_network
    from neurodsl.compile.spikes import SurrogateHeaviside
    spec = load_spec_text(SPEC).spec
    fn = SurrogateHeaviside("fast_sigmoid", 10.0, 0.0, True)   # synaptic_grad 0
    return spec, compile_network(spec, fn, "auto"), compile_network(spec, fn, "auto", online=True)


def test_online_layout_has_the_cores_spikes():
    import brainstate
    import jax.numpy as jnp
    _, core, online = _nets()
    out = []
    for net in (core, online):   # jitted: 150 eager steps took ~35 s
        net.init_state(2, 11)
        run = brainstate.transform.jit(lambda net=net: brainstate.transform.for_loop(
            lambda n: jnp.concatenate(list(net.update(n).values()), -1), jnp.arange(150, dtype=jnp.int32)))
        out.append(np.asarray(run()))
    assert out[0].sum() > 20
    np.testing.assert_array_equal(out[0], out[1])


@pytest.mark.parametrize("method", ["eprop", "d_rtrl"])
def test_online_gradient_equals_bptt_without_synaptic_gradient(method):
    """With no gradient through the propagated spikes every neuron's states evolve on their own
    (the hidden-to-hidden Jacobian is block-diagonal per neuron), so the diagonal trace is exact:
    the online gradient of sum_t spikes_t over 120 steps equals BPTT's through the whole sequence."""
    import brainstate
    import braintrace
    import jax
    import jax.numpy as jnp
    from neurodsl.compile.online import OnlineModel
    spec, _, net = _nets()
    model = OnlineModel(net)
    learner = braintrace.compile(model, method, jnp.asarray(0, jnp.int32), batch_size=2)
    net.init_state(2, 5)
    st0, p0 = net.read_state(), net.params()
    states = net.trainable_states()
    grad = brainstate.transform.jit(brainstate.transform.grad(lambda n: learner(n)[0].sum(), states))
    online = {k: 0.0 for k in states}
    for n in range(120):
        online = {k: online[k] + v for k, v in grad(jnp.asarray(n, jnp.int32)).items()}

    def total(p):
        def body(st, n):
            st, sp = net.step(st, p, n)
            return st, sum(sp[k].sum() for k in net.populations)
        return jax.lax.scan(body, st0, jnp.arange(120))[1].sum()
    bptt = jax.grad(total)(p0)
    assert float(total(p0)) > 10
    for k in states:
        assert abs(float(bptt[k])) > 1e-3, k
        np.testing.assert_allclose(float(online[k]), float(bptt[k]), rtol=1e-4, err_msg=k)


def test_eprop_resume_is_bit_identical_with_traces_in_the_checkpoint(tmp_path):
    from neurodsl.runners.checkpoint import load_checkpoint
    full, part = tmp_path / "full", tmp_path / "part"
    s = run_fit(load_spec_text(SPEC), full, progress=False)
    assert s["method"] == "eprop"
    run_fit(load_spec_text(SPEC), part, progress=False, max_updates=4)   # stops inside epoch 2
    tree = load_checkpoint(part / "checkpoints" / "checkpoint_latest.npz").tree
    traces = [np.asarray(v) for k, v in tree.items() if "traces" in k]
    assert len(traces) >= 3 and any(np.abs(t).sum() > 0 for t in traces)
    run_fit(load_spec_text(SPEC), part, resume=True, progress=False)
    a, b = np.load(full / "params.npz"), np.load(part / "params.npz")
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k])
    ha = [{k: v for k, v in r.items() if k != "seconds"} for r in json.loads((full / "metrics.json").read_text())]
    hb = [{k: v for k, v in r.items() if k != "seconds"} for r in json.loads((part / "metrics.json").read_text())]
    assert ha == hb and len(ha) == 6 and ha[0]["loss"] != ha[-1]["loss"]


def test_training_online_replaces_trainings_values_for_the_online_methods_only():
    over = ["training.online.learning_rate=0.01", "training.online.grad_clip=100", "training.online.adam_b2=0.9",
            "training.online.optimizer=optimistic_adam"]
    t = load_spec_text(SPEC, overrides=over).spec.training.for_method()
    assert (t.method, t.learning_rate, t.grad_clip, t.adam_b2, t.optimizer, t.momentum) == (
        "eprop", 0.01, 100, 0.9, "optimistic_adam", 0.5)
    bptt = load_spec_text(SPEC, overrides=[*over, "training.method=bptt"]).spec.training
    assert bptt.for_method() is bptt and (bptt.learning_rate, bptt.grad_clip, bptt.adam_b2, bptt.optimizer) == (
        0.1, 1.0, 0.999, "adam")


@pytest.mark.parametrize("change, field", [
    (["objectives[0]={kind: fano, population: E, target: 1}"], "objectives[0].kind"),
    (["projections[0].trainable.param=weight"], "projections[0].trainable.param"),
    (["training.surrogate.detach_reset=false"], "training.surrogate.detach_reset"),
    (["training.method=pp_prop"], "training.method"),
])
def test_what_online_methods_do_not_cover_is_a_located_error(change, field):
    with pytest.raises(SpecError) as e:
        load_spec_text(SPEC, overrides=change)
    assert field in e.value.one_line()

"""Online training (training.method eprop / d_rtrl) of kind homeostatic: the gradient of the
olfactory model's online learner, mapped onto log_scaling, equals BPTT's where theory says so;
resume is bit-identical with the eligibility traces in the checkpoint; what the online methods do
not cover is a located error."""
from __future__ import annotations

import numpy as np
import pytest

from online_resume import assert_online_resume_bit_identical

from neurodsl.errors import SpecError
from neurodsl.spec import load_spec_text

SPEC = """name: homeo_online
kind: homeostatic
seed: 2
duration: 0.1 s
network:
  generator: {n_neurons: 40, n_inputs: 20, n_assemblies: 2}
inputs: {baseline: 20 Hz}
targets: {E: {rate: 4 Hz}, I: {rate: 16 Hz}}
losses: {rate: 1.0, silent: 0.1, membrane: 0.1, weight_ratio: 0.1}
training: {method: eprop, batch: 2, chunk_size: 10, chunks_per_update: 2, epochs: 2, updates_per_epoch: 2,
           learning_rate: 0.1, checkpoint_interval: 1, log_interval: 100}
"""


def _setup(*over):
    from neurodsl.runners.homeostatic import homeostatic_setup
    return homeostatic_setup(load_spec_text(SPEC, overrides=list(over)).spec)


@pytest.mark.parametrize("method", ["eprop", "d_rtrl"])
def test_online_gradient_equals_bptt_without_recurrent_gradient(method):
    """recurrent_grad 0: each neuron's states evolve on their own, so the diagonal trace is exact and
    the online gradient of sum_t spikes_t (summed per (post, pre) onto log_scaling) equals BPTT's
    through the whole sequence of the default (bptt-layout) model."""
    import brainstate
    import jax
    import jax.numpy as jnp
    from neurodsl.runners.eprop import OnlineSpikingUpdate
    from neurodsl.runners.spiking_train import make_optimizer
    over = [f"training.method={method}", "training.surrogate.recurrent_grad=0", "inputs.baseline=100 Hz",
            "losses.weight_ratio=0"]   # _gradient adds the parameter-only weight_ratio term exactly
    setup, ref = _setup(*over), _setup(*over, "training.method=bptt")
    upd = OnlineSpikingUpdate(setup, make_optimizer(setup.training))
    m, params = setup.model, setup.params
    V0 = np.asarray(setup.initial_V(0))
    inputs = jnp.asarray(setup.provider(0, 0)["inputs"].reshape(-1, 2, m.n_inputs))  # (40, B, n_in)
    for st, i, j in upd.scales:
        st.value = params["log_scaling"][i, j]
    m.net.write_state(m.init_state(V0))
    for k, s in upd.traces.items():   # the traces start at zero (as at every epoch of training)
        s.value = m.trace_zeros[k]
    grad = brainstate.transform.jit(brainstate.transform.grad(
        lambda n, s: upd.learner(n, s)[0].sum(), grad_states=upd.grad_states))
    g = {k: 0.0 for k in upd.grad_states}
    for n in range(inputs.shape[0]):
        g = jax.tree.map(jnp.add, g, grad(jnp.asarray(n, jnp.int32), inputs[n]))
    online = np.asarray(upd._gradient(params, g)["log_scaling"])

    def total(p):
        _, out = ref.model.run(p, ref.model.init_state(V0), inputs)
        return out["spikes"].sum()
    bptt = np.asarray(jax.grad(total)(params)["log_scaling"])
    assert float(total(params)) > 10 and np.abs(bptt).max() > 1e-2
    np.testing.assert_allclose(online, bptt, rtol=1e-4, atol=1e-6 * np.abs(bptt).max())


def test_eprop_resume_is_bit_identical_with_traces_in_the_checkpoint(tmp_path):
    assert_online_resume_bit_identical(_setup, tmp_path, min_traces=3)   # the 1-update run stops inside epoch 0


@pytest.mark.parametrize("change, field", [
    (["training.trainable=weights"], "training.trainable"),
    (["training.surrogate.detach_reset=false"], "training.surrogate.detach_reset"),
    (["training.method=pp_prop"], "training.method"),
    (["training.mehtod=eprop"], "training.mehtod"),
])
def test_what_online_methods_do_not_cover_is_a_located_error(change, field):
    with pytest.raises(SpecError) as e:
        load_spec_text(SPEC, overrides=change)
    assert field in e.value.one_line()


def test_kind_student_takes_the_online_methods_for_the_scaling_only():
    """fit-student trains online since runners/student_online.py; per-synapse weights stay BPTT's."""
    from neurodsl.spec.base import CrossFieldError
    from neurodsl.spec.training import TrainingSpec, _online_checks
    _online_checks(TrainingSpec(method="d_rtrl"), "student")
    with pytest.raises(CrossFieldError) as e:
        _online_checks(TrainingSpec(method="eprop", trainable="weights"), "student")
    assert e.value.path == ("training", "trainable") and "scaling only" in str(e.value)

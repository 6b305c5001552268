"""Trials split across devices (runners/devices.py): the same spikes, losses and gradients on 2 devices
as on 1.  The 2 devices are XLA host devices (``--xla_force_host_platform_device_count=2``), which
must be set before JAX starts: both runs are subprocesses, run at the same time."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from neurodsl.errors import SpecError

REPO = Path(__file__).resolve().parents[2]
# the rate-RNN check compiles a whole training epoch (~15 s more per run): opt-in
RNN = os.environ.get("NEURODSL_TEST_RNN_DEVICES") == "1"

# Poisson input (random numbers drawn inside the loop), event kernels (banked, and standalone under
# a trained scale), a delay, a trained per-synapse weight (dense): everything whose placement matters.
SPEC = """
name: tiny_devices
kind: fit
seed: 1
dt: 0.5 ms
duration: 40 ms
trials: 4
populations:
  E: {size: 40, cell_type: E, neuron: &lif {model: lif_cond, tau_m: 10 ms, g_L: 10 nS, E_L: -60 mV,
                                            V_th: -50 mV, V_reset: -60 mV, t_ref: 2 ms}}
  I: {size: 10, cell_type: I, neuron: *lif}
receptors:
  ampa: {kind: exp, tau_decay: 3 ms, E_rev: 0 mV}
  gaba: {kind: exp, tau_decay: 6 ms, E_rev: -80 mV}
inputs:
  bg: {kind: poisson, size: 50, rate: 40 Hz}
projections:
  - {pre: bg, post: E, receptor: ampa, weight: 1.5 nS, connectivity: {kind: fixed_indegree, k: 20},
     trainable: {param: scale, bounds: [0.05, 20]}}
  - {pre: bg, post: I, receptor: ampa, weight: 1.5 nS, connectivity: {kind: fixed_indegree, k: 20}}
  - {pre: E, post: E, receptor: ampa, weight: 0.5 nS, delay: 1 ms, connectivity: {kind: bernoulli, p: 0.2},
     trainable: {param: weight, sigma: 0.1}}
  - {pre: E, post: I, receptor: ampa, weight: 1 nS, delay: 1 ms, connectivity: {kind: bernoulli, p: 0.3}}
  - {pre: I, post: E, receptor: gaba, weight: 2 nS, connectivity: {kind: bernoulli, p: 0.3}}
objectives:
  - {kind: rate, population: E, target: 30 Hz}
training: {learning_rate: 0.1, momentum: 0.5, batch: 4, chunk: 10 ms, chunks_per_update: 2, epochs: 1,
           updates_per_epoch: 2, warmup: 0 ms}
"""

SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
from pathlib import Path
import numpy as np
import jax
out = Path(sys.argv[1])
from neurodsl.spec import load_spec_text
from neurodsl.runners.simulate import configure_precision, run_network
from neurodsl.runners import fit, rnn_fit
spec = load_spec_text(sys.argv[2]).spec
configure_precision(spec.precision)
from neurodsl.compile import compile_network

net = compile_network(spec)                       # simulation: Heaviside spikes, event kernels
net.init_state(spec.trials, spec.seed)
res = run_network(net, spec.n_steps, 20, 40, progress=False)
np.savez(out / "spikes.npz", **res.events)
info = {"devices": len(jax.devices()), "n_spikes": int(res.n_spikes), "t_sim": time.perf_counter() - t0,
        "state_sharding": str(net.populations["E"].V.value.sharding.spec)
        if hasattr(net.populations["E"].V.value.sharding, "spec") else "single"}

tr = fit.FitTrainer(spec)                         # surrogate-gradient BPTT over the batch
r = fit.train(tr, out / "fit", progress=False, max_updates=2)
info["t_fit"] = time.perf_counter() - t0
info["fit"] = [{k: v for k, v in row.items() if k != "seconds"} for row in r["history"]]
np.savez(out / "params.npz", **{k: np.asarray(p.value) for k, p in tr.params.items()})

if sys.argv[3:] != ["rnn"]:
    (out / "info.json").write_text(json.dumps(info))
    sys.exit(0)
data = rnn_fit.make_data(out / "syn.mat", n_exc=4, n_inh=2, n_trials=96, n_time=20, seed=1)[0]
text = (f"name: tiny\nkind: rnn_fit\nseed: 3\ndt: 25 ms\ndata: {{file: '{data}'}}\n"
        "model: {embedding: {kind: linear, dim: 4}, hidden_exc: 2, hidden_inh: 1}\n"
        "training: {batch_size: 16}\n")
loaded = load_spec_text(text)
rt = rnn_fit.Trainer(loaded, rnn_fit.prepare_data(loaded))  # minibatches of trials, one compiled epoch
state, info["rnn"] = rt.state0, []
for _ in range(2):
    state, met = rt.epoch_fn(state)
    info["rnn"].append({k: float(met[k]) for k in ("train_loss", "val_loss", "val_correlation")})
info["rnn_sharding"] = str(getattr(rt.val_arrays["target"].sharding, "spec", "single"))
info["t_rnn"] = time.perf_counter() - t0
(out / "info.json").write_text(json.dumps(info))
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{1: folder, 2: folder} of the same script on one and on two host devices."""
    folders, procs = {}, {}
    for n in (1, 2):
        folders[n] = tmp_path_factory.mktemp(f"devices{n}")
        env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}", "JAX_PLATFORMS": "cpu"}
        env.pop("NEURODSL_DEVICES", None)
        procs[n] = subprocess.Popen([sys.executable, "-c", SCRIPT, str(folders[n]), SPEC, *(["rnn"] if RNN else [])],
                                    cwd=REPO, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for n, p in procs.items():
        log, _ = p.communicate(timeout=900)  # ~15 s CPU each; generous for a loaded machine
        assert p.returncode == 0, log[-4000:]
    return {n: (f, json.loads((f / "info.json").read_text())) for n, f in folders.items()}


def test_two_devices_really_split_the_trials(runs):
    assert runs[1][1]["devices"] == 1 and runs[1][1]["state_sharding"] == "single"
    assert runs[2][1]["devices"] == 2 and runs[2][1]["state_sharding"] == "P('trial', None)"


def test_simulation_spikes_identical_on_two_devices(runs):
    one, two = (np.load(runs[n][0] / "spikes.npz") for n in (1, 2))
    assert len(one["step"]) > 50 and set(one["trial"].tolist()) == {0, 1, 2, 3}
    for k in ("trial", "step", "neuron"):
        np.testing.assert_array_equal(one[k], two[k])


def test_fit_losses_gradients_and_parameters_identical_on_two_devices(runs):
    h1, h2 = runs[1][1]["fit"], runs[2][1]["fit"]
    assert len(h1) == 2 and h1[0]["grad_norm"] > 0
    assert h1 == h2  # loss, every loss term, rates, gradient norm: the same numbers
    p1, p2 = (np.load(runs[n][0] / "params.npz") for n in (1, 2))
    for k in p1.files:
        np.testing.assert_array_equal(p1[k], p2[k])


@pytest.mark.skipif(not RNN, reason="opt-in: NEURODSL_TEST_RNN_DEVICES=1 (compiles an rnn_fit epoch)")
def test_rnn_fit_identical_on_two_devices(runs):
    """Minibatch losses and validation to float32 rounding (cross-device sums: measured 1e-7)."""
    assert runs[2][1]["rnn_sharding"] == "P('trial', None, None)"
    r1, r2 = runs[1][1]["rnn"], runs[2][1]["rnn"]
    assert len(r1) == 2
    np.testing.assert_allclose([list(r.values()) for r in r1], [list(r.values()) for r in r2], rtol=1e-6)


def test_one_device_is_a_no_op_and_bad_requests_are_errors(monkeypatch):
    from neurodsl.runners import devices
    import jax
    monkeypatch.delenv(devices.ENV, raising=False)
    assert len(jax.devices()) > 1 or devices.trial_mesh(4) is None
    x = np.zeros((3, 4))
    assert devices.shard(x, None, 3) is x
    monkeypatch.setenv(devices.ENV, str(len(jax.devices()) + 1))
    with pytest.raises(SpecError, match="visible"):
        devices.trial_mesh(4)
    monkeypatch.setenv(devices.ENV, "two")
    with pytest.raises(SpecError, match="device count"):
        devices.trial_mesh(4)

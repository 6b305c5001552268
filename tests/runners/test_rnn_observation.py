"""model.observation and training.losses.lambda_obs end to end on tiny synthetic data: sampled counts
give a Poisson-like Fano factor, the likelihood term is logged and trained on, NLB metrics reach the
report, and the spec refuses a likelihood weight without an observation model."""
from __future__ import annotations

import json

import numpy as np
import pytest

from neurodsl.errors import SpecError
from neurodsl.runners.rnn_fit import make_data, run_rnn_fit
from neurodsl.spec import load_spec_text


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("rnn_obs")
    return make_data(d / "syn.mat", n_exc=4, n_inh=2, n_trials=96, n_time=24, seed=1)[0]


def spec(path, *over):
    text = (f"name: tiny\nkind: rnn_fit\nseed: 3\ndt: 25 ms\ndata: {{file: '{path}', condition_keys: [location]}}\n"
            "model: {embedding: {kind: linear, dim: 8, heads: 2}, hidden_exc: 2, hidden_inh: 1}\n"
            "training: {detail_every: 2, checkpoint_every: 100, line_every: 100, test_epochs: 2}\n")
    return load_spec_text(text, overrides=list(over))


def test_poisson_observation_samples_counts_with_fano_near_one(tiny_data, tmp_path):
    s = run_rnn_fit(spec(tiny_data, "model.observation=poisson", "model.noise=0.0"), tmp_path, test=True,
                    progress=False)
    assert s["observation"] == "poisson"
    assert 0.75 < s["fano_model"] < 1.25, s["fano_model"]          # Poisson counts (no process noise)
    assert s["fano_model_rate"] < 0.1 * s["fano_model"]        # the rates themselves: no spiking noise
    log = json.loads((tmp_path / "training_log.json").read_text())
    assert 0.75 < log[1]["fano_model"] < 1.25 and "L_obs" not in log[0]   # lambda_obs 0: PSTH losses only
    report = (tmp_path / "training_report.md").read_text()
    assert "bits per spike" in report and "sampled" in report and np.isfinite(s["bits_per_spike"])
    assert np.isfinite(s["psth_r2"])


def test_default_fano_is_rate_times_bin_and_says_so(tiny_data, tmp_path):
    s = run_rnn_fit(spec(tiny_data, "model.noise=0.0"), tmp_path, test=True, progress=False)
    assert s["observation"] == "none" and s["fano_model"] == s["fano_model_rate"] < 0.1
    assert "no observation model" in (tmp_path / "training_report.md").read_text()


@pytest.mark.parametrize("observation", ["poisson", "gaussian"])
def test_likelihood_term_is_logged_and_lowers_its_loss(tiny_data, tmp_path, observation):
    s = run_rnn_fit(spec(tiny_data, f"model.observation={observation}", "training.losses.lambda_obs=1.0",
                         "training.losses.lambda_neuron=0.0", "training.losses.ltrial_scale=0.0",
                         "training.learning_rate=0.01", "training.epochs=12"),
                    tmp_path, progress=False, outputs=False)
    obs = [e["L_obs"] for e in s["log"]]
    assert all(np.isfinite(obs)) and obs[-1] < obs[0], obs


def test_lambda_obs_needs_an_observation_model(tiny_data):
    with pytest.raises(SpecError, match="observation"):
        spec(tiny_data, "training.losses.lambda_obs=1.0")

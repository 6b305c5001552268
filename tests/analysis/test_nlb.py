"""Observation-model metrics (analysis/nlb.py) against hand-computed values and nlb_tools' formulas,
and parity of the training losses (runners/rnn_losses.obs_loss) with them."""
from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest
from jax import enable_x64

from neurodsl.analysis import nlb
from neurodsl.analysis.rnn_report import fano_by_condition
from neurodsl.runners import rnn_losses as L


def test_poisson_nll_by_hand():
    lam = np.array([[[1.0, 2.0]]])
    n = np.array([[[0.0, 3.0]]])
    # (1 - 0 log 1 + log 0!) + (2 - 3 log 2 + log 3!)
    assert nlb.poisson_nll(lam, n) == pytest.approx(1.0 + 2.0 - 3 * math.log(2) + math.log(6), rel=1e-12)
    # nlb_tools: a zero rate counts as 1e-9; NaN counts are skipped
    assert nlb.poisson_nll(np.array([[[0.0, 2.0]]]), np.array([[[1.0, np.nan]]])) == \
        pytest.approx(1e-9 - math.log(1e-9), rel=1e-12)
    with pytest.raises(ValueError, match="negative"):
        nlb.poisson_nll(-lam, n)


def test_bits_per_spike_is_nlb_tools_formula():
    n = np.array([[[0.0, 2.0], [1.0, 0.0]], [[3.0, 1.0], [0.0, 1.0]]])     # 2 trials x 2 bins x 2 neurons
    lam = np.array([[[0.5, 1.5], [1.0, 0.2]], [[2.0, 1.0], [0.3, 0.8]]])

    def nll(r, k):
        return sum(r.flat[i] - k.flat[i] * math.log(r.flat[i]) + math.lgamma(k.flat[i] + 1) for i in range(k.size))
    null = np.tile(n.mean(axis=(0, 1), keepdims=True), (2, 2, 1))            # per-neuron mean count
    want = (nll(null, n) - nll(lam, n)) / n.sum() / math.log(2)
    assert nlb.bits_per_spike(lam, n) == pytest.approx(want, rel=1e-12)
    assert nlb.bits_per_spike(null, n) == pytest.approx(0.0, abs=1e-12)     # the null scores 0
    assert nlb.bits_per_spike(n + 1e-3, n) > 0 > nlb.bits_per_spike(null[..., ::-1] * 3, n)
    per = nlb.bits_per_spike_per_neuron(lam, n)
    for j in range(2):
        assert per[j] == pytest.approx(nlb.bits_per_spike(lam[..., j:j + 1], n[..., j:j + 1]), rel=1e-12)


def test_psth_r2_by_hand():
    psth = np.array([[[1.0, 5.0], [3.0, 5.0]]])                            # neuron 2 constant
    rates = np.array([[[2.0, 5.0], [3.0, 5.0]]])
    # neuron 1: 1 - (1 + 0) / ((1-2)^2 + (3-2)^2) = 0.5; neuron 2: constant and matched -> 1 (sklearn)
    assert nlb.psth_r2(psth, rates) == pytest.approx(0.75)
    assert nlb.psth_r2(psth, rates + [0.0, 1.0]) == pytest.approx(0.25)     # constant, missed -> 0
    psth_nan = psth.copy()
    psth_nan[0, 0] = np.nan                                                  # rows with a NaN PSTH skipped
    assert nlb.psth_r2(psth_nan, rates) == pytest.approx(1.0)


def test_condition_psth_uses_all_trials_of_the_condition():
    x = np.arange(4 * 3 * 1, dtype=float).reshape(4, 3, 1)
    cond, valid = np.array([0, 0, 1, 1]), np.ones((4, 3))
    p = nlb.condition_psth_per_trial(x, valid, cond, np.array([1, 3]), 0.0)
    np.testing.assert_allclose(p[0, :, 0], x[:2, :, 0].mean(0))
    np.testing.assert_allclose(p[1, :, 0], x[2:, :, 0].mean(0))


def test_poisson_samples_have_fano_one():
    rng = np.random.default_rng(0)
    cond = np.repeat(np.arange(3), 200)
    rate = np.broadcast_to(rng.uniform(5, 40, (3, 1, 10, 4)), (3, 200, 10, 4)).reshape(600, 10, 4)
    valid = np.ones((600, 10))
    counts = nlb.sample_observations(rate, 25.0, "poisson", seed=1)
    f = fano_by_condition(counts, valid, cond, 25.0)
    np.testing.assert_allclose(f, 1.0, atol=0.05)
    assert np.nanmax(fano_by_condition(rate, valid, cond, 25.0)) < 1e-12  # the rates themselves: no noise
    assert np.allclose(counts * 0.025, np.round(counts * 0.025))           # integer counts per bin


def test_within_condition_sd_recovers_the_noise():
    rng = np.random.default_rng(1)
    cond = np.repeat(np.arange(4), 50)
    y = rng.normal(0, 1, (4, 1, 20, 3)).repeat(50, 1).reshape(200, 20, 3) + rng.normal(0, [0.5, 1.0, 2.0],
                                                                                          (200, 20, 3))
    np.testing.assert_allclose(nlb.within_condition_sd(y, np.ones((200, 20)), cond), [0.5, 1.0, 2.0], rtol=0.03)


def _batch(rng, b=3, t=5, n=2):
    target = rng.poisson(0.8, (b, t, n)) / 0.025                            # counts / bin -> sp/s
    valid = np.ones((b, t))
    valid[1, 3:] = 0
    return target, valid


@pytest.mark.parametrize("observation", ["poisson", "gaussian"])
def test_observation_loss_equals_the_metric(observation):
    """The training loss L_obs is the metric's NLL total divided by the number of valid values."""
    rng = np.random.default_rng(2)
    target, valid = _batch(rng)
    rates = rng.gamma(2.0, 15.0, target.shape)
    rates[0, 0, 0] = 0.0                                                       # zero rate: 1e-9 in both
    sigma = np.array([3.0, 7.0])
    cfg = L.LossConfig(1.0, 0.0, 0.0, 0.0, 0.0, 0.05, 1, False, 0.9, 1.0, observation, 0.025)
    with enable_x64():
        batch = {"target": jnp.asarray(target), "valid": jnp.asarray(valid)}
        loss = float(L.obs_loss(jnp.asarray(rates), batch, {"obs_sigma": jnp.asarray(sigma)}, cfg))
    y = np.where(valid[..., None] > 0, target, np.nan)
    k = int(valid.sum()) * target.shape[-1]
    if observation == "poisson":
        want = nlb.poisson_nll(nlb.to_counts(rates, 25.0), nlb.to_counts(y, 25.0)) / k
    else:
        want = nlb.gaussian_nll(rates, y, sigma) / k
    assert loss == pytest.approx(want, rel=1e-10)


def test_gaussian_nll_by_hand():
    assert nlb.gaussian_nll(np.array([[1.0, 0.0]]), np.array([[3.0, 0.0]]), np.array([2.0, 1.0])) == \
        pytest.approx(0.5 * math.log(2 * math.pi * 4) + 4 / 8 + 0.5 * math.log(2 * math.pi), rel=1e-12)


def test_observation_metrics_null_and_perfect():
    rng = np.random.default_rng(3)
    cond = np.repeat(np.arange(2), 40)
    lam = rng.uniform(0.05, 1.5, (2, 1, 30, 3)).repeat(40, 1).reshape(80, 30, 3)
    counts = rng.poisson(lam)
    rates, valid, val = counts / 0.025, np.ones((80, 30)), np.arange(0, 80, 2)
    per, head = nlb.observation_metrics(lam[val] / 0.025, rates, valid, cond, val, 25.0, 0.0, "poisson")
    assert head["bits_per_spike"] > 0.05 and (per["bits_per_spike"] > 0).all()
    flat = np.broadcast_to(counts[val].mean((0, 1)), lam[val].shape) / 0.025
    _, head0 = nlb.observation_metrics(flat, rates, valid, cond, val, 25.0, 0.0, "poisson")
    assert head0["bits_per_spike"] == pytest.approx(0.0, abs=1e-9)
    assert head["psth_r2"] > head0["psth_r2"]


def test_trial_matching_pairs_trials_within_conditions():
    a = np.zeros((4, 3, 1))
    a[1] = 2.0                                                  # condition 0: trials 0 (zeros) and 1 (twos)
    b = a[[1, 0, 3, 2]]                                          # same trials, other order
    cond = np.array([0, 0, 1, 1])
    assert nlb.trial_matching_cost(a, b, cond, cond, 0.0) == pytest.approx(0.0, abs=1e-12)
    sd = np.nanstd(b)
    c = b + 1.0                                                  # every value off by 1 -> (1 / sd)^2
    assert nlb.trial_matching_cost(c, b, cond, cond, 0.0) == pytest.approx(1.0 / sd ** 2, rel=1e-9)
    # across conditions nothing is paired: condition 1 of a never meets condition 0 of b
    assert nlb.trial_matching_cost(a, b, cond, 1 - cond, 0.0) > 0


def test_poisson_calibration_recovers_the_gain_of_overmodulated_rates():
    """Rates modulated twice as deep as the truth about the mean: the Poisson ML gain is 1/2 and the
    offset puts the mean back; on held-out counts the calibrated rates score nearly what the true rates
    score, the raw ones below 0 (over-modulation is what costs the likelihood)."""
    rng = np.random.default_rng(0)
    truth = 0.3 + 0.12 * np.sin(np.linspace(0, 6 * np.pi, 50))[None, :, None] * np.ones((400, 50, 3))
    model = 0.3 + 2.0 * (truth - 0.3)
    n_train, n_test = rng.poisson(truth).astype(float), rng.poisson(truth).astype(float)
    n_train[..., 2] = 0.0                                               # a silent neuron: left as it is
    a, b = nlb.poisson_calibration(model, n_train)
    assert a[:2] == pytest.approx(0.5, abs=0.02) and b[:2] == pytest.approx(0.15, abs=0.01)
    assert (a[2], b[2]) == (1.0, 0.0)
    cal = nlb.calibrated(model, a, b)
    best = nlb.bits_per_spike(truth[..., :2], n_test[..., :2])           # what the true rates score
    assert best > 0.03
    assert nlb.bits_per_spike(cal[..., :2], n_test[..., :2]) > 0.95 * best
    assert nlb.bits_per_spike(model[..., :2], n_test[..., :2]) < 0
    a1, b1 = nlb.poisson_calibration(truth[..., :2], n_train[..., :2])  # exact rates: gain 1, offset 0
    assert a1 == pytest.approx(1.0, abs=0.03) and b1 == pytest.approx(0.0, abs=0.01)


def test_calibration_offset_keeps_every_bin_above_the_floor():
    """Bins without training spikes cannot be predicted silent: the offset is at least 1e-3 x the mean count."""
    rng = np.random.default_rng(2)
    model = np.concatenate([np.full((200, 10, 1), 1e-4), np.full((200, 10, 1), 0.5)], axis=1)
    n = rng.poisson(np.concatenate([np.zeros((200, 10, 1)), np.full((200, 10, 1), 0.5)], axis=1)).astype(float)
    a, b = nlb.poisson_calibration(model, n)
    assert b[0] >= 1e-3 * n.mean() * (1 - 1e-9) and a[0] > 0


def test_calibrated_bits_per_spike_uses_training_counts_only_and_the_same_masks():
    rng = np.random.default_rng(1)
    rates = rng.poisson(2.0, (40, 20, 3)) * 40.0                        # sp/s in 25 ms bins
    valid, cond = np.ones((40, 20)), np.arange(40) % 4
    valid[::3, 15:] = 0                                                 # invalid bins in both sets
    train, val = np.arange(30), np.arange(30, 40)
    model = np.full((10, 20, 3), 80.0) + rng.random((10, 20, 3)) * 10
    model_train = np.full((30, 20, 3), 80.0) + rng.random((30, 20, 3)) * 10
    per, head = nlb.observation_metrics(model, rates, valid, cond, val, 25.0, 1.0, train=train, model_train=model_train)
    ok_t = valid[train] > 0
    n_t = np.where(ok_t[..., None], rates[train] * 0.025, np.nan)
    a, b = nlb.poisson_calibration(model_train * 0.025, n_t)
    np.testing.assert_allclose(per["calibration_gain"], a)
    np.testing.assert_allclose(per["calibration_offset_hz"], b * 40.0)
    ok = valid[val] > 0
    n_v = np.where(ok[..., None], rates[val] * 0.025, np.nan)
    want = nlb.bits_per_spike(np.where(ok[..., None], nlb.calibrated(model * 0.025, a, b), 0.0), n_v)
    assert head["bits_per_spike_calibrated"] == pytest.approx(want, rel=1e-12)
    changed = rates.copy()
    changed[val] = rng.poisson(5.0, (10, 20, 3)) * 40.0                 # other validation counts: same gains
    per2, _ = nlb.observation_metrics(model, changed, valid, cond, val, 25.0, 1.0, train=train, model_train=model_train)
    np.testing.assert_array_equal(per["calibration_gain"], per2["calibration_gain"])
    np.testing.assert_array_equal(per["calibration_offset_hz"], per2["calibration_offset_hz"])

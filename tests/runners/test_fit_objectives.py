"""Each fit objective's tracked quantity equals its analysis metric on the same 0/1 spikes (parity)."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from neurodsl.analysis import stats
from neurodsl.io.dataset import spiking_dataset
from neurodsl.runners import fit_objectives as FO

DT = 0.5  # ms
TOL = 1e-5  # float32 sums of a few hundred terms


def _spikes(seed=0, T=400, B=3, N=7, p=0.03):
    s = (np.random.default_rng(seed).random((T, B, N)) < p)
    s[:, :, 0] = False  # a silent neuron
    s[5, 0, 1] = True   # a neuron with a single spike
    s[:, :, 1] = False
    s[5, 0, 1] = True
    return s


def _dataset(s):
    T, B, N = s.shape
    t, b, n = np.nonzero(s)
    ev = {"trial": b, "step": t, "neuron": n}
    return spiking_dataset(ev, np.zeros((B, 1, N)), dt_ms=DT, n_steps=T, bin_ms=T * DT,
                           population=["P"] * N, ei=["E"] * N, attrs={})


def _tracked(s, fano_bin=0, chunks=2):
    T, B, N = s.shape
    obs = FO.init_obs(B, N, jnp.float32)
    V = jnp.zeros((T // chunks, B, N), jnp.float32)
    for c in range(chunks):  # trackers carried across chunks, as in an update window
        part = jnp.asarray(s[c * T // chunks:(c + 1) * T // chunks], jnp.float32)
        obs = FO.track(obs, part, V, DT, fano_bin)
    return obs


def test_rate_equals_analysis_per_neuron_rates():
    s = _spikes()
    want = stats.per_neuron_rates(_dataset(s)).mean("trial").values
    got = np.asarray(FO.neuron_rate(_tracked(s), DT))
    np.testing.assert_allclose(got, want, rtol=TOL)


def test_cv_equals_analysis_cv_isi_where_defined():
    s = _spikes(p=0.08)
    want = stats.cv_isi(_dataset(s)).values
    cv, w = FO.neuron_cv(_tracked(s))
    cv, w = np.asarray(cv), np.asarray(w)
    defined = np.isfinite(want)
    assert defined.sum() >= 4 and (~defined).sum() >= 2   # both cases are exercised
    np.testing.assert_allclose(cv[defined], want[defined], rtol=1e-4)
    assert (w[defined] == 1).all() and (w[~defined] == 0).all()


def test_fano_equals_analysis_per_neuron_fano():
    s = _spikes(p=0.1)
    bin_steps = 20
    want = stats.per_neuron_fano(_dataset(s), bin_ms=bin_steps * DT).values
    f, w = FO.neuron_fano(_tracked(s, fano_bin=bin_steps))
    defined = np.isfinite(want)
    np.testing.assert_allclose(np.asarray(f)[defined], want[defined], rtol=1e-4)
    assert (np.asarray(w)[~defined] == 0).all()


@pytest.mark.parametrize("per", ["population", "neuron"])
def test_rate_term_is_zero_at_the_target_and_positive_elsewhere(per):
    s = _spikes(p=0.05)
    obs = _tracked(s)
    r = np.asarray(FO.neuron_rate(obs, DT))
    mask = np.ones(s.shape[2], bool)
    at = FO.Term("rate", 1.0, mask, float(r.mean()), per)
    off = FO.Term("rate", 1.0, mask, float(r.mean()) * 2, per)
    assert float(FO.term_value(off, obs, DT, 0.0)) > 0.1
    if per == "population":
        assert float(FO.term_value(at, obs, DT, 0.0)) < 1e-10


def test_membrane_ratio_equals_analysis_threshold_ratio():
    rng = np.random.default_rng(4)
    T, B, N = 200, 3, 5
    V = rng.normal(-55, 3, (T, B, N))
    V[:, :, 0] = -49.5   # mean above V_th - 1 mV: the 1 mV floor applies
    V_th = -50.0
    obs = FO.track(FO.init_obs(B, N, jnp.float64), jnp.zeros((T, B, N)), jnp.asarray(V), DT, 0)
    got = np.asarray(FO.threshold_ratio(obs, V_th))
    # float32 sums of 200 squares; the loss floors the variance at 1e-12 mV^2 (std 1e-6 mV)
    np.testing.assert_allclose(got, stats.threshold_ratio(V, V_th), rtol=1e-4, atol=1e-5)

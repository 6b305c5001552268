"""Spike binning and single-neuron / population statistics."""
from __future__ import annotations

import numpy as np
import pytest

from neurodsl.analysis import spikes, stats


# ---------------------------------------------------------------- spikes.py
def test_spike_trains_times_sorted_and_per_neuron(make_spiking):
    ds = make_spiking([[[30, 10, 20], [], [5]]], dt_ms=0.5, n_steps=100)
    trains = spikes.spike_trains(ds)
    assert len(trains) == 3
    np.testing.assert_allclose(trains[0], [5.0, 10.0, 15.0])
    assert trains[1].size == 0
    np.testing.assert_allclose(trains[2], [2.5])


def test_spike_trains_needs_trial_when_several(make_spiking):
    ds = make_spiking([[[1]], [[2, 3]]], n_steps=10)
    with pytest.raises(ValueError):
        spikes.spike_trains(ds)
    np.testing.assert_allclose(spikes.spike_trains(ds, trial=1)[0], [0.2, 0.3])


@pytest.mark.parametrize("bin_ms", [10.0, 30.0, 0.25])
def test_binning_conserves_spike_counts(poisson_ds, bin_ms):
    counts = spikes.bin_spikes(poisson_ds, bin_ms)
    assert counts.dims == ("trial", "time", "neuron")
    assert int(counts.sum()) == poisson_ds.sizes["spike"]
    np.testing.assert_array_equal(counts.sum("time").values,
                                  spikes.spike_counts(poisson_ds).values)
    assert counts["time"].values[1] == pytest.approx(bin_ms)
    assert float(counts["bin_width_ms"].sum()) == pytest.approx(5000.0)
    assert list(counts["ei"].values[:2]) == ["E", "E"]


def test_binning_matches_histogram(poisson_ds):
    counts = spikes.bin_spikes(poisson_ds, 30.0)  # 5000 ms -> last bin partial (20 ms)
    steps = np.rint(spikes.spike_trains(poisson_ds, trial=1)[7] / 0.1)
    edges = np.r_[np.arange(0, 50_000, 300), 50_000] - 0.5  # 30 ms = 300 steps of 0.1 ms
    np.testing.assert_array_equal(counts.isel(trial=1, neuron=7).values,
                                  np.histogram(steps, edges)[0])


def test_rates_from_events_mean_equals_count_over_duration(poisson_ds):
    rate = spikes.rates_from_events(poisson_ds, 10.0)
    assert rate.attrs["units"] == "Hz"
    expected = spikes.spike_counts(poisson_ds) / 5.0
    np.testing.assert_allclose(rate.mean("time").values, expected.values, rtol=1e-12)
    smooth = spikes.rates_from_events(poisson_ds, 10.0, smooth_ms=50.0)
    np.testing.assert_allclose(smooth.mean("time").values, expected.values, rtol=0.05, atol=0.5)
    assert float(smooth.std("time").mean()) < float(rate.std("time").mean())


# ----------------------------------------------------------------- stats.py
def test_mean_rates_includes_silent_neurons(make_spiking):
    # 1 s at dt = 1 ms: E0 10 spikes, E1 silent, I0 and I1 5 spikes each
    ds = make_spiking([[np.arange(10) * 50, [], np.arange(5), np.arange(5) + 500]],
                      dt_ms=1.0, n_steps=1000, ei=["E", "E", "I", "I"])
    mr = stats.mean_rates(ds)
    assert mr["mean_rate"].sel(ei="E") == pytest.approx(5.0)
    assert mr["mean_rate"].sel(ei="I") == pytest.approx(5.0)
    assert mr["std_rate"].sel(ei="E") == pytest.approx(5.0)
    assert mr["mean_rate_trial"].dims == ("trial", "ei")
    assert stats.mean_rates(ds, by=None)["mean_rate"].item() == pytest.approx(5.0)


def test_mean_rates_pooled_over_trials(poisson_ds):
    mr = stats.mean_rates(poisson_ds)
    total = spikes.spike_counts(poisson_ds).sum("trial")
    e = poisson_ds["ei"].values == "E"
    assert mr["mean_rate"].sel(ei="E") == pytest.approx(total.values[e].sum() / (e.sum() * 2 * 5.0))
    assert mr["mean_rate"].sel(ei="E") == pytest.approx(10.0, rel=0.05)
    assert mr["mean_rate"].sel(ei="I") == pytest.approx(25.0, rel=0.05)


def test_mean_rates_from_rate_dataset(poisson_ds):
    rate_only = poisson_ds.drop_vars(["spike_trial", "spike_step", "spike_neuron"])
    a, b = stats.mean_rates(rate_only), stats.mean_rates(poisson_ds)
    np.testing.assert_allclose(a["mean_rate"].values, b["mean_rate"].values, rtol=1e-5)


def test_cv_poisson_is_one_and_regular_is_zero(make_spiking):
    rng = np.random.default_rng(1)
    poisson = np.flatnonzero(rng.random(2_000_000) < 0.005)  # 50 Hz at 0.1 ms, ~10^4 spikes
    regular = np.arange(0, 2_000_000, 200)
    ds = make_spiking([[poisson, regular, [5, 9], []]], n_steps=2_000_000)
    cv = stats.cv_isi(ds)
    assert cv.dims == ("neuron",)
    assert cv.values[0] == pytest.approx(1.0, abs=0.03)
    assert cv.values[1] == pytest.approx(0.0, abs=1e-12)
    assert np.isnan(cv.values[2]) and np.isnan(cv.values[3])  # < 3 spikes


def test_cv_never_uses_intervals_across_trials(make_spiking):
    # regular in each trial but with different phases: cross-trial ISIs would add jitter
    ds = make_spiking([[np.arange(0, 1000, 100)], [np.arange(37, 1000, 100)]], n_steps=1000)
    assert stats.cv_isi(ds).values[0] == pytest.approx(0.0, abs=1e-12)


def test_cv_population_poisson(poisson_ds):
    cv = stats.cv_isi(poisson_ds)
    assert float(cv.mean()) == pytest.approx(1.0, abs=0.05)


def test_fano_poisson_counts_is_one():
    counts = np.random.default_rng(2).poisson(4.0, size=(20_000, 3))
    f = stats.fano_factor(counts, axis=0)
    np.testing.assert_allclose(f, 1.0, atol=0.05)
    assert np.isnan(stats.fano_factor(np.zeros((10, 1)), axis=0)[0])
    regular = np.full((100, 1), 3)
    assert stats.fano_factor(regular, axis=0)[0] == 0.0


def test_fano_from_rates_converts_to_counts():
    bin_ms = 20.0
    counts = np.random.default_rng(3).poisson(2.0, size=(5_000, 4)).astype(float)
    rates = counts / (bin_ms / 1000.0)  # sp/s
    np.testing.assert_allclose(stats.fano_from_rates(rates, bin_ms, axis=0),
                               stats.fano_factor(counts, axis=0))
    # the pitfall the helper exists for: Fano on sp/s is off by 1000 / bin_ms
    np.testing.assert_allclose(stats.fano_factor(rates, axis=0),
                               stats.fano_factor(counts, axis=0) * 1000.0 / bin_ms)


def test_fano_dataarray_dims(poisson_ds):
    counts = spikes.bin_spikes(poisson_ds, 100.0)
    f = stats.fano_factor(counts, axis=("trial", "time"))
    assert f.dims == ("neuron",)
    assert float(f.mean()) == pytest.approx(1.0, abs=0.05)
    rf = stats.fano_from_rates(poisson_ds["rate"], axis="time")  # bin from attrs
    assert rf.dims == ("trial", "neuron")
    assert float(rf.mean()) == pytest.approx(1.0, abs=0.05)


# ------------------------------------------------------------ van Rossum
@pytest.mark.parametrize("tau", [5.0, 20.0])
@pytest.mark.parametrize("delta", [0.0, 3.0, 25.0])
def test_van_rossum_exp_single_spikes_analytic(tau, delta):
    d = stats.van_rossum_distance([10.0], [10.0 + delta], tau_ms=tau)
    assert d == pytest.approx(np.sqrt(1.0 - np.exp(-delta / tau)), abs=1e-12)
    assert stats.van_rossum_distance([10.0], [], tau_ms=tau) == pytest.approx(1 / np.sqrt(2))


@pytest.mark.parametrize("delta", [0.0, 4.0, 40.0, 300.0])
def test_van_rossum_double_exp_single_spikes_analytic(delta):
    rise, decay = 10.0, 100.0
    tc = rise * decay / (rise + decay)

    def corr(d):  # C(d) = int K(t) K(t + d) dt for K = e^{-t/decay} - e^{-t/rise}
        return (np.exp(-d / decay) * (decay / 2 - tc) + np.exp(-d / rise) * (rise / 2 - tc))

    d = stats.van_rossum_distance([50.0], [50.0 + delta], kernel="double_exp")
    assert d == pytest.approx(np.sqrt(1.0 - corr(delta) / corr(0.0)), abs=1e-12)
    unmatched = stats.van_rossum_distance([], [7.0], kernel="double_exp")
    assert unmatched == pytest.approx(1 / np.sqrt(2))


@pytest.mark.parametrize("kernel", ["exp", "double_exp"])
def test_van_rossum_matches_brute_force_integration(kernel):
    rng = np.random.default_rng(4)
    a, b = np.sort(rng.uniform(0, 300, 8)), np.sort(rng.uniform(0, 300, 5))
    dt, t = 0.01, np.arange(0, 2000, 0.01)
    if kernel == "exp":
        k = lambda s: np.where(s >= 0, np.exp(-np.clip(s, 0, None) / 10.0), 0.0)  # noqa: E731
    else:
        k = lambda s: np.where(s >= 0, np.exp(-np.clip(s, 0, None) / 100.0)  # noqa: E731
                               - np.exp(-np.clip(s, 0, None) / 10.0), 0.0)
    diff = sum(k(t - x) for x in a) - sum(k(t - x) for x in b)
    brute = np.sqrt(np.sum(diff ** 2) * dt / (2 * np.sum(k(t) ** 2) * dt))
    d = stats.van_rossum_distance(a, b, tau_ms=10.0, dt_ms=None, kernel=kernel)
    assert d == pytest.approx(brute, rel=2e-3)
    assert d == pytest.approx(stats.van_rossum_distance(b, a, tau_ms=10.0, dt_ms=None,
                                                        kernel=kernel))
    assert stats.van_rossum_distance(a, a, kernel=kernel) == 0.0


def test_van_rossum_grid_and_window():
    # rounding to the dt grid: 10.04 ms -> 10.0 ms
    assert stats.van_rossum_distance([10.04], [10.0], dt_ms=0.1) == pytest.approx(0.0, abs=1e-7)
    # finite window without the tail: one spike at 0, integrate to T only
    d = stats.van_rossum_distance([0.0], [], tau_ms=10.0, t_max=10.0, include_tail=False)
    assert d == pytest.approx(np.sqrt((1 - np.exp(-2.0)) / 2))


# ---------------------------------------------------------- population table
def test_population_summary(make_spiking):
    rng = np.random.default_rng(5)
    n_steps = 100_000  # 10 s at 0.1 ms
    steps = [[np.flatnonzero(rng.random(n_steps) < 0.002) for _ in range(6)] + [[], []]]
    ds = make_spiking(steps, n_steps=n_steps, ei=["E"] * 4 + ["I"] * 2 + ["E", "I"])
    s = stats.population_summary(ds)
    assert list(s["ei"].values) == ["E", "I"]
    assert s["n_neurons"].values.tolist() == [5, 3]
    np.testing.assert_allclose(s["fraction_silent"].values, [1 / 5, 1 / 3])
    rates = stats.per_neuron_rates(ds).mean("trial").values
    assert s["mean_rate"].sel(ei="E") == pytest.approx(rates[[0, 1, 2, 3, 6]].mean())
    assert s["mean_rate"].sel(ei="E") == pytest.approx(20.0 * 4 / 5, rel=0.1)
    assert s["mean_cv"].sel(ei="I") == pytest.approx(1.0, abs=0.1)
    assert s["fano"].sel(ei="E") == pytest.approx(1.0, abs=0.25)


def test_population_summary_rate_dataset(poisson_ds):
    """Rate-only datasets: Fano from rates converted to counts, CV undefined."""
    rate_only = poisson_ds.drop_vars(["spike_trial", "spike_step", "spike_neuron"])
    s = stats.population_summary(rate_only)
    assert np.all(np.isnan(s["mean_cv"].values))
    assert s["fano"].attrs["bin_ms"] == 10.0
    np.testing.assert_allclose(s["fano"].values, 1.0, atol=0.05)
    full = stats.population_summary(poisson_ds, fano_bin_ms=10.0)
    np.testing.assert_allclose(s["mean_rate"].values, full["mean_rate"].values, rtol=1e-5)
    np.testing.assert_allclose(s["fano"].values, full["fano"].values, rtol=1e-4)

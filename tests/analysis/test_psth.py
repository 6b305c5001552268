"""PSTHs, PSTH correlation, the noise ceiling and PCA."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from neurodsl.analysis import noise_ceiling, pca, project, psth, psth_correlation, \
    variance_captured, zscore_psth

BIN_MS = 20.0


def _true_mean(rng, n_time, n_neuron, n_cond=1):
    """Smooth positive mean responses (sp/s), shape (cond, time, neuron)."""
    t = np.arange(n_time)[None, :, None]
    freq = rng.uniform(0.5, 3.0, (n_cond, 1, n_neuron))
    phase = rng.uniform(0, 2 * np.pi, (n_cond, 1, n_neuron))
    depth = rng.uniform(3.0, 25.0, (1, 1, n_neuron))
    return 4.0 + depth * (1 + np.sin(2 * np.pi * freq * t / n_time + phase)) / 2


def _poisson_trials(rng, mu, n_per_cond):
    """Rate dataset: Poisson counts around ``mu`` (cond, time, neuron), in sp/s."""
    n_cond, n_time, n_neuron = mu.shape
    cond = np.repeat(np.arange(n_cond), n_per_cond)
    counts = rng.poisson(mu[cond] * BIN_MS / 1000.0)
    return xr.DataArray(counts / (BIN_MS / 1000.0), dims=("trial", "time", "neuron"),
                        coords={"time": np.arange(n_time) * BIN_MS,
                                "neuron": np.arange(n_neuron), "stim": ("trial", cond),
                                "ei": ("neuron", np.where(np.arange(n_neuron) % 5, "E", "I"))},
                        name="rate", attrs={"units": "sp/s", "bin_size_ms": BIN_MS})


# ------------------------------------------------------------------- psth
def test_psth_trial_average_and_grouping():
    rng = np.random.default_rng(0)
    rate = _poisson_trials(rng, _true_mean(rng, 30, 6, n_cond=3), 4)
    rate = rate.assign_coords(ctx=("trial", np.arange(12) % 2))
    p = psth(rate)
    assert p.dims == ("time", "neuron")
    np.testing.assert_allclose(p.values, rate.values.mean(0))
    g = psth(rate, by="stim")
    assert g.dims == ("stim", "time", "neuron")
    np.testing.assert_allclose(g.sel(stim=2).values, rate.values[rate.stim.values == 2].mean(0))
    assert g["n_trials"].values.tolist() == [4, 4, 4]
    gg = psth(xr.Dataset({"rate": rate}), by=["stim", "ctx"])
    assert gg.dims == ("stim", "ctx", "time", "neuron")
    sel = (rate.stim.values == 1) & (rate.ctx.values == 0)
    np.testing.assert_allclose(gg.sel(stim=1, ctx=0).values, rate.values[sel].mean(0))
    assert int(gg["n_trials"].sum()) == 12
    assert gg.attrs["bin_size_ms"] == BIN_MS


def test_psth_smoothing_sigma_in_ms():
    x = np.zeros((1, 201, 1))
    x[0, 100, 0] = 1.0
    rate = xr.DataArray(x, dims=("trial", "time", "neuron"),
                        coords={"time": np.arange(201) * 5.0}, attrs={"bin_ms": 5.0})
    p = psth(rate, smooth_ms=25.0).values[:, 0]
    t = np.arange(201) * 5.0
    assert p.sum() == pytest.approx(1.0)
    sd = np.sqrt(np.sum(p * (t - 500.0) ** 2) / p.sum())
    assert sd == pytest.approx(25.0, rel=0.02)


def test_zscore_psth():
    rng = np.random.default_rng(1)
    p = psth(_poisson_trials(rng, _true_mean(rng, 40, 5, 2), 3), by="stim")
    p = p.where(p.neuron != 4, 7.0)  # a constant neuron
    z = zscore_psth(p)
    assert z.dims == p.dims
    np.testing.assert_allclose(z.mean(("stim", "time")).values[:4], 0.0, atol=1e-12)
    np.testing.assert_allclose(z.std(("stim", "time")).values[:4], 1.0)
    assert np.all(z.sel(neuron=4).values == 0.0)


# ------------------------------------------------------- psth_correlation
def test_psth_correlation_identical_is_one_and_affine_invariant():
    rng = np.random.default_rng(2)
    p = psth(_poisson_trials(rng, _true_mean(rng, 50, 8, 3), 5), by="stim")
    res = psth_correlation(p, p)
    np.testing.assert_allclose(res["r"].values, 1.0)
    np.testing.assert_allclose(res["r_pooled"].values, 1.0)
    np.testing.assert_allclose(res["r_by_condition"].values, 1.0)
    assert res["r_by_condition"].dims == ("stim", "neuron")
    np.testing.assert_allclose(psth_correlation(3 * p + 2, p)["r"].values, 1.0)
    np.testing.assert_allclose(psth_correlation(-p, p)["r"].values, -1.0)
    assert list(res["ei"].values) == list(p["ei"].values)


def test_psth_correlation_condition_resolved_vs_pooled():
    # model gets the time course right but swaps the conditions
    t = np.arange(20.0)
    target = xr.DataArray(np.stack([np.sin(t / 3), 2 + np.sin(t / 3)])[:, :, None],
                          dims=("stim", "time", "neuron"), coords={"stim": [0, 1]})
    model = target.copy(data=target.values[::-1])
    res = psth_correlation(model, target)
    np.testing.assert_allclose(res["r_by_condition"].values, 1.0)
    np.testing.assert_allclose(res["r_pooled"].values, 1.0)
    assert res["r"].item() < 0.5  # concatenating conditions exposes the swap
    # conditions are aligned by label, time positionally
    relabelled = model.assign_coords(stim=[1, 0]).assign_coords(time=t + 1000)
    np.testing.assert_allclose(psth_correlation(relabelled, target)["r"].values, 1.0)


def test_psth_correlation_shape_mismatch_raises():
    a = xr.DataArray(np.ones((10, 3)), dims=("time", "neuron"))
    with pytest.raises(ValueError):
        psth_correlation(a, a.isel(neuron=slice(0, 2)))


# ------------------------------------------------------------ noise ceiling
@pytest.mark.parametrize("n_train,n_val", [(40, 10), (20, 4)])
def test_noise_ceiling_matches_true_mean_vs_val_psth(n_train, n_val):
    """Ceiling ~= empirical r(true mean, val PSTH) on Poisson data with a known mean."""
    rng = np.random.default_rng(n_train)
    mu = _true_mean(rng, 800, 40)
    train, val = _poisson_trials(rng, mu, n_train), _poisson_trials(rng, mu, n_val)
    nc = noise_ceiling(train, val, n_splits=50, seed=1)
    truth = xr.DataArray(mu[0], dims=("time", "neuron"), coords={"neuron": np.arange(40)})
    empirical = psth_correlation(truth, psth(val))["r"].values
    ceiling = nc["ceiling"].values
    assert np.median(np.abs(ceiling - empirical)) < 0.05
    assert abs(ceiling.mean() - empirical.mean()) < 0.02
    assert 0.2 < ceiling.mean() < 0.95  # a regime where the test has power
    # the full-training-set reliability obeys Spearman-Brown on r_half
    r = nc["r_half"].values
    if n_train % 2 == 0:
        np.testing.assert_allclose(nc["reliability_train"].values, 2 * r / (1 + r))
    np.testing.assert_allclose(noise_ceiling(train, val, n_splits=50, seed=1)["ceiling"].values,
                               ceiling)  # seeded -> reproducible


def test_noise_ceiling_with_conditions():
    rng = np.random.default_rng(7)
    mu = _true_mean(rng, 100, 30, n_cond=4)
    train, val = _poisson_trials(rng, mu, 16), _poisson_trials(rng, mu, 5)
    nc = noise_ceiling(train, val, n_splits=30, seed=0, by="stim")
    truth = xr.DataArray(mu, dims=("stim", "time", "neuron"),
                         coords={"stim": np.arange(4), "neuron": np.arange(30)})
    empirical = psth_correlation(truth, psth(val, by="stim"))["r"].values
    assert abs(nc["ceiling"].values.mean() - empirical.mean()) < 0.03
    assert nc.attrs["half_trials"] == 8


def test_noise_ceiling_pure_noise_is_low():
    rng = np.random.default_rng(8)
    flat = np.full((1, 200, 10), 10.0)
    nc = noise_ceiling(_poisson_trials(rng, flat, 20), _poisson_trials(rng, flat, 5), seed=0)
    assert nc["ceiling"].values.mean() < 0.3


# --------------------------------------------------------------------- PCA
def _planted(rng, n_cond=4, n_time=60, n_neuron=30, noise=0.01):
    t = np.linspace(0, 2 * np.pi, n_time)
    ang = np.linspace(0, np.pi, n_cond, endpoint=False)[:, None]
    latent = np.stack([np.cos(t + ang), np.sin(t + ang) * 0.6], -1)  # (cond, time, 2)
    loadings = np.linalg.qr(rng.normal(size=(n_neuron, 2)))[0].T  # orthonormal (2, neuron)
    x = latent @ loadings + 5.0 + noise * rng.normal(size=(n_cond, n_time, n_neuron))
    da = xr.DataArray(x, dims=("stim", "time", "neuron"),
                      coords={"stim": np.arange(n_cond), "time": np.arange(n_time) * 10.0,
                              "neuron": np.arange(n_neuron)})
    return da, loadings


def test_pca_recovers_planted_2d_structure():
    da, loadings = _planted(np.random.default_rng(9))
    fit = pca(da, n_components=5)
    evr = fit["explained_variance_ratio"].values
    assert evr.sum() <= 1.0 + 1e-12
    assert np.all(np.diff(evr) <= 1e-12)
    assert evr[:2].sum() > 0.95
    # the top-2 PC subspace equals the planted one: all principal angles ~ 0
    cosines = np.linalg.svd(fit["components"].values[:2] @ loadings.T, compute_uv=False)
    np.testing.assert_allclose(cosines, 1.0, atol=1e-3)
    assert fit["projection"].dims == ("pc", "stim", "time")
    assert fit["pc"].values.tolist() == [1, 2, 3, 4, 5]
    np.testing.assert_allclose(fit["mean"].values, da.mean(("stim", "time")).values)


def test_pca_explained_variance_full_rank_sums_to_one():
    x = xr.DataArray(np.random.default_rng(10).normal(size=(50, 6)), dims=("time", "neuron"))
    fit = pca(x, n_components=6)
    assert fit["explained_variance_ratio"].sum() == pytest.approx(1.0)
    np.testing.assert_allclose(fit["explained_variance"].values,
                               np.sort(np.linalg.eigvalsh(np.cov(x.values.T)))[::-1])


def test_project_model_into_data_space():
    rng = np.random.default_rng(11)
    data, _ = _planted(rng)
    fit = pca(data, n_components=3)
    np.testing.assert_allclose(project(data, fit).values, fit["projection"].values, atol=1e-10)
    shuffled = data.isel(neuron=rng.permutation(data.sizes["neuron"]))  # matched by label
    np.testing.assert_allclose(project(shuffled, fit).values, fit["projection"].values,
                               atol=1e-10)
    model = data + 1.0
    np.testing.assert_allclose(project(model, fit, center="own").values,
                               fit["projection"].values, atol=1e-10)
    assert variance_captured(data, fit) == pytest.approx(
        float(fit["explained_variance_ratio"].sum()))
    noise = data.copy(data=rng.normal(size=data.shape))
    assert variance_captured(noise, fit) < 0.3


def test_noise_ceiling_ci_covers_the_true_ceiling_and_narrows_with_trials():
    """Poisson trials around a known mean: the analytic ceiling sqrt(S / (S + N / n_val)) lies in
    the bootstrap interval for most neurons; more training trials -> narrower interval."""
    from neurodsl.analysis.psth import noise_ceiling_ci
    rng = np.random.default_rng(7)
    mu = _true_mean(rng, 200, 40) * 0.3
    n_val = 10
    signal = mu[0].var(0)
    noise = (mu[0] * 1000.0 / BIN_MS).mean(0)          # Poisson variance of a rate in sp/s
    true = np.sqrt(signal / (signal + noise / n_val))
    assert 0.3 < true.mean() < 0.9
    widths = []
    for n_train in (16, 64):
        train, val = _poisson_trials(rng, mu, n_train), _poisson_trials(rng, mu, n_val)
        ci = noise_ceiling_ci(train, val, n_boot=60, n_splits=6, seed=2)
        lo, hi = ci["ceiling_lo"].values, ci["ceiling_hi"].values
        assert (lo <= ci["ceiling"].values + 0.02).all() and (ci["ceiling"].values <= hi + 0.02).all()
        inside = (lo <= true) & (true <= hi)
        assert inside.mean() >= 0.75, (n_train, inside.mean())
        assert float(ci["ceiling_mean_lo"]) <= true.mean() <= float(ci["ceiling_mean_hi"])
        widths.append(np.median(hi - lo))
    assert widths[1] < 0.8 * widths[0]
    again = noise_ceiling_ci(train, val, n_boot=60, n_splits=6, seed=2)
    np.testing.assert_array_equal(again["ceiling_lo"].values, lo)  # seeded

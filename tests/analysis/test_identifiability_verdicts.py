"""Identifiability report (issue 13), numpy side: defined error measures and the flat-direction verdicts."""
import numpy as np

from neurodsl.analysis.identifiability import (NOT_IDENTIFIABLE, NOT_RECOVERED, RECOVERED, curvature_report,
                                               error_measures, factor_names)


def test_error_measures_are_defined_for_a_constant_truth():
    m = error_measures(np.ones(6), [1.0, 1.02, 0.9, 1.0, 1.1, 1.0])
    assert m["correlation"] is None and "undefined" in m["correlation_note"]
    assert np.isclose(m["max_relative_error"], 0.1) and np.isclose(m["max_abs_log_error"], abs(np.log(0.9)))
    np.testing.assert_allclose(m["log_error"], np.log([1.0, 1.02, 0.9, 1.0, 1.1, 1.0]))
    v = error_measures([0.5, 2.0, 0.8], [0.55, 1.9, 0.8])
    assert v["correlation"] > 0.99 and "correlation_note" not in v


def test_factor_names_read_post_from_pre():
    assert factor_names("log_scaling", (2, 3)) == ["E<-E", "E<-I", "E<-input", "I<-E", "I<-I", "I<-input"]


def _windows(J, rng, noise, n=6):
    """Per-window GN curvature 2 J'J and gradients with a given scatter."""
    H = np.stack([2 * J.T @ J] * n)
    g = noise * rng.standard_normal((n, J.shape[1]))
    return H, g, np.full(n, 0.1)


def test_product_and_missing_factors_are_flat_and_the_rest_recovered():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((40, 2))
    # factor 0 and 1 enter only as their product (identical columns in log space), factor 2 is seen on its
    # own, factor 3 never enters the loss (a projection without synapses)
    J = np.column_stack([base[:, 0], base[:, 0], base[:, 1], np.zeros(40)])
    H, g, L = _windows(J, rng, 1e-4)
    names = ["a", "b", "c", "d"]
    rep = curvature_report(H, g, L, names, log_error=np.array([0.3, -0.3, 0.01, 0.2]))
    v = {n: rep["per_factor"][n]["verdict"] for n in names}
    assert v == {"a": NOT_IDENTIFIABLE, "b": NOT_IDENTIFIABLE, "c": RECOVERED, "d": NOT_IDENTIFIABLE}
    assert np.isclose(rep["per_factor"]["a"]["flat_share"], 0.5, atol=1e-6)
    assert sum(rep["flat"]) == 2 and rep["not_identifiable"] == ["a", "b", "d"]
    assert any("+0.71 a -0.71 b" in d["description"] or "-0.71 a +0.71 b" in d["description"]
               for d in rep["flat_directions"])
    rep = curvature_report(H, g, L, names, log_error=np.array([0.0, 0.0, 0.2, 0.0]))
    assert rep["per_factor"]["c"]["verdict"] == NOT_RECOVERED  # curved, but 22 % off


def test_noisy_gradients_make_a_weak_direction_flat():
    """A direction whose curvature is small against the window-to-window gradient scatter is not pinned."""
    rng = np.random.default_rng(1)
    J = np.diag([1.0, 0.05])  # curvatures 2 and 0.005: both above the relative floor
    H, g, L = _windows(J, rng, 0.05, n=8)
    rep = curvature_report(H, g, L, ["stiff", "weak"], log_error=np.zeros(2))
    assert rep["flat"] == [False, True]
    assert rep["direction_standard_error_log"][1] > np.log1p(0.05) > rep["direction_standard_error_log"][0]
    assert rep["per_factor"]["weak"]["verdict"] == NOT_IDENTIFIABLE
    assert rep["per_factor"]["stiff"]["verdict"] == RECOVERED
    homeo = curvature_report(H, g, L, ["stiff", "weak"], truth=False)
    assert [r["verdict"] for r in homeo["per_factor"].values()] == ["fixed by the targets",
                                                                    "not identifiable from these targets"]

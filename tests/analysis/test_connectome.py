"""Connectome statistics and figures; assembly co-activation; grid score maps."""
import numpy as np
import pytest
import xarray as xr
from matplotlib.figure import Figure

from neurodsl.analysis.connectome import (analyse_structure, assembly_coactivation, assembly_graph,
                                          connectome_matrix, degree_distributions, degrees,
                                          grid_score_maps, structure_stats)
from neurodsl.compile.generator import generate
from neurodsl.io.structure import NetworkStructure, save_structure
from neurodsl.spec.connectome import GeneratorSpec, PairProbability


@pytest.fixture(scope="module")
def structure():
    g = GeneratorSpec(n_neurons=600, frac_exc=0.75, n_inputs=80, n_assemblies=3,
                      p={"EE": PairProbability(within=0.3, between=0.05),
                         "EI": PairProbability(within=0.2, between=0.2),
                         "IE": PairProbability(within=0.4, between=0.1),
                         "II": PairProbability(within=0.1, between=0.1)},
                      p_ff={"E": 0.1, "I": 0.25})
    return generate(g, seed=1)


def test_structure_stats_recover_generator_probabilities(structure):
    st = structure_stats(structure)
    assert list(st["pair"].values) == ["EE", "EI", "IE", "II", "ff_E", "ff_I"]
    np.testing.assert_allclose(st["p_within"].sel(pair=["EE", "EI", "IE", "II"]), [0.3, 0.2, 0.4, 0.1], atol=0.015)
    np.testing.assert_allclose(st["p_between"].sel(pair=["EE", "EI", "IE", "II"]), [0.05, 0.2, 0.1, 0.1],
                               atol=0.01)
    np.testing.assert_allclose(st["p"].sel(pair=["ff_E", "ff_I"]), [0.1, 0.25], atol=0.01)
    assert np.isnan(st["p_within"].sel(pair="ff_E"))
    assert int(st["n_synapses"][:4].sum()) == len(structure.rec_pre)
    assert int(st["n_synapses"][4:].sum()) == len(structure.ff_pre)
    assert st.attrs["n_exc"] == 450 and st.attrs["n_assemblies"] == 3
    # in-degree = synapses / postsynaptic cells
    assert float(st["mean_in_degree"].sel(pair="EI")) == pytest.approx(
        int(st["n_synapses"].sel(pair="EI")) / 150)


def test_degrees_sum_to_synapse_counts(structure):
    d = degrees(structure)
    assert d["in_from_E"].sum() + d["in_from_I"].sum() == len(structure.rec_pre)
    assert d["out_recurrent"].sum() == len(structure.rec_pre)
    assert d["in_from_inputs"].sum() == len(structure.ff_pre)
    assert all(v.shape == (600,) for v in d.values())


def test_hand_made_structure_stats():
    # 2 E (assemblies 0, 1) and 1 I; E0->E1 (between), E0->I, I->E0; one input -> E1
    s = NetworkStructure(np.array(["E", "E", "I"]), np.array([0, 0, 2], np.int32), np.array([1, 2, 0], np.int32),
                         np.array([1.0, 2.0, -3.0], np.float32), np.array([0], np.int32), np.array([1], np.int32),
                         np.array([0.5], np.float32), 1, np.array([0, 1, 0], np.int32))
    st = structure_stats(s.validate())
    assert int(st["n_synapses"].sel(pair="EE")) == 1
    assert float(st["p"].sel(pair="EE")) == pytest.approx(0.5)  # 2 possible (no self-pairs)
    assert np.isnan(st["p_within"].sel(pair="EE"))  # no within-assembly E pairs besides self-pairs
    assert float(st["p_between"].sel(pair="EE")) == pytest.approx(0.5)
    assert float(st["p_within"].sel(pair="EI")) == 1.0 and float(st["p_between"].sel(pair="EI")) == 0.0
    assert float(st["mean_weight"].sel(pair="IE")) == pytest.approx(3.0)
    assert float(st["p"].sel(pair="ff_E")) == pytest.approx(0.5)


def test_figures(structure, tmp_path):
    for fn in (degree_distributions, connectome_matrix, assembly_graph):
        assert isinstance(fn(structure), Figure)
    assert isinstance(connectome_matrix(structure, max_neurons=100), Figure)
    path = save_structure(structure, tmp_path / "network_structure.npz")
    st = analyse_structure(path, tmp_path / "figs")  # loaded from file: the same analysis
    assert {p.name for p in (tmp_path / "figs").glob("*.png")} == {"matrix.png", "assembly_graph.png",
                                                                   "degrees.png"}
    xr.testing.assert_allclose(st, structure_stats(structure))


def _assembly_spikes(spiking_dataset, shared: bool, rng, n_per=20, n_asm=3, n_steps=20_000, dt=0.1):
    """Assemblies share a common rate modulation (shared=True) or all neurons are independent Poisson."""
    n_bins = n_steps // 200
    steps = []
    for a in range(n_asm):
        mod = rng.random(n_bins) < 0.2 if shared else np.zeros(n_bins, bool)
        rate = np.repeat(np.where(mod, 60.0, 5.0), 200) if shared else np.full(n_steps, 15.0)
        for _ in range(n_per):
            steps.append(np.flatnonzero(rng.random(n_steps) < rate * dt / 1000))
    ds = spiking_dataset([steps], dt, n_steps, ei=["E"] * (n_per * n_asm))
    return ds, np.repeat(np.arange(n_asm), n_per)


def test_assembly_coactivation(make_spiking):
    rng = np.random.default_rng(0)
    ds, lab = _assembly_spikes(make_spiking, True, rng)
    high = assembly_coactivation(ds, lab, bin_ms=20.0)
    ds0, lab0 = _assembly_spikes(make_spiking, False, rng)
    low = assembly_coactivation(ds0, lab0, bin_ms=20.0)
    assert high > 0.2 and abs(low) < 0.03
    # matches the brute-force definition
    from neurodsl.analysis.spikes import bin_spikes
    x = bin_spikes(ds, 20.0).values[0].astype(float)
    C = np.corrcoef(x.T)
    same = lab[:, None] == lab[None, :]
    off = ~np.eye(len(lab), dtype=bool)
    assert high == pytest.approx(C[same & off].mean() - C[~same].mean(), rel=1e-9)
    assert np.isnan(assembly_coactivation(ds, np.zeros_like(lab)))  # no between-assembly pairs


def test_grid_score_maps():
    a, b, c = [0.1, 0.2], [1, 2, 3], ["x", "y"]
    score = np.arange(12.0).reshape(2, 3, 2)[::-1]
    ds = xr.Dataset({"score": (("a", "b", "c"), score)}, coords={"a": a, "b": b, "c": c})
    figs = grid_score_maps(ds)
    assert [s for s, _ in figs] == ["score_a_vs_b", "score_a_vs_c", "score_b_vs_c"]
    assert all(isinstance(f, Figure) for _, f in figs)
    one = grid_score_maps(ds.isel(b=0, c=0))
    assert len(one) == 1 and one[0][0] == "score_a"

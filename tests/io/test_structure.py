"""network_structure.npz round trip, Dale validation, and the assembly generator."""
import numpy as np
import pytest

from neurodsl.compile.generator import generate
from neurodsl.errors import DataError
from neurodsl.io.structure import load_structure, save_structure
from neurodsl.spec.connectome import GeneratorSpec


def test_generator_respects_dale_assemblies_and_probabilities(tmp_path):
    g = GeneratorSpec(n_neurons=400, n_inputs=50, n_assemblies=4,
                      p={"EE": {"within": 0.3, "between": 0.02}})
    s = generate(g, seed=3)
    assert (s.cell_type == "E").sum() == 320
    W = s.dense_recurrent()
    assert (W[s.is_exc] >= 0).all() and (W[~s.is_exc] <= 0).all()
    assert np.all(np.diag(W) == 0)
    ee = W[np.ix_(s.is_exc, s.is_exc)] != 0
    lab = s.assembly[s.is_exc]
    same = lab[:, None] == lab[None, :]
    np.fill_diagonal(same, False)
    p_within = ee[same].mean()
    p_between = ee[~same & (lab[:, None] != lab[None, :])].mean()
    assert abs(p_within - 0.3) < 0.03 and abs(p_between - 0.02) < 0.01
    back = load_structure(save_structure(s, tmp_path / "network_structure.npz"))
    np.testing.assert_array_equal(back.rec_weight, s.rec_weight)
    assert back.meta["generator"] == "assemblies"
    # same seed -> same structure
    np.testing.assert_array_equal(generate(g, seed=3).rec_pre, s.rec_pre)


def test_wrong_sign_is_reported(tmp_path):
    s = generate(GeneratorSpec(n_neurons=50, n_inputs=5, n_assemblies=2), seed=0)
    bad = s.with_weights(rec_weight=np.abs(s.rec_weight))
    with pytest.raises(DataError) as e:
        save_structure(bad, tmp_path / "x.npz") and load_structure(tmp_path / "x.npz")
    assert "Dale" in str(e.value) and "'I'" in str(e.value)

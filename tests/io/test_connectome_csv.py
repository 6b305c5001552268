"""Connectome CSV -> NetworkStructure: roles, Dale's sign, edge lists, errors, the real mushroom body."""
import numpy as np
import pytest

from neurodsl.errors import DataError
from neurodsl.io.connectome_csv import load_connectome_csv, structure_from_matrix

ROLES = {"P": "input", "K": "E", "O": "I", "X": "drop"}


def test_split_by_roles_keeps_order_signs_and_drops():
    labels = ["K", "P", "O", "K", "X"]
    W = np.zeros((5, 5))
    W[1, 0] = 3   # P -> K      ff
    W[1, 3] = 1   # P -> K      ff
    W[0, 2] = 2   # K -> O      E rec
    W[2, 3] = 4   # O -> K      I rec (negative)
    W[3, 1] = 5   # K -> P      into an input: discarded
    W[4, 0] = 7   # X -> K      dropped cell
    s = structure_from_matrix(W, labels, ROLES, weight=0.5)
    assert s.cell_type.tolist() == ["E", "I", "E"] and s.n_inputs == 1
    assert s.meta["labels"] == ["K", "O", "K"] and s.meta["original_index"] == [0, 2, 3]
    np.testing.assert_allclose(s.dense_feedforward(), [[1.5, 0, 0.5]])
    D = s.dense_recurrent()
    assert D[0, 1] == 1.0 and D[1, 2] == -2.0 and np.count_nonzero(D) == 2
    assert s.meta["synapses_discarded"] == 12
    assert s.assembly.tolist() == [0, 1, 0]


def test_edge_list_and_min_count(tmp_path):
    (tmp_path / "labels.csv").write_text("label\nP\nK\nK\n")
    (tmp_path / "edges.csv").write_text("0,1,2\n0,2,1\n1,2,5\n")
    s = load_connectome_csv(tmp_path / "edges.csv", tmp_path / "labels.csv", ROLES, layout="edges", min_count=2)
    np.testing.assert_allclose(s.dense_feedforward(), [[2, 0]])
    np.testing.assert_allclose(s.dense_recurrent(), [[0, 5], [0, 0]])


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="no role"):
        structure_from_matrix(np.zeros((2, 2)), ["K", "Z"], ROLES)
    with pytest.raises(DataError, match="no recurrent"):
        structure_from_matrix(np.zeros((1, 1)), ["P"], ROLES)
    (tmp_path / "labels.csv").write_text("K\nK\nK\n")
    (tmp_path / "adj.csv").write_text("0 1\n1 0\n")
    with pytest.raises(DataError, match="adj.csv"):
        load_connectome_csv(tmp_path / "adj.csv", tmp_path / "labels.csv", ROLES, layout="dense")


def test_real_larval_mushroom_body(shared_data):
    d = shared_data / "connectome"
    s = load_connectome_csv(d / "eichler2017_larval_mb_left_adjacency.csv",
                            d / "eichler2017_larval_mb_left_cell_labels.csv",
                            {"P": "input", "K": "E", "O": "E", "I": "drop"})
    assert s.n == 101 + 29 and s.n_inputs == 58 and s.is_exc.all()
    assert len(s.ff_pre) > 100 and (s.rec_weight > 0).all()
    assert set(s.meta["labels"]) == {"K", "O"}

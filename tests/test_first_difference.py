"""first_difference: the dotted path where two resolved specs differ (for --resume messages)."""
from neurodsl.spec.loader import first_difference


def test_equal_specs_have_no_difference():
    d = {"a": 1, "b": {"c": [1, {"d": "x"}]}}
    assert first_difference(d, {"a": 1, "b": {"c": [1, {"d": "x"}]}}) is None
    assert first_difference({}, {}) is None
    assert first_difference({"x": 1}, {"x": 1.0}) is None


def test_first_differing_key_is_named_as_a_dotted_path():
    a = {"name": "n", "training": {"lr": 0.001, "epochs": 5}, "projections": [{"weight": "1 nS"}, {"weight": "2 nS"}]}
    b = {"name": "n", "training": {"lr": 0.002, "epochs": 6}, "projections": [{"weight": "1 nS"}, {"weight": "3 nS"}]}
    assert first_difference(a, b) == "training.lr"
    b["training"]["lr"] = 0.001
    assert first_difference(a, b) == "training.epochs"
    b["training"]["epochs"] = 5
    assert first_difference(a, b) == "projections[1].weight"


def test_missing_keys_list_lengths_and_types():
    assert first_difference({"a": 1}, {"a": 1, "b": 2}) == "b"
    assert first_difference({"a": 1, "b": 2}, {"a": 1}) == "b"
    assert first_difference({"l": [1, 2]}, {"l": [1, 2, 3]}) == "l[2]"
    assert first_difference({"a": {"b": 1}}, {"a": None}) == "a"
    assert first_difference({"a": True}, {"a": 1}) == "a"
    assert first_difference({"a": [[0, 1]]}, {"a": [[0, 2]]}) == "a[0][1]"

"""Malformed network_structure.npz files end in one located DataError naming the key, never a
traceback or a silently different network (NaN / Inf weights, NaN or negative scaling, wrong
signs, float indices, bad meta, wrong assembly length, truncated / empty / text files)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from neurodsl.errors import DataError
from neurodsl.io.structure import NetworkStructure, load_structure, save_structure


def _good() -> dict:
    return dict(cell_type=np.array(["E", "E", "I"]), rec_pre=np.array([0, 1, 2], np.int32),
                rec_post=np.array([1, 2, 0], np.int32), rec_weight=np.array([0.5, 0.2, -1.0], np.float32),
                ff_pre=np.array([0, 1], np.int32), ff_post=np.array([0, 2], np.int32),
                ff_weight=np.array([1.0, 0.3], np.float32), n_inputs=np.int64(2),
                scaling=np.ones((2, 3), np.float32), assembly=np.array([0, 1, -1], np.int32),
                meta=np.str_(json.dumps({"generator": "test"})))


def _with(**change):
    a = _good()
    for k, v in change.items():
        if v is None:
            a.pop(k)
        else:
            a[k] = v
    return a


def _scaled(r, c, v):
    s = np.ones((2, 3), np.float32)
    s[r, c] = v
    return s


CASES = {
    "nan recurrent weight": (_with(rec_weight=np.array([0.5, np.nan, -1.0], np.float32)), "rec_weight",
                             "non-finite"),
    "inf feedforward weight": (_with(ff_weight=np.array([np.inf, 0.3], np.float32)), "ff_weight", "non-finite"),
    "float64 overflow": (_with(ff_weight=np.array([1e300, 0.3])), "ff_weight", "non-finite"),
    "nan scaling": (_with(scaling=_scaled(1, 2, np.nan)), "scaling", "non-finite"),
    "negative scaling": (_with(scaling=_scaled(0, 1, -2.0)), "scaling", "negative scaling -2 at \\[0, 1\\]"),
    "E weight negative": (_with(rec_weight=np.array([-0.5, 0.2, -1.0], np.float32)), "rec_weight", "Dale"),
    "I weight positive": (_with(rec_weight=np.array([0.5, 0.2, 1.0], np.float32)), "rec_weight", "Dale"),
    "negative feedforward": (_with(ff_weight=np.array([-1.0, 0.3], np.float32)), "ff_weight", "negative"),
    "float indices": (_with(rec_pre=np.array([0.0, 1.5, 2.0])), "rec_pre", "not an integer"),
    "index out of range": (_with(ff_post=np.array([0, 3], np.int32)), "ff_post", "out of range"),
    "2-D weights": (_with(rec_weight=np.ones((3, 1), np.float32)), "rec_weight", "one-dimensional"),
    "string weights": (_with(rec_weight=np.array(["a", "b", "c"])), "rec_weight", "not numeric"),
    "bad meta": (_with(meta=np.str_("{not json")), "meta", "not JSON"),
    "short assembly": (_with(assembly=np.array([0, 1], np.int32)), "assembly", "2 labels for 3 neurons"),
    "missing key": (_with(ff_weight=None), "", "missing arrays"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_structure_is_one_located_error(tmp_path, case):
    arrays, field, message = CASES[case]
    p = tmp_path / "network_structure.npz"
    np.savez(p, **arrays)
    with pytest.raises(DataError, match=message) as e:
        load_structure(p)
    assert e.value.field == field and str(p) in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("content", [b"", b"cell_type,rec_pre\nE,0\n", "truncated"])
def test_unreadable_structure_file(tmp_path, content):
    p = tmp_path / "network_structure.npz"
    if content == "truncated":
        np.savez(p, **_good())
        content = p.read_bytes()[:200]
    p.write_bytes(content)
    with pytest.raises(DataError, match="not a readable .npz") as e:
        load_structure(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)


def test_valid_structure_still_loads(tmp_path):
    p = tmp_path / "network_structure.npz"
    np.savez(p, **_good())
    s = load_structure(p)
    assert s.n == 3 and s.n_inputs == 2 and s.meta == {"generator": "test"}
    back = load_structure(save_structure(s, tmp_path / "again.npz"))
    assert np.array_equal(back.rec_weight, s.rec_weight) and np.array_equal(back.assembly, s.assembly)


def test_in_memory_structures_are_checked_too():
    a = _good()
    s = NetworkStructure(cell_type=a["cell_type"], rec_pre=a["rec_pre"], rec_post=a["rec_post"],
                         rec_weight=a["rec_weight"], ff_pre=a["ff_pre"], ff_post=a["ff_post"],
                         ff_weight=a["ff_weight"], n_inputs=2, scaling=_scaled(0, 0, np.nan))
    with pytest.raises(DataError, match="non-finite"):
        s.validate("<generated>")

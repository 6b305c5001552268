"""rnn_export data contract: formats, layout, validation, masking, splits, synthetic data."""
from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import xarray as xr

from neurodsl.errors import DataError
from neurodsl.io.rnn_export import (RnnExportWarning, condition_labels, load_rnn_export,
                                    stratified_split, write_rnn_export)
from neurodsl.io.synthetic import make_rnn_export, write_synthetic

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
REAL = SHARED / "activity" / "rnn_export_Newton_08_13_2025_SC.mat"
K, T, N = 6, 5, 4  # all different, so any axis mix-up changes the shape


def tiny() -> dict:
    """A small export with non-symmetric, all-distinct arrays in python layout."""
    fr = np.arange(K * T * N, dtype=np.float64).reshape(K, T, N) * 0.5
    loc = np.array([1, 2, 1, 2, 1, 2], dtype=float)
    tgt = np.zeros((K, T, 2))
    tgt[np.arange(K), :, (loc - 1).astype(int)] = 1.0
    return {"firing_rates": fr, "neuron_type": np.array([1.0, 2.0, 1.0, 1.0]), "bin_size_ms": np.float64(25.0),
            "time_axis": (np.arange(T) - 1.5) * 25.0, "neuron_ids": np.array([3.0, 7.0, 9.0, 11.0]),
            "input_go_signal": np.arange(K * T, dtype=float).reshape(K, T) / 100, "input_target_loc": tgt,
            "trial_location": loc, "trial_reward": np.array([0, 0, 1, 1, 0, 1.0]),
            "trial_duration_ms": np.full(K, 1000.0), "session_name": "tiny"}


def catch(fn, *a, **kw):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        out = fn(*a, **kw)
    return out, [str(w.message) for w in rec if issubclass(w.category, RnnExportWarning)]


@pytest.mark.parametrize("name,version,fmt", [("t.mat", "7.3", "mat-v7.3"), ("t.mat", "5", "mat-v5"),
                                              ("t.npz", "7.3", "npz"), ("t.nc", "7.3", "netcdf")])
def test_round_trip_all_formats(tmp_path, name, version, fmt):
    d = tiny()
    path = write_rnn_export(tmp_path / name, d, version=version)
    ds = load_rnn_export(path)
    assert ds.attrs["format"] == fmt and ds.attrs["bin_size_ms"] == 25.0 and ds.attrs["session_name"] == "tiny"
    assert ds["rate"].dims == ("trial", "time", "neuron") and ds["rate"].dtype == np.float32
    np.testing.assert_array_equal(ds["rate"].values, d["firing_rates"])
    assert list(ds["input"].values) == ["target_loc_1", "target_loc_2", "go_signal"]
    np.testing.assert_array_equal(ds["inputs"].sel(input="go_signal").values, d["input_go_signal"].astype(np.float32))
    np.testing.assert_array_equal(ds["inputs"].values[..., :2], d["input_target_loc"])
    assert list(ds["ei"].values) == ["E", "I", "E", "E"] and list(ds["neuron"].values) == [3, 7, 9, 11]
    np.testing.assert_array_equal(ds["time"].values, d["time_axis"])
    np.testing.assert_array_equal(ds["location"].values, [1, 2, 1, 2, 1, 2])
    assert len(ds.attrs["source_sha256"]) == 64 and "valid" not in ds
    # Dataset -> file -> Dataset is the identity (attrs aside).
    again = load_rnn_export(write_rnn_export(tmp_path / f"again_{name}", ds, version=version))
    xr.testing.assert_identical(again.drop_attrs(), ds.drop_attrs())


def test_mat_files_are_column_major(tmp_path):
    d = tiny()
    v5 = write_rnn_export(tmp_path / "v5.mat", d, version="5")
    assert scipy.io.loadmat(v5)["firing_rates"].shape == (N, T, K)  # what MATLAB shows
    v73 = write_rnn_export(tmp_path / "v73.mat", d, version="7.3")
    with h5py.File(v73, "r") as f:
        assert f["firing_rates"].shape == (K, T, N) and f["firing_rates"].attrs["MATLAB_class"] == b"double"
        assert f.userblock_size == 512 and f["neuron_type"].shape == (1, N)
    head = v73.read_bytes()[:128]
    assert head.startswith(b"MATLAB 7.3 MAT-file") and head[124:128] == b"\x00\x02IM"
    # the format comes from the header, not the suffix
    v5.rename(tmp_path / "renamed.bin")
    assert load_rnn_export(tmp_path / "renamed.bin").attrs["format"] == "mat-v5"


def test_missing_variable_and_rename(tmp_path):
    d = tiny()
    d["rates"] = d.pop("firing_rates")
    path = write_rnn_export(tmp_path / "r.npz", d)
    with pytest.raises(DataError) as e:
        load_rnn_export(path)
    assert e.value.field == "firing_rates" and "missing variable 'firing_rates'" in str(e.value)
    assert "rates" in str(e.value).split("file has:")[1]
    assert load_rnn_export(path, rename={"firing_rates": "rates"})["rate"].shape == (K, T, N)
    with pytest.raises(DataError, match="'nope'"):
        load_rnn_export(path, rename={"firing_rates": "nope"})


@pytest.mark.parametrize("var,value,words", [
    ("input_go_signal", np.zeros((K, T - 1)), ["input_go_signal", f"({K}, {T - 1})", f"({K}, {T})"]),
    ("input_go_signal", np.zeros((T, K)), ["looks transposed"]),
    ("neuron_type", np.array([1.0, 2.0, 3.0, 1.0]), ["neuron_type", "[3.0]", "neurons (0-based) [2]"]),
    ("neuron_type", np.array([1.0, 2.0]), ["neuron_type", "(2,)", f"{N} neurons"]),
    ("trial_reward", np.zeros(K + 1), ["trial_reward", f"({K + 1},)", f"{K} trials"]),
    ("firing_rates", np.zeros((K, T)), ["firing_rates", f"({K}, {T})", "3-D"]),
    ("n_trials", np.float64(K + 2), ["n_trials", str(K + 2)]),
])
def test_bad_shapes_and_values_name_the_variable(tmp_path, var, value, words):
    d = tiny()
    d[var] = value
    path = write_rnn_export(tmp_path / "bad.npz", d)
    with pytest.raises(DataError) as e:
        load_rnn_export(path)
    assert e.value.field == var
    for w in words:
        assert w in str(e.value), (w, str(e.value))
    assert str(e.value).startswith(str(path))


def test_nan_policies(tmp_path):
    d = tiny()
    d["firing_rates"][1, 4, 2] = np.nan
    d["firing_rates"][4, 4, 0] = np.nan
    path = write_rnn_export(tmp_path / "nan.mat", d)
    with pytest.raises(DataError) as e:
        load_rnn_export(path)
    msg = str(e.value)
    assert e.value.field == "firing_rates" and "2 NaN values in 2 trials" in msg and "(1, 4, 2)" in msg
    ds, warned = catch(load_rnn_export, path, mask="nan")
    assert ds["valid"].dtype == bool and int((~ds["valid"]).sum()) == 2
    assert not ds["valid"].values[1, 4] and not np.isnan(ds["rate"].values).any()
    assert warned and "2 of 30 bins" in ds.attrs["notes"]
    # NaN after trial_duration_ms are masked; NaN before it is an error
    d["time_axis"] = np.arange(T) * 25.0 + 12.5  # bin left edges 0, 25, ..., 100
    d["trial_duration_ms"] = np.array([1000.0, 90.0, 1000.0, 1000.0, 90.0, 1000.0])
    ds, _ = catch(load_rnn_export, write_rnn_export(tmp_path / "dur.mat", d), mask="trial_duration")
    assert ds["valid"].values[1].tolist() == [True, True, True, True, False]
    assert int((~ds["valid"]).sum()) == 2 and ds["rate"].values[1, 4, 2] == 0.0
    d["trial_duration_ms"][1] = 1000.0
    with pytest.raises(DataError, match="within trial_duration_ms"):
        load_rnn_export(write_rnn_export(tmp_path / "dur2.mat", d), mask="trial_duration")
    # an invalid bin is written as NaN, so mask='nan' restores it
    ds = catch(load_rnn_export, path, mask="nan")[0]
    back = catch(load_rnn_export, write_rnn_export(tmp_path / "back.nc", ds), mask="nan")[0]
    np.testing.assert_array_equal(back["valid"].values, ds["valid"].values)


def test_trial_duration_unit_inconsistency_is_reported(tmp_path):
    d = tiny()
    d["firing_rates"] += 10.0  # active to the last bin everywhere
    d["trial_duration_ms"] = np.array([9.5, 12.0, 1000.0, 1000.0, 1000.0, 1000.0])  # "seconds"?
    ds, warned = catch(load_rnn_export, write_rnn_export(tmp_path / "u.mat", d), mask="trial_duration")
    assert any("2 of 6 trials have trial_duration_ms < 2 bins" in w and "NOT masked" in w for w in warned)
    assert ds["valid"].values.all()  # not silently dropped
    assert "2 of 6 trials" in ds.attrs["notes"]


def test_input_selection(tmp_path):
    path = write_rnn_export(tmp_path / "s.npz", tiny())
    ds = load_rnn_export(path, inputs=["go_signal", "input_target_loc"])
    assert list(ds["input"].values) == ["go_signal", "target_loc_1", "target_loc_2"]
    with pytest.raises(DataError) as e:
        load_rnn_export(path, inputs=["eye_x"])
    assert "'eye_x'" in str(e.value) and "go_signal" in str(e.value) and e.value.field == "inputs"
    with pytest.raises(DataError, match="mask"):
        load_rnn_export(path, mask="bogus")
    (tmp_path / "junk.mat").write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(DataError, match="unrecognised file header"):
        load_rnn_export(tmp_path / "junk.mat")


def test_split_is_stratified_and_deterministic(tmp_path):
    arrays, _ = make_rnn_export(n_trials=120, n_time=24, seed=3)
    ds = load_rnn_export(write_rnn_export(tmp_path / "syn.npz", arrays))
    ids, names = condition_labels(ds)
    assert len(names) == 24 and names[0] == "location=1|identity=1|reward=0" and ids.shape == (120,)
    tr, va = stratified_split(ds, frac_val=0.2, seed=7)
    tr2, va2 = stratified_split(ds, frac_val=0.2, seed=7)
    assert np.array_equal(tr, tr2) and np.array_equal(va, va2)
    assert not np.array_equal(va, stratified_split(ds, frac_val=0.2, seed=8)[1])
    assert np.intersect1d(tr, va).size == 0 and np.union1d(tr, va).tolist() == list(range(120))
    for c in range(len(names)):  # 5 trials per condition -> exactly 1 in validation
        assert np.isin(np.flatnonzero(ids == c), va).sum() == 1
    with pytest.raises(DataError, match="no trial label 'probability'; available: .*duration_ms"):
        condition_labels(ds, keys=("location", "probability"))


def test_synthetic_ground_truth(tmp_path):
    arrays, truth = make_rnn_export()
    n_exc, n = 8, 10
    w = truth["W_rec"]
    assert w.shape == (n, n) and (w[:, :n_exc] >= 0).all() and (w[:, n_exc:] <= 0).all()
    assert arrays["firing_rates"].shape == (192, 60, n) and list(truth["ei"]).count("I") == 2
    # Poisson counts per 25 ms bin -> multiples of 40 sp/s; mean rate matches the latent rate
    assert np.allclose(arrays["firing_rates"] % 40.0, 0.0)
    psth, true_psth = arrays["firing_rates"].mean(0), truth["rates_latent"].mean(0)
    assert np.abs(psth - true_psth).mean() < 0.25 * true_psth.mean()
    a2, _ = make_rnn_export()
    assert np.array_equal(a2["firing_rates"], arrays["firing_rates"])
    mat, gt = write_synthetic(tmp_path / "syn.mat")
    assert mat.stat().st_size < 1_000_000 and gt.name == "syn_ground_truth.npz"
    ds = load_rnn_export(mat)
    assert ds.sizes == {"trial": 192, "time": 60, "neuron": n, "input": 14}
    with np.load(gt) as z:
        np.testing.assert_array_equal(z["W_rec"], w)


@pytest.fixture(scope="module")
def real():
    if not REAL.is_file():
        pytest.skip(f"real data absent: {REAL} (shared data lives in <repo root>/../shared/data)")
    return catch(load_rnn_export, REAL, mask="trial_duration")


def test_real_file_loads(real):
    ds, _ = real
    assert ds.attrs["format"] == "mat-v7.3" and ds.attrs["bin_size_ms"] == 25.0
    assert ds["rate"].shape == (890, 227, 14) and ds["inputs"].shape == (890, 227, 14)
    assert (ds["ei"] == "E").sum() == 8 and (ds["ei"] == "I").sum() == 6
    assert {"location", "identity", "reward", "salience", "probability", "duration_ms"} <= set(ds.coords)
    assert float(ds["time"][0]) == -187.5 and ds.attrs["session_name"] == "Newton_08_13_2025_SC"
    assert len(condition_labels(ds)[1]) == 24


def test_real_trial_duration_inconsistency_reported(real):
    ds, warned = real
    assert any("331 of 890 trials have trial_duration_ms < 2 bins" in w for w in warned)
    assert any("onset of input 'reward_on'" in w for w in warned)
    assert ds["valid"].values[ds["duration_ms"].values < 50].all()

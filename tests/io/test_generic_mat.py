"""data.fields (issue 11): rnn_export variables from MAT v5 / v7.3 files of another layout (structs,
cells, a field per neuron), constants, one-hot inputs, scale/offset; located errors; the shipped
spec/v1_gratings.yaml on the real V1 recording (skips without ../shared/data)."""
from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from neurodsl.errors import DataError, NeurodslError
from neurodsl.io.rnn_export import load_rnn_export
from neurodsl.spec import load_spec, load_spec_text

REPO = Path(__file__).resolve().parents[2]
V1 = REPO.parent / "shared" / "data" / "activity" / "park2024_v1_gratings_230803_mrcuts24_fov1.mat"
K, T, N = 24, 10, 11  # 11 neurons: natural order puts neuron10, neuron11 after neuron9
FIELDS = {"firing_rates": {"stack": "D.neuron*", "offset": 6.0}, "time_axis": {"path": "t", "scale": 1000.0},
          "bin_size_ms": {"path": "TE.dt", "scale": 1000.0}, "neuron_type": {"value": 1.0},
          "trial_direction": {"path": "TE.direction"}, "input_speed": {"path": "D.speed"},
          "input_direction": {"onehot": "TE.direction", "during_ms": [0.0, 200.0]}}


def _quiet(fn, *a, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **kw)


def _data(seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(K, T, N))
    z[..., 9] = 2.5  # neuron10
    return z, rng.uniform(size=(K, T)), np.tile([0, 90, 180], K // 3), (np.arange(T) - 3) * 0.05


def _cell(per_trial: np.ndarray) -> np.ndarray:
    """A MATLAB 1 x K cell of T x 1 columns (what the V1 recording holds per neuron)."""
    c = np.empty((1, K), dtype=object)
    for k in range(K):
        c[0, k] = per_trial[k].reshape(-1, 1)
    return c


def _v5(path: Path) -> Path:
    z, speed, direction, t = _data()
    D = {f"neuron{n + 1}": _cell(z[..., n]) for n in range(N)}
    D["speed"], D["nTrials"] = _cell(speed), K
    scipy.io.savemat(path, {"D": D, "TE": {"direction": direction.reshape(1, -1), "dt": 0.05},
                            "t": t.reshape(1, -1)}, format="5")
    return path


def _v73(path: Path) -> Path:
    """The same content as MAT v7.3 (HDF5): structs are groups, cells datasets of references."""
    z, speed, direction, t = _data()
    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")

        def cell(group, name, per_trial):
            ids = []
            for k in range(K):
                d = refs.create_dataset(f"{name}_{k}", data=per_trial[k].reshape(1, -1))  # MATLAB T x 1
                d.attrs["MATLAB_class"] = np.bytes_(b"double")
                ids.append(d.ref)
            ds = group.create_dataset(name, data=np.array(ids, dtype=h5py.ref_dtype).reshape(K, 1))
            ds.attrs["MATLAB_class"] = np.bytes_(b"cell")
        D, TE = f.create_group("D"), f.create_group("TE")
        for n in range(N):
            cell(D, f"neuron{n + 1}", z[..., n])
        cell(D, "speed", speed)
        for g, name, v in ((TE, "direction", direction.reshape(-1, 1)), (TE, "dt", np.array([[0.05]])),
                           (f, "t", t.reshape(-1, 1))):
            g.create_dataset(name, data=v).attrs["MATLAB_class"] = np.bytes_(b"double")
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file".ljust(116) + b"\x00" * 8 + b"\x00\x02" + b"IM")
    return path


@pytest.mark.parametrize("writer", [_v5, _v73], ids=["v5", "v7.3"])
def test_struct_of_cells_maps_onto_rnn_export(tmp_path, writer):
    ds = _quiet(load_rnn_export, writer(tmp_path / "d.mat"), fields=FIELDS)
    z, speed, direction, t = _data()
    assert ds.sizes == {"trial": K, "time": T, "neuron": N, "input": 4} and ds.attrs["bin_size_ms"] == 50.0
    np.testing.assert_allclose(ds["rate"].values, (z + 6.0).astype(np.float32))   # neuron10 is the 10th
    np.testing.assert_allclose(ds["time"].values, t * 1000)
    assert set(ds["ei"].values) == {"E"}
    assert list(ds["direction"].values) == list(direction)
    np.testing.assert_allclose(ds["inputs"].sel(input="speed").values, speed.astype(np.float32))
    onehot = ds["inputs"].sel(input=["direction_1", "direction_2", "direction_3"]).values  # 0, 90, 180 deg
    on = (t * 1000 >= 0) & (t * 1000 <= 200)
    assert np.array_equal(onehot[1][:, 1], on.astype(np.float32)) and onehot[1][:, [0, 2]].sum() == 0
    assert "data.fields.firing_rates: stack 'D.neuron*' -> shape (24, 10, 11)" in ds.attrs["notes"]


@pytest.mark.parametrize("change,field,says", [
    ({"trial_direction": {"path": "TE.angle"}}, "data.fields.trial_direction", "TE has no 'angle'"),
    ({"firing_rates": {"stack": "D.cell*"}}, "data.fields.firing_rates", "matches nothing"),
    ({"firing_rates": {"stack": "D.n*"}}, "data.fields.firing_rates", "differ in shape"),
    ({"input_te": {"path": "TE"}}, "data.fields.input_te", "is a struct with fields"),
    ({"input_direction": {"onehot": "t", "during_ms": [0.0, 1.0]}}, "data.fields.input_direction", "10 values"),
    ({"firing_rates": {"stack": "D.neuron*"}}, "firing_rates", "negative"),  # z-scored without offset
])
def test_mapping_errors_name_file_and_field(tmp_path, change, field, says):
    path = _v5(tmp_path / "d.mat")
    with pytest.raises(DataError) as e:
        _quiet(load_rnn_export, path, fields={**FIELDS, **change})
    assert e.value.field == field and says in str(e.value) and str(path) in e.value.one_line()


def test_field_spec_checks(tmp_path):
    path = _v5(tmp_path / "d.mat")
    base = f"name: x\nkind: rnn_fit\ndt: 50 ms\ndata:\n  file: '{path}'\n  fields:\n"
    for bad, says in (("    firing_rates: {path: a, stack: b}", "exactly one of"),
                      ("    trial_x: {path: TE.direction, during: [0 s, 1 s]}", "only used by onehot"),
                      ("    1bad: t", "not a variable name")):
        with pytest.raises(NeurodslError, match=says):
            load_spec_text(base + bad + "\n")
    s = load_spec_text(base + "    time_axis: t\n    input_d: {onehot: TE.direction, during: [0 s, 0.2 s]}\n").spec
    f = s.data.reader_options(s.dt)["fields"]
    assert f["time_axis"] == {"path": "t", "scale": 1.0, "offset": 0.0, "during_ms": None}
    assert f["input_d"]["during_ms"] == [0.0, 200.0]


@pytest.mark.skipif(not V1.is_file(), reason=f"V1 recording not available at {V1} (../shared/data)")
def test_v1_gratings_spec_loads_and_fits_shortened(tmp_path):
    from neurodsl.runners.rnn_fit import run_rnn_fit
    loaded = load_spec(REPO / "spec" / "v1_gratings.yaml")
    ds = _quiet(load_rnn_export, loaded.spec.data.path, **loaded.spec.data.reader_options(loaded.spec.dt))
    assert ds.sizes == {"trial": 128, "time": 49, "neuron": 28, "input": 10} and ds.attrs["bin_size_ms"] == 62.5
    assert float(ds["rate"].min()) > 0 and sorted(set(ds["direction"].values)) == list(range(0, 360, 45))
    s = run_rnn_fit(loaded, tmp_path / "v1", test=True, progress=False, outputs=False)
    assert len(s["log"]) == loaded.spec.training.test_epochs and np.isfinite(s["best_val_correlation"])

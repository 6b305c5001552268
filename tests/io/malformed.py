"""Generator of malformed inputs for the failure-safety suite (``tests/io/test_malformed.py``).

* :func:`recordings` -- >= 50 malformed rnn_export recordings (MAT v7.3 / v5, npz, netCDF: missing
  variables, wrong shapes and dtypes, NaN / Inf / overflow / absurd values, inconsistent
  time_axis, truncated, empty, text and foreign files) with the ``--set`` overrides of
  ``spec/final_rnn.yaml`` that read them;
* :func:`structures` -- malformed ``network_structure.npz`` files;
* :func:`teacher_folders` -- malformed teacher folders (made from one good folder: truncated or
  missing teacher.nc, missing spike variables, out-of-range or unsorted events, a structure
  from another network, a spec.yaml of another kind, ...).

Every case must end in a one-line error (CLI: exit 2), never a traceback.  Run as a script to
write them all for manual probing: ``python tests/io/malformed.py OUT_DIR [TEACHER_DIR]``.
"""
from __future__ import annotations

import json
import shutil
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import scipy.io

from neurodsl.io.rnn_export import write_rnn_export
from neurodsl.io.synthetic import make_rnn_export

FORMATS = {"v73": ("mat", "7.3"), "v5": ("mat", "5"), "npz": ("npz", "7.3"), "nc": ("nc", "7.3")}


def good_recording() -> dict:
    """A valid export (python layout) that spec/final_rnn.yaml fits: 96 trials, 4 per condition."""
    arrays, _ = make_rnn_export(n_exc=3, n_inh=1, n_trials=96, n_time=20, seed=3)
    return arrays


def _changed(**change) -> dict:
    a = good_recording()
    for k, v in change.items():
        if v is None:
            a.pop(k)
        else:
            a[k] = v(a) if callable(v) else v
    return a


def _scaled(f):
    return lambda a: a["firing_rates"] * f


def _zeroed(a, trial_slice=slice(None), neuron=slice(None)):
    fr = a["firing_rates"].copy()
    fr[trial_slice, :, neuron] = 0.0
    return fr


def _with_value(name, value, index=(0, 0, 0)):
    def f(a):
        x = np.array(a[name], dtype=np.float64)
        x[index] = value
        return x
    return f


# name -> arrays (written in every format of FORMATS unless the name says otherwise)
CONTENT = {
    "missing_firing_rates": lambda: _changed(firing_rates=None),
    "missing_neuron_type": lambda: _changed(neuron_type=None),
    "missing_bin_size": lambda: _changed(bin_size_ms=None),
    "rates_1d": lambda: _changed(firing_rates=lambda a: a["firing_rates"].ravel()),
    "rates_4d": lambda: _changed(firing_rates=lambda a: a["firing_rates"][..., None]),
    "rates_empty": lambda: _changed(firing_rates=np.zeros((0, 20, 4))),
    "rates_text": lambda: _changed(firing_rates="not a number"),
    "rates_nan": lambda: _changed(firing_rates=_with_value("firing_rates", np.nan, (5, 3, 1))),
    "rates_inf": lambda: _changed(firing_rates=_with_value("firing_rates", np.inf, (5, 3, 1))),
    "rates_negative": lambda: _changed(firing_rates=_with_value("firing_rates", -3.0, (5, 3, 1))),
    "rates_all_zero": lambda: _changed(firing_rates=lambda a: np.zeros_like(a["firing_rates"])),
    "rates_x1e30": lambda: _changed(firing_rates=_scaled(1e30)),
    "rates_x1000": lambda: _changed(firing_rates=_scaled(1000.0)),
    "rates_overflow_f32": lambda: _changed(firing_rates=_with_value("firing_rates", 1e39, (5, 3, 1))),
    "neuron_type_short": lambda: _changed(neuron_type=np.array([1.0, 1.0, 2.0])),
    "neuron_type_values": lambda: _changed(neuron_type=np.array([1.0, 3.0, 1.0, 2.0])),
    "neuron_type_nan": lambda: _changed(neuron_type=np.array([1.0, np.nan, 1.0, 2.0])),
    "neuron_type_text": lambda: _changed(neuron_type="EEEI"),
    "bin_zero": lambda: _changed(bin_size_ms=np.float64(0.0)),
    "bin_negative": lambda: _changed(bin_size_ms=np.float64(-25.0)),
    "bin_nan": lambda: _changed(bin_size_ms=np.float64(np.nan)),
    "bin_vector": lambda: _changed(bin_size_ms=np.array([25.0, 25.0])),
    "bin_10ms_vs_dt": lambda: _changed(bin_size_ms=np.float64(10.0), time_axis=lambda a: np.arange(20) * 10.0),
    "time_axis_10ms_vs_25ms_bins": lambda: _changed(time_axis=lambda a: np.arange(20) * 10.0),
    "time_axis_short": lambda: _changed(time_axis=lambda a: a["time_axis"][:-1]),
    "time_axis_nan": lambda: _changed(time_axis=_with_value("time_axis", np.nan, (4,))),
    "input_wrong_shape": lambda: _changed(input_go_signal=lambda a: a["input_go_signal"][:, :-1]),
    "input_transposed": lambda: _changed(input_go_signal=lambda a: a["input_go_signal"].T.copy()),
    "input_inf": lambda: _changed(input_go_signal=_with_value("input_go_signal", np.inf, (2, 2))),
    "input_nan": lambda: _changed(input_go_signal=_with_value("input_go_signal", np.nan, (2, 2))),
    "input_overflow_f32": lambda: _changed(input_eye_x=_with_value("input_eye_x", 1e300, (2, 2))),
    "input_text": lambda: _changed(input_go_signal="go"),
    "trial_label_short": lambda: _changed(trial_location=lambda a: a["trial_location"][:-1]),
    "trial_label_nan": lambda: _changed(trial_reward=_with_value("trial_reward", np.nan, (3,))),
    "missing_condition_label": lambda: _changed(trial_identity=None),
    "n_trials_mismatch": lambda: _changed(n_trials=np.float64(95)),
    "n_neurons_mismatch": lambda: _changed(n_neurons=np.float64(5)),
    "one_trial_per_condition": lambda: {k: (v[:24] if np.ndim(v) and np.shape(v)[0] == 96 else v)
                                        for k, v in _changed(n_trials=None).items()},
}
# (content case, formats): NaN cannot be told apart from "missing" in some writers, so all 4 are written
PER_FORMAT = ("missing_firing_rates", "rates_nan", "rates_x1e30", "rates_all_zero", "rates_overflow_f32",
              "time_axis_10ms_vs_25ms_bins")
OVERRIDES = {"bin_10ms_vs_dt": ["data.mask=none"], "rates_nan": ["data.mask=none"]}


def _write(d: Path, name: str, arrays: dict, fmt: str) -> Path:
    suffix, version = FORMATS[fmt]
    return write_rnn_export(d / f"{name}_{fmt}.{suffix}", arrays, version=version)


def _raw_files(d: Path) -> dict[str, tuple[Path, list[str]]]:
    """Files that are not an rnn_export at all, or broken ones."""
    good = _write(d, "_good", good_recording(), "v73")
    out: dict[str, tuple[Path, list[str]]] = {}

    def put(name: str, data: bytes, suffix: str = ".mat", sets=()):
        p = d / f"{name}{suffix}"
        p.write_bytes(data)
        out[name] = (p, list(sets))
    blob = good.read_bytes()
    put("empty_mat", b"")
    put("text_mat", b"firing_rates,neuron_type\n1,2\n")
    put("random_bytes", np.random.default_rng(0).bytes(4096))
    put("truncated_v73", blob[: len(blob) // 3])
    put("header_only_v73", blob[:128])
    put("bad_mat_version", b"MATLAB 5.0 MAT-file".ljust(124) + b"\x07\x00IM" + b"\x00" * 64)
    v5 = _write(d, "_good", good_recording(), "v5").read_bytes()
    put("truncated_v5", v5[: len(v5) // 2])
    npz = _write(d, "_good", good_recording(), "npz").read_bytes()
    put("truncated_npz", npz[: len(npz) // 2], ".npz")
    nc = _write(d, "_good", good_recording(), "nc").read_bytes()
    put("truncated_nc", nc[: len(nc) // 2], ".nc")
    put("csv_named_npz", b"a,b\n1,2\n", ".npz")
    z = d / "zip_not_npz.npz"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("firing_rates.txt", "1 2 3")
    out["zip_not_npz"] = (z, [])
    pk = d / "pickled_npz.npz"
    np.savez(pk, firing_rates=np.array([{"a": 1}], dtype=object), neuron_type=np.ones(4), bin_size_ms=25.0)
    out["pickled_npz"] = (pk, [])
    for name in ("plain_hdf5.h5", "plain_hdf5.mat"):  # HDF5 without the MAT header
        h = d / name
        with h5py.File(h, "w") as f:
            f["firing_rates"] = np.ones((4, 20, 96))
        out[name.replace(".", "_")] = (h, [])
    s = d / "struct_v73.mat"
    arrays = good_recording()
    write_rnn_export(s, arrays)
    with h5py.File(s, "r+") as f:
        del f["firing_rates"]
        f.create_group("firing_rates")["x"] = np.ones(3)
    out["struct_v73"] = (s, [])
    c = d / "cell_v5.mat"
    cell = np.empty((1, 2), dtype=object)
    cell[0, 0], cell[0, 1] = np.ones((4, 20)), np.ones((4, 20))
    scipy.io.savemat(c, {"firing_rates": cell, "neuron_type": np.ones(4), "bin_size_ms": 25.0})
    out["cell_v5"] = (c, [])
    cx = d / "complex_npz.npz"
    np.savez(cx, **{**good_recording(), "firing_rates": good_recording()["firing_rates"] * (1 + 1j)})
    out["complex_npz"] = (cx, [])
    dd = d / "a_directory.mat"
    dd.mkdir(exist_ok=True)
    out["directory"] = (dd, [])
    out["missing_file"] = (d / "does_not_exist.mat", [])
    out["rename_to_missing"] = (good, ["data.rename={firing_rates: rates}"])
    out["duration_mask_without_durations"] = (
        write_rnn_export(d / "no_duration_v73.mat", _changed(trial_duration_ms=None)), ["data.mask=trial_duration"])
    out["nan_mask_all_nan"] = (write_rnn_export(d / "all_nan_v73.mat", _changed(
        firing_rates=lambda a: np.full_like(a["firing_rates"], np.nan))), ["data.mask=nan"])
    out["unknown_input_name"] = (good, ["data.inputs=[fixation_on, no_such_input]"])
    out["max_trials_too_few"] = (good, ["data.max_trials=30"])
    return out


def recordings(d: str | Path) -> dict[str, tuple[Path, list[str]]]:
    """name -> (file, ``--set`` overrides besides ``data.file``) for every malformed recording."""
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    out = _raw_files(d)
    for name, build in CONTENT.items():
        arrays = build()
        for fmt in (FORMATS if name in PER_FORMAT else ("v73" if len(out) % 2 else "npz",)):
            if fmt == "nc" and any(isinstance(v, str) for k, v in arrays.items() if k != "session_name"
                                   and k != "pipeline_version"):
                fmt = "npz"
            out[f"{name}_{fmt}"] = (_write(d, name, arrays, fmt), OVERRIDES.get(name, []))
    return out


# --------------------------------------------------------------------------- structures

def good_structure() -> dict:
    """A valid network_structure.npz's arrays: 3 E + 2 I neurons, 2 inputs."""
    return dict(cell_type=np.array(["E", "E", "I", "E", "I"]), rec_pre=np.array([0, 1, 2, 3, 4], np.int32),
                rec_post=np.array([1, 2, 0, 4, 3], np.int32),
                rec_weight=np.array([0.5, 0.2, -1.0, 0.3, -0.7], np.float32),
                ff_pre=np.array([0, 1, 1], np.int32), ff_post=np.array([0, 2, 3], np.int32),
                ff_weight=np.array([1.0, 0.3, 0.6], np.float32), n_inputs=np.int64(2),
                scaling=np.ones((2, 3), np.float32), assembly=np.array([0, 1, -1, 0, 1], np.int32),
                meta=np.str_(json.dumps({"generator": "malformed.py"})))


def _struct(**change) -> dict:
    a = good_structure()
    for k, v in change.items():
        if v is None:
            a.pop(k)
        else:
            a[k] = v
    return a


def _sc(r, c, v):
    s = np.ones((2, 3), np.float32)
    s[r, c] = v
    return s


STRUCTURE_CONTENT = {
    **{f"missing_{k}": _struct(**{k: None}) for k in ("cell_type", "rec_pre", "rec_post", "rec_weight",
                                                      "ff_pre", "ff_post", "ff_weight", "n_inputs")},
    "float_indices": _struct(rec_pre=np.array([0.0, 1.5, 2.0, 3.0, 4.0])),
    "negative_index": _struct(rec_post=np.array([1, 2, -1, 4, 3], np.int32)),
    "rec_index_out_of_range": _struct(rec_post=np.array([1, 2, 0, 4, 5], np.int32)),
    "ff_pre_beyond_n_inputs": _struct(ff_pre=np.array([0, 1, 2], np.int32)),
    "nan_rec_weight": _struct(rec_weight=np.array([0.5, np.nan, -1.0, 0.3, -0.7], np.float32)),
    "inf_ff_weight": _struct(ff_weight=np.array([np.inf, 0.3, 0.6], np.float32)),
    "float64_overflow": _struct(rec_weight=np.array([1e300, 0.2, -1.0, 0.3, -0.7])),
    "nan_scaling": _struct(scaling=_sc(1, 0, np.nan)),
    "negative_scaling": _struct(scaling=_sc(0, 2, -1.0)),
    "scaling_shape": _struct(scaling=np.ones((3, 3), np.float32)),
    "bad_meta": _struct(meta=np.str_("{not json")),
    "short_assembly": _struct(assembly=np.array([0, 1], np.int32)),
    "cell_type_x": _struct(cell_type=np.array(["E", "X", "I", "E", "I"])),
    "rec_length_mismatch": _struct(rec_weight=np.array([0.5, 0.2, -1.0], np.float32)),
    "n_inputs_vector": _struct(n_inputs=np.array([2, 2])),
    "dale_violation": _struct(rec_weight=np.array([-0.5, 0.2, -1.0, 0.3, -0.7], np.float32)),
    "negative_ff": _struct(ff_weight=np.array([-1.0, 0.3, 0.6], np.float32)),
    "weights_2d": _struct(ff_weight=np.ones((3, 1), np.float32)),
    "string_weights": _struct(ff_weight=np.array(["a", "b", "c"])),
    "bool_weights": _struct(ff_weight=np.array([True, False, True])),
}


def structures(d: str | Path) -> dict[str, Path]:
    """name -> malformed network_structure.npz (or a file that is not one)."""
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, arrays in STRUCTURE_CONTENT.items():
        out[name] = d / f"{name}.npz"
        np.savez(out[name], **arrays)
    good = d / "_good.npz"
    np.savez(good, **good_structure())
    blob = good.read_bytes()
    for name, data in (("empty", b""), ("text", b"cell_type,rec_pre\nE,0\n"), ("truncated", blob[:200]),
                       ("random_bytes", np.random.default_rng(1).bytes(1000))):
        out[name] = d / f"{name}.npz"
        out[name].write_bytes(data)
    out["npy_not_npz"] = d / "npy_not_npz.npz"
    with open(out["npy_not_npz"], "wb") as fh:
        np.save(fh, np.ones(3))
    out["pickled"] = d / "pickled.npz"
    np.savez(out["pickled"], **{**good_structure(), "meta": np.array([{"a": 1}], dtype=object)})
    out["directory"] = d / "a_directory.npz"
    out["directory"].mkdir(exist_ok=True)
    out["missing"] = d / "does_not_exist.npz"
    return out


# --------------------------------------------------------------------------- teacher folders

def _nc_edit(folder: Path, edit) -> None:
    import xarray as xr
    with xr.open_dataset(folder / "teacher.nc") as ds:
        ds = ds.load()
    ds = edit(ds)
    (folder / "teacher.nc").unlink()
    ds.to_netcdf(folder / "teacher.nc")


def _set(name, f):
    def edit(ds):
        ds[name] = (ds[name].dims, f(ds[name].values))
        return ds
    return edit


def _without(*names):
    return lambda ds: ds.drop_vars(list(names))


def _attrs_without(key):
    def edit(ds):
        ds.attrs.pop(key)
        return ds
    return edit


def _another_structure(folder: Path) -> None:
    from neurodsl.io.structure import load_structure, save_structure
    s = load_structure(folder / "network_structure.npz")
    from neurodsl.compile.generator import generate
    from neurodsl.spec import load_spec
    spec = load_spec(folder / "spec.yaml").spec
    other = generate(spec.network.generator.model_copy(update={"n_neurons": s.n + 10}), spec.seed)
    save_structure(other, folder / "network_structure.npz")


def _overwrite(path: Path, data: bytes) -> None:
    path.unlink(missing_ok=True)
    path.write_bytes(data)


TEACHER_EDITS = {
    "missing_teacher_nc": lambda f: (f / "teacher.nc").unlink(),
    "missing_spec": lambda f: (f / "spec.yaml").unlink(),
    "missing_structure": lambda f: (f / "network_structure.npz").unlink(),
    "truncated_teacher_nc": lambda f: _overwrite(f / "teacher.nc", (f / "teacher.nc").read_bytes()[:3000]),
    "empty_teacher_nc": lambda f: _overwrite(f / "teacher.nc", b""),
    "text_teacher_nc": lambda f: _overwrite(f / "teacher.nc", b"spike_trial,spike_step\n0,1\n"),
    "teacher_nc_directory": lambda f: ((f / "teacher.nc").unlink(), (f / "teacher.nc").mkdir()),
    "no_spike_neuron": lambda f: _nc_edit(f, _without("spike_neuron")),
    "no_input_spikes": lambda f: _nc_edit(f, _without("input_spike_trial", "input_spike_step",
                                                      "input_spike_channel")),
    "no_n_steps": lambda f: _nc_edit(f, _attrs_without("n_steps")),
    "no_dt": lambda f: _nc_edit(f, _attrs_without("dt_ms")),
    "neuron_out_of_range": lambda f: _nc_edit(f, _set("spike_neuron", lambda v: v + 10_000)),
    "channel_out_of_range": lambda f: _nc_edit(f, _set("input_spike_channel", lambda v: v + 10_000)),
    "negative_step": lambda f: _nc_edit(f, _set("spike_step", lambda v: v - 10_000)),
    "step_beyond_n_steps": lambda f: _nc_edit(f, _set("input_spike_step", lambda v: v + 10_000)),
    "trial_out_of_range": lambda f: _nc_edit(f, _set("spike_trial", lambda v: v + 50)),
    "unsorted_steps": lambda f: _nc_edit(f, _set("spike_step", lambda v: v[::-1].copy())),
    "float_spike_steps": lambda f: _nc_edit(f, _set("spike_step", lambda v: v + 0.5)),
    "dt_differs": lambda f: _nc_edit(f, lambda ds: ds.assign_attrs(dt_ms=0.5)),
    "structure_of_another_network": _another_structure,
    "nan_weight_structure": lambda f: np.savez(f / "network_structure.npz", **{
        **dict(np.load(f / "network_structure.npz")), "rec_weight": np.full(
            np.load(f / "network_structure.npz")["rec_weight"].shape, np.nan, np.float32)}),
    "spec_of_another_kind": lambda f: shutil.copyfile(Path(__file__).parents[2] / "spec" / "final_rnn.yaml",
                                                      f / "spec.yaml"),
    "spec_not_yaml": lambda f: _overwrite(f / "spec.yaml", b"\x89PNG\r\n\x1a\n\x00\x00binary"),
    "spec_invalid": lambda f: _overwrite(f / "spec.yaml", b"name: x\nkind: teacher\ndt: fast\n"),
    "nan_scaling_in_spec": lambda f: _overwrite(f / "spec.yaml", (f / "spec.yaml").read_bytes().replace(
        b"scaling: {}", b"scaling: {E: {E: .nan}}")),
}


def teacher_folders(d: str | Path, good: str | Path) -> dict[str, Path]:
    """name -> a malformed copy of the good teacher folder ``good`` (or a path that is none)."""
    d, good = Path(d), Path(good)
    d.mkdir(parents=True, exist_ok=True)
    out = {"missing_folder": d / "does_not_exist"}
    out["a_file"] = d / "a_file"
    out["a_file"].write_text("not a folder")
    for name, edit in TEACHER_EDITS.items():
        f = d / name
        shutil.copytree(good, f)
        edit(f)
        out[name] = f
    return out


if __name__ == "__main__":
    root = Path(sys.argv[1])
    print(f"{len(recordings(root / 'recordings'))} recordings, {len(structures(root / 'structures'))} structures")
    if len(sys.argv) > 2:
        print(f"{len(teacher_folders(root / 'teachers', sys.argv[2]))} teacher folders")

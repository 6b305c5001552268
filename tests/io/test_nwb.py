"""NWB input (issue 11): the shipped synthetic export converted to NWB loads and fits exactly as
the .mat; the reader's units / trials / time series / interval routes on a hand-made NWB file;
located one-line errors."""
from __future__ import annotations

import datetime as dt
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from neurodsl.errors import DataError, NeurodslError
from neurodsl.io.nwb_write import spike_times_from_counts, write_nwb
from neurodsl.io.rnn_export import load_rnn_export
from neurodsl.io.rnn_export_files import read_raw
from neurodsl.spec import load_spec_text

SYN = Path(__file__).resolve().parents[2] / "neurodsl" / "data" / "synthetic_rnn_export.mat"


def _quiet(fn, *a, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **kw)


@pytest.fixture(scope="module")
def syn_nwb(tmp_path_factory):
    return write_nwb(tmp_path_factory.mktemp("nwb") / "synthetic.nwb", read_raw(SYN)[0], source=str(SYN))


def test_synthetic_round_trip_is_exact(syn_nwb):
    a = _quiet(load_rnn_export, SYN)
    b = _quiet(load_rnn_export, syn_nwb, nwb={"dt_ms": 25.0, "align": "time_zero"})
    assert set(a.variables) == set(b.variables)
    for name in a.variables:
        assert a[name].dtype == b[name].dtype and np.array_equal(a[name].values, b[name].values), name
    assert b.attrs["format"] == "nwb" and b.attrs["session_name"] == a.attrs["session_name"]


def _spec(path, *over):
    """A tiny fit (compile time dominates): 64 trials, 4 conditions, no embedding or hidden units."""
    text = (f"name: nwbfit\nkind: rnn_fit\nseed: 3\ndt: 25 ms\n"
            f"data: {{file: '{path}', max_trials: 64, condition_keys: [location]}}\n"
            "model: {embedding: {kind: none}, hidden_exc: 0, hidden_inh: 0}\n"
            "training: {detail_every: 2, checkpoint_every: 2, line_every: 1, test_epochs: 2, "
            "losses: {ltrial_scale: 0.0}}\n")
    return load_spec_text(text, overrides=list(over))


def test_fit_of_nwb_copy_equals_fit_of_mat(syn_nwb, tmp_path):
    from neurodsl.runners.rnn_fit import run_rnn_fit
    logs = []
    for name, spec in (("mat", _spec(SYN)), ("nwb", _spec(syn_nwb, "data.nwb.align=time_zero"))):
        run_rnn_fit(spec, tmp_path / name, test=True, progress=False, outputs=False)
        logs.append(json.loads((tmp_path / name / "training_log.json").read_text()))
    assert [e["val_correlation"] for e in logs[0]] == [e["val_correlation"] for e in logs[1]]
    assert [e["train_loss"] for e in logs[0]] == [e["train_loss"] for e in logs[1]]


def _handmade(path: Path, cell_types=("E", "inhibitory", "e"), ei_col="cell_type") -> Path:
    """3 units, 3 trials of different length (stop 0.3/0.25/0.3 s after start), text and number
    columns, a 1 kHz eye trace, a stimulus interval table with a direction column."""
    from pynwb import NWBHDF5IO, NWBFile, TimeSeries
    nwb = NWBFile(session_description="t", identifier="t", session_id="s1",
                  session_start_time=dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc))
    nwb.add_trial_column("side", "text label")
    nwb.add_trial_column("go_time", "time 0 (s)")
    nwb.add_trial_column("contrast", "number")
    for k, (start, stop, side) in enumerate([(0.0, 0.3, "left"), (1.0, 1.25, "right"), (2.0, 2.3, "left")]):
        nwb.add_trial(start_time=start, stop_time=stop, side=side, go_time=start + 0.1, contrast=0.5 * k)
    nwb.add_unit_column(ei_col, "E/I")
    nwb.add_unit_column("depth", "um")
    spikes = [[0.01, 0.02, 0.15, 1.05], [0.29, 2.05, 2.06, 2.07, 5.0], []]
    for n, (s, c) in enumerate(zip(spikes, cell_types)):
        nwb.add_unit(spike_times=s, id=10 + n, **{ei_col: c}, depth=100.0 * n)
    t = np.arange(0, 2.4, 0.001)
    nwb.add_acquisition(TimeSeries(name="eye", data=np.stack([t, 2 * t], 1), unit="deg", timestamps=t))
    nwb.add_time_intervals(_stimulus_table())
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path


def _stimulus_table():
    from pynwb.epoch import TimeIntervals
    tab = TimeIntervals(name="stimulus", description="gratings")
    tab.add_column("direction", "deg")
    for a, b, d in [(0.1, 0.2, 90.0), (1.1, 1.2, 0.0), (2.1, 2.2, 90.0)]:
        tab.add_row(start_time=a, stop_time=b, direction=d)
    return tab


def test_units_trials_series_and_intervals(tmp_path):
    path = _handmade(tmp_path / "h.nwb")
    ds = _quiet(load_rnn_export, path, mask="trial_duration",
                nwb={"dt_ms": 50.0, "align": "go_time", "series": ["eye"], "intervals": ["stimulus", "stimulus.direction"]})
    assert ds.sizes == {"trial": 3, "time": 6, "neuron": 3, "input": 5}
    assert list(ds["time"].values) == [-75.0, -25.0, 25.0, 75.0, 125.0, 175.0]
    assert list(ds["ei"].values) == ["E", "I", "E"] and list(ds["neuron"].values) == [10, 11, 12]
    assert list(ds["depth"].values) == [0.0, 100.0, 200.0]
    counts = ds["rate"].values * 0.05
    np.testing.assert_allclose(counts[:, :, 0], [[2, 0, 0, 1, 0, 0], [0, 1, 0, 0, 0, 0], [0] * 6], atol=1e-6)
    assert counts[2, 1, 1] == pytest.approx(3) and counts[0, 5, 1] == pytest.approx(1) and counts.sum() == pytest.approx(8)
    assert list(ds["side"].values) == [0, 1, 0] and list(ds["contrast"].values) == [0.0, 0.5, 1.0]
    assert list(ds["valid"].values.sum(1)) == [6, 5, 6]   # trial 1 stops 250 ms after its start
    eye = ds["inputs"].sel(input="eye_1").values          # mean of the 1 kHz samples in each bin
    np.testing.assert_allclose(eye[1, ds["valid"].values[1]], 1.0 + np.arange(5) * 0.05 + 0.0245, atol=1e-5)
    assert np.array_equal(ds["inputs"].sel(input="stimulus").values[:, 2:4], np.ones((3, 2)))
    assert ds["inputs"].sel(input="stimulus").values.sum() == 6
    dirs = ds["inputs"].sel(input=["stimulus_direction_1", "stimulus_direction_2"]).values  # 0 deg, 90 deg
    assert dirs[:, 2:4].sum((1,)).tolist() == [[0, 2], [2, 0], [0, 2]]


@pytest.mark.parametrize("case,field,says", [
    ("no_dt", "dt", "bin width"),
    ("ei_missing", "data.nwb.ei_column", "no column 'cell_type'"),
    ("ei_bad", "data.nwb.ei_column", "'X'"),
    ("align_missing", "data.nwb.align", "no column 'nope'"),
    ("window_differs", "data.nwb.window_start", "no common window start"),
    ("series_missing", "data.nwb.series", "no TimeSeries 'pupil'"),
    ("interval_missing", "data.nwb.intervals", "no interval table 'odour'"),
    ("not_nwb", "file", "cannot read NWB file"),
])
def test_errors_name_file_and_field(tmp_path, case, field, says):
    path = _handmade(tmp_path / "h.nwb", **({"ei_col": "type"} if case == "ei_missing" else
                                            {"cell_types": ("E", "X", "I")} if case == "ei_bad" else {}))
    opts = {"dt_ms": 50.0, "align": "go_time"}
    opts.update({"no_dt": {"dt_ms": None}, "align_missing": {"align": "nope"},
                 "window_differs": {"align": "start_time", "window_start_ms": None},
                 "series_missing": {"series": ["pupil"]}, "interval_missing": {"intervals": ["odour"]}}.get(case, {}))
    if case == "window_differs":
        opts["align"] = "contrast"   # 0, 0.5, 1 s vs starts 0, 1, 2 s
    if case == "not_nwb":
        path = tmp_path / "x.nwb"
        path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    with pytest.raises(DataError) as e:
        _quiet(load_rnn_export, path, nwb=opts)
    assert e.value.field == field and says in str(e.value) and str(path) in e.value.one_line()


def test_spike_times_rebuild_counts_and_converter_refuses_rates():
    counts = np.array([0, 1, 3, 19])
    t = spike_times_from_counts(counts, np.arange(4) * 0.025, 0.025)
    assert np.array_equal(np.histogram(t, np.arange(5) * 0.025)[0], counts) and t[0] == pytest.approx(0.0375)
    raw = read_raw(SYN)[0]
    raw["firing_rates"] = raw["firing_rates"] + 0.1
    with pytest.raises(DataError, match="not integer spike counts"):
        write_nwb("/nonexistent/never.nwb", raw)


def test_spec_checks_which_block_fits_which_file(syn_nwb):
    with pytest.raises(NeurodslError, match="data.nwb maps NWB files"):
        load_spec_text(f"name: x\nkind: rnn_fit\ndata: {{file: '{SYN}', nwb: {{align: go}}}}\n")
    with pytest.raises(NeurodslError, match="fields maps MAT"):
        load_spec_text(f"name: x\nkind: rnn_fit\ndata: {{file: '{syn_nwb}', fields: {{time_axis: t}}}}\n")
    s = load_spec_text(f"name: x\nkind: rnn_fit\ndata: {{file: '{syn_nwb}'}}\n").spec
    opts = s.data.reader_options(s.dt)
    assert opts["nwb"]["dt_ms"] == 25.0 and opts["nwb"]["ei_column"] == "cell_type" and opts["fields"] is None

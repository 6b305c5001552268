"""Malformed-input suite (issue 14): every recording, structure file and teacher folder that
``tests/io/malformed.py`` generates ends in one located one-line NeurodslError (CLI: exit 2),
never a traceback or a silent fit to garbage.  The loaders run in-process (fast); a handful of
real CLI runs check the exit status and the one line on stderr."""
from __future__ import annotations

import subprocess
import sys
import traceback
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import malformed  # noqa: E402

from neurodsl.errors import NeurodslError  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).with_name("neurodsl"))
# what a few of the cases must say (the silently accepted recordings)
SAYS = {"rates_all_zero_v73": ("firing_rates", "zero in every valid bin"),
        "rates_x1e30_npz": ("firing_rates", "reaches 1.6e+32"),
        "rates_overflow_f32_v5": ("firing_rates", "beyond float32's range"),
        "input_overflow_f32_v73": ("input_*", "beyond float32's range"),
        "time_axis_10ms_vs_25ms_bins_nc": ("time_axis", "steps are 10 ms but bin_size_ms is 25 ms"),
        "nan_mask_all_nan": ("firing_rates", "no valid bin"),
        "zip_not_npz": ("firing_rates", "missing variable"),
        "truncated_npz": ("path", "cannot read npz file")}
TEACHER = """name: tt
kind: teacher
dt: 1 ms
duration: 200 ms
trials: 2
network:
  generator: {n_neurons: 40, n_inputs: 12, n_assemblies: 2}
odours: {n: 2}
schedule: {kind: fixed, odours: [0, 1]}
dashboard: {enabled: false}
"""


def _outcome(fn, *args) -> tuple[str, NeurodslError | None]:
    """'error' (one-line NeurodslError), 'valid' or 'TRACEBACK ...'."""
    try:
        fn(*args)
    except NeurodslError as e:
        return ("error" if "\n" not in str(e) else f"MULTI-LINE {e!s}"), e
    except Exception:  # noqa: BLE001 - exactly what the suite hunts
        return "TRACEBACK " + traceback.format_exc(limit=-3), None
    return "valid", None


def _fit_data(path, sets):
    from neurodsl.runners.rnn_fit import prepare_data
    from neurodsl.spec import load_spec
    return prepare_data(load_spec(REPO / "spec" / "final_rnn.yaml", [f"data.file={path}", *sets]))


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    return malformed.recordings(tmp_path_factory.mktemp("recordings"))


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    from neurodsl.runners.teacher import run_teacher
    from neurodsl.spec import load_spec_text
    d = tmp_path_factory.mktemp("teacher")
    run_teacher(load_spec_text(TEACHER), d, progress=False)
    return d


def test_malformed_recordings_are_one_line_errors(recordings, capsys):
    assert len(recordings) >= 50
    bad = {}
    for name, (path, sets) in recordings.items():
        what, err = _outcome(_fit_data, path, sets)
        if what != "error":
            bad[name] = what
        elif name in SAYS:
            field, text = SAYS[name]
            if err.field != field or text not in err.message:
                bad[name] = f"wrong message: {err}"
    assert not bad, bad


def test_a_valid_recording_still_fits_and_silent_neurons_warn_on_the_console(tmp_path, capsys):
    from neurodsl.io.rnn_export import write_rnn_export
    good = malformed.good_recording()
    assert len(_fit_data(write_rnn_export(tmp_path / "good.mat", good), []).train) > 0
    assert "warning" not in capsys.readouterr().err
    good["firing_rates"][..., 2] = 0.0
    data = _fit_data(write_rnn_export(tmp_path / "silent.mat", good), [])
    err = capsys.readouterr().err
    assert "neurodsl: warning: 1 of 4 neurons are silent in every valid bin (0-based: [2])" in err
    assert any("1 of 4 neurons are silent" in n for n in data.notes)  # and in the report


def test_malformed_structures_are_one_line_errors(tmp_path):
    from neurodsl.io.structure import load_structure
    cases = malformed.structures(tmp_path)
    bad = {n: w for n, p in cases.items() if (w := _outcome(load_structure, p)[0]) != "error"}
    assert not bad, bad
    assert _outcome(load_structure, tmp_path / "_good.npz")[0] == "valid"


def test_malformed_teacher_folders_are_one_line_errors(teacher_dir, tmp_path):
    from neurodsl.runners.student import TeacherData
    cases = malformed.teacher_folders(tmp_path, teacher_dir)
    n_structures = len(malformed.structures(tmp_path / "s"))
    assert len(cases) + n_structures >= 30 and len(cases) >= 20
    bad = {n: w for n, p in cases.items() if (w := _outcome(TeacherData, p)[0]) != "error"}
    assert not bad, bad
    other = _outcome(TeacherData, cases["spec_of_another_kind"])[1]
    assert "of kind 'rnn_fit', not a teacher's" in str(other)
    assert "structure is from another network" in str(_outcome(TeacherData, cases["structure_of_another_network"])[1])
    assert TeacherData(teacher_dir).n_trials == 2  # the good folder still loads


def _cli(*args, cwd):
    r = subprocess.run([CLI, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120)
    return r.returncode, r.stderr


CLI_CASES = [("run", "rates_x1e30_v73"), ("run", "truncated_npz"), ("teacher", "nan_rec_weight"),
             ("teacher", "truncated"), ("fit-student", "truncated_teacher_nc"),
             ("fit-student", "spec_of_another_kind")]


@pytest.mark.parametrize("command,case", CLI_CASES)
def test_cli_runs_end_in_one_line_and_exit_2(command, case, recordings, teacher_dir, tmp_path):
    """A few real command lines: exit 2, one 'neurodsl: error:' line, no traceback."""
    if command == "run":
        args = [REPO / "spec" / "final_rnn.yaml", "--set", f"data.file={recordings[case][0]}", "--test"]
    elif command == "teacher":
        (tmp_path / "teacher.yaml").write_text(TEACHER)
        args = [tmp_path / "teacher.yaml", "--set", f"network.structure={malformed.structures(tmp_path)[case]}"]
    else:
        folder = malformed.teacher_folders(tmp_path / "t", teacher_dir)[case]
        args = [REPO / "spec" / "student.yaml", "--set", f"teacher={folder}"]
    rc, err = _cli(command, *args, "--out", tmp_path / "out", cwd=tmp_path)
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("neurodsl: warning")]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("neurodsl: error:"), (rc, err)
    assert "Traceback" not in err


def test_generator_script_writes_the_suite(tmp_path):
    r = subprocess.run([sys.executable, str(Path(malformed.__file__)), str(tmp_path)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    n_rec, n_struct = (int(w) for w in r.stdout.split()[::2][:2])
    assert n_rec >= 50 and n_struct >= 30
    assert np.load(tmp_path / "structures" / "_good.npz")["n_inputs"] == 2

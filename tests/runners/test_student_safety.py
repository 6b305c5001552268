"""`neurodsl fit-student` under failure (issue 14): SIGTERM and kill -9 while updates remain, final
artefacts (params.npz, network_structure.npz, comparison.npz) only on completion, the spec check
of --resume, --force as a fresh run, the stop on a non-finite loss.

Each interrupted run is resumed and compared with an uninterrupted run: bit-identical parameters
(checkpoint and params.npz) and metrics.
"""
from __future__ import annotations

import json
import shutil
import signal

import numpy as np
import pytest

from spiking_cli import (all_finite, assert_same_npz, assert_same_params, cli, done, error_line,
                         latest, start, wait)

TEACHER = """name: tt
kind: teacher
dt: 1 ms
duration: 400 ms
trials: 2
network:
  generator: {n_neurons: 40, n_inputs: 12, n_assemblies: 2}
  scaling: {E: {E: 0.5, I: 2.0, input: 0.8}, I: {E: 0.4, I: 1.5, input: 0.7}}
odours: {n: 1}
schedule: {kind: fixed, odours: [0, -1]}
dashboard: {enabled: false}
"""
STUDENT = """name: ss
kind: student
teacher: {teacher}
init: {{kind: teacher_perturbed, sigma: 0.3}}
losses: {{rate: 1.0, rate_mode: neuron, van_rossum: 0.2}}
training: {{batch: 2, chunk_size: 10, chunks_per_update: 2, epochs: 40, updates_per_epoch: 5,
           learning_rate: 0.05, log_interval: 1000, checkpoint_interval: 4}}
"""
TOTAL = 200
FINAL = ("params.npz", "network_structure.npz", "comparison.npz", "student_summary.json")


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory):
    from neurodsl.runners.teacher import run_teacher
    from neurodsl.spec import load_spec_text
    d = tmp_path_factory.mktemp("steacher")
    run_teacher(load_spec_text(TEACHER), d / "teacher", progress=False)
    p = d / "ss.yaml"
    p.write_text(STUDENT.format(teacher=d / "teacher"))
    return p


def _run(spec_file, out, **kw):
    from neurodsl.runners.student import run_student
    from neurodsl.spec import load_spec
    return run_student(load_spec(str(spec_file)), out, progress=False, comparison_ms=50.0, report_windows=1,
                       profile_windows=1, **kw)


@pytest.fixture(scope="module")
def ref(spec_file, tmp_path_factory):
    """The uninterrupted run."""
    out = tmp_path_factory.mktemp("sref") / "ref"
    assert _run(spec_file, out)["updates"] == TOTAL
    return out


def _interrupt_and_resume(spec_file, ref, out, how):
    proc = start("fit-student", spec_file, out)
    wait(proc, lambda: done(out) >= 8)  # the second checkpoint
    assert proc.poll() is None  # still training: updates remain
    proc.send_signal(how)
    text, _ = proc.communicate(timeout=120)
    assert 8 <= done(out) < TOTAL
    assert [f for f in FINAL if (out / f).exists()] == []  # nothing from half-trained parameters
    assert _run(spec_file, out, resume=True)["updates"] == TOTAL
    assert_same_params(out, ref)
    assert_same_npz(out / "params.npz", ref / "params.npz")
    return proc.returncode, text


def test_sigterm_saves_says_how_to_resume_writes_no_results_and_resumes_identically(spec_file, ref, tmp_path):
    rc, text = _interrupt_and_resume(spec_file, ref, tmp_path / "run", signal.SIGTERM)
    assert rc == 130, text[-2000:]
    assert "interrupted (SIGTERM)" in text and f"neurodsl fit-student {spec_file}" in text and "--resume" in text


def test_kill9_while_updates_remain_resumes_identically(spec_file, ref, tmp_path):
    rc, _ = _interrupt_and_resume(spec_file, ref, tmp_path / "run", signal.SIGKILL)
    assert rc == -signal.SIGKILL


def test_resume_with_another_spec_fails_naming_the_key_and_writes_nothing(spec_file, tmp_path):
    out = tmp_path / "run"
    _run(spec_file, out, max_updates=2)
    spec_before = (out / "spec.yaml").read_text()
    line = error_line(cli("fit-student", spec_file, "--out", out, "--resume", "--set", "init.sigma=0.5"))
    assert "--resume" in line and "differs" in line and "init.sigma" in line
    assert (out / "spec.yaml").read_text() == spec_before and done(out) == 2
    other = tmp_path / "unrelated"  # --resume on a folder that holds no run: fails before writing
    other.mkdir()
    (other / "spec.yaml").write_text("mine\n")
    assert "no usable checkpoint" in error_line(cli("fit-student", spec_file, "--out", other, "--resume"))
    assert sorted(p.name for p in other.iterdir()) == ["spec.yaml"] and (other / "spec.yaml").read_text() == "mine\n"


def test_force_is_a_fresh_run_and_resume_cannot_continue_the_old_one(spec_file, ref, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(ref, out)  # a finished run with learning rate 0.05
    new = ["--set", "training.learning_rate=0.1", "--set", "training.checkpoint_interval=100000"]
    proc = start("fit-student", spec_file, out, "--force", *new)
    wait(proc, lambda: not latest(out).exists())  # the old run's checkpoints are cleared at the start
    assert proc.poll() is None  # killed before its first checkpoint
    proc.kill()
    proc.communicate(timeout=60)
    assert not latest(out).exists() and [f for f in FINAL if (out / f).exists()] == []
    assert "no usable checkpoint" in error_line(cli("fit-student", spec_file, "--out", out, "--resume", *new))


def test_nonfinite_loss_stops_with_one_line_exit_2_and_writes_nothing_nonfinite(spec_file, tmp_path):
    out = tmp_path / "nan"
    # closed loop (with teacher forcing this tiny student only falls silent: log-scaling -1e6, finite)
    r = cli("fit-student", spec_file, "--out", out, "--set", "training.learning_rate=1e6",
            "--set", "teacher_forcing=false")
    line = error_line(r)
    assert "diverged" in line and "non-finite" in line and "training.learning_rate" in line
    assert r.output.count("neurodsl: warning: training diverged") == 2  # the default retries
    assert [f for f in FINAL if (out / f).exists()] == [] and all_finite(out)
    rows = json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").exists() else []
    assert all(np.isfinite(row["loss"]) for row in rows)

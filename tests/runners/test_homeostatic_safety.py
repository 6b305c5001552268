"""`neurodsl homeostatic` under failure (issue 14): SIGTERM while updates remain, results only on
completion, the spec check of --resume, --force as a fresh run, the stop on a non-finite loss.

Each interrupted run is resumed and compared with an uninterrupted run: bit-identical parameters
and metrics.  (kill -9 of the same engine: tests/runners/test_spiking_train.py.)
"""
from __future__ import annotations

import json
import shutil
import signal

import numpy as np
import pytest

from spiking_cli import (all_finite, assert_same_npz, assert_same_params, cli, done, error_line,
                         latest, start, wait)

SPEC = """name: hs
kind: homeostatic
seed: 1
duration: 100 ms
network:
  generator: {n_neurons: 40, n_inputs: 12, n_assemblies: 2}
training: {batch: 2, chunk_size: 10, chunks_per_update: 2, epochs: 40, updates_per_epoch: 5,
           checkpoint_interval: 4, learning_rate: 0.05, log_interval: 1000}
losses: {rate: 1.0, cv: 0.1}
"""
TOTAL = 200
FINAL = ("network_structure.npz", "homeostatic_summary.json", "figures/before_after_rates.png")


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("hspec") / "hs.yaml"
    p.write_text(SPEC)
    return p


def _run(spec_file, out, **kw):
    from neurodsl.runners.homeostatic import run_homeostatic
    from neurodsl.spec import load_spec
    return run_homeostatic(load_spec(str(spec_file)), out, progress=False, report_windows=1, profile_windows=1,
                           **kw)


@pytest.fixture(scope="module")
def ref(spec_file, tmp_path_factory):
    """The uninterrupted run."""
    out = tmp_path_factory.mktemp("href") / "ref"
    assert _run(spec_file, out)["updates"] == TOTAL
    return out


def test_sigterm_saves_says_how_to_resume_writes_no_results_and_resumes_identically(spec_file, ref, tmp_path):
    out = tmp_path / "run"
    proc = start("homeostatic", spec_file, out)
    wait(proc, lambda: done(out) >= 4)
    assert proc.poll() is None  # still training: updates remain
    proc.send_signal(signal.SIGTERM)
    text, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, text[-2000:]
    assert "interrupted (SIGTERM)" in text and f"neurodsl homeostatic {spec_file}" in text and "--resume" in text
    assert 4 <= done(out) < TOTAL
    assert [f for f in FINAL if (out / f).exists()] == []  # nothing from half-trained parameters
    assert _run(spec_file, out, resume=True)["updates"] == TOTAL
    assert_same_params(out, ref)
    assert_same_npz(out / "network_structure.npz", ref / "network_structure.npz")


def test_resume_with_another_spec_fails_naming_the_key_and_writes_nothing(spec_file, tmp_path):
    out = tmp_path / "run"
    _run(spec_file, out, max_updates=2)
    spec_before = (out / "spec.yaml").read_text()
    line = error_line(cli("homeostatic", spec_file, "--out", out, "--resume", "--set", "training.learning_rate=0.1"))
    assert "--resume" in line and "differs" in line and "training.learning_rate" in line
    assert (out / "spec.yaml").read_text() == spec_before and done(out) == 2
    other = tmp_path / "unrelated"  # --resume on a folder that holds no run: fails before writing
    other.mkdir()
    (other / "spec.yaml").write_text("mine\n")
    assert "no usable checkpoint" in error_line(cli("homeostatic", spec_file, "--out", other, "--resume"))
    assert sorted(p.name for p in other.iterdir()) == ["spec.yaml"] and (other / "spec.yaml").read_text() == "mine\n"


def test_force_is_a_fresh_run_and_resume_cannot_continue_the_old_one(spec_file, ref, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(ref, out)  # a finished run with learning rate 0.05
    new = ["--set", "training.learning_rate=0.1", "--set", "training.checkpoint_interval=100000"]
    proc = start("homeostatic", spec_file, out, "--force", *new)
    wait(proc, lambda: not latest(out).exists())  # the old run's checkpoints are cleared at the start
    assert proc.poll() is None  # killed before its first checkpoint
    proc.kill()
    proc.communicate(timeout=60)
    assert not latest(out).exists() and not (out / "network_structure.npz").exists()
    assert "no usable checkpoint" in error_line(cli("homeostatic", spec_file, "--out", out, "--resume", *new))


@pytest.mark.parametrize("retries", [2, 0])
def test_nonfinite_loss_stops_with_one_line_exit_2_and_writes_nothing_nonfinite(spec_file, tmp_path, retries):
    out = tmp_path / "nan"
    r = cli("homeostatic", spec_file, "--out", out, "--set", "training.learning_rate=1e6",
            "--set", f"training.divergence_retries={retries}")
    line = error_line(r)
    assert "diverged" in line and "non-finite" in line and "training.learning_rate" in line
    assert r.output.count("neurodsl: warning: training diverged") == retries  # retried with smaller steps
    assert ("after 2 retries" in line) == (retries == 2)
    assert [f for f in FINAL if (out / f).exists()] == [] and all_finite(out)
    rows = json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").exists() else []
    assert all(np.isfinite(row["loss"]) for row in rows)

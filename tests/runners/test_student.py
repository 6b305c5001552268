"""fit-student (issue 5): planted recovery of the teacher's scaling factors, outputs, dashboard."""
import json

import numpy as np
import pytest

TEACHER = """name: tt
kind: teacher
dt: 1 ms
duration: 2 s
trials: 4
network:
  generator: {n_neurons: 150, n_inputs: 50, n_assemblies: 3}
  scaling: {E: {E: 0.5, I: 2.0, input: 0.8}, I: {E: 0.4, I: 1.5, input: 0.7}}
odours: {n: 2}
schedule: {kind: fixed, odours: [0, 1, -1, 0]}
dashboard: {enabled: false}
"""

STUDENT = """name: st
kind: student
teacher: {teacher}
init: {{kind: teacher_perturbed, sigma: 0.3}}
losses: {{rate: 1.0, rate_mode: neuron, van_rossum: 0.2}}
training: {{batch: 4, chunk_size: 50, chunks_per_update: 4, epochs: 20, learning_rate: 0.1,
           lr_final_fraction: 0.1, log_interval: 1000, checkpoint_interval: 100}}
"""

RESUME = """name: sr
kind: student
teacher: {teacher}
init: {{kind: teacher_perturbed, sigma: 0.3}}
losses: {{rate: 1.0, rate_mode: neuron, van_rossum: 0.2}}
training: {{batch: 2, chunk_size: 25, chunks_per_update: 2, epochs: 3, updates_per_epoch: 3,
           learning_rate: 0.1, lr_final_fraction: 0.1, log_interval: 1000, checkpoint_interval: 2}}
"""


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    from neurodsl.runners.teacher import run_teacher
    from neurodsl.spec import load_spec_text
    d = tmp_path_factory.mktemp("teacher")
    run_teacher(load_spec_text(TEACHER), d, progress=False)
    return d


def test_planted_recovery_of_scaling_factors(teacher_dir, tmp_path):
    from neurodsl.analysis.student import student_report
    from neurodsl.io.structure import load_structure
    from neurodsl.runners.student import run_student
    from neurodsl.spec import load_spec_text
    r = run_student(load_spec_text(STUDENT.format(teacher=teacher_dir)), tmp_path, progress=False)
    init, rec = r["initial"]["scaling"], r["recovered"]["scaling"]
    assert init["max_relative_error"] > 0.3  # a 30 % log-normal perturbation
    # the issue: every factor within 5 % (teacher forcing, the default: all < 1 %; closed loop 2-7 %)
    assert rec["median_relative_error"] < 0.05, rec["relative_error"]
    assert rec["max_relative_error"] < 0.05, rec["relative_error"]
    np.testing.assert_allclose(rec["true"], np.array([[0.5, 2.0, 0.8], [0.4, 1.5, 0.7]]).ravel(), rtol=1e-6)
    s = load_structure(tmp_path / "network_structure.npz")
    np.testing.assert_allclose(s.scaling.ravel(), rec["recovered"], rtol=1e-5)
    assert rec["max_abs_log_error"] < np.log(1.05) and rec["correlation"] > 0.99  # the truth varies here
    ident = r["identifiability"]  # curvature at the fit: every factor has synapses, all pinned and recovered
    assert {n: row["verdict"] for n, row in ident["per_factor"].items()} == dict.fromkeys(
        ["E<-E", "E<-I", "E<-input", "I<-E", "I<-I", "I<-input"], "recovered"), ident["per_factor"]
    assert not any(ident["flat"]) and len(ident["eigenvalues"]) == 6
    assert (tmp_path / "figures" / "curvature.png").exists()
    figs = student_report(tmp_path)
    assert all(f.exists() for f in figs) and len(figs) == 5 and figs[-1].name == "student_report.json"
    from click.testing import CliRunner
    from neurodsl.cli import main
    res = CliRunner().invoke(main, ["analyze", "student", str(tmp_path), "--out", str(tmp_path / "figs2")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "figs2" / "variability.png").exists() and "E<-I: recovered" in res.output
    rep = json.loads((tmp_path / "student_report.json").read_text())
    assert 0 < rep["ratio_learning_over_poisson"] <= 1.5  # learning variability within 1.5x Poisson
    assert rep["identifiability"]["scaling"]["max_relative_error"] == rec["max_relative_error"]
    assert rep["identifiability"]["curvature"]["not_identifiable"] == []


def test_student_spec_requires_a_teacher_folder(tmp_path):
    from neurodsl.errors import SpecError
    from neurodsl.spec import load_spec_text
    with pytest.raises(SpecError, match="neurodsl teacher"):
        load_spec_text(STUDENT.format(teacher=tmp_path / "nope"))


def test_student_resume_is_bit_identical(teacher_dir, tmp_path):
    """8 updates straight == 4 + resume 4 (crossing epochs; batch 2 of 4 trials, drawn per epoch)."""
    from neurodsl.runners.student import run_student
    from neurodsl.spec import load_spec_text
    loaded = load_spec_text(RESUME.format(teacher=teacher_dir))
    a, b = tmp_path / "a", tmp_path / "b"
    kw = {"progress": False, "comparison_ms": 100.0, "report_windows": 1, "profile_windows": 1}
    run_student(loaded, a, max_updates=8, **kw)
    run_student(loaded, b, max_updates=4, **kw)
    r = run_student(loaded, b, resume=True, max_updates=4, **kw)
    assert r["updates"] == 8
    pa, pb = np.load(a / "params.npz"), np.load(b / "params.npz")
    assert set(pa.files) == set(pb.files)
    for k in pa.files:
        np.testing.assert_array_equal(pa[k], pb[k], err_msg=k)
    assert not np.array_equal(pa["scaling_recovered"], pa["scaling_initial"])
    ha, hb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    strip = [[{k: v for k, v in row.items() if k != "seconds"} for row in h] for h in (ha, hb)]
    assert len(ha) == 8 and strip[0] == strip[1]

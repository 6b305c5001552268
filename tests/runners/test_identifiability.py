"""Identifiability report (issue 13) on a planted teacher: a projection without synapses (I<-I) is
reported not identifiable, the other factors are recovered or, if planted off, 'identifiable, not
recovered'; the report's curvature is the Gauss-Newton form of the engine's own loss terms."""
import numpy as np
import pytest

TEACHER = """name: tt
kind: teacher
dt: 1 ms
duration: 600 ms
trials: 2
network:
  generator: {n_neurons: 80, n_inputs: 30, n_assemblies: 2,
              p: {EE: {within: 0.2, between: 0.1}, EI: {within: 0.2, between: 0.2},
                  IE: {within: 0.2, between: 0.2}, II: {within: 0.0, between: 0.0}}}
  scaling: {E: {E: 0.5, I: 2.0, input: 0.8}, I: {E: 0.4, I: 1.5, input: 0.7}}
odours: {n: 2}
schedule: {kind: fixed, odours: [0, 1]}
dashboard: {enabled: false}
"""

STUDENT = """name: st
kind: student
teacher: {teacher}
losses: {{rate: 1.0, rate_mode: neuron, van_rossum: 0.3}}
training: {{batch: 2, chunk_size: 50, chunks_per_update: 3, epochs: 1}}
"""


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    from neurodsl.runners.student import TeacherData, student_setup
    from neurodsl.runners.teacher import run_teacher
    from neurodsl.spec import load_spec_text
    d = tmp_path_factory.mktemp("teacher")
    run_teacher(load_spec_text(TEACHER), d, progress=False)
    spec = load_spec_text(STUDENT.format(teacher=d)).spec
    return student_setup(spec, TeacherData(spec.teacher, spec.trials))


def test_a_projection_without_synapses_is_not_identifiable(student):
    from neurodsl.runners.identifiability import identifiability
    setup, true = student
    assert not (setup.model.structure.cell_type[setup.model.structure.rec_pre] == "I")[
        setup.model.structure.cell_type[setup.model.structure.rec_post] == "I"].any()  # no I->I synapse
    # the fitted point: the truth with I<-I 35 % off (it cannot matter) and E<-input 22 % off (it must)
    fitted = {"log_scaling": true["log_scaling"].at[1, 1].add(0.3).at[0, 2].add(0.2)}
    rep = identifiability(setup, fitted, true=true, n_windows=4, profile_windows=2)
    v = {n: r["verdict"] for n, r in rep["per_factor"].items()}
    assert v["I<-I"] == "not identifiable from these data", rep["per_factor"]["I<-I"]
    assert v["E<-input"] == "identifiable, not recovered"
    for name in ("E<-E", "E<-I", "I<-E", "I<-input"):
        assert v[name] == "recovered", (name, rep["per_factor"][name])
    assert rep["not_identifiable"] == ["I<-I"] and rep["per_factor"]["I<-I"]["flat_share"] > 0.99
    assert [d["description"] for d in rep["flat_directions"]] == ["+1.00 I<-I"]
    assert np.allclose(rep["profiles"]["I<-I"]["loss"], rep["profiles"]["I<-I"]["loss_at_fit"])
    assert np.ptp(rep["profiles"]["E<-input"]["loss"]) > 0.05  # the data see it
    lam = np.asarray(rep["eigenvalues"])
    assert lam[:-1].min() > 1e-3 * lam.max() and lam[-1] <= 1e-9 * lam.max()  # one zero: I<-I
    assert 0 < rep["loss"]["mean"]
    # Gauss-Newton residuals: their sum of squares is the engine's loss on each window
    np.testing.assert_allclose(rep["loss_sum_of_squares"], rep["loss"]["per_window"], rtol=2e-4)


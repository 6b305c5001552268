"""The teacher rejects non-finite and sign-violating weights and scaling (issue 14) before it
creates anything, and why such values used to pass unnoticed: a non-finite conductance gives
its postsynaptic neuron a NaN membrane potential, NaN never crosses threshold, the neuron falls
silent and, being silent, passes nothing on -- rates come from spike counts, so no NaN shows.
A weight onto a neuron that was silent anyway (the probe's +Inf feedforward weight) changes
nothing at all."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from neurodsl.errors import DataError, SpecError
from neurodsl.spec import load_spec_text

TEACHER = """name: tv
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


@pytest.fixture(scope="module")
def structure_file(tmp_path_factory):
    from neurodsl.compile.olfactory import resolve_structure
    from neurodsl.io.structure import save_structure
    s, _ = resolve_structure(load_spec_text(TEACHER).spec)
    return save_structure(s, tmp_path_factory.mktemp("s") / "network_structure.npz")


def _arrays(path) -> dict:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize("key,index,value,message", [
    ("rec_weight", 0, np.nan, "non-finite"), ("ff_weight", 0, np.inf, "non-finite"),
    ("scaling", (1, 0), np.nan, "non-finite"), ("scaling", (0, 2), -1.0, "negative scaling")])
def test_teacher_rejects_bad_structure_values_and_creates_nothing(structure_file, tmp_path, key, index, value,
                                                                  message):
    from neurodsl.runners.teacher import run_teacher
    a = _arrays(structure_file)
    a[key] = a[key].copy()
    a[key][index] = value
    np.savez(tmp_path / "bad.npz", **a)
    loaded = load_spec_text(TEACHER, overrides=[f"network.structure={tmp_path / 'bad.npz'}"])
    with pytest.raises(DataError, match=message) as e:
        run_teacher(loaded, tmp_path / "out", progress=False)
    assert e.value.field == key and "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", [".nan", ".inf"])
def test_teacher_rejects_non_finite_spec_scaling(tmp_path, value):
    from neurodsl.runners.teacher import run_teacher
    loaded = load_spec_text(TEACHER, overrides=[f"network.scaling.I.E={value}"])
    with pytest.raises(SpecError, match="effective scaling factor") as e:
        run_teacher(loaded, tmp_path / "out", progress=False)
    assert e.value.field == "network.scaling.I.E" and not (tmp_path / "out").exists()


def test_why_a_non_finite_weight_went_unnoticed(structure_file):
    """Validation bypassed: +Inf onto a spiking neuron silences exactly that neuron (its V is NaN);
    +Inf onto a neuron that never spiked leaves every spike as it was."""
    from neurodsl.io.structure import load_structure
    from neurodsl.runners.teacher import _simulate
    loaded = load_spec_text(TEACHER)
    s = load_structure(structure_file)
    control = _simulate(loaded, s, batch=2, seed=0, progress=False)
    counts = np.bincount(control["spike_neuron"].values, minlength=s.n)
    onto_silent = int(np.flatnonzero(counts[s.ff_post] == 0)[0])
    onto_active = int(np.argmax(counts[s.ff_post]))  # the busiest neuron fires after the input arrives
    for j, same in ((onto_silent, True), (onto_active, False)):
        w = s.ff_weight.copy()
        w[j] = np.inf
        ds = _simulate(loaded, dataclasses.replace(s, ff_weight=w), batch=2, seed=0, progress=False)
        assert np.isfinite(ds["rate"].values).all()  # nothing in the output says NaN
        if same:
            np.testing.assert_array_equal(ds["spike_neuron"].values, control["spike_neuron"].values)
            continue
        post, pre = s.ff_post[j], s.ff_pre[j]
        for t in range(2):  # the neuron fires as before until the first input spike through w = +Inf, then never
            first = ds["input_spike_step"].values[(ds["input_spike_trial"].values == t)
                                                  & (ds["input_spike_channel"].values == pre)]
            mine = ds["spike_step"].values[(ds["spike_trial"].values == t) & (ds["spike_neuron"].values == post)]
            before = control["spike_step"].values[(control["spike_trial"].values == t)
                                                  & (control["spike_neuron"].values == post)]
            if first.size:
                assert (mine <= first[0]).all() and set(before[before < first[0]]) <= set(mine)
        assert (ds["spike_neuron"].values == post).sum() < counts[post]

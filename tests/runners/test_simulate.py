"""simulate(): every shipped spec runs (shortened); outputs are labelled and reproducible."""
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from neurodsl.spec import load_spec
from neurodsl.runners.simulate import simulate

REPO = Path(__file__).resolve().parents[2]
SIM_SPECS = sorted(p for p in (REPO / "spec").glob("*.yaml") if "kind: simulation" in p.read_text())


@pytest.mark.parametrize("path", SIM_SPECS, ids=[p.stem for p in SIM_SPECS])
def test_shipped_simulation_specs_run_shortened(path, tmp_path):
    simulate(load_spec(path, ["duration=20 ms", "outputs.rate_bin=5 ms"]), tmp_path, progress=False)
    assert (tmp_path / "simulation.nc").exists() and (tmp_path / "spec.yaml").exists()
    back = xr.open_dataset(tmp_path / "simulation.nc")
    assert back.sizes["time"] == 4 and back["rate"].attrs["units"] == "Hz"
    assert set(back["ei"].values) <= {"E", "I"}
    assert back.attrs["spec_sha256"] and "brainpy" in "".join(back.attrs)
    # rates are the binned event list
    counts = np.zeros(back["rate"].shape)
    steps_per_bin = int(back.attrs["bin_ms"] / back.attrs["dt_ms"] + 0.5)
    np.add.at(counts, (back.spike_trial.values, back.spike_step.values // steps_per_bin, back.spike_neuron.values), 1)
    np.testing.assert_allclose(back["rate"].values, counts / (back.attrs["bin_ms"] * 1e-3), rtol=1e-6)


def test_same_seed_same_spikes_other_seed_other_spikes():
    path = REPO / "spec" / "coba.yaml"
    short = ["duration=30 ms", "populations.E.size=400", "populations.I.size=100"]
    a = simulate(load_spec(path, short), progress=False, write=False)
    b = simulate(load_spec(path, short), progress=False, write=False)
    c = simulate(load_spec(path, short + ["seed=1"]), progress=False, write=False)
    assert a.sizes["spike"] > 0
    np.testing.assert_array_equal(a.spike_step.values, b.spike_step.values)
    np.testing.assert_array_equal(a.spike_neuron.values, b.spike_neuron.values)
    assert a.sizes["spike"] != c.sizes["spike"] or not np.array_equal(a.spike_neuron.values, c.spike_neuron.values)


def test_chunking_does_not_change_results():
    path = REPO / "spec" / "coba.yaml"
    short = ["duration=40 ms", "populations.E.size=400", "populations.I.size=100", "trials=2"]
    whole = simulate(load_spec(path, short), progress=False, write=False)
    chunked = simulate(load_spec(path, short + ["outputs.chunk=10 ms"]), progress=False, write=False)
    np.testing.assert_array_equal(whole.spike_step.values, chunked.spike_step.values)
    np.testing.assert_array_equal(whole.spike_trial.values, chunked.spike_trial.values)
    assert set(whole.spike_trial.values.tolist()) == {0, 1}


def test_progress_in_a_log_file_is_plain_lines(tmp_path, capfd, monkeypatch):
    """neurodsl simulate with stderr in a file: whole lines, no carriage returns, final state kept."""
    from neurodsl.runners.simulate import simulate
    from neurodsl.spec import load_spec
    monkeypatch.setenv("NEURODSL_PROGRESS_INTERVAL", "0")
    spec = Path(__file__).resolve().parents[2] / "spec" / "coba.yaml"
    simulate(load_spec(spec, ["duration=20 ms", "populations.E.size=80", "populations.I.size=20"]), None,
             progress=True, write=False)
    err = capfd.readouterr().err
    assert "\r" not in err and "200/200" in err

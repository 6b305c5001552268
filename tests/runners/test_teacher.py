"""run_teacher / simulate_conditions: shipped specs run, teacher.nc layout, reproducibility,
odour selectivity and reliability, refractoriness, structure order."""
from pathlib import Path

import numpy as np
import yaml
import pytest
import xarray as xr

from neurodsl.analysis.odourants import condition_correlations
from neurodsl.io.structure import NetworkStructure, load_structure, save_structure
from neurodsl.runners.teacher import run_teacher, simulate_conditions, teacher_summary
from neurodsl.spec import load_spec

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "spec" / "olfactory.yaml"
TINY = ["network.generator.n_neurons=200", "network.generator.n_inputs=60", "duration=200 ms", "trials=2",
        "dashboard.duration=200 ms", "outputs.chunk=100 ms"]
TEACHER_SPECS = sorted(p for p in (REPO / "spec").glob("*.yaml")
                       if (yaml.safe_load(p.read_text()) or {}).get("kind") == "teacher")


def _binned(trial, step, idx, shape, bin_steps):
    counts = np.zeros(shape)
    np.add.at(counts, (trial, step // bin_steps, idx), 1)
    return counts


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    ds = run_teacher(load_spec(SPEC, TINY), out, progress=False)
    return out, ds


@pytest.mark.parametrize("path", TEACHER_SPECS, ids=[p.stem for p in TEACHER_SPECS])
def test_shipped_teacher_specs_run_shortened(path, tmp_path, request):
    if "../shared/data" in path.read_text() and not (REPO.parent / "shared" / "data").exists():
        pytest.skip("shared data folder is absent")
    short = ["duration=100 ms", "trials=2", "dashboard.enabled=false"]
    if "generator" in path.read_text():
        short += TINY[:2]
    ds = run_teacher(load_spec(path, short), tmp_path, progress=False)
    assert {"teacher.nc", "network_structure.npz", "spec.yaml"} <= {p.name for p in tmp_path.iterdir()}
    assert ds.sizes["trial"] == 2 and ds.attrs["n_steps"] == 100


def test_layout_and_files(run):
    out, ds = run
    back = xr.open_dataset(out / "teacher.nc")
    s = load_structure(out / "network_structure.npz")
    assert back.sizes["neuron"] == s.n == 200 and back.sizes["channel"] == s.n_inputs == 60
    assert (back["ei"].values.astype(str) == s.cell_type).all()
    np.testing.assert_array_equal(back["assembly"].values, s.assembly)
    bin_steps = int(back.attrs["bin_ms"] / back.attrs["dt_ms"] + 0.5)
    rec = _binned(back.spike_trial.values, back.spike_step.values, back.spike_neuron.values,
                  back["rate"].shape, bin_steps)
    np.testing.assert_allclose(back["rate"].values, rec / (back.attrs["bin_ms"] * 1e-3), rtol=1e-6)
    inp = _binned(back.input_spike_trial.values, back.input_spike_step.values, back.input_spike_channel.values,
                  back["input_rate"].shape, bin_steps)
    np.testing.assert_allclose(back["input_rate"].values, inp / (back.attrs["bin_ms"] * 1e-3), rtol=1e-6)
    # the shipped schedule is an OU mixture: weights sum to 1, trial_odour is the dominant odour
    assert back["odour_weight"].sizes == {"trial": 2, "time": 4, "odour": 10}
    np.testing.assert_allclose(back["odour_weight"].sum("odour"), 1.0, rtol=1e-5)
    assert back["trial_odour"].values.tolist() == back["odour_dominant"].values[:, 0].tolist()
    assert np.isfinite([back.attrs["rate_E_hz"], back.attrs["rate_I_hz"]]).all()
    assert "E:" in teacher_summary(ds) and back.attrs["structure_origin"] == "generated"
    assert (out / "conditions.nc").exists() and (out / "spec.yaml").read_text().startswith("name: olfactory")


def test_refractory_period_is_honoured(run):
    _, ds = run
    t_ref = {"E": 8, "I": 8}  # steps of 1 ms (spec defaults)
    tr, st, ne = ds.spike_trial.values, ds.spike_step.values, ds.spike_neuron.values
    order = np.lexsort((st, ne, tr))
    tr, st, ne = tr[order], st[order], ne[order]
    same = (tr[1:] == tr[:-1]) & (ne[1:] == ne[:-1])
    isi = np.diff(st)[same]
    assert same.sum() > 100
    ref = np.array([t_ref[e] for e in ds["ei"].values.astype(str)])[ne[1:][same]]
    # clamped for t_ref after a spike: the next spike comes t_ref (8 steps) later at the earliest
    assert (isi >= ref).all(), "a spike within t_ref of the previous one"
    assert isi.min() == 8  # the drive is strong enough that some neurons fire at the limit


def test_same_seed_same_spikes():
    a = simulate_conditions(load_spec(SPEC, TINY), duration="100 ms")
    b = simulate_conditions(load_spec(SPEC, TINY), duration="100 ms")
    for v in ("spike_trial", "spike_step", "spike_neuron", "input_spike_step", "input_spike_channel"):
        np.testing.assert_array_equal(a[v].values, b[v].values)
    assert a.sizes["spike"] > 0


def test_odour_is_reliable_and_selective():
    spec = load_spec(SPEC, TINY[:2] + ["odours.fraction=0.3", "odours.modulation=40 Hz"])
    ds = simulate_conditions(spec, duration="1 s")
    assert ds["condition"].values.tolist() == ["odour", "baseline", "odour_repeat"]
    cc = condition_correlations(ds)
    rates = ds["rate"].mean("time").values
    assert 0.5 < cc["odour_vs_repeat"] < 1.0 and not np.array_equal(rates[0], rates[2])
    # inputs: the odour raises its mitral cells only in the odour trials
    inp = ds["input_rate"].mean("time").values
    hit = ds["odour_rate"].values[0] > ds["base_rate"].values
    assert inp[0, hit].mean() > inp[1, hit].mean() + 20 and inp[2, hit].mean() > inp[1, hit].mean() + 20
    # recurrent layer: the odour drives it above baseline, beyond the repeat-to-repeat noise
    assert rates[0].mean() > rates[1].mean() and cc["mean_abs_diff_odour_vs_baseline_hz"] > \
        cc["mean_abs_diff_odour_vs_repeat_hz"]


def test_structure_file_with_interleaved_types_keeps_structure_order(tmp_path):
    rng = np.random.default_rng(0)
    n, ni = 60, 20
    ct = np.where(rng.random(n) < 0.7, "E", "I")
    pre, post = np.nonzero(rng.random((n, n)) < 0.1)
    w = np.where(ct[pre] == "E", 1.0, -1.0).astype(np.float32)
    fp, fq = np.nonzero(rng.random((ni, n)) < 0.3)
    s = NetworkStructure(ct, pre.astype(np.int32), post.astype(np.int32), w, fp.astype(np.int32),
                         fq.astype(np.int32), np.ones(len(fp), np.float32), ni).validate()
    save_structure(s, tmp_path / "s.npz")
    spec = load_spec(SPEC, [f"network.structure={tmp_path / 's.npz'}", "duration=300 ms", "trials=1",
                            "dashboard.enabled=false"])
    ds = run_teacher(spec, tmp_path / "out", progress=False)
    assert (ds["ei"].values.astype(str) == ct).all()
    assert load_structure(tmp_path / "out" / "network_structure.npz").n == n
    # the compiled network was E-then-I; the outputs are back in the interleaved structure order (above)
    assert ds.attrs["rate_I_hz"] > 0 and ds.attrs["rate_E_hz"] > 0


def test_network_yaml_is_the_teacher_as_an_ordinary_spec(run, tmp_path):
    """The olfactory template expands into a kind: simulation spec: `neurodsl simulate` on the
    teacher's network.yaml gives the teacher's spikes, and the general language's delays work on it."""
    from neurodsl.runners.simulate import simulate
    out, ds = run
    loaded = load_spec(out / "network.yaml")
    assert loaded.spec.kind == "simulation"
    assert {p.connectivity.kind for p in loaded.spec.projections} == {"structure"}
    sim = simulate(loaded, None, progress=False, write=False)
    import jax
    want = "loop" if jax.default_backend() == "cpu" else "xla"  # auto, for the teacher and for simulate
    assert ds.attrs["engine"] == sim.attrs["engine"] == want
    perm = np.concatenate([np.nonzero(load_structure(out / "network_structure.npz").cell_type == t)[0]
                           for t in "EI"])
    key = lambda t, s, n: np.lexsort((n, t, s))  # noqa: E731
    a = (sim["spike_trial"].values, sim["spike_step"].values, perm[sim["spike_neuron"].values])
    b = (ds["spike_trial"].values, ds["spike_step"].values, ds["spike_neuron"].values)
    ka, kb = key(*a), key(*b)
    assert len(a[0]) > 100
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x[ka], y[kb])
    # a 5 ms delay on every recurrent projection: a valid spec, and it changes the dynamics
    text = (out / "network.yaml").read_text()
    delayed = yaml.safe_load(text)
    for pr in delayed["projections"]:
        if pr["pre"] != "mitral":
            pr["delay"] = "5 ms"
    f = out / "network_delayed.yaml"
    f.write_text(yaml.safe_dump(delayed))
    sim_d = simulate(load_spec(f), None, progress=False, write=False)
    assert sim_d.sizes["spike"] != sim.sizes["spike"] or not np.array_equal(sim_d["spike_step"], sim["spike_step"])

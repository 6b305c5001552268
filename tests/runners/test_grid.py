"""infer-network grid search: serial == LocalCluster, resume recomputes only missing points, spec checks."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from neurodsl.errors import SpecError
from neurodsl.spec import load_spec, load_spec_text
from neurodsl.runners.grid import STAT_NAMES, run_network_inference, score_point

REPO = Path(__file__).resolve().parents[2]

TINY = """
name: tiny_grid
kind: network_inference
seed: 3
duration: 100 ms
generator: {n_neurons: 100, n_inputs: 30, n_assemblies: 2, p_ff: {E: 0.2, I: 0.2},
            p: {EE: {within: 0.2, between: 0.02}}}
simulation: {input_rate: 10 Hz, warmup: 10 ms, stat_bin: 20 ms}
grid:
  generator.p.EE.within: [0.1, 0.3]
  network.scaling.E.input: [1.0, 2.0]
targets:
  E: {rate: 5 Hz, cv: 0.8, fraction_silent: 0.5}
  I: {rate: 30 Hz}
  coactivation: 0.1
parallel: {n_workers: 2}
"""


def _comparable(ds: xr.Dataset) -> xr.Dataset:
    return ds.drop_vars("wall_s")


@pytest.fixture(scope="module")
def serial_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    ds = run_network_inference(load_spec_text(TINY), out, scheduler="serial", progress=False)
    return out, ds


def test_serial_run_outputs(serial_run):
    out, ds = serial_run
    assert dict(ds.sizes) == {"generator.p.EE.within": 2, "network.scaling.E.input": 2}
    assert set(STAT_NAMES) | {"score", "seed", "n_synapses", "key"} <= set(ds.data_vars)
    assert ds.attrs["n_computed"] == 4 and ds.attrs["n_reused"] == 0
    back = xr.open_dataset(out / "grid.nc")
    xr.testing.assert_allclose(_comparable(back).drop_vars("key"), _comparable(ds).drop_vars("key"))
    # per-point seeds derive from the parameters: all different
    assert len(set(ds["seed"].values.ravel().tolist())) == 4
    assert np.isfinite(ds["score"]).all()
    best = json.loads(ds.attrs["best_params"])
    assert float(ds["score"].sel(best)) == pytest.approx(float(ds["score"].min()))
    with np.load(out / "network_structure.npz") as z:
        assert z["cell_type"].shape == (100,) and int(z["n_inputs"]) == 30
        assert json.loads(str(z["meta"]))["grid_params"] == best
        scaling = z["scaling"]
    assert scaling[0, 2] == pytest.approx(best["network.scaling.E.input"])  # effective scaling is stored
    figs = {p.name for p in (out / "figures").glob("*.png")}
    assert {"best_matrix.png", "best_assembly_graph.png", "best_degrees.png"} <= figs
    assert any(f.startswith("score_") for f in figs)
    assert len(list((out / "points").glob("*.json"))) == 4


def test_local_cluster_gives_identical_results(serial_run, tmp_path):
    out_s, ds_s = serial_run
    ds_p = run_network_inference(load_spec_text(TINY + "figures: false\n"), tmp_path, scheduler=None,
                                 progress=False)
    assert ds_p.attrs["n_computed"] == 4 and ds_p.attrs["scheduler"] == "local"
    xr.testing.assert_identical(_comparable(ds_p).drop_attrs(), _comparable(ds_s).drop_attrs())
    with np.load(out_s / "network_structure.npz") as a, np.load(tmp_path / "network_structure.npz") as b:
        for k in ("rec_pre", "rec_post", "rec_weight", "ff_pre", "ff_weight", "scaling"):
            np.testing.assert_array_equal(a[k], b[k])


def test_resume_recomputes_only_missing_points(serial_run, tmp_path):
    out_s, ds_s = serial_run
    out = tmp_path / "run"
    shutil.copytree(out_s, out)
    (out / "grid.nc").unlink()
    victim = str(ds_s["key"].values[1, 0])
    (out / "points" / f"{victim}.npz").unlink()
    n_before = len((out / "grid.log").read_text().splitlines())
    ds = run_network_inference(load_spec_text(TINY + "figures: false\n"), out, scheduler="serial",
                               progress=False)
    assert ds.attrs["n_computed"] == 1 and ds.attrs["n_reused"] == 3
    new = (out / "grid.log").read_text().splitlines()[n_before:]
    assert [ln.split()[2] for ln in new if ln.split()[1] == "computed"] == [victim]
    xr.testing.assert_identical(_comparable(ds).drop_attrs(), _comparable(ds_s).drop_attrs())


def test_changing_targets_rescores_without_recomputing(serial_run, tmp_path):
    out_s, ds_s = serial_run
    out = tmp_path / "run"
    shutil.copytree(out_s, out)
    ds = run_network_inference(load_spec_text(TINY.replace("rate: 30 Hz", "rate: 60 Hz") + "figures: false\n"),
                               out, scheduler="serial", progress=False)
    assert ds.attrs["n_computed"] == 0
    xr.testing.assert_equal(ds[list(STAT_NAMES)], ds_s[list(STAT_NAMES)])
    assert not np.allclose(ds["score"], ds_s["score"])


def test_point_keys_and_seeds():
    spec = load_spec_text(TINY).spec
    pts = spec.points()
    assert pts[1] == {"generator.p.EE.within": 0.1, "network.scaling.E.input": 2.0}  # C order
    assert spec.at_point(pts[3]).generator.p["EE"].within == 0.3
    assert spec.at_point(pts[3]).network.scaling_matrix()[0, 2] == 2.0
    longer = load_spec_text(TINY.replace("duration: 100 ms", "duration: 200 ms")).spec
    assert spec.point_key(pts[0]) != longer.point_key(pts[0])  # model changes invalidate points
    assert spec.point_seed(pts[0]) == longer.point_seed(pts[0])
    common = load_spec_text(TINY + "seeds: common\n").spec
    assert {common.point_seed(p) for p in pts} == {3}


def test_score_formula():
    spec = load_spec_text(TINY).spec
    stats = {k: 0.0 for k in STAT_NAMES}
    stats.update(rate_E=10.0, cv_E=0.8, fraction_silent_E=0.25, rate_I=15.0, coactivation=float("nan"))
    # ((10-5)/5)^2 + 0 + 0.5 * 0 ... : rate_E 1, cv 0, silent (0.25-0.5)^2, rate_I ((15-30)/30)^2, coact missing
    expected = 1.0 + 0.0 + 0.0625 + 0.25 + 10.0
    assert score_point(stats, spec) == pytest.approx(expected)


@pytest.mark.parametrize("path,value,msg", [
    ("generator.p.XY.within", [0.1], "generator.p.XY"),
    ("foo.bar", [1], "must start with"),
    ("generator.p.EE.within", [1.5], "does not apply"),
    ("network.scaling.E.input", [], "empty"),
    ("generator.n_neurons.x", [1], "does not apply"),
])
def test_bad_grid_paths_are_spec_errors(path, value, msg):
    text = TINY.split("grid:")[0] + f"grid:\n  {path}: {json.dumps(value)}\n"
    with pytest.raises(SpecError) as e:
        load_spec_text(text)
    assert msg in str(e.value) and "grid" in e.value.field


def test_shipped_spec_loads_and_round_trips():
    loaded = load_spec(REPO / "spec" / "network_inference.yaml")
    spec = loaded.spec
    assert len(spec.grid) == 2 and len(spec.points()) <= 9
    assert load_spec_text(loaded.resolved_yaml).spec == spec  # the spec.yaml written to OUT reloads
    assert spec.network.generator == spec.generator


TERM = """
name: term_grid
kind: network_inference
seed: 3
duration: 50 ms
generator: {n_neurons: 60, n_inputs: 20, n_assemblies: 2, p_ff: {E: 0.2, I: 0.2},
            p: {EE: {within: 0.2, between: 0.02}}}
simulation: {input_rate: 10 Hz, warmup: 10 ms, stat_bin: 10 ms}
grid:
  network.scaling.E.input: [1.0, 1.5, 2.0]
targets:
  E: {rate: 5 Hz}
figures: false
"""


def test_sigterm_stops_like_ctrl_c_and_a_rerun_resumes(tmp_path):
    """A scheduler's SIGTERM with points remaining: exit 130 and a log line (like Ctrl+C), the
    finished points kept (umask mode, no temporaries); the rerun computes only the others."""
    import os
    import signal
    import subprocess
    import sys
    import time
    (tmp_path / "grid.yaml").write_text(TERM)
    out = tmp_path / "out"
    cli = str(Path(sys.executable).with_name("neurodsl"))
    proc = subprocess.Popen([cli, "infer-network", "grid.yaml", "--serial", "--out", str(out)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list((out / "points").glob("*.json")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    done = sorted(p.stem for p in (out / "points").glob("*.json"))
    assert proc.returncode == 130 and "neurodsl: interrupted" in err and "Traceback" not in err, err
    assert 1 <= len(done) < 3 and not (out / "grid.nc").exists()
    log = (out / "grid.log").read_text()
    assert f"interrupted (SIGTERM): {len(done)} of 3 points finished" in log
    assert not list((out / "points").glob(".*.tmp"))
    umask = os.umask(0)
    os.umask(umask)
    assert all((p.stat().st_mode & 0o777) == 0o666 & ~umask for p in (out / "points").iterdir())
    ds = run_network_inference(load_spec_text(TERM), out, scheduler="serial", progress=False)
    assert ds.attrs["n_reused"] == len(done) and ds.attrs["n_computed"] == 3 - len(done)
    rerun = (out / "grid.log").read_text()[len(log):].splitlines()
    computed = [ln.split()[2] for ln in rerun if ln.split()[1] == "computed"]
    assert len(computed) == 3 - len(done) and not set(computed) & set(done)

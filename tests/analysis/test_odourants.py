"""odourant_report: every figure is written from a teacher run folder; it also runs as a module."""
import subprocess
import sys
from pathlib import Path

import pytest

from neurodsl.analysis.odourants import condition_correlations, load_run, odourant_report
from neurodsl.runners.teacher import run_teacher
from neurodsl.spec import load_spec

REPO = Path(__file__).resolve().parents[2]
TINY = ["network.generator.n_neurons=200", "network.generator.n_inputs=60", "duration=200 ms", "trials=2",
        "dashboard.duration=300 ms"]
FIGURES = {"input_rates.png", "rates_by_type.png", "cv_by_type.png", "fano_by_type.png", "dashboard.png",
           "connectivity.png", "assembly_graph.png"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("odourants")
    run_teacher(load_spec(REPO / "spec" / "olfactory.yaml", TINY), out, progress=False)
    return out


def test_report_writes_all_figures(run_dir, tmp_path):
    paths = odourant_report(run_dir, tmp_path / "figs")
    assert {p.name for p in paths} == FIGURES
    assert all(p.stat().st_size > 5000 for p in paths)


def test_dataset_only_skips_dashboard_and_structure(run_dir, tmp_path):
    ds, cond, struct = load_run(run_dir)
    assert cond is not None and struct is not None
    paths = odourant_report(ds, tmp_path)
    assert {p.name for p in paths} == {"input_rates.png", "rates_by_type.png", "cv_by_type.png", "fano_by_type.png"}
    cc = condition_correlations(cond)
    assert set(cc) >= {"odour_vs_repeat", "odour_vs_baseline"}


def test_runs_as_module(run_dir, tmp_path):
    r = subprocess.run([sys.executable, "-m", "neurodsl.analysis.odourants", str(run_dir), str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "dashboard.png").exists()

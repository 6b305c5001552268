"""Workflow 2 end to end from the shipped specs, reduced: infer-network -> homeostatic -> teacher -> fit-student.

Every spec in spec/ validates (the kinds' own tests run each one shortened)."""
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from neurodsl.cli import main
from neurodsl.io.structure import load_structure
from neurodsl.spec import load_spec

REPO = Path(__file__).resolve().parents[1]
SPECS = sorted((REPO / "spec").glob("*.yaml"))
NEEDS_SHARED = {"olfactory_mushroom_body", "v1_gratings"}


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_every_shipped_spec_validates(path):
    if path.stem in NEEDS_SHARED and not (REPO.parent / "shared" / "data").exists():
        pytest.skip("needs ../shared/data")
    if path.stem == "student" and not (REPO / "results" / "olfactory").exists():
        # its default teacher folder is made by `neurodsl teacher spec/olfactory.yaml --out results/olfactory`
        with pytest.raises(Exception, match="neurodsl teacher"):
            load_spec(path)
        return
    assert load_spec(path).spec.name


def cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.output


def test_infer_homeostatic_teacher_student_chain(tmp_path):
    net, homeo, teach, student = (tmp_path / d for d in ("net", "homeo", "teacher", "student"))
    cli("infer-network", REPO / "spec" / "network_inference.yaml", "--serial", "--out", net,
        "--set", "grid={generator.p.EE.within: [0.1, 0.2]}", "--set", "figures=false")
    s0 = load_structure(net / "network_structure.npz")
    cli("homeostatic", REPO / "spec" / "homeostatic.yaml", "--out", homeo,
        "--set", f"network.structure={net / 'network_structure.npz'}", "--set", "duration=200 ms",
        "--set", "training.epochs=1", "--set", "training.updates_per_epoch=2", "--set", "training.batch=2",
        "--set", "training.chunks_per_update=2", "--set", "training.plot_interval=1000")
    s1 = load_structure(homeo / "network_structure.npz")
    assert s1.n == s0.n and np.array_equal(s1.rec_pre, s0.rec_pre)  # same connectome, tuned scaling
    assert not np.allclose(s1.scaling, s0.scaling)
    cli("teacher", REPO / "spec" / "olfactory.yaml", "--out", teach,
        "--set", f"network.structure={homeo / 'network_structure.npz'}", "--set", "duration=300 ms",
        "--set", "trials=4", "--set", "dashboard.duration=100 ms")
    assert (teach / "teacher.nc").exists()
    cli("fit-student", REPO / "spec" / "student.yaml", "--out", student, "--set", f"teacher={teach}",
        "--set", "trials=4", "--set", "training.epochs=1", "--set", "training.batch=2",
        "--set", "training.chunks_per_update=2", "--set", "training.plot_interval=1000")
    assert (student / "network_structure.npz").exists()
    out = cli("analyze", "student", student)
    assert "wrote" in out

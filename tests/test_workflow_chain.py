"""Every spec in spec/ validates (the kinds' own tests run each one shortened).

Workflow 2 end to end (infer-network -> homeostatic -> teacher -> fit-student -> analyze) runs
in-process in tests/analysis/figure_runs.py (checked by test_figures.py) and as CLI commands in
test_readme_workflow.py."""
from pathlib import Path

import pytest

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


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_the_resolved_spec_written_to_a_run_folder_loads_again_unchanged(path, tmp_path):
    """Every run writes ``loaded.resolved_yaml`` as DIR/spec.yaml; it must validate to the same spec
    (all defaults written out, so optional blocks such as training.force appear in it)."""
    try:
        loaded = load_spec(path)
    except Exception:
        pytest.skip("needs data or a teacher folder (see test_every_shipped_spec_validates)")
    (tmp_path / "spec.yaml").write_text(loaded.resolved_yaml)
    again = load_spec(tmp_path / "spec.yaml")
    assert again.resolved_yaml == loaded.resolved_yaml

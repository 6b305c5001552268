"""Import rules of the architecture (data flows one way)."""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

RULES = {
    "neurodsl/spec": {"jax", "jaxlib", "brainpy", "brainstate", "brainunit", "braintools", "brainevent",
                      "neurodsl.compile", "neurodsl.runners", "neurodsl.analysis", "neurodsl.io"},
    "neurodsl/io": {"jax", "jaxlib", "brainpy", "brainstate", "brainunit", "braintools", "brainevent",
                    "neurodsl.compile", "neurodsl.runners", "neurodsl.analysis"},
    "analysis": {"neurodsl.spec", "neurodsl.compile", "neurodsl.runners", "jax", "brainpy", "brainstate"},
    "neurodsl/compile": {"neurodsl.runners", "neurodsl.analysis"},
}


def imports_of(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


FILES = [(pkg, p) for pkg in RULES for p in sorted((REPO / pkg).rglob("*.py"))]


@pytest.mark.parametrize("pkg,path", FILES, ids=[str(p.relative_to(REPO)) for _, p in FILES])
def test_import_rules(pkg, path):
    bad = [m for m in imports_of(path) for f in RULES[pkg] if m == f or m.startswith(f + ".")]
    assert not bad, f"{path.relative_to(REPO)} imports {bad}, which {pkg} must not"


def test_only_compile_builds_brainstate_modules():
    offenders = []
    for p in REPO.rglob("*.py"):
        rel = p.relative_to(REPO).as_posix()
        if rel.startswith(("neurodsl/compile/", "tests/", "benchmarks/", ".venv/", "examples/")):
            continue
        if "brainstate.nn.Module)" in p.read_text():
            offenders.append(rel)
    assert not offenders


def test_test_file_names_are_unique():
    """tests/ has no __init__.py files: two test modules with one basename stop pytest's collection."""
    from collections import Counter
    names = Counter(p.name for p in (REPO / "tests").rglob("test_*.py"))
    assert not [n for n, c in names.items() if c > 1]

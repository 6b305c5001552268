"""The README's commands, in order, as written, at reduced size: each exits 0.

Every ``neurodsl ...`` command of the README's bash blocks (the Set up block's
``.venv/bin/neurodsl run`` included; ``python3 -m venv`` / ``pip`` / ``pytest`` are not
rerun) is run with the repository's ``.venv/bin/neurodsl`` in a fresh folder laid out like
a checkout (``spec/`` copied, ``../shared/data`` linked when it exists), with the ``--set``
overrides of :data:`SHRINK` appended.  A README command without an entry in SHRINK fails
the test: a new command gets a reduced size here.  Commands that need ``../shared/data``
are skipped without it, as the README says.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
BIN = Path(sys.executable).parent / "neurodsl"

_TRAIN = ["training.epochs=1", "training.updates_per_epoch=2", "training.batch=2", "training.chunk_size=20",
          "training.chunks_per_update=2", "training.plot_interval=1000"]
_FIT = ["duration=60 ms", "trials=1", "training.chunk=10 ms", "training.chunks_per_update=2",
        "training.warmup=10 ms", "training.epochs=1", "training.updates_per_epoch=2"]
_TEACHER = ["duration=200 ms", "trials=2", "dashboard.duration=100 ms", "outputs.chunk=100 ms"]
#: (subcommand, spec file or analyze target) -> what shrinks the run: flags, and "key=value" for --set
SHRINK = {
    ("run", "spec/final_rnn.yaml"): ["training.epochs=1"],
    ("infer-network", "spec/network_inference.yaml"): [
        "--serial", "duration=60 ms", "simulation.warmup=20 ms", "grid={generator.p.EE.within: [0.1, 0.3]}",
        "figures=false"],
    ("homeostatic", "spec/homeostatic.yaml"): ["duration=100 ms", *_TRAIN],
    ("teacher", "spec/olfactory.yaml"): _TEACHER,
    ("teacher", "spec/olfactory_mushroom_body.yaml"): _TEACHER,
    ("fit-student", "spec/student.yaml"): ["trials=2", *_TRAIN],
    ("run", "spec/coba_tuned.yaml"): [*_FIT, "populations.E.size=160", "populations.I.size=40"],
    ("run", "spec/three_pop.yaml"): [*_FIT, "populations.E.size=160", "populations.PV.size=20",
                                     "populations.SST.size=20"],
    ("analyze", "odourants"): [],
    ("analyze", "student"): [],
}


def readme_blocks(text: str) -> list[list[list[str]]]:
    """The neurodsl commands of each of the README's ```bash blocks, in order, as argument lists."""
    blocks = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        cmds = []
        for line in block.splitlines():
            for part in line.split("&&"):
                words = shlex.split(part, comments=True)
                if words and Path(words[0]).name == "neurodsl":
                    cmds.append(words[1:])
        if cmds:
            blocks.append(cmds)
    return blocks


def readme_commands(text: str) -> list[list[str]]:
    return [c for block in readme_blocks(text) for c in block]


def _key(args: list[str]) -> tuple[str, str]:
    return (args[0], args[1])


def _with_shrink(args: list[str]) -> list[str]:
    extra = []
    for a in SHRINK[_key(args)]:
        extra += [a] if a.startswith("--") else ["--set", a]
    return [*args, *extra]


def _needs_shared(args: list[str], checkout: Path) -> bool:
    spec = checkout / args[1]
    return "../shared/data" in " ".join(args) or (spec.is_file() and "shared/data" in spec.read_text())


def test_every_readme_command_has_a_reduced_size():
    cmds = readme_commands((REPO / "README.md").read_text())
    assert len(cmds) >= 10, cmds
    missing = [c for c in cmds if _key(c) not in SHRINK]
    assert not missing, f"README commands without a reduced size in SHRINK: {missing}"


@pytest.fixture
def checkout(tmp_path):
    """tmp/repo (spec/ copied; the working folder) beside tmp/shared/data (a link, when it exists)."""
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "spec", repo / "spec")
    if SHARED.exists():
        (tmp_path / "shared").mkdir()
        (tmp_path / "shared" / "data").symlink_to(SHARED, target_is_directory=True)
    return repo


def _outs(cmds) -> set[str]:
    return {c[c.index("--out") + 1] for c in cmds if "--out" in c}


def _chains(blocks, checkout: Path) -> list[list[list[str]]]:
    """Blocks that read no other block's outputs run side by side; one that does runs after it."""
    chains: list[list[list[str]]] = []
    for cmds in blocks:
        text = " ".join(" ".join(c) for c in cmds)
        text += " ".join((checkout / c[1]).read_text() for c in cmds if (checkout / c[1]).is_file())
        dep = [ch for ch in chains if any(o in text for o in _outs(ch))]
        if dep:
            dep[0].extend(cmds)
        else:
            chains.append(list(cmds))
    return chains


def _run_chain(cmds, checkout: Path) -> list[str]:
    env = {**os.environ, "NEURODSL_PROGRESS_INTERVAL": "1000"}
    for args in cmds:
        if _needs_shared(args, checkout) and not SHARED.exists():
            continue
        r = subprocess.run([str(BIN), *_with_shrink(args)], cwd=checkout, env=env, capture_output=True,
                           text=True, timeout=400)
        if r.returncode:
            return [f"{shlex.join(args)} exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"]
    return []


def test_readme_commands_run_in_order(checkout):
    """Each block's commands in order; independent blocks two at a time.

    About 135 s of CPU in all, about 70 s per lane on two idle cores."""
    from concurrent.futures import ThreadPoolExecutor
    assert BIN.exists(), f"{BIN} is missing: install the package into this environment"
    blocks = readme_blocks((REPO / "README.md").read_text())
    chains = sorted(_chains(blocks, checkout), key=len, reverse=True)  # the longest chain starts first
    assert any(len(ch) >= 6 for ch in chains)  # workflow 2: one chain, stage after stage
    with ThreadPoolExecutor(max_workers=2) as pool:
        errors = [e for errs in pool.map(lambda ch: _run_chain(ch, checkout), chains) for e in errs]
    assert not errors, "\n\n".join(errors)
    assert (checkout / "results" / "student" / "student_report.json").exists()

"""Helpers of the homeostatic / fit-student failure tests: CLI processes, waiting, comparing.

Both test files (test_homeostatic_safety.py, test_student_safety.py) start the real command
(``python -m neurodsl.cli ...``) in a subprocess, signal or kill it while updates remain
(asserting it was still running), resume in-process and compare with an uninterrupted run.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def start(command: str, spec: Path, out: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "neurodsl.cli", command, str(spec), "--out", str(out), *extra]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait(proc: subprocess.Popen, cond, timeout: float = 300) -> None:
    """Until ``cond()``; the process must still be running all the while."""
    t0 = time.time()
    while not cond():
        assert proc.poll() is None, "the run ended before the condition: " + proc.communicate()[0][-3000:]
        assert time.time() - t0 < timeout, "no progress"
        time.sleep(0.02)


def latest(out: Path) -> Path:
    return out / "checkpoints" / "checkpoint_latest.npz"


def done(out: Path) -> int:
    """Updates in the newest readable checkpoint (0 when there is none yet)."""
    from neurodsl.runners.checkpoint import CheckpointError, load_checkpoint
    if not latest(out).exists():
        return 0
    try:
        return int(load_checkpoint(latest(out)).metadata["done"])
    except (CheckpointError, KeyError):
        return 0


def cli(*args: str):
    from click.testing import CliRunner
    from neurodsl.cli import main
    return CliRunner().invoke(main, [str(a) for a in args])


def error_line(result) -> str:
    """The one ``neurodsl: error:`` line of a CLI result that exited 2, with no traceback."""
    text = result.output
    errors = [ln for ln in text.splitlines() if ln.startswith("neurodsl: error")]
    assert result.exit_code == 2 and len(errors) == 1, text[-3000:]
    assert "Traceback" not in text
    return errors[0]


def assert_same_npz(a: Path, b: Path) -> None:
    with np.load(a, allow_pickle=False) as za, np.load(b, allow_pickle=False) as zb:
        assert set(za.files) == set(zb.files)
        for k in za.files:
            if za[k].dtype.kind in "fiub":
                np.testing.assert_array_equal(za[k], zb[k], err_msg=k)


def assert_same_params(a: Path, b: Path) -> None:
    """The checkpoints' parameters (and the metrics without timings) are bit-identical."""
    import json
    from neurodsl.runners.checkpoint import load_checkpoint
    ta, tb = (load_checkpoint(latest(d)).tree for d in (a, b))
    keys = [k for k in ta if k.startswith("['params']")]
    assert keys and keys == [k for k in tb if k.startswith("['params']")]
    for k in keys:
        np.testing.assert_array_equal(ta[k], tb[k], err_msg=k)
    ha, hb = ([{k: v for k, v in r.items() if k != "seconds"} for r in json.loads((d / "metrics.json").read_text())]
              for d in (a, b))
    assert ha == hb


def all_finite(out: Path) -> bool:
    from neurodsl.runners.checkpoint import load_checkpoint
    for p in (out / "checkpoints").glob("*.npz") if (out / "checkpoints").exists() else []:
        tree = load_checkpoint(p).tree
        if not all(np.isfinite(v).all() for v in tree.values() if v.dtype.kind == "f"):
            return False
    return True

"""rnn_fit under failure: SIGTERM and SIGKILL while epochs remain, interrupts during a checkpoint
write, divergence (non-finite loss), corrupt checkpoints on --resume, too few trials per condition.

Each interrupted run is resumed and compared with an uninterrupted run of the same spec: the
training log (without timings) and the final checkpoint must be bit-identical.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from neurodsl.errors import DataError, NeurodslError, SpecError
from neurodsl.runners import checkpoint
from neurodsl.runners.checkpoint import load_checkpoint
from neurodsl.runners.rnn_fit import make_data, prepare_data, run_rnn_fit
from neurodsl.runners.rnn_state import DivergedError
from neurodsl.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
SPEC = """name: tiny
kind: rnn_fit
seed: 3
dt: 25 ms
data: {{file: '{data}'}}
model: {{embedding: {{kind: linear, dim: 8, heads: 2}}, hidden_exc: 2, hidden_inh: 1}}
training: {{learning_rate: 0.03, detail_every: 4, checkpoint_every: {every}, line_every: 1, test_epochs: 3, epochs: 100000,
           early_stopping_patience: 100000}}
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("fs") / "syn.mat", n_exc=4, n_inh=2, n_trials=96, n_time=24,
                     seed=1)[0]


def _spec_file(tmp_path, data, every):
    p = tmp_path / "tiny.yaml"
    p.write_text(SPEC.format(data=data, every=every))
    return p


def _run(spec_path, out, epochs, resume=False, **kw):
    loaded = load_spec(str(spec_path), [f"training.epochs={epochs}"])
    return run_rnn_fit(loaded, out, resume=resume, progress=False, outputs=False, **kw)


def _strip(log):
    return json.dumps([{k: v for k, v in e.items() if k != "epoch_time"} for e in log])


def _assert_same(a: Path, b: Path, sa: dict, sb: dict):
    assert _strip(sa["log"]) == _strip(sb["log"])
    ta = load_checkpoint(a / "checkpoints" / "final.npz").tree
    tb = load_checkpoint(b / "checkpoints" / "final.npz").tree
    assert ta.keys() == tb.keys() and all(np.array_equal(ta[k], tb[k]) for k in ta)


def _logged(out: Path) -> int:
    try:
        return len(json.loads((out / "training_log.json").read_text()))
    except (OSError, ValueError):
        return 0


def _start(spec_path, out):
    cmd = [sys.executable, "-m", "neurodsl.cli", "run", str(spec_path), "--out", str(out)]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait(proc, cond, timeout=120):
    t0 = time.time()
    while not cond():
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.time() - t0 < timeout, "no progress"
        time.sleep(0.05)


def test_sigterm_saves_and_resumes_identically(data, tmp_path):
    spec = _spec_file(tmp_path, data, every=100000)  # no periodic checkpoint: only the signal saves
    out = tmp_path / "run"
    proc = _start(spec, out)
    _wait(proc, lambda: _logged(out) >= 6)
    assert proc.poll() is None  # still training: 100000 epochs remain
    proc.send_signal(signal.SIGTERM)
    text, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, text[-2000:]
    assert "SIGTERM" in text and "--resume" in text
    c = load_checkpoint(out / "checkpoints" / "latest.npz")
    epoch = c.metadata["epoch"]
    assert epoch >= 6 and len(c.metadata["log"]) == epoch == _logged(out)
    resumed = _run(spec, out, epoch + 3, resume=True)
    straight = _run(spec, tmp_path / "straight", epoch + 3)
    _assert_same(out, tmp_path / "straight", resumed, straight)


def test_sigkill_while_epochs_remain_resumes_identically(data, tmp_path):
    spec = _spec_file(tmp_path, data, every=3)
    out = tmp_path / "run"
    proc = _start(spec, out)
    _wait(proc, lambda: (out / "checkpoints" / "latest.npz").exists() and _logged(out) >= 7)
    assert proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    killed_at = _logged(out)
    ck_epoch = load_checkpoint(out / "checkpoints" / "latest.npz").metadata["epoch"]
    assert 3 <= ck_epoch <= killed_at
    resumed = _run(spec, out, killed_at + 4, resume=True)
    straight = _run(spec, tmp_path / "straight", killed_at + 4)
    _assert_same(out, tmp_path / "straight", resumed, straight)
    left = [p.name for d in (out, out / "checkpoints") for p in d.iterdir() if p.name.endswith(".tmp")]
    assert left == []


@pytest.mark.parametrize("how", ["signal", "exception"])
def test_interrupt_inside_checkpoint_write(data, tmp_path, monkeypatch, how):
    """SIGINT arriving during best.npz's write is held until the file is complete; a
    KeyboardInterrupt raised inside the write itself leaves a consistent latest.npz.  Either way
    latest.npz's epoch label matches its state: resuming reproduces the uninterrupted run."""
    spec = _spec_file(tmp_path, data, every=2)
    real = checkpoint.atomic_write_bytes
    hits = []

    def write(path, payload):
        if Path(path).name == "best.npz" and len(hits) == 0 and _logged(tmp_path / "run") >= 2:
            hits.append(path)
            if how == "exception":
                raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
        return real(path, payload)

    monkeypatch.setattr(checkpoint, "atomic_write_bytes", write)
    s = _run(spec, tmp_path / "run", 14)  # val r improves at epochs 1, 11, 12 (and stops at 11)
    monkeypatch.setattr(checkpoint, "atomic_write_bytes", real)
    assert hits and s["interrupted"]
    c = load_checkpoint(tmp_path / "run" / "checkpoints" / "latest.npz")
    assert c.metadata["epoch"] == s["epoch"] == len(s["log"]) < 14
    if how == "signal":  # the held write completed: best.npz is the epoch that was being saved
        assert load_checkpoint(tmp_path / "run" / "checkpoints" / "best.npz").metadata["epoch"] == s["epoch"]
    resumed = _run(spec, tmp_path / "run", 14, resume=True)
    straight = _run(spec, tmp_path / "straight", 14)
    _assert_same(tmp_path / "run", tmp_path / "straight", resumed, straight)
    assert [e["epoch"] for e in c.metadata["log"]] == list(range(1, s["epoch"] + 1))


def test_divergence_stops_with_one_line_error(data, tmp_path):
    spec = _spec_file(tmp_path, data, every=2)
    out = tmp_path / "run"
    with pytest.raises(DivergedError, match="diverged at epoch") as e:
        run_rnn_fit(load_spec(str(spec), ["training.epochs=30", "training.learning_rate=1e6"]), out,
                    progress=False)
    assert isinstance(e.value, NeurodslError) and "\n" not in str(e.value)
    assert "training.learning_rate" in str(e.value)
    assert not (out / "fit.nc").exists() and not (out / "checkpoints" / "final.npz").exists()
    log = json.loads((out / "training_log.json").read_text()) if (out / "training_log.json").exists() else []
    assert all(np.isfinite(x["train_loss"]) and np.isfinite(x["val_loss"]) for x in log)
    for p in (out / "checkpoints").glob("*.npz") if (out / "checkpoints").exists() else []:
        tree = load_checkpoint(p).tree
        assert all(np.isfinite(v).all() for v in tree.values() if v.dtype.kind == "f"), p.name


def test_divergence_cli_exit_2(data, tmp_path):
    spec = _spec_file(tmp_path, data, every=2)
    p = subprocess.run([sys.executable, "-m", "neurodsl.cli", "run", str(spec), "--out", str(tmp_path / "o"),
                        "--set", "training.learning_rate=1e6", "--set", "training.epochs=30"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr[-2000:]
    errors = [ln for ln in p.stderr.splitlines() if "error" in ln]
    assert len(errors) == 1 and "diverged" in errors[0] and "Traceback" not in p.stderr


def test_resume_from_corrupt_latest_warns_and_matches(data, tmp_path):
    spec = _spec_file(tmp_path, data, every=2)
    out = tmp_path / "run"
    _run(spec, out, 4)
    ck = out / "checkpoints"
    (ck / "latest.npz").write_bytes(b"truncated")
    (out / "training_log.json").write_text("[{")  # the log comes from the checkpoint
    with pytest.warns(UserWarning, match="latest.npz.*resuming from .*latest.prev.npz"):
        _run(spec, out, 6, resume=True)
    (ck / "latest.npz").write_bytes(b"truncated")
    (ck / "latest.prev.npz").write_bytes(b"junk")
    with pytest.warns(UserWarning, match="resuming from .*epoch_00006.npz"):
        resumed = _run(spec, out, 8, resume=True)
    straight = _run(spec, tmp_path / "straight", 8)
    _assert_same(out, tmp_path / "straight", resumed, straight)
    with pytest.raises(SpecError, match=r"differs from the checkpoint's at model\.noise"):
        run_rnn_fit(load_spec(str(spec), ["training.epochs=9", "model.noise=0.3"]), out, resume=True,
                    progress=False, outputs=False)


def test_best_npz_matches_the_reported_best_after_a_shorter_resume(data, tmp_path):
    """Killed after best.npz got a newer epoch than latest.npz, then resumed with fewer epochs:
    best.npz must hold the best epoch the run reports, not the orphaned newer one."""
    spec = _spec_file(tmp_path, data, every=2)
    out = tmp_path / "run"
    full = _run(spec, out, 12)  # val r improves at epochs 1, 11 and 12
    ck = out / "checkpoints"
    assert full["best_epoch"] == 12
    os.replace(ck / "epoch_00010.npz", ck / "latest.npz")  # as if killed during epochs 11-12
    for name in ("latest.prev.npz", "epoch_00012.npz"):
        (ck / name).unlink()
    s = _run(spec, out, 10, resume=True)
    assert s["best_epoch"] == 1
    b = load_checkpoint(ck / "best.npz")
    assert b.metadata["epoch"] == 1
    _run(spec, tmp_path / "one", 1)
    want = load_checkpoint(tmp_path / "one" / "checkpoints" / "best.npz").tree
    assert all(np.array_equal(b.tree[k], want[k]) for k in want)


def test_too_few_training_trials_per_condition_fails_before_training(data, tmp_path):
    spec = _spec_file(tmp_path, data, every=2)
    with pytest.raises(DataError, match="fewer than 2 training trials") as e:
        prepare_data(load_spec(str(spec), ["data.max_trials=20"]))
    assert e.value.field == "data.max_trials"


def test_fresh_run_removes_the_old_results_before_anything_else(data, tmp_path, monkeypatch):
    """--force on a finished run's folder: its fit.nc / report / log go before its checkpoints, so a
    run stopped right at the start leaves no results that the new spec.yaml would mislabel."""
    from neurodsl.runners import rnn_fit
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "latest.npz").write_bytes(b"old")
    for name in rnn_fit.RESULT_FILES:
        (out / name).write_text("old run")

    def stop(_loaded):
        raise KeyboardInterrupt
    monkeypatch.setattr(rnn_fit, "prepare_data", stop)
    with pytest.raises(KeyboardInterrupt):
        _run(_spec_file(tmp_path, data, 2), out, epochs=2)
    assert sorted(p.name for p in out.iterdir()) == []
    with pytest.raises(KeyboardInterrupt):  # a resume keeps them (they are the run it continues)
        (out / "fit.nc").write_text("old run")
        _run(_spec_file(tmp_path, data, 2), out, epochs=2, resume=True)
    assert (out / "fit.nc").exists()

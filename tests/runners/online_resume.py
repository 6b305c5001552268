"""Helper of the online-method resume tests (test_eprop_homeostatic.py, test_student_eprop.py).

A run of 3 updates against a run stopped after 1 (its checkpoint must hold non-zero eligibility
traces) and resumed for 2: the final checkpoints and the metrics logs (but their wall times) must
be identical, and the loss must have changed over the 3 updates.
"""
from __future__ import annotations

import json

import numpy as np


def assert_online_resume_bit_identical(make_setup, tmp_path, min_traces: int) -> None:
    from neurodsl.runners.checkpoint import load_checkpoint
    from neurodsl.runners.spiking_train import train
    full, part = tmp_path / "full", tmp_path / "part"
    train(make_setup(), full, progress=False, max_updates=3)
    train(make_setup(), part, progress=False, max_updates=1)
    tree = load_checkpoint(part / "checkpoints" / "checkpoint_latest.npz").tree
    traces = [np.asarray(v) for k, v in tree.items() if "traces" in k]
    assert len(traces) >= min_traces and any(np.abs(t).sum() > 0 for t in traces)
    train(make_setup(), part, resume=True, progress=False, max_updates=2)
    a = load_checkpoint(full / "checkpoints" / "checkpoint_latest.npz").tree
    b = load_checkpoint(part / "checkpoints" / "checkpoint_latest.npz").tree
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)
    ha, hb = ([{k: v for k, v in r.items() if k != "seconds"} for r in json.loads((d / "metrics.json").read_text())]
              for d in (full, part))
    assert ha == hb and len(ha) == 3 and ha[0]["loss"] != ha[-1]["loss"]

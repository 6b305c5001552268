"""kind fit: shipped fit specs run (shortened), resume is bit-identical, training moves rates toward targets."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from neurodsl.errors import SpecError
from neurodsl.spec import load_spec, load_spec_text
from neurodsl.runners.fit import run_fit

REPO = Path(__file__).resolve().parents[2]
FIT_SPECS = sorted(p for p in (REPO / "spec").glob("*.yaml") if "kind: fit" in p.read_text())

SHORT = ["duration=60 ms", "trials=1", "training.chunk=10 ms", "training.chunks_per_update=2",
         "training.warmup=10 ms", "training.epochs=1", "training.updates_per_epoch=2"]


def _small(path: Path) -> list[str]:
    """Shrink every population to at most 200 neurons (structure as declared)."""
    import yaml
    pops = yaml.safe_load(path.read_text())["populations"]
    return [f"populations.{k}.size={min(v['size'], 200)}" for k, v in pops.items()]


@pytest.mark.parametrize("path", FIT_SPECS, ids=lambda p: p.stem)
def test_shipped_fit_specs_run_shortened(path, tmp_path):
    assert {"coba_tuned", "three_pop"} <= {p.stem for p in FIT_SPECS}
    summary = run_fit(load_spec(path, SHORT + _small(path)), tmp_path, progress=False)
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["populations"].keys() == summary["populations"].keys()
    for name, row in on_disk["populations"].items():
        assert np.isfinite(row["rate_hz"]) and row["target_hz"] > 0, name
    assert (tmp_path / "params.npz").exists() and (tmp_path / "figures" / "training.png").exists()
    hist = json.loads((tmp_path / "metrics.json").read_text())
    assert len(hist) == 2 and all(np.isfinite(r["loss"]) for r in hist)


TINY = """
name: tiny_fit
kind: fit
seed: 1
dt: 0.5 ms
duration: 200 ms
trials: 2
populations:
  E: {size: 40, cell_type: E, neuron: {model: lif_cond, tau_m: 10 ms, g_L: 10 nS, E_L: -60 mV,
                                       V_th: -50 mV, V_reset: -60 mV, t_ref: 2 ms}}
receptors:
  ampa: {kind: exp, tau_decay: 3 ms, E_rev: 0 mV}
inputs:
  bg: {kind: poisson, size: 50, rate: 20 Hz}
projections:
  - {pre: bg, post: E, receptor: ampa, weight: 1 nS, connectivity: {kind: fixed_indegree, k: 20},
     trainable: {param: scale, bounds: [0.05, 20]}}
  - {pre: E, post: E, receptor: ampa, weight: 0.5 nS, delay: 1 ms, connectivity: {kind: bernoulli, p: 0.2},
     trainable: {param: weight, sigma: 0.1}}
objectives:
  - {kind: rate, population: E, target: 30 Hz}
training: {learning_rate: 0.1, momentum: 0.5, batch: 2, chunk: 25 ms, chunks_per_update: 2, epochs: 2,
           updates_per_epoch: 4, checkpoint_interval: 1}
"""


def test_resume_is_bit_identical(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    run_fit(load_spec_text(TINY), full, progress=False)
    run_fit(load_spec_text(TINY), part, progress=False, max_updates=3)   # stops with work left
    assert len(json.loads((part / "metrics.json").read_text())) == 3
    run_fit(load_spec_text(TINY), part, resume=True, progress=False)
    a, b = np.load(full / "params.npz"), np.load(part / "params.npz")
    assert set(a.files) == set(b.files)
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k])
    ha = [{k: v for k, v in r.items() if k != "seconds"} for r in json.loads((full / "metrics.json").read_text())]
    hb = [{k: v for k, v in r.items() if k != "seconds"} for r in json.loads((part / "metrics.json").read_text())]
    assert ha == hb and len(ha) == 8


def test_resume_with_another_spec_names_the_key(tmp_path):
    run_fit(load_spec_text(TINY), tmp_path, progress=False, max_updates=1)
    with pytest.raises(SpecError, match="training.learning_rate"):
        run_fit(load_spec_text(TINY, overrides=["training.learning_rate=0.2"]), tmp_path, resume=True,
                progress=False)


def test_a_fresh_run_never_resumes_the_old_one(tmp_path, monkeypatch):
    """--force (any run without --resume) is a fresh run: killed before its first checkpoint, a
    --resume must not continue the earlier run's checkpoint, and no earlier final output remains."""
    import neurodsl.runners.fit as F
    run_fit(load_spec_text(TINY), tmp_path, progress=False, max_updates=2)
    assert (tmp_path / "checkpoints" / "checkpoint_latest.npz").exists() and (tmp_path / "summary.json").exists()

    def killed(*a, **k):
        raise SystemExit(137)  # the new run dies before its first checkpoint
    monkeypatch.setattr(F, "train", killed)
    new = ["training.learning_rate=0.2"]
    with pytest.raises(SystemExit):
        run_fit(load_spec_text(TINY, overrides=new), tmp_path, progress=False)
    assert not (tmp_path / "summary.json").exists() and not (tmp_path / "params.npz").exists()
    monkeypatch.undo()
    with pytest.raises(SpecError, match="no usable checkpoint"):
        run_fit(load_spec_text(TINY, overrides=new), tmp_path, resume=True, progress=False)


def test_training_moves_the_rate_to_its_target(tmp_path):
    s = run_fit(load_spec_text(TINY, overrides=["training.epochs=4", "training.updates_per_epoch=10",
                                                 "training.checkpoint_interval=50"]), tmp_path, progress=False)
    hist = json.loads((tmp_path / "metrics.json").read_text())
    first, row = hist[0]["rate_E"], s["populations"]["E"]
    assert abs(first - 30) > 10          # it starts far from the target ...
    assert row["relative_error"] < 0.15, row   # ... and the event-driven simulation of the result is close


@pytest.mark.parametrize("change, field", [
    (["objectives[0].population=X"], "objectives[0].population"),
    (["projections[0].trainable=null", "projections[1].trainable=null"], "projections"),
    (["training.chunk=0.3 ms"], "training.chunk"),
    (["projections[1].trainable.bounds=[2, 3]"], "bounds"),
])
def test_bad_fit_specs_are_located_errors(change, field):
    with pytest.raises(SpecError) as e:
        load_spec_text(TINY, overrides=change)
    assert field in e.value.one_line()


@pytest.mark.parametrize("b2, optimizer", [(0.5, "adam"), (0.999, "adam"), (0.5, "optimistic_adam")])
def test_adam_b2_and_optimizer_are_the_optimisers(b2, optimizer):
    """The second step after gradients 10 then 1, against the bias-corrected formula by hand
    (b1 = training.momentum, b2 = training.adam_b2): lower b2 forgets the first, large gradient;
    optimistic_adam adds the change of its direction r (step -lr (2 r_2 - r_1))."""
    import jax.numpy as jnp
    from neurodsl.runners.fit import FitTrainer
    tr = FitTrainer(load_spec_text(TINY, overrides=[f"training.adam_b2={b2}", "training.momentum=0.5",
                                                    f"training.optimizer={optimizer}",
                                                    "training.grad_clip=1000", "training.learning_rate=0.1"]).spec)
    p = {"w": jnp.zeros(())}
    state = tr.optimizer.init(p)
    for g in (10.0, 1.0):
        step, state = tr.optimizer.update({"w": jnp.asarray(g)}, state, p)
    b1, m, v = 0.5, 0.5 * 0.5 * 10 + 0.5 * 1, b2 * (1 - b2) * 100 + (1 - b2) * 1
    if optimizer == "adam":
        expected = -0.1 * (m / (1 - b1 ** 2)) / (np.sqrt(v / (1 - b2 ** 2)) + 1e-8)
    else:  # optax's optimistic Adam: Nesterov moments, step -lr (2 r_2 - r_1)
        r1 = (b1 * 5 / (1 - b1 ** 2) + (1 - b1) * 10 / (1 - b1)) / 10
        r2 = (b1 * m / (1 - b1 ** 3) + (1 - b1) * 1 / (1 - b1 ** 2)) / np.sqrt(v / (1 - b2 ** 2))
        expected = -0.1 * (2 * r2 - r1)
    np.testing.assert_allclose(float(step["w"]), expected, rtol=1e-5)

"""rnn_fit's training state on disk: what a checkpoint holds, how a run resumes, when it stops.

One checkpoint file (``latest.npz``, ``epoch_NNNNN.npz``, ``final.npz``) holds the
whole committed state of a run, so its parts can never disagree: the optimiser
state *and* the best parameters (tree ``{"state", "best_params"}``), and in its
metadata the epoch they are from, the best epoch / correlation and the training
log up to that epoch.  ``best.npz`` is a convenience copy of the best parameters
(labelled with their epoch), rewritten on completion so that it always matches
the report.  :func:`resume_run` takes the newest intact candidate among
``latest.npz``, its ``.prev`` and the periodic ``epoch_*.npz`` files and says on
the console (a warning) when that is not ``latest.npz``.  :func:`check_finite`
stops a diverging run (:class:`DivergedError`, a one-line user error) before
anything non-finite is kept.
"""
from __future__ import annotations

import hashlib
import json
import re
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from neurodsl.errors import Location, NeurodslError, SpecError

from .checkpoint import CheckpointError, load_checkpoint, numpy_rng_state, save_checkpoint

_EPOCH_FILE = re.compile(r"^epoch_(\d+)\.npz$")


class DivergedError(NeurodslError):
    """Training produced a non-finite loss or non-finite parameters."""


def evaluated(state: dict) -> dict:
    """The parameters that are validated and written out: the moving average when
    ``training.weight_average`` keeps one (``state["avg"]``), else the optimiser's parameters."""
    return state.get("avg", state["params"])


@dataclass(frozen=True)
class FitRun:
    """The committed state after ``epoch`` epochs (replaced as a whole, never edited in place)."""

    epoch: int
    state: dict
    log: tuple
    best: dict  # corr, epoch, since, params

    @classmethod
    def fresh(cls, state0: dict) -> "FitRun":
        return cls(0, state0, (), {"corr": -np.inf, "epoch": 0, "since": 0, "params": state0["params"]})

    def advance(self, epoch: int, state: dict, entry: dict) -> "FitRun":
        corr = entry["val_correlation"]
        if np.isfinite(corr) and corr > self.best["corr"]:
            best = {"corr": corr, "epoch": epoch, "since": 0, "params": evaluated(state)}
        else:
            best = {**self.best, "since": self.best["since"] + 1}
        return replace(self, epoch=epoch, state=state, log=self.log + (entry,), best=best)

    @property
    def improved(self) -> bool:
        return self.epoch > 0 and self.best["epoch"] == self.epoch


class Saver:
    """Writes ``FitRun`` checkpoints into ``ck`` with the spec's fingerprint."""

    def __init__(self, ck: Path, fingerprint: str, spec_dict: dict, seed: int, name: str):
        self.ck, self.fp, self.spec_dict, self.seed, self.name = Path(ck), fingerprint, spec_dict, seed, name

    def _meta(self, run: FitRun) -> dict:
        return {"epoch": run.epoch, "best_corr": run.best["corr"], "best_epoch": run.best["epoch"],
                "since_best": run.best["since"], "fingerprint": self.fp, "spec_name": self.name,
                "spec": self.spec_dict, "log": list(run.log)}

    def save(self, name: str, run: FitRun) -> Path:
        tree = {"state": run.state, "best_params": run.best["params"]}
        return save_checkpoint(self.ck / name, tree, self._meta(run),
                               numpy_rng_state(np.random.default_rng(self.seed)))

    def best(self, run: FitRun) -> Path | None:
        if not run.best["epoch"]:
            return None
        meta = {"epoch": run.best["epoch"], "val_correlation": run.best["corr"], "fingerprint": self.fp}
        return save_checkpoint(self.ck / "best.npz", run.best["params"], meta)


def _candidates(ck: Path, like) -> tuple[list, list[str]]:
    """Readable checkpoints: latest (or its .prev) and the newest intact epoch_*.npz."""
    found, errors = [], []
    try:
        found.append(load_checkpoint(ck / "latest.npz", like=like))
    except CheckpointError as e:
        errors.append(str(e))
    periodic = sorted((int(m[1]), p) for p in ck.glob("epoch_*.npz") if (m := _EPOCH_FILE.match(p.name)))
    for _, p in reversed(periodic):
        try:
            found.append(load_checkpoint(p, like=like))
            break
        except CheckpointError as e:
            errors.append(str(e))
    return found, errors


def resume_run(ck: Path, state0: dict, fingerprint: str, spec_dict: dict, loaded) -> FitRun:
    """The newest intact checkpoint's run; a warning when it is not ``latest.npz``."""
    like = {"state": state0, "best_params": state0["params"]}
    found, errors = _candidates(ck, like)
    if not found:
        raise SpecError(f"--resume: no usable checkpoint in {ck} ({'; '.join(errors) or 'empty'})",
                        field="--resume", expected="a previous run of this spec in --out")
    c = max(found, key=lambda c: c.metadata["epoch"])
    if c.path.name != "latest.npz":
        why = next((e for e in errors if "latest" in e), f"{ck / 'latest.npz'} is older")
        warnings.warn(f"--resume: {why}; resuming from {c.path} (epoch {c.metadata['epoch']})", stacklevel=2)
    m = c.metadata
    if m.get("fingerprint") != fingerprint:
        key = _first_difference(m.get("spec"), spec_dict)
        raise SpecError("--resume: the spec differs from the checkpoint's" + (f" at {key}" if key else "")
                        + " (only training.epochs and logging intervals may change)", field="--resume",
                        location=Location(loaded.path))
    best = {"corr": m["best_corr"], "epoch": m["best_epoch"], "since": m["since_best"],
            "params": c.tree["best_params"]}
    return FitRun(m["epoch"], c.tree["state"], tuple(m["log"]), best)


def _first_difference(old, new) -> str | None:
    if not isinstance(old, dict):
        return None
    try:
        from neurodsl.spec.loader import first_difference
    except ImportError:  # pragma: no cover - older loader
        return None
    return first_difference(old, new)


def check_finite(entry: dict, state: dict, run: FitRun, loaded) -> None:
    """Raise :class:`DivergedError` when epoch ``entry['epoch']`` left a non-finite loss or parameter."""
    import jax
    bad = [k for k in ("train_loss", "val_loss") if not np.isfinite(entry[k])]
    leaves = jax.tree_util.tree_leaves(jax.device_get(state["params"]))
    if not all(np.isfinite(np.asarray(x)).all() for x in leaves):
        bad.append("parameters")
    if not bad:
        return
    lr = loaded.spec.training.learning_rate
    kept = (f"training_log.json ends at epoch {run.epoch}, checkpoints at or before it" if run.epoch
            else "no results written")
    raise DivergedError(
        f"training diverged at epoch {entry['epoch']}: non-finite {', '.join(bad)}; stopped, nothing "
        f"non-finite kept ({kept})",
        field="training.learning_rate", expected=f"a smaller learning rate than {lr:g}",
        location=Location(loaded.path))


def fingerprint_dict(loaded) -> dict:
    """The spec as a checkpoint records it: what changes the fit (run length and outputs excluded)."""
    d = loaded.spec.model_dump(mode="json")
    for k in ("epochs", "test_epochs", "early_stopping_patience", "checkpoint_every", "detail_every", "line_every"):
        d["training"].pop(k, None)
    d["outputs"] = None
    if d["model"]["observation"] == "none" and not d["training"]["losses"]["lambda_obs"]:  # older checkpoints resume
        del d["model"]["observation"], d["training"]["losses"]["lambda_obs"]
    d["data"] = {k: v for k, v in d["data"].items() if v or k not in ("fields", "nwb")}  # older checkpoints resume
    if not d["training"]["weight_average"]:  # older checkpoints resume
        del d["training"]["weight_average"]
    return d


def fingerprint(loaded) -> str:
    return hashlib.sha256(json.dumps(fingerprint_dict(loaded), sort_keys=True).encode()).hexdigest()

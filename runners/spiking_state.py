"""The spiking engine's training state on disk (homeostatic, student), as :mod:`.rnn_state` is rnn_fit's.

One checkpoint file (``checkpoint_latest.npz``; ``checkpoint_best.npz`` has the same layout)
holds the whole committed state of a run, so its parts cannot disagree: the tree
``{"params", "opt_state", "carry", "best_params"}`` and, in its metadata, the epoch/update
position, the loss history up to it, the best loss, the step scale of divergence retries and
the spec record (:func:`spec_record`).  :func:`check_resume` compares that record with the spec
of a ``--resume`` before anything is written and names the first key that differs
(:func:`neurodsl.spec.loader.first_difference`); a fresh run clears ``checkpoints/``
(:func:`start_fresh`), so ``--force`` never leaves an old run to resume.  A non-finite loss or
parameter raises :class:`~.rnn_state.DivergedError` (one line, exit 2) once the retries of
``training.divergence_retries`` are spent; nothing non-finite is ever saved.
"""
from __future__ import annotations

import json
import shutil
import sys
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

from neurodsl.errors import Location, SpecError

from .checkpoint import CheckpointError, load_checkpoint
from .rnn_state import DivergedError

# training keys a --resume may change (the trajectory up to the checkpoint does not depend on them)
FREE_TRAINING_KEYS = ("epochs", "checkpoint_interval", "log_interval", "plot_interval", "keep_figures",
                      "divergence_retries")
LATEST = "checkpoint_latest.npz"


def spec_record(spec) -> dict:
    """The spec as JSON, less what a resume may change (FREE_TRAINING_KEYS, tracking)."""
    d = json.loads(json.dumps(spec.model_dump(mode="json")))
    for k in FREE_TRAINING_KEYS:
        d.get("training", {}).pop(k, None)
    d.pop("tracking", None)
    tr = d.get("training", {})
    if d.get("kind") in ("homeostatic", "student") and tr.get("method") == "bptt" and not tr.get("kappa"):
        tr.pop("method"), tr.pop("kappa", None)  # added there 2026-12-02: older checkpoints resume
    if d.get("kind") == "fit" and not any((tr.get("online") or {}).values()):
        tr.pop("online", None)                   # added 2026-12-02: older checkpoints resume
    return d


@dataclass(frozen=True)
class SpikingRun:
    """The committed state after ``done`` updates (replaced as a whole, never edited in place)."""

    params: dict
    opt_state: object
    carry: dict
    epoch: int = 0
    upd: int = 0
    done: int = 0
    history: tuple = ()
    best: float = float("inf")
    best_params: dict | None = None
    step_scale: float = 1.0
    retries: int = 0

    def tree(self) -> dict:
        return {"params": self.params, "opt_state": self.opt_state, "carry": self.carry,
                "best_params": self.params if self.best_params is None else self.best_params}

    def meta(self, name: str, record: dict | None) -> dict:
        return {"epoch": self.epoch, "update": self.upd, "done": self.done, "history": list(self.history),
                "best_loss": self.best, "step_scale": self.step_scale, "retries": self.retries,
                "name": name, "spec": record}

    @classmethod
    def from_checkpoint(cls, tree: dict, m: dict) -> "SpikingRun":
        return cls(tree["params"], tree["opt_state"], tree["carry"], m["epoch"], m["update"], m["done"],
                   tuple(m["history"]), m["best_loss"], tree["best_params"], m.get("step_scale", 1.0),
                   m.get("retries", 0))


def _loc(spec_path) -> Location:
    return Location(str(spec_path)) if spec_path else Location()


def resume_path(out: Path, resume) -> Path:
    return Path(out) / "checkpoints" / LATEST if resume is True else Path(resume)


def _load(path: Path, like=None):
    try:
        ck = load_checkpoint(path, like=like)
    except CheckpointError as e:
        raise SpecError(f"--resume: no usable checkpoint ({e})", field="--resume",
                        expected="the --out folder of an earlier run of this spec") from None
    return ck


def check_spec(meta: dict, record: dict | None, spec_path=None) -> None:
    """SpecError naming the first differing key when the checkpoint's spec is not ``record``."""
    if record is None:
        return
    old = meta.get("spec")
    if old == record:
        return
    from neurodsl.spec.loader import first_difference
    key = first_difference(old, record) if isinstance(old, dict) else None
    if isinstance(old, dict) and key is None:
        return
    where = f" at {key}" if key else " (the checkpoint has no spec record)"
    raise SpecError(f"--resume: the spec differs from the checkpoint's{where} (only training.epochs and "
                    "logging intervals may change)", field="--resume", location=_loc(spec_path),
                    expected="the spec of the run in --out, or a fresh run (--force)")


def check_resume(out: Path, resume, record: dict, spec_path=None) -> None:
    """Before a ``--resume`` writes anything: a readable checkpoint of the same spec must exist."""
    check_spec(_load(resume_path(out, resume)).metadata, record, spec_path)


def start_fresh(out: Path) -> None:
    """A run that does not resume starts with no checkpoints (``--force`` means a fresh run)."""
    ck = Path(out) / "checkpoints"
    if ck.exists():
        shutil.rmtree(ck)


def load_run(out: Path, resume, template: SpikingRun, record: dict | None, spec_path=None) -> SpikingRun:
    path = resume_path(out, resume)
    ck = _load(path, like=template.tree())
    if ck.path != path:
        warnings.warn(f"{path} is unreadable; resuming from the previous checkpoint {ck.path}", stacklevel=2)
    check_spec(ck.metadata, record, spec_path)
    return SpikingRun.from_checkpoint(ck.tree, ck.metadata)


def diverged(run: SpikingRun, saved: SpikingRun, row: dict, training, spec_path=None) -> SpikingRun:
    """The run to continue from after update ``row['update']`` went non-finite: ``saved`` (the last
    checkpoint) with a smaller step, or :class:`DivergedError` when no retry is left."""
    what = [k for k in ("loss", "parameters") if not row[f"finite_{k}"]]
    at = f"update {row['update']}: non-finite {' and '.join(what)}"
    if saved.retries < training.divergence_retries:
        nxt = replace(saved, step_scale=saved.step_scale * training.retry_step_factor, retries=saved.retries + 1)
        print(f"neurodsl: warning: training diverged at {at}; retry {nxt.retries} of "
              f"{training.divergence_retries} from update {saved.done} with the step x{nxt.step_scale:g}",
              file=sys.stderr, flush=True)
        return nxt
    tries = f" after {saved.retries} retries with smaller steps" if saved.retries else ""
    kept = f"the last checkpoint is of update {saved.done}" if saved.done else "no trained state checkpointed"
    raise DivergedError(f"training diverged at {at}; stopped{tries}, nothing non-finite kept ({kept})",
                        field="training.learning_rate",
                        expected=f"a smaller learning rate than {training.learning_rate:g}",
                        location=_loc(spec_path))


def clear_outputs(out: Path, names) -> None:
    """Final artefacts of an earlier run go before training starts: they are written again only
    when this run completes, so a folder never holds results that its checkpoints do not match."""
    for n in names:
        (Path(out) / n).unlink(missing_ok=True)


def prepare_run(loaded, out: Path, resume, outputs) -> dict:
    """Start of a homeostatic / student run, before anything is written: a resume is checked
    against the checkpoint's spec; the previous final ``outputs`` are removed, then a fresh run
    clears ``checkpoints/`` (in this order, so a kill in between leaves the old run's checkpoints
    without outputs -- an interrupted run -- never old outputs without their run).  Returns the
    spec record for :class:`~.spiking_train.TrainSetup`."""
    record = spec_record(loaded.spec)
    if resume:
        check_resume(out, resume, record, loaded.path)
    clear_outputs(out, outputs)
    if not resume:
        start_fresh(out)
    return record


def interrupted(loaded, out: Path, command: str, res, total: int) -> dict:
    """Say how to continue (like rnn_fit) and return the summary of an interrupted run."""
    import shlex
    sets = "".join(f" --set {shlex.quote(o)}" for o in loaded.overrides)
    print(f"\ninterrupted ({res.signal}): state after update {res.updates} of {total} saved to "
          f"{Path(out) / 'checkpoints' / LATEST} (continue: neurodsl {command} {loaded.path or 'SPEC'}{sets} "
          f"--out {out} --resume); final outputs are written only when training completes", flush=True)
    return {"name": loaded.spec.name, "interrupted": True, "signal": res.signal, "updates": res.updates,
            "out_dir": str(out)}

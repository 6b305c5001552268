"""Generic truncated-BPTT training engine for surrogate-gradient spiking networks.

:func:`train` runs ``epochs`` x ``updates_per_epoch`` Adam updates (global-norm
clipping, optax).  An update simulates ``chunks_per_update`` chunks of
``chunk_size`` steps for a batch of trials; each chunk is differentiated with the
state entering it detached (``stop_gradient``), the chunk gradients are summed
and averaged, and one optimiser step is taken -- all inside one jitted function.
The neuron state carries over from update to update and restarts at every epoch
(``setup.initial_V(epoch)``).  Loss terms: :mod:`neurodsl.runners.spiking_losses`.

Data come from ``setup.provider(epoch, update)`` -> ``{"inputs": (C, T, B, n_in),
"teacher": (C, T, B, N) | absent}`` (numpy, teacher in the model's core order, see
``LossContext.teacher_forcing``); providers derive their randomness from ``(seed, epoch, update)``, so the
training position *is* the RNG state and a resumed run draws the same data.

Outputs in ``out_dir``: ``checkpoints/checkpoint_latest.npz`` (every
``checkpoint_interval`` updates and at exit, including SIGINT/SIGTERM) and
``checkpoints/checkpoint_best.npz`` (lowest update loss) via
:mod:`neurodsl.runners.checkpoint` (atomic, checksummed, a corrupt newest file
falls back to the previous one); ``metrics.csv`` / ``metrics.json`` (one row per
update); ``figures/epoch_XXXX/`` (newest ``keep_figures`` kept); optional wandb
(``tracking.wandb.mode``).  Checkpoints hold the parameters, the optimiser
state, the neuron + tracker state, the epoch/update position, the loss history,
the best loss and the RNG position, so ``resume`` continues bit-identically.
"""
from __future__ import annotations

import csv
import json
import shutil
import signal
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from neurodsl.errors import SpecError

from . import spiking_losses as SL
from .checkpoint import CheckpointError, atomic_write_text, load_checkpoint, save_checkpoint


@dataclass
class TrainSetup:
    model: object                        # neurodsl.compile.olfactory_train.OlfactoryTrainModel
    params: dict                         # initial free parameters
    ctx: SL.LossContext
    weights: dict[str, float]            # loss weights
    provider: Callable[[int, int], dict]
    initial_V: Callable[[int], np.ndarray]  # epoch -> (B, N) internal order
    updates_per_epoch: int
    training: object                     # spec TrainingSpec
    tracking: object = None              # spec TrackingSpec
    seed: int = 0
    name: str = "train"
    describe: dict = field(default_factory=dict)  # extra run info for the console header


@dataclass
class TrainResult:
    params: dict
    history: list[dict]
    best_loss: float
    best_params: dict
    interrupted: bool
    updates: int
    seconds_per_update: float


def make_optimizer(training, total_updates: int = 1):
    import optax
    lr = training.learning_rate
    if training.lr_final_fraction < 1.0:
        lr = optax.cosine_decay_schedule(lr, max(total_updates, 1), alpha=training.lr_final_fraction)
    return optax.chain(optax.clip_by_global_norm(training.grad_clip), optax.adam(lr))


def make_update(setup: TrainSetup, optimizer):
    """jit(update(params, opt_state, carry, data) -> params, opt_state, carry, metrics)."""
    import jax
    import jax.numpy as jnp
    import optax

    loss_fn = SL.make_chunk_loss(setup.model, setup.ctx, setup.weights)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    ctx = setup.ctx

    def update(params, opt_state, carry, data):
        carry = {**carry, "obs": SL.reset_window(carry["obs"])}

        def body(acc, d):
            g_acc, c = acc
            (tot, (c, parts, spikes)), g = grad_fn(params, jax.lax.stop_gradient(c), d)
            return (jax.tree_util.tree_map(jnp.add, g_acc, g), c), (tot, parts)

        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        (grads, carry), (tots, parts) = jax.lax.scan(body, (zeros, carry), data)
        n_chunks = tots.shape[0]
        grads = jax.tree_util.tree_map(lambda g: g / n_chunks, grads)
        gnorm = optax.global_norm(grads)
        upd, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, upd)
        stats = SL.type_stats(ctx, carry["obs"])
        metrics = {"loss": tots.mean(), "grad_norm": gnorm, **{f"loss_{k}": v.mean() for k, v in parts.items()},
                   "rate_E": stats["rate"][0], "rate_I": stats["rate"][1], "cv_E": stats["cv"][0],
                   "cv_I": stats["cv"][1], "active_fraction": stats["active"],
                   "neuron_rate": SL.neuron_rates(ctx, carry["obs"])}
        return params, opt_state, carry, metrics

    return jax.jit(update)


def initial_carry(setup: TrainSetup, epoch: int) -> dict:
    V0 = np.asarray(setup.initial_V(epoch))
    return {"model": setup.model.init_state(V0), "obs": SL.init_obs(V0.shape[0], V0.shape[1], setup.model.dtype)}


# ----------------------------------------------------------------------------- tracking
class _Wandb:
    def __init__(self, tracking, name: str, config: dict, out: Path):
        mode = tracking.wandb.mode if tracking is not None else "disabled"
        self.run = None
        if mode == "disabled":
            return
        try:
            import wandb
        except ImportError:
            raise SpecError("tracking.wandb.mode is %r but wandb is not installed" % mode,
                            field="tracking.wandb.mode",
                            expected="`pip install neurodsl[wandb]`, or mode: disabled") from None
        self.run = wandb.init(project=tracking.wandb.project, entity=tracking.wandb.entity, mode=mode,
                              name=name, config=config, dir=str(out))

    def log(self, row: dict):
        if self.run is not None:
            self.run.log(row, step=row["update"])

    def finish(self):
        if self.run is not None:
            self.run.finish()


def write_metrics(out: Path, history: list[dict]) -> None:
    if not history:
        return
    keys = list(dict.fromkeys(k for row in history for k in row))
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".metrics.csv.tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(history)
    tmp.replace(out / "metrics.csv")
    atomic_write_text(out / "metrics.json", json.dumps(history, indent=1))


def console_block(row: dict, total: int) -> str:
    losses = "  ".join(f"{k[5:]} {v:.4g}" for k, v in row.items() if k.startswith("loss_"))
    return (f"update {row['update']:5d}/{total}  epoch {row['epoch']}  loss {row['loss']:.5g}  [{losses}]\n"
            f"    rate E {row['rate_E']:.3f} Hz  I {row['rate_I']:.3f} Hz   CV E {row['cv_E']:.2f}  "
            f"I {row['cv_I']:.2f}   active {100 * row['active_fraction']:.0f} %   |g| {row['grad_norm']:.3g}   "
            f"{row['seconds']:.2f} s")


def plot_progress(out: Path, epoch: int, history: list[dict], neuron_rate: np.ndarray, type_idx, keep: int):
    """figures/epoch_XXXX/{training_curves,rates}.png; keeps the newest ``keep`` folders."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    d = out / "figures" / f"epoch_{epoch:04d}"
    d.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    u = [r["update"] for r in history]
    ax[0].semilogy(u, [max(r["loss"], 1e-12) for r in history], label="total")
    for k in [k for k in history[-1] if k.startswith("loss_")]:
        ax[0].semilogy(u, [max(r[k], 1e-12) for r in history], label=k[5:], lw=0.8)
    ax[0].set_xlabel("update"), ax[0].set_ylabel("loss (dimensionless)"), ax[0].legend(fontsize=7)
    for t in ("E", "I"):
        ax[1].plot(u, [r[f"rate_{t}"] for r in history], label=f"rate {t}")
    ax[1].set_xlabel("update"), ax[1].set_ylabel("mean rate (Hz)"), ax[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(d / "training_curves.png", dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(4.5, 3.4))
    for k, t in enumerate("EI"):
        r = neuron_rate[np.asarray(type_idx) == k]
        if len(r):
            ax.hist(r, bins=30, alpha=0.6, label=t)
    ax.set_xlabel("rate in the last update window (Hz)"), ax.set_ylabel("neurons"), ax.legend()
    fig.tight_layout()
    fig.savefig(d / "rates.png", dpi=100)
    plt.close(fig)
    folders = sorted((out / "figures").glob("epoch_*"))
    for old in folders[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------- main loop
class _Signals:
    """SIGINT/SIGTERM set a flag; the loop saves a checkpoint and stops after the current update."""

    def __init__(self):
        self.hit = None
        self.old = {}

    def __enter__(self):
        try:
            for s in (signal.SIGINT, signal.SIGTERM):
                self.old[s] = signal.signal(s, self._handler)
        except ValueError:  # not the main thread
            pass
        return self

    def _handler(self, signum, frame):
        self.hit = signum

    def __exit__(self, *exc):
        for s, h in self.old.items():
            signal.signal(s, h)


def _tree(params, opt_state, carry):
    return {"params": params, "opt_state": opt_state, "carry": carry}


def train(setup: TrainSetup, out_dir: str | Path, *, resume: bool | str | Path = False,
          progress: bool = True, max_updates: int | None = None) -> TrainResult:
    """Train (see the module docstring).  ``resume``: True = ``checkpoints/checkpoint_latest``,
    a path = that checkpoint.  ``max_updates`` stops early (tests, benchmarks)."""
    import jax
    out = Path(out_dir)
    ckdir = out / "checkpoints"
    t = setup.training
    optimizer = make_optimizer(t, t.epochs * setup.updates_per_epoch)
    update_fn = make_update(setup, optimizer)
    params = setup.params
    opt_state = optimizer.init(params)
    carry = initial_carry(setup, 0)
    epoch, upd, history, best, best_params = 0, 0, [], float("inf"), params
    if resume:
        path = ckdir / "checkpoint_latest.npz" if resume is True else Path(resume)
        try:
            ck = load_checkpoint(path, like=_tree(params, opt_state, carry))
        except CheckpointError as e:
            raise SpecError(f"cannot resume: {e}", field="--resume", expected="a readable checkpoint") from None
        if ck.path != path:
            warnings.warn(f"{path} is unreadable; resuming from the previous checkpoint {ck.path}")
        params, opt_state, carry = ck.tree["params"], ck.tree["opt_state"], ck.tree["carry"]
        m = ck.metadata
        epoch, upd, history, best = m["epoch"], m["update"], m["history"], m["best_loss"]
        try:
            best_params = load_checkpoint(ckdir / "checkpoint_best.npz", like=_tree(params, opt_state, carry)).tree[
                "params"] if (ckdir / "checkpoint_best.npz").exists() else params
        except CheckpointError:
            best_params = params
    total = t.epochs * setup.updates_per_epoch
    done = epoch * setup.updates_per_epoch + upd
    tracker = _Wandb(setup.tracking, setup.name, {"training": t.model_dump(mode="json"), **setup.describe}, out)
    if progress:
        print(f"{setup.name}: {setup.model.n} neurons, {setup.model.n_inputs} inputs, batch {t.batch}, "
              f"{t.chunks_per_update} chunks x {t.chunk_size} steps per update, {total} updates, "
              f"trainable {t.trainable}, propagation {setup.model.propagation}")

    def save(kind: str, tree):
        meta = {"epoch": epoch, "update": upd, "history": history, "best_loss": best, "done": done,
                "name": setup.name}
        rng = {"scheme": "stateless: data from (seed, epoch, update)", "seed": setup.seed, "epoch": epoch,
               "update": upd}
        save_checkpoint(ckdir / f"checkpoint_{kind}.npz", tree, meta, rng)

    interrupted = False
    timings = []
    last_rates = None
    stop_at = total if max_updates is None else min(total, done + max_updates)
    with _Signals() as sig:
        while done < stop_at:
            t0 = time.perf_counter()
            data = setup.provider(epoch, upd)
            before = params
            params, opt_state, carry, met = update_fn(params, opt_state, carry, data)
            met = jax.device_get(met)
            dt_s = time.perf_counter() - t0
            timings.append(dt_s)
            last_rates = np.asarray(met.pop("neuron_rate"))
            row = {"update": done + 1, "epoch": epoch, "update_in_epoch": upd,
                   **{k: float(v) for k, v in met.items()}, "seconds": dt_s}
            history.append(row)
            done += 1
            upd += 1
            if upd == setup.updates_per_epoch:
                epoch, upd = epoch + 1, 0
                carry = initial_carry(setup, epoch)
            if row["loss"] < best:
                best, best_params = row["loss"], before  # the loss was measured with these
                save("best", _tree(before, opt_state, carry))
            tracker.log(row)
            if done % t.log_interval == 0 or done == stop_at:
                write_metrics(out, history)
                if progress:
                    print(console_block(row, total), flush=True)
            if t.plot_interval and done % t.plot_interval == 0:
                plot_progress(out, row["epoch"], history, last_rates, setup.model.type_idx, t.keep_figures)
            if done % t.checkpoint_interval == 0:
                save("latest", _tree(params, opt_state, carry))
            if sig.hit is not None:
                interrupted = True
                if progress:
                    print(f"signal {sig.hit}: checkpoint saved, stopping", flush=True)
                break
    save("latest", _tree(params, opt_state, carry))
    write_metrics(out, history)
    if history and last_rates is not None:
        plot_progress(out, history[-1]["epoch"], history, last_rates, setup.model.type_idx, t.keep_figures)
    tracker.finish()
    steady = timings[1:] or timings
    return TrainResult(params, history, best, best_params, interrupted, done,
                       float(np.mean(steady)) if steady else float("nan"))


def evaluate(setup: TrainSetup, params, epoch: int, n_updates: int) -> dict:
    """Forward-only statistics over ``n_updates`` update windows of epoch ``epoch``'s data
    (restarting from ``initial_V(epoch)``): per-type rate and CV, active fraction,
    per-neuron rates (internal order) and the spikes of the first window (T, B, N)."""
    import jax
    import jax.numpy as jnp
    model, ctx = setup.model, setup.ctx
    observe = SL.make_observer(ctx)

    @jax.jit
    def window(params, carry, data):
        def body(c, d):
            (st, ob), out = model.run(params, c["model"], d["inputs"], observe, c["obs"], d.get("teacher"))
            return {"model": st, "obs": ob}, out["spikes"] > 0.5
        return jax.lax.scan(body, carry, data)

    carry = initial_carry(setup, epoch)
    spikes0 = None
    for u in range(n_updates):
        data = setup.provider(epoch, u % setup.updates_per_epoch)
        carry, spikes = window(params, carry, data)
        if spikes0 is None:
            spikes0 = np.asarray(spikes).reshape(-1, *spikes.shape[2:])
    obs = carry["obs"]
    st = jax.device_get(SL.type_stats(ctx, obs))
    return {"rate_E": float(st["rate"][0]), "rate_I": float(st["rate"][1]), "cv_E": float(st["cv"][0]),
            "cv_I": float(st["cv"][1]), "active_fraction": float(st["active"]),
            "neuron_rate": np.asarray(SL.neuron_rates(ctx, obs)), "spikes": spikes0,
            "seconds": float(jnp.asarray(obs["steps"])) * ctx.dt * 1e-3}

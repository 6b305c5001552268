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
the best loss and the RNG position, so ``resume`` continues bit-identically;
what a checkpoint holds, the spec check of a resume, the fresh start of a run that does
not resume and the stop on a non-finite loss or parameter: :mod:`.spiking_state`.
"""
from __future__ import annotations

import csv
import json
import shutil
import signal
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from neurodsl.errors import SpecError

from . import spiking_losses as SL
from .checkpoint import StopSignals, atomic_write_text, save_checkpoint
from .spiking_state import SpikingRun, diverged, load_run, start_fresh


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
    record: dict | None = None           # spec record a resume must match (spiking_state.spec_record)
    spec_path: str | None = None         # where the spec came from (error locations)
    online_update: Callable | None = None  # (setup, optimizer) -> update for eprop / d_rtrl (default OnlineSpikingUpdate)


@dataclass
class TrainResult:
    params: dict
    history: list[dict]
    best_loss: float
    best_params: dict
    interrupted: bool
    updates: int
    seconds_per_update: float
    signal: str | None = None            # SIGINT / SIGTERM when interrupted


def make_optimizer(training, total_updates: int = 1):
    """Global-norm clipping then Adam (or optimistic Adam) for every spiking trainer: ``learning_rate``
    with an optional cosine decay over ``total_updates`` to ``lr_final_fraction``; ``optimizer``,
    ``momentum`` (b1) and ``adam_b2`` where the training block declares them (``kind: fit``), else
    optax's defaults (the student and homeostatic blocks)."""
    import optax
    lr = training.learning_rate
    if training.lr_final_fraction < 1.0:
        lr = optax.cosine_decay_schedule(lr, max(total_updates, 1), alpha=training.lr_final_fraction)
    kind = getattr(training, "optimizer", "adam")
    adam = optax.adam if kind == "adam" else optax.optimistic_adam_v2
    return optax.chain(optax.clip_by_global_norm(training.grad_clip),
                       adam(lr, b1=getattr(training, "momentum", 0.9), b2=getattr(training, "adam_b2", 0.999)))


def make_update(setup: TrainSetup, optimizer):
    """jit(update(params, opt_state, carry, data[, step_scale]) -> params, opt_state, carry, metrics);
    ``step_scale`` multiplies the optimiser's step (a smaller learning rate: divergence retries).
    ``training.method`` eprop / d_rtrl: the online update (``setup.online_update``, default
    :class:`.eprop.OnlineSpikingUpdate`)."""
    if getattr(setup.training, "method", "bptt") != "bptt":
        from .eprop import OnlineSpikingUpdate
        return (setup.online_update or OnlineSpikingUpdate)(setup, optimizer)
    import jax
    import jax.numpy as jnp
    import optax

    loss_fn = SL.make_chunk_loss(setup.model, setup.ctx, setup.weights)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    ctx = setup.ctx

    def update(params, opt_state, carry, data, step_scale):
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
        upd = jax.tree_util.tree_map(lambda u: u * step_scale, upd)
        params = optax.apply_updates(params, upd)
        stats = SL.type_stats(ctx, carry["obs"])
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(p)) for p in jax.tree_util.tree_leaves(params)]))
        metrics = {"loss": tots.mean(), "grad_norm": gnorm, **{f"loss_{k}": v.mean() for k, v in parts.items()},
                   "rate_E": stats["rate"][0], "rate_I": stats["rate"][1], "cv_E": stats["cv"][0],
                   "cv_I": stats["cv"][1], "active_fraction": stats["active"],
                   "neuron_rate": SL.neuron_rates(ctx, carry["obs"]), "finite": finite}
        return params, opt_state, carry, metrics

    jitted = jax.jit(update)
    return lambda params, opt_state, carry, data, step_scale=1.0: jitted(params, opt_state, carry, data, step_scale)


def initial_carry(setup: TrainSetup, epoch: int) -> dict:
    V0 = np.asarray(setup.initial_V(epoch))
    carry = {"model": setup.model.init_state(V0), "obs": SL.init_obs(V0.shape[0], V0.shape[1], setup.model.dtype)}
    zeros = getattr(setup.model, "trace_zeros", None)  # online methods: eligibility traces (runners/eprop.py)
    return carry if zeros is None else {**carry, "traces": dict(zeros)}


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
    """SIGINT/SIGTERM set a flag; the loop saves a checkpoint and stops after the current update.
    (kind ``fit``'s loop; this engine uses :class:`~.checkpoint.StopSignals`, as rnn_fit does.)"""

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


class _Loop:
    """One run of :func:`train`: the compiled update, one step, what follows a committed step."""

    def __init__(self, setup: TrainSetup, out: Path, progress: bool):
        self.setup, self.out, self.progress = setup, out, progress
        self.t = setup.training
        self.total = self.t.epochs * setup.updates_per_epoch
        self.optimizer = make_optimizer(self.t, self.total)
        self.update_fn = make_update(setup, self.optimizer)
        self.timings, self.last_rates = [], None
        self.mesh, self.batch = None, 0

    def use_devices(self, carry: dict) -> None:
        """Split the batch of ``carry`` (and of every update's data) over the devices (runners/devices.py)."""
        from . import devices
        self.batch = int(carry["obs"]["tau"].shape[0])
        self.mesh = devices.trial_mesh(self.batch, "training batch trials")
        self.update_fn = devices.parallel(self.update_fn, self.mesh)

    def save(self, kind: str, run: SpikingRun) -> None:
        s = self.setup
        rng = {"scheme": "stateless: data from (seed, epoch, update)", "seed": s.seed, "epoch": run.epoch,
               "update": run.upd}
        save_checkpoint(self.out / "checkpoints" / f"checkpoint_{kind}.npz", run.tree(),
                        run.meta(s.name, s.record), rng)

    def step(self, run: SpikingRun) -> tuple[SpikingRun, dict]:
        """One update from ``run``: the next run (not yet committed) and the finiteness checks."""
        import jax
        from .devices import shard
        s = self.setup
        t0 = time.perf_counter()
        data = shard(s.provider(run.epoch, run.upd), self.mesh, self.batch)
        params, opt_state, carry, met = self.update_fn(run.params, run.opt_state,
                                                         shard(run.carry, self.mesh, self.batch), data,
                                                         run.step_scale)
        met = jax.device_get(met)
        dt_s = time.perf_counter() - t0
        ok = {"update": run.done + 1, "finite_loss": bool(np.isfinite(met["loss"])),
              "finite_parameters": bool(met.pop("finite"))}
        rates = np.asarray(met.pop("neuron_rate"))
        row = {"update": run.done + 1, "epoch": run.epoch, "update_in_epoch": run.upd,
               **{k: float(v) for k, v in met.items()}, "seconds": dt_s}
        epoch, upd = run.epoch, run.upd + 1
        if upd == s.updates_per_epoch:
            epoch, upd = epoch + 1, 0
            carry = initial_carry(s, epoch)
        better = row["loss"] < run.best  # the loss was measured with the parameters before the update
        nxt = replace(run, params=params, opt_state=opt_state, carry=carry, epoch=epoch, upd=upd,
                      done=run.done + 1, history=run.history + (row,),
                      best=row["loss"] if better else run.best,
                      best_params=run.params if better else run.best_params)
        if ok["finite_loss"] and ok["finite_parameters"]:
            self.timings.append(dt_s)
            self.last_rates = rates
        return nxt, {**ok, "better": better}

    def after(self, run: SpikingRun, improved: bool, stop_at: int, tracker) -> bool:
        """Logging, figures and checkpoints after committed update ``run.done``; True if checkpointed."""
        t, row, done = self.t, run.history[-1], run.done
        if improved:
            self.save("best", replace(run, params=run.best_params))
        tracker.log(row)
        if done % t.log_interval == 0 or done == stop_at:
            write_metrics(self.out, list(run.history))
            if self.progress:
                print(console_block(row, self.total), flush=True)
        if t.plot_interval and done % t.plot_interval == 0:
            plot_progress(self.out, row["epoch"], list(run.history), self.last_rates, self.setup.model.type_idx,
                          t.keep_figures)
        if done % t.checkpoint_interval == 0:
            self.save("latest", run)
            return True
        return False


def train(setup: TrainSetup, out_dir: str | Path, *, resume: bool | str | Path = False,
          progress: bool = True, max_updates: int | None = None) -> TrainResult:
    """Train (see the module docstring).  ``resume``: True = ``checkpoints/checkpoint_latest``,
    a path = that checkpoint (its spec record must match ``setup.record``); otherwise the run
    starts fresh and ``checkpoints/`` is cleared.  ``max_updates`` stops early (tests, benchmarks).
    SIGINT/SIGTERM stop after the current update (``interrupted``; a second SIGINT at once), with
    the committed state saved.  A non-finite loss or parameter retries from the last checkpoint
    with a smaller step (``training.divergence_retries``), then raises DivergedError."""
    out = Path(out_dir)
    lp = _Loop(setup, out, progress)
    t = setup.training
    run = SpikingRun(setup.params, lp.optimizer.init(setup.params), initial_carry(setup, 0))
    lp.use_devices(run.carry)
    if resume:
        run = load_run(out, resume, run, setup.record, setup.spec_path)
    else:
        start_fresh(out)
    tracker = _Wandb(setup.tracking, setup.name, {"training": t.model_dump(mode="json"), **setup.describe}, out)
    if progress:
        print(f"{setup.name}: {setup.model.n} neurons, {setup.model.n_inputs} inputs, batch {t.batch}, "
              f"{t.chunks_per_update} chunks x {t.chunk_size} steps per update, {lp.total} updates, "
              f"trainable {t.trainable}, propagation {setup.model.propagation}")
    stop_at = lp.total if max_updates is None else min(lp.total, run.done + max_updates)
    saved = run  # the state of checkpoint_latest (or the start): where a diverged update retries from
    with StopSignals() as stop:
        try:
            while run.done < stop_at:
                nxt, ok = lp.step(run)
                if not (ok["finite_loss"] and ok["finite_parameters"]):
                    run = saved = diverged(run, saved, ok, t, setup.spec_path)
                    continue
                run = nxt  # committed: one assignment
                if lp.after(run, ok["better"], stop_at, tracker):
                    saved = run
                if stop.hit is not None:
                    break
        except KeyboardInterrupt:
            stop.hit = stop.hit or "SIGINT"
        finally:
            tracker.finish()
        lp.save("latest", run)
        write_metrics(out, list(run.history))
    if stop.hit is not None and progress:
        print(f"signal {stop.hit}: checkpoint saved, stopping", flush=True)
    if run.history and lp.last_rates is not None and stop.hit is None:
        plot_progress(out, run.history[-1]["epoch"], list(run.history), lp.last_rates, setup.model.type_idx,
                      t.keep_figures)
    steady = lp.timings[1:] or lp.timings
    return TrainResult(run.params, list(run.history), run.best, run.tree()["best_params"], stop.hit is not None,
                       run.done, float(np.mean(steady)) if steady else float("nan"), stop.hit)


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
            return {**c, "model": st, "obs": ob}, out["spikes"] > 0.5
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

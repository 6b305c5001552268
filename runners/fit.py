"""``kind: fit`` (``neurodsl run SPEC``): train any declared spiking network toward its objectives.

The network is compiled ONCE by :func:`neurodsl.compile.compile_network` with a surrogate
spike function (:class:`~neurodsl.compile.spikes.SurrogateHeaviside`) -- the same cells,
receptors, delays and inputs as ``neurodsl simulate`` -- and trained with truncated BPTT
(:class:`FitTrainer`, see :class:`neurodsl.spec.fit.FitTraining`), or online by an
eligibility-trace algorithm of braintrace (``training.method``, :mod:`neurodsl.runners.eprop`).  The trained set is
``net.trainable_states()`` (every :class:`~neurodsl.compile.network.TrainableParam`).

Outputs in ``DIR``: ``spec.yaml``; ``metrics.csv``/``metrics.json`` (one row per update);
``checkpoints/checkpoint_latest.npz`` (atomic; every ``checkpoint_interval`` updates, on
SIGINT/SIGTERM and at the end: parameters, optimiser state, the network state and the
position, so ``--resume`` continues bit-identically); and, only once training finished,
``params.npz`` (trained log-parameters by label), ``summary.json`` (per population the rate
measured by simulating the trained network with the *event-driven simulator*, its target and
relative error; the trained factors) and ``figures/training.png``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from neurodsl.errors import SpecError
from neurodsl.spec import LoadedSpec

from . import fit_objectives as FO
from .checkpoint import CheckpointError, atomic_write_text, load_checkpoint, save_checkpoint
from .spiking_state import prepare_run
from .spiking_train import _Signals, make_optimizer, write_metrics


class FitTrainer:
    """Compiled network + jitted update of a FitSpec (see the module docstring); ``online``: the
    network in braintrace's layout (:class:`neurodsl.runners.eprop.OnlineFitTrainer`)."""

    online = False

    def __init__(self, spec):
        import jax.numpy as jnp
        from neurodsl.compile import compile_network
        from neurodsl.compile.spikes import SurrogateHeaviside
        t, sg = spec.training, spec.training.surrogate
        self.spec, self.training = spec, t
        self.spike_fn = SurrogateHeaviside(sg.kind, sg.scale, sg.synaptic_grad, sg.detach_reset)
        self.net = compile_network(spec, self.spike_fn, t.propagation, online=self.online)
        self.params = self.net.trainable_states()
        self.terms = FO.compile_objectives(spec, self.net.infos)
        self.names = [FO.term_name(i, term, self.net.infos) for i, term in enumerate(self.terms)]
        self.T, self.C, self.B = spec.steps(t.chunk), t.chunks_per_update, t.batch
        self.warmup = spec.steps(t.warmup)
        self.fano_bin = max([term.bin_steps for term in self.terms] + [0])
        if self.fano_bin and self.T % self.fano_bin:
            raise SpecError(f"the fano bin ({self.fano_bin} steps) does not divide the chunk ({self.T} steps)",
                            field="training.chunk", expected="a chunk that is a multiple of every fano bin")
        self.V_th = jnp.asarray(np.concatenate([np.full(p.info.size, p.V_th) for p in self.net.populations.values()]),
                                self.net.dtype)
        self.optimizer = make_optimizer(t, t.epochs * t.updates_per_epoch)
        from . import devices
        self.mesh = devices.trial_mesh(self.B, "training.batch trials")  # trials over devices; None: one
        self.update = devices.parallel(self._make_update(), self.mesh)
        self.forward = devices.parallel(self._make_forward(), self.mesh)

    # ------------------------------------------------------------------ compiled pieces
    def _step(self, n):
        import jax.numpy as jnp
        spikes = self.net.update(n)
        pops = self.net.populations
        return (jnp.concatenate([spikes[k] for k in pops], -1),
                jnp.concatenate([p.V.value for p in pops.values()], -1))

    def _make_forward(self):
        import brainstate

        @brainstate.transform.jit
        def forward(steps):
            brainstate.transform.for_loop(self._step, steps)
        return forward

    def _make_update(self):
        import brainstate
        import jax
        import jax.numpy as jnp
        import optax
        dt, terms, weights = self.net.dt, self.terms, [t.weight for t in self.terms]

        def chunk_loss(steps, obs):
            s, V = brainstate.transform.for_loop(self._step, steps)
            obs = FO.track(obs, s, V, dt, self.fano_bin)
            parts = jnp.stack([FO.term_value(t, obs, dt, self.V_th) for t in terms])
            return (parts * jnp.asarray(weights, parts.dtype)).sum(), (obs, parts)

        grad = brainstate.transform.grad(chunk_loss, grad_states=self.params, has_aux=True, return_value=True)

        def body(carry, steps):
            g_acc, obs = carry
            g, loss, (obs, parts) = grad(steps, obs)
            return (jax.tree.map(jnp.add, g_acc, g), obs), (loss, parts)

        @brainstate.transform.jit
        def update(steps, obs, opt_state):  # steps (C, T)
            obs = FO.reset_window(obs)
            zeros = {k: jnp.zeros_like(p.value) for k, p in self.params.items()}
            (g, obs), (loss, parts) = brainstate.transform.scan(body, (zeros, obs), steps)
            g = jax.tree.map(lambda x: x / steps.shape[0], g)
            values = {k: p.value for k, p in self.params.items()}
            upd, opt_state = self.optimizer.update(g, opt_state, values)
            for k, v in optax.apply_updates(values, upd).items():
                b = self.params[k].bounds
                self.params[k].value = v if b is None else jnp.clip(v, *b)
            rate = FO.neuron_rate(obs, dt)
            return obs, opt_state, {"loss": loss.mean(), "parts": parts.mean(0), "grad_norm": optax.global_norm(g),
                                    "rate": rate}
        return update

    # ------------------------------------------------------------------ state
    def start_epoch(self, epoch: int) -> int:
        """Initial state of ``epoch`` plus the warm-up; returns the next step index."""
        import jax.numpy as jnp
        from .devices import shard_network
        self.net.init_state(self.B, self.spec.seed * 7919 + epoch + 1)
        shard_network(self.net, self.mesh)
        if self.warmup:
            self.forward(jnp.arange(self.warmup, dtype=jnp.int32))
        return self.warmup

    def snapshot(self) -> dict:
        return {"params": {k: p.value for k, p in self.params.items()},
                "hidden": {k: s.value for k, s in self.net.hidden_states().items()}}

    def restore(self, tree: dict) -> None:
        import jax.numpy as jnp
        for k, v in tree["params"].items():
            self.params[k].value = jnp.asarray(v)
        for k, s in self.net.hidden_states().items():
            s.value = jnp.asarray(tree["hidden"][k])
        from .devices import shard_network
        shard_network(self.net, self.mesh)

    def population_rates(self, rate: np.ndarray) -> dict[str, float]:
        return {i.name: float(np.mean(rate[i.offset:i.offset + i.size])) for i in self.net.infos}


def train(tr: FitTrainer, out: Path, *, resume: bool = False, progress: bool = True,
          max_updates: int | None = None, record: dict | None = None) -> dict:
    """Run the updates (checkpointed, resumable); returns {"history", "interrupted", "updates", ...}.
    ``record``: the spec as stored in every checkpoint (what ``--resume`` is checked against)."""
    import jax
    import jax.numpy as jnp
    t = tr.training
    ckpt = out / "checkpoints" / "checkpoint_latest.npz"
    opt_state = tr.optimizer.init({k: p.value for k, p in tr.params.items()})
    from .devices import shard
    obs = shard(FO.init_obs(tr.B, tr.net.n_neurons, tr.net.dtype), tr.mesh, tr.B)
    epoch, upd, history = 0, 0, []
    n = tr.start_epoch(0)
    if resume:
        like = {**tr.snapshot(), "opt_state": opt_state, "obs": obs, "n": np.int64(0)}
        try:
            ck = load_checkpoint(ckpt, like=like)
        except CheckpointError as e:
            raise SpecError(f"cannot resume: {e}", field="--resume", expected="a readable checkpoint") from None
        tr.restore(ck.tree)
        opt_state, obs, n = ck.tree["opt_state"], shard(ck.tree["obs"], tr.mesh, tr.B), int(ck.tree["n"])
        epoch, upd, history = ck.metadata["epoch"], ck.metadata["update"], ck.metadata["history"]
    total = t.epochs * t.updates_per_epoch
    done = epoch * t.updates_per_epoch + upd
    stop_at = total if max_updates is None else min(total, done + max_updates)

    def save():
        tree = {**tr.snapshot(), "opt_state": opt_state, "obs": obs, "n": np.int64(n)}
        save_checkpoint(ckpt, tree, {"epoch": epoch, "update": upd, "history": history, "done": done,
                                     "spec": record},
                        {"scheme": "network RNG key in the state; epochs restart from (seed, epoch)"})

    if progress:
        print(f"fit {tr.spec.name} ({t.method}): {tr.net.n_neurons} neurons, trained {', '.join(tr.params)}; batch {tr.B}, "
              f"{tr.C} chunks x {tr.T} steps per update, {total} updates; propagation "
              f"{', '.join(sorted({p.scheme.name for p in tr.net.projections}))}", flush=True)
    interrupted, timings = False, []
    with _Signals() as sig:
        while done < stop_at:
            t0 = time.perf_counter()
            steps = jnp.arange(n, n + tr.C * tr.T, dtype=jnp.int32).reshape(tr.C, tr.T)
            obs, opt_state, met = tr.update(steps, obs, opt_state)
            met = jax.device_get(met)
            n += tr.C * tr.T
            if not np.isfinite(met["loss"]) or not all(np.isfinite(np.asarray(p.value)).all()
                                                        for p in tr.params.values()):
                raise SpecError(f"non-finite loss or parameters at update {done + 1}", field="training.learning_rate",
                                expected="a smaller learning rate (nothing was written)")
            timings.append(time.perf_counter() - t0)
            row = {"update": done + 1, "epoch": epoch, "loss": float(met["loss"]),
                   **{f"loss_{k}": float(v) for k, v in zip(tr.names, met["parts"])},
                   **{f"rate_{k}": v for k, v in tr.population_rates(np.asarray(met["rate"])).items()},
                   **{f"factor_{k}": float(np.exp(np.asarray(p.value))) for k, p in tr.params.items()
                      if np.ndim(p.value) == 0},
                   "grad_norm": float(met["grad_norm"]), "seconds": timings[-1]}
            history.append(row)
            done, upd = done + 1, upd + 1
            if upd == t.updates_per_epoch and done < total:
                epoch, upd = epoch + 1, 0
                n = tr.start_epoch(epoch)
            if progress and (done % t.log_interval == 0 or done == stop_at):
                rates = "  ".join(f"{k[5:]} {v:.2f} Hz" for k, v in row.items() if k.startswith("rate_"))
                print(f"update {done:5d}/{total}  loss {row['loss']:.5g}  {rates}  |g| {row['grad_norm']:.3g}  "
                      f"{row['seconds']:.2f} s", flush=True)
            if done % t.log_interval == 0:
                write_metrics(out, history)
            if done % t.checkpoint_interval == 0:
                save()
            if sig.hit is not None:
                interrupted = True
                break
    save()
    write_metrics(out, history)
    steady = timings[1:] or timings
    return {"history": history, "interrupted": interrupted, "updates": done, "complete": done >= total,
            "seconds_per_update": float(np.mean(steady)) if steady else float("nan")}


def evaluate(spec, trained: dict[str, np.ndarray], progress: bool = False) -> dict:
    """Simulate ``spec`` with the trained values using the event-driven simulator; rates (Hz) per
    population over [warmup, duration], pooled over ``spec.trials`` trials."""
    from neurodsl.compile import compile_network
    from .simulate import run_network
    net = compile_network(spec)
    for k, st in net.trainable_states().items():
        st.value = trained[k].astype(np.asarray(st.value).dtype)
    net.init_state(spec.trials, spec.seed + 104_729)
    dt = spec.dt.internal
    res = run_network(net, spec.n_steps, max(1, spec.n_steps), spec.n_steps, progress=progress)
    w0 = spec.steps(spec.training.warmup)
    keep = res.events["step"] >= w0
    counts = np.bincount(res.events["neuron"][keep], minlength=net.n_neurons)
    secs = (spec.n_steps - w0) * dt * 1e-3 * spec.trials
    return {i.name: float(counts[i.offset:i.offset + i.size].sum() / (i.size * secs)) for i in net.infos}


def _write_npz(path: Path, arrays: dict) -> None:
    """Atomically, with the umask's mode (the shared atomic-write path)."""
    import io
    from neurodsl.io.atomic import write_bytes
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_bytes(path, buf.getvalue())


def _targets(spec) -> dict[str, float]:
    out = {}
    for o in spec.objectives:
        if o.kind == "rate" and o.per == "population":
            for name in (spec.populations if o.population == "all" else [o.population]):
                out.setdefault(name, o.target.internal)
    return out


FINAL_OUTPUTS = ("summary.json", "params.npz", "figures/training.png")


def training_figure(path: Path, history: list[dict], targets: dict[str, float]) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    u = [r["update"] for r in history]
    ax[0].semilogy(u, [max(r["loss"], 1e-12) for r in history], label="total")
    for k in [k for k in history[-1] if k.startswith("loss_")]:
        ax[0].semilogy(u, [max(r[k], 1e-12) for r in history], lw=0.8, label=k[5:])
    ax[0].set_xlabel("update"), ax[0].set_ylabel("loss (dimensionless)"), ax[0].legend(fontsize=7)
    for i, k in enumerate([k for k in history[-1] if k.startswith("rate_")]):
        line, = ax[1].plot(u, [r[k] for r in history], label=f"{k[5:]} (training window)")
        if k[5:] in targets:
            ax[1].axhline(targets[k[5:]], color=line.get_color(), ls="--", lw=0.8, label=f"{k[5:]} target")
    ax[1].set_xlabel("update"), ax[1].set_ylabel("rate (Hz)"), ax[1].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run_fit(loaded: LoadedSpec, out_dir: str | Path, *, resume: bool = False, test: bool = False,
            progress: bool = True, max_updates: int | None = None) -> dict:
    """Train ``loaded.spec`` (kind fit) and write the outputs of the module docstring; returns the summary.

    ``test``: 2 updates (a smoke run of the same pipeline)."""
    from .simulate import configure_precision
    spec = loaded.spec
    configure_precision(spec.precision)
    out = Path(out_dir)
    # a resume is checked against the checkpoint's own spec record; any other run is fresh:
    # checkpoints and the previous run's final outputs go before anything is written
    record = prepare_run(loaded, out, resume, FINAL_OUTPUTS)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "spec.yaml", loaded.resolved_yaml)
    from .eprop import make_trainer
    tr = make_trainer(spec)
    res = train(tr, out, resume=resume, progress=progress, max_updates=2 if test else max_updates, record=record)
    if res["interrupted"] or not (res["complete"] or test or max_updates):
        return {"interrupted": True, "updates": res["updates"]}
    trained = {k: np.asarray(p.value) for k, p in tr.params.items()}
    _write_npz(out / "params.npz", trained)  # training is complete: keep it before evaluating
    rates = evaluate(spec, trained)
    targets = _targets(spec)
    pops = {k: {"rate_hz": r, "target_hz": targets.get(k),
                "relative_error": None if k not in targets else abs(r - targets[k]) / targets[k]}
            for k, r in rates.items()}
    factors = {}
    for p in tr.net.projections:
        if p.log_scale is not None:
            factors[p.log_scale.label] = float(np.exp(trained[p.log_scale.label]))
        if p.log_weight is not None:
            change = trained[p.log_weight.label] - np.log(np.maximum(np.abs(p.synapses.weight), 1e-12))
            factors[p.log_weight.label] = {"synapses": int(change.size),
                                           "geometric_mean_factor": float(np.exp(change.mean())),
                                           "log_factor_std": float(change.std())}
    summary = {"name": spec.name, "kind": "fit", "method": spec.training.method, "populations": pops, "trained": factors,
               "updates": res["updates"], "seconds_per_update": res["seconds_per_update"],
               "evaluation": {"simulator": "event-driven (neurodsl simulate)", "trials": spec.trials,
                              "duration_ms": spec.duration.internal, "from_ms": spec.training.warmup.internal},
               "final_training_loss": res["history"][-1]["loss"] if res["history"] else None}
    if res["history"]:
        training_figure(out / "figures" / "training.png", res["history"], targets)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))
    if progress:
        print("  ".join(f"{k}: {v['rate_hz']:.2f} Hz" + (f" (target {v['target_hz']:.2f})" if v["target_hz"] else "")
                        for k, v in pops.items()) + f"; wrote {out / 'summary.json'}", flush=True)
    return summary

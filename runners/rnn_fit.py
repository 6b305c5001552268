"""``neurodsl run`` for ``kind: rnn_fit``: fit an E-I rate RNN to recorded single trials.

:func:`run_rnn_fit` loads the data (``spec.data``), splits trials (seeded,
stratified by condition), builds the model (:mod:`neurodsl.compile.rate_rnn`),
trains with one jit-compiled function per epoch (scan over batches and time,
validation without process noise) and writes ``training_log.json`` (every
epoch), checkpoints (best / final / latest / every ``checkpoint_every``),
weights/, outputs/, metrics/, population/ (.npy), ``fit.nc``, figures and
``training_report.md``.  SIGINT (Ctrl+C) or SIGTERM (a scheduler's preemption or
time limit) stops after the current epoch, saves ``checkpoints/latest.npz`` and
returns ``interrupted``; ``resume=True`` continues from it bit-identically
(:mod:`.rnn_state`: what a checkpoint holds).  A non-finite loss or parameter
stops the run with :class:`~.rnn_state.DivergedError` before anything is kept.
"""
from __future__ import annotations

import json
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neurodsl.errors import DataError, Location, SpecError
from neurodsl.spec import LoadedSpec

from .checkpoint import StopSignals, atomic_write_text
from .devices import shard_trial_sets
from .rnn_state import FitRun, Saver, check_finite, evaluated, fingerprint, fingerprint_dict, resume_run


def make_data(out: Path, **kw) -> list[Path]:
    """``neurodsl make-data rnn-export``: synthetic export from a known E-I RNN + ground truth."""
    from neurodsl.io.synthetic import write_synthetic
    return list(write_synthetic(Path(out), **kw))


@dataclass
class FitData:
    ds: object                 # the loaded xarray Dataset (rate, inputs, valid?)
    rates: np.ndarray          # (K, T, N) float32, 0 at invalid bins
    valid: np.ndarray          # (K, T) float32
    cond: np.ndarray           # (K,) condition id
    cond_names: tuple
    train: np.ndarray          # trial indices
    val: np.ndarray
    table: np.ndarray          # (n_u, C) distinct input vectors
    index: np.ndarray          # (K, T) int32 row of table
    counts: np.ndarray
    bin_ms: float
    notes: list


def prepare_data(loaded: LoadedSpec) -> FitData:
    """Load, mask, check dt, label conditions, split and de-duplicate the inputs."""
    from neurodsl.compile.attention import unique_rows
    from neurodsl.io.rnn_export import condition_labels, load_rnn_export, stratified_split
    spec = loaded.spec
    d = spec.data
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_rnn_export(d.path, **d.reader_options(spec.dt))
        if d.max_trials:
            ds = ds.isel(trial=slice(0, d.max_trials))
        cond, names = condition_labels(ds, d.condition_keys)
        seed = spec.seed if d.split_seed is None else d.split_seed
        train, val = stratified_split(ds, d.val_fraction, seed, d.condition_keys)
    notes = [n for n in ds.attrs.get("notes", "").split("\n") if n]
    notes += [f"warning: {w.message}" for w in caught if str(w.message) not in ds.attrs.get("notes", "")]
    _console_warnings(caught)
    bin_ms = float(ds.attrs["bin_size_ms"])
    if abs(spec.dt.internal - bin_ms) > 1e-6 * bin_ms:
        raise SpecError(f"dt is {spec.dt} but the data's bins are {bin_ms:g} ms", field="dt",
                        expected=f"dt: {bin_ms:g} ms (the model steps once per data bin)",
                        location=Location(loaded.path))
    if len(val) == 0:
        raise SpecError("the validation split is empty", field="data.val_fraction",
                        expected="val_fraction > 0 and >= 2 trials per condition", location=Location(loaded.path))
    _check_training_trials(loaded, cond[train], names)
    rate = ds["rate"].values.astype(np.float32)
    valid = ds["valid"].values if "valid" in ds else np.ones(rate.shape[:2], bool)
    valid = valid & np.isfinite(rate).all(-1)
    rate = np.where(valid[..., None], np.nan_to_num(rate), 0.0).astype(np.float32)
    u = np.nan_to_num(ds["inputs"].values.astype(np.float32))
    table, index, counts = unique_rows(u)
    notes.append(f"mask={d.mask}: {int(valid.sum())} of {valid.size} bins valid; split seed {seed}: "
                 f"{len(train)} training / {len(val)} validation trials, {len(names)} conditions "
                 f"({', '.join(d.condition_keys)}); {len(table)} distinct input vectors")
    return FitData(ds, rate, valid.astype(np.float32), cond, names, train, val, table, index, counts,
                   bin_ms, notes)


def _console_warnings(caught) -> None:
    """The loader's doubts go to the console too, not only to the report."""
    from neurodsl.io.rnn_export import RnnExportWarning
    for w in caught:
        if issubclass(w.category, RnnExportWarning):
            print(f"neurodsl: warning: {w.message}", file=sys.stderr, flush=True)


def _check_training_trials(loaded: LoadedSpec, cond_train: np.ndarray, names) -> None:
    """The noise ceiling needs >= 2 training trials per condition: say so before training, not after."""
    counts = np.bincount(cond_train, minlength=len(names))
    few = [(str(names[c]), int(counts[c])) for c in np.flatnonzero(counts < 2)]
    if not few:
        return
    d = loaded.spec.data
    shown = ", ".join(f"{n}: {k}" for n, k in few[:3]) + (", ..." if len(few) > 3 else "")
    raise DataError(f"{len(few)} of {len(names)} conditions have fewer than 2 training trials ({shown}); "
                    "the noise ceiling splits each condition's training trials in halves",
                    field="data.max_trials" if d.max_trials else "data.condition_keys",
                    expected=">= 3 trials per condition (more trials: data.max_trials; coarser conditions: "
                             "fewer data.condition_keys)", location=Location(loaded.path))


_COMPILED: dict = {}


class Trainer:
    """Everything compiled for one spec + data: model, stats, optimiser, jitted epoch."""

    def __init__(self, loaded: LoadedSpec, data: FitData):
        import jax
        import jax.numpy as jnp
        from neurodsl.compile.attention import use_table
        from neurodsl.compile.rate_rnn import build_rate_rnn, simulate_batch
        from . import rnn_losses as L
        spec, t, ls = loaded.spec, loaded.spec.training, loaded.spec.training.losses
        self.spec, self.data, self.L = spec, data, L
        dtype = jnp.float64 if spec.precision == "float64" else jnp.float32
        tr = data.train
        onehot = np.eye(len(data.cond_names), dtype=np.float32)[data.cond]
        mean_rates = (data.rates[tr] * data.valid[tr][..., None]).sum((0, 1)) / max(data.valid[tr].sum(), 1)
        ei = np.asarray(data.ds["ei"].values).astype(str)
        self.module = build_rate_rnn(spec.model, ei, data.table.shape[1], data.bin_ms, spec.seed,
                                     mean_rates=mean_rates, input_table=data.table,
                                     input_counts=data.counts, dtype=dtype)
        self.cfg = self.module.cfg
        T = data.rates.shape[1]
        smooth = L.smoothing_matrix(T, ls.psth_smooth.internal / data.bin_ms)
        smooth_ds = L.smoothing_matrix(T, ls.trial_smooth.internal / data.bin_ms, ls.trial_downsample)
        st = L.target_stats(data.rates[tr], data.valid[tr], onehot[tr], smooth, spec.model.observation)
        st.update(smooth=smooth, smooth_ds=smooth_ds)
        self.stats, self.obs_sigma = st, st.get("obs_sigma")  # gaussian: fixed s.d. from the training trials
        self.st = {k: jnp.asarray(v, dtype) for k, v in st.items()}
        self.loss_cfg = L.LossConfig.from_spec(ls, spec.model.observation, data.bin_ms)
        self.batch_size = min(t.batch_size or len(tr), len(tr))
        n_batches = max(1, len(tr) // self.batch_size)
        self.tx = L.make_optimizer(t, n_batches)
        c, rows = self.cfg, self.batch_size * T  # per batch when the distinct-row table costs more than a batch
        self.per_batch = not use_table(len(data.table), rows, c.embedding, c.n_inputs, c.emb_dim, c.heads, c.n_units)
        data.notes.append(f"input embedding {'per batch' if self.per_batch else 'by table'}: {len(data.table)} "
                          f"distinct input vectors, {rows} (trial, bin) rows per batch")
        self.table = jnp.asarray(data.table, dtype)  # per batch: unused by the epoch (kept for other engines)

        def arrays(idx):
            inp = {"u": jnp.asarray(data.table[data.index[idx]], dtype)} if self.per_batch else {}
            a = {**inp, "index": jnp.asarray(data.index[idx]), "target": jnp.asarray(data.rates[idx], dtype),
                 "valid": jnp.asarray(data.valid[idx], dtype), "onehot": jnp.asarray(onehot[idx], dtype)}
            a["traj"] = L.trajectories(a["target"], a["valid"], self.st["smooth_ds"], self.st["mu"], self.st["sd"])
            return a
        self.train_arrays, self.val_arrays = shard_trial_sets(arrays(tr), arrays(data.val))  # over devices
        ckey = (fingerprint(loaded), data.ds.attrs.get("source_sha256"), len(data.cond), len(tr), self.batch_size,
                self.per_batch)
        if ckey not in _COMPILED:  # same spec and data shapes in one process: reuse the compiled epoch
            _COMPILED.clear()
            _COMPILED[ckey] = L.build_epoch(self.cfg, self.loss_cfg, self.tx, len(tr), self.batch_size,
                                             t.plateau_on, t.weight_average)
        epoch_fn, self.n_batches = _COMPILED[ckey]
        self.epoch_fn = lambda state: epoch_fn(state, self.train_arrays, self.val_arrays, self.table, self.st)
        params = self.module.param_tree()
        self.state0 = {"params": params, "opt": self.tx.init(params),
                       "bal": {"m": jnp.zeros(len(self.loss_cfg.weights), dtype), "c": jnp.zeros((), dtype)},
                       "key": jax.random.PRNGKey(spec.seed)}
        if t.weight_average:  # the parameters' moving average starts at the initial parameters
            self.state0["avg"] = params
        self.sim = jax.jit(lambda p, b, key, noise: simulate_batch(p, self.cfg, self.table, b, key, noise),
                           static_argnums=(3,))

    def rates(self, params, trials, noise: bool = False, seed: int = 0) -> np.ndarray:
        import jax
        key = jax.random.PRNGKey(seed + 7919) if noise else None
        d = self.data
        b = {"u": d.table[d.index[trials]].astype(self.table.dtype)} if self.per_batch else {"index": d.index[trials]}
        return np.asarray(self.sim(params, b, key, float(self.cfg.noise if noise else 0.0)))


def _detail(tr: Trainer, params, r_neuron) -> dict:
    from neurodsl.analysis.nlb import sample_observations
    from neurodsl.analysis.rnn_report import _nanmean, fano_by_condition
    d = tr.data
    ei = np.asarray(d.ds["ei"].values).astype(str)
    h0 = tr.cfg.scale * np.asarray(params["h0"], np.float64)
    noisy = sample_observations(tr.rates(params, d.val, noise=True)[..., :tr.cfg.n_recorded], d.bin_ms,
                                tr.spec.model.observation, tr.obs_sigma)  # none: the rates themselves
    fm, ft = (fano_by_condition(x, d.valid[d.val], d.cond[d.val], d.bin_ms) for x in (noisy, d.rates[d.val]))
    r = np.asarray(r_neuron, np.float64)
    return {"per_neuron_correlation": [None if not np.isfinite(x) else float(x) for x in r],
            "E_mean_correlation": float(np.nanmean(r[ei == "E"])) if (ei == "E").any() else None,
            "I_mean_correlation": float(np.nanmean(r[ei == "I"])) if (ei == "I").any() else None,
            "h0": {"mean": float(h0.mean()), "std": float(h0.std()), "min": float(h0.min()), "max": float(h0.max())},
            "fano_model": _nanmean(fm), "fano_real": _nanmean(ft)}


#: what says a fit finished (or how far it got): a fresh run (--force) removes them before anything else
RESULT_FILES = ("fit.nc", "training_report.md", "training_log.json")


def run_rnn_fit(loaded: LoadedSpec, out_dir: Path, *, resume: bool = False, test: bool = False,
                progress: bool = True, outputs: bool = True) -> dict:
    """Fit, write all outputs to ``out_dir`` and return a summary dict (see module docstring).

    ``outputs=False`` stops after the log and checkpoints (no evaluation files; tests).
    """
    from neurodsl.runners.simulate import configure_precision
    spec, t = loaded.spec, loaded.spec.training
    configure_precision(spec.precision)
    out, ck = Path(out_dir), Path(out_dir) / "checkpoints"
    if not resume:  # a fresh run: the old run's results go first, then its checkpoints (never the reverse)
        for name in RESULT_FILES:
            (out / name).unlink(missing_ok=True)
        if ck.exists():
            shutil.rmtree(ck)
    out.mkdir(parents=True, exist_ok=True)
    t_setup = time.perf_counter()
    data = prepare_data(loaded)
    tr = Trainer(loaded, data)
    n_epochs = t.test_epochs if test else t.epochs
    fp, fp_dict = fingerprint(loaded), fingerprint_dict(loaded)
    saver = Saver(ck, fp, fp_dict, spec.seed, spec.name)
    run = resume_run(ck, tr.state0, fp, fp_dict, loaded) if resume else FitRun.fresh(tr.state0)
    atomic_write_text(out / "spec.yaml", loaded.resolved_yaml)
    setup_s = time.perf_counter() - t_setup
    _header(tr, data, n_epochs, run.epoch, progress)
    t_train = time.perf_counter()
    run, hit, stopped = _engine(t.method)(tr, loaded, run, saver, out, n_epochs, progress)
    train_s = time.perf_counter() - t_train
    saver.save("latest.npz", run)
    log = list(run.log)
    if hit:
        print(f"\ninterrupted ({hit}): state after epoch {run.epoch} saved to {ck / 'latest.npz'} "
              f"(continue: neurodsl run {loaded.path or 'SPEC'} --out {out} --resume)", flush=True)
        return {"interrupted": True, "signal": hit, "epoch": run.epoch, "out_dir": str(out), "log": log}
    saver.save("final.npz", run)
    saver.best(run)  # best.npz holds exactly the best epoch the summary names
    best = run.best
    tr.module.load_tree(best["params"])
    if not outputs:
        return {"interrupted": False, "epoch": run.epoch, "out_dir": str(out), "log": log,
                "best_epoch": best["epoch"], "best_val_correlation": best["corr"]}
    summary = write_outputs(tr, loaded, out, log, best, stopped=stopped, train_s=train_s, setup_s=setup_s, test=test)
    _banner(summary, out)
    return summary


def _engine(method: str):
    """The training loop of ``training.method``: same signature, same committed-run contract."""
    if method == "force":
        from .rnn_force import train_force
        return train_force
    return _train


def _train(tr: Trainer, loaded: LoadedSpec, run: FitRun, saver: Saver, out: Path, n_epochs: int,
           progress: bool) -> tuple[FitRun, str | None, bool]:
    """Epochs ``run.epoch + 1 .. n_epochs``; SIGINT/SIGTERM stop after the current epoch.

    Returns the last committed run, the stopping signal's name (or None) and whether early
    stopping ended it.  A run is committed in one assignment after its epoch is complete, so
    an interrupt at any point leaves epoch, state, log and best in agreement."""
    import jax
    from neurodsl.progress import progress_bar
    t = loaded.spec.training
    bar = progress_bar(total=n_epochs, initial=run.epoch, desc=f"fit {loaded.spec.name}", unit="epoch",
               disable=not progress, leave=False, dynamic_ncols=True)
    stopped = False
    with StopSignals() as stop:
        try:
            for epoch in range(run.epoch + 1, n_epochs + 1):
                e0 = time.perf_counter()
                state, met = tr.epoch_fn(run.state)
                met = jax.device_get(met)
                entry = {"epoch": epoch, "train_loss": float(met["train_loss"]),
                         "val_loss": float(met["val_loss"]), "val_correlation": float(met["val_correlation"]),
                         "learning_rate": float(t.learning_rate * met["lr_scale"]),
                         "epoch_time": time.perf_counter() - e0,
                         **{k: float(met[k]) for k in ("L_neuron", "L_trial", "L_reg", "L_obs") if k in met}}
                check_finite(entry, state, run, loaded)
                if epoch % t.detail_every == 0:
                    entry.update(_detail(tr, evaluated(state), met["r_neuron"]))
                run = run.advance(epoch, state, entry)
                _persist(run, saver, out, t)
                bar.update(1)
                bar.set_postfix(loss=f"{entry['train_loss']:.4f}", r=f"{entry['val_correlation']:.3f}",
                                best=f"{run.best['corr']:.3f}")
                _console(bar, entry, run.best, t)
                if run.best["since"] >= t.early_stopping_patience:
                    stopped = True
                    break
                if stop.hit:
                    break
        except KeyboardInterrupt:
            stop.hit = stop.hit or "SIGINT"
        finally:
            bar.close()
    if stop.hit:
        atomic_write_text(out / "training_log.json", json.dumps(list(run.log), indent=1))
    return run, stop.hit, stopped


def _persist(run: FitRun, saver: Saver, out: Path, t) -> None:
    if run.improved:
        saver.best(run)
    atomic_write_text(out / "training_log.json", json.dumps(list(run.log), indent=1))
    if run.epoch % t.checkpoint_every == 0:
        saver.save(f"epoch_{run.epoch:05d}.npz", run)
        saver.save("latest.npz", run)


def _header(tr: Trainer, data: FitData, n_epochs: int, start: int, progress: bool) -> None:
    import jax
    cfg = tr.cfg
    print(f"rnn_fit {tr.spec.name}: {cfg.n_recorded} recorded neurons ({int(cfg.e_mask[:cfg.n_recorded].sum())} E) "
          f"+ {cfg.n_units - cfg.n_recorded} hidden units, embedding {cfg.embedding}, "
          f"{len(data.train)}/{len(data.val)} train/val trials x {data.rates.shape[1]} bins, "
          f"{tr.n_batches} batch(es)/epoch, device {jax.default_backend()}; epochs {start + 1}..{n_epochs}",
          flush=True)


def _console(bar, e: dict, best: dict, t) -> None:
    ep = e["epoch"]
    if ep % t.line_every == 0:
        bar.write(f"epoch {ep:5d}  loss {e['train_loss']:.4f}  val {e['val_loss']:.4f}  "
                  f"r {e['val_correlation']:.3f} (best {best['corr']:.3f} @ {best['epoch']})  "
                  f"lr {e['learning_rate']:.2e}  {e['epoch_time'] * 1000:.0f} ms")
    if ep % t.detail_every == 0 and "per_neuron_correlation" in e:
        r = ", ".join("nan" if x is None else f"{x:.2f}" for x in e["per_neuron_correlation"])
        h = e["h0"]
        bar.write(f"---- epoch {ep} ----\n  L_neuron {e['L_neuron']:.4f}  L_trial {e['L_trial']:.4f}  "
                  f"L_reg {e['L_reg']:.5f}\n  per-neuron r: {r}\n  E mean r {e['E_mean_correlation']}  "
                  f"I mean r {e['I_mean_correlation']}\n  h0 mean {h['mean']:.3f} std {h['std']:.3f} "
                  f"[{h['min']:.3f}, {h['max']:.3f}]\n  Fano model {e['fano_model']:.3f}  real {e['fano_real']:.3f}")


def _banner(s: dict, out: Path) -> None:
    line = "=" * 72
    print(f"\n{line}\nrnn_fit done: {s['epochs']} epochs ({'early stop' if s['early_stopped'] else 'max epochs'})"
          f" in {s['train_time_s']:.1f} s ({s['s_per_epoch']:.3f} s/epoch)\n"
          f"best epoch {s['best_epoch']}: val r {s['best_val_correlation']:.3f}; final metrics: "
          f"pooled r {s['r_pooled']:.3f} (ceiling {s['ceiling_pooled']:.3f}), "
          f"condition r {s['r_condition']:.3f} (ceiling {s['ceiling_condition']:.3f})\n"
          f"results in {out}/ (fit.nc, training_report.md, figures/)\n{line}", flush=True)


def write_outputs(tr: Trainer, loaded: LoadedSpec, out: Path, log: list, best: dict, *, stopped: bool,
                  train_s: float, setup_s: float, test: bool) -> dict:
    """Evaluate the best parameters on the validation trials and write every output file."""
    from neurodsl.analysis.rnn_report import FitArrays, write_all
    from neurodsl.compile.rate_rnn import attention_maps, readout, weights_np
    d, cfg, params = tr.data, tr.cfg, best["params"]
    clean = tr.rates(params, d.val)
    noisy = tr.rates(params, d.val, noise=True)
    n = cfg.n_recorded
    times = [e["epoch_time"] for e in log]
    arrays = FitArrays(
        ds=d.ds, train=d.train, val=d.val, cond=d.cond, cond_names=d.cond_names, bin_ms=d.bin_ms,
        rate_model=clean[..., :n], rate_model_noisy=noisy[..., :n], rate_hidden=clean[..., n:],
        valid=d.valid, weights=weights_np(params, cfg), unit_ei=cfg.ei,
        attention=attention_maps(params, cfg, d.table, d.counts),
        readout=np.asarray(readout(params, cfg, clean)) if cfg.readout else None,
        input_names=[str(x) for x in d.ds["input"].values],
        ground_truth=_ground_truth(loaded.spec.data.path), smooth_ms=loaded.spec.training.losses.psth_smooth.internal,
        observation=loaded.spec.model.observation, obs_sigma=tr.obs_sigma,
        rate_model_train=tr.rates(params, d.train)[..., :n])
    run = {"spec_name": loaded.spec.name, "spec_path": loaded.path, "spec_sha256": loaded.sha256,
           "resolved_yaml": loaded.resolved_yaml, "seed": loaded.spec.seed, "test": test,
           "epochs": log[-1]["epoch"] if log else 0, "early_stopped": stopped,
           "best_epoch": best["epoch"], "best_val_correlation": float(best["corr"]),
           "final_val_correlation": log[-1]["val_correlation"] if log else float("nan"),
           "train_time_s": train_s, "setup_time_s": setup_s,
           "s_per_epoch": float(np.median(times[1:] if len(times) > 1 else times)) if times else float("nan"),
           "notes": d.notes, "device": __import__("jax").default_backend(), "n_batches": tr.n_batches,
           "batch_size": tr.batch_size}
    return write_all(arrays, run, log, out)


def _ground_truth(path: Path) -> dict | None:
    gt = path.with_name(f"{path.stem}_ground_truth.npz")
    if not gt.is_file():
        return None
    with np.load(gt, allow_pickle=False) as z:
        return dict(z)

"""``training.method: force``: FORCE learning of the rate RNN by recursive least squares.

As CURBD (Perich et al. 2020, rajanlab/CURBD) the network runs freely on each training
trial and, every ``force.update_every`` bins, the weights into the recorded units are moved
toward that trial's recorded rates by one RLS step.  With ``a = dt / tau``, rates
``r = f(x)`` and scale ``s`` (:mod:`neurodsl.compile.rate_rnn`)::

    z[t]   = [r[t], s e(u[t]), s]                  regressors (sp/s); e: the embedding, frozen
    x[t+1] = (1 - a) x[t] + a Theta z[t] + sqrt(a) noise xi,   Theta = [W_rec, W_in, b]
    err    = f(x[t+1]) - y[t+1]                    recorded units, y: the trial's rates
    K      = P Z^T (I + Z P Z^T)^-1,   P <- P - K Z P,   Theta_rec <- Theta_rec - err^T K^T

``Z`` stacks the ``force.batch_trials`` trials that run side by side with shared weights
(one block RLS update of rank ``batch_trials``; 1 = trial by trial, CURBD's rank-1 update).
``P`` starts as ``I / (alpha s^2)`` (``I / alpha`` for regressors in units of ``s``) and is
shared by all rows (every row sees the same regressors); with ``train_input: false`` only
``W_rec`` is trained (``z = r``).  The error is in rates, as CURBD's: it treats the rate as
linear in ``Theta`` with gain 1 while the true gain ``a f'`` is <= 1, so a step under-corrects
(the 1/a-scaled error overshot and diverged on a teacher network).  Hidden units have no
target: their rows keep their initial weights (a reservoir); their rates are regressors.

**Dale's law.**  The RLS iterate is the *effective* matrix (``W[:, E] >= 0``, ``W[:, I] <= 0``,
zero diagonal).  After every update each wrong-signed entry (and the self-connection) is
first moved to 0 in the metric of ``P^-1`` (:func:`transfer`: the weights that are correlated
with it in the data seen so far take over its share of the current; clipping alone lost that
share and diverged), then the iterate is projected onto the sign-constrained set exactly
(:func:`project_dale`, the Euclidean projection: clip, zero the diagonal).  So after every
update the iterate equals the model's ``|W| * sign(pre) * (1 - I)``; it is stored as the
magnitudes ``W * sign(pre)``.  The E/I masks are the model's (static).  Each pass logs the
worst constraint violation seen after any update (``dale_violation``, 0 when it holds).

pVar as CURBD: ``1 - ||Y - R||^2 / (n * var(Y))`` over the valid (trial, bin, recorded
neuron) entries, ``var`` pooled over all of them; ``pvar_train`` from the rates of the
training pass (online), ``pvar_val`` from the noise-free validation run.  ``val_correlation``,
``val_loss`` and its terms are the BPTT fit's (:mod:`.rnn_losses`), so logs compare.

State: params, ``P`` and the PRNG key.  The committed run handed back to
:func:`~.rnn_fit.run_rnn_fit` has the BPTT state's tree (its Adam / balancer parts are the
untouched initial ones), because ``--resume`` reads ``checkpoints/*.npz`` with that
template; the full FORCE state (with ``P``) goes through a second :class:`~.rnn_state.Saver`
into ``checkpoints/rls/`` at the same moments and is what a resumed run continues from.
"""
from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from neurodsl.compile import attention as A
from neurodsl.compile.rate_rnn import NONLINEARITIES, effective_w_rec, simulate
from neurodsl.errors import Location

from .checkpoint import StopSignals, atomic_write_text
from .rnn_losses import pooled_correlation, smoothing_matrix, total_loss
from .rnn_state import DivergedError, FitRun, Saver, resume_run


@dataclass(frozen=True)
class ForceConfig:
    """Static FORCE settings (from ``training.force``)."""

    alpha: float = 1.0
    update_every: int = 1
    train_input: bool = True
    batch_trials: int = 1
    shuffle: bool = True

    @classmethod
    def from_spec(cls, f) -> "ForceConfig":
        return cls(f.alpha, f.update_every, f.train_input, f.batch_trials, f.shuffle)


def project_dale(w: jnp.ndarray, sign: jnp.ndarray) -> jnp.ndarray:
    """Euclidean projection of effective weights (rows post, columns pre) onto Dale's set.

    ``w`` has ``len(sign)`` columns whose row ``i`` is unit ``i``: E columns >= 0, I columns
    <= 0, no self-connection."""
    n_rows, n = w.shape
    w = jnp.where(sign[None, :] > 0, jnp.maximum(w, 0.0), jnp.minimum(w, 0.0))
    return w * (1.0 - jnp.eye(n_rows, n, dtype=w.dtype))


def transfer(theta, P, sign):
    """Move each wrong-signed recurrent weight (and the self-connection) to 0 in the metric of
    ``P^-1`` (the RLS posterior): ``theta_i -= theta_ij P[j] / P[jj]``, one column at a time, so
    the weights correlated with it in the data take over its share of the current."""
    m = P.shape[0]
    rows = jnp.arange(theta.shape[0])

    def body(j, th):
        v = th[:, j]
        bad = jnp.where(sign[j] > 0, v < 0, v > 0) | (rows == j)
        c = jnp.where(bad, v / P[j, j], 0.0)
        return th.at[:, :m].add(-c[:, None] * P[j][None, :])

    return jax.lax.fori_loop(0, len(sign), body, theta)


def rls_update(theta, P, z, err, sign):
    """One block RLS step: ``z`` (B, M) regressors, ``err`` (B, rows) a-priori errors of ``theta``
    (rows, >= M columns; the first ``len(sign)`` are the recurrent weights of units 0..rows-1),
    then :func:`transfer` and the Euclidean projection :func:`project_dale` (exact constraint)."""
    m = P.shape[0]
    pz = P @ z.T                                                   # (M, B)
    s = jnp.eye(z.shape[0], dtype=P.dtype) + z @ pz
    k = jnp.linalg.solve(s, pz.T).T                                # (M, B)
    P = P - k @ pz.T
    P = 0.5 * (P + P.T)
    theta = transfer(theta.at[:, :m].add(-err.T @ k.T), P, sign)
    return theta.at[:, :len(sign)].set(project_dale(theta[:, :len(sign)], sign)), P


def theta_of(params, cfg) -> jnp.ndarray:
    """``[W_rec (Dale applied), W_in, b]`` (N, N + D + 1): the current is ``theta @ [r, s e, s]``."""
    return jnp.concatenate([effective_w_rec(params, cfg), params["w_in"], params["b"][:, None]], axis=1)


def params_of(theta, params, cfg) -> dict:
    """Write the recorded units' rows of ``theta`` back (W_rec as magnitudes) into ``params``."""
    n, rec = cfg.n_units, cfg.n_recorded
    sign = jnp.asarray(cfg.sign, theta.dtype)
    rows = (jnp.arange(n) < rec)[:, None]
    d = params["w_in"].shape[1]
    return {**params, "w_rec": jnp.where(rows, theta[:, :n] * sign[None, :], params["w_rec"]),
            "w_in": jnp.where(rows, theta[:, n:n + d], params["w_in"]),
            "b": jnp.where(rows[:, 0], theta[:, n + d], params["b"])}


def n_regressors(cfg, fc: ForceConfig, emb_dim: int) -> int:
    return cfg.n_units + (emb_dim + 1 if fc.train_input else 0)


def init_state(params, cfg, fc: ForceConfig, key) -> dict:
    """``P = I / (alpha s^2)``: ``alpha`` is the ridge of regressors divided by the rate scale ``s``
    (O(1) values, as CURBD's tanh rates), whatever the data's rates."""
    m = n_regressors(cfg, fc, params["w_in"].shape[1])
    p0 = jnp.eye(m, dtype=params["w_rec"].dtype) / (fc.alpha * cfg.scale ** 2)
    return {"params": params, "P": p0, "key": key}


def _trial_batch(theta, P, x0, e, y, valid, xi, cfg, fc: ForceConfig):
    """Run B trials side by side with RLS updates; returns theta, P and error statistics."""
    f = NONLINEARITIES[cfg.nonlinearity][0]
    a, rec, m = cfg.alpha, cfg.n_recorded, P.shape[0]
    sign = jnp.asarray(cfg.sign, theta.dtype)
    s = jnp.asarray(cfg.scale, theta.dtype)
    ones = jnp.full((x0.shape[0], 1), s, theta.dtype)
    err0 = (f(x0)[:, :rec] - y[0]) * valid[0][:, None]

    def step(carry, xs):
        x, theta, P, sse, worst = carry
        t, e_t, y_t, v_t, xi_t = xs
        z = jnp.concatenate([f(x), e_t, ones], axis=1)
        x = (1.0 - a) * x + a * (z @ theta.T) + xi_t
        err = (f(x)[:, :rec] - y_t) * v_t[:, None]

        def upd(tp):
            th, p = tp
            th_rec, p = rls_update(th[:rec], p, z[:, :m] * v_t[:, None], err, sign)
            return th.at[:rec].set(th_rec), p

        theta, P = jax.lax.cond((t + 1) % fc.update_every == 0, upd, lambda tp: tp, (theta, P))
        w = theta[:rec, :len(sign)]
        bad = jnp.maximum(jnp.max(jnp.where(sign > 0, -w, w)), jnp.max(jnp.abs(jnp.diagonal(w))))
        return (x, theta, P, sse + (err ** 2).sum(), jnp.maximum(worst, bad)), None

    ts = jnp.arange(e.shape[0] - 1)
    zero = jnp.zeros((), theta.dtype)
    carry0 = (x0, theta, P, (err0 ** 2).sum(), zero - 1.0)
    (_, theta, P, sse, worst), _ = jax.lax.scan(step, carry0, (ts, e[:-1], y[1:], valid[1:], xi[:-1]))
    return theta, P, sse, worst


def make_pass(cfg, fc: ForceConfig, n_train: int):
    """jit-compiled ``pass(state, train, table) -> (state, metrics)``: one RLS pass over the
    training trials (``train``: index (K, T), target (K, T, rec), valid (K, T))."""
    b = min(fc.batch_trials, n_train)
    n_b = max(1, n_train // b)

    def one_pass(state, train, table):
        key, k_perm, k_noise = jax.random.split(state["key"], 3)
        order = jax.random.permutation(k_perm, n_train) if fc.shuffle else jnp.arange(n_train)
        order = order[:n_b * b].reshape(n_b, b)
        params = state["params"]
        dt = params["w_rec"].dtype
        e_tab = cfg.scale * A.embed(cfg.embedding, params, table, cfg.heads)
        x0 = jnp.broadcast_to(cfg.scale * params["h0"], (b, cfg.n_units)).astype(dt)
        t_len = train["index"].shape[1]

        def batch(carry, xs):
            theta, P = carry
            idx, k = xs
            e = jnp.take(e_tab, train["index"][idx].T, axis=0)                  # (T, B, D)
            xi = jax.random.normal(k, (t_len, b, cfg.n_units), dt) * (np.sqrt(cfg.alpha) * cfg.noise)
            y, v = jnp.swapaxes(train["target"][idx], 0, 1), train["valid"][idx].T
            theta, P, sse, worst = _trial_batch(theta, P, x0, e, y, v, xi, cfg, fc)
            return (theta, P), (sse, worst)

        (theta, P), (sse, worst) = jax.lax.scan(batch, (theta_of(params, cfg), state["P"]),
                                                (order, jax.random.split(k_noise, n_b)))
        used = jnp.take(train["valid"], order.reshape(-1), axis=0)
        n = jnp.maximum(used.sum() * cfg.n_recorded, 1.0)
        mets = {"train_mse": sse.sum() / n, "dale_violation": worst.max(),
                "p_trace": jnp.trace(P) / P.shape[0]}
        return {"params": params_of(theta, params, cfg), "P": P, "key": key}, mets

    return jax.jit(one_pass), n_b, b


def pvar(model, target, valid) -> jnp.ndarray:
    """CURBD's pVar, ``1 - ||Y - R||^2 / (n var(Y))``, over valid (trial, bin, neuron) entries."""
    w = jnp.broadcast_to(valid[..., None], target.shape)
    n = jnp.maximum(w.sum(), 1.0)
    mu = (target * w).sum() / n
    var = (((target - mu) ** 2) * w).sum() / n
    return 1.0 - (((model - target) ** 2) * w).sum() / (n * jnp.maximum(var, 1e-12))


def smooth_targets(rates: np.ndarray, valid: np.ndarray, sigma_bins: float) -> np.ndarray:
    """Each trial's rates smoothed in time (Gaussian, normalised over valid bins)."""
    if sigma_bins <= 0:
        return rates
    k = smoothing_matrix(rates.shape[1], sigma_bins)
    num = np.einsum("st,ktn->ksn", k, rates * valid[..., None])
    den = valid @ k.T
    return np.where(den[..., None] > 1e-9, num / np.maximum(den, 1e-9)[..., None], 0.0).astype(rates.dtype)


class ForceEngine:
    """The compiled pass and validation of one Trainer (:class:`~.rnn_fit.Trainer`)."""

    def __init__(self, tr, loaded):
        fs = loaded.spec.training.force
        self.tr, self.fc, cfg, d = tr, ForceConfig.from_spec(fs), tr.cfg, tr.data
        dtype = tr.table.dtype
        rec = cfg.n_recorded
        y = smooth_targets(d.rates[d.train], d.valid[d.train], fs.target_smooth.internal / d.bin_ms)
        self.train = {"index": jnp.asarray(d.index[d.train]), "target": jnp.asarray(y[..., :rec], dtype),
                      "valid": jnp.asarray(d.valid[d.train], dtype)}
        self.pass_fn, self.n_batches, self.batch = make_pass(cfg, self.fc, len(d.train))
        va, st, lc, table = tr.val_arrays, tr.st, tr.loss_cfg, tr.table

        def validate(params):
            loss, parts = total_loss(params, cfg, table, va, st, lc, None, 0.0)
            rv = simulate(params, cfg, table, va["index"], None, 0.0)[..., :rec]
            r = pooled_correlation(rv, va["target"], va["valid"])
            return {"val_loss": loss, **parts, "val_correlation": jnp.nanmean(r), "r_neuron": r,
                    "pvar_val": pvar(rv, va["target"], va["valid"])}
        self.validate = jax.jit(validate)
        v = np.broadcast_to(d.valid[d.train][..., None], y[..., :rec].shape) > 0
        self.var_y = float(np.var(np.asarray(y[..., :rec], np.float64)[v]))  # pvar_train's denominator
        self.h0_from_data = fs.h0_from_data

    def fresh_state(self, params, key) -> dict:
        """FORCE state before pass 1 (h0 from the data when ``h0_from_data``)."""
        cfg = self.tr.cfg
        if self.h0_from_data:
            y0, v0 = np.asarray(self.train["target"][:, 0], np.float64), np.asarray(self.train["valid"][:, 0])
            mean0 = (y0 * v0[:, None]).sum(0) / max(v0.sum(), 1.0)
            finv = NONLINEARITIES[cfg.nonlinearity][1]
            h0 = np.asarray(params["h0"], np.float64).copy()
            h0[:cfg.n_recorded] = finv(mean0) / cfg.scale
            params = {**params, "h0": jnp.asarray(h0, params["h0"].dtype)}
        return init_state(params, cfg, self.fc, key)


def _rls_saver(saver: Saver) -> Saver:
    return Saver(saver.ck / "rls", saver.fp, saver.spec_dict, saver.seed, saver.name)


def _committed(run: FitRun, state0: dict) -> FitRun:
    """The FORCE run in the BPTT state's tree (what run_rnn_fit saves and resumes)."""
    st = {"params": run.state["params"], "opt": state0["opt"], "bal": state0["bal"], "key": run.state["key"]}
    return FitRun(run.epoch, st, run.log, run.best)


def _start(eng: ForceEngine, run: FitRun, saver: Saver, loaded) -> FitRun:
    """Fresh FORCE run, or the one saved in checkpoints/rls/ beside the resumed checkpoint."""
    if run.epoch == 0:
        return FitRun.fresh(eng.fresh_state(run.state["params"], run.state["key"]))
    like = init_state(run.state["params"], eng.tr.cfg, eng.fc, run.state["key"])
    rls = _rls_saver(saver)
    frun = resume_run(rls.ck, like, rls.fp, rls.spec_dict, loaded)
    if frun.epoch != run.epoch:
        warnings.warn(f"--resume: the RLS state in {rls.ck} is from epoch {frun.epoch}, the checkpoint "
                      f"from epoch {run.epoch}; continuing from epoch {frun.epoch} (complete state)", stacklevel=2)
    return frun


def _entry(eng: ForceEngine, epoch: int, met: dict, val: dict, e0: float) -> dict:
    e = {"epoch": epoch, "train_loss": float(met["train_mse"]),
         "pvar_train": 1.0 - float(met["train_mse"]) / max(eng.var_y, 1e-12),
         "val_loss": float(val["val_loss"]), "val_correlation": float(val["val_correlation"]),
         "pvar_val": float(val["pvar_val"]), "rls_p_trace": float(met["p_trace"]),
         "dale_violation": max(float(met["dale_violation"]), 0.0),
         **{k: float(val[k]) for k in ("L_neuron", "L_trial", "L_reg")}}
    e["epoch_time"] = time.perf_counter() - e0
    return e


def _check(entry: dict, state: dict, run: FitRun, loaded) -> None:
    """:class:`DivergedError` when a pass left a non-finite error, loss, parameter or P."""
    leaves = jax.tree_util.tree_leaves(jax.device_get({"p": state["params"], "P": state["P"]}))
    bad = [k for k in ("train_loss", "val_loss") if not np.isfinite(entry[k])]
    if not all(np.isfinite(np.asarray(x)).all() for x in leaves):
        bad.append("parameters or P")
    if bad:
        kept = f"training_log.json ends at epoch {run.epoch}" if run.epoch else "no results written"
        raise DivergedError(f"FORCE diverged in pass {entry['epoch']}: non-finite {', '.join(bad)}; "
                            f"stopped, nothing non-finite kept ({kept})", field="training.force.alpha",
                            expected=f"a larger alpha than {loaded.spec.training.force.alpha:g}",
                            location=Location(loaded.path))


def train_force(tr, loaded, run: FitRun, saver: Saver, out: Path, n_epochs: int,
                progress: bool) -> tuple[FitRun, str | None, bool]:
    """Passes ``run.epoch + 1 .. n_epochs`` (the contract of :func:`~.rnn_fit._train`).

    SIGINT/SIGTERM stop after the current pass (:class:`~.checkpoint.StopSignals`); each pass
    is committed in one assignment; early stopping as for BPTT (validation correlation)."""
    from neurodsl.progress import progress_bar
    from .rnn_fit import _detail
    t = loaded.spec.training
    eng = ForceEngine(tr, loaded)
    tr.n_batches, tr.batch_size = eng.n_batches, eng.batch  # what the report names
    frun, state0 = _start(eng, run, saver, loaded), tr.state0
    bar = progress_bar(total=n_epochs, initial=frun.epoch, desc=f"force {loaded.spec.name}", unit="pass",
               disable=not progress, leave=False, dynamic_ncols=True)
    stopped = False
    with StopSignals() as stop:
        try:
            for epoch in range(frun.epoch + 1, n_epochs + 1):
                e0 = time.perf_counter()
                state, met = eng.pass_fn(frun.state, eng.train, tr.table)
                val = jax.device_get(eng.validate(state["params"]))
                entry = _entry(eng, epoch, jax.device_get(met), val, e0)
                _check(entry, state, frun, loaded)
                if epoch % t.detail_every == 0:
                    entry.update(_detail(tr, state["params"], val["r_neuron"]))
                frun = frun.advance(epoch, state, entry)
                _persist(frun, state0, saver, out, t)
                bar.update(1)
                bar.set_postfix(r=f"{entry['val_correlation']:.3f}", best=f"{frun.best['corr']:.3f}")
                if epoch % t.line_every == 0:
                    bar.write(f"pass {epoch:5d}  mse {entry['train_loss']:.3f}  pVar {entry['pvar_train']:.3f} "
                              f"(val {entry['pvar_val']:.3f})  r {entry['val_correlation']:.3f} (best "
                              f"{frun.best['corr']:.3f} @ {frun.best['epoch']})  {entry['epoch_time'] * 1e3:.0f} ms")
                if frun.best["since"] >= t.early_stopping_patience:
                    stopped = True
                    break
                if stop.hit:
                    break
        except KeyboardInterrupt:
            stop.hit = stop.hit or "SIGINT"
        finally:
            bar.close()
    _rls_saver(saver).save("latest.npz", frun)  # run_rnn_fit saves latest.npz of this same run next
    if stop.hit:
        atomic_write_text(out / "training_log.json", json.dumps(list(frun.log), indent=1))
    return _committed(frun, state0), stop.hit, stopped


def _persist(frun: FitRun, state0: dict, saver: Saver, out: Path, t) -> None:
    run = _committed(frun, state0)
    if run.improved:
        saver.best(run)
    atomic_write_text(out / "training_log.json", json.dumps(list(run.log), indent=1))
    if run.epoch % t.checkpoint_every == 0:
        rls = _rls_saver(saver)
        for name in (f"epoch_{run.epoch:05d}.npz", "latest.npz"):
            rls.save(name, frun)
            saver.save(name, run)

"""Curvature of the training loss at the fitted point, on fixed windows of data (issue 13; jax side).

:func:`identifiability` evaluates, for ``n_windows`` consecutive update windows of one epoch's data
(``setup.provider(epoch, u)``, deterministic: recorded teacher spikes, or Poisson inputs drawn from
(seed, epoch, update); the state carried from window to window from ``setup.initial_V(epoch)``):

* the loss of each window by the engine's own terms (:data:`~.spiking_losses.LOSSES`, the spec's
  weights) on the window's statistics (rates, ISI moments, van Rossum distance over the whole
  window; ``membrane`` over its last chunk);
* its Gauss-Newton curvature ``H_w = 2 J' J`` in the trained log-parameters and gradient
  ``g_w = 2 J' r``, every active term written as a sum of squared residuals r (rate per neuron or
  per type, CV per type, van Rossum per step/trial/neuron of the filtered difference, silent
  ``sqrt(alpha / N) exp(-n_i / 2)``, membrane, weight ratio).  ``J`` is the surrogate-gradient
  Jacobian (forward mode, one tangent per parameter), with the state entering each chunk detached
  as in training: the Heaviside forward has no derivative of its own, so this is the curvature of
  the objective the fit descends;
* loss profiles along each factor (forward only, the true loss: the others fixed at the fitted
  values, state chained under the changed parameters) on the first ``profile_windows`` windows.

:func:`neurodsl.analysis.identifiability.curvature_report` turns these into the report.
"""
from __future__ import annotations

import numpy as np

from neurodsl.analysis.identifiability import curvature_report, factor_names

from . import spiking_losses as SL
from .fit_objectives import neuron_cv

PROFILE_CHANGES = (-0.10, -0.05, -0.02, 0.0, 0.02, 0.05, 0.10)
ACC = ("count", "isi0", "isi1", "isi2")   # window sums: tangents add up over chunks
LAST = ("sV", "sV2")                      # per chunk: the last chunk's


def _observer(ctx):
    base = SL.make_observer(ctx)

    def observe(ob, out, teacher_t):
        ob, _ = base(ob, out, teacher_t)
        if not ctx.has_teacher:
            return ob, {}
        return ob, {"vr_diff": (ob["vr_s"][0] - ob["vr_s"][1]) - (ob["vr_t"][0] - ob["vr_t"][1])}

    return observe


def _chunk_fn(model, ctx):
    observe = _observer(ctx)

    def chunk(params, carry, d):
        obs = SL.reset_chunk(carry["obs"])
        force = d["teacher"] if ctx.teacher_forcing else None
        (st, obs), out = model.run(params, carry["model"], d["inputs"], observe, obs, d.get("teacher"),
                                   force=force, outputs=("vr_diff",))
        return {"model": st, "obs": obs}, out.get("vr_diff")

    return chunk


def _residuals(ctx, w: dict, obs: dict, eff: dict):
    """Residuals r of every active term but van Rossum, sum(r^2) = sum_k w_k LOSSES[k] (1-d)."""
    import jax.numpy as jnp
    out = []
    if w.get("rate"):
        target = SL.neuron_rates(ctx, obs, "tcount") if ctx.has_teacher else jnp.asarray(ctx.rate_target)
        t = np.asarray(ctx.type_rate_target)
        if ctx.rate_mode == "neuron":
            r = (SL.neuron_rates(ctx, obs) - target) / np.maximum(t[ctx.type_idx], 1e-3) / np.sqrt(len(ctx.type_idx))
        else:
            r_t = SL._type_mean(ctx, SL.neuron_rates(ctx, obs))
            ref = SL._type_mean(ctx, target) if ctx.has_teacher else jnp.asarray(t)
            ok = [k for k in range(2) if (ctx.type_idx == k).any() and (ctx.has_teacher or np.isfinite(t[k]))]
            r = jnp.stack([(r_t[k] - ref[k]) / t[k] for k in ok]) if ok else jnp.zeros(0)
        out.append(np.sqrt(w["rate"]) * r)
    if w.get("cv"):
        cv, wt = neuron_cv(obs)
        m, t = SL._type_mean(ctx, cv, wt), np.asarray(ctx.cv_target)
        ok = [k for k in range(2) if np.isfinite(t[k]) and (ctx.type_idx == k).any()]
        if ok:
            out.append(np.sqrt(w["cv"]) * jnp.stack([m[k] - t[k] for k in ok]))
    if w.get("silent"):
        out.append(np.sqrt(w["silent"] * ctx.alpha / len(ctx.type_idx)) * jnp.exp(-0.5 * obs["count"].sum(0)))
    if w.get("membrane"):
        n = jnp.maximum(obs["chunk_steps"], 1)  # as membrane_loss, before its square
        mean = obs["sV"] / n
        std = jnp.sqrt(jnp.maximum(obs["sV2"] / n - mean * mean, 1e-9))
        ratio = jnp.mean(std / jnp.maximum(ctx.V_th - mean, 1.0))
        out.append(np.sqrt(w["membrane"]) * (ratio - ctx.threshold_ratio)[None])
    if w.get("weight_ratio"):
        out.append(np.sqrt(w["weight_ratio"]) * (jnp.log(jnp.sum(eff["rec_exc"]) / jnp.maximum(
            jnp.sum(eff["ff"]), 1e-12) / ctx.weight_ratio))[None])
    return jnp.concatenate([jnp.ravel(x) for x in out]) if out else jnp.zeros(0)


def make_window_fns(setup):
    """jitted ``gn(params, carry, data) -> (H, g, loss, loss_gn, carry)`` for one window
    (data (C, T, ...)) and ``loss(params, carry, data) -> (loss, carry)`` (forward only)."""
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree
    model, ctx = setup.model, setup.ctx
    w = {k: float(v) for k, v in setup.weights.items() if v}
    chunk = _chunk_fn(model, ctx)
    norm = SL.van_rossum_norm("double_exp", tau_rise_ms=ctx.vr_rise, tau_decay_ms=ctx.vr_decay)

    def official(params, obs):
        eff = SL.effective_for_losses(model, params)
        return sum(wk * SL.LOSSES[k](ctx, obs, eff) for k, wk in w.items())

    def loss(params, carry, data):
        carry = {**carry, "obs": SL.reset_window(carry["obs"])}
        carry, _ = jax.lax.scan(lambda c, d: (chunk(params, c, d)[0], None), carry, data)
        return official(params, carry["obs"]), carry

    def gn(params, carry, data):
        flat, unravel = ravel_pytree(params)
        basis = jax.vmap(unravel)(jnp.eye(flat.size, dtype=flat.dtype))
        carry = {**carry, "obs": SL.reset_window(carry["obs"])}
        P = flat.size

        def body(acc, d):
            c, tan, vv, vr, sq = acc
            f = lambda p: chunk(p, c, d)  # noqa: E731 - c enters as a constant: detached, as in training
            (c2, diff), (c_t, diff_t) = jax.vmap(lambda v: jax.jvp(f, (params,), (v,)), out_axes=(None, 0))(basis)
            tan = {**{k: tan[k] + c_t["obs"][k] for k in ACC}, **{k: c_t["obs"][k] for k in LAST}}
            if diff is not None:
                vv = vv + jnp.einsum("ptbn,qtbn->pq", diff_t, diff_t)
                vr, sq = vr + jnp.einsum("tbn,ptbn->p", diff, diff_t), sq + jnp.sum(diff * diff)
            return (c2, tan, vv, vr, sq), None

        z = jnp.zeros((P,) + carry["obs"]["count"].shape, flat.dtype)
        acc0 = (carry, {k: z for k in ACC + LAST}, jnp.zeros((P, P), flat.dtype), jnp.zeros(P, flat.dtype),
                jnp.zeros((), flat.dtype))
        (carry, tan, vv, vr, sq), _ = jax.lax.scan(body, acc0, data)
        obs = carry["obs"]
        keys = ACC + LAST

        def res(acc_vals, p):
            o = {**obs, **dict(zip(keys, acc_vals))}
            return _residuals(ctx, w, o, SL.effective_for_losses(model, p))

        vals = tuple(obs[k] for k in keys)
        r, Jr = jax.vmap(lambda ta, v: jax.jvp(res, (vals, params), (ta, v)), in_axes=(0, 0),
                         out_axes=(None, 0))(tuple(tan[k] for k in keys), basis)
        c_vr = 0.0
        if w.get("van_rossum") and ctx.has_teacher:
            b, n = obs["count"].shape
            c_vr = w["van_rossum"] * ctx.dt / norm / (SL.window_seconds(obs) * ctx.dt * 1e-3) / (b * n)
        H = 2 * (Jr @ Jr.T + c_vr * vv)
        g = 2 * (Jr @ r + c_vr * vr)
        return H, g, official(params, obs), jnp.sum(r * r) + c_vr * sq, carry

    return jax.jit(gn), jax.jit(loss)


def _windows(setup, epoch: int, n: int):
    return [setup.provider(epoch, u % setup.updates_per_epoch) for u in range(n)]


def measure(setup, params, *, epoch: int = 0, n_windows: int = 8, profile_windows: int = 4,
            changes=PROFILE_CHANGES) -> dict:
    """Per-window curvature, gradient and loss at ``params`` plus profiles (numpy; see the module)."""
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree
    from .spiking_train import initial_carry
    gn, loss = make_window_fns(setup)
    data = _windows(setup, epoch, n_windows)
    carry = initial_carry(setup, epoch)
    H, G, L, L_gn = [], [], [], []
    for d in data:
        h, g, lo, lo_gn, carry = jax.device_get(gn(params, carry, d))
        H.append(h), G.append(g), L.append(float(lo)), L_gn.append(float(lo_gn))
    flat, unravel = ravel_pytree(params)
    dtype, flat = flat.dtype, np.asarray(flat, np.float64)

    def mean_loss(x):
        p, c, tot = unravel(jnp.asarray(x, dtype)), initial_carry(setup, epoch), 0.0
        for d in data[:profile_windows]:
            lo, c = loss(p, c, d)
            tot += float(lo)
        return tot / max(min(profile_windows, len(data)), 1)

    at_fit = mean_loss(flat)
    prof = []
    for i in range(flat.size):
        row = []
        for ch in changes:
            x = flat.copy()
            x[i] += np.log1p(ch)
            row.append(at_fit if ch == 0 else mean_loss(x))
        prof.append(row)
    return {"H": np.asarray(H, np.float64), "g": np.asarray(G, np.float64), "loss": np.asarray(L),
            "loss_gn": np.asarray(L_gn), "profile_loss": np.asarray(prof), "profile_at_fit": at_fit,
            "changes": list(changes)}


def identifiability(setup, params, *, true=None, epoch: int = 0, n_windows: int = 8, profile_windows: int = 4,
                    max_params: int = 64, **kw) -> dict:
    """The report (:func:`~neurodsl.analysis.identifiability.curvature_report`) at ``params``;
    ``true``: the true parameters (same keys) for errors and verdicts.  Parameters with more than
    ``max_params`` entries are not analysed (a dense curvature): the report says so."""
    keys = sorted(params)
    sizes = {k: int(np.size(params[k])) for k in keys}
    if sum(sizes.values()) > max_params:
        return {"skipped": f"{sum(sizes.values())} trained parameters (> {max_params}): no dense curvature"}
    names = [n for k in keys for n in factor_names(k, np.shape(params[k]))]
    n_windows = max(1, min(n_windows, setup.updates_per_epoch))
    m = measure(setup, params, epoch=epoch, n_windows=n_windows, profile_windows=profile_windows)
    log_err = None
    if true is not None:
        log_err = np.concatenate([(np.asarray(params[k], np.float64) - np.asarray(true[k], np.float64)).ravel()
                                  for k in keys])
    profiles = {n: {"relative_change": m["changes"], "loss": m["profile_loss"][i].tolist(),
                    "loss_at_fit": m["profile_at_fit"]} for i, n in enumerate(names)}
    t = setup.training
    return curvature_report(
        m["H"], m["g"], m["loss"], names, log_error=log_err, profiles=profiles, truth=true is not None,
        parameters=keys, method="Gauss-Newton (surrogate-gradient Jacobian, forward mode) of the spec's loss "
        "terms over each window; chunk-entering state detached as in training",
        window_steps=int(t.chunks_per_update * t.chunk_size), epoch=epoch,
        profile_windows=min(profile_windows, n_windows),
        loss_sum_of_squares=m["loss_gn"].tolist(), **kw)


def write_report(setup, params: dict, out, *, true=None, epoch: int = 0, progress: bool = False, **kw) -> dict:
    """:func:`identifiability` at ``params`` on ``epoch``'s windows plus ``out/figures/curvature.png``;
    prints the per-factor verdicts with ``progress``."""
    from pathlib import Path
    from neurodsl.analysis.identifiability import curvature_figure, verdict_lines
    from neurodsl.analysis.plots import save
    rep = identifiability(setup, params, true=true, epoch=epoch, **kw)
    if "skipped" in rep:
        return rep
    title = (f"{setup.name}: identifiability at the fitted point ({rep['windows']} windows of "
             f"{rep['window_steps']} steps)")
    save(curvature_figure(rep, title), Path(out) / "figures" / "curvature.png")
    if progress:
        print("identifiability (curvature of the loss at the fit):\n" + "\n".join(verdict_lines(rep)))
    return rep

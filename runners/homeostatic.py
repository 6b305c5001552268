"""``neurodsl homeostatic SPEC``: tune the olfactory network toward target statistics (issue 6b).

:func:`run_homeostatic` compiles the spec's OlfactoryNetwork with its structure
(``network.structure`` or the generator) into the differentiable model
on the one core (:mod:`neurodsl.compile.olfactory_train`), drives it with Poisson mitral cells at
``inputs.baseline`` (fresh draws per update, derived from (seed, epoch, update)),
trains the ``training.trainable`` parameters with the engine
(:mod:`neurodsl.runners.spiking_train`; ``training.method`` eprop / d_rtrl: online, by
:class:`neurodsl.runners.eprop.OnlineSpikingUpdate`, the eligibility traces in the checkpoints;
the evaluation and curvature report then use the default layout, same spikes) and writes to ``DIR``:

* ``network_structure.npz``: the tuned structure, loadable by
  :func:`neurodsl.io.structure.load_structure` (the teacher reads it).  Trained
  weights replace ``rec_weight``/``ff_weight``; the ``scaling`` array holds the
  *effective* tuned scaling (the input structure's scaling times the spec's
  ``network.scaling``), so a teacher using it should leave ``network.scaling`` empty;
* ``homeostatic_summary.json``: targets, before/after statistics, relative errors and
  ``identifiability``: which combinations of factors the targets fix (the curvature of the loss
  at the tuned point on held-out inputs: eigen-directions, flat ones, per factor "fixed by the
  targets" / "not identifiable from these targets"; :mod:`.identifiability`);
* ``figures/before_after_rates.png``, ``figures/curvature.png`` (eigen-spectrum, eigenvectors,
  loss profiles), ``figures/training_curves.png`` (+ the engine's
  ``figures/epoch_XXXX/``), ``metrics.csv``/``metrics.json``, ``checkpoints/``, ``spec.yaml``.

The first three only once training completed: SIGINT/SIGTERM save a checkpoint, say how to
``--resume`` and leave no structure from half-trained parameters; a resume must use the same
spec (:mod:`.spiking_state`), a run without ``--resume`` starts fresh (checkpoints cleared).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from neurodsl.spec import LoadedSpec

from .checkpoint import atomic_write_text
from .spiking_state import interrupted, prepare_run
from .spiking_train import TrainSetup, evaluate, train

# written only when training completes (removed when a run starts)
FINAL_OUTPUTS = ("network_structure.npz", "homeostatic_summary.json", "figures/before_after_rates.png",
                 "figures/curvature.png")


def spec_structure(spec):
    from neurodsl.compile.generator import generate
    from neurodsl.io.structure import load_structure
    if spec.network.structure is not None:
        return load_structure(spec.network.structure)
    return generate(spec.network.generator, spec.seed)


def build_model(spec, structure, network=None, *, base_scaling=None, teacher_forcing: bool = False):
    """The olfactory network on the core, for training (:mod:`neurodsl.compile.olfactory_train`)."""
    import jax.numpy as jnp
    from neurodsl.compile.olfactory import effective_scaling
    from neurodsl.compile.olfactory_train import build_surrogate
    network = network or spec.network
    sg = spec.training.surrogate
    return build_surrogate(network, structure, spec.dt.internal,
                           base_scaling=effective_scaling(network, structure) if base_scaling is None else base_scaling,
                           dtype=jnp.float64 if spec.precision == "float64" else jnp.float32,
                           surrogate=sg.kind, scale=sg.scale, detach_reset=sg.detach_reset,
                           propagation=sg.propagation, recurrent_grad=sg.recurrent_grad,
                           trainable=spec.training.trainable, teacher_forcing=teacher_forcing,
                           online=getattr(spec.training, "method", "bptt") != "bptt")


def loss_context(spec, model, teacher_rates=None, cv_target=None, has_teacher=False):
    from .spiking_losses import LossContext
    tg, ls = spec.targets, spec.losses
    type_t = np.array([tg.E.rate.internal, tg.I.rate.internal])
    cv = np.array([np.nan if tg.E.cv is None else tg.E.cv, np.nan if tg.I.cv is None else tg.I.cv])
    if cv_target is not None:
        cv = np.asarray(cv_target, float)
    rate_n = type_t[model.type_idx] if teacher_rates is None else np.asarray(teacher_rates, float)
    if teacher_rates is not None:
        type_t = np.array([rate_n[model.type_idx == k].mean() if (model.type_idx == k).any() else np.nan
                           for k in range(2)])
    return LossContext(type_idx=model.type_idx, V_th=model.cells.V_th, dt=model.dt, rate_target=rate_n,
                       type_rate_target=type_t, rate_mode=ls.rate_mode, cv_target=cv, alpha=tg.alpha,
                       threshold_ratio=tg.threshold_ratio, weight_ratio=tg.weight_ratio,
                       vr_rise=ls.van_rossum_rise.internal, vr_decay=ls.van_rossum_decay.internal,
                       has_teacher=has_teacher)


def loss_weights(losses) -> dict[str, float]:
    return {k: getattr(losses, k) for k in ("rate", "cv", "van_rossum", "silent", "membrane", "weight_ratio")}


def homeostatic_setup(spec, structure=None, model=None) -> TrainSetup:
    from neurodsl.compile.connectivity import sample_values
    structure = structure if structure is not None else spec_structure(spec)
    model = model or build_model(spec, structure)
    t = spec.training
    B, C, T, n_in = t.batch, t.chunks_per_update, t.chunk_size, model.n_inputs
    p = spec.inputs.baseline.internal * spec.dt.internal * 1e-3

    def provider(epoch, update):
        rng = np.random.default_rng([spec.seed, 11, epoch, update])
        return {"inputs": rng.random((C, T, B, n_in), np.float32) < p}

    def initial_V(epoch):
        rng = np.random.default_rng([spec.seed, 12, epoch])
        return sample_values(spec.initial_V, B * model.n, rng, sign=0.0).reshape(B, model.n)

    return TrainSetup(model=model, params=model.init_params(t.trainable), ctx=loss_context(spec, model),
                      weights=loss_weights(spec.losses), provider=provider, initial_V=initial_V,
                      updates_per_epoch=t.updates_per_epoch or 5, training=t, tracking=spec.tracking,
                      seed=spec.seed, name=spec.name)


def evaluation_setup(spec, setup: TrainSetup) -> TrainSetup:
    """``setup`` with the model in the core's default layout for the forward evaluation and the
    curvature report (an online method trains the layout of :mod:`neurodsl.compile.online`: the
    same spikes, the parameters the same ``log_scaling``)."""
    from dataclasses import replace
    if spec.training.method == "bptt":
        return setup
    bptt = spec.model_copy(update={"training": spec.training.model_copy(update={"method": "bptt"})})
    return replace(setup, model=build_model(bptt, setup.model.structure))


def tuned_structure(model, params, **meta):
    eff = {k: np.asarray(v, np.float64) for k, v in model.effective(params).items()}
    return model.structure.with_weights(rec_weight=eff["rec_weight"], ff_weight=eff["ff_weight"],
                                        scaling=eff["scaling"], **meta)


def _stats_row(ev: dict) -> dict:
    return {k: ev[k] for k in ("rate_E", "rate_I", "cv_E", "cv_I", "active_fraction", "seconds")}


def before_after_figure(path: Path, before: dict, after: dict, type_idx, targets: dict) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    for k, t in enumerate("EI"):
        sel = np.asarray(type_idx) == k
        if not sel.any():
            continue
        hi = max(before["neuron_rate"][sel].max(), after["neuron_rate"][sel].max(), 1e-3)
        bins = np.linspace(0, hi, 30)
        ax[k].hist(before["neuron_rate"][sel], bins=bins, alpha=0.5, label="before")
        ax[k].hist(after["neuron_rate"][sel], bins=bins, alpha=0.5, label="after")
        ax[k].axvline(targets[t], color="k", ls="--", label="target")
        ax[k].set_title(f"{t}: {before[f'rate_{t}']:.2f} -> {after[f'rate_{t}']:.2f} Hz")
        ax[k].set_xlabel("rate (Hz)"), ax[k].set_ylabel(f"{t} neurons"), ax[k].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run_homeostatic(loaded: LoadedSpec, out_dir: str | Path, *, resume: bool = False, progress: bool = True,
                    max_updates: int | None = None, report_windows: int = 5, profile_windows: int = 3) -> dict:
    """Tune ``loaded.spec`` (kind homeostatic); returns the summary dict (also written as JSON).
    ``report_windows`` / ``profile_windows``: held-out update windows (epoch 10000's inputs, as the
    after-evaluation) of the identifiability report (:func:`.identifiability.write_report`).
    The structure, summary and before/after figure are written only when training completes
    (``max_updates`` counts as complete); an interrupted run returns ``{"interrupted": True, ...}``."""
    from dataclasses import replace
    from neurodsl.io.structure import save_structure
    from .simulate import configure_precision
    spec = loaded.spec
    configure_precision(spec.precision)
    out = Path(out_dir)
    record = prepare_run(loaded, out, resume, FINAL_OUTPUTS)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "spec.yaml", loaded.resolved_yaml)
    setup = replace(homeostatic_setup(spec), record=record, spec_path=loaded.path)
    t = spec.training
    n_eval = max(1, int(np.ceil(spec.n_steps / (t.chunk_size * t.chunks_per_update))))
    res = train(setup, out, resume=resume, progress=progress, max_updates=max_updates)
    if res.interrupted:
        return interrupted(loaded, out, "homeostatic", res, t.epochs * setup.updates_per_epoch)
    setup = evaluation_setup(spec, setup)
    before = evaluate(setup, setup.params, epoch=10_000, n_updates=n_eval)
    after = evaluate(setup, res.params, epoch=10_000, n_updates=n_eval)
    targets = {"E": spec.targets.E.rate.internal, "I": spec.targets.I.rate.internal}
    rel = {t: abs(after[f"rate_{t}"] - targets[t]) / targets[t] for t in "EI"}
    structure = tuned_structure(setup.model, res.params, homeostatic={
        "spec": spec.name, "trainable": spec.training.trainable, "updates": res.updates,
        "targets_hz": targets, "scaling_note": "effective scaling (structure x network.scaling)"})
    save_structure(structure, out / "network_structure.npz")
    from .spiking_train import plot_progress
    figs = [before_after_figure(out / "figures" / "before_after_rates.png", before, after,
                                setup.model.type_idx, targets)]
    if res.history:
        plot_progress(out, res.history[-1]["epoch"], res.history, after["neuron_rate"], setup.model.type_idx,
                      spec.training.keep_figures)
    from .identifiability import write_report
    ident = write_report(setup, res.params, out, epoch=10_000, progress=progress, n_windows=report_windows,
                         profile_windows=profile_windows)
    summary = {"name": spec.name, "n_neurons": setup.model.n, "n_inputs": setup.model.n_inputs,
               "trainable": spec.training.trainable, "updates": res.updates, "interrupted": res.interrupted,
               "targets": {"rate_E": targets["E"], "rate_I": targets["I"]},
               "before": _stats_row(before), "after": _stats_row(after),
               "relative_rate_error": rel, "scaling": np.asarray(structure.scaling).tolist(),
               "seconds_per_update": res.seconds_per_update, "best_loss": res.best_loss,
               "structure": str(out / "network_structure.npz"), "figures": [str(f) for f in figs],
               "identifiability": ident}
    atomic_write_text(out / "homeostatic_summary.json", json.dumps(summary, indent=1))
    if progress:
        print(f"homeostatic: rate E {before['rate_E']:.3f} -> {after['rate_E']:.3f} Hz (target {targets['E']}), "
              f"I {before['rate_I']:.3f} -> {after['rate_I']:.3f} Hz (target {targets['I']}); "
              f"wrote {out / 'network_structure.npz'}")
    return summary

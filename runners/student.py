"""``neurodsl fit-student SPEC``: fit a student network to a teacher's spike trains (issue 5).

The student is the teacher's network (same OlfactoryNetwork, structure and
connectivity mask, compiled by the one core: :mod:`neurodsl.compile.olfactory_train`), driven
by the teacher's recorded mitral spikes and started from the teacher simulator's own initial
state, with
``training.trainable`` (scaling | weights | recurrent | feedforward) initialised
from ``init`` (``teacher_perturbed``: log-normal perturbation of the teacher's
values with log-std ``sigma``; ``fresh``).  Loss terms and targets come from the
teacher: per-neuron rates, ISI CV per cell type, van Rossum distance to the
teacher's trains of the same trials, the teacher's weight ratio.

With ``teacher_forcing`` (default) the recurrent drive during training comes from the
teacher's recorded spikes (open loop, see StudentSpec: the projections deliver the teacher's
spikes through the teacher's event kernels):
the fit is then not at the mercy of chaotic divergence, and a planted 30 % perturbation
of the six scaling factors is recovered to < 1 % (closed loop: 2-7 %).

An epoch is one pass through the recording (``updates_per_epoch`` windows of
``chunks_per_update * chunk_size`` steps; default as many as fit) for a batch of
teacher trials (all when ``batch >= trials``, else a random subset per epoch
drawn from (seed, epoch)).  Writes to ``DIR``: ``student_summary.json``
(true vs recovered parameters: relative and log errors, the correlation only where the truth
varies; ``identifiability``: the curvature report of :mod:`.identifiability`), ``params.npz``
(``scaling``, ``rec_weight``, ``ff_weight``: initial, recovered, teacher),
``network_structure.npz`` (the student's), ``metrics.csv``/``.json``, ``checkpoints/``,
``figures/`` (``curvature.png``: eigen-spectrum, eigenvectors, loss profiles); ``neurodsl analyze student DIR`` draws the comparison dashboard.

params.npz, network_structure.npz, comparison.npz and the summary are written only once
training completed: SIGINT/SIGTERM save a checkpoint and say how to ``--resume``; a resume
must use the same spec, a run without ``--resume`` starts fresh (:mod:`.spiking_state`).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from neurodsl.errors import DataError, Location
from neurodsl.spec import LoadedSpec

from .checkpoint import atomic_write_text
from .homeostatic import loss_context, loss_weights, tuned_structure
from .spiking_state import interrupted, prepare_run
from .spiking_train import TrainSetup, train

# written only when training completes (removed when a run starts)
FINAL_OUTPUTS = ("params.npz", "network_structure.npz", "comparison.npz", "student_summary.json",
                 "figures/curvature.png")


class TeacherData:
    """A teacher folder: spec, structure, recorded events (structure order) and helpers."""

    def __init__(self, folder: str | Path, trials: int | None = None):
        from .teacher_folder import read_teacher_folder
        self.folder = Path(folder)
        self.spec, self.structure, ds = read_teacher_folder(self.folder)  # checked: runners/teacher_folder.py
        self.n_steps = int(ds.attrs["n_steps"])
        self.dt = float(ds.attrs["dt_ms"])
        if abs(self.dt - self.spec.dt.internal) > 1e-9:
            raise DataError("teacher.nc dt differs from its spec.yaml", location=Location(str(self.folder)))
        self.n_trials_all = int(ds.sizes["trial"])
        self.n_trials = min(trials or self.n_trials_all, self.n_trials_all)
        self.spk = tuple(ds[f"spike_{k}"].values.astype(np.int64) for k in ("trial", "step", "neuron"))
        self.inp = tuple(ds[f"input_spike_{k}"].values.astype(np.int64) for k in ("trial", "step", "channel"))

    def scaling(self) -> np.ndarray:
        from neurodsl.compile.olfactory import effective_scaling
        return effective_scaling(self.spec.network, self.structure)

    def initial_V(self) -> np.ndarray:
        """(all trials, N) core (E-then-I) order: the teacher simulator's own initial state
        (its ``init_state(trials, seed)``, as ``neurodsl teacher`` ran it)."""
        from neurodsl.compile.olfactory import build_olfactory
        net = build_olfactory(self.spec, self.structure, batch=self.n_trials_all).net
        net.init_state(self.n_trials_all, self.spec.seed)
        return np.concatenate([np.asarray(p.V.value) for p in net.populations.values()], axis=1)

    def dense(self, which: str, trials: np.ndarray, start: int, stop: int, inv: np.ndarray | None = None):
        """(stop - start, len(trials), n) bool spikes of ``which`` (spk | inp) in a window."""
        tr, st, idx = getattr(self, which)
        n = self.structure.n if which == "spk" else self.structure.n_inputs
        lo, hi = np.searchsorted(st, [start, stop])  # events are sorted by step
        tr, st, idx = tr[lo:hi], st[lo:hi], idx[lo:hi]
        pos = np.full(self.n_trials_all, -1)
        pos[trials] = np.arange(len(trials))
        keep = pos[tr] >= 0
        out = np.zeros((stop - start, len(trials), n), bool)
        cols = idx[keep] if inv is None else inv[idx[keep]]
        out[st[keep] - start, pos[tr[keep]], cols] = True
        return out

    def neuron_rates(self, trials: np.ndarray) -> np.ndarray:
        """(N,) Hz, structure order, over the whole recording of ``trials``."""
        tr, _, n = self.spk
        keep = np.isin(tr, trials)
        counts = np.bincount(n[keep], minlength=self.structure.n)
        return counts / (len(trials) * self.n_steps * self.dt * 1e-3)


def student_setup(spec, teacher: TeacherData) -> tuple[TrainSetup, dict]:
    import jax.numpy as jnp
    from neurodsl.compile.olfactory_train import TRAINABLE
    from .homeostatic import build_model
    t = spec.training
    model = build_model(spec.model_copy(update={"dt": teacher.spec.dt}), teacher.structure, teacher.spec.network,
                        base_scaling=teacher.scaling(), teacher_forcing=spec.teacher_forcing)
    K = teacher.n_trials
    B = min(t.batch, K)
    C, T = t.chunks_per_update, t.chunk_size
    per_epoch = max(1, teacher.n_steps // (C * T))
    if t.updates_per_epoch:
        per_epoch = min(per_epoch, t.updates_per_epoch)
    true = model.init_params(t.trainable)
    rng = np.random.default_rng([spec.init.seed if spec.init.seed is not None else spec.seed, 31])
    init = {}
    for k, v in true.items():
        base = np.asarray(v, np.float64)
        if spec.init.kind == "fresh" and k == "log_scaling":
            base = np.full_like(base, np.log(spec.init.fresh_value))
        init[k] = jnp.asarray(base + spec.init.sigma * rng.standard_normal(base.shape), model.dtype)
    V_all = teacher.initial_V()

    def trials_of(epoch):
        if B >= K:
            return np.arange(K)
        return np.sort(np.random.default_rng([spec.seed, 21, epoch]).choice(K, B, replace=False))

    def provider(epoch, update):
        tr = trials_of(epoch)
        a = update * C * T
        inp = teacher.dense("inp", tr, a, a + C * T)
        tea = teacher.dense("spk", tr, a, a + C * T, inv=model.inv)
        return {"inputs": inp.reshape(C, T, *inp.shape[1:]), "teacher": tea.reshape(C, T, *tea.shape[1:])}

    rates = model.to_internal(teacher.neuron_rates(np.arange(K)))
    cv = [teacher_cv(teacher, ty) for ty in ("E", "I")]
    ctx = loss_context(spec, model, teacher_rates=rates, cv_target=cv, has_teacher=True)
    # the teacher's recurrent-excitatory / feedforward weight ratio (numpy: as effective_for_losses)
    sc = model.base_scaling
    rec_exc = (model.rec_mag * sc[model.post_type_rec, model.rec_pre_type])[model.rec_pre_type == 0]
    ff = model.ff_mag * sc[model.post_type_ff, 2]
    from dataclasses import replace
    ctx = replace(ctx, weight_ratio=float(np.sum(rec_exc) / max(float(np.sum(ff)), 1e-12)),
                  teacher_forcing=spec.teacher_forcing)
    setup = TrainSetup(model=model, params=init, ctx=ctx, weights=loss_weights(spec.losses), provider=provider,
                       initial_V=lambda epoch: V_all[trials_of(epoch)], updates_per_epoch=per_epoch,
                       training=t, tracking=spec.tracking, seed=spec.seed, name=spec.name,
                       describe={"teacher": str(teacher.folder), "teacher_forcing": spec.teacher_forcing},
                       online_update=None if t.method == "bptt" else _online_update)
    assert set(TRAINABLE[t.trainable]) == set(init)
    return setup, true


def _online_update(setup, optimizer):
    from .student_online import StudentOnlineUpdate  # training.method eprop / d_rtrl
    return StudentOnlineUpdate(setup, optimizer)


def evaluation_setup(spec, setup: TrainSetup, teacher: TeacherData) -> TrainSetup:
    """``setup`` with the model in the core's default layout (an online method trains the layout of
    :mod:`neurodsl.compile.online`: the same spikes and ``log_scaling``) for the comparison and report."""
    from dataclasses import replace
    from .homeostatic import build_model
    if spec.training.method == "bptt":
        return setup
    t = spec.training.model_copy(update={"method": "bptt"})
    model = build_model(spec.model_copy(update={"dt": teacher.spec.dt, "training": t}), teacher.structure,
                        teacher.spec.network, base_scaling=teacher.scaling(), teacher_forcing=spec.teacher_forcing)
    return replace(setup, model=model, training=t, online_update=None)


def teacher_cv(teacher: TeacherData, cell_type: str) -> float:
    import xarray as xr
    with xr.open_dataset(teacher.folder / "teacher.nc") as ds:
        v = ds.attrs.get(f"cv_{cell_type}")
    return float(v) if v is not None and np.isfinite(v) else float("nan")


def compare_params(model, true: dict, fitted: dict) -> dict:
    """Per trained array: true and recovered values, relative and log errors (always defined), the
    correlation only where the truth varies (:func:`~neurodsl.analysis.identifiability.error_measures`)."""
    from neurodsl.analysis.identifiability import error_measures
    t_eff = {k: np.asarray(v, np.float64) for k, v in model.effective(true).items()}
    f_eff = {k: np.asarray(v, np.float64) for k, v in model.effective(fitted).items()}
    names = {"log_scaling": "scaling", "log_rec_weight": "rec_weight", "log_ff_weight": "ff_weight"}
    return {names[k]: error_measures(t_eff[names[k]], f_eff[names[k]]) for k in fitted}


def _teacher_run(teacher: TeacherData, V0: np.ndarray, inputs: np.ndarray) -> np.ndarray:
    """The teacher's own event-driven simulator (``neurodsl teacher``'s network) driven by the given
    mitral spikes (T, B, n_in) from voltages V0 (B, N, core order): (T, B, N) bool, core order."""
    import brainstate
    import jax
    import jax.numpy as jnp
    from neurodsl.compile.olfactory import build_olfactory
    B = V0.shape[0]
    net = build_olfactory(teacher.spec, teacher.structure, batch=B).net
    net.init_state(B, teacher.spec.seed)
    st = net.read_state()
    for k, p in net.populations.items():
        st["pops"][k]["V"] = jnp.asarray(V0[:, p.info.offset:p.info.offset + p.info.size], net.dtype)
    names = list(net.populations)

    def body(c, xs):
        n, s_in = xs
        c, spikes = net.step(c, {}, n, {"mitral": s_in})
        return c, jnp.concatenate([spikes[k] for k in names], -1)

    run = brainstate.transform.jit(lambda c, i: jax.lax.scan(body, c, (jnp.arange(i.shape[0], dtype=jnp.int32), i))[1])
    return np.asarray(run(st, jnp.asarray(inputs)))


def simulate_comparison(teacher: TeacherData, model, true: dict, fitted: dict, out: Path, *, odour: int = 0,
                        trials: int = 4, duration_ms: float = 2000.0, seed: int = 0) -> Path:
    """``comparison.npz`` for the dashboard: fresh Poisson inputs of ``odour`` (index from 0),
    the teacher run twice with different input noise (a, b) -- by the teacher's own event-driven
    simulator -- and the student (the fitted training model, Heaviside forward) with run a's
    inputs, all from the teacher's initial voltages; spikes in structure order."""
    import jax
    import jax.numpy as jnp
    from neurodsl.compile.odour import odour_patterns
    sp = teacher.spec
    pat = odour_patterns(sp.odours, model.n_inputs, sp.mitral.baseline.internal, sp.seed)
    rate = pat.rates()[min(odour, pat.n_odours - 1)] if pat.n_odours else pat.base
    T = int(round(duration_ms / teacher.dt))
    p = rate * teacher.dt * 1e-3
    V0 = teacher.initial_V()[np.arange(trials) % teacher.n_trials_all]
    inp = {k: np.random.default_rng([seed, 41, k]).random((T, trials, model.n_inputs)) < p for k in (0, 1)}
    student = jax.jit(lambda prm, st, i: model.run(prm, st, i, outputs=("spikes",))[1]["spikes"] > 0.5)
    spikes = {"teacher_a": _teacher_run(teacher, V0, inp[0]), "teacher_b": _teacher_run(teacher, V0, inp[1]),
              "student": student(fitted, model.init_state(V0), jnp.asarray(inp[0]))}
    arrays = {k: model.to_structure(np.asarray(v)) for k, v in spikes.items()}
    path = out / "comparison.npz"
    _write_npz(path, {**arrays, "dt_ms": teacher.dt, "odour": odour, "cell_type": teacher.structure.cell_type},
               compressed=True)
    return path


def _write_npz(path: Path, arrays: dict, compressed: bool = False) -> Path:
    """Atomically (temporary file + rename, the umask's mode: :mod:`neurodsl.io.atomic`)."""
    import io
    from neurodsl.io.atomic import write_bytes
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return write_bytes(path, buf.getvalue())


def run_student(loaded: LoadedSpec, out_dir: str | Path, *, resume: bool | str = False, progress: bool = True,
                max_updates: int | None = None, comparison_ms: float = 2000.0, report_windows: int = 8,
                profile_windows: int = 4) -> dict:
    """Fit ``loaded.spec`` (kind student); returns the summary (also ``student_summary.json``).
    ``comparison_ms``: simulated time of ``comparison.npz`` (the dashboard's runs);
    ``report_windows`` / ``profile_windows``: update windows of epoch 0's data the identifiability
    report evaluates (:func:`.identifiability.write_report`).  The outputs
    of FINAL_OUTPUTS are written only when training completes (``max_updates`` counts as
    complete); an interrupted run returns ``{"interrupted": True, ...}``."""
    from dataclasses import replace
    from neurodsl.io.structure import save_structure
    from .simulate import configure_precision
    spec = loaded.spec
    configure_precision(spec.precision)
    out = Path(out_dir)
    record = prepare_run(loaded, out, resume, FINAL_OUTPUTS)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "spec.yaml", loaded.resolved_yaml)
    teacher = TeacherData(spec.teacher, spec.trials)
    setup, true = student_setup(spec, teacher)
    setup = replace(setup, record=record, spec_path=loaded.path)
    res = train(setup, out, resume=resume, progress=progress, max_updates=max_updates)
    if res.interrupted:
        return interrupted(loaded, out, "fit-student", res, spec.training.epochs * setup.updates_per_epoch)
    setup = evaluation_setup(spec, setup, teacher)
    model = setup.model
    before = compare_params(model, true, setup.params)
    after = compare_params(model, true, res.params)
    arrays = {}
    for tag, p in (("initial", setup.params), ("recovered", res.params), ("teacher", true)):
        for k, v in model.effective(p).items():
            arrays[f"{k}_{tag}"] = np.asarray(v, np.float64)
    _write_npz(out / "params.npz", arrays)
    save_structure(tuned_structure(model, res.params, student={"teacher": str(teacher.folder),
                                                               "trainable": spec.training.trainable}),
                   out / "network_structure.npz")
    simulate_comparison(teacher, model, true, res.params, out, seed=spec.seed, duration_ms=comparison_ms)
    from .identifiability import write_report
    ident = write_report(setup, res.params, out, true=true, epoch=0, progress=progress, n_windows=report_windows,
                         profile_windows=profile_windows)
    summary = {"name": spec.name, "teacher": str(teacher.folder), "n_neurons": model.n,
               "n_inputs": model.n_inputs, "trainable": spec.training.trainable, "updates": res.updates,
               "interrupted": res.interrupted, "best_loss": res.best_loss,
               "final_loss": res.history[-1]["loss"] if res.history else None,
               "seconds_per_update": res.seconds_per_update, "initial": before, "recovered": after,
               "identifiability": ident}
    atomic_write_text(out / "student_summary.json", json.dumps(summary, indent=1))
    if progress:
        for k, v in after.items():
            corr = "" if v["correlation"] is None else f", correlation {v['correlation']:.3f}"
            print(f"student {k}: max relative error {before[k]['max_relative_error']:.3f} -> "
                  f"{v['max_relative_error']:.3f}, max |log error| {v['max_abs_log_error']:.3f}{corr}")
    return summary


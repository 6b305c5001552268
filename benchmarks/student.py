"""Seconds per gradient update of the surrogate-gradient student, peak memory, planted recovery.

Default: 1000 neurons, 300 mitral inputs, batch 8, 10 chunks of 50 steps (dt 1 ms)
per update, trainable scaling (the PyTorch peer: 6.65 s/update).

``--mode student`` (default): what ``neurodsl fit-student`` runs -- a teacher of the
same network (its recorded spikes made here with the training model's forward
pass at the true scaling, which equals the event-driven teacher spike for spike;
Poisson mitral inputs at 6 Hz, ``--trials`` trials of one epoch of update windows),
the student started from the scaling perturbed log-normally (sigma 0.3), losses
per-neuron rate + 0.2 (``--van-rossum``) van Rossum, teacher forcing on (``--closed-loop-student``: off).
Prints s/update and the six scaling factors' relative errors after ``--updates``.

``--mode closed``: the closed-loop homeostatic task (Poisson inputs, rate loss, the
network's own spikes drive it; gradient through them x recurrent_grad 0.1).

s/update includes the data provider; compilation is excluded; peak RSS from resource.getrusage.

    python benchmarks/student.py [--mode student|closed --neurons 1000 --inputs 300 --batch 8 --updates 10]
                                 [--closed-loop-student]
"""
from __future__ import annotations

import argparse
import resource
import time
from dataclasses import replace

import numpy as np


def _spec(a, losses: str):
    from neurodsl.spec import load_spec_text
    return load_spec_text(f"""name: bench
kind: homeostatic
network:
  generator: {{n_neurons: {a.neurons}, n_inputs: {a.inputs}, n_assemblies: 10}}
losses: {losses}
training: {{batch: {a.batch}, chunk_size: {a.chunk}, chunks_per_update: {a.chunks}, trainable: {a.trainable},
           learning_rate: {a.lr}, lr_final_fraction: 0.1, epochs: {a.epochs},
           surrogate: {{propagation: {a.propagation}, detach_reset: {str(not a.attach_reset).lower()}}}}}
""").spec


def student_setup(a):
    """(TrainSetup, true params): a synthetic teacher of the generated network (see the docstring)."""
    import jax
    import jax.numpy as jnp
    from neurodsl.compile.connectivity import sample_values
    from neurodsl.runners.homeostatic import build_model, loss_context, loss_weights, spec_structure
    from neurodsl.runners.spiking_train import TrainSetup
    spec = _spec(a, f"{{rate: 1.0, rate_mode: neuron, van_rossum: {a.van_rossum}}}")
    model = build_model(spec, spec_structure(spec), teacher_forcing=not a.closed_loop_student)
    t = spec.training
    K, C, T = a.trials, t.chunks_per_update, t.chunk_size
    per_epoch = a.updates_per_epoch
    n_steps = per_epoch * C * T
    p = spec.inputs.baseline.internal * spec.dt.internal * 1e-3
    inp = np.random.default_rng([spec.seed, 51]).random((n_steps, K, model.n_inputs), np.float32) < p
    V0 = sample_values(spec.initial_V, K * model.n, np.random.default_rng([spec.seed, 52]), sign=0.0)
    V0 = V0.reshape(K, model.n)
    true = model.init_params(t.trainable)
    run = jax.jit(lambda prm, st, i: model.run(prm, st, i, outputs=("spikes",))[1]["spikes"] > 0.5)
    teacher = np.asarray(run(true, model.init_state(V0), jnp.asarray(inp)))  # (n_steps, K, N) internal order
    rng = np.random.default_rng([spec.seed, 31])
    init = {k: jnp.asarray(np.asarray(v, np.float64) + 0.3 * rng.standard_normal(v.shape), model.dtype)
            for k, v in true.items()}
    B = min(a.batch, K)

    def trials_of(epoch):
        return np.arange(K) if B >= K else np.sort(np.random.default_rng([spec.seed, 21, epoch]).choice(K, B, False))

    def provider(epoch, update):
        tr, lo = trials_of(epoch), update * C * T
        return {"inputs": inp[lo:lo + C * T][:, tr].reshape(C, T, B, -1),
                "teacher": teacher[lo:lo + C * T][:, tr].reshape(C, T, B, -1)}

    rates = teacher.mean((0, 1)) / (spec.dt.internal * 1e-3)
    ctx = loss_context(spec, model, teacher_rates=rates, cv_target=[np.nan, np.nan], has_teacher=True)
    ctx = replace(ctx, teacher_forcing=not a.closed_loop_student)
    setup = TrainSetup(model=model, params=init, ctx=ctx, weights=loss_weights(spec.losses), provider=provider,
                       initial_V=lambda epoch: V0[trials_of(epoch)], updates_per_epoch=per_epoch, training=t,
                       seed=spec.seed, name="bench-student")
    rate_E = teacher[..., model.type_idx == 0].mean() * 1e3 / spec.dt.internal
    rate_I = teacher[..., model.type_idx == 1].mean() * 1e3 / spec.dt.internal
    print(f"teacher: {K} trials x {n_steps} steps, rates E {rate_E:.2f} Hz, I {rate_I:.2f} Hz")
    return setup, true


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=("student", "closed"), default="student")
    ap.add_argument("--neurons", type=int, default=1000)
    ap.add_argument("--inputs", type=int, default=300)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--trials", type=int, default=8, help="student: teacher trials")
    ap.add_argument("--updates-per-epoch", type=int, default=4, help="student: windows in the recording")
    ap.add_argument("--chunk", type=int, default=50)
    ap.add_argument("--chunks", type=int, default=10)
    ap.add_argument("--updates", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=10, help="sets the cosine LR schedule length")
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--trainable", default="scaling")
    ap.add_argument("--attach-reset", action="store_true", help="surrogate gradient through the reset too")
    ap.add_argument("--van-rossum", type=float, default=0.3, help="student: van Rossum loss weight (rate: 1)")
    ap.add_argument("--propagation", default="auto")
    ap.add_argument("--closed-loop-student", action="store_true", help="student without teacher forcing")
    a = ap.parse_args(argv)
    import jax
    from neurodsl.runners.homeostatic import homeostatic_setup
    from neurodsl.runners.spiking_train import initial_carry, make_optimizer, make_update
    if a.mode == "student":
        setup, true = student_setup(a)
    else:
        setup, true = homeostatic_setup(_spec(a, "{rate: 1.0, van_rossum: 0.0}")), None
    t = setup.training
    opt = make_optimizer(t, t.epochs * setup.updates_per_epoch)
    upd = make_update(setup, opt)
    params, state, carry = setup.params, opt.init(setup.params), initial_carry(setup, 0)
    epoch, u = 0, 0
    times, compile_s = [], None
    for i in range(a.updates + 1):
        t0 = time.perf_counter()  # the provider's host work (teacher-forcing products) included
        data = setup.provider(epoch, u)
        params, state, carry, m = jax.block_until_ready(upd(params, state, carry, data))
        (times.append if i else lambda x: None)(time.perf_counter() - t0)
        compile_s = compile_s if i else time.perf_counter() - t0
        u += 1
        if u == setup.updates_per_epoch:
            epoch, u = epoch + 1, 0
            carry = initial_carry(setup, epoch)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    model = setup.model
    how = " (closed loop)" if a.closed_loop_student else " (teacher forcing)"
    print(f"mode {a.mode}{how}: network {a.neurons} neurons, "
          f"{a.inputs} inputs, {len(model.structure.rec_pre)} recurrent + {len(model.structure.ff_pre)} ff synapses, "
          f"propagation {model.propagation}, trainable {a.trainable}, {model.dtype.__name__}")
    print(f"batch {a.batch}, {a.chunks} chunks x {a.chunk} steps per update")
    print(f"first update (compile) {compile_s:.2f} s; {np.mean(times):.3f} s/update "
          f"(median {np.median(times):.3f}, {a.updates} updates); peak RSS {peak:.0f} MiB")
    print(f"last loss {float(m['loss']):.4g}, rates E {float(m['rate_E']):.2f} Hz, I {float(m['rate_I']):.2f} Hz, "
          f"|g| {float(m['grad_norm']):.3g}")
    if true is not None and "log_scaling" in true:
        err = lambda p: np.abs(np.exp(np.asarray(p["log_scaling"], np.float64) -  # noqa: E731
                                      np.asarray(true["log_scaling"], np.float64)) - 1).ravel() * 100
        print("scaling relative error % (post E/I x pre E/I/input): initial "
              + " ".join(f"{x:.1f}" for x in err(setup.params)) + " -> " + " ".join(f"{x:.2f}" for x in err(params)))


if __name__ == "__main__":
    main()

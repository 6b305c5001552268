"""The update-window gradients of BPTT and e-prop at fixed trained scales, paired.

    python benchmarks/eprop_gradient.py RUN_DIR/params.npz [--windows 12] [--spec spec/coba_tuned.yaml]

Both methods load the same log-scales (``params.npz`` of a ``kind: fit`` run), start from the
spec's epoch-0 state after its warm-up (same seed: the online layout gives the core's spikes) and
compute the gradient of ``--windows`` successive update windows (``chunks_per_update`` chunks of
``chunk``), without changing the parameters (the optimiser is replaced by one that records the
gradient and returns a zero step).  Prints per window the population rates and the gradient of
each trained scale, then the mean and s.d. over windows per scale and method: whether e-prop's
gradient has BPTT's sign and how large it is, at a point of the training run.
"""
from __future__ import annotations

import argparse

import numpy as np


def window_gradients(spec_path: str, params: dict, method: str, windows: int) -> list[tuple[dict, dict]]:
    import jax
    import jax.numpy as jnp
    import optax
    from neurodsl.runners import fit_objectives as FO
    from neurodsl.runners.eprop import OnlineFitTrainer
    from neurodsl.runners.fit import FitTrainer
    from neurodsl.spec import load_spec
    spec = load_spec(spec_path, overrides=[f"training.method={method}"]).spec
    tr = (FitTrainer if method == "bptt" else OnlineFitTrainer)(spec)
    # records the gradient, takes no step; the trainer's jitted update reads self.optimizer when it is
    # first traced (the first call below), so the update built by the constructor uses this one
    tr.optimizer = optax.GradientTransformation(
        lambda p: {"g": jax.tree.map(jnp.zeros_like, p)},
        lambda g, s, p=None: (jax.tree.map(jnp.zeros_like, g), {"g": g}))
    for k, p in tr.params.items():
        p.value = jnp.asarray(params[k], p.value.dtype)
    opt = tr.optimizer.init({k: p.value for k, p in tr.params.items()})
    obs = FO.init_obs(tr.B, tr.net.n_neurons, tr.net.dtype)
    n, rows = tr.start_epoch(0), []
    for w in range(windows):
        steps = jnp.arange(n, n + tr.C * tr.T, dtype=jnp.int32).reshape(tr.C, tr.T)
        obs, opt, met = tr.update(steps, obs, opt)
        n += tr.C * tr.T
        rates, g = tr.population_rates(np.asarray(met["rate"])), {k: float(v) for k, v in opt["g"].items()}
        rows.append((rates, g))
        print(f"{method:6s} window {w:3d}  " + "  ".join(f"{k} {v:.2f} Hz" for k, v in rates.items()) + "  |  "
              + "  ".join(f"{k} {v:+.3f}" for k, v in g.items()), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("params", help="params.npz of a kind: fit run (trained log-scales by label)")
    ap.add_argument("--spec", default="spec/coba_tuned.yaml")
    ap.add_argument("--windows", type=int, default=12)
    a = ap.parse_args()
    params = dict(np.load(a.params))
    out = {m: window_gradients(a.spec, params, m, a.windows) for m in ("bptt", "eprop")}
    print(f"\n{'scale':14s} {'BPTT mean':>10s} {'sd':>7s} {'e-prop mean':>12s} {'sd':>7s} {'ratio':>6s}")
    for k in out["bptt"][0][1]:
        b, e = (np.array([g[k] for _, g in out[m]]) for m in ("bptt", "eprop"))
        print(f"{k:14s} {b.mean():+10.3f} {b.std():7.3f} {e.mean():+12.3f} {e.std():7.3f} {e.mean() / b.mean():6.2f}")


if __name__ == "__main__":
    main()

"""COBA simulation-loop speed: compiled spec vs hand-written brainpy.state vs Brian2 C++.

Prints, from one invocation, the loop time per simulated second (compilation
excluded) at each size with 80 synapses per neuron on average, and the ratios
compiled / hand-written and compiled / Brian2-C++, for the XLA core ("compiled") and for the same
network under ``engine: loop`` ("loop", the generated Numba loop), (when a Brian2 interpreter is
given, or importable here: brian2 2.9 needs numpy < 2.4; see
benchmarks/reference/README.md).  ``--brian2-method`` runs both sides in the same
integration method: the spec's neurons get ``method`` (euler or exp_euler) and Brian2
gets the same one (euler or exponential_euler); ``both`` prints one table per method.

    python benchmarks/coba.py --sizes 4000 64000 --duration 1 --brian2-method both
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


BRIAN2_METHOD = {"euler": "euler", "exp_euler": "exponential_euler"}  # neurodsl name -> Brian2's


def _coba(n: int, duration_s: float, seed: int, method: str):
    """spec/coba.yaml at ``n`` neurons (80 % E) with 80 synapses per neuron on average, compiled:
    (spec, network, steps of ``duration_s``)."""
    from neurodsl.compile import compile_network
    from neurodsl.spec import load_spec

    ne, ni = int(n * 0.8), n - int(n * 0.8)
    sets = [f"populations.E.size={ne}", f"populations.I.size={ni}", f"seed={seed}"]
    sets += [f"projections[{i}].connectivity.p={80 / n}" for i in range(4)]
    sets += [f"populations.{pop}.neuron.method={method}" for pop in ("E", "I")]
    spec = load_spec(REPO / "spec" / "coba.yaml", sets).spec
    return spec, compile_network(spec), int(round(duration_s * 1e3 / spec.dt.internal))


def compiled(n: int, duration_s: float, seed: int = 0, method: str = "exp_euler", repeats: int = 3) -> dict:
    """Loop time of spec/coba.yaml compiled by neurodsl: the jitted step loop, timed like the
    hand-written one (the same jitted function called again after it compiled, spikes returned; the
    minimum over ``repeats`` calls, as the Brian2 script takes the minimum over its repeats)."""
    import brainstate
    import jax
    import jax.numpy as jnp

    spec, net, steps = _coba(n, duration_s, seed, method)

    def body(i):
        spikes = net.update(i)
        return jnp.concatenate([spikes["E"], spikes["I"]], axis=-1)

    @brainstate.transform.jit
    def run(idx):
        return brainstate.transform.for_loop(body, idx)

    idx = jnp.arange(steps, dtype=jnp.int32)
    net.init_state(1, seed)
    jax.block_until_ready(run(idx))
    loops = []
    for _ in range(repeats):
        net.init_state(1, seed)
        t0 = time.perf_counter()
        spikes = jax.block_until_ready(run(idx))
        loops.append(time.perf_counter() - t0)
    return {"loop_s": min(loops), "rate_hz": float(np.asarray(spikes).mean() / (spec.dt.internal * 1e-3)),
            "steps": steps}


def looped(n: int, duration_s: float, seed: int = 0, method: str = "exp_euler", repeats: int = 3) -> dict:
    """Loop time of the same compiled network under ``engine: loop`` (neurodsl/compile/loop.py): the
    generated Numba loop over the whole run from the same initial state, events recorded; the minimum
    over ``repeats`` runs after the one that compiles."""
    import jax
    from neurodsl.compile.loop import ChunkLoop

    _, net, steps = _coba(n, duration_s, seed, method)
    net.init_state(1, seed)
    state0 = net.read_state()
    loop = ChunkLoop(net)
    cap = steps * n // 50  # 200 Hz per neuron
    loop.run(jax.tree.map(np.array, state0), 0, 10, cap, False)  # compile
    secs = []
    for _ in range(repeats):
        st = jax.tree.map(np.array, state0)
        t0 = time.perf_counter()
        _, _, count, _, _ = loop.run(st, 0, steps, cap, False)
        secs.append(time.perf_counter() - t0)
    return {"loop_s": min(secs), "rate_hz": float(count[0] / n / duration_s)}


def handwritten(n: int, duration_s: float, seed: int = 0, repeats: int = 3) -> dict:
    """The same network written by hand with brainpy.state (LIFRef, AlignPostProj, Expon, COBA)."""
    import brainpy
    import brainstate
    import braintools
    import brainunit as u
    import jax.numpy as jnp

    ne = int(n * 0.8)
    p = 80 / n

    class EINet(brainstate.nn.Module):
        def __init__(self):
            super().__init__()
            self.n_exc = ne
            # leak units: R = 1 ohm, so conductances in siemens are multiples of g_L
            self.N = brainpy.state.LIFRef(n, V_rest=-60. * u.mV, V_th=-50. * u.mV, V_reset=-60. * u.mV,
                                          tau=20. * u.ms, tau_ref=5. * u.ms, spk_reset="hard",
                                          V_initializer=braintools.init.Normal(-65., 5., unit=u.mV))
            self.E = brainpy.state.AlignPostProj(
                comm=brainstate.nn.EventFixedProb(ne, n, p, 0.6 * u.siemens),
                syn=brainpy.state.Expon.desc(n, tau=5. * u.ms),
                out=brainpy.state.COBA.desc(E=0. * u.mV), post=self.N)
            self.I = brainpy.state.AlignPostProj(
                comm=brainstate.nn.EventFixedProb(n - ne, n, p, 6.7 * u.siemens),
                syn=brainpy.state.Expon.desc(n, tau=10. * u.ms),
                out=brainpy.state.COBA.desc(E=-80. * u.mV), post=self.N)

        def update(self, i):
            with brainstate.environ.context(i=i, t=i * brainstate.environ.get_dt()):
                spk = self.N.get_spike() != 0.
                self.E(spk[:self.n_exc])
                self.I(spk[self.n_exc:])
                self.N(0. * u.mA)
                return self.N.get_spike()

    brainstate.random.seed(seed)
    with brainstate.environ.context(dt=0.1 * u.ms):
        net = EINet()
        brainstate.nn.init_all_states(net)
        steps = int(round(duration_s * 1e4))

        @brainstate.transform.jit
        def run(idx):
            return brainstate.transform.for_loop(net.update, idx)

        idx = jnp.arange(steps)
        jnp.asarray(run(idx)).block_until_ready()
        loops = []
        for _ in range(repeats):
            brainstate.nn.reset_all_states(net)
            t0 = time.perf_counter()
            spikes = jnp.asarray(run(idx)).block_until_ready()
            loops.append(time.perf_counter() - t0)
    return {"loop_s": min(loops), "rate_hz": float(np.asarray(spikes).mean() / 1e-4), "steps": steps}


def brian2(python: str, n: int, duration_s: float, method: str = "exp_euler", repeats: int = 3) -> dict | None:
    script = REPO / "benchmarks" / "reference" / "brian2_coba.py"
    cmd = [python, str(script), "--timing", "--sizes", str(n), "--duration", f"{duration_s}s",
           "--method", BRIAN2_METHOD[method], "--repeats", str(repeats)]
    try:
        out = subprocess.run(cmd,
                             capture_output=True, text=True, timeout=1800, check=True).stdout
    except (OSError, subprocess.SubprocessError) as e:
        print(f"  brian2 failed: {e}", file=sys.stderr)
        return None
    for line in out.splitlines():
        if line.startswith("{"):
            rec = json.loads(line)
            for r in rec.get("results", [rec]):
                if int(r.get("N", n)) == n:
                    return r
    return None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[4000, 16000, 64000])
    ap.add_argument("--duration", type=float, default=1.0, help="simulated seconds per run")
    ap.add_argument("--brian2-python", default=None,
                    help="python of a venv with brian2 (default: this one, when brian2 imports here)")
    ap.add_argument("--brian2-method", choices=["euler", "exp_euler", "both"], default="exp_euler",
                    help="integration method of both neurodsl's neurons and Brian2's (both: one table each)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="timed runs per configuration; each column is the minimum (Brian2's script: the same)")
    args = ap.parse_args(argv)
    python = args.brian2_python or (sys.executable if importlib.util.find_spec("brian2") else None)
    methods = ["euler", "exp_euler"] if args.brian2_method == "both" else [args.brian2_method]
    print(f"# COBA loop time per simulated second; {platform.processor() or platform.machine()}, "
          f"{time.strftime('%Y-%m-%d')}")
    hand = {}
    for method in methods:
        print(f"# method: neurodsl {method}, Brian2 {BRIAN2_METHOD[method]} (hand-written: brainpy's own)")
        print(f"{'N':>7} {'compiled s':>11} {'hand s':>8} {'brian2 s':>9} {'comp/hand':>10} {'comp/brian2':>12} "
              f"{'rate Hz':>8} {'loop s':>8} {'loop/brian2':>12} {'loop Hz':>8}")
        for n in args.sizes:
            c = compiled(n, args.duration, method=method, repeats=args.repeats)
            lp = looped(n, args.duration, method=method, repeats=args.repeats)
            if n not in hand:
                hand[n] = handwritten(n, args.duration, repeats=args.repeats)
            b = brian2(python, n, args.duration, method, args.repeats) if python else None
            cs, hs = c["loop_s"] / args.duration, hand[n]["loop_s"] / args.duration
            bs = b["loop_time_per_sim_second"] if b else None
            print(f"{n:>7} {cs:>11.3f} {hs:>8.3f} {bs if bs is not None else float('nan'):>9.3f} "
                  f"{cs / hs:>10.2f} {(cs / bs) if bs else float('nan'):>12.2f} {c['rate_hz']:>8.2f} "
                  f"{lp['loop_s'] / args.duration:>8.3f} {(lp['loop_s'] / args.duration / bs) if bs else float('nan'):>12.2f} "
                  f"{lp['rate_hz']:>8.2f}", flush=True)
    print(f"# load average {' '.join(f'{x:.2f}' for x in _loadavg())}")


def _loadavg():
    try:
        import os
        return os.getloadavg()
    except OSError:
        return (float("nan"),) * 3


if __name__ == "__main__":
    main()

"""``engine: loop`` against ``engine: xla`` on a network with a Poisson input source (one trial).

    python benchmarks/loop_sources.py [--sizes 4000] [--inputs 200] [--rate 5] [--duration 1] [--repeats 2]

spec/coba.yaml at N neurons (80 synapses per neuron) plus a Poisson source of ``--inputs`` cells at
``--rate`` Hz projecting onto E (p 0.02, 1 nS).  Each engine runs two chunks of ``--duration``
simulated seconds through ``run_network``; the second chunk is timed (the first compiles).  The loop
engine draws the source spikes with JAX from the network's key, as the XLA core does, so both see
the same inputs; the spike counts are printed side by side.
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _spec(n: int, inputs: int, rate: float):
    from neurodsl.spec import load_spec_text
    d = yaml.safe_load((REPO / "spec" / "coba.yaml").read_text())
    ne = int(0.8 * n)
    d["populations"]["E"]["size"], d["populations"]["I"]["size"] = ne, n - ne
    for p in d["projections"]:
        p["connectivity"]["p"] = 80 / n
    d.setdefault("inputs", {})["bg"] = {"kind": "poisson", "size": inputs, "rate": f"{rate} Hz"}
    d["projections"].append({"pre": "bg", "post": "E", "receptor": d["projections"][0]["receptor"],
                             "weight": "1 nS", "connectivity": {"kind": "bernoulli", "p": 0.02}})
    return load_spec_text(yaml.safe_dump(d)).spec


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[4000])
    ap.add_argument("--inputs", type=int, default=200)
    ap.add_argument("--rate", type=float, default=5.0)
    ap.add_argument("--duration", type=float, default=1.0, help="simulated seconds per chunk")
    ap.add_argument("--repeats", type=int, default=2, help="runs per engine; the minimum is reported")
    a = ap.parse_args(argv)
    from neurodsl.compile import compile_network
    from neurodsl.runners.simulate import configure_precision, run_network
    print(f"# COBA + Poisson source ({a.inputs} cells, {a.rate:g} Hz), 1 trial; s per simulated second; "
          f"{platform.processor() or platform.machine()}, {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"{'N':>7} {'xla s':>8} {'loop s':>8} {'loop/xla':>9} {'xla spikes':>11} {'loop spikes':>12}")
    for n in a.sizes:
        spec = _spec(n, a.inputs, a.rate)
        configure_precision(spec.precision)
        steps = int(round(a.duration * 1e3 / spec.dt.internal))
        best, spikes = {}, {}
        for _ in range(a.repeats):
            for engine in ("xla", "loop"):
                net = compile_network(spec)
                net.init_state(1, spec.seed)
                res = run_network(net, 2 * steps, steps, steps, progress=False, engine=engine)
                assert res.engine == engine
                best[engine] = min(best.get(engine, float("inf")), res.loop_s / a.duration)
                spikes[engine] = res.n_spikes
        print(f"{n:>7} {best['xla']:>8.3f} {best['loop']:>8.3f} {best['loop'] / best['xla']:>9.2f} "
              f"{spikes['xla']:>11} {spikes['loop']:>12}", flush=True)


if __name__ == "__main__":
    main()

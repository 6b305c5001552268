"""Teacher throughput: neuron-steps per wall second of the olfactory teacher (batch included).

    python benchmarks/teacher.py [--size 5000] [--inputs 1500] [--batch 50] [--duration 1s] [--chunk 250ms] [--engine both]

Builds spec/olfactory.yaml's network at the given size, runs it with
``runners.simulate.run_network`` (mitral spikes recorded, as the teacher does)
and reports ``size * batch * steps / loop time``; the loop time excludes
compilation (the first chunk of each length is not timed, so at least two
chunks are run).  Reference: a dense PyTorch peer, 0.73 M neuron-steps/s
(full size, batch 8, one thread).
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=5000, help="recurrent neurons (80 %% E)")
    ap.add_argument("--inputs", type=int, default=1500, help="mitral cells")
    ap.add_argument("--batch", type=int, default=50, help="trials in parallel")
    ap.add_argument("--duration", default="1 s")
    ap.add_argument("--chunk", default="250 ms")
    ap.add_argument("--spec", default=str(REPO / "spec" / "olfactory.yaml"))
    ap.add_argument("--engine", choices=["xla", "loop", "both"], default="both",
                    help="run_network's engine (both: xla then loop, same network and seed, and their ratio)")
    a = ap.parse_args(argv)

    from neurodsl.compile.olfactory import build_olfactory, resolve_structure
    from neurodsl.runners.simulate import configure_precision, run_network
    from neurodsl.spec import load_spec

    loaded = load_spec(a.spec, [f"network.generator.n_neurons={a.size}", f"network.generator.n_inputs={a.inputs}",
                                f"trials={a.batch}", f"duration={a.duration}", f"outputs.chunk={a.chunk}"])
    spec = loaded.spec
    configure_precision(spec.precision)
    t0 = time.perf_counter()
    structure, _ = resolve_structure(spec)
    model = build_olfactory(spec, structure)
    build_s = time.perf_counter() - t0
    dt = spec.dt.internal
    chunk = int(round(spec.outputs.chunk.internal / dt))
    bin_steps = int(round(spec.outputs.rate_bin.internal / dt))
    timed_steps = spec.n_steps - chunk
    print(f"teacher throughput: size {structure.n} neurons ({int(structure.is_exc.sum())} E), "
          f"{structure.n_inputs} mitral, batch {spec.trials}, dt {dt:g} ms, {spec.n_steps} steps "
          f"({timed_steps} timed), {len(structure.rec_pre) + len(structure.ff_pre)} synapses; build {build_s:.1f} s")
    out = {}
    for engine in (["xla", "loop"] if a.engine == "both" else [a.engine]):
        model.net.init_state(spec.trials, spec.seed)
        res = run_network(model.net, spec.n_steps, bin_steps, chunk, progress=False, record_sources=True,
                          engine=engine)
        rate = len(res.events["step"]) / (structure.n * spec.trials * spec.n_steps * dt * 1e-3)
        nsps = out[engine] = structure.n * spec.trials * timed_steps / res.loop_s
        print(f"  engine {res.engine}: wall {res.wall_s:.2f} s, loop {res.loop_s:.2f} s, mean rate {rate:.2f} Hz, "
              f"{nsps / 1e6:.2f} M neuron-steps/s  ({os.cpu_count()} CPUs, {platform.processor() or platform.machine()})",
              flush=True)
    if len(out) == 2:
        print(f"  loop / xla throughput: {out['loop'] / out['xla']:.2f}")
    return nsps


if __name__ == "__main__":
    main()

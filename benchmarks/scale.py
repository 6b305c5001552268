"""Scaling of ``neurodsl simulate`` with N: COBA (spec/coba.yaml), 80 synapses per neuron, 1 s simulated.

For each size this runs ``neurodsl simulate spec/coba.yaml --set ...`` under ``/usr/bin/time -v``
(peak resident memory of the whole process, wall time) and reads the written simulation.nc's attrs:
``loop_time_s`` over ``timed_steps`` (the compiled chunks after the first, which compiles; the
default 250 ms chunks leave 3 of 4 timed), spike count and mean rate.  ``--phases`` also runs the
same work step by step in a child process that reports the peak resident memory of each phase
(synapse construction and kernel layouts in ``compile_network``, then simulation + streamed writing)
by resetting the kernel's peak counter between phases (``/proc/self/clear_refs``).  Prints one
table and, with several sizes, the least-squares exponent of loop time against N.  Sizes run one
at a time (big ones need most of a 24 GB machine).

    python benchmarks/scale.py --sizes 4000 16000 64000 256000 1000000 --phases
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
NEURODSL = Path(sys.executable).with_name("neurodsl")


def overrides(n: int, duration_s: float, chunk_ms: float) -> list[str]:
    ne = int(n * 0.8)
    sets = [f"populations.E.size={ne}", f"populations.I.size={n - ne}", f"duration={duration_s * 1e3:g} ms",
            f"outputs.chunk={chunk_ms:g} ms"]
    return sets + [f"projections[{i}].connectivity.p={80 / n!r}" for i in range(4)]


def cli_run(n: int, duration_s: float, chunk_ms: float, out: Path) -> dict:
    """``neurodsl simulate`` under /usr/bin/time -v -> peak RSS, wall time and the file's attrs."""
    cmd = ["/usr/bin/time", "-v", str(NEURODSL), "simulate", str(REPO / "spec" / "coba.yaml"), "--out", str(out),
           "--force"]
    for s in overrides(n, duration_s, chunk_ms):
        cmd += ["--set", s]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode:
        raise RuntimeError(f"N={n}: neurodsl simulate failed:\n{p.stdout}\n{p.stderr[-3000:]}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))
    import netCDF4
    with netCDF4.Dataset(out / "simulation.nc") as nc:
        attrs = {k: nc.getncattr(k) for k in nc.ncattrs()}
        n_spikes = len(nc.dimensions["spike"])
    steps_per_s = 1e3 / float(attrs["dt_ms"])
    timed = int(attrs["timed_steps"])
    return {"n": n, "n_synapses": int(attrs["n_synapses"]), "peak_rss_gb": rss_kb / 1e6, "process_wall_s": wall,
            "run_wall_s": float(attrs["wall_time_s"]),
            "loop_s_per_sim_s": float(attrs["loop_time_s"]) / timed * steps_per_s if timed else float("nan"),
            "rate_hz": n_spikes / (n * float(attrs["duration_ms"]) * 1e-3), "reruns": int(attrs["recording_reruns"]),
            "file_mb": (out / "simulation.nc").stat().st_size / 1e6}


PHASES = r"""
import json, sys, time
def mem():
    d = dict(l.split(':', 1) for l in open('/proc/self/status'))
    return int(d['VmRSS'].split()[0]) / 1e6, int(d['VmHWM'].split()[0]) / 1e6
def reset():
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')
from neurodsl.runners.simulate import configure_precision, run_network
from neurodsl.spec import load_spec
from neurodsl.io.dataset import SpikingWriter
configure_precision('float32')
from neurodsl.compile import compile_network
spec = load_spec(sys.argv[1], sys.argv[3:]).spec
out = {'import_gb': mem()[1]}
reset(); t0 = time.perf_counter()
net = compile_network(spec)
net.init_state(1, spec.seed)
out['compile_s'] = time.perf_counter() - t0
out['after_compile_rss_gb'], out['compile_peak_gb'] = mem()
dt = spec.dt.internal
bins, chunk = int(round(spec.outputs.rate_bin.internal / dt)), int(round(spec.outputs.chunk.internal / dt))
names = [i.name for i in net.infos for _ in range(i.size)]
w = SpikingWriter(sys.argv[2], n_trials=1, n_bins=-(-spec.n_steps // bins), n_neurons=net.n_neurons, dt_ms=dt,
                  n_steps=spec.n_steps, bin_ms=bins * dt, population=names, ei=names)
reset(); t0 = time.perf_counter()
res = run_network(net, spec.n_steps, bins, chunk, progress=False, sink=w)
w.close({})
out['simulate_s'] = time.perf_counter() - t0
out['simulate_peak_gb'] = mem()[1]
print(json.dumps(out))
"""


def phases(n: int, duration_s: float, chunk_ms: float, out: Path) -> dict:
    p = subprocess.run([sys.executable, "-c", PHASES, str(REPO / "spec" / "coba.yaml"), str(out / "phases.nc"),
                        *overrides(n, duration_s, chunk_ms)], capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"N={n}: phases failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def exponent(ns, ts) -> float:
    return float(np.polyfit(np.log(ns), np.log(ts), 1)[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[4000, 16000, 64000, 256000, 1000000])
    ap.add_argument("--duration", type=float, default=1.0, help="simulated seconds")
    ap.add_argument("--chunk-ms", type=float, default=250.0)
    ap.add_argument("--phases", action="store_true", help="also measure memory per phase (a second run per size)")
    ap.add_argument("--json", type=Path, help="write the rows here")
    args = ap.parse_args()
    print(f"# {datetime.datetime.now().isoformat(timespec='seconds')}  {platform.node()}  {platform.processor()}"
          f"  {os.cpu_count()} cpus")
    rows = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory(prefix="neurodsl-scale-") as tmp:
            load = os.getloadavg()[0]
            row = cli_run(n, args.duration, args.chunk_ms, Path(tmp) / "cli")
            if args.phases:
                row.update(phases(n, args.duration, args.chunk_ms, Path(tmp)))
            row["load_start"], row["load_end"] = load, os.getloadavg()[0]
        rows.append(row)
        print(json.dumps(row), flush=True)
    cols = ["n", "n_synapses", "loop_s_per_sim_s", "run_wall_s", "process_wall_s", "peak_rss_gb", "rate_hz",
            "reruns", "file_mb", "load_start", "load_end"]
    if args.phases:
        cols += ["compile_s", "after_compile_rss_gb", "compile_peak_gb", "simulate_s", "simulate_peak_gb"]
    print("| " + " | ".join(cols) + " |\n|" + "---:|" * len(cols))
    for r in rows:
        print("| " + " | ".join(f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |")
    if len(rows) > 1:
        ns, ts = [r["n"] for r in rows], [r["loop_s_per_sim_s"] for r in rows]
        print(f"loop time ~ N^{exponent(ns, ts):.2f} over {ns[0]}..{ns[-1]}")
        small = [r for r in rows if r["n"] <= 256000]
        if len(small) > 1 and len(small) < len(rows):
            print(f"loop time ~ N^{exponent([r['n'] for r in small], [r['loop_s_per_sim_s'] for r in small]):.2f}"
                  f" over {small[0]['n']}..{small[-1]['n']} (Brian2 C++: N^1.18 from 4k to 256k)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

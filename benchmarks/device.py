"""One table of the GPU path (issue "speed and scale"): run it on an accelerator machine.

Each item runs in its own process (so its peak memory is its own, and one failure or
timeout does not stop the rest) and prints one ``RESULT {json}`` line; the parent prints
one table with the device, seconds and peak memory:

* ``coba N``     spec/coba.yaml at N neurons (80 synapses per neuron), 1 s at dt 0.1 ms,
                 one trial: loop seconds per simulated second (compilation excluded),
                 mean rate; N in 4k, 64k, 256k, 1M;
* ``teacher``    the olfactory teacher at its default size (5000 neurons, 1500 mitral,
                 batch 50), 1 s: M neuron-steps/s (benchmarks/teacher.py);
* ``student``    seconds per surrogate-gradient update of the student (benchmarks/student.py,
                 its defaults: 1000 neurons, batch 8, 10 x 50 steps);
* ``rnn``        seconds per epoch of rnn_fit on the continuous-input recording
                 (600 x 120 x 16, generated: benchmarks/rnn_fit.py continuous-speed).

    python benchmarks/device.py [--quick] [--timeout 120]

``--quick`` shrinks every item (a CPU check of the script itself).  Peak memory is the
accelerator's ``peak_bytes_in_use`` where JAX reports it, else the process's peak RSS.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SIZES = (4000, 64000, 256000, 1000000)


def _peak_mb() -> float:
    import jax
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return stats["peak_bytes_in_use"] / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def coba(n: int, duration_s: float) -> dict:
    import brainstate
    import jax
    import jax.numpy as jnp
    from neurodsl.compile import compile_network
    from neurodsl.spec import load_spec
    ne = int(n * 0.8)
    sets = [f"populations.E.size={ne}", f"populations.I.size={n - ne}"]
    sets += [f"projections[{i}].connectivity.p={80 / n}" for i in range(4)]
    spec = load_spec(REPO / "spec" / "coba.yaml", sets).spec
    net = compile_network(spec)
    steps = int(round(duration_s * 1e3 / spec.dt.internal))

    def body(i):  # spike counts per step, not the raster (1M x 10k booleans would not fit)
        spikes = net.update(i)
        return sum(jnp.sum(s) for s in spikes.values())

    run = brainstate.transform.jit(lambda idx: brainstate.transform.for_loop(body, idx))
    idx = jnp.arange(steps, dtype=jnp.int32)
    net.init_state(1, 0)
    jax.block_until_ready(run(idx))
    net.init_state(1, 0)
    t0 = time.perf_counter()
    counts = jax.block_until_ready(run(idx))
    loop = time.perf_counter() - t0
    return {"item": f"coba {n}", "seconds": loop / duration_s, "unit": "s per simulated s",
            "detail": f"rate {float(counts.sum()) / n / duration_s:.1f} Hz"}


def _captured(fn, argv) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        fn(argv)
    return buf.getvalue()


def teacher(quick: bool) -> dict:
    sys.path.insert(0, str(REPO / "benchmarks"))
    import teacher as T
    argv = ["--size", "500", "--inputs", "150", "--batch", "4", "--duration", "200 ms", "--chunk", "100 ms"] \
        if quick else []
    text = _captured(T.main, argv)
    nsps = float(re.search(r"([\d.]+) M neuron-steps/s", text).group(1))
    loop = float(re.search(r"loop ([\d.]+) s", text).group(1))
    return {"item": "teacher" + (" (quick)" if quick else " 5000+1500, batch 50"), "seconds": loop,
            "unit": "s loop (1 s minus the first chunk)", "detail": f"{nsps:.1f} M neuron-steps/s"}


def student(quick: bool) -> dict:
    sys.path.insert(0, str(REPO / "benchmarks"))
    import student as S
    argv = ["--updates", "3"] + (["--neurons", "200", "--inputs", "60", "--chunks", "2"] if quick else [])
    text = _captured(S.main, argv)
    s = float(re.search(r"([\d.]+) s/update", text).group(1))
    return {"item": "student update" + (" (quick)" if quick else " 1000 neurons, batch 8"), "seconds": s,
            "unit": "s per update", "detail": ""}


def rnn(quick: bool) -> dict:
    sys.path.insert(0, str(REPO / "benchmarks"))
    import rnn_fit as R
    text = _captured(lambda a: R.main(a), ["continuous-speed", "--epochs", "2" if quick else "5"])
    rec = [json.loads(line) for line in text.splitlines() if line.startswith("{")][-1]
    s = rec["s_per_epoch_median"]
    return {"item": "rnn_fit epoch 600x120x16 continuous", "seconds": s, "unit": "s per epoch", "detail": ""}


def child(item: str, quick: bool) -> None:
    if item.startswith("coba"):
        n = int(item.split()[1])
        res = coba(min(n, 8000) if quick else n, 0.05 if quick else 1.0)
    else:
        res = {"teacher": teacher, "student": student, "rnn": rnn}[item](quick)
    import jax
    res.update(device=str(jax.devices()[0]), peak_mb=_peak_mb())
    print("RESULT " + json.dumps(res), flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--item", help="run one item in this process (used by the parent)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--timeout", type=float, default=150.0, help="seconds per item")
    a = ap.parse_args(argv)
    if a.item:
        child(a.item, a.quick)
        return 0
    items = [f"coba {n}" for n in SIZES] + ["teacher", "student", "rnn"]
    rows = []
    for item in items:
        cmd = [sys.executable, __file__, "--item", item] + (["--quick"] if a.quick else [])
        t0 = time.perf_counter()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout, env=os.environ.copy())
            got = [json.loads(line[7:]) for line in p.stdout.splitlines() if line.startswith("RESULT ")]
            rows.append(got[0] if got else {"item": item, "error": (p.stderr.strip().splitlines() or ["?"])[-1]})
        except subprocess.TimeoutExpired:
            rows.append({"item": item, "error": f"timeout after {a.timeout:.0f} s"})
        rows[-1]["wall_s"] = time.perf_counter() - t0
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print("\n| item | seconds | unit | peak MB | detail | device | wall s |\n|---|---:|---|---:|---|---|---:|")
    for r in rows:
        if "error" in r:
            print(f"| {r['item']} | - | - | - | {r['error'][:80]} | - | {r['wall_s']:.0f} |")
        else:
            print(f"| {r['item']} | {r['seconds']:.4g} | {r['unit']} | {r['peak_mb']:.0f} | {r['detail']} | "
                  f"{r['device']} | {r['wall_s']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

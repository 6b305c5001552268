"""Online training (e-prop) vs BPTT on ``kind: fit``: memory and time per update against the
window length, and an accuracy / time / memory table with FORCE on the rate RNN beside it.

    python benchmarks/online.py                 # both parts, windows 0.5 1 2 5 10 s
    python benchmarks/online.py --quick         # windows 0.1 0.2 s, 2 accuracy updates (a check)
    python benchmarks/online.py --part scaling --windows 0.5 1 2
    python benchmarks/online.py --part table --table-updates 30

The network is spec/coba_tuned.yaml scaled down (``--size`` neurons, 80 % E; connection
probability 64 / N_E so each neuron keeps coba_tuned's in-degree, same weights, background,
objectives E 8 Hz / I 12 Hz, same dt 0.1 ms, four trained scales), ``--batch`` trials.

**Scaling** (one fresh child process per (method, window)): the update window is ONE chunk of
the window's length (``chunk = window``, ``chunks_per_update = 1``), so BPTT differentiates the
whole window in one backward pass (untruncated: what the comparison is about) and e-prop computes
the gradient of the same window loss forward in time from its eligibility traces.  Each child
runs two untimed updates (the first compiles; jit compiles again at the second, for the carried
state's types), times ``--updates`` more and reports

* ``peak_rss_mb``: the child's peak resident set size (``ru_maxrss`` of ``os.wait4`` on that
  child; one configuration per process, so it is that configuration's peak and nothing else's),
  and ``base_rss_mb``, the RSS after building the network and the two untimed updates, before
  the timed ones: what the interpreter, JAX, XLA's code and the network hold (the first
  update's peak is already in ``peak_rss_mb``, so the difference is not the update's own need);
* ``xla_temp_mb``: ``memory_analysis().temp_size_in_bytes`` of the compiled update (XLA's own
  account of the scratch memory the program needs: for BPTT the residuals stored for the backward
  pass).  RSS is what the machine must have; the XLA figure is free of allocator and
  interpreter noise and is what grows with the window;
* ``s_per_update`` (median of the timed updates) and ``s_per_simulated_s``.

**Table** (one child each): BPTT and e-prop with coba_tuned's own training setup (chunks of
50 ms, 4 per update, Adam, cosine schedule) for ``--table-updates`` updates, then the trained
scales simulated with the event-driven simulator (``neurodsl.runners.fit.evaluate``, as
``summary.json``): accuracy is the mean over populations of |rate - target| / target.  FORCE is a
different model and task: ``training.method: force`` on spec/final_rnn.yaml (the rate RNN on its
shipped synthetic export) for ``--force-passes`` passes; its accuracy is the validation
correlation (and r vs the generator's ground truth), not a rate error.

Prints one JSON line per result and a markdown table at the end; ``--json PATH`` also writes
all results.  Never run by the test suite.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SPEC = """
name: online_bench
kind: fit
seed: 0
dt: 0.1 ms
duration: 1 s
precision: float32
populations:
  E: {{size: {ne}, cell_type: E, neuron: &lif {{model: lif_cond, tau_m: 20 ms, g_L: 10 nS, E_L: -60 mV,
      V_th: -50 mV, V_reset: -60 mV, t_ref: 5 ms, method: exp_euler}}}}
  I: {{size: {ni}, cell_type: I, neuron: *lif}}
receptors:
  exc: {{kind: exp, tau_decay: 5 ms, E_rev: 0 mV}}
  inh: {{kind: exp, tau_decay: 10 ms, E_rev: -80 mV}}
inputs:
  background: {{kind: poisson, size: 1000, rate: 5 Hz}}
projections:
  - {{pre: background, post: E, receptor: exc, weight: 1 nS, connectivity: {{kind: fixed_indegree, k: 50}}}}
  - {{pre: background, post: I, receptor: exc, weight: 1 nS, connectivity: {{kind: fixed_indegree, k: 50}}}}
  - {{pre: E, post: E, receptor: exc, weight: 6 nS, connectivity: {{kind: bernoulli, p: {p}, allow_self: true}},
     trainable: {{param: scale, bounds: [0.1, 10]}}}}
  - {{pre: E, post: I, receptor: exc, weight: 6 nS, connectivity: {{kind: bernoulli, p: {p}}},
     trainable: {{param: scale, bounds: [0.1, 10]}}}}
  - {{pre: I, post: E, receptor: inh, weight: 67 nS, connectivity: {{kind: bernoulli, p: {p}}},
     trainable: {{param: scale, bounds: [0.1, 10]}}}}
  - {{pre: I, post: I, receptor: inh, weight: 67 nS, connectivity: {{kind: bernoulli, p: {p}, allow_self: true}},
     trainable: {{param: scale, bounds: [0.1, 10]}}}}
initial_state:
  E: &init
    V: {{dist: normal, mean: -65 mV, std: 5 mV}}
    g:
      exc: {{dist: normal, mean: 40 nS, std: 15 nS}}
      inh: {{dist: normal, mean: 200 nS, std: 120 nS}}
  I: *init
trials: 4
objectives:
  - {{kind: rate, population: E, target: 8 Hz}}
  - {{kind: rate, population: I, target: 12 Hz}}
training:
  learning_rate: 0.03
  lr_final_fraction: 0.1
  momentum: 0.5
  batch: {batch}
  chunk: 50 ms
  chunks_per_update: 4
  warmup: 200 ms
  epochs: 1
  updates_per_epoch: 20
  checkpoint_interval: 1000
  online: {{grad_clip: 1000, optimizer: optimistic_adam}}
"""


def spec_text(size: int, batch: int) -> str:
    ne = int(round(0.8 * size))
    return SPEC.format(ne=ne, ni=size - ne, p=round(min(1.0, 64 / ne), 6), batch=batch)


def _rss_mb() -> float:
    """Current resident set size (MB) from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ----------------------------------------------------------------------------- children
def child_scaling(cfg: dict) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from neurodsl.runners import fit_objectives as FO
    from neurodsl.runners.eprop import make_trainer
    from neurodsl.runners.simulate import configure_precision
    from neurodsl.spec import load_spec_text
    w = cfg["window_s"]
    loaded = load_spec_text(spec_text(cfg["size"], cfg["batch"]), overrides=[
        f"training.method={cfg['method']}", f"training.chunk={w * 1000:g} ms", "training.chunks_per_update=1",
        f"training.updates_per_epoch={cfg['updates'] + 2}", "training.warmup=0 ms"])
    spec = loaded.spec
    configure_precision(spec.precision)
    tr = make_trainer(spec)
    opt_state = tr.optimizer.init({k: p.value for k, p in tr.params.items()})
    obs = FO.init_obs(tr.B, tr.net.n_neurons, tr.net.dtype)
    tr.start_epoch(0)
    # two untimed updates: the first compiles, and jit compiles once more at the second (the
    # carried state's types differ from the initial ones); then XLA's account of the program
    t0, n = time.perf_counter(), 0
    for _ in range(2):
        steps = jnp.arange(n, n + tr.T, dtype=jnp.int32).reshape(1, tr.T)
        obs, opt_state, met = tr.update(steps, obs, opt_state)
        jax.block_until_ready(met)
        n += tr.T
    first_s = time.perf_counter() - t0
    steps = jnp.arange(n, n + tr.T, dtype=jnp.int32).reshape(1, tr.T)
    ma = tr.update.compile(steps, obs, opt_state).memory_analysis()
    base = _rss_mb()
    times = []
    for i in range(cfg["updates"]):
        steps = jnp.arange(n, n + tr.T, dtype=jnp.int32).reshape(1, tr.T)
        t0 = time.perf_counter()
        obs, opt_state, met = tr.update(steps, obs, opt_state)
        met = jax.device_get(met)
        times.append(time.perf_counter() - t0)
        n += tr.T
    timed = times
    rates = tr.population_rates(np.asarray(met["rate"]))
    mb = 1 / 2 ** 20
    return {"method": cfg["method"], "window_s": w, "steps": tr.T, "neurons": tr.net.n_neurons, "batch": tr.B,
            "times_s": times, "updates_timed": len(timed), "s_per_update": float(np.median(timed)),
            "s_per_simulated_s": float(np.median(timed)) / w, "warmup_updates_s": first_s,
            "base_rss_mb": base,
            "xla_temp_mb": None if ma is None else ma.temp_size_in_bytes * mb,
            "xla_argument_mb": None if ma is None else ma.argument_size_in_bytes * mb,
            "last_rates_hz": rates, "grad_norm": float(met["grad_norm"])}


def child_fit(cfg: dict) -> dict:
    import numpy as np
    from neurodsl.runners.fit import run_fit
    from neurodsl.spec import load_spec_text
    loaded = load_spec_text(spec_text(cfg["size"], cfg["batch"]), overrides=[
        f"training.method={cfg['method']}", f"training.updates_per_epoch={cfg['updates']}"])
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        s = run_fit(loaded, d, progress=False)
    wall = time.perf_counter() - t0
    errs = [v["relative_error"] for v in s["populations"].values() if v["relative_error"] is not None]
    return {"method": cfg["method"], "updates": s["updates"], "s_per_update": s["seconds_per_update"],
            "wall_s": wall, "rates_hz": {k: v["rate_hz"] for k, v in s["populations"].items()},
            "targets_hz": {k: v["target_hz"] for k, v in s["populations"].items()},
            "mean_relative_error": float(np.mean(errs)), "max_relative_error": float(np.max(errs)),
            "trained": s["trained"]}


def child_force(cfg: dict) -> dict:
    from neurodsl.runners.rnn_fit import run_rnn_fit
    from neurodsl.spec import load_spec
    loaded = load_spec(ROOT / "spec" / "final_rnn.yaml", ["training.method=force",
                                                           f"training.epochs={cfg['passes']}"])
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        s = run_rnn_fit(loaded, d)
    wall = time.perf_counter() - t0
    keep = {k: v for k, v in s.items() if isinstance(v, (int, float, str, bool)) or v is None}
    return {"method": "force", "passes": cfg["passes"], "wall_s": wall, "summary": keep}


CHILDREN = {"scaling": child_scaling, "fit": child_fit, "force": child_force}


def run_child(kind: str, cfg: dict, timeout: float) -> dict:
    """``kind`` in a fresh interpreter; its JSON result plus its peak RSS (wait4's ru_maxrss)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        p = subprocess.Popen([sys.executable, __file__, "--child", kind, json.dumps(cfg)], stdout=out, stderr=err,
                             cwd=ROOT)
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - t0 > timeout:
                p.kill()
                pid, status, ru = os.wait4(p.pid, 0)
                break
            time.sleep(0.2)
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        lines = [ln for ln in out.read().splitlines() if ln.startswith("{")]
        res = {"kind": kind, **cfg}
        if p.returncode == 0 and lines:
            res.update(json.loads(lines[-1]))
        else:
            res["error"] = f"exit {p.returncode}" + (" (timeout)" if time.perf_counter() - t0 > timeout else "") + \
                ": " + err.read()[-800:]
        res["peak_rss_mb"] = ru.ru_maxrss / 1024      # Linux: kilobytes
        res["child_wall_s"] = time.perf_counter() - t0
        return res


def machine() -> dict:
    import jax
    return {"cpus": os.cpu_count(), "backend": jax.default_backend(), "python": platform.python_version(),
            "jax": jax.__version__, "load_avg": os.getloadavg(),
            "mem_total_gb": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def _f(x, fmt="{:.3g}"):
    return "n/a" if x is None else fmt.format(x)


def tables(results: list[dict]) -> str:
    out = []
    sc = [r for r in results if r["kind"] == "scaling"]
    if sc:
        out += ["| method | window (s) | steps | peak RSS (MB) | RSS before 1st update (MB) | XLA temp (MB) "
                "| s / update | s / simulated s |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in sc:
            if "error" in r:
                out.append(f"| {r['method']} | {r['window_s']:g} | | {_f(r['peak_rss_mb'], '{:.0f}')} | | | "
                           f"{r['error'][:60]} | |")
                continue
            out.append(f"| {r['method']} | {r['window_s']:g} | {r['steps']} | {r['peak_rss_mb']:.0f} | "
                       f"{r['base_rss_mb']:.0f} | {_f(r['xla_temp_mb'], '{:.1f}')} | {r['s_per_update']:.3g} | "
                       f"{r['s_per_simulated_s']:.3g} |")
    tb = [r for r in results if r["kind"] in ("fit", "force")]
    if tb:
        out += ["", "| method | model / task | updates | accuracy | s / update | wall (s) | peak RSS (MB) |",
                "|---|---|---:|---|---:|---:|---:|"]
        for r in tb:
            if "error" in r:
                out.append(f"| {r['method']} | | | {r['error'][:80]} | | | {r['peak_rss_mb']:.0f} |")
            elif r["kind"] == "fit":
                rates = ", ".join(f"{k} {v:.2f}" for k, v in r["rates_hz"].items())
                out.append(f"| {r['method']} | spiking, {r['size']} neurons, rates E 8 / I 12 Hz | {r['updates']} | "
                           f"mean rel. rate error {r['mean_relative_error']:.3f} (max {r['max_relative_error']:.3f}; "
                           f"{rates} Hz) | {r['s_per_update']:.3g} | {r['wall_s']:.0f} | {r['peak_rss_mb']:.0f} |")
            else:
                s = r["summary"]
                acc = ", ".join(f"{k} {s[k]:.3f}" for k in ("best_val_correlation", "r_ground_truth",
                                                             "r_ground_truth_condition") if k in s)
                out.append(f"| force | rate RNN (spec/final_rnn.yaml, synthetic export): a different model | "
                           f"{r['passes']} passes | {acc or 'see JSON'} | {r['wall_s'] / r['passes']:.3g} (per pass) | "
                           f"{r['wall_s']:.0f} | {r['peak_rss_mb']:.0f} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--part", choices=["all", "scaling", "table"], default="all")
    ap.add_argument("--quick", action="store_true", help="short windows and few updates: a check, not a result")
    ap.add_argument("--windows", type=float, nargs="+", default=None, help="seconds (default 0.5 1 2 5 10)")
    ap.add_argument("--methods", nargs="+", default=["bptt", "eprop"])
    ap.add_argument("--size", type=int, default=250, help="neurons (80 %% E)")
    ap.add_argument("--batch", type=int, default=1, help="trials per update")
    ap.add_argument("--updates", type=int, default=2, help="timed updates per scaling child")
    ap.add_argument("--table-updates", type=int, default=30)
    ap.add_argument("--table-batch", type=int, default=4)
    ap.add_argument("--force-passes", type=int, default=25)
    ap.add_argument("--timeout", type=float, default=1200, help="seconds per child")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(CHILDREN[a.child[0]](json.loads(a.child[1]))), flush=True)
        return 0
    windows = a.windows or ([0.1, 0.2] if a.quick else [0.5, 1, 2, 5, 10])
    updates = 1 if a.quick else a.updates
    results = []
    info = machine()
    print(json.dumps({"machine": info}), flush=True)

    def go(kind, cfg):
        r = run_child(kind, cfg, a.timeout)
        results.append(r)
        print(json.dumps(r), flush=True)

    if a.part in ("all", "scaling"):
        for w in windows:
            for m in a.methods:
                go("scaling", {"method": m, "window_s": w, "size": a.size, "batch": a.batch, "updates": updates})
    if a.part in ("all", "table"):
        n = 2 if a.quick else a.table_updates
        for m in a.methods:
            go("fit", {"method": m, "size": a.size, "batch": a.table_batch, "updates": n})
        go("force", {"passes": 2 if a.quick else a.force_passes})
    info["load_avg_end"] = os.getloadavg()
    md = tables(results)
    print(md, flush=True)
    if a.json:
        a.json.write_text(json.dumps({"machine": info, "results": results, "markdown": md}, indent=1))
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark of workflow 1 (rnn_fit): seconds per epoch and fit quality.

    python benchmarks/rnn_fit.py speed   [--epochs 20] [--set key=value ...]
    python benchmarks/rnn_fit.py fit     [--set key=value ...] [--out DIR]
    python benchmarks/rnn_fit.py synthetic [--epochs 300]
    python benchmarks/rnn_fit.py continuous-speed [--epochs 20]
    python benchmarks/rnn_fit.py continuous [--epochs 300]
    python benchmarks/rnn_fit.py ensemble --seeds 42 1 2 3 4 --out DIR [--set key=value ...]

``speed``: the 08_13 recording (<repo>/../shared/data/activity/...), full training
set, full config of spec/final_rnn.yaml; compiles once, then times ``--epochs``
epochs (median s/epoch, each including the validation pass).  ``fit``: a full
run (writes results) and prints r vs noise ceiling.  ``synthetic``: recovery of
a known E-I RNN at full size (held-out PSTH r vs the generator's noise-free
rates).  ``continuous-speed`` / ``continuous``: a known E-I RNN (12 E + 4 I) with
continuous eye-trace inputs and W_in x 5 (a validation ceiling ~0.95, so r >= 0.9 is
reachable), 600 trials x 120 bins (every (trial, bin) input row
distinct, so the per-batch embedding path runs): s/epoch, and a full run of
``--epochs`` (wall time, best validation r, ceiling, r vs ground truth).
``ensemble``: 08_13 fitted once per ``--seeds`` (initialisation, noise and batches; the
validation split stays ``data.split_seed: 42``) into DIR/s<seed> (a seed whose fit.nc
exists is not fitted again), then the metrics of each fit and of the mean of their
noise-free validation rates (pooled and condition r, bits/spike, PSTH R2).
Prints one JSON line per result.  Skips with a message if the recording
is absent.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / ".." / "shared" / "data" / "activity" / "rnn_export_Newton_08_13_2025_SC.mat"
SPEC = ROOT / "spec" / "final_rnn.yaml"


def _machine() -> dict:
    import jax
    return {"cpus": os.cpu_count(), "backend": jax.default_backend(), "python": platform.python_version(),
            "jax": jax.__version__, "load_avg_1min": os.getloadavg()[0]}


def _continuous_file() -> Path:
    from neurodsl.runners.rnn_fit import make_data
    path = Path(tempfile.gettempdir()) / "neurodsl_bench_continuous_600x120x16_gain5.mat"
    if not path.is_file():  # seeded: the same recording every time (input_gain 5: ceiling ~0.95)
        make_data(path, n_exc=12, n_inh=4, n_trials=600, n_time=120, seed=0, continuous=True, input_gain=5.0)
    return path


def speed(epochs: int, overrides: list[str], path: Path = REAL, bench: str = "rnn_fit_speed") -> dict:
    import jax
    import numpy as np
    from neurodsl.runners.rnn_fit import Trainer, prepare_data
    from neurodsl.spec import load_spec
    loaded = load_spec(SPEC, [f"data.file={path.resolve()}", *overrides])
    data = prepare_data(loaded)
    tr = Trainer(loaded, data)
    state = tr.state0
    t0 = time.perf_counter()
    state, m = tr.epoch_fn(state)
    jax.block_until_ready(m)
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        state, m = tr.epoch_fn(state)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t0)
    return {"bench": bench, "s_per_epoch_median": float(np.median(times)), "per_batch_embedding": tr.per_batch,
            "distinct_inputs": len(data.table),
            "s_per_epoch_min": float(np.min(times)), "epochs_timed": epochs, "compile_plus_first_s": compile_s,
            "train_trials": len(data.train), "val_trials": len(data.val), "bins": data.rates.shape[1],
            "units": tr.cfg.n_units, "batches_per_epoch": tr.n_batches, "overrides": overrides, **_machine()}


def fit(overrides: list[str], out: str | None) -> dict:
    from neurodsl.runners.rnn_fit import run_rnn_fit
    from neurodsl.spec import load_spec
    loaded = load_spec(SPEC, [f"data.file={REAL.resolve()}", *overrides])
    out_dir = Path(out or ROOT / "results" / "bench_rnn_fit_08_13")
    s = run_rnn_fit(loaded, out_dir, progress=False)
    keys = ("epochs", "best_epoch", "early_stopped", "r_pooled", "ceiling_pooled", "r_over_ceiling",
            "r_condition", "ceiling_condition", "r_E", "r_I", "fano_model", "fano_target", "s_per_epoch",
            "train_time_s", "out_dir")
    extra = {k: v for k, v in s.items() if k.startswith(("r_baseline_", "ceiling_pooled_", "bits_per_spike", "psth_r2", "calibration_"))}
    return {"bench": "rnn_fit_08_13", **{k: s[k] for k in keys}, **extra, "overrides": overrides, **_machine()}


def synthetic(epochs: int, overrides: list[str]) -> dict:
    from neurodsl.runners.rnn_fit import make_data, run_rnn_fit
    from neurodsl.spec import load_spec
    tmp = Path(tempfile.mkdtemp())
    path = make_data(tmp / "synthetic.mat", n_exc=16, n_inh=4, n_trials=960, n_time=80, seed=0)[0]
    loaded = load_spec(SPEC, [f"data.file={path}", f"training.epochs={epochs}", *overrides])
    s = run_rnn_fit(loaded, tmp / "fit", progress=False)
    return {"bench": "rnn_fit_synthetic", "r_ground_truth": s["r_ground_truth"],
            "r_ground_truth_condition": s["r_ground_truth_condition"], "r_pooled": s["r_pooled"],
            "ceiling_pooled": s["ceiling_pooled"], "epochs": s["epochs"], "s_per_epoch": s["s_per_epoch"],
            "overrides": overrides, **_machine()}


def continuous(epochs: int, overrides: list[str]) -> dict:
    from neurodsl.runners.rnn_fit import run_rnn_fit
    from neurodsl.spec import load_spec
    path = _continuous_file()
    loaded = load_spec(SPEC, [f"data.file={path}", f"training.epochs={epochs}", *overrides])
    t0 = time.perf_counter()
    s = run_rnn_fit(loaded, Path(tempfile.mkdtemp()) / "fit", progress=False)
    keys = ("epochs", "best_epoch", "best_val_correlation", "r_pooled", "ceiling_pooled", "r_ground_truth",
            "r_condition", "ceiling_condition", "s_per_epoch", "train_time_s")
    return {"bench": "rnn_fit_continuous", **{k: s.get(k) for k in keys}, "wall_s": time.perf_counter() - t0,
            "overrides": overrides, **_machine()}


def ensemble(seeds: list[int], overrides: list[str], out: str | None) -> dict:
    import numpy as np
    import xarray as xr
    from neurodsl.analysis.rnn_report import FitArrays, metrics
    from neurodsl.runners.rnn_fit import prepare_data, run_rnn_fit
    from neurodsl.spec import load_spec
    root = Path(out or ROOT / "results" / "bench_rnn_ensemble_08_13")
    common = [f"data.file={REAL.resolve()}", "data.split_seed=42", *overrides]
    for seed in seeds:
        if not (root / f"s{seed}" / "fit.nc").is_file():
            run_rnn_fit(load_spec(SPEC, [*common, f"seed={seed}"]), root / f"s{seed}", progress=False,
                        resume=(root / f"s{seed}" / "checkpoints").is_dir())
    loaded = load_spec(SPEC, [*common, f"seed={seeds[0]}"])
    d = prepare_data(loaded)  # the split depends on data.split_seed only: the same for every seed
    rates = []
    for seed in seeds:
        with xr.open_dataset(root / f"s{seed}" / "fit.nc") as f:
            if not np.array_equal(f["trial"].values, d.ds["trial"].values[d.val]):
                raise SystemExit(f"{root / f's{seed}'}: validation trials differ from data.split_seed 42")
            rates.append(f["rate_model"].values.astype(np.float64))

    def head(rate):
        a = FitArrays(ds=d.ds, train=d.train, val=d.val, cond=d.cond, cond_names=d.cond_names, bin_ms=d.bin_ms,
                      rate_model=rate, rate_model_noisy=rate, rate_hidden=np.zeros(rate.shape[:2] + (0,)),
                      valid=d.valid, weights={}, unit_ei=np.array([]), attention=None, readout=None,
                      input_names=[], ground_truth=None,
                      smooth_ms=loaded.spec.training.losses.psth_smooth.internal)
        h = metrics(a)[1]["head"]
        return {k: h.get(k) for k in ("r_pooled", "r_condition", "bits_per_spike", "psth_r2", "ceiling_pooled",
                                      "ceiling_pooled_lo", "ceiling_pooled_hi")}
    return {"bench": "rnn_fit_ensemble_08_13", "seeds": seeds, "per_seed": [head(r) for r in rates],
            "ensemble": head(np.mean(rates, axis=0)), "overrides": overrides, "out_dir": str(root), **_machine()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("speed", "fit", "synthetic", "continuous-speed", "continuous",
                                           "ensemble"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    if a.what in ("speed", "fit", "ensemble") and not REAL.is_file():
        print(f"SKIP: recording not found at {REAL} (needs <repo>/../shared/data/activity/)", file=sys.stderr)
        return 0
    res = {"speed": lambda: speed(a.epochs, a.overrides), "fit": lambda: fit(a.overrides, a.out),
           "synthetic": lambda: synthetic(a.epochs, a.overrides),
           "continuous-speed": lambda: speed(a.epochs, a.overrides, _continuous_file(), "rnn_fit_continuous_speed"),
           "continuous": lambda: continuous(a.epochs, a.overrides),
           "ensemble": lambda: ensemble(a.seeds, a.overrides, a.out)}[a.what]()
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

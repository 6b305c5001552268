"""``neurodsl infer-network``: grid search over connectome generators and network parameters (Dask).

Every grid point (see :class:`~neurodsl.spec.inference.NetworkInferenceSpec`)
builds its connectome, simulates it for ``duration`` (after ``warmup``) with the
mitral inputs at the baseline rate and measures E/I rates, CV of ISIs, Fano
factors, fraction of silent cells and the assembly co-activation index.  The
score is computed from these statistics and the spec's targets afterwards, so
changing targets or weights re-scores without re-simulating.

Points run as independent tasks: on a ``dask.distributed.LocalCluster``
(processes, one thread each; default), on an existing cluster
(``scheduler="tcp://host:8786"``) or in this process (``scheduler="serial"``).
Each finished point is stored atomically by the driver (workers write
nothing, so they need no shared disk) as ``points/<key>.npz`` (its
structure) and then ``points/<key>.json`` (its statistics); ``key`` hashes the
point's parameters, seed and model, and a rerun skips every point whose two
files exist, so a killed search resumes.  SIGTERM (a scheduler's preemption or time
limit) stops the search like Ctrl+C (KeyboardInterrupt; the CLI exits 130): a point being
stored is completed first, the log says how many points are kept, a rerun continues.  Seeds come from (spec seed, point
parameters), never from the execution order: serial and parallel runs agree.

Outputs in ``out_dir``: ``grid.nc`` (one dim per grid path; ``score`` and every
statistic as data variables), ``network_structure.npz`` (best point, with its
effective scaling), ``structure_stats.nc``, ``grid.log``, ``spec.yaml`` and
``figures/`` (score maps, the best connectome's matrix, assembly graph and degrees).
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import xarray as xr

from neurodsl.errors import NeurodslError
from neurodsl.spec import LoadedSpec
from neurodsl.spec.inference import STATISTICS, NetworkInferenceSpec

STAT_NAMES = tuple(f"{s}_{c}" for s in STATISTICS for c in "EI") + ("coactivation",)


# ----------------------------------------------------------------------------- one point (worker side)
def _activity_dataset(events, n_trials: int, ei: np.ndarray, dt: float, n_steps: int) -> xr.Dataset:
    return xr.Dataset(
        {"spike_trial": ("spike", events["trial"].astype(np.int32)),
         "spike_step": ("spike", events["step"].astype(np.int32)),
         "spike_neuron": ("spike", events["neuron"].astype(np.int32))},
        coords={"trial": np.arange(n_trials), "neuron": np.arange(len(ei)), "ei": ("neuron", ei)},
        attrs={"dt_ms": float(dt), "n_steps": int(n_steps), "duration_ms": float(n_steps * dt)})


def point_statistics(ds: xr.Dataset, assembly: np.ndarray, bin_ms: float) -> dict[str, float]:
    """The scored statistics of one simulation (names in :data:`STAT_NAMES`)."""
    from neurodsl.analysis.connectome import assembly_coactivation
    from neurodsl.analysis.stats import population_summary
    summ = population_summary(ds, by="ei", fano_bin_ms=bin_ms)
    cols = {"rate": "mean_rate", "cv": "mean_cv", "fano": "fano", "fraction_silent": "fraction_silent"}
    out = {}
    for s in STATISTICS:
        for c in "EI":
            out[f"{s}_{c}"] = float(summ[cols[s]].sel(ei=c)) if c in summ["ei"].values else float("nan")
    out["coactivation"] = float(assembly_coactivation(ds, assembly, bin_ms))
    return out


def run_point(payload: dict):
    """Build, simulate and measure one grid point -> (record, structure with its effective scaling).

    Runs on a worker and writes nothing: the driver stores the results (so workers need no shared disk).
    """
    t0 = time.perf_counter()
    from neurodsl.runners.simulate import configure_precision, run_network
    spec = NetworkInferenceSpec.model_validate(payload["spec"])
    configure_precision(spec.precision)
    from neurodsl.compile.generator import generate
    from neurodsl.compile.olfactory import constant_rate_network, effective_scaling
    from neurodsl.io.structure import load_structure

    seed, key = int(payload["seed"]), payload["key"]
    s = load_structure(spec.network.structure) if spec.network.structure else generate(spec.generator, seed)
    dt = spec.dt.internal
    net, order = constant_rate_network(spec.network, s, input_rate_hz=spec.simulation.input_rate.internal,
                                       dt=spec.dt, duration=spec.duration, precision=spec.precision, seed=seed)
    trials = spec.simulation.trials
    net.init_state(trials, seed)
    warm = int(round(spec.simulation.warmup.internal / dt))
    total = warm + spec.n_steps
    chunk = max(1, min(total, int(round(spec.outputs.chunk.internal / dt))))
    res = run_network(net, total, bin_steps=total, chunk_steps=chunk, progress=False)
    ev = res.events
    keep = ev["step"] >= warm
    events = {"trial": ev["trial"][keep], "step": ev["step"][keep] - warm, "neuron": ev["neuron"][keep]}
    ei = s.cell_type[order].astype(str)
    assembly = (s.assembly if s.assembly is not None else np.full(s.n, -1))[order]
    ds = _activity_dataset(events, trials, ei, dt, spec.n_steps)
    stats = point_statistics(ds, assembly, spec.simulation.stat_bin.internal)
    scaled = s.with_weights(scaling=effective_scaling(spec.network, s), grid_params=payload["params"],
                            grid_seed=seed)
    record = {"key": key, "params": payload["params"], "seed": seed, "stats": stats,
              "n_synapses": int(len(s.rec_pre) + len(s.ff_pre)), "n_spikes": int(keep.sum()),
              "wall_s": time.perf_counter() - t0}
    return record, scaled


def _store(points_dir: Path, record: dict, structure) -> dict:
    """Atomically write ``<key>.npz`` and then ``<key>.json`` (the json marks the point as finished)."""
    from neurodsl.io.structure import save_structure
    from .checkpoint import deferred_signals
    with deferred_signals():  # SIGINT/SIGTERM wait until both files are written
        save_structure(structure, points_dir / f"{record['key']}.npz")
        _write_json(record, points_dir / f"{record['key']}.json")
    return record


def _write_json(obj: dict, path: Path) -> None:
    """Atomic (temporary file + rename, the umask's mode, signals held while writing)."""
    from .checkpoint import atomic_write_text
    atomic_write_text(path, json.dumps(obj, indent=1))


def _load_record(points_dir: Path, key: str) -> dict | None:
    js, npz = points_dir / f"{key}.json", points_dir / f"{key}.npz"
    if not (js.exists() and npz.exists()):
        return None
    try:
        return json.loads(js.read_text())
    except (json.JSONDecodeError, OSError):
        return None  # a damaged record is recomputed


# ----------------------------------------------------------------------------- score
def score_point(stats: dict[str, float], spec: NetworkInferenceSpec) -> float:
    """``sum_k w_k ((x_k - t_k) / sigma_k)^2`` over the given targets (see the spec module docstring)."""
    w, total = spec.score, 0.0
    terms = []
    for c in "EI":
        t = getattr(spec.targets, c)
        if t.rate is not None:
            terms.append((w.rate, stats[f"rate_{c}"], t.rate.internal, t.rate.internal))
        for s in ("cv", "fano", "fraction_silent"):
            if getattr(t, s) is not None:
                terms.append((getattr(w, s), stats[f"{s}_{c}"], getattr(t, s), 1.0))
    if spec.targets.coactivation is not None:
        terms.append((w.coactivation, stats["coactivation"], spec.targets.coactivation, 1.0))
    for weight, x, target, sigma in terms:
        err = ((x - target) / sigma) ** 2 if np.isfinite(x) else w.missing
        total += weight * err
    return float(total)


# ----------------------------------------------------------------------------- executors
def _run_serial(payloads, points_dir, spec, scheduler, progress, log):
    for p in payloads:
        rec = _store(points_dir, *run_point(p))
        log(f"computed {rec['key']} {json.dumps(rec['params'])} in {rec['wall_s']:.1f} s")
        yield rec


def _run_dask(payloads, points_dir, spec, scheduler, progress, log):
    if not payloads:
        return
    import logging
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise NeurodslError("Dask is not installed", field="--scheduler",
                            expected="pip install 'neurodsl[dask]', or --serial") from None
    cluster = None
    if scheduler in (None, "local"):
        n = spec.parallel.n_workers or _n_cores()
        cluster = LocalCluster(n_workers=min(n, len(payloads)), threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)
        client = Client(cluster)
    else:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError, ValueError) as e:
            raise NeurodslError(f"cannot reach the Dask scheduler {scheduler!r}: {e}", field="--scheduler",
                                expected="the address of a running scheduler, e.g. tcp://HOST:8786") from None
    info = client.scheduler_info()
    log(f"dask: {info.get('address', scheduler)}, {len(info.get('workers', {}))} workers")
    try:
        futures = [client.submit(run_point, p, key=f"grid-point-{p['key']}", pure=False) for p in payloads]
        for fut in as_completed(futures):
            try:
                result = fut.result()
            except Exception:
                log(f"failed {fut.key}; finished points are kept, rerun to resume")
                raise
            rec = _store(points_dir, *result)
            fut.release()
            log(f"computed {rec['key']} {json.dumps(rec['params'])} in {rec['wall_s']:.1f} s")
            yield rec
    finally:
        client.close()
        if cluster is not None:
            try:  # every result is on disk by now; do not wait long for JAX's slow interpreter teardown
                cluster.close(timeout=5)
            except Exception as e:  # pragma: no cover - shutdown noise only (workers are killed)
                log(f"dask: cluster close: {e!r}", echo=False)


EXECUTORS = {"serial": _run_serial, "dask": _run_dask}


def _n_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class _Log:
    def __init__(self, path: Path, echo: bool):
        self.path, self.echo = path, echo

    def __call__(self, msg: str, echo: bool = True) -> None:
        stamp = _dt.datetime.now().isoformat(timespec="seconds")
        with open(self.path, "a") as f:
            f.write(f"{stamp} {msg}\n")
        if self.echo and echo:
            print(msg, flush=True)


@contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (a scheduler's preemption or time limit) ends the search like Ctrl+C: a
    KeyboardInterrupt("SIGTERM") raised by the loop after the point in hand is stored.  The handler only
    sets a flag: an exception raised inside a signal handler is lost when the signal lands in a
    callback whose exceptions Python ignores (e.g. XLA's gc hook)."""
    hit: list[int] = []
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is None:
        yield hit
        return

    def handler(signum, frame):  # flag only: the loop raises after the point in hand is stored
        hit.append(signum)
    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield hit
    finally:
        signal.signal(signal.SIGTERM, old)


# ----------------------------------------------------------------------------- driver
def run_network_inference(loaded: LoadedSpec, out_dir: str | Path, *, scheduler: str | None = None,
                          progress: bool = True) -> xr.Dataset:
    """Run (or resume) the grid search of ``loaded.spec``; returns the ``grid.nc`` Dataset.

    ``scheduler``: None/"local" -> a LocalCluster (``parallel.n_workers`` processes, default one per
    core, one thread each); "serial" -> in this process; anything else -> the address of a
    running Dask scheduler (e.g. one started by dask-jobqueue on SLURM, see docs/cluster.md).
    Attrs ``n_computed`` / ``n_reused`` say how many points were simulated / read from ``points/``.
    """
    from neurodsl.io.dataset import provenance_attrs, write_netcdf

    spec: NetworkInferenceSpec = loaded.spec
    out = Path(out_dir)
    pdir = out / "points"
    pdir.mkdir(parents=True, exist_ok=True)
    (out / "spec.yaml").write_text(loaded.resolved_yaml)
    log = _Log(out / "grid.log", progress)
    points = spec.points()
    keys = [spec.point_key(p) for p in points]
    records: dict[str, dict] = {}
    todo = []
    for params, key in zip(points, keys):
        rec = _load_record(pdir, key)
        if rec is not None:
            records[key] = rec
        elif key not in {t["key"] for t in todo}:
            todo.append({"key": key, "params": params, "seed": spec.point_seed(params),
                         "spec": spec.at_point(params).data("json")})
    n_reused = len(records)
    mode = "serial" if scheduler == "serial" else "dask"
    log(f"start {spec.name}: {len(points)} points, {n_reused} already finished, {len(todo)} to compute "
        f"({scheduler or 'local cluster'})")
    t0 = time.perf_counter()
    try:
        with _sigterm_as_interrupt() as hit:
            for rec in EXECUTORS[mode](todo, pdir, spec, scheduler, progress, log):
                records[rec["key"]] = rec
                if hit:
                    raise KeyboardInterrupt("SIGTERM")
    except KeyboardInterrupt as e:
        done = sum(_load_record(pdir, k) is not None for k in set(keys))
        log(f"interrupted ({e.args[0] if e.args else 'SIGINT'}): {done} of {len(set(keys))} points finished "
            f"and kept in {pdir}; rerun the same command to resume (finished points are not recomputed)")
        raise
    wall = time.perf_counter() - t0
    ds = _assemble(spec, points, keys, records)
    flat = np.where(np.isfinite(ds["score"].values), ds["score"].values, np.inf).ravel()
    best_i = int(np.argmin(flat))
    best_key, best_params = keys[best_i], points[best_i]
    ds.attrs.update(provenance_attrs(loaded.resolved_yaml, loaded.sha256, spec.seed, spec_name=spec.name,
                                     precision=spec.precision, wall_time_s=wall))
    ds.attrs.update(n_points=len(points), n_computed=len(todo), n_reused=n_reused,
                    scheduler=scheduler or "local", best_key=best_key, best_params=json.dumps(best_params),
                    best_score=float(flat[best_i]), score_formula=_FORMULA)
    write_netcdf(ds, out / "grid.nc")
    _write_best(spec, out, pdir, best_key, best_params, float(flat[best_i]), ds)
    log(f"done: best {json.dumps(best_params)} score {flat[best_i]:.4g}; {len(todo)} computed, "
        f"{n_reused} reused, {wall:.1f} s")
    return ds


_FORMULA = ("score = sum over given targets of w_s * ((x - target) / sigma)^2, sigma = target for rates "
            "(relative error), 1 otherwise; an undefined (NaN) statistic costs w_s * score.missing")


def _assemble(spec: NetworkInferenceSpec, points, keys, records) -> xr.Dataset:
    dims = list(spec.grid)
    shape = spec.grid_shape
    coords = {d: np.asarray(v) for d, v in spec.grid.items()}
    data = {name: np.array([records[k]["stats"][name] for k in keys], float).reshape(shape)
            for name in STAT_NAMES}
    data["score"] = np.array([score_point(records[k]["stats"], spec) for k in keys]).reshape(shape)
    data["seed"] = np.array([records[k]["seed"] for k in keys], np.int64).reshape(shape)
    data["n_synapses"] = np.array([records[k]["n_synapses"] for k in keys], np.int64).reshape(shape)
    data["wall_s"] = np.array([records[k]["wall_s"] for k in keys], float).reshape(shape)
    data["key"] = np.array(keys, dtype=object).reshape(shape)
    units = {"rate": "Hz"}
    ds = xr.Dataset({k: (dims, v) for k, v in data.items()}, coords=coords)
    for name in STAT_NAMES:
        ds[name].attrs["units"] = units.get(name.rsplit("_", 1)[0], "1")
    ds["score"].attrs["long_name"] = "distance to the targets (lower is better)"
    ds["wall_s"].attrs["long_name"] = "wall time of the point's task (not deterministic)"
    return ds


def _write_best(spec, out: Path, pdir: Path, key: str, params: dict, score: float, ds: xr.Dataset) -> None:
    from neurodsl.analysis.connectome import analyse_structure, grid_score_maps, structure_stats
    from neurodsl.analysis.plots import save
    from neurodsl.io.dataset import write_netcdf
    from neurodsl.io.structure import load_structure, save_structure

    best = load_structure(pdir / f"{key}.npz")
    best = best.with_weights(grid_best=True, grid_score=score, grid_params=params)
    save_structure(best, out / "network_structure.npz")
    stats = structure_stats(best)
    write_netcdf(stats, out / "structure_stats.nc")
    if not spec.figures:
        return
    figs = out / "figures"
    if ds["score"].dims:
        for var in ("score", "rate_E", "rate_I", "coactivation"):
            for stem, fig in grid_score_maps(ds, var):
                save(fig, figs / f"{stem}.png")
    analyse_structure(best, figs, prefix="best_")

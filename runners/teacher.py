"""``neurodsl teacher SPEC``: simulate the olfactory teacher and write its spike trains.

:func:`run_teacher` writes to ``DIR``:

* ``teacher.nc``             the spikes and rates (layout below);
* ``network_structure.npz``  the structure that was simulated (generated, converted
                             from a connectome CSV or copied from ``network.structure``);
* ``spec.yaml``              the resolved spec;
* ``network.yaml``           the network as an ordinary ``kind: simulation`` spec (the olfactory
                             template expanded, reading ``network_structure.npz``):
                             ``neurodsl simulate network.yaml`` gives the same spikes;
* ``conditions.nc``          (``dashboard.enabled``) three short trials -- odour,
                             baseline (no odour), the same odour with new noise --
                             for ``neurodsl analyze odourants DIR``
                             (:func:`simulate_conditions`; same layout).

``teacher.nc`` layout (extends :func:`neurodsl.io.dataset.spiking_dataset`)
--------------------------------------------------------------------------
dims ``trial``, ``time`` (rate bins), ``neuron`` (recurrent, in the structure's
order: index j is row j of ``network_structure.npz``), ``spike``, ``input_spike``,
``channel`` (mitral cells), ``odour``.

=====================================  ==============================  ==========================================
variable                               dims                            meaning
=====================================  ==============================  ==========================================
``spike_trial/_step/_neuron``          spike                           recurrent spike events (int32), sorted by
                                                                       step, trial, neuron; t = step * dt_ms
``rate``                               trial, time, neuron             binned recurrent rates (Hz, float32)
``input_spike_trial/_step/_channel``   input_spike                     mitral spike events (int32)
``input_rate``                         trial, time, channel            binned mitral rates (Hz)
``odour_weight``                       trial, time, odour              odour mixture weight, bin average (0..1)
``odour_dominant``                     trial, time                     odour with the largest weight, -1 = none
``trial_odour``                        trial                           odour held in the trial (fixed schedule;
                                                                       -1 = baseline) or the dominant odour (ou)
``odour_rate``                         odour, channel                  mitral rate of each odour alone (Hz)
``base_rate``                          channel                         mitral rate without odour (Hz)
=====================================  ==============================  ==========================================

coords: ``ei`` and ``population`` ("E"/"I"), ``assembly`` (-1 = none) and, for
connectome structures, ``cell_label`` on ``neuron``; ``odour_name`` on
``odour``; ``input_channel`` (table odours: the receptor/glomerulus name of
each mitral cell) on ``channel``; ``condition`` on ``trial`` in conditions.nc.
attrs: ``dt_ms``, ``n_steps``, ``duration_ms``, ``bin_ms``, provenance
(:func:`provenance_attrs`), ``structure_origin``, ``n_synapses``, ``schedule``,
per cell type ``rate_E_hz``/``cv_E``/``fano_E`` (and I), ``wall_time_s``,
``loop_time_s`` and ``neuron_steps_per_s``.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import xarray as xr

from neurodsl.spec import LoadedSpec
from neurodsl.runners.simulate import configure_precision, run_network

CONDITIONS = ("odour", "baseline", "odour_repeat")


def _bins(spec):
    dt = spec.dt.internal
    bin_steps = max(1, int(round(spec.outputs.rate_bin.internal / dt)))
    chunk_steps = max(1, int(round(spec.outputs.chunk.internal / dt)))
    return dt, bin_steps, chunk_steps


def _odour_over_bins(schedule, n_steps: int, bin_steps: int) -> np.ndarray:
    """(B, n_bins, K) bin-averaged mixture weights."""
    w = schedule.w
    n_bins = -(-n_steps // bin_steps)
    out = np.zeros((w.shape[1], n_bins, w.shape[2]), np.float64)
    for b in range(n_bins):
        steps = np.arange(b * bin_steps, min((b + 1) * bin_steps, n_steps))
        slots = np.minimum(steps // schedule.slot_steps, w.shape[0] - 1)
        out[:, b] = w[slots].mean(axis=0)
    return out.astype(np.float32)


def _input_rate(ev, batch, n_bins, n_ch, bin_steps, n_steps, dt) -> np.ndarray:
    counts = np.zeros((batch, n_bins, n_ch), np.float32)
    np.add.at(counts, (ev["trial"], ev["step"] // bin_steps, ev["neuron"]), 1)
    widths = np.minimum(bin_steps, n_steps - np.arange(n_bins) * bin_steps) * dt * 1e-3
    return counts / widths[None, :, None].astype(np.float32)


def _simulate(loaded: LoadedSpec, structure, *, batch: int, seed: int, trial_odours=None,
              duration=None, progress: bool = True, extra_attrs=None) -> xr.Dataset:
    from neurodsl.compile.olfactory import build_olfactory
    from neurodsl.io.dataset import provenance_attrs, spiking_dataset

    spec = loaded.spec
    if duration is not None:
        from neurodsl import units as U
        spec = spec.model_copy(update={"duration": U.parse_quantity(duration, U.TIME)})
    dt, bin_steps, chunk_steps = _bins(spec)
    n_steps = spec.n_steps
    model = build_olfactory(spec, structure, batch=batch, trial_odours=trial_odours)
    net = model.net
    net.init_state(batch, seed)
    res = run_network(net, n_steps, bin_steps, chunk_steps, False, progress, record_sources=True,
                      engine="auto")  # the loop on CPU: 1.55x xla at batch 50 (benchmarks/RESULTS.md)
    perm = model.perm
    neuron = perm[res.events["neuron"]]
    order = np.lexsort((neuron, res.events["trial"], res.events["step"]))
    events = {"trial": res.events["trial"][order], "step": res.events["step"][order], "neuron": neuron[order]}
    rate = np.empty(res.rate.shape, np.float32)
    rate[..., perm] = res.rate
    res.rate = None
    s = structure
    ei = s.cell_type.astype(str).tolist()
    n_syn = int(sum(p.n_synapses for p in net.projections))
    loop = max(res.loop_s, 1e-9)
    measured = n_steps - (min(chunk_steps, n_steps) if res.loop_s else 0)
    attrs = provenance_attrs(loaded.resolved_yaml, loaded.sha256, spec.seed, spec_name=spec.name,
                             precision=spec.precision, wall_time_s=res.wall_s, loop_time_s=res.loop_s,
                             neuron_steps_per_s=(s.n * batch * measured / loop) if res.loop_s else np.nan,
                             n_synapses=n_syn, n_mitral=model.n_mitral, schedule=spec.schedule.kind,
                             odours=spec.odours.kind, run_seed=int(seed), engine=res.engine, **(extra_attrs or {}))
    ds = spiking_dataset(events, rate, dt_ms=dt, n_steps=n_steps, bin_ms=bin_steps * dt,
                         population=ei, ei=ei, attrs=attrs)
    assembly = s.assembly if s.assembly is not None else np.full(s.n, -1)
    ds = ds.assign_coords(assembly=("neuron", np.asarray(assembly, np.int32)))
    if "labels" in s.meta and len(s.meta["labels"]) == s.n:
        ds = ds.assign_coords(cell_label=("neuron", np.asarray(s.meta["labels"], dtype=object)))
    ev = res.source_events["mitral"]
    n_bins = ds.sizes["time"]
    pat, sched = model.patterns, model.source.schedule
    ds["input_spike_trial"] = ("input_spike", ev["trial"].astype(np.int32))
    ds["input_spike_step"] = ("input_spike", ev["step"].astype(np.int32),
                              {"units": "steps", "long_name": "time step of the mitral spike"})
    ds["input_spike_channel"] = ("input_spike", ev["neuron"].astype(np.int32))
    ds["input_rate"] = (("trial", "time", "channel"),
                        _input_rate(ev, batch, n_bins, model.n_mitral, bin_steps, n_steps, dt),
                        {"units": "Hz", "long_name": "mitral firing rate"})
    w = _odour_over_bins(sched, n_steps, bin_steps)
    ds["odour_weight"] = (("trial", "time", "odour"), w, {"long_name": "odour mixture weight"})
    ds["odour_dominant"] = (("trial", "time"), np.where(w.max(-1) > 0, w.argmax(-1), -1).astype(np.int32))
    held = sched.presented if sched.presented is not None else np.where(
        w.mean(1).max(-1) > 0, w.mean(1).argmax(-1), -1)
    ds["trial_odour"] = ("trial", np.asarray(held, np.int32), {"long_name": "odour presented, -1 = baseline"})
    ds["odour_rate"] = (("odour", "channel"), pat.rates().astype(np.float32), {"units": "Hz"})
    ds["base_rate"] = ("channel", pat.base.astype(np.float32), {"units": "Hz"})
    ds = ds.assign_coords(odour=np.arange(pat.n_odours), odour_name=("odour", np.asarray(pat.names, object)),
                          channel=np.arange(model.n_mitral))
    if pat.channel is not None:
        ds = ds.assign_coords(input_channel=("channel", np.asarray(pat.channel_names, object)[pat.channel]))
    return _with_summary(ds)


def _with_summary(ds: xr.Dataset) -> xr.Dataset:
    from neurodsl.analysis.stats import population_summary
    summ = population_summary(ds, "ei")
    for g in summ["ei"].values.tolist():
        row = summ.sel(ei=g)
        ds.attrs[f"rate_{g}_hz"] = float(row["mean_rate"])
        ds.attrs[f"cv_{g}"] = float(row["mean_cv"])
        ds.attrs[f"fano_{g}"] = float(row["fano"])
        ds.attrs[f"silent_fraction_{g}"] = float(row["fraction_silent"])
    return ds


def teacher_summary(ds: xr.Dataset) -> str:
    """Console lines: per cell type mean rate, ISI CV and Fano factor, plus throughput."""
    lines = [f"{ds.attrs.get('spec_name', 'teacher')}: {ds.attrs['duration_ms']:.0f} ms x "
             f"{ds.sizes['trial']} trial(s), {ds.sizes['neuron']} neurons, {ds.sizes['channel']} mitral, "
             f"{ds.sizes['spike']} spikes"]
    for g in ("E", "I"):
        if f"rate_{g}_hz" in ds.attrs:
            n = int((ds["ei"].values == g).sum())
            lines.append(f"  {g}: {n:6d} neurons, mean rate {ds.attrs[f'rate_{g}_hz']:7.2f} Hz, "
                         f"ISI CV {ds.attrs[f'cv_{g}']:.2f}, Fano {ds.attrs[f'fano_{g}']:.2f}, "
                         f"silent {100 * ds.attrs[f'silent_fraction_{g}']:.0f} %")
    nsps = ds.attrs.get("neuron_steps_per_s")
    if nsps is not None and np.isfinite(nsps):
        lines.append(f"  throughput {nsps / 1e6:.2f} M neuron-steps/s (compilation excluded)")
    return "\n".join(lines)


def simulate_conditions(loaded: LoadedSpec, out_dir: str | Path | None = None, *, structure=None,
                        odour: int | None = None, duration=None, progress: bool = False) -> xr.Dataset:
    """The dashboard's three conditions as trials 0, 1, 2: ``odour``, baseline (no odour:
    every mitral cell at its base rate), ``odour`` again with new Poisson noise.

    Same network and odour patterns as the teacher; ``odour`` (index from 0) and
    ``duration`` (e.g. ``"2 s"``) default to the spec's ``dashboard`` section.  The trial coord
    ``condition`` names them.  With ``out_dir`` writes ``out_dir/conditions.nc``.
    """
    from neurodsl.compile.olfactory import resolve_structure
    from neurodsl.io.dataset import write_netcdf

    spec = loaded.spec
    configure_precision(spec.precision)
    if structure is None:
        structure, _ = resolve_structure(spec)
    k = spec.dashboard.odour if odour is None else int(odour)
    ds = _simulate(loaded, structure, batch=3, seed=spec.seed + 1, trial_odours=[k, -1, k],
                   duration=duration or spec.dashboard.duration, progress=progress,
                   extra_attrs={"dashboard_odour": k})
    ds = ds.assign_coords(condition=("trial", np.asarray(CONDITIONS, object)))
    if out_dir is not None:
        write_netcdf(ds, Path(out_dir) / "conditions.nc")
    return ds


def run_teacher(loaded: LoadedSpec, out_dir: str | Path, *, progress: bool = True) -> xr.Dataset:
    """Simulate ``loaded.spec`` (kind teacher) and write DIR (see the module docstring).

    Returns the teacher Dataset; with ``progress`` a progress bar is shown and the
    per-cell-type summary (:func:`teacher_summary`) is printed.
    """
    from neurodsl.compile.olfactory import network_yaml, resolve_structure, teacher_network_spec
    from .checkpoint import atomic_write_text
    from neurodsl.io.dataset import write_netcdf
    from neurodsl.io.structure import save_structure
    from .teacher_folder import check_scaling

    spec = loaded.spec
    configure_precision(spec.precision)
    out = Path(out_dir)
    structure, origin = resolve_structure(spec)
    check_scaling(spec, structure, loaded.path)  # finite, >= 0 (the spec schema accepts .nan / .inf)
    out.mkdir(parents=True, exist_ok=True)
    if origin == "file" and Path(spec.network.structure).resolve() != (out / "network_structure.npz").resolve():
        shutil.copyfile(spec.network.structure, out / "network_structure.npz")
    elif origin != "file":
        save_structure(structure, out / "network_structure.npz")
    (out / "spec.yaml").write_text(loaded.resolved_yaml)
    atomic_write_text(out / "network.yaml", network_yaml(teacher_network_spec(spec, structure)))
    ds = _simulate(loaded, structure, batch=spec.trials, seed=spec.seed, progress=progress,
                   extra_attrs={"structure_origin": origin})
    write_netcdf(ds, out / "teacher.nc")
    if spec.dashboard.enabled:
        simulate_conditions(loaded, out, structure=structure, progress=False)
    if progress:
        print(teacher_summary(ds))
    return ds

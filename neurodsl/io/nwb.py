"""NWB input (``data.file: recording.nwb``): units, trials and inputs -> rnn_export variables.

:func:`read_nwb` returns what :func:`neurodsl.io.rnn_export_files.read_raw` returns for an
rnn_export file -- rnn_export variables in python layout, ``"nwb"``, notes -- so
:func:`neurodsl.io.rnn_export.load_rnn_export` checks and builds the same Dataset from it.

* Trials: each row of the trials table is a trial; its window starts at
  ``align + window_start`` (``align`` a trials column in s, default ``start_time``;
  ``window_start`` default ``start_time - align``, which must then be the same in every trial) and
  is ``window`` long (default the longest trial, in whole bins of ``dt``).  ``time_axis`` = bin
  centres relative to ``align``.  Every other scalar column becomes a trial label ``trial_<col>``
  (text columns: codes 0..n-1 of the sorted values, listed in the notes); without a ``duration_ms``
  column, ``trial_duration_ms`` = stop_time - align (time_axis ms, for ``mask: trial_duration``).
* Units: the spike times of each unit counted in the trial's bins, rate = count / dt (sp/s);
  ``ei_column`` gives E/I ('E'/'I', 'excitatory'/'inhibitory' or 1/2); ids -> ``neuron_ids``;
  other numeric columns -> per-neuron coords.
* Inputs: each TimeSeries of ``series`` (searched in stimulus, acquisition, then processing
  modules; ``module/name`` names one there; default all of stimulus) is sampled per bin: the mean
  of its samples in the bin, else the last earlier sample (NaN before the first).  Each interval
  table NAME of ``intervals`` is 1 in bins whose centre lies in one of its intervals;
  NAME.COLUMN gives one channel per distinct value of COLUMN (sorted).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from neurodsl.errors import DataError, Location

__all__ = ["read_nwb"]



def read_nwb(path: str | Path, *, dt_ms: float | None = None, ei_column: str = "cell_type",
             align: str = "start_time", window_start_ms: float | None = None, window_ms: float | None = None,
             series: Sequence[str] | None = None, intervals: Sequence[str] = ()) -> tuple[dict, str, list[str]]:
    """rnn_export variables from the NWB file at ``path`` binned at ``dt_ms`` (see the module doc)."""
    from pynwb import NWBHDF5IO
    path = Path(path)
    loc = Location(file=str(path))
    if dt_ms is None or not dt_ms > 0:
        raise DataError("spike times need a bin width to be counted in", field="dt",
                        expected="the spec's dt (load_rnn_export(..., nwb={'dt_ms': ...}))", location=loc)
    notes: list[str] = []
    try:
        io = NWBHDF5IO(str(path), "r")
        nwb = io.read()
    except Exception as exc:  # pynwb/hdmf raise many types for a file that is not NWB
        raise DataError(f"cannot read NWB file: {type(exc).__name__}: {exc}"[:300], field="file",
                        expected="an NWB 2.x file (pynwb)", location=loc) from None
    with io:
        edges, time, raw = _trials(nwb, dt_ms, align, window_start_ms, window_ms, loc, notes)
        raw.update(_units(nwb, edges, dt_ms, ei_column, loc))
        centres = (edges[:, :-1] + edges[:, 1:]) / 2
        raw.update(_series(nwb, edges, series, loc, notes))
        for name in intervals:
            raw.update(_interval_input(nwb, name, centres, loc))
        raw.update(time_axis=time, bin_size_ms=np.float64(dt_ms))
        if nwb.session_id:
            raw["session_name"] = str(nwb.session_id)
    K, T, N = raw["firing_rates"].shape
    notes.append(f"read NWB: {K} trials x {T} bins of {dt_ms:g} ms from the trials table (align {align!r}), "
                 f"{N} units, inputs: {', '.join(k[6:] for k in raw if k.startswith('input_')) or 'none'}")
    return raw, "nwb", notes


def _column(table, name: str, field: str, loc: Location) -> np.ndarray:
    cols = list(table.colnames)
    if name not in cols:
        raise DataError(f"{table.name} table has no column {name!r} (has: {', '.join(cols) or 'none'})",
                        field=field, expected=f"a column of the {table.name} table", location=loc)
    return np.asarray(table[name].data[:])


def _trials(nwb, dt_ms, align, window_start_ms, window_ms, loc, notes):
    trials = nwb.trials
    if trials is None or len(trials) == 0:
        raise DataError("no trials table (or it is empty)", field="trials",
                        expected="a trials table with one row per trial", location=loc)
    start = _column(trials, "start_time", "trials", loc).astype(np.float64) * 1000.0
    stop = _column(trials, "stop_time", "trials", loc).astype(np.float64) * 1000.0
    zero = _column(trials, align, "data.nwb.align", loc).astype(np.float64) * 1000.0
    if window_start_ms is None:
        off = np.round(start - zero, 6)
        if np.ptp(off) > 1e-3:
            raise DataError(f"trials start {off.min():g}..{off.max():g} ms from {align!r}: no common window start",
                            field="data.nwb.window_start", expected="a window start relative to align, e.g. -500 ms",
                            location=loc)
        window_start_ms = float(off[0])
    first = zero + window_start_ms
    if window_ms is None:
        window_ms = float(np.max(stop - first))
    T = int(np.ceil(np.round(window_ms / dt_ms, 6)))
    if T < 1:
        raise DataError(f"the trial window is {window_ms:g} ms long", field="data.nwb.window",
                        expected=f"at least one bin of {dt_ms:g} ms", location=loc)
    edges = (first[:, None] + np.arange(T + 1)[None, :] * dt_ms) / 1000.0  # s
    raw: dict = {}
    skip = {"start_time", "stop_time", align}
    for name in trials.colnames:
        if name in skip:
            continue
        v = np.asarray(trials[name].data[:])
        if v.ndim != 1 or v.dtype.kind not in "biufUSO":
            notes.append(f"trials column {name!r} is not one value per trial: not a label")
            continue
        if v.dtype.kind in "USO":
            try:
                values, v = np.unique(v.astype(str), return_inverse=True)
            except (TypeError, ValueError):
                notes.append(f"trials column {name!r} is not one value per trial: not a label")
                continue
            notes.append(f"trials column {name!r}: codes 0..{len(values) - 1} = {', '.join(values[:12])}")
        raw[f"trial_{name}"] = v.astype(np.float64)
    if "trial_duration_ms" not in raw:
        raw["trial_duration_ms"] = np.round(stop - zero, 6)  # on the time_axis, as rnn_export
    time = np.round(window_start_ms + (np.arange(T) + 0.5) * dt_ms, 6)
    return edges, time, raw


def _units(nwb, edges: np.ndarray, dt_ms: float, ei_column: str, loc: Location) -> dict:
    units = nwb.units
    if units is None or len(units) == 0:
        raise DataError("no units table (or it is empty)", field="units",
                        expected="a units table with spike_times", location=loc)
    times = np.asarray(units["spike_times"].target.data[:], dtype=np.float64)
    ends = np.asarray(units["spike_times"].data[:], dtype=np.int64)
    N, (K, T1) = len(ends), edges.shape
    counts = np.zeros((K, T1 - 1, N))
    for n, (a, b) in enumerate(zip(np.r_[0, ends[:-1]], ends)):
        st = np.sort(times[a:b])
        counts[:, :, n] = np.diff(np.searchsorted(st, edges, side="left"), axis=1)
    ei = _column(units, ei_column, "data.nwb.ei_column", loc)
    text = np.char.lower(ei.astype(str))
    nt = np.where(np.isin(text, ("e", "exc", "excitatory", "1", "1.0")), 1.0,
                  np.where(np.isin(text, ("i", "inh", "inhibitory", "2", "2.0")), 2.0, np.nan))
    if np.isnan(nt).any():
        bad = sorted(set(ei.astype(str)[np.isnan(nt)].tolist()))[:5]
        raise DataError(f"units column {ei_column!r} has values {bad}", field="data.nwb.ei_column",
                        expected="E/I, excitatory/inhibitory or 1/2 for every unit", location=loc)
    out = {"firing_rates": counts * 1000.0 / dt_ms, "neuron_type": nt,
           "neuron_ids": np.asarray(units.id.data[:], dtype=np.float64)}
    for name in units.colnames:
        if name in (ei_column, "spike_times", "obs_intervals", "electrodes", "waveforms", "waveform_mean",
                    "waveform_sd") or name.startswith("trial_"):
            continue
        v = np.asarray(units[name].data[:])
        if v.ndim == 1 and v.dtype.kind in "biuf":
            out[name] = v.astype(np.float64)
    return out


def _find_series(nwb, name: str):
    if "/" in name:
        mod, _, ts = name.partition("/")
        return nwb.processing[mod].data_interfaces.get(ts) if mod in nwb.processing else None
    for group in (nwb.stimulus, nwb.acquisition):
        if name in group:
            return group[name]
    for mod in nwb.processing.values():
        if name in mod.data_interfaces:
            return mod.data_interfaces[name]
    return None


def _series(nwb, edges: np.ndarray, names, loc: Location, notes: list[str]) -> dict:
    from pynwb import TimeSeries
    if names is None:
        names = sorted(n for n, v in nwb.stimulus.items() if isinstance(v, TimeSeries))
    out = {}
    for name in names:
        ts = _find_series(nwb, name)
        if not isinstance(ts, TimeSeries):
            have = sorted(list(nwb.stimulus) + list(nwb.acquisition))
            raise DataError(f"no TimeSeries {name!r} (stimulus/acquisition have: {', '.join(have) or 'none'})",
                            field="data.nwb.series", expected="names of TimeSeries in the file", location=loc)
        data = np.asarray(ts.data[:], dtype=np.float64)
        stamps = np.asarray(ts.timestamps[:] if ts.timestamps is not None else
                            ts.starting_time + np.arange(len(data)) / ts.rate, dtype=np.float64)
        out[f"input_{name.rpartition('/')[2]}"] = _sample(data, stamps, edges)
    return out


def _sample(data: np.ndarray, stamps: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """(K, T, ...) per-bin means of ``data`` at ``stamps`` in bins ``edges`` (K, T+1); hold if a bin is empty."""
    order = np.argsort(stamps, kind="stable")
    data, stamps = data[order], stamps[order]
    K, T1 = edges.shape
    out = np.full((K, T1 - 1) + data.shape[1:], np.nan)
    padded = np.concatenate([data, np.zeros((1,) + data.shape[1:])])
    for k in range(K):
        idx = np.searchsorted(stamps, edges[k], side="left")
        n = np.diff(idx)
        sums = np.add.reduceat(padded, np.minimum(idx, len(data)), axis=0)[:-1]
        full = n > 0
        out[k, full] = sums[full] / n[full].reshape((-1,) + (1,) * (data.ndim - 1))
        hold = ~full & (idx[:-1] > 0)
        out[k, hold] = data[idx[:-1][hold] - 1]
    return out


def _interval_input(nwb, spec: str, centres: np.ndarray, loc: Location) -> dict:
    name, _, column = spec.partition(".")
    table = nwb.intervals.get(name) if nwb.intervals is not None else None
    if table is None:
        have = ", ".join(nwb.intervals) if nwb.intervals is not None else "none"
        raise DataError(f"no interval table {name!r} (has: {have})", field="data.nwb.intervals",
                        expected="names of interval tables (NAME or NAME.COLUMN)", location=loc)
    a = _column(table, "start_time", "data.nwb.intervals", loc).astype(np.float64)
    b = _column(table, "stop_time", "data.nwb.intervals", loc).astype(np.float64)
    flat = centres.ravel()
    order = np.argsort(flat)
    lo, hi = np.searchsorted(flat[order], a, "left"), np.searchsorted(flat[order], b, "left")
    if not column:
        on = np.zeros(flat.size)
        for i, j in zip(lo, hi):
            on[order[i:j]] = 1.0
        return {f"input_{name}": on.reshape(centres.shape)}
    lab = _column(table, column, "data.nwb.intervals", loc)
    values, codes = np.unique(lab.astype(str) if lab.dtype.kind in "USO" else lab, return_inverse=True)
    on = np.zeros((flat.size, len(values)))
    for i, j, c in zip(lo, hi, codes.ravel()):
        on[order[i:j], c] = 1.0
    return {f"input_{name}_{column}": on.reshape(centres.shape + (len(values),))}

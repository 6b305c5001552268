"""rnn_export -> NWB (``examples/mat_to_nwb.py``): binned counts become spike times of a units table.

An rnn_export holds *binned rates* ``firing_rates`` (sp/s) = integer spike counts / bin.  The NWB
copy stores what real NWB files hold, spike times: ``c`` spikes of a bin ``[a, a + bin)`` are put
at ``a + (i + 0.5) / c * bin`` (i = 0..c-1; one spike at the bin centre), at least
``bin / (2 c)`` from an edge, so counting them in bins of the same width gives the counts back
exactly (rates = counts / bin; both exports tested are integer counts to the last bit).
Non-integer counts (smoothed rates) are an error: they have no spike times.

Layout: trial ``k`` is ``[k * (T + 1) * bin, ... + T * bin)`` seconds on one session timeline
(one empty bin between trials); the trials table has ``start_time``/``stop_time``, ``time_zero``
(the time 0 of ``time_axis``: read with ``data.nwb.align: time_zero``) and one float column per
``trial_<name>`` (``trial_duration_ms`` -> ``duration_ms``).  Units: ``id`` = ``neuron_ids``,
``cell_type`` "E"/"I" (``neuron_type`` 1/2), other per-neuron variables as columns.  Each
``input_<name>`` is a TimeSeries in ``stimulus`` sampled once per bin at its centre.
"""
from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np

from neurodsl.errors import DataError, Location

__all__ = ["write_nwb", "spike_times_from_counts"]


def spike_times_from_counts(counts: np.ndarray, left: np.ndarray, bin_s: float) -> np.ndarray:
    """Spike times (s) for integer ``counts`` (B,) of bins starting at ``left`` (B,), evenly inside each bin."""
    c = counts.astype(np.int64)
    rep = np.repeat(np.arange(c.size), c)
    first = np.repeat(np.cumsum(c) - c, c)
    i = np.arange(rep.size) - first
    return left[rep] + (i + 0.5) / c[rep] * bin_s


def write_nwb(path: str | Path, raw: dict, source: str = "") -> Path:
    """Write rnn_export variables ``raw`` (python layout, as ``read_raw`` gives) as NWB at ``path``."""
    from hdmf.backends.hdf5 import H5DataIO
    from pynwb import NWBHDF5IO, NWBFile, TimeSeries

    path = Path(path)
    loc = Location(file=source or str(path))
    fr = np.asarray(raw["firing_rates"], dtype=np.float64)
    K, T, N = fr.shape
    bin_ms = float(np.ravel(raw["bin_size_ms"])[0])
    counts = fr * bin_ms / 1000.0
    rounded = np.round(counts)
    exact = np.isfinite(fr).all() and np.abs(counts - rounded).max() <= 1e-9 and (rounded * 1000.0 / bin_ms == fr).all()
    if not exact:
        raise DataError("firing_rates are not integer spike counts / bin_size_ms (or hold NaN): no spike times "
                        "reproduce them", field="firing_rates", expected="count / bin rates (sp/s)", location=loc)
    time = np.ravel(raw.get("time_axis", (np.arange(T) + 0.5) * bin_ms)).astype(np.float64)
    bin_s, period = bin_ms / 1000.0, (T + 1) * bin_ms / 1000.0
    start = np.arange(K) * period
    session = str(raw.get("session_name", "") or path.stem)
    nwb = NWBFile(session_description=f"rnn_export {session} converted by neurodsl (examples/mat_to_nwb.py); "
                                      f"spike times rebuilt from counts in {bin_ms:g} ms bins",
                  identifier=f"neurodsl-{session}", session_id=session,
                  session_start_time=_dt.datetime(2000, 1, 1, tzinfo=_dt.timezone.utc),
                  notes=f"bin_size_ms={bin_ms:g}; trial k spans [k*{period:g}, k*{period:g} + {T * bin_s:g}) s")
    labels = {k: np.ravel(v).astype(np.float64) for k, v in raw.items()
              if k.startswith("trial_") and np.size(v) == K and not isinstance(v, str)}
    nwb.add_trial_column("time_zero", "time 0 of the export's time_axis (s)")
    for name in labels:
        nwb.add_trial_column(name[6:], f"rnn_export {name}")
    zero = start + (0.5 * bin_ms - time[0]) / 1000.0
    for k in range(K):
        nwb.add_trial(start_time=start[k], stop_time=start[k] + T * bin_s, time_zero=zero[k],
                      **{n[6:]: v[k] for n, v in labels.items()})
    ids = np.ravel(raw.get("neuron_ids", np.arange(N))).astype(np.float64)
    ids = ids.astype(np.int64) if len(np.unique(ids)) == N and (ids == np.round(ids)).all() else np.arange(N)
    nt = np.ravel(raw["neuron_type"])
    extra = {k: np.ravel(v).astype(np.float64) for k, v in raw.items()
             if k not in ("neuron_type", "neuron_ids") and not isinstance(v, str) and np.size(v) == N
             and sum(d > 1 for d in np.shape(v)) == 1 and not k.startswith(("trial_", "input_"))}
    nwb.add_unit_column("cell_type", "E (excitatory) or I (inhibitory), from rnn_export neuron_type 1/2")
    for name in extra:
        nwb.add_unit_column(name, f"rnn_export {name}")
    left = (start[:, None] + np.arange(T)[None, :] * bin_s).ravel()
    for n in range(N):
        spikes = spike_times_from_counts(rounded[:, :, n].ravel(), left, bin_s)
        nwb.add_unit(spike_times=spikes, id=int(ids[n]), cell_type="E" if nt[n] == 1 else "I",
                     **{c: v[n] for c, v in extra.items()})
    centres = (start[:, None] + (np.arange(T)[None, :] + 0.5) * bin_s).ravel()
    stamps = None
    for name in sorted(k for k in raw if k.startswith("input_")):
        a = np.asarray(raw[name], dtype=np.float64)
        data = a.reshape(K * T, *a.shape[2:])
        ts = TimeSeries(name=name[6:], data=H5DataIO(data, compression="gzip"), unit="a.u.",
                        description=f"rnn_export {name}, one sample per bin at its centre",
                        timestamps=stamps if stamps is not None else H5DataIO(centres, compression="gzip"))
        if stamps is None:  # the other series link these timestamps
            stamps = ts
        nwb.add_stimulus(ts)
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path

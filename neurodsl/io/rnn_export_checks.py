"""Value checks of an ``rnn_export`` recording that make a fit meaningless (used by
:func:`neurodsl.io.rnn_export.load_rnn_export` after masking).

Each is a one-line :class:`~neurodsl.errors.DataError`, or an
:class:`~neurodsl.io.rnn_export.RnnExportWarning` where a fit is still meaningful:

* ``time_axis`` steps that differ from ``bin_size_ms`` (error: the model steps once per bin of
  ``bin_size_ms``, so one of the two is wrong and the time scale of the fit with it);
* values beyond float32's range (error: the loader stores float32, they would become inf and be
  dropped or turn the loss into NaN);
* rates above :data:`MAX_RATE` sp/s (error: no neuron fires that fast; the squared errors of the
  loss overflow -- usually a unit or scaling mistake);
* no valid bin, or rates that are zero in every valid bin (error: there is nothing to fit and
  every correlation is NaN);
* neurons that are silent in every valid bin (warning: their correlation is undefined).
"""
from __future__ import annotations

import numpy as np

from neurodsl.errors import DataError, Location

MAX_RATE = 1e5  # sp/s; recorded maxima are < 1000 sp/s
F32_MAX = float(np.finfo(np.float32).max)


def check_time_axis(time: np.ndarray, bin_ms: float, loc: Location) -> None:
    """``time_axis`` must advance by ``bin_size_ms`` per bin."""
    if not np.isfinite(time).all():
        raise DataError(f"time_axis has {int((~np.isfinite(time)).sum())} non-finite values", field="time_axis",
                        expected="finite bin centres (ms), or no time_axis", location=loc)
    steps = np.diff(time)
    if steps.size and not np.allclose(steps, bin_ms, rtol=1e-6, atol=1e-6 * bin_ms):
        shown = ", ".join(f"{s:g}" for s in np.unique(np.round(steps, 9))[:5])
        raise DataError(f"time_axis steps are {shown} ms but bin_size_ms is {bin_ms:g} ms; one of them is wrong "
                        "and with it the time scale of the model (one step per bin)", field="time_axis",
                        expected=f"steps of {bin_ms:g} ms (or fix bin_size_ms, or leave time_axis out)",
                        location=loc)


def check_values(rates: np.ndarray, inputs: np.ndarray, valid: np.ndarray | None, loc: Location,
                 warn) -> None:
    """Range, overflow and silence checks on masked ``rates`` (K, T, N) and ``inputs`` (K, T, C)."""
    v = np.ones(rates.shape[:2], bool) if valid is None else valid
    if not v.any():
        raise DataError(f"no valid bin in {rates.shape[0]} trials x {rates.shape[1]} bins", field="firing_rates",
                        expected="at least some bins without NaN / within trial_duration_ms", location=loc)
    for name, a, bound, why in (
            ("firing_rates", rates, MAX_RATE, f"no neuron fires faster than ~1000 sp/s; above {MAX_RATE:g} sp/s "
             "the loss overflows (a unit or scaling mistake?)"),
            ("input_*", inputs, F32_MAX, "inputs are stored as float32")):
        if a.size == 0:
            continue
        top = float(np.nanmax(np.abs(a)))
        if top > F32_MAX:
            n = int((np.abs(np.nan_to_num(a)) > F32_MAX).sum())
            raise DataError(f"{name} has {n} values beyond float32's range (max |value| {top:.3g} > "
                            f"{F32_MAX:.3g}); they would become inf", field=name,
                            expected="values within float32's range", location=loc)
        if top > bound:
            raise DataError(f"{name} reaches {top:.3g}; {why}", field=name,
                            expected=f"rates in sp/s (<= {bound:g})", location=loc)
    r = np.where(v[..., None], np.nan_to_num(rates), 0.0)
    if not r.any():
        raise DataError(f"firing_rates are zero in every valid bin of all {rates.shape[2]} neurons: there is "
                        "nothing to fit (every correlation would be NaN)", field="firing_rates",
                        expected="recorded rates (sp/s), not all zero", location=loc)
    silent = np.flatnonzero(~r.any((0, 1)))
    if silent.size:
        warn(f"{silent.size} of {rates.shape[2]} neurons are silent in every valid bin (0-based: "
             f"{silent[:10].tolist()}{' ...' if silent.size > 10 else ''}); their correlation is undefined")

"""Mask policies for :func:`neurodsl.io.rnn_export.load_rnn_export`.

``"none"``            all bins are used; any NaN in rates/inputs is a DataError.
``"nan"``             bins where any rate or input is NaN are invalid; those NaN
                      become 0 (so always multiply losses by ``valid``).
``"trial_duration"``  bins whose left edge (centre - bin/2) is at/after
                      ``trial_duration_ms`` are invalid.  Before masking, the policy
                      checks that the durations mean "end of data":

                      * trials whose duration is < 2 bins while their rates are
                        non-zero up to the end (within the last ``max(2, T//20)``
                        bins) are a unit/meaning inconsistency: reported, and left
                        fully valid instead of losing almost all their bins;
                      * trials with non-zero rates after their duration are counted;
                      * a duration that equals the onset of an input channel (within
                        one bin) in >= 90% of trials is reported as an event time.

                      NaN inside valid bins is a DataError; beyond them it becomes 0.
                      Non-NaN values in invalid bins are kept as they are.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from neurodsl.errors import DataError, Location

MASKS = ("none", "trial_duration", "nan")


@dataclass
class Report:
    """What the loader did: every message goes to ``notes``; doubts also to ``warns``."""

    notes: list[str] = field(default_factory=list)
    warns: list[str] = field(default_factory=list)

    def note(self, msg: str) -> None:
        self.notes.append(msg)

    def warn(self, msg: str) -> None:
        self.notes.append(msg)
        self.warns.append(msg)


def nan_error(name: str, isnan: np.ndarray, loc: Location, why: str) -> DataError:
    """A DataError saying how many NaN there are and where (0-based indices)."""
    where = np.argwhere(isnan)
    trials = np.unique(where[:, 0])
    dims = "(trial, time, neuron)" if name == "firing_rates" else "(trial, time, input)"
    more = " ..." if len(trials) > 8 else ""
    return DataError(f"{name} has {len(where)} NaN values in {len(trials)} trials "
                     f"(0-based: {trials[:8].tolist()}{more}), "
                     f"time bins {np.unique(where[:, 1])[:8].tolist()}; first at {dims} = {tuple(where[0].tolist())}; {why}",
                     field=name, expected="no NaN, or mask='nan' / mask='trial_duration' to mask them", location=loc)


def apply_mask(mask: str, rates: np.ndarray, u: np.ndarray, input_names: tuple[str, ...], labels: dict,
               time: np.ndarray, bin_ms: float, report: Report, loc: Location):
    """Return ``(rates, inputs, valid or None)`` with NaN handled per ``mask``."""
    K, T, _ = rates.shape
    nan_r, nan_u = np.isnan(rates), np.isnan(u)
    if mask == "none":
        for name, m in (("firing_rates", nan_r), ("input_*", nan_u)):
            if m.any():
                raise nan_error(name, m, loc, "mask='none' uses every bin")
        report.note(f"mask='none': all {T} bins of all {K} trials are used")
        return rates, u, None
    if mask == "nan":
        valid = ~(nan_r.any(-1) | nan_u.any(-1))
        n_bad = int((~valid).sum())
        if n_bad:
            report.warn(f"mask='nan': {n_bad} of {K * T} bins ({100 * n_bad / (K * T):.1f}%) in "
                        f"{int((~valid).any(-1).sum())} trials have NaN ({int(nan_r.sum())} rate, "
                        f"{int(nan_u.sum())} input values) and are invalid; those NaN are set to 0")
        else:
            report.note("mask='nan': no NaN found, all bins valid")
        return np.nan_to_num(rates, nan=0.0), np.nan_to_num(u, nan=0.0), valid
    if "duration_ms" not in labels:
        raise DataError(f"mask='trial_duration' needs variable 'trial_duration_ms'; trial labels are: "
                        f"{', '.join(labels) or 'none'}", field="trial_duration_ms",
                        expected="a vector of trial durations in ms", location=loc)
    dur = np.asarray(labels["duration_ms"], dtype=np.float64)
    if not np.isfinite(dur).all():
        raise DataError(f"trial_duration_ms has {int((~np.isfinite(dur)).sum())} non-finite values",
                        field="trial_duration_ms", expected="finite durations (ms)", location=loc)
    edge = time - bin_ms / 2
    valid = edge[None, :] < dur[:, None]
    _duration_diagnostics(valid, dur, rates, u, input_names, edge, bin_ms, report)
    for name, m in (("firing_rates", nan_r), ("input_*", nan_u)):
        if (m & valid[..., None]).any():
            raise nan_error(name, m & valid[..., None], loc, "these bins lie within trial_duration_ms")
    n_bad = int((~valid).sum())
    had_nan = int((nan_r.any(-1) | nan_u.any(-1)).sum())
    report.note(f"mask='trial_duration': {n_bad} of {K * T} bins ({100 * n_bad / (K * T):.1f}%) are invalid"
                + (f"; {had_nan} of them held NaN, set to 0" if had_nan else ""))
    return np.nan_to_num(rates, nan=0.0), np.nan_to_num(u, nan=0.0), valid


def _duration_diagnostics(valid: np.ndarray, dur: np.ndarray, rates: np.ndarray, u: np.ndarray,
                          input_names: tuple[str, ...], edge: np.ndarray, b: float, report: Report) -> None:
    """Check that trial_duration_ms means 'end of data'; sets suspect trials fully valid."""
    K, T = valid.shape
    nz = (np.nan_to_num(rates) > 0).any(-1)  # (K, T): any neuron active
    tail = max(2, T // 20)
    suspect = (dur < 2 * b) & nz[:, -tail:].any(-1) & ~valid[:, -1]
    if suspect.any():
        d = dur[suspect]
        drop = 100 * (1 - valid[suspect].mean())
        t_end = edge[-1] + b
        sec = ("read as seconds they would end after the recorded window, so a s/ms mix-up is possible"
               if (d * 1000 >= t_end).all() else "read as seconds some would still end inside the window")
        report.warn(f"mask='trial_duration': {int(suspect.sum())} of {K} trials have trial_duration_ms < 2 bins "
                    f"({d.min():.3g}..{d.max():.3g} < {2 * b:g} ms) while their rates are non-zero to the end "
                    f"(within the last {tail} bins); masking by it would drop {drop:.1f}% of their bins. "
                    f"Unit/meaning inconsistency ({sec}): these trials are NOT masked (all bins kept valid)")
        valid[suspect] = True
    rest = ~suspect
    n_after = int((nz & ~valid)[rest].any(-1).sum())
    if n_after:
        m, v = rates.mean(-1)[rest], valid[rest]
        after_hz, before_hz = (float(np.mean(x[np.isfinite(x)])) if np.isfinite(x).any() else np.nan
                               for x in (m[~v], m[v]))
        other = " other" if suspect.any() else ""
        report.warn(f"mask='trial_duration': {n_after} of {int(rest.sum())}{other} trials have non-zero rates after "
                    f"trial_duration_ms (mean {after_hz:.2f} sp/s after vs {before_hz:.2f} before); "
                    f"it may not mark the end of the recording; masking drops {100 * (1 - v.mean()):.1f}% of their bins")
    for i, name in enumerate(input_names):
        on = np.nan_to_num(u[..., i]) != 0
        has = on.any(-1)
        if has.sum() < max(2, K // 2):
            continue
        close = np.abs(dur[has] - edge[on[has].argmax(-1)]) <= b
        if close.mean() >= 0.9:
            report.warn(f"trial_duration_ms equals the onset of input {name!r} within one bin in {int(close.sum())} "
                        f"of {int(has.sum())} trials: it looks like an event time, not the end of the data")

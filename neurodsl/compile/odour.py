"""Odour-modulated Poisson mitral cells: odour rate patterns, presentation schedules, the source.

The rate of mitral cell i at step n in trial b is::

    rate[b, i](n) = base[i] + sum_k w[b, k](n) * delta[k, i]      (clipped at 0, Hz)

``base`` is the no-odour rate, ``delta[k]`` odour k's change and ``w`` the
odour mixture weights of the schedule (one-hot for a fixed odour, 0 for the
baseline, a softmax of an OU process for ``ou``).  Odour patterns are built by
:data:`ODOURS` (kind -> builder), schedules by :data:`SCHEDULES`; both are plain
numpy (deterministic given the seed).  :class:`OdourSource` is the brainstate
source handed to :meth:`SpikingNetwork.assemble`.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import brainstate
import jax
import jax.numpy as jnp
import numpy as np

from neurodsl.errors import DataError, Location
from neurodsl.spec.teacher import FixedSchedule, OUSchedule, RandomOdours, TableOdours


@dataclass(frozen=True)
class OdourPatterns:
    """base (N,) Hz, delta (K, N) Hz, odour names (K,), channel of each mitral cell (N,) or None."""

    base: np.ndarray
    delta: np.ndarray
    names: list[str]
    channel: np.ndarray | None = None
    channel_names: list[str] | None = None

    @property
    def n_odours(self) -> int:
        return len(self.names)

    def rates(self) -> np.ndarray:
        """(K, N) absolute rate of each odour presented alone."""
        return np.clip(self.base[None] + self.delta, 0.0, None)


# ----------------------------------------------------------------------------- odour tables
def read_odour_table(path: str | Path, spontaneous: str = "spontaneous firing rate"):
    """Read an odour x channel CSV -> (odour names, channel names, values (K, C), spontaneous (C,) or None)."""
    loc = Location(str(path))
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    if len(rows) < 2:
        raise DataError("odour table has no data rows", location=loc, expected="a header and odour rows")
    head = rows[0][0].strip()
    headers = [r for r in rows if r[0].strip() == head]
    data = [r for r in rows if r[0].strip() != head]
    width = max(len(r) for r in rows)

    def num(x):
        try:
            return float(x)
        except ValueError:
            return None

    cols = [j for j in range(1, width)
            if all(j < len(r) and num(r[j]) is not None for r in data)]
    if not cols:
        raise DataError("no numeric channel columns in the odour table", location=loc)
    names_row = headers[-1] if headers else [""] * width
    channels = [(names_row[j].strip() if j < len(names_row) else "") or f"ch{j}" for j in cols]
    values = np.array([[float(r[j]) for j in cols] for r in data])
    odours = [r[0].strip() for r in data]
    spont = None
    if spontaneous in odours:
        i = odours.index(spontaneous)
        spont = values[i]
        values = np.delete(values, i, axis=0)
        odours.pop(i)
    return odours, channels, values, spont


def _channel_of(n: int, c: int, how: str) -> np.ndarray:
    if how == "cycle":
        return np.arange(n) % c
    return (np.arange(n) * c) // n


def table_odours(o: TableOdours, n_mitral: int, baseline: float, rng) -> OdourPatterns:
    names, channels, values, spont = read_odour_table(o.file, o.spontaneous)
    if o.select is not None:
        missing = [s for s in o.select if s not in names]
        if missing:
            raise DataError(f"odours {missing} are not in the table", field="odours.select",
                            location=Location(o.file), expected="names from the table's first column")
        idx = [names.index(s) for s in o.select]
        names, values = [names[i] for i in idx], values[idx]
    if o.values == "change":
        if spont is None:
            raise DataError(f"no row {o.spontaneous!r} of spontaneous rates", field="odours.spontaneous",
                            location=Location(o.file), expected="a spontaneous-rate row, or values: absolute")
        base_c, abs_c = spont, np.clip(spont[None] + o.gain * values, 0.0, None)
    else:
        base_c, abs_c = np.full(values.shape[1], baseline), np.clip(values, 0.0, None)
    ch = _channel_of(n_mitral, len(channels), o.channel_map)
    base = base_c[ch]
    return OdourPatterns(base, abs_c[:, ch] - base[None], names, ch, channels)


def random_odours(o: RandomOdours, n_mitral: int, baseline: float, rng) -> OdourPatterns:
    k = max(1, int(round(o.fraction * n_mitral)))
    delta = np.zeros((o.n, n_mitral))
    for j in range(o.n):
        delta[j, rng.choice(n_mitral, size=k, replace=False)] = o.modulation.internal
    return OdourPatterns(np.full(n_mitral, baseline), delta, [f"odour{j + 1}" for j in range(o.n)])


ODOURS = {"random": random_odours, "table": table_odours}


def odour_patterns(odours, n_mitral: int, baseline_hz: float, seed: int) -> OdourPatterns:
    return ODOURS[odours.kind](odours, n_mitral, baseline_hz, np.random.default_rng([seed, 11]))


# ----------------------------------------------------------------------------- schedules
@dataclass(frozen=True)
class OdourSchedule:
    """Mixture weights ``w`` (n_slots, B, K), each slot ``slot_steps`` steps long; ``presented``
    (B,) the odour held per trial (-1 baseline) or None for mixtures."""

    w: np.ndarray
    slot_steps: int
    presented: np.ndarray | None = None


def fixed_schedule(s: FixedSchedule, n_odours: int, batch: int, n_steps: int, dt: float, rng,
                   trial_odours=None) -> OdourSchedule:
    seq = trial_odours if trial_odours is not None else s.odours
    per = (np.asarray([seq[i % len(seq)] for i in range(batch)]) if seq
           else np.arange(batch) % n_odours)
    if (per >= n_odours).any() or (per < -1).any():
        raise DataError(f"odour index out of range in {per.tolist()}", field="schedule.odours",
                        expected=f"-1 .. {n_odours - 1}")
    w = np.zeros((1, batch, n_odours), np.float32)
    on = per >= 0
    w[0, np.nonzero(on)[0], per[on]] = 1.0
    return OdourSchedule(w, max(n_steps, 1), per.astype(np.int32))


def ou_schedule(s: OUSchedule, n_odours: int, batch: int, n_steps: int, dt: float, rng,
                trial_odours=None) -> OdourSchedule:
    slot = max(1, int(round(s.update.internal / dt)))
    n_slots = -(-n_steps // slot)
    h, tau = slot * dt, s.tau.internal
    a = np.exp(-h / tau)
    x = np.empty((n_slots, batch, n_odours))
    x[0] = rng.normal(0.0, s.sigma, (batch, n_odours))
    noise = rng.normal(0.0, s.sigma * np.sqrt(1 - a * a), (n_slots, batch, n_odours))
    for t in range(1, n_slots):  # exact OU update over one slot
        x[t] = a * x[t - 1] + noise[t]
    z = x / s.temperature
    z -= z.max(axis=-1, keepdims=True)
    w = np.exp(z)
    return OdourSchedule((w / w.sum(-1, keepdims=True)).astype(np.float32), slot)


SCHEDULES = {"fixed": fixed_schedule, "ou": ou_schedule}


def odour_schedule(schedule, n_odours: int, batch: int, n_steps: int, dt: float, seed: int,
                   trial_odours=None) -> OdourSchedule:
    """``trial_odours`` (a list, -1 = baseline) forces a fixed schedule (dashboard conditions)."""
    rng = np.random.default_rng([seed, 13])
    if trial_odours is not None:
        return fixed_schedule(FixedSchedule(), n_odours, batch, n_steps, dt, rng, trial_odours)
    return SCHEDULES[schedule.kind](schedule, n_odours, batch, n_steps, dt, rng)


# ----------------------------------------------------------------------------- the source
class OdourSource(brainstate.nn.Module):
    """Poisson mitral cells whose rates follow an odour schedule (see the module docstring).

    The schedule lives in a :class:`brainstate.State` (an input of the jitted loop,
    not a compile-time constant); :meth:`set_schedule` swaps it before a run.
    """

    def __init__(self, patterns: OdourPatterns, schedule: OdourSchedule, dt: float, dtype):
        super().__init__()
        self.size = len(patterns.base)
        self.dt = dt
        self.patterns = patterns
        self.base_p = jnp.asarray(patterns.base * dt * 1e-3, dtype)
        self.delta_p = jnp.asarray(patterns.delta * dt * 1e-3, dtype)
        self.dtype = dtype
        self.w = brainstate.State(jnp.zeros((1, 1, patterns.n_odours), dtype))
        self.set_schedule(schedule)

    def set_schedule(self, schedule: OdourSchedule) -> None:
        p_max = (self.base_p[None, None] + jnp.asarray(schedule.w, self.dtype) @ self.delta_p).max()
        if float(p_max) > 1:
            raise DataError("a mitral rate * dt exceeds 1", field="odours", expected="rates < 1/dt")
        self.schedule = schedule
        self.slot_steps = schedule.slot_steps
        self.w.value = jnp.asarray(schedule.w, self.dtype)

    def sample(self, n, key, batch: int):
        w = self.w.value
        slot = jnp.minimum(n // self.slot_steps, w.shape[0] - 1)
        p = jnp.clip(self.base_p + w[slot] @ self.delta_p, 0.0, 1.0)  # (B, N)
        return jax.random.uniform(key, (batch, self.size), dtype=p.dtype) < p

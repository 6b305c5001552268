"""Cells and input sources of the spiking core: conductance-based LIF populations, Poisson sources."""
from __future__ import annotations

import math
from dataclasses import dataclass

import brainstate
import jax
import jax.numpy as jnp
import numpy as np

from neurodsl.compile.connectivity import sample_values
from neurodsl.compile.kinetics import INTEGRATORS
from neurodsl.compile.spikes import Heaviside, reset
from neurodsl.errors import DataError, Location
from neurodsl.spec.network import FileRef, PiecewiseRate, PoissonGroup

NEVER = -(2 ** 30)  # last_spike of a neuron that has not spiked


@dataclass(frozen=True)
class PopulationInfo:
    name: str
    size: int
    cell_type: str
    offset: int  # index of the first neuron in the network-wide neuron axis


class LIFCondPopulation(brainstate.nn.Module):
    """A batch of conductance-based LIF neurons with per-receptor synaptic state."""

    def __init__(self, info: PopulationInfo, neuron, receptors: dict, dt: float, spike_fn=Heaviside()):
        super().__init__()
        self.info = info
        self.spike_fn = spike_fn
        self.g_L, self.E_L = neuron.g_L.internal, neuron.E_L.internal
        self.V_th, self.V_reset = neuron.V_th.internal, neuron.V_reset.internal
        self.C = neuron.capacitance_pF
        self.ref_steps = int(round(neuron.t_ref.internal / dt))
        self.integrator = INTEGRATORS[neuron.method]
        self.kinetics = receptors  # name -> kinetics object
        self.dt = dt
        self.V = brainstate.HiddenState(jnp.zeros((1, info.size)))
        self.last = brainstate.HiddenState(jnp.full((1, info.size), NEVER, jnp.int32))
        self.syn = {r: brainstate.HiddenState(jnp.zeros((k.n_vars, 1, info.size)))
                    for r, k in receptors.items()}

    def integrate(self, st: dict, n, I_ext) -> tuple[dict, object]:
        """Pure: advance V with the receptor values at the start of the step (refractory neurons
        keep V) and decay the receptors; ``st = {"V", "last", "syn": {receptor: x}}``."""
        g_syn = 0.0
        gE_syn = 0.0
        I = I_ext
        syn = {}
        for r, kin in self.kinetics.items():
            g = kin.value(st["syn"][r])
            if kin.E_rev is None:
                I = I + g
            else:
                g_syn = g_syn + g
                gE_syn = gE_syn + g * kin.E_rev
            syn[r] = kin.decay(st["syn"][r])
        V = st["V"]
        V_new = self.integrator(V, self.g_L, self.E_L, self.C, g_syn, gE_syn, I, self.dt)
        not_ref = (n - st["last"]) >= self.ref_steps
        return {"V": jnp.where(not_ref, V_new, V), "last": st["last"], "syn": syn}, not_ref

    def fire(self, st: dict, n, not_ref) -> tuple[dict, object]:
        """Pure: threshold and reset; returns the spike function's spikes (bool, or float in
        training).  The refractory clock always follows the hard threshold ``V > V_th``."""
        V = st["V"]
        fired = (V > self.V_th) & not_ref
        if self.spike_fn.binary:
            s = fired
        else:
            s = self.spike_fn((V - self.V_th) / (self.V_th - self.V_reset), not_ref)
        return {**st, "V": reset(self.spike_fn, V, s, fired, self.V_reset),
                "last": jnp.where(fired, n, st["last"])}, s

    def receive(self, st: dict, receptor: str, inc) -> dict:
        kin = self.kinetics[receptor]
        return {**st, "syn": {**st["syn"], receptor: kin.add(st["syn"][receptor], inc)}}

    def read(self) -> dict:
        return {"V": self.V.value, "last": self.last.value, "syn": {r: x.value for r, x in self.syn.items()}}

    def write(self, st: dict) -> None:
        self.V.value, self.last.value = st["V"], st["last"]
        for r, x in self.syn.items():
            x.value = st["syn"][r]


class _Stacked:
    """The (n_vars, B, N) view of a receptor's per-variable (B, N) HiddenStates (``.value`` get/set),
    so that :class:`LIFCondOnline` keeps the interface of ``LIFCondPopulation.syn``."""

    def __init__(self, parts: list):
        self.parts = parts

    @property
    def value(self):
        return jnp.stack([s.value for s in self.parts])

    @value.setter
    def value(self, x):
        for i, s in enumerate(self.parts):
            s.value = x[i]


class LIFCondOnline(LIFCondPopulation):
    """The same neuron, laid out for eligibility-trace (online) learning with braintrace.

    braintrace reads the learning signal ``dL_t/dh_t`` off the hidden states a step *writes*, and
    keeps the hidden-to-hidden Jacobian only among states of one shape.  So: ``V`` holds the
    potential *before* the reset and the reset is applied at the start of the next step (to the
    neurons whose clock says they fired at ``n - 1``: the same values as the core's order, spikes
    bit-identical); every receptor variable is its own (B, N) ``HiddenState`` (in the step a tuple;
    ``syn[r]`` stays a (n_vars, B, N) view for initial values and checkpoints); the integer refractory clock is a ``ShortTermState``.  Only
    ``detach_reset`` spike functions (the reset carries no gradient)."""

    def __init__(self, info: PopulationInfo, neuron, receptors: dict, dt: float, spike_fn=Heaviside()):
        super().__init__(info, neuron, receptors, dt, spike_fn)
        if not spike_fn.detach_reset:
            raise ValueError("online learning needs a detached reset (surrogate detach_reset: true)")
        self.last = brainstate.ShortTermState(self.last.value)
        self.syn_vars = {r: [brainstate.HiddenState(jnp.zeros((1, info.size))) for _ in range(k.n_vars)]
                         for r, k in receptors.items()}
        self.syn = {r: _Stacked(v) for r, v in self.syn_vars.items()}

    def integrate(self, st: dict, n, I_ext) -> tuple[dict, object]:
        V = jnp.where(st["last"] == n - 1, self.V_reset, st["V"])  # the deferred reset of step n - 1
        return super().integrate({**st, "V": V}, n, I_ext)

    def fire(self, st: dict, n, not_ref) -> tuple[dict, object]:
        V = st["V"]
        fired = (V > self.V_th) & not_ref
        s = fired if self.spike_fn.binary else self.spike_fn((V - self.V_th) / (self.V_th - self.V_reset), not_ref)
        return {**st, "last": jnp.where(fired, n, st["last"])}, s

    def read(self) -> dict:
        return {"V": self.V.value, "last": self.last.value,
                "syn": {r: tuple(s.value for s in v) for r, v in self.syn_vars.items()}}

    def write(self, st: dict) -> None:
        self.V.value, self.last.value = st["V"], st["last"]
        for r, v in self.syn_vars.items():
            for i, s in enumerate(v):
                s.value = st["syn"][r][i]

    def after_reset(self, st: dict, n):
        """V as the core holds it after step ``n`` (the reset applied)."""
        return jnp.where(st["last"] == n, self.V_reset, st["V"])


class PoissonSource(brainstate.nn.Module):
    """Independent Poisson spike trains; rate piecewise constant in time."""

    def __init__(self, name: str, group: PoissonGroup, dt: float, dtype):
        super().__init__()
        self.source, self.size, self.dt = name, group.size, dt
        if isinstance(group.rate, PiecewiseRate):
            self.t_steps = jnp.asarray([round(t.internal / dt) for t in group.rate.times], jnp.int32)
            self.p = jnp.asarray([v.internal * dt * 1e-3 for v in group.rate.values], dtype)
        else:
            self.t_steps = jnp.zeros(1, jnp.int32)
            self.p = jnp.asarray([group.rate.internal * dt * 1e-3], dtype)
        if float(jnp.max(self.p)) > 1:
            raise DataError(f"input {name!r}: rate * dt > 1", expected="rate < 1/dt")

    def sample(self, n, key, batch: int):
        i = jnp.searchsorted(self.t_steps, n, side="right") - 1
        return jax.random.uniform(key, (batch, self.size)) < self.p[i]


NEURONS = {"lif_cond": LIFCondPopulation}


def _init_array(v, shape, default: float, rng, pop: str, var: str) -> np.ndarray:
    if v is None:
        return np.full(shape, default)
    if isinstance(v, FileRef):
        with np.load(v.file) as z:
            key = v.key or var
            if key not in z:
                raise DataError(f"no array {key!r} for {pop}.{var}", field=f"initial_state.{pop}.{var}",
                                expected="one of " + ", ".join(z.files), location=Location(v.file))
            arr = np.asarray(z[key], dtype=np.float64)
        if arr.shape not in (shape[1:], shape):
            raise DataError(f"array {key!r} has shape {arr.shape}", field=f"initial_state.{pop}.{var}",
                            expected=f"{shape[1:]} or {shape}", location=Location(v.file))
        return np.broadcast_to(arr, shape).copy()
    return sample_values(v, math.prod(shape), rng, sign=0.0).reshape(shape)

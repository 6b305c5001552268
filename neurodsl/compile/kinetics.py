"""Receptor kinetics (state: an array of shape (n_vars, batch, n), or a tuple of n_vars (batch, n) arrays) and membrane integrators as small immutable objects (solvers as data).

All quantities are floats in the internal unit system (ms, mV, nS, pF, pA).
Each receptor kind is registered in :data:`RECEPTORS`, each integration method
in :data:`INTEGRATORS`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import jax.numpy as jnp

from neurodsl.spec.network import Receptor


def _like(x, parts):
    """``parts`` in the container of ``x``: a tuple of per-variable arrays (the online layout keeps
    each variable its own state) or one stacked array."""
    return tuple(parts) if isinstance(x, tuple) else jnp.stack(parts)


@dataclass(frozen=True)
class ExpKinetics:
    """Instant rise, exponential decay: ``x <- x * exp(-dt/tau)``, ``g = x``; a spike adds w."""

    tau: float
    E_rev: float | None
    dt: float
    n_vars = 1

    def decay(self, x):
        c = math.exp(-self.dt / self.tau)
        return (x[0] * c,) if isinstance(x, tuple) else x * c

    def add(self, x, inc):
        return (x[0] + inc,) if isinstance(x, tuple) else x + inc

    def value(self, x):
        return x[0]

    def from_value(self, g):
        return g[None]


@dataclass(frozen=True)
class DualExpKinetics:
    """``g = norm * (d - r)``, d and r decaying with tau_decay and tau_rise; a spike adds w to both.

    ``norm`` makes the peak of a single spike's conductance equal to w; the
    update is the exact solution over a step, so the kernel is exact at every step.
    """

    tau_rise: float
    tau_decay: float
    E_rev: float | None
    dt: float
    n_vars = 2

    @property
    def norm(self) -> float:
        td, tr = self.tau_decay, self.tau_rise
        t_peak = td * tr / (td - tr) * math.log(td / tr)
        return 1.0 / (math.exp(-t_peak / td) - math.exp(-t_peak / tr))

    def decay(self, x):
        return _like(x, [x[0] * math.exp(-self.dt / self.tau_decay), x[1] * math.exp(-self.dt / self.tau_rise)])

    def add(self, x, inc):
        return tuple(v + inc for v in x) if isinstance(x, tuple) else x + inc

    def value(self, x):
        if isinstance(x, tuple):  # braintrace takes one hidden state per equation: d passes an exact x*1 first
            return self.norm * (x[0] * 1.0 - x[1])
        return self.norm * (x[0] - x[1])

    def from_value(self, g):
        return jnp.stack([g / self.norm, jnp.zeros_like(g)])


def _exp(rec: Receptor, dt: float):
    return ExpKinetics(rec.tau_decay.internal, None if rec.E_rev is None else rec.E_rev.internal, dt)


def _dual(rec: Receptor, dt: float):
    return DualExpKinetics(rec.tau_rise.internal, rec.tau_decay.internal,
                           None if rec.E_rev is None else rec.E_rev.internal, dt)


RECEPTORS = {"exp": _exp, "dual_exp": _dual}


# ----------------------------------------------------------------------------- membrane
def exp_euler(V, g_L, E_L, C, g_syn, gE_syn, I, dt):
    """Exponential Euler for ``C dV/dt = g_L(E_L - V) + sum g(E - V) + I``.

    With conductances frozen over the step the equation is linear in V,
    ``dV/dt = A + B V`` with ``B = -(g_L + g_syn)/C`` and
    ``A = (g_L E_L + gE_syn + I)/C``; the update is
    ``V <- -A/B + (V + A/B) exp(B dt)``, written as Brian2's generated code writes it.
    """
    A = (g_L * E_L + gE_syn + I) / C
    B = -(g_L + g_syn) / C
    BA = A / B
    return -BA + (V + BA) * jnp.exp(B * dt)


def euler(V, g_L, E_L, C, g_syn, gE_syn, I, dt):
    """Forward Euler: ``V <- V + dt * (g_L(E_L - V) + gE_syn - g_syn V + I) / C``."""
    return V + dt * (g_L * (E_L - V) + (gE_syn - g_syn * V) + I) / C


INTEGRATORS = {"exp_euler": exp_euler, "euler": euler}

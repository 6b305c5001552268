"""A minimal event-driven olfactory network for grid search: OlfactoryNetwork + NetworkStructure -> SpikingNetwork.

Populations ``E`` and ``I`` (LIF with conductances, cells from
``OlfactoryNetwork.cells``) and one Poisson source ``input`` (the mitral cells
at a constant rate).  A synapse from presynaptic type T with structure weight
w adds ``|w| * scaling[post, T] * g_bar[T][r]`` to receptor r of the
postsynaptic neuron, where ``scaling`` is the structure's scaling times the
spec's.  No delays.  (To be merged with the teacher's compiler,
``neurodsl.compile.olfactory``.)
"""
from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from neurodsl import units as U
from neurodsl.compile.connectivity import Synapses
from neurodsl.compile.kinetics import RECEPTORS
from neurodsl.compile.network import (EventProjection, LIFCondPopulation, PoissonSource, PopulationInfo,
                                      SpikingNetwork)
from neurodsl.io.structure import NetworkStructure
from neurodsl.spec.network import PoissonGroup, PopulationInit, Uniform
from neurodsl.spec.olfactory import PRE_TYPES, OlfactoryNetwork

POST_TYPES = ("E", "I")


@dataclass(frozen=True)
class GridNetwork:
    net: SpikingNetwork
    order: np.ndarray  # structure index of each simulated neuron (E population first, then I)


def _synapses(pre, post, w, n_pre, n_post) -> Synapses:
    o = np.lexsort((post, pre))
    return Synapses(pre[o].astype(np.int32), post[o].astype(np.int32), np.abs(w[o]).astype(np.float64),
                    n_pre, n_post)


def build_grid_network(spec: OlfactoryNetwork, s: NetworkStructure, *, input_rate_hz: float, dt: float,
                       dtype=jnp.float32, seed: int = 0, random_init: bool = True) -> GridNetwork:
    """Compile ``spec`` with the connectome ``s``; ``dt`` in ms.

    ``random_init``: initial V uniform in [E_L, V_th) so the populations do not start in synchrony.
    """
    types = {"E": np.flatnonzero(s.is_exc), "I": np.flatnonzero(~s.is_exc)}
    local = np.empty(s.n, np.int64)
    for idx in types.values():
        local[idx] = np.arange(len(idx))
    scaling = s.scaling * spec.scaling_matrix()
    pops, infos, offset = {}, {}, 0
    for t in POST_TYPES:
        size = len(types[t])
        if size == 0:
            continue
        recs = sorted({r for pre in PRE_TYPES for r in spec.g_bar.get(pre, {})})
        kin = {r: RECEPTORS[spec.receptors[r].kind](spec.receptors[r], dt) for r in recs}
        infos[t] = PopulationInfo(t, size, t, offset)
        pops[t] = LIFCondPopulation(infos[t], spec.cells[t], kin, dt)
        offset += size
    sources = {}
    if s.n_inputs > 0:
        group = PoissonGroup(kind="poisson", size=s.n_inputs, rate=U.parse_quantity(f"{input_rate_hz} Hz"))
        sources["input"] = PoissonSource("input", group, dt, dtype)
    post_type = s.cell_type
    pre_type = {"rec": s.cell_type[s.rec_pre], "ff": np.full(len(s.ff_pre), "input")}
    projections = []
    for kind, pre, post, w in (("rec", s.rec_pre, s.rec_post, s.rec_weight), ("ff", s.ff_pre, s.ff_post, s.ff_weight)):
        for T in PRE_TYPES:
            if T not in pops and T not in sources:
                continue
            for j, P in enumerate(POST_TYPES):
                m = (pre_type[kind] == T) & (post_type[post] == P)
                if P not in pops or not m.any() or not spec.g_bar.get(T):
                    continue
                n_pre = s.n_inputs if T == "input" else len(types[T])
                pre_local = pre[m] if T == "input" else local[pre[m]]
                syn = _synapses(pre_local, local[post[m]], w[m], n_pre, len(types[P]))
                col = PRE_TYPES.index(T)
                scales = {r: float(scaling[j, col]) * g.internal for r, g in spec.g_bar[T].items()}
                projections.append(EventProjection(f"{T}->{P}", syn, T, P, 0, scales, dtype))
    initial = {}
    if random_init:
        for t in pops:
            c = spec.cells[t]
            initial[t] = PopulationInit(V=Uniform(dist="uniform", low=c.E_L, high=c.V_th))
    net = SpikingNetwork.assemble(pops, sources, projections, [], dt, dtype, initial, seed)
    order = np.concatenate([types[t] for t in POST_TYPES if t in pops])
    return GridNetwork(net, order)

"""Compile a ``kind: teacher`` spec + a NetworkStructure into a :class:`SpikingNetwork`.

* **Structure** (:func:`resolve_structure`): ``network.structure`` (npz) >
  ``connectome`` (CSV, :mod:`neurodsl.io.connectome_csv`) > ``network.generator``.
* **Order**: SpikingNetwork populations are contiguous, so the recurrent neurons
  are permuted to E-then-I (stable: each type keeps the structure's order).
  ``perm[c]`` is the structure index of compiled neuron ``c``; runners map
  outputs back with it, so every output is in the *structure's* order.
* **Weights**: a synapse of structure weight w from a presynaptic neuron of
  type T onto a neuron of type P adds ``|w| * scaling[P, T] * g_bar[T][r]`` to
  receptor r (``scaling`` = the structure file's scaling times
  ``network.scaling``; rows post E/I, columns pre E/I/input).
* **Populations** ``E`` and ``I`` (an empty type is left out), the source
  ``mitral`` (:class:`~neurodsl.compile.odour.OdourSource`); one EventProjection
  per (pre type, post type) pair with synapses; no delays.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurodsl.compile.connectivity import Synapses
from neurodsl.compile.generator import generate
from neurodsl.compile.kinetics import RECEPTORS
from neurodsl.compile.network import NEURONS, EventProjection, PopulationInfo, SpikingNetwork, precision_dtype
from neurodsl.compile.odour import OdourPatterns, OdourSource, odour_patterns, odour_schedule
from neurodsl.errors import DataError, Location, SpecError
from neurodsl.io.connectome_csv import load_connectome_csv
from neurodsl.io.structure import NetworkStructure, load_structure
from neurodsl.spec.olfactory import PRE_TYPES, OlfactoryNetwork
from neurodsl.spec.network import PopulationInit
from neurodsl.spec.teacher import TeacherSpec

TYPES = ("E", "I")


def resolve_structure(spec: TeacherSpec) -> tuple[NetworkStructure, str]:
    """The structure and where it came from: ``file``, ``connectome`` or ``generated``."""
    if spec.network.structure is not None:
        return load_structure(spec.network.structure), "file"
    if spec.connectome is not None:
        c = spec.connectome
        return load_connectome_csv(c.adjacency, c.labels, c.roles, layout=c.layout, weight=c.weight,
                                   min_count=c.min_count), "connectome"
    return generate(spec.network.generator, spec.seed), "generated"


def effective_scaling(network: OlfactoryNetwork, s: NetworkStructure, where: str = "network.scaling") -> np.ndarray:
    """(2, 3) effective scaling (rows post E/I, cols pre E/I/input), float64: the ONE place it is formed.

    It is held by the structure file (``scaling``, written with effective values by
    infer-network, homeostatic and fit-student) or by the spec (``network.scaling``), never by
    both: a structure with non-unit scaling plus a non-empty ``network.scaling`` would multiply
    them twice, and is a located error."""
    own = np.asarray(s.scaling, np.float64)
    spec = np.asarray(network.scaling_matrix(), np.float64)
    if network.scaling and not np.allclose(own, 1.0):
        raise SpecError("the structure already holds effective scaling factors "
                        f"({np.round(own, 4).tolist()}); network.scaling would multiply them again",
                        field=where, expected="an empty network.scaling with this structure (or a structure "
                        "with unit scaling)")
    return own * spec


@dataclass
class OlfactoryModel:
    """The compiled teacher: network, its mitral source and the index maps."""

    net: SpikingNetwork
    structure: NetworkStructure
    perm: np.ndarray          # compiled neuron c -> structure index perm[c]
    source: OdourSource
    patterns: OdourPatterns
    scaling: np.ndarray

    @property
    def n_mitral(self) -> int:
        return self.source.size


def _local(s: NetworkStructure):
    """Per structure neuron: its type's position (E then I, stable) and compiled index."""
    perm = np.concatenate([np.nonzero(s.cell_type == t)[0] for t in TYPES]).astype(np.int64)
    local = np.empty(s.n, np.int64)
    for t in TYPES:
        idx = np.nonzero(s.cell_type == t)[0]
        local[idx] = np.arange(len(idx))
    return perm, local


def _synapses(pre, post, w, n_pre, n_post) -> Synapses:
    order = np.lexsort((post, pre))
    return Synapses(pre[order].astype(np.int32), post[order].astype(np.int32),
                    np.abs(w[order]).astype(np.float64), n_pre, n_post)


def projection_edges(network: OlfactoryNetwork, s: NetworkStructure, source: str = "mitral"):
    """Per (pre type j, post type i) pair with synapses: ``(i, j, pre name, post name, Synapses
    (|w|, sorted), structure index of each synapse (into rec_* or ff_*), g_bar per receptor)``.
    The one place that splits a structure into projections (teacher, grid search, training)."""
    _, local = _local(s)
    sizes = {t: int((s.cell_type == t).sum()) for t in TYPES}
    sizes["input"] = s.n_inputs
    post_t = s.cell_type
    edges = {"E": (s.rec_pre, s.rec_post, s.rec_weight, s.cell_type[s.rec_pre]),
             "I": (s.rec_pre, s.rec_post, s.rec_weight, s.cell_type[s.rec_pre]),
             "input": (s.ff_pre, s.ff_post, s.ff_weight, np.full(len(s.ff_pre), "input"))}
    g_bar = network.g_bar
    for j, pre_type in enumerate(PRE_TYPES):
        pre, post, w, ptype = edges[pre_type]
        for i, post_type in enumerate(TYPES):
            sel = (ptype == pre_type) & (post_t[post] == post_type)
            if not sel.any() or sizes[post_type] == 0:
                continue
            if pre_type not in g_bar or not g_bar[pre_type]:
                raise DataError(f"the structure has {pre_type}->{post_type} synapses but g_bar has no "
                                f"entry for {pre_type!r}", field=f"network.g_bar.{pre_type}",
                                expected="peak conductances per receptor, e.g. {AMPA: 4 nS}")
            idx = np.nonzero(sel)[0]
            pre_idx = pre[idx] if pre_type == "input" else local[pre[idx]]
            order = np.lexsort((local[post[idx]], pre_idx))
            syn = _synapses(pre_idx[order], local[post[idx]][order], w[idx][order],
                            sizes[pre_type], sizes[post_type])
            src = source if pre_type == "input" else pre_type
            yield i, j, src, post_type, syn, idx[order], {r: float(q.internal) for r, q in g_bar[pre_type].items()}


def build_projections(network: OlfactoryNetwork, s: NetworkStructure, scaling: np.ndarray, dtype,
                      source: str = "mitral"):
    """One event Projection per (pre type, post type) with synapses; pre type 'input' is ``source``."""
    return [EventProjection(f"{src}->{post}", syn, src, post, 0, {r: g * float(scaling[i, j]) for r, g in gb.items()},
                            dtype)
            for i, j, src, post, syn, _, gb in projection_edges(network, s, source)]


def olfactory_network(network: OlfactoryNetwork, structure: NetworkStructure, scaling: np.ndarray,
                      source_name: str, source, dt: float, dtype, initial_V, seed: int):
    """E and I populations (E then I; ``perm`` maps back to the structure's order), the input
    source and the structure's projections, assembled.  ``initial_V``: one value or distribution
    for both types, or a dict per type.  Returns ``(net, perm)``."""
    projections = build_projections(network, structure, scaling, dtype, source_name)
    receptors_of = {t: [] for t in TYPES}
    for pr in projections:
        receptors_of[pr.post] += [r for r in pr.scales if r not in receptors_of[pr.post]]
    pops, offset = {}, 0
    for t in TYPES:
        size = int((structure.cell_type == t).sum())
        if size == 0:
            continue
        cell = network.cells[t]
        rec = network.receptors
        kin = {r: RECEPTORS[rec[r].kind](rec[r], dt) for r in receptors_of[t]}
        pops[t] = NEURONS[cell.model](PopulationInfo(t, size, t, offset), cell, kin, dt)
        offset += size
    per_type = initial_V if isinstance(initial_V, dict) else {t: initial_V for t in pops}
    initial = {t: PopulationInit(V=per_type.get(t)) for t in pops}
    sources = {source_name: source} if source is not None else {}
    net = SpikingNetwork.assemble(pops, sources, projections, [], dt, dtype, initial, seed)
    perm, _ = _local(structure)
    return net, perm


def constant_rate_network(network: OlfactoryNetwork, s: NetworkStructure, *, input_rate_hz: float, dt: float,
                          dtype, seed: int = 0, random_init: bool = True):
    """The network with Poisson mitral inputs at a constant rate (grid search): ``(net, perm)``.
    ``random_init``: initial V uniform in [E_L, V_th) so the populations do not start in synchrony."""
    from neurodsl import units as U
    from neurodsl.compile.cells import PoissonSource
    from neurodsl.spec.network import PoissonGroup, Uniform
    source = None
    if s.n_inputs > 0:
        group = PoissonGroup(kind="poisson", size=s.n_inputs, rate=U.parse_quantity(f"{input_rate_hz} Hz"))
        source = PoissonSource("input", group, dt, dtype)
    init = {t: Uniform(dist="uniform", low=c.E_L, high=c.V_th) for t, c in network.cells.items()} \
        if random_init else {}
    return olfactory_network(network, s, effective_scaling(network, s), "input", source, dt, dtype, init, seed)


def build_olfactory(spec: TeacherSpec, structure: NetworkStructure, batch: int | None = None,
                    trial_odours=None) -> OlfactoryModel:
    """Compile ``spec`` with ``structure`` (see the module docstring).

    ``batch`` / ``trial_odours`` size the odour schedule (default ``spec.trials`` and
    the spec's schedule; ``trial_odours`` forces one fixed odour per trial, -1 =
    baseline).  All projections are merged into one event kernel per step by
    :class:`~neurodsl.compile.network.SynapseBank`.  Call ``model.net.init_state(batch, seed)`` before running.
    """
    dtype = precision_dtype(spec.precision)
    dt = spec.dt.internal
    n_mitral = spec.mitral.n or structure.n_inputs
    if n_mitral != structure.n_inputs:
        raise DataError(f"mitral.n = {n_mitral} but the structure has {structure.n_inputs} inputs",
                        field="mitral.n", location=Location(str(spec.network.structure or "<structure>")),
                        expected=f"{structure.n_inputs} (or leave mitral.n unset)")
    scaling = effective_scaling(spec.network, structure)
    patterns = odour_patterns(spec.odours, n_mitral, spec.mitral.baseline.internal, spec.seed)
    batch = batch or spec.trials
    schedule = odour_schedule(spec.schedule, patterns.n_odours, batch, spec.n_steps, dt, spec.seed,
                              trial_odours)
    source = OdourSource(patterns, schedule, dt, dtype)
    net, perm = olfactory_network(spec.network, structure, scaling, "mitral", source, dt, dtype, spec.initial_V,
                                  spec.seed)
    return OlfactoryModel(net, structure, perm, source, patterns, scaling)

"""The olfactory template: a ``kind: teacher`` spec + a NetworkStructure expand into an ordinary
network spec (:func:`expand`), compiled by the general :func:`~neurodsl.compile.network.compile_network`.

* **Structure** (:func:`resolve_structure`): ``network.structure`` (npz) >
  ``connectome`` (CSV, :mod:`neurodsl.io.connectome_csv`) > ``network.generator``.
* **The expanded spec** (``kind: simulation``, writable as YAML and runnable with
  ``neurodsl simulate`` given the structure file): populations ``E`` and ``I`` (an empty type is
  left out) with the spec's cells; the input ``mitral`` (``kind: odour``: odour-modulated
  Poisson cells with the spec's odours and schedule); one projection per (pre type, post type)
  pair with synapses, ``connectivity: {kind: structure, pre_type, post_type, scaling: false}``,
  ``receptors`` = ``g_bar`` of the pre type and ``weight`` = the effective scaling factor; no
  delays.  The teacher writes it as ``network.yaml`` beside ``network_structure.npz``.  So
  everything the general language says about cells, receptors, inputs and projections holds here.
* **Order**: populations are contiguous, so the recurrent neurons are E-then-I (stable: each
  type keeps the structure's order).  ``perm[c]`` is the structure index of compiled neuron
  ``c``; runners map outputs back with it, so every output is in the *structure's* order.
* **Weights**: a synapse of structure weight w from a presynaptic neuron of type T onto a
  neuron of type P adds ``|w| * scaling[P, T] * g_bar[T][r]`` to receptor r.
* **Scaling has one source**: :func:`effective_scaling`, held by the structure file or by the
  spec's ``network.scaling``, never both (a located error).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurodsl import units as U
from neurodsl.compile.connectivity import TYPES, Synapses, pair_mask, structure_pair, type_order, type_size
from neurodsl.compile.generator import generate
from neurodsl.compile.network import SpikingNetwork, compile_network
from neurodsl.compile.odour import OdourPatterns, OdourSource
from neurodsl.errors import DataError, Location, SpecError
from neurodsl.io.connectome_csv import load_connectome_csv
from neurodsl.io.structure import NetworkStructure, load_structure
from neurodsl.spec.network import FromStructure, PoissonGroup, Population, PopulationInit, Projection
from neurodsl.spec.odour import OdourInput
from neurodsl.spec.olfactory import PRE_TYPES, OlfactoryNetwork
from neurodsl.spec.spec import OutputSpec, SimulationSpec
from neurodsl.spec.teacher import TeacherSpec


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
    """The compiled teacher: network, its mitral source, the index maps and the expanded spec."""

    net: SpikingNetwork
    structure: NetworkStructure
    perm: np.ndarray          # compiled neuron c -> structure index perm[c]
    source: OdourSource
    patterns: OdourPatterns
    scaling: np.ndarray
    network_spec: SimulationSpec

    @property
    def n_mitral(self) -> int:
        return self.source.size


def _pairs(network: OlfactoryNetwork, s: NetworkStructure):
    """(i, j, pre type, post type) of every pair with synapses, in projection order; a pair whose
    pre type has no ``g_bar`` is a located error."""
    for j, pre_type in enumerate(PRE_TYPES):
        for i, post_type in enumerate(TYPES):
            if type_size(s, post_type) == 0 or not pair_mask(s, pre_type, post_type).any():
                continue
            if pre_type not in network.g_bar or not network.g_bar[pre_type]:
                raise DataError(f"the structure has {pre_type}->{post_type} synapses but g_bar has no "
                                f"entry for {pre_type!r}", field=f"network.g_bar.{pre_type}",
                                expected="peak conductances per receptor, e.g. {AMPA: 4 nS}")
            yield i, j, pre_type, post_type


def projection_edges(network: OlfactoryNetwork, s: NetworkStructure, source: str = "mitral"):
    """Per (pre type j, post type i) pair with synapses: ``(i, j, pre name, post name, Synapses
    (|w|, sorted), structure index of each synapse (into rec_* or ff_*), g_bar per receptor)``,
    split by :func:`~neurodsl.compile.connectivity.structure_pair` (training uses it)."""
    for i, j, pre_type, post_type in _pairs(network, s):
        pre, post, w, idx = structure_pair(s, pre_type, post_type)
        syn = Synapses(pre, post, w, type_size(s, pre_type), type_size(s, post_type))
        src = source if pre_type == "input" else pre_type
        yield i, j, src, post_type, syn, idx, {r: float(q.internal) for r, q in network.g_bar[pre_type].items()}


def expand(network: OlfactoryNetwork, s: NetworkStructure, *, name: str, seed: int, dt, duration,
           precision: str, trials: int, inputs=None, initial_V=None, source: str = "mitral",
           scaling=None, outputs=None) -> SimulationSpec:
    """The olfactory network as an ordinary ``kind: simulation`` spec (see the module docstring).

    ``inputs``: the spec of the presynaptic source named ``source`` (the structure's feedforward
    channels); ``initial_V``: a value for every neuron or a dict per type (None: E_L);
    ``scaling``: the effective (2, 3) factors (default :func:`effective_scaling`).  The structure
    is given to ``compile_network`` (:func:`network_yaml` names its file)."""
    scaling = effective_scaling(network, s) if scaling is None else np.asarray(scaling, np.float64)
    pops = {t: Population(size=type_size(s, t), cell_type=t, neuron=network.cells[t])
            for t in TYPES if type_size(s, t) > 0}
    projections = [Projection(name=f"{source if pre == 'input' else pre}->{post}",
                              pre=source if pre == "input" else pre, post=post,
                              connectivity=FromStructure(kind="structure", pre_type=pre, post_type=post,
                                                         scaling=False),
                              receptors=dict(network.g_bar[pre]), weight=U.parse_quantity(float(scaling[i, j])))
                   for i, j, pre, post in _pairs(network, s)]
    per_type = initial_V if isinstance(initial_V, dict) else {t: initial_V for t in pops}
    extra = {} if outputs is None else {"outputs": OutputSpec(rate_bin=outputs.rate_bin, chunk=outputs.chunk)}
    # engine auto, as the teacher runs (runners/teacher.py): on the same platform the file reproduces its spikes exactly
    return SimulationSpec(name=name, kind="simulation", engine="auto", seed=seed, dt=dt, duration=duration,
                          precision=precision, **extra, trials=trials, populations=pops, receptors=dict(network.receptors),
                          inputs={source: inputs} if inputs is not None and s.n_inputs > 0 else {},
                          projections=projections,
                          initial_state={t: PopulationInit(V=v) for t, v in per_type.items()
                                         if v is not None and t in pops})


def network_yaml(netspec: SimulationSpec, structure_file: str = "network_structure.npz") -> str:
    """``netspec`` as YAML text that ``neurodsl simulate`` reads back (units as strings), its
    projections reading ``structure_file`` (relative to the YAML file)."""
    import yaml
    data = netspec.model_dump(mode="json", exclude_none=True)
    data = {"name": netspec.name, "kind": "simulation", **data}
    for pr in data.get("projections", []):
        pr["connectivity"] = {"kind": "structure", "file": structure_file, **pr["connectivity"]}
    return ("# The olfactory template expanded into an ordinary network spec (neurodsl.compile.olfactory).\n"
            "# neurodsl simulate network.yaml runs the teacher's network; edit it freely (delays, receptors, ...).\n"
            + yaml.safe_dump(data, sort_keys=False))


def teacher_network_spec(spec: TeacherSpec, s: NetworkStructure, trials: int | None = None) -> SimulationSpec:
    """The teacher's network: the template with odour-modulated Poisson mitral cells (``kind: odour``
    with the spec's ``mitral.baseline``, ``odours`` and ``schedule``) and ``initial_V``."""
    mitral = OdourInput(kind="odour", size=max(s.n_inputs, 1), baseline=spec.mitral.baseline, odours=spec.odours,
                        schedule=spec.schedule)
    return expand(spec.network, s, name=spec.name, seed=spec.seed, dt=spec.dt, duration=spec.duration,
                  precision=spec.precision, trials=trials or spec.trials, inputs=mitral,
                  initial_V=spec.initial_V, outputs=spec.outputs)


def constant_rate_network(network: OlfactoryNetwork, s: NetworkStructure, *, input_rate_hz: float, dt,
                          duration, precision: str, seed: int = 0, random_init: bool = True):
    """The template with Poisson mitral inputs at a constant rate (grid search): ``(net, perm)``.
    ``random_init``: initial V uniform in [E_L, V_th) so the populations do not start in synchrony."""
    from neurodsl.spec.network import Uniform
    group = PoissonGroup(kind="poisson", size=max(s.n_inputs, 1), rate=U.parse_quantity(f"{input_rate_hz} Hz"))
    init = {t: Uniform(dist="uniform", low=c.E_L, high=c.V_th) for t, c in network.cells.items()} \
        if random_init else None
    netspec = expand(network, s, name="grid", seed=seed, dt=dt, duration=duration, precision=precision, trials=1,
                     inputs=group, initial_V=init, source="input")
    return compile_network(netspec, structure=s), type_order(s)[0]


def build_olfactory(spec: TeacherSpec, structure: NetworkStructure, batch: int | None = None,
                    trial_odours=None) -> OlfactoryModel:
    """Expand ``spec`` with ``structure`` and compile it (see the module docstring).

    ``batch`` / ``trial_odours`` size the odour schedule (default ``spec.trials`` and
    the spec's schedule; ``trial_odours`` forces one fixed odour per trial, -1 =
    baseline).  All projections are merged into one event kernel per step by
    :class:`~neurodsl.compile.events.SynapseBank`.  Call ``model.net.init_state(batch, seed)`` before running.
    """
    n_mitral = spec.mitral.n or structure.n_inputs
    if n_mitral != structure.n_inputs:
        raise DataError(f"mitral.n = {n_mitral} but the structure has {structure.n_inputs} inputs",
                        field="mitral.n", location=Location(str(spec.network.structure or "<structure>")),
                        expected=f"{structure.n_inputs} (or leave mitral.n unset)")
    netspec = teacher_network_spec(spec, structure, trials=batch or spec.trials)
    net = compile_network(netspec, structure=structure, trial_odours=trial_odours)
    source = net.sources.get("mitral")
    return OlfactoryModel(net, structure, type_order(structure)[0], source,
                          source.patterns if source is not None else None,
                          effective_scaling(spec.network, structure), netspec)

"""A minimal event-driven olfactory network for grid search: OlfactoryNetwork + NetworkStructure -> SpikingNetwork.

Populations ``E`` and ``I`` (LIF with conductances, cells from
``OlfactoryNetwork.cells``) and one Poisson source ``input`` (the mitral cells
at a constant rate).  A synapse from presynaptic type T with structure weight
w adds ``|w| * scaling[post, T] * g_bar[T][r]`` to receptor r of the
postsynaptic neuron, where ``scaling`` is the structure's scaling times the
spec's.  No delays.  Built by the teacher's compiler
(:func:`neurodsl.compile.olfactory.olfactory_network`).
"""
from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from neurodsl import units as U
from neurodsl.compile.network import PoissonSource, SpikingNetwork
from neurodsl.compile.olfactory import olfactory_network
from neurodsl.io.structure import NetworkStructure
from neurodsl.spec.network import PoissonGroup, Uniform
from neurodsl.spec.olfactory import OlfactoryNetwork


@dataclass(frozen=True)
class GridNetwork:
    net: SpikingNetwork
    order: np.ndarray  # structure index of each simulated neuron (E population first, then I)


def build_grid_network(spec: OlfactoryNetwork, s: NetworkStructure, *, input_rate_hz: float, dt: float,
                       dtype=jnp.float32, seed: int = 0, random_init: bool = True) -> GridNetwork:
    """Compile ``spec`` with the connectome ``s`` (the teacher's builder, constant-rate inputs); ``dt`` in ms.

    ``random_init``: initial V uniform in [E_L, V_th) so the populations do not start in synchrony.
    """
    source = None
    if s.n_inputs > 0:
        group = PoissonGroup(kind="poisson", size=s.n_inputs, rate=U.parse_quantity(f"{input_rate_hz} Hz"))
        source = PoissonSource("input", group, dt, dtype)
    init = {t: Uniform(dist="uniform", low=c.E_L, high=c.V_th) for t, c in spec.cells.items()} if random_init else {}
    net, perm = olfactory_network(spec, s, s.scaling * spec.scaling_matrix(), "input", source, dt, dtype, init, seed)
    return GridNetwork(net, perm)

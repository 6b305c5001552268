"""The only place that builds BrainPy/brainstate modules from spec objects.

Kinds map to builders through registries (``NEURONS``, ``RECEPTORS``,
``INTEGRATORS``, ``CONNECTIVITY``), never through if-chains.
"""
from neurodsl.compile.connectivity import CONNECTIVITY, Synapses, build_synapses
from neurodsl.compile.kinetics import INTEGRATORS, RECEPTORS
from neurodsl.compile.network import NEURONS, SpikingNetwork, compile_network

__all__ = ["CONNECTIVITY", "INTEGRATORS", "NEURONS", "RECEPTORS", "SpikingNetwork", "Synapses",
           "build_synapses", "compile_network"]

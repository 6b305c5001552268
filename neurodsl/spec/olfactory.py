"""The connectome-constrained olfactory network shared by workflow 2's stages.

``OlfactoryNetwork`` declares the neurons (per cell type), receptor kinetics,
peak conductances per presynaptic type and receptor, the structure (a
``network_structure.npz`` or a generator) and optional per-pair scaling
factors.  The teacher simulates it event-driven; the student and the
homeostatic tuner compile a differentiable version of the same declaration.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from neurodsl import units as U
from neurodsl.spec.base import Conductance, CrossFieldError, SpecModel
from neurodsl.spec.connectome import GeneratorSpec
from neurodsl.spec.base import existing_file
from neurodsl.spec.network import LIFCond, Receptor

q = U.parse_quantity


def _cell(tau, gl, theta, t_ref="8 ms"):
    return LIFCond(tau_m=tau, g_L=gl, E_L="-60 mV", V_th=theta, V_reset="-60 mV", t_ref=t_ref,
                   method="exp_euler")


def _default_cells():
    return {"E": _cell("85 ms", "1.35 nS", "-38 mV"), "I": _cell("50 ms", "0.9 nS", "-45 mV")}


def _default_receptors():
    return {"AMPA": Receptor(kind="dual_exp", tau_rise="0.1 ms", tau_decay="5 ms", E_rev="0 mV"),
            "NMDA": Receptor(kind="dual_exp", tau_rise="10 ms", tau_decay="70 ms", E_rev="0 mV"),
            "GABA_A": Receptor(kind="dual_exp", tau_rise="1 ms", tau_decay="6 ms", E_rev="-70 mV")}


def _default_gbar():
    return {"E": {"AMPA": q("4.177 nS", U.CONDUCTANCE), "NMDA": q("0.448 nS", U.CONDUCTANCE)},
            "I": {"GABA_A": q("8.139 nS", U.CONDUCTANCE)},
            "input": {"AMPA": q("4.177 nS", U.CONDUCTANCE), "NMDA": q("0.448 nS", U.CONDUCTANCE)}}


PRE_TYPES = ("E", "I", "input")


class OlfactoryNetwork(SpecModel):
    """Neurons, receptors, peak conductances and structure of the recurrent layer.

    A synapse from a presynaptic neuron of type T with weight w (from the
    structure) adds ``|w| * scaling[post, T] * g_bar[T][r]`` to receptor r of the
    postsynaptic neuron.  ``structure`` (a path) wins over ``generator``; with
    neither, the default generator builds one.  ``scaling`` rows are post E/I,
    keys pre E/I/input.
    """

    cells: dict[Literal["E", "I"], LIFCond] = Field(default_factory=_default_cells)
    receptors: dict[str, Receptor] = Field(default_factory=_default_receptors)
    g_bar: dict[Literal["E", "I", "input"], dict[str, Conductance]] = Field(default_factory=_default_gbar)
    structure: str | None = None
    generator: GeneratorSpec = Field(default_factory=lambda: GeneratorSpec(n_neurons=5000, n_inputs=1500))
    scaling: dict[Literal["E", "I"], dict[Literal["E", "I", "input"], float]] = Field(default_factory=dict)

    @field_validator("structure")
    @classmethod
    def _exists(cls, v, info: ValidationInfo):
        return existing_file(v, info, "structure file")

    @model_validator(mode="after")
    def _receptors_known(self):
        for pre, recs in self.g_bar.items():
            for r in recs:
                if r not in self.receptors:
                    raise CrossFieldError(("g_bar", pre, r), f"unknown receptor {r!r}",
                                          "one of " + ", ".join(self.receptors))
        for post, row in self.scaling.items():
            for pre, v in row.items():
                if v < 0:
                    raise CrossFieldError(("scaling", post, pre), "scaling factors must be >= 0", "a value >= 0")
        return self

    def scaling_matrix(self):
        """(2, 3) array: rows post E/I, columns pre E/I/input (missing entries are 1)."""
        import numpy as np
        m = np.ones((2, 3), np.float32)
        for i, post in enumerate("EI"):
            for j, pre in enumerate(PRE_TYPES):
                m[i, j] = self.scaling.get(post, {}).get(pre, 1.0)
        return m

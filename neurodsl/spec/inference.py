"""``kind: network_inference``: grid search over connectome generators and network parameters.

Each grid point is the spec with the grid's dotted paths set to one combination
of values (``generator.p.EE.within: [0.05, 0.1]``, ``network.scaling.E.input:
[0.5, 1, 2]``).  Its connectome is built from the top-level ``generator`` (or
read from ``network.structure``), simulated for ``duration`` with the mitral
inputs at ``simulation.input_rate`` and scored against ``targets``.

Score (lower is better; the best point is the minimum)::

    score = sum_{c in E,I} sum_{s in rate,cv,fano,fraction_silent} w_s * ((x_cs - t_cs) / sigma_s)^2
          + w_coactivation * (x_coact - t_coact)^2

over the targets that are given; ``sigma_rate = t_rate`` (relative error),
``sigma = 1`` for the dimensionless statistics.  An undefined statistic (NaN,
e.g. the CV of a silent population) contributes ``w_s * score.missing``.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from neurodsl import units as U
from neurodsl.spec.base import CrossFieldError, Rate, SpecModel, Time
from neurodsl.spec.connectome import GeneratorSpec
from neurodsl.spec.olfactory import OlfactoryNetwork
from neurodsl.spec.spec import SpecHeader

q = U.parse_quantity
GRID_ROOTS = ("generator", "network", "simulation")
STATISTICS = ("rate", "cv", "fano", "fraction_silent")


class CellTargets(SpecModel):
    """Target activity statistics of one cell type (any subset)."""

    rate: Rate | None = None
    cv: float | None = Field(None, ge=0)
    fano: float | None = Field(None, ge=0)
    fraction_silent: float | None = Field(None, ge=0, le=1)

    @model_validator(mode="after")
    def _positive_rate(self):
        if self.rate is not None and self.rate.si <= 0:
            raise CrossFieldError(("rate",), "target rate must be > 0 (the score uses relative error)",
                                  "e.g. '5 Hz'")
        return self


class Targets(SpecModel):
    E: CellTargets = CellTargets()
    I: CellTargets = CellTargets()
    coactivation: float | None = Field(None, ge=-1, le=1,
                                       description="assembly co-activation index (see analysis.connectome)")


class ScoreWeights(SpecModel):
    rate: float = Field(1.0, ge=0)
    cv: float = Field(1.0, ge=0)
    fano: float = Field(0.5, ge=0)
    fraction_silent: float = Field(1.0, ge=0)
    coactivation: float = Field(1.0, ge=0)
    missing: float = Field(10.0, ge=0, description="squared error charged for an undefined (NaN) statistic")


class GridSimulation(SpecModel):
    """How each grid point is simulated: ``trials`` (batch), baseline input rate, warm-up, statistics bin."""

    trials: int = Field(1, gt=0)
    input_rate: Rate = q("10 Hz", U.FREQUENCY)
    warmup: Time = q("0 ms", U.TIME)
    stat_bin: Time = q("20 ms", U.TIME)

    @model_validator(mode="after")
    def _times(self):
        if self.warmup.si < 0:
            raise CrossFieldError(("warmup",), "warmup must be >= 0", "e.g. '50 ms'")
        if self.stat_bin.si <= 0:
            raise CrossFieldError(("stat_bin",), "stat_bin must be > 0", "e.g. '20 ms'")
        if self.input_rate.si < 0:
            raise CrossFieldError(("input_rate",), "input_rate must be >= 0", "e.g. '10 Hz'")
        return self


class ParallelSpec(SpecModel):
    """Local Dask cluster size (ignored with ``--scheduler ADDRESS`` or ``--serial``)."""

    n_workers: int | None = Field(None, gt=0, description="worker processes; default: number of cores")


GridValue = int | float | str


def _default_generator() -> GeneratorSpec:
    return GeneratorSpec(n_neurons=200, n_inputs=60, n_assemblies=4)


class NetworkInferenceSpec(SpecHeader):
    """Grid search for connectome and network parameters that reproduce target activity statistics."""

    kind: Literal["network_inference"]
    generator: GeneratorSpec = Field(default_factory=_default_generator)
    network: OlfactoryNetwork = Field(default_factory=OlfactoryNetwork)
    simulation: GridSimulation = GridSimulation()
    grid: dict[str, list[GridValue]] = Field(default_factory=dict)
    targets: Targets = Targets()
    score: ScoreWeights = ScoreWeights()
    seeds: Literal["per_point", "common"] = Field(
        "per_point", description="per_point: seed from (seed, point parameters); common: every point uses seed")
    parallel: ParallelSpec = ParallelSpec()
    figures: bool = Field(True, description="write figures/ (score maps, best connectome)")

    @model_validator(mode="before")
    @classmethod
    def _share_generator(cls, data):
        """``network.generator`` mirrors the top-level ``generator`` (so dumps round-trip)."""
        if isinstance(data, dict) and isinstance(data.get("network", {}), dict):
            net = dict(data.get("network", {}))
            net.setdefault("generator", data.get("generator", _default_generator()))
            data = {**data, "network": net}
        return data

    @model_validator(mode="after")
    def _grid(self):
        if self.network.generator != self.generator:
            raise CrossFieldError(("network", "generator"), "differs from the top-level generator",
                                  "only a top-level 'generator:' section")
        for path, values in self.grid.items():
            root = path.split(".")[0]
            if root not in GRID_ROOTS:
                raise CrossFieldError(("grid", path), f"grid path must start with one of {', '.join(GRID_ROOTS)}",
                                      "e.g. generator.p.EE.within or network.scaling.E.input")
            if root == "generator" and self.network.structure is not None:
                raise CrossFieldError(("grid", path), "network.structure is given, so the generator is unused",
                                      "no generator.* grid paths with a structure file")
            if not values:
                raise CrossFieldError(("grid", path), "empty list of values", "at least one value")
            if len({json.dumps(v) for v in values}) != len(values):
                raise CrossFieldError(("grid", path), "repeated values", "distinct values")
            for v in values:
                try:
                    self.at_point({path: v})
                except (ValidationError, KeyError, TypeError) as e:
                    raise CrossFieldError(("grid", path), f"value {v!r} does not apply: {_short(e)}",
                                          "a dotted path into generator/network/simulation and valid values")
        return self

    # ----------------------------------------------------------------- grid points
    @property
    def grid_shape(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.grid.values())

    def points(self) -> list[dict[str, Any]]:
        """Every combination of grid values, C order (last grid path varies fastest)."""
        import itertools
        keys = list(self.grid)
        return [dict(zip(keys, combo)) for combo in itertools.product(*self.grid.values())]

    def at_point(self, params: dict[str, Any]) -> "NetworkInferenceSpec":
        """This spec with ``params`` (dotted path -> value) applied and an empty grid."""
        data = self.data()
        data.pop("grid")
        for path, value in params.items():
            _set_path(data, path.split("."), value)
        return type(self).model_validate(data)

    def data(self, mode: str = "python") -> dict:
        """``model_dump`` that validates back (``network.generator`` is left out: it lives at the top level)."""
        return self.model_dump(mode=mode, exclude={"network": {"generator"}})

    def point_seed(self, params: dict[str, Any]) -> int:
        if self.seeds == "common":
            return self.seed
        text = json.dumps({"seed": self.seed, "params": params}, sort_keys=True)
        return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")

    def point_key(self, params: dict[str, Any]) -> str:
        """Hash of everything that determines a point's statistics (parameters, seed, model, simulation)."""
        point = self.at_point(params)
        model = point.model_dump(mode="json", include={"generator", "network", "simulation", "dt", "duration",
                                                       "precision"})
        text = json.dumps({"params": params, "seed": self.point_seed(params), "model": model}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _set_path(data: dict, keys: list[str], value: Any) -> None:
    node = data
    for k in keys[:-1]:
        if not isinstance(node, dict):
            raise TypeError(f"{k!r} is inside a value, not a section")
        node = node.setdefault(k, {})
    if not isinstance(node, dict):
        raise TypeError(f"{keys[-1]!r} is inside a value, not a section")
    node[keys[-1]] = value


def _short(e: Exception) -> str:
    if isinstance(e, ValidationError):
        err = e.errors(include_url=False)[0]
        return f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}"
    return str(e)

"""What a projection learns (``trainable``): declared here, compiled to TrainableParam states."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from neurodsl.spec.base import CrossFieldError, SpecModel


class TrainableSpec(SpecModel):
    """What a projection learns.  ``param: scale``: one factor multiplying its summed weights
    (shared by every projection with the same ``group``); ``param: weight``: every synapse's
    weight.  Both are learned as log-magnitudes, so Dale's signs and the connectivity mask never
    change.  The initial value is the declared one times ``exp(sigma * N(0, 1))`` (seeded by
    ``seed``, default the spec's); ``bounds: [low, high]`` keep the factor (relative to the
    declared value) inside that range after every update."""

    param: Literal["scale", "weight"] = "scale"
    sigma: float = Field(0.0, ge=0)
    seed: int | None = None
    bounds: tuple[float, float] | None = None
    group: str | None = None

    @model_validator(mode="after")
    def _bounds(self):
        if self.bounds is not None and not 0 < self.bounds[0] < 1 < self.bounds[1]:
            raise CrossFieldError(("bounds",), f"bounds {list(self.bounds)} must satisfy 0 < low < 1 < high",
                                  "e.g. [0.1, 10] (factors of the declared value)")
        if self.group is not None and self.param != "scale":
            raise CrossFieldError(("group",), "only a scale can be shared by a group", "param: scale")
        return self

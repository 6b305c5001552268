"""Spec language: YAML/TOML documents -> frozen, validated pydantic objects (no JAX here).

``load_spec(path, overrides)`` is the entry point.  ``KINDS`` maps each document
``kind`` to the class that validates it; workflows add their own kinds there.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, TypeAdapter

from neurodsl.spec.loader import apply_overrides, read_source, read_yaml, spec_sha256, validate
from neurodsl.spec.spec import NetworkSpec, SimulationSpec, SpecHeader
from neurodsl.spec.fit import FitSpec
from neurodsl.spec.inference import NetworkInferenceSpec
from neurodsl.spec.rnn import RNNFitSpec
from neurodsl.spec.teacher import TeacherSpec
from neurodsl.spec.training import HomeostaticSpec, StudentSpec

KINDS: dict[str, type[BaseModel]] = {
    "network_inference": NetworkInferenceSpec,
    "simulation": SimulationSpec,
    "rnn_fit": RNNFitSpec,
    "teacher": TeacherSpec,
    "homeostatic": HomeostaticSpec,
    "student": StudentSpec,
    "fit": FitSpec,
}


@dataclass(frozen=True)
class LoadedSpec:
    """A validated spec plus its provenance: the file, the overrides and the resolved text."""

    spec: BaseModel
    path: str
    overrides: tuple[str, ...]
    resolved_yaml: str

    @property
    def sha256(self) -> str:
        return spec_sha256(self.resolved_yaml)


def load_spec(path: str | Path, overrides: list[str] | tuple[str, ...] = (),
              kinds: dict[str, type[BaseModel]] | None = None) -> LoadedSpec:
    """Read, override and validate a spec file; raises :class:`neurodsl.errors.SpecError`."""
    src = apply_overrides(read_source(path), list(overrides))
    spec = validate(src, kinds or KINDS)
    return LoadedSpec(spec, str(path), tuple(overrides), dump_spec(spec))


def load_spec_text(text: str, name: str = "<string>", overrides=()) -> LoadedSpec:
    src = apply_overrides(read_yaml(text, name), list(overrides))
    spec = validate(src, KINDS)
    return LoadedSpec(spec, name, tuple(overrides), dump_spec(spec))


def dump_spec(spec: BaseModel) -> str:
    """The fully resolved spec (defaults filled in) as YAML text."""
    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)


def json_schema() -> dict:
    """JSON Schema of all spec kinds (a ``oneOf`` discriminated by ``kind``)."""
    from typing import Annotated, Union
    from pydantic import Field
    union = Annotated[Union[tuple(KINDS.values())], Field(discriminator="kind")]
    schema = TypeAdapter(union).json_schema()
    schema["title"] = "neurodsl spec"
    return schema


__all__ = ["KINDS", "LoadedSpec", "load_spec", "load_spec_text", "dump_spec", "json_schema",
           "NetworkSpec", "SimulationSpec", "SpecHeader"]

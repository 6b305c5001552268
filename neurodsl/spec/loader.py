"""Load YAML/TOML specs into validated spec objects, with errors that point at the source.

``load_spec(path, overrides)`` reads the file keeping the line/column of every
node, applies ``--set dotted.path=value`` overrides (parsed as YAML scalars),
validates with the class registered for ``kind`` and turns any pydantic error
into a :class:`~neurodsl.errors.SpecError` whose one-line form is
``FILE:LINE:COL: field.path: what is wrong (expected ...)``.
"""
from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from neurodsl.errors import Location, SpecError
from neurodsl.spec.explain import dotted as _dotted, validation_error

Path_ = tuple[str | int, ...]


@dataclass
class Source:
    """Raw spec data plus where each node came from."""

    data: Any
    file: str
    text: str
    marks: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    overridden: dict[Path_, str] = field(default_factory=dict)
    cli_strings: set = field(default_factory=set)  # string values given with --set (paths: relative to the CWD)

    def locate(self, path: Path_) -> Location:
        """The most specific known location for ``path`` (falls back to parents)."""
        p = tuple(path)
        while True:
            if p in self.overridden:
                return Location(f"--set {self.overridden[p]}")
            if p in self.marks:
                line, col = self.marks[p]
                return Location(self.file, line, col)
            if not p:
                return Location(self.file, 1, 1)
            p = p[:-1]


# ----------------------------------------------------------------------------- reading
class _Loader(yaml.SafeLoader):
    pass


def _construct(node: yaml.Node, path: Path_, marks: dict, loader: _Loader) -> Any:
    marks.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves YAML merge keys (<<: *anchor)
        out: dict[Any, Any] = {}
        for knode, vnode in node.value:
            key = loader.construct_object(knode, deep=True)
            if key in out:
                raise SpecError(f"duplicate key {key!r}",
                                location=Location(loader.name, knode.start_mark.line + 1,
                                                  knode.start_mark.column + 1))
            marks[path + (key,)] = (knode.start_mark.line + 1, knode.start_mark.column + 1)
            out[key] = _construct(vnode, path + (key,), marks, loader)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(v, path + (i,), marks, loader) for i, v in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def read_yaml(text: str, file: str) -> Source:
    loader = _Loader(text)
    loader.name = file
    try:
        node = loader.get_single_node()
        marks: dict[Path_, tuple[int, int]] = {}
        data = _construct(node, (), marks, loader) if node is not None else {}
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        raise SpecError(f"invalid YAML: {e.problem}", location=Location(file, mark.line + 1, mark.column + 1)
                        if mark else Location(file)) from None
    finally:
        loader.dispose()
    return Source(data, file, text, marks)


def read_toml(text: str, file: str) -> Source:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"line (\d+), column (\d+)", str(e))
        loc = Location(file, int(m.group(1)), int(m.group(2))) if m else Location(file)
        raise SpecError(f"invalid TOML: {e}", location=loc) from None
    marks: dict[Path_, tuple[int, int]] = {}
    lines = text.splitlines()

    def walk(obj: Any, path: Path_) -> None:  # best effort: first line defining the key
        if isinstance(obj, dict):
            for k, v in obj.items():
                pat = re.compile(rf"^\s*(\[+\s*)?([\w.\"]*\.)?\"?{re.escape(str(k))}\"?\s*(=|\])")
                for n, line in enumerate(lines, 1):
                    if pat.search(line):
                        marks[path + (k,)] = (n, line.find(str(k)) + 1)
                        break
                walk(v, path + (k,))
        elif isinstance(obj, list):
            for i, v in enumerate(obj):
                walk(v, path + (i,))

    walk(data, ())
    return Source(data, file, text, marks)


def read_source(path: str | Path) -> Source:
    p = Path(path)
    if not p.exists():
        raise SpecError("spec file not found", location=Location(str(path)), expected="an existing .yaml or .toml file")
    text = p.read_text()
    return read_toml(text, str(path)) if p.suffix.lower() == ".toml" else read_yaml(text, str(path))


# ----------------------------------------------------------------------------- overrides
def _split_path(dotted: str) -> Path_:
    parts: list[str | int] = []
    for tok in dotted.split("."):
        for m in re.finditer(r"([^\[\]]+)|\[(\d+)\]", tok):
            parts.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
    return tuple(int(p) if isinstance(p, str) and p.isdigit() else p for p in parts)


def apply_overrides(src: Source, overrides: list[str] | tuple[str, ...]) -> Source:
    """Apply ``dotted.path=value`` strings (value parsed as YAML) to the raw data."""
    for item in overrides:
        if "=" not in item:
            raise SpecError(f"override {item!r} has no '='", location=Location("--set"),
                            expected="dotted.path=value")
        key, raw = item.split("=", 1)
        path = _split_path(key.strip())
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        if not path:
            raise SpecError("empty path", location=Location(f"--set {item}"), expected="dotted.path=value")
        node = src.data
        for i, part in enumerate(path[:-1]):
            nxt = path[i + 1]
            if isinstance(node, list):
                if not isinstance(part, int) or part >= len(node):
                    raise SpecError(f"no list item {part}", field=".".join(map(str, path[: i + 1])),
                                    location=Location(f"--set {item}"), expected=f"an index < {len(node)}")
                node = node[part]
            else:
                if part not in node or node[part] is None:
                    node[part] = [] if isinstance(nxt, int) else {}
                node = node[part]
        last = path[-1]
        if isinstance(node, list):
            if not isinstance(last, int) or last > len(node):
                raise SpecError(f"no list item {last}", field=key, location=Location(f"--set {item}"),
                                expected=f"an index <= {len(node)}")
            if last == len(node):
                node.append(value)
            else:
                node[last] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise SpecError(f"{_dotted(path[:-1])} is not a mapping", field=key,
                            location=Location(f"--set {item}"), expected="a path into a mapping")
        src.overridden[path] = item
        if isinstance(value, str):
            src.cli_strings.add(value)
    return src



def validate(src: Source, registry: dict[str, type[BaseModel]]) -> BaseModel:
    data = src.data
    if not isinstance(data, dict):
        raise SpecError("a spec must be a mapping of sections", location=src.locate(()),
                        expected="keys such as name, kind, populations")
    kind = data.get("kind")
    if kind not in registry:
        msg = "missing 'kind'" if kind is None else f"unknown kind {kind!r}"
        raise SpecError(msg, field="kind", location=src.locate(("kind",)),
                        expected="one of " + ", ".join(registry))
    cls = registry[kind]
    base_dir = str(Path(src.file).parent) if not src.file.startswith("<") else "."
    try:
        return cls.model_validate(data, context={"base_dir": base_dir, "cli_strings": src.cli_strings})
    except ValidationError as exc:
        raise validation_error(exc, src, cls) from None


def spec_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def first_difference(a: dict, b: dict) -> str | None:
    """The dotted path (``training.lr``, ``projections[0].weight``) of the first place where two
    nested dicts/lists differ, ``None`` when they are equal.  Keys are visited in ``a``'s order,
    then those only in ``b``; a list that is longer on one side differs at its first extra index.
    For messages such as "--resume: the spec differs from the checkpoint's at training.lr"."""
    path = _first_difference(a, b, ())
    return None if path is None else _dotted(path)


def _first_difference(a: Any, b: Any, path: Path_) -> Path_ | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(a) + [k for k in b if k not in a]:
            if k not in a or k not in b:
                return path + (k,)
            found = _first_difference(a[k], b[k], path + (k,))
            if found is not None:
                return found
        return None
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        for i, (x, y) in enumerate(zip(a, b)):
            found = _first_difference(x, y, path + (i,))
            if found is not None:
                return found
        return None if len(a) == len(b) else path + (min(len(a), len(b)),)
    return None if (type(a) is type(b) or {type(a), type(b)} <= {int, float}) and a == b else path

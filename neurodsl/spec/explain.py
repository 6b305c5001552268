"""Explain pydantic's validation errors in the user's terms: the field path in their data, the
source line, what was expected and, for an unknown key, the nearest known one."""
from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from neurodsl.errors import SpecError
from neurodsl.spec.base import CrossFieldError

if TYPE_CHECKING:
    from neurodsl.spec.loader import Source

Path_ = tuple[str | int, ...]

def _model_names() -> set[str]:
    from neurodsl.spec.base import SpecModel
    names, todo = set(), [SpecModel]
    while todo:
        c = todo.pop()
        for sub in c.__subclasses__():
            names.add(sub.__name__)
            todo.append(sub)
    return names


def _field_path(loc: tuple, data: Any) -> Path_:
    """pydantic's loc reduced to keys and indices of the user's data.

    pydantic adds segments that name union members rather than keys (a tag such
    as 'bernoulli', 'function-before[...]', a class name); they are dropped.  A
    key absent from the data (a missing field) is kept and ends the path.
    """
    out: list[Any] = []
    node = data
    models = _model_names()
    for part in loc:
        if isinstance(node, dict) and part in node:
            out.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            out.append(part)
            node = node[part]
        elif isinstance(part, str) and ("[" in part or part.startswith("function-") or part in models
                                        or part in _tag_values(node)):
            continue
        elif isinstance(node, dict) and isinstance(part, str):
            out.append(part)
            break
    return tuple(out)


def _tag_values(node: Any) -> set:
    tags = {"str", "int", "float", "bool", "dict", "list", "none"}
    if isinstance(node, dict):
        tags |= {str(node[t]) for t in ("kind", "dist", "model") if t in node}
    return tags


def _did_you_mean(data: Any, path: Path_, cls_fields: list[str]) -> str:
    bad = path[-1]
    match = difflib.get_close_matches(str(bad), cls_fields, n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def _known_keys(data: Any, path: Path_, kind_cls: type[BaseModel]) -> list[str]:
    """Field names of the model that validates the mapping at ``path`` (best effort)."""
    cls: Any = kind_cls
    node = data
    for part in path[:-1]:
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        cls = _descend(cls, part, node)
        if cls is None:
            return []
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        return [f.alias or n for n, f in cls.model_fields.items()]
    return []


def _descend(cls: Any, part: Any, node: Any) -> Any:
    """Type reached from ``cls`` by ``part``; resolves unions by the node's ``kind``/``dist``/``model``."""
    import typing
    if cls is None:
        return None
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        f = cls.model_fields.get(part) if isinstance(part, str) else None
        if f is None:
            return None
        return _resolve(f.annotation, node)
    origin = typing.get_origin(cls)
    args = typing.get_args(cls)
    if origin in (list, tuple) and args:
        return _resolve(args[0], node)
    if origin is dict and len(args) == 2:
        return _resolve(args[1], node)
    return None


def _resolve(tp: Any, node: Any) -> Any:
    import typing
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _resolve(typing.get_args(tp)[0], node)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        cands = [a for a in typing.get_args(tp) if a is not type(None)]
        models = [c for c in (_resolve(a, node) for a in cands) if c is not None]
        if isinstance(node, dict):
            for m in models:
                if isinstance(m, type) and issubclass(m, BaseModel):
                    for tag in ("kind", "dist", "model"):
                        f = m.model_fields.get(tag)
                        if f is not None and tag in node and node[tag] in typing.get_args(f.annotation):
                            return m
            for m in models:
                if isinstance(m, type) and issubclass(m, BaseModel):
                    return m
        for m in models:
            if typing.get_origin(m) in (list, dict):
                return m
        return models[0] if models else None
    return tp


def _describe(err: dict) -> tuple[str, str]:
    typ, msg = err["type"], err["msg"]
    ctx = err.get("ctx") or {}
    inner = ctx.get("error")
    if isinstance(inner, CrossFieldError):
        return str(inner), inner.expected
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    expected = ""
    if typ == "literal_error":
        expected = ctx.get("expected", "")
        msg = f"{err['input']!r} is not allowed"
    elif typ == "union_tag_invalid":
        expected = "kind one of " + str(ctx.get("expected_tags", ""))
        msg = f"unknown {ctx.get('discriminator', 'kind')} {ctx.get('tag')!r}"
    elif typ == "union_tag_not_found":
        msg = f"missing {ctx.get('discriminator', 'kind')!s}"
        expected = "a 'kind' (or 'dist'/'model') key"
    elif typ == "missing":
        msg = "required field is missing"
    elif typ in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        msg = f"{err['input']!r} is out of range"
        expected = msg_bound(typ, ctx)
    elif typ.endswith("_type") or typ.endswith("_parsing"):
        msg = f"{err['input']!r}: {msg.lower()}"
    return msg, expected


def msg_bound(typ: str, ctx: dict) -> str:
    sym = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[typ]
    bound = next(iter(v for k, v in ctx.items()), "")
    return f"a value {sym} {bound}"



def validation_error(exc: ValidationError, src: Source, cls: type[BaseModel]) -> SpecError:
    """All of pydantic's errors as one SpecError: the most telling first (an unknown key, often a
    typo that also makes a field "missing"; then the deepest path; then anything but "missing"),
    the others in pydantic's order in ``others``, one per field (the members of a union that all
    reject a value report the same field: the first says it best)."""
    data = src.data
    errors = exc.errors(include_url=False)
    first = max(errors, key=lambda e: (e["type"] == "extra_forbidden", len(_field_path(e["loc"], data)),
                                       e["type"] != "missing"))
    ordered = [first] + [e for e in errors if e is not first]
    out: list[SpecError] = []
    for err in ordered:
        e = _one_error(err, src, cls)
        if all((e.field, e.location) != (o.field, o.location) for o in out):
            out.append(e)
    head = out[0]
    return SpecError(head.message, field=head.field, expected=head.expected, location=head.location,
                     others=tuple(out[1:]))


def _one_error(err: dict, src: Source, cls: type[BaseModel]) -> SpecError:
    data = src.data
    path = _field_path(err["loc"], data)
    inner = (err.get("ctx") or {}).get("error")
    if isinstance(inner, CrossFieldError):
        path = path + tuple(inner.path)
    msg, expected = _describe(err)
    if err["type"] == "extra_forbidden":
        known = _known_keys(data, path, cls)
        msg = f"unknown key {path[-1]!r}" + _did_you_mean(data, path, known)
        expected = "one of " + ", ".join(known) if known else ""
    return SpecError(msg, field=dotted(path), expected=expected, location=src.locate(path))


def dotted(path: Path_) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (("." if out else "") + str(p))
    return out

"""``data.fields``: rnn_export variables taken from a MAT v5 / v7.3 or npz file of any layout.

Each entry names one rnn_export variable (``firing_rates``, ``neuron_type``, ``bin_size_ms``,
``time_axis``, ``input_<name>``, ``trial_<name>``, neuron coords) and says where it is:

* ``path``: a variable, dotted into MATLAB structs (``TE.direction``);
* ``stack``: a pattern on the last component (``D.neuron*``): the matching struct fields in
  natural order (``neuron2`` before ``neuron10``), stacked on a new last axis;
* ``value``: a constant (``neuron_type`` is repeated per neuron, ``trial_*`` per trial);
* ``onehot``: a per-trial label -> one input channel per distinct value (sorted), 1 in the bins
  whose ``time_axis`` centre lies in ``during_ms`` ([start, stop], default all), else 0;

then ``value * scale + offset``.  Arrays come in python layout (MATLAB axes reversed, as
:mod:`neurodsl.io.rnn_export_files`); a MATLAB cell of equal-shaped numeric arrays is one array
(cell axes first, element axes after, both reversed) with its singleton axes dropped, so a
``1 x trials`` cell of ``bins x 1`` arrays is ``(trials, bins)``.  The result is merged into the
file's own top-level variables (a mapped name replaces the file's), and the usual rnn_export
checks run on it.  Nothing here knows about any particular file.
"""
from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np
import scipy.io

from neurodsl.errors import DataError, Location
from neurodsl.io.rnn_export_files import read_raw

__all__ = ["read_fields"]


def read_fields(path: str | Path, fields: Mapping[str, Mapping[str, Any]], raw: dict, fmt: str,
                notes: list[str]) -> dict:
    """``raw`` (the file's top-level variables) with the mapped variables of ``fields`` put in."""
    path = Path(path)
    loc = Location(file=str(path))
    out = dict(raw)
    with _Tree(path, fmt, loc) as tree:
        later = {}
        for name, f in fields.items():
            if f.get("onehot") is not None:
                later[name] = f
                continue
            out[name] = _affine(_resolve(tree, name, f, loc), f, name, loc)
            notes.append(f"data.fields.{name}: {_source(f)} -> shape {np.shape(out[name])}")
        _broadcast(out, fields, loc)
        for name, f in later.items():
            out[name] = _affine(_onehot(tree, out, name, f, loc), f, name, loc)
            notes.append(f"data.fields.{name}: one-hot of {f['onehot']} -> shape {np.shape(out[name])} "
                         f"(channel i = the i-th smallest value)")
    return out


def _source(f: Mapping) -> str:
    return next(f"{k} {f[k]!r}" for k in ("path", "stack", "value", "onehot") if f.get(k) is not None)


class _Tree:
    """Read access to nested variables of a MAT v5 (scipy), v7.3 (h5py) or flat npz/netCDF file."""

    def __init__(self, path: Path, fmt: str, loc: Location):
        self.path, self.fmt, self.loc, self._h5 = path, fmt, loc, None

    def __enter__(self):
        if self.fmt == "mat-v5":
            self.root = scipy.io.loadmat(self.path, simplify_cells=True)
        elif self.fmt == "mat-v7.3":
            self._h5 = h5py.File(self.path, "r")
            self.root = self._h5
        else:
            self.root = read_raw(self.path)[0]
        return self

    def __exit__(self, *exc):
        if self._h5 is not None:
            self._h5.close()

    def children(self, node) -> list[str]:
        if isinstance(node, (dict, h5py.Group)):
            return [k for k in node.keys() if not str(k).startswith(("__", "#"))]
        return []

    def get(self, dotted: str, field: str):
        """The node at ``dotted`` (struct/group nodes stay nodes; leaves become python-layout arrays)."""
        node, seen = self.root, []
        parts = dotted.split(".") if self.fmt.startswith("mat") else [dotted]
        for part in parts:
            keys = self.children(node)
            if part not in keys:
                where = ".".join(seen) or "the file"
                has = ", ".join(map(str, keys[:20])) or "nothing"
                raise DataError(f"{dotted!r}: {where} has no {part!r} (has: {has})", field=field, expected="a variable of the file (dotted into structs)", location=self.loc)
            node = node[part]
            seen.append(part)
        return node

    def array(self, node, field: str) -> np.ndarray | str:
        """A leaf in python layout."""
        if isinstance(node, h5py.Dataset):
            return self._h5_array(node, field)
        if isinstance(node, (dict, h5py.Group)):
            raise DataError(f"is a struct with fields {', '.join(map(str, self.children(node)[:20]))}", field=field,
                            expected="a numeric array (name a field of the struct)", location=self.loc)
        if isinstance(node, str):
            return node
        a = np.asarray(node) if not isinstance(node, list) else np.asarray(node, dtype=object)
        if self.fmt != "mat-v5":
            return a
        if a.dtype == object:
            return _cell(a, [self.array(x, field) for x in a.T.ravel()], field, self.loc)
        return a.T

    def _h5_array(self, ds: h5py.Dataset, field: str):
        cls = ds.attrs.get("MATLAB_class", b"")
        cls = cls.decode() if isinstance(cls, bytes) else str(cls)
        if cls == "char":
            return "".join(map(chr, np.asarray(ds[()]).ravel(order="F")))
        if ds.dtype == h5py.ref_dtype:
            refs = np.asarray(ds[()])
            elems = [self._h5_array(self._h5[r], field) for r in refs.ravel()]
            return _cell(refs, elems, field, self.loc, layout_done=True)
        return np.asarray(ds[()])


def _cell(cell: np.ndarray, elems: list, field: str, loc: Location, layout_done: bool = False) -> np.ndarray:
    """A cell of equal-shaped numeric arrays as one array: cell axes, then element axes; singletons dropped."""
    shapes = {np.shape(e) for e in elems}
    if any(isinstance(e, str) for e in elems) or len(shapes) != 1:
        raise DataError(f"is a cell whose elements differ in shape or type ({len(shapes)} shapes: "
                        f"{', '.join(map(str, sorted(shapes)[:4]))})", field=field,
                        expected="a cell of equal-shaped numeric arrays", location=loc)
    shape = (cell.shape if layout_done else cell.T.shape) + shapes.pop()
    return np.squeeze(np.stack([np.asarray(e, dtype=np.float64) for e in elems]).reshape(shape))


def _natural(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(name))]


def _resolve(tree: _Tree, name: str, f: Mapping, loc: Location):
    field = f"data.fields.{name}"
    if f.get("value") is not None:
        return np.float64(f["value"])
    if f.get("path") is not None:
        return tree.array(tree.get(f["path"], field), field)
    parent, _, pattern = f["stack"].rpartition(".")
    node = tree.get(parent, field) if parent else tree.root
    keys = sorted((k for k in tree.children(node) if fnmatch.fnmatchcase(str(k), pattern)), key=_natural)
    if not keys:
        raise DataError(f"stack {f['stack']!r} matches nothing (has: {', '.join(map(str, tree.children(node)[:20]))})",
                        field=field, expected="a pattern matching struct fields, e.g. D.neuron*", location=loc)
    parts = [tree.array(node[k], f"{field} ({k})") for k in keys]
    shapes = {np.shape(p) for p in parts}
    if len(shapes) != 1 or any(isinstance(p, str) for p in parts):
        raise DataError(f"stack {f['stack']!r}: the {len(keys)} matches differ in shape "
                        f"({', '.join(f'{k} {np.shape(p)}' for k, p in zip(keys[:3], parts))}, ...)",
                        field=field, expected="equal-shaped numeric arrays", location=loc)
    return np.stack([np.asarray(p, dtype=np.float64) for p in parts], axis=-1)


def _affine(a, f: Mapping, name: str, loc: Location):
    if isinstance(a, str):
        if f.get("scale", 1.0) != 1.0 or f.get("offset", 0.0) != 0.0:
            raise DataError(f"is text ({a[:30]!r}); scale/offset need numbers", field=f"data.fields.{name}",
                            expected="a numeric variable", location=loc)
        return a
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        raise DataError(f"has dtype {a.dtype}", field=f"data.fields.{name}", expected="a numeric array", location=loc)
    return a.astype(np.float64) * float(f.get("scale", 1.0)) + float(f.get("offset", 0.0))


def _broadcast(out: dict, fields: Mapping, loc: Location) -> None:
    """Constants: neuron_type per neuron, trial_* per trial (from firing_rates' shape)."""
    fr = np.shape(out.get("firing_rates", ()))
    for name, f in fields.items():
        if f.get("value") is None or len(fr) != 3:
            continue
        if name == "neuron_type":
            out[name] = np.full(fr[2], out[name])
        elif name.startswith("trial_"):
            out[name] = np.full(fr[0], out[name])


def _onehot(tree: _Tree, out: dict, name: str, f: Mapping, loc: Location) -> np.ndarray:
    field = f"data.fields.{name}"
    fr = np.shape(out.get("firing_rates", ()))
    if len(fr) != 3:
        raise DataError("onehot needs firing_rates (trials, bins, neurons) to know the trials and bins",
                        field=field, expected="data.fields.firing_rates or a firing_rates variable", location=loc)
    K, T = fr[:2]
    lab = np.asarray(tree.array(tree.get(f["onehot"], field), field), dtype=np.float64).ravel()
    if lab.size != K:
        raise DataError(f"onehot label {f['onehot']!r} has {lab.size} values but there are {K} trials",
                        field=field, expected=f"one label per trial ({K})", location=loc)
    if "time_axis" in out:
        time = np.asarray(out["time_axis"], dtype=np.float64).ravel()
    else:
        time = (np.arange(T) + 0.5) * float(np.ravel(out.get("bin_size_ms", np.nan))[0])
    during = f.get("during_ms")
    on = np.ones(T, bool) if during is None else (time >= during[0]) & (time <= during[1])
    if not on.any():
        raise DataError(f"during {during} ms contains no bin (time_axis {time[0]:g}..{time[-1]:g} ms)",
                        field=f"{field}.during", expected="a window inside the trial", location=loc)
    values = np.unique(lab[np.isfinite(lab)])
    return (lab[:, None, None] == values[None, None, :]) & on[None, :, None]


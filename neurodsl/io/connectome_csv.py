"""A connectome CSV (synapse-count matrix + one label per cell) -> :class:`NetworkStructure` (numpy only).

Inputs
------
* ``adjacency``: a dense square matrix (row = presynaptic, column = postsynaptic;
  separated by spaces, commas or tabs; no header), or an edge list with columns
  ``pre post [count]`` (one edge per row; a missing count is 1).
* ``labels``: one label per cell (one per row; extra columns after a comma are
  ignored; a header line ``label`` is skipped), in the matrix's order.

``roles`` maps each label to ``E``/``I`` (a recurrent neuron), ``input`` (a
feedforward channel) or ``drop``.  Recurrent neurons keep the file's relative
order (they may interleave E and I; the compiler permutes, see
:mod:`neurodsl.compile.olfactory`); inputs are numbered in file order.
Input -> recurrent counts become ``ff_weight``; recurrent -> recurrent counts
become ``rec_weight`` with Dale's sign of the presynaptic type; every other
edge (into inputs, from dropped cells) is discarded.  ``weight`` multiplies the
counts, counts below ``min_count`` are dropped.  ``meta`` records the files,
the roles, each recurrent neuron's original label and index, and the number
of discarded synapses.  Assemblies are the labels' indices (label order of
first appearance) so figures can group cells by label.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from neurodsl.errors import DataError, Location
from neurodsl.io.structure import NetworkStructure

ROLES = ("E", "I", "input", "drop")


def read_labels(path: str | Path) -> np.ndarray:
    lines = [ln.strip() for ln in Path(path).read_text().splitlines() if ln.strip()]
    labels = [ln.split(",")[0].strip().strip('"') for ln in lines]
    if labels and labels[0].lower() in ("label", "labels", "cell_type", "type"):
        labels = labels[1:]
    if not labels:
        raise DataError("no labels in the file", location=Location(str(path)), expected="one label per line")
    return np.asarray(labels, dtype=str)


def read_adjacency(path: str | Path, n: int, layout: str = "auto") -> np.ndarray:
    """Dense (n, n) count matrix, row = presynaptic."""
    loc = Location(str(path))
    text = Path(path).read_text()
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    delim = "," if "," in first else ("\t" if "\t" in first else None)
    try:
        arr = np.loadtxt(path, delimiter=delim, ndmin=2, dtype=np.float64)
    except ValueError as e:
        raise DataError(f"cannot read the adjacency matrix: {e}", location=loc,
                        expected="numbers separated by spaces, commas or tabs") from None
    dense = layout == "dense" or (layout == "auto" and arr.shape == (n, n))
    if dense:
        if arr.shape != (n, n):
            raise DataError(f"matrix has shape {arr.shape} but there are {n} labels", location=loc,
                            expected=f"({n}, {n}): one row and column per label")
        W = arr
    else:
        if arr.shape[1] not in (2, 3):
            raise DataError(f"array of shape {arr.shape} is neither a ({n}, {n}) matrix nor an edge list",
                            location=loc, expected="a dense matrix or columns pre, post[, count]")
        pre, post = arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64)
        if len(pre) and (min(pre.min(), post.min()) < 0 or max(pre.max(), post.max()) >= n):
            raise DataError("edge index out of range", location=loc, expected=f"indices in [0, {n})")
        W = np.zeros((n, n))
        np.add.at(W, (pre, post), arr[:, 2] if arr.shape[1] == 3 else 1.0)
    if not np.isfinite(W).all() or (W < 0).any():
        raise DataError("negative or non-finite synapse counts", location=loc, expected="counts >= 0")
    return W


def structure_from_matrix(W: np.ndarray, labels, roles: dict[str, str], *, weight: float = 1.0,
                          min_count: float = 1.0, where: str = "<connectome>",
                          meta: dict | None = None) -> NetworkStructure:
    """Split a (pre, post) count matrix by label roles into a validated NetworkStructure."""
    labels = np.asarray(labels, dtype=str)
    loc = Location(where)
    unknown = sorted(set(labels.tolist()) - set(roles))
    if unknown:
        raise DataError(f"labels {unknown} have no role", field="roles", location=loc,
                        expected="roles for every label: " + ", ".join(sorted(set(labels.tolist()))))
    bad = {k: v for k, v in roles.items() if v not in ROLES}
    if bad:
        raise DataError(f"unknown roles {bad}", field="roles", location=loc, expected="E, I, input or drop")
    role = np.array([roles[lab] for lab in labels])
    rec = np.nonzero(np.isin(role, ("E", "I")))[0]
    inp = np.nonzero(role == "input")[0]
    if len(rec) == 0:
        raise DataError("no recurrent (E or I) cells", field="roles", location=loc,
                        expected="at least one label mapped to E or I")
    W = np.where(W >= min_count, W, 0.0)
    cell_type = role[rec]
    sign = np.where(cell_type == "E", 1.0, -1.0)
    R = W[np.ix_(rec, rec)]
    rec_pre, rec_post = np.nonzero(R)
    rec_w = R[rec_pre, rec_post] * weight * sign[rec_pre]
    F = W[np.ix_(inp, rec)]
    ff_pre, ff_post = np.nonzero(F)
    ff_w = F[ff_pre, ff_post] * weight
    used = R.sum() + F.sum()
    first_seen = list(dict.fromkeys(labels[rec].tolist()))
    assembly = np.array([first_seen.index(lab) for lab in labels[rec]], np.int32)
    info = {"source": "connectome_csv", "roles": dict(roles), "weight_per_synapse": weight,
            "min_count": min_count, "labels": labels[rec].tolist(), "original_index": rec.tolist(),
            "input_labels": labels[inp].tolist(), "input_original_index": inp.tolist(),
            "assembly_labels": first_seen, "synapses_used": float(used),
            "synapses_discarded": float(W.sum() - used), **(meta or {})}
    return NetworkStructure(cell_type.astype("<U1"), rec_pre.astype(np.int32), rec_post.astype(np.int32),
                            rec_w.astype(np.float32), ff_pre.astype(np.int32), ff_post.astype(np.int32),
                            ff_w.astype(np.float32), int(len(inp)), assembly, meta=info).validate(where)


def load_connectome_csv(adjacency: str | Path, labels: str | Path, roles: dict[str, str], *,
                        layout: str = "auto", weight: float = 1.0, min_count: float = 1.0) -> NetworkStructure:
    """Read ``adjacency`` + ``labels`` and convert (see the module docstring)."""
    for p in (adjacency, labels):
        if not Path(p).exists():
            raise DataError("connectome file not found", location=Location(str(p)))
    lab = read_labels(labels)
    W = read_adjacency(adjacency, len(lab), layout)
    return structure_from_matrix(W, lab, roles, weight=weight, min_count=min_count, where=str(adjacency),
                                 meta={"adjacency": str(adjacency), "labels_file": str(labels)})

"""``network_structure.npz``: the connectome file that workflow 2's stages hand on.

``infer-network`` and ``homeostatic`` write it, ``teacher`` and ``fit-student``
read it.  Contents (all plain numpy arrays, so ``np.load`` is enough to read it):

=================  ===========  ===================================================
key                dtype        meaning
=================  ===========  ===================================================
``cell_type``      ``<U1``      (N,) "E" or "I" for each recurrent neuron
``assembly``       int32        (N,) assembly label, -1 for none
``rec_pre``        int32        (S,) presynaptic recurrent index
``rec_post``       int32        (S,) postsynaptic recurrent index
``rec_weight``     float32      (S,) signed weight (Dale: sign of the presynaptic type),
                                a dimensionless multiplier of the receptor's g_max
``ff_pre``         int32        (F,) presynaptic input (mitral) index
``ff_post``        int32        (F,) postsynaptic recurrent index
``ff_weight``      float32      (F,) weight (>= 0: inputs are excitatory)
``n_inputs``       int64        () number of input (mitral) channels
``scaling``        float32      (2, 3) optional per-pair scaling factors, rows post
                                E/I, columns pre E/I/input; absent = all ones
``meta``           ``<U``       () JSON text: generator, parameters, seed, history
=================  ===========  ===================================================
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from neurodsl.errors import DataError, Location

REQUIRED = ("cell_type", "rec_pre", "rec_post", "rec_weight", "ff_pre", "ff_post", "ff_weight", "n_inputs")


@dataclass(frozen=True)
class NetworkStructure:
    """An immutable recurrent + feedforward connectome with E/I labels and assemblies."""

    cell_type: np.ndarray
    rec_pre: np.ndarray
    rec_post: np.ndarray
    rec_weight: np.ndarray
    ff_pre: np.ndarray
    ff_post: np.ndarray
    ff_weight: np.ndarray
    n_inputs: int
    assembly: np.ndarray | None = None
    scaling: np.ndarray = field(default_factory=lambda: np.ones((2, 3), np.float32))
    meta: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.cell_type)

    @property
    def is_exc(self) -> np.ndarray:
        return self.cell_type == "E"

    def dense_recurrent(self) -> np.ndarray:
        """(pre, post) signed matrix; for small networks and figures."""
        W = np.zeros((self.n, self.n), np.float32)
        np.add.at(W, (self.rec_pre, self.rec_post), self.rec_weight)
        return W

    def dense_feedforward(self) -> np.ndarray:
        W = np.zeros((self.n_inputs, self.n), np.float32)
        np.add.at(W, (self.ff_pre, self.ff_post), self.ff_weight)
        return W

    def with_weights(self, rec_weight=None, ff_weight=None, scaling=None, **meta) -> "NetworkStructure":
        return replace(self,
                       rec_weight=self.rec_weight if rec_weight is None else np.asarray(rec_weight, np.float32),
                       ff_weight=self.ff_weight if ff_weight is None else np.asarray(ff_weight, np.float32),
                       scaling=self.scaling if scaling is None else np.asarray(scaling, np.float32),
                       meta={**self.meta, **meta})

    def validate(self, where: str = "<structure>") -> "NetworkStructure":
        loc = Location(where)
        n, ni = self.n, self.n_inputs
        if not set(np.unique(self.cell_type)) <= {"E", "I"}:
            raise DataError("cell_type must contain only 'E' and 'I'", field="cell_type", location=loc)
        for name, idx, bound in (("rec_pre", self.rec_pre, n), ("rec_post", self.rec_post, n),
                                 ("ff_pre", self.ff_pre, ni), ("ff_post", self.ff_post, n)):
            if len(idx) and (idx.min() < 0 or idx.max() >= bound):
                raise DataError(f"index out of range [0, {bound})", field=name, location=loc)
        if self.assembly is not None and len(self.assembly) != n:
            raise DataError(f"assembly has {len(self.assembly)} labels for {n} neurons", field="assembly",
                            location=loc, expected="one label per neuron (-1 = none)")
        if not (len(self.rec_pre) == len(self.rec_post) == len(self.rec_weight)):
            raise DataError("rec_pre, rec_post and rec_weight differ in length", field="rec_weight", location=loc)
        if not (len(self.ff_pre) == len(self.ff_post) == len(self.ff_weight)):
            raise DataError("ff_pre, ff_post and ff_weight differ in length", field="ff_weight", location=loc)
        self._check_values(loc)
        pre_e = self.is_exc[self.rec_pre]
        wrong = (pre_e & (self.rec_weight < 0)) | (~pre_e & (self.rec_weight > 0))
        if wrong.any():
            bad = "E" if (pre_e & (self.rec_weight < 0)).any() else "I"
            raise DataError(f"Dale's law: {int(wrong.sum())} recurrent weights of population {bad!r} have the "
                            "wrong sign", field="rec_weight", location=loc,
                            expected="E rows >= 0 and I rows <= 0")
        if (self.ff_weight < 0).any():
            raise DataError("negative feedforward weights", field="ff_weight", location=loc,
                            expected="weights >= 0 (inputs are excitatory)")
        return self

    def _check_values(self, loc: Location) -> None:
        """Finite weights and scaling; scaling >= 0 (a negative factor would flip Dale's signs)."""
        if self.scaling.shape != (2, 3):
            raise DataError(f"scaling has shape {self.scaling.shape}", field="scaling", location=loc,
                            expected="(2, 3): post E/I x pre E/I/input")
        for name in ("rec_weight", "ff_weight", "scaling"):
            a = np.asarray(getattr(self, name))
            if a.dtype.kind not in "fiu":
                raise DataError(f"dtype {a.dtype} is not numeric", field=name, location=loc,
                                expected="float weights")
            bad = ~np.isfinite(a)
            if bad.any():
                first = np.unravel_index(int(np.flatnonzero(bad.ravel())[0]), a.shape)
                raise DataError(f"{int(bad.sum())} non-finite values (first at index "
                                f"{first[0] if a.ndim == 1 else tuple(int(i) for i in first)}: {a[first]})",
                                field=name, location=loc, expected="finite numbers")
        if (self.scaling < 0).any():
            r, c = (int(i) for i in np.argwhere(self.scaling < 0)[0])
            raise DataError(f"negative scaling {self.scaling[r, c]:g} at [{r}, {c}] (post {'EI'[r]}, pre "
                            f"{('E', 'I', 'input')[c]})", field="scaling", location=loc,
                            expected="scaling >= 0 (signs come from the presynaptic cell type)")


def save_structure(s: NetworkStructure, path: str | Path) -> Path:
    """Write atomically (temporary file + rename, :mod:`neurodsl.io.atomic`)."""
    from neurodsl.io import atomic
    path = Path(path)
    arrays = dict(cell_type=s.cell_type.astype("<U1"), rec_pre=s.rec_pre.astype(np.int32),
                  rec_post=s.rec_post.astype(np.int32), rec_weight=s.rec_weight.astype(np.float32),
                  ff_pre=s.ff_pre.astype(np.int32), ff_post=s.ff_post.astype(np.int32),
                  ff_weight=s.ff_weight.astype(np.float32), n_inputs=np.int64(s.n_inputs),
                  scaling=s.scaling.astype(np.float32), meta=np.str_(json.dumps(s.meta)))
    if s.assembly is not None:
        arrays["assembly"] = s.assembly.astype(np.int32)
    fd, tmp = atomic.temp_file(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        return atomic.finish(tmp, path)
    finally:
        atomic.discard(tmp)


def load_structure(path: str | Path) -> NetworkStructure:
    """Read and validate; errors name the file and the offending key."""
    path = Path(path)
    loc = Location(str(path))
    if not path.exists():
        raise DataError("network structure file not found", location=loc)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001 - truncated, empty, text, pickled: all unreadable
        raise DataError(f"not a readable .npz file ({type(e).__name__}: {e})", location=loc,
                        expected="a network_structure.npz written by neurodsl (np.savez)") from None
    missing = [k for k in REQUIRED if k not in arrays]
    if missing:
        raise DataError(f"missing arrays {missing}", location=loc, expected="the keys " + ", ".join(REQUIRED))
    for k in ("rec_pre", "rec_post", "ff_pre", "ff_post", "n_inputs", "assembly"):
        if k in arrays and arrays[k].dtype.kind not in "iu":
            raise DataError(f"dtype {arrays[k].dtype} is not an integer type", field=k, location=loc,
                            expected="integer indices")
    for k in ("rec_pre", "rec_post", "ff_pre", "ff_post", "rec_weight", "ff_weight", "cell_type", "assembly"):
        if k in arrays and arrays[k].ndim != 1:
            raise DataError(f"shape {arrays[k].shape} is not one-dimensional", field=k, location=loc)
    if arrays["n_inputs"].size != 1:
        raise DataError(f"shape {arrays['n_inputs'].shape}", field="n_inputs", location=loc, expected="a scalar")
    try:
        meta = json.loads(str(arrays["meta"])) if "meta" in arrays else {}
    except ValueError as e:
        raise DataError(f"not JSON ({e})", field="meta", location=loc) from None
    s = NetworkStructure(
        cell_type=arrays["cell_type"].astype("<U1"), rec_pre=arrays["rec_pre"], rec_post=arrays["rec_post"],
        rec_weight=_as_float(arrays, "rec_weight", loc), ff_pre=arrays["ff_pre"], ff_post=arrays["ff_post"],
        ff_weight=_as_float(arrays, "ff_weight", loc), n_inputs=int(arrays["n_inputs"].item()),
        assembly=arrays.get("assembly"),
        scaling=_as_float(arrays, "scaling", loc) if "scaling" in arrays else np.ones((2, 3), np.float32),
        meta=meta if isinstance(meta, dict) else {"meta": meta})
    return s.validate(str(path))


def _as_float(arrays: dict, key: str, loc: Location) -> np.ndarray:
    a = arrays[key]
    if a.dtype.kind not in "fiu":
        raise DataError(f"dtype {a.dtype} is not numeric", field=key, location=loc, expected="float weights")
    with np.errstate(over="ignore"):
        return a.astype(np.float32)  # float64 beyond float32's range becomes inf and is rejected

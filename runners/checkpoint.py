"""Generic atomic checkpoints of pytrees + JSON metadata + RNG state, with a sha256 checksum.

A checkpoint is one ``.npz`` file holding the flattened leaves (``leaf_00000``,
...), their key paths and a JSON header (``__header__``: metadata, RNG state,
tree paths, sha256 of the leaves).  Writing goes to a temporary file in the same
folder, is fsync'ed and renamed over the target (``os.replace``); the file it
replaces is kept as ``NAME.prev.npz`` first, so a crash or a corrupt newest file
never loses the last good state: :func:`load_checkpoint` verifies the checksum
and falls back to the previous file.  SIGINT/SIGTERM that arrive while a file is
being written are held until it is complete (:func:`deferred_signals`); the
temporary files follow :mod:`neurodsl.io.atomic` (umask mode, stale ones of
killed writers removed).  :class:`StopSignals` turns SIGINT/SIGTERM into a flag
a training loop polls between steps.

Leaves may be JAX or numpy arrays or Python scalars; typed PRNG keys are stored
as their key data.  ``load_checkpoint(path, like=template)`` rebuilds the
template's tree structure (dtypes as stored); without ``like`` it returns a
``{keypath: array}`` dict.  Nothing here knows about any particular model.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neurodsl.io import atomic

HEADER = "__header__"
FORMAT = "neurodsl-checkpoint-1"


class CheckpointError(RuntimeError):
    """No readable checkpoint (missing, or every candidate failed its checksum)."""


@dataclass
class Checkpoint:
    tree: Any
    metadata: dict
    rng_state: Any
    path: Path


def _leaves(tree) -> tuple[list[str], list[np.ndarray], Any]:
    import jax
    flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
    paths, arrays = [], []
    for kp, leaf in flat:
        if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        paths.append(jax.tree_util.keystr(kp))
        arrays.append(np.asarray(leaf))
    return paths, arrays, treedef


def _digest(arrays: list[np.ndarray], paths: list[str]) -> str:
    h = hashlib.sha256()
    for p, a in zip(paths, arrays):
        h.update(p.encode())
        h.update(str(a.dtype).encode())
        h.update(repr(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _prev(path: Path) -> Path:
    return path.with_name(path.name[:-4] + ".prev.npz" if path.name.endswith(".npz") else path.name + ".prev")


_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_deferring = threading.local()


@contextmanager
def deferred_signals():
    """Hold SIGINT/SIGTERM while the body runs; deliver them (once each) when it is done.

    Only the main thread can install handlers; elsewhere (and when nested) this is a no-op.
    """
    if threading.current_thread() is not threading.main_thread() or getattr(_deferring, "on", False):
        yield
        return
    held: list[int] = []
    old = {}
    for s in _SIGNALS:
        h = signal.getsignal(s)
        if h is not None:  # None: installed outside Python, leave it alone
            old[s] = signal.signal(s, lambda signum, frame: held.append(signum))
    _deferring.on = True
    try:
        yield
    finally:
        _deferring.on = False
        for s, h in old.items():
            signal.signal(s, h)
        for s in dict.fromkeys(held):
            signal.raise_signal(s)


class StopSignals:
    """``with StopSignals() as stop:`` SIGINT/SIGTERM set ``stop.hit`` (the signal's name)
    instead of ending the process; the loop polls it, saves and returns.  A second SIGINT
    raises KeyboardInterrupt at once (the loop's handler then saves what is consistent)."""

    def __init__(self):
        self.hit: str | None = None
        self.old: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in _SIGNALS:
                if signal.getsignal(s) is not None:
                    self.old[s] = signal.signal(s, self._handler)
        return self

    def _handler(self, signum, frame):
        if self.hit is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.hit = signal.Signals(signum).name

    def __exit__(self, *exc):
        for s, h in self.old.items():
            signal.signal(s, h)


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a fsync'ed temporary file and ``os.replace`` (signals held)."""
    with deferred_signals():
        return atomic.write_bytes(Path(path), data)


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def save_checkpoint(path: str | Path, tree, metadata: dict | None = None, rng_state: Any = None,
                    keep_previous: bool = True) -> Path:
    """Atomically write ``tree`` (+ JSON-serialisable ``metadata`` and ``rng_state``) to ``path``."""
    path = Path(path)
    paths, arrays, _ = _leaves(tree)
    header = {"format": FORMAT, "paths": paths, "sha256": _digest(arrays, paths),
              "metadata": metadata or {}, "rng_state": rng_state}
    buf = io.BytesIO()
    np.savez(buf, **{f"leaf_{i:05d}": a for i, a in enumerate(arrays)},
             **{HEADER: np.frombuffer(json.dumps(header, default=_json_default).encode(), np.uint8)})
    with deferred_signals():
        if keep_previous and path.exists():
            try:
                _read(path)  # only a good file becomes the fallback
                os.replace(path, _prev(path))
            except CheckpointError:
                pass
        return atomic_write_bytes(path, buf.getvalue())


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _read(path: Path) -> tuple[dict, list[np.ndarray]]:
    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(bytes(z[HEADER]).decode())
            arrays = [z[f"leaf_{i:05d}"] for i in range(len(header["paths"]))]
    except Exception as e:  # noqa: BLE001 - any unreadable file is a bad checkpoint
        raise CheckpointError(f"{path}: unreadable ({type(e).__name__}: {e})") from None
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a {FORMAT} file")
    if _digest(arrays, header["paths"]) != header["sha256"]:
        raise CheckpointError(f"{path}: checksum mismatch")
    return header, arrays


def load_checkpoint(path: str | Path, like=None) -> Checkpoint:
    """Read and verify ``path`` (falling back to its ``.prev`` file); rebuild ``like``'s structure."""
    path = Path(path)
    errors = []
    for cand in (path, _prev(path)):
        if not cand.exists():
            errors.append(f"{cand}: missing")
            continue
        try:
            header, arrays = _read(cand)
        except CheckpointError as e:
            errors.append(str(e))
            continue
        return Checkpoint(_rebuild(header["paths"], arrays, like), header["metadata"],
                          header["rng_state"], cand)
    raise CheckpointError("; ".join(errors))


def _rebuild(paths, arrays, like):
    if like is None:
        return dict(zip(paths, arrays))
    import jax
    want, _, treedef = _leaves(like)
    if want != paths:
        raise CheckpointError(f"checkpoint tree differs from the template: {sorted(set(paths) ^ set(want))[:5]}")
    flat = jax.tree_util.tree_leaves(like)
    out = []
    for tmpl, a in zip(flat, arrays):
        if isinstance(tmpl, jax.Array) and jax.dtypes.issubdtype(tmpl.dtype, jax.dtypes.prng_key):
            out.append(jax.random.wrap_key_data(a, impl=jax.random.key_impl(tmpl)))
        elif isinstance(tmpl, (jax.Array, np.ndarray, np.generic)):
            out.append(jax.numpy.asarray(a) if isinstance(tmpl, jax.Array) else a)
        else:
            out.append(type(tmpl)(a.item()) if np.ndim(a) == 0 else a)
    return jax.tree_util.tree_unflatten(treedef, out)


def numpy_rng_state(rng: np.random.Generator) -> dict:
    """JSON-able state of a numpy Generator (restore with :func:`restore_numpy_rng`)."""
    return rng.bit_generator.state


def restore_numpy_rng(state: dict) -> np.random.Generator:
    bg = getattr(np.random, state["bit_generator"])()
    bg.state = state
    return np.random.Generator(bg)

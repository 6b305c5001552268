"""Data parallelism over trials: batched simulation and training split their trials across devices.

One 1-D :class:`jax.sharding.Mesh` over the visible devices, axis ``"trial"``.  The batch axis of
the states and inputs is placed on it with :class:`~jax.sharding.NamedSharding` and the jitted
programs are left to XLA's GSPMD partitioner, so the computation is the single-device one:

* every trial runs on one device; what couples trials (a loss averaged over the batch, the
  gradient) is reduced across devices by XLA;
* random numbers are those of one device: JAX's threefry generator is partitionable
  (``jax_threefry_partitionable``, on by default), i.e. the bits of element ``(trial, neuron)`` depend
  on the key and that element's index, not on which device draws them.  The Poisson inputs of a
  trial are therefore the same on 1, 2 or 8 devices (``tests/runners/test_devices.py``).

What GSPMD cannot partition: the batch-major event kernel (a Numba function called through
brainevent's XLA FFI, :mod:`neurodsl.compile.events`) is an opaque custom call, which GSPMD runs
on the whole batch on every device after gathering the spikes -- correct, but not parallel.
While :func:`event_kernels` is active (:func:`parallel` wraps the runners' jitted functions in it;
it sets JAX's context mesh), :func:`neurodsl.compile.events.batch_kernel` makes that call through
:func:`jax.shard_map` over the trial axis instead: each device runs the
kernel on its own trials (the kernel is independent per trial, so the result is the same).

Which devices: ``NEURODSL_DEVICES`` (``neurodsl --devices N``): ``all`` (default) or a count N
(the first N of ``jax.devices()``).  The trials must divide evenly among the devices: with the
default, the largest device count that divides the batch is used (a warning says so when that is
fewer than visible); an explicit N that does not divide the batch is an error.  With one device
everything here is a no-op.
"""
from __future__ import annotations

import contextlib
import functools
import os
import warnings

from neurodsl.errors import SpecError

AXIS = "trial"
ENV = "NEURODSL_DEVICES"


def requested() -> int | None:
    """The device count asked for (``NEURODSL_DEVICES``), or None for all visible devices."""
    raw = os.environ.get(ENV, "all").strip().lower()
    if raw in ("", "all", "0"):
        return None
    try:
        n = int(raw)
    except ValueError:
        n = -1
    if n < 1:
        raise SpecError(f"{ENV}={raw!r} is not a device count", field="--devices",
                        expected="a positive integer, or 'all'")
    return n


def n_devices(batch: int, what: str = "trials") -> int:
    """How many devices ``batch`` trials are split over (1: no sharding)."""
    import jax
    visible = len(jax.devices())
    want = requested()
    if want is not None:
        if want > visible:
            raise SpecError(f"{want} devices requested, {visible} visible ({jax.default_backend()})",
                            field="--devices", expected=f"at most {visible}")
        if batch % want:
            raise SpecError(f"{batch} {what} do not divide evenly among {want} devices", field="--devices",
                            expected=f"a device count that divides {batch}, or {what} a multiple of {want}")
        return want
    if batch <= 1 or visible == 1:
        return 1
    n = max(k for k in range(1, visible + 1) if batch % k == 0)
    if n < visible:
        warnings.warn(f"{batch} {what} split over {n} of {visible} devices (the trials must divide evenly; "
                      f"use a multiple of {visible} to use them all)", stacklevel=2)
    return n


def trial_mesh(batch: int, what: str = "trials"):
    """A 1-D mesh ``("trial",)`` over the devices ``batch`` trials are split across; None for one."""
    import jax
    import numpy as np
    n = n_devices(batch, what)
    if n == 1:
        return None
    return jax.sharding.Mesh(np.array(jax.devices()[:n]), (AXIS,))


def batch_spec(ndim: int, axis: int):
    from jax.sharding import PartitionSpec as P
    axis = axis % ndim
    return P(*[AXIS if i == axis else None for i in range(ndim)])


def shard(tree, mesh, batch: int, axis: int = -2):
    """``tree`` on ``mesh``: leaves whose ``axis`` has size ``batch`` split along it, the rest replicated.

    ``axis=-2`` is the layout of the spiking code (``(..., trial, neuron)``: states, chunked inputs,
    observers); ``axis=0`` that of per-trial data sets.  ``mesh`` None: ``tree`` unchanged."""
    if mesh is None:
        return tree
    import jax
    from jax.sharding import NamedSharding, PartitionSpec as P

    def put(x):
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            return x
        nd = len(x.shape)
        ax = axis if axis >= 0 else nd + axis
        split = 0 <= ax < nd and x.shape[ax] == batch
        return jax.device_put(x, NamedSharding(mesh, batch_spec(nd, axis) if split else P()))
    return jax.tree_util.tree_map(put, tree)


def shard_states(states: dict, mesh, batch: int, axis: int = -2) -> None:
    """Re-place brainstate states (e.g. ``net.hidden_states()``) in place, as :func:`shard`."""
    if mesh is None:
        return
    for st in states.values():
        st.value = shard(st.value, mesh, batch, axis)


def shard_network(net, mesh) -> None:
    """The dynamic state of a compiled :class:`~neurodsl.compile.network.SpikingNetwork` on ``mesh``
    (trial axis second to last; the RNG key replicated)."""
    if mesh is None:
        return
    batch = int(next(iter(net.populations.values())).V.value.shape[-2])
    shard_states(net.hidden_states(), mesh, batch)


# ----------------------------------------------------------------------------- event kernels
def event_kernels(mesh):
    """While active, functions traced see ``mesh`` as JAX's context mesh (:func:`jax.set_mesh`), and
    the batch-major event kernels run per device (:func:`neurodsl.compile.events.batch_kernel`)."""
    if mesh is None:
        return contextlib.nullcontext()
    import jax
    return jax.set_mesh(mesh)


def parallel(fn, mesh):
    """``fn`` (a jitted function) traced and run with :func:`event_kernels` active; ``fn`` itself
    for ``mesh`` None."""
    if mesh is None:
        return fn

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with event_kernels(mesh):
            return fn(*args, **kwargs)
    return wrapped


def describe(mesh) -> str:
    if mesh is None:
        return "1 device"
    return f"{mesh.size} devices ({mesh.devices.flat[0].platform}), trials split over them"


def shard_trial_sets(train: dict, val: dict) -> tuple[dict, dict]:
    """The rate-RNN fit's per-trial arrays (trial axis first) split over the devices: one mesh whose
    size divides both the training and the validation trials.  (The minibatches are gathered from
    the training set inside the compiled epoch, :func:`neurodsl.runners.rnn_losses.build_epoch`.)"""
    import math
    n_train = len(next(iter(train.values())))
    n_val = len(next(iter(val.values()))) if val else 0
    mesh = trial_mesh(math.gcd(n_train, n_val), "training and validation trials (their common divisor)")
    return shard(train, mesh, n_train, axis=0), shard(val, mesh, n_val, axis=0)

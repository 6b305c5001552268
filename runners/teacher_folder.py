"""Reading and checking a teacher folder (the ``--out`` folder of ``neurodsl teacher``).

:func:`read_teacher_folder` returns ``(spec, structure, teacher Dataset)`` after checking what
``fit-student`` relies on, so that a broken folder is one located
:class:`~neurodsl.errors.DataError` (CLI: one line, exit 2) instead of a traceback or a fit
to garbage:

* the folder holds ``spec.yaml`` (of kind ``teacher``), ``network_structure.npz`` (valid, see
  :func:`neurodsl.io.structure.load_structure`) and a readable ``teacher.nc``;
* the effective scaling factors (structure x ``network.scaling``) are finite and >= 0;
* ``teacher.nc`` has the ``dt_ms`` and ``n_steps`` attrs, its ``dt_ms`` is the spec's ``dt``,
  and the event variables ``spike_trial/_step/_neuron`` and
  ``input_spike_trial/_step/_channel`` (integers, one length per event list);
* its neurons and mitral channels are the structure's (a structure from another network is
  named as such), and every event index lies in range: trial < trials, 0 <= step < n_steps
  (sorted by step), neuron < N, channel < n_inputs.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from neurodsl.errors import DataError, Location, NeurodslError, SpecError

EVENTS = {"spike": ("spike_trial", "spike_step", "spike_neuron"),
          "input_spike": ("input_spike_trial", "input_spike_step", "input_spike_channel")}
_MADE_BY = "a teacher folder (the --out folder of `neurodsl teacher`)"


def read_teacher_folder(folder: str | Path):
    """``(spec, structure, ds)`` of a checked teacher folder (module docstring); ``ds`` is loaded."""
    from neurodsl.io.structure import load_structure
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError("teacher folder not found" if not folder.exists() else "teacher is not a folder",
                        field="teacher", expected=_MADE_BY, location=Location(str(folder)))
    for name in ("spec.yaml", "network_structure.npz", "teacher.nc"):
        if not (folder / name).is_file():
            raise DataError(f"the teacher folder has no {name}", field="teacher", expected=_MADE_BY,
                            location=Location(str(folder / name)))
    spec = _teacher_spec(folder / "spec.yaml")
    structure = load_structure(folder / "network_structure.npz")
    check_scaling(spec, structure, folder / "spec.yaml")
    ds = _open(folder / "teacher.nc")
    check_teacher_dataset(ds, spec, structure, folder / "teacher.nc")
    return spec, structure, ds


def _teacher_spec(path: Path):
    from neurodsl.spec import load_spec
    try:
        spec = load_spec(path).spec
    except NeurodslError:
        raise
    except Exception as e:  # noqa: BLE001 - a binary or unreadable file is a user error here
        raise DataError(f"unreadable spec ({type(e).__name__}: {e})", location=Location(str(path)),
                        expected="the resolved spec.yaml that `neurodsl teacher` wrote") from None
    if spec.kind != "teacher":
        raise DataError(f"this folder's spec.yaml is of kind {spec.kind!r}, not a teacher's", field="kind",
                        expected=_MADE_BY, location=Location(str(path)))
    return spec


def check_scaling(spec, structure, where) -> None:
    """The effective scaling factors (structure x ``network.scaling``) must be finite and >= 0: a NaN
    factor makes the conductances of its synapses NaN, every neuron they reach gets a NaN membrane
    potential, and NaN never crosses threshold -- a silent network, no error."""
    from neurodsl.compile.olfactory import effective_scaling
    with np.errstate(invalid="ignore", over="ignore"):
        sc = effective_scaling(spec.network, structure)
    bad = ~np.isfinite(sc) | (sc < 0)
    if bad.any():
        r, c = (int(i) for i in np.argwhere(bad)[0])
        post, pre = "EI"[r], ("E", "I", "input")[c]
        raise SpecError(f"effective scaling factor {sc[r, c]:g} for post {post}, pre {pre}",
                        location=Location(str(where)), field=f"network.scaling.{post}.{pre}",
                        expected="a finite factor >= 0")


def _open(path: Path):
    import xarray as xr
    try:
        with xr.open_dataset(path) as ds:
            return ds.load()
    except Exception as e:  # noqa: BLE001 - truncated, empty, text: all unreadable
        raise DataError(f"not a readable netCDF file ({type(e).__name__}: {str(e)[:120]})",
                        location=Location(str(path)), expected="teacher.nc as written by `neurodsl teacher`") from None


def check_teacher_dataset(ds, spec, structure, path) -> None:
    """teacher.nc agrees with its spec and structure and its events are in range (module docstring)."""
    loc = Location(str(path))
    for a in ("dt_ms", "n_steps"):
        if a not in ds.attrs:
            raise DataError(f"attribute {a!r} is missing", field=a, location=loc,
                            expected="teacher.nc attrs dt_ms, n_steps")
    dt, n_steps = float(ds.attrs["dt_ms"]), int(ds.attrs["n_steps"])
    if abs(dt - spec.dt.internal) > 1e-9:
        raise DataError(f"dt_ms is {dt:g} but the folder's spec.yaml has dt {spec.dt}", field="dt_ms", location=loc,
                        expected="the teacher.nc and spec.yaml of one `neurodsl teacher` run")
    sizes = {"neuron": structure.n, "channel": structure.n_inputs}
    for dim, n in sizes.items():
        if ds.sizes.get(dim, n) != n:
            raise DataError(f"teacher.nc has {ds.sizes[dim]} {dim}s but network_structure.npz has {n}: the structure "
                            "is from another network", field=dim, location=loc,
                            expected="the network_structure.npz that this teacher simulated")
    bounds = {"trial": int(ds.sizes.get("trial", 0)), "step": n_steps, "neuron": structure.n,
              "channel": structure.n_inputs}
    for kind, names in EVENTS.items():
        cols = []
        for name in names:
            if name not in ds:
                raise DataError(f"variable {name!r} is missing", field=name, location=loc,
                                expected=f"the event variables {', '.join(names)}")
            v = np.asarray(ds[name].values)
            if v.ndim != 1 or v.dtype.kind not in "iu":
                raise DataError(f"{name} has dtype {v.dtype} and shape {v.shape}", field=name, location=loc,
                                expected="a 1-D integer event list")
            hi = bounds[name.rsplit("_", 1)[1]]
            if v.size and (v.min() < 0 or v.max() >= hi):
                raise DataError(f"{name} has values in [{v.min()}, {v.max()}] outside [0, {hi})", field=name,
                                location=loc, expected="event indices of this teacher's trials, steps and cells")
            cols.append(v)
        if len({c.size for c in cols}) != 1:
            raise DataError(f"{', '.join(names)} differ in length ({', '.join(str(c.size) for c in cols)})",
                            field=names[0], location=loc, expected="one entry per event in each")
        if np.any(np.diff(cols[1]) < 0):
            raise DataError(f"{names[1]} is not sorted", field=names[1], location=loc,
                            expected="events sorted by step (as `neurodsl teacher` writes them)")

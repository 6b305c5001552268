"""The ``rnn_export`` data contract (workflow 1: fit an E-I rate RNN to recorded trials).

File content (names as in the MATLAB export; shapes in python layout, see
:mod:`neurodsl.io.rnn_export_files` -- MATLAB itself shows them reversed):

=====================  ===================================  ==========================
variable               shape                                meaning
=====================  ===================================  ==========================
firing_rates           (trials, time, neurons)              sp/s (required)
neuron_type            (neurons,)                           1 = E, 2 = I (required)
bin_size_ms            scalar                               bin width in ms (required)
time_axis              (time,)                              bin centres, ms (optional)
input_<name>           (trials, time) or (trials, time, c)  task inputs; a 3-D one
                                                            becomes channels <name>_1..c
trial_<name>           (trials,)                            trial labels -> coord <name>
neuron_ids, others     (neurons,)                           -> coords on ``neuron``
n_trials, n_time_bins, n_neurons, strings                   checked / copied to attrs
=====================  ===================================  ==========================

:func:`load_rnn_export` returns an :class:`xarray.Dataset` with ``rate``
(trial, time, neuron; float32, sp/s), ``inputs`` (trial, time, input; float32),
``valid`` (trial, time; bool; only when ``mask != "none"``) and the coords
described there.

Mask policies (``mask=``: "none", "nan", "trial_duration") are documented in
:mod:`neurodsl.io.rnn_export_mask`; what a policy did is in ``attrs["notes"]``
(newline-separated) and doubts are also raised as :class:`RnnExportWarning`.
Values that make a fit meaningless (a time_axis that disagrees with bin_size_ms, values beyond
float32, absurd rates, nothing but zeros) are one-line errors: :mod:`neurodsl.io.rnn_export_checks`.
"""
from __future__ import annotations

import hashlib
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import xarray as xr

from neurodsl.errors import DataError, Location
from neurodsl.io.rnn_export_checks import check_time_axis, check_values
from neurodsl.io.rnn_export_files import read_raw, write_raw
from neurodsl.io.rnn_export_mask import MASKS, Report, apply_mask

__all__ = ["load_rnn_export", "write_rnn_export", "to_rnn_export_dict", "condition_labels",
           "stratified_split", "RnnExportWarning", "MASKS", "DEFAULT_KEYS", "INPUT_ORDER"]

DEFAULT_KEYS = ("location", "identity", "reward")
REQUIRED = ("firing_rates", "neuron_type", "bin_size_ms")
INPUT_ORDER = ("fixation_on", "target_loc", "go_signal", "reward_on", "eye_x", "eye_y",
               "is_face", "is_nonface", "is_bullseye", "high_salience", "low_salience")
_RESERVED = {"trial", "time", "neuron", "input", "ei", "rate", "inputs", "valid"}
_COUNTS = {"n_trials": 0, "n_time_bins": 1, "n_neurons": 2}
_OWN_ATTRS = {"bin_size_ms", "source", "source_sha256", "format", "notes", "mask"}


class RnnExportWarning(UserWarning):
    """The loader changed, masked or doubts part of the data (details in the message)."""


@dataclass(frozen=True)
class _Parsed:
    rates: np.ndarray            # (K, T, N) float64
    ei: np.ndarray               # (N,) "E"/"I"
    bin_ms: float
    time: np.ndarray             # (T,)
    input_names: tuple[str, ...]
    inputs: np.ndarray           # (K, T, C) float64
    labels: dict                 # coord name -> (K,) array
    neuron_coords: dict          # coord name -> (N,) array
    attrs: dict


def load_rnn_export(path: str | Path, *, rename: Mapping[str, str] | None = None,
                    inputs: Sequence[str] | None = None, mask: str = "none",
                    fields: Mapping[str, Mapping] | None = None, nwb: Mapping | None = None) -> xr.Dataset:
    """Load an rnn_export file (MAT v7.3/v5, npz or netCDF; detected from its header) or NWB.

    ``rename`` maps our variable names to the file's (``{"firing_rates": "rates"}``);
    ``inputs`` selects input channels by name (with or without ``input_``; a 3-D
    input such as ``target_loc`` selects all its channels) in the order given.
    ``fields`` builds variables from another MAT/npz layout (:mod:`neurodsl.io.mat_fields`);
    a ``.nwb`` file is read by :mod:`neurodsl.io.nwb` with the options ``nwb`` (``dt_ms`` required).
    """
    path = Path(path)
    loc = Location(file=str(path))
    if mask not in MASKS:
        raise DataError(f"unknown mask policy {mask!r}", field="mask", expected=" | ".join(MASKS), location=loc)
    if not path.is_file():
        raise DataError("file not found", field="path", expected="an rnn_export file (.mat, .npz, .nc)", location=loc)
    if nwb is not None or path.suffix.lower() == ".nwb":
        from neurodsl.io.nwb import read_nwb
        raw, fmt, file_notes = read_nwb(path, **(nwb or {}))
    else:
        raw, fmt, file_notes = read_raw(path)
    if fields:
        from neurodsl.io.mat_fields import read_fields
        raw = read_fields(path, fields, raw, fmt, file_notes)
    report = Report()
    for n in file_notes:
        report.note(n)
    for ours, theirs in (rename or {}).items():
        if theirs not in raw:
            raise DataError(f"rename maps {ours!r} to {theirs!r}, which is not in the file "
                            f"(has: {', '.join(sorted(raw))})",
                            field=theirs, expected="an existing variable name", location=loc)
        raw[ours] = raw.pop(theirs)
        report.note(f"variable {theirs!r} read as {ours!r}")
    p = _parse(raw, fmt, loc, report)
    rates, u, valid = apply_mask(mask, p.rates, p.inputs, p.input_names, p.labels, p.time, p.bin_ms, report, loc)
    check_values(rates, u, valid, loc, report.warn)
    names, u = _select_inputs(p.input_names, u, inputs, loc)
    ds = xr.Dataset(
        {"rate": (("trial", "time", "neuron"), rates.astype(np.float32), {"units": "sp/s"}),
         "inputs": (("trial", "time", "input"), u.astype(np.float32))},
        coords={"trial": np.arange(rates.shape[0]), "time": ("time", p.time, {"units": "ms"}),
                "input": list(names), **{k: ("trial", v) for k, v in p.labels.items()},
                **{k: ("neuron", v) for k, v in p.neuron_coords.items()}, "ei": ("neuron", p.ei)})
    if valid is not None:
        ds["valid"] = (("trial", "time"), valid)
    ds.attrs.update(p.attrs)
    ds.attrs.update(bin_size_ms=p.bin_ms, source=str(path.resolve()), source_sha256=_sha256(path),
                    format=fmt, mask=mask, notes="\n".join(report.notes))
    for msg in report.warns:
        warnings.warn(msg, RnnExportWarning, stacklevel=2)
    return ds


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _num(raw: dict, name: str, loc: Location) -> np.ndarray:
    v = raw[name]
    a = np.asarray(v)
    if isinstance(v, str) or a.dtype.kind not in "biuf":
        what = f"str {v[:40]!r}" if isinstance(v, str) else f"an array of dtype {a.dtype}"
        raise DataError(f"{name} is {what}", field=name,
                        expected="a numeric array", location=loc)
    return a.astype(np.float64)


def _vector(raw: dict, name: str, n: int, what: str, ref: tuple, loc: Location) -> np.ndarray:
    a = _num(raw, name, loc)
    if a.size != n or sum(d > 1 for d in a.shape) > 1:
        raise DataError(f"{name} has shape {a.shape} but firing_rates {ref} has {n} {what}",
                        field=name, expected=f"a vector of {n} values", location=loc)
    return a.ravel()


def _parse(raw: dict, fmt: str, loc: Location, report: Report) -> _Parsed:
    for name in REQUIRED:
        if name not in raw:
            hint = " (this looks like a saved xarray Dataset; open it with xarray)" if "rate" in raw else ""
            hint += "".join(f"; {n}" for n in report.notes if n.startswith("skipped"))
            raise DataError(f"missing variable {name!r}; file has: {', '.join(sorted(raw)) or 'nothing'}{hint}",
                            field=name, expected=f"variables {', '.join(REQUIRED)}", location=loc)
    fr = _num(raw, "firing_rates", loc)
    if fr.ndim == 2 and fmt.startswith("mat"):
        fr = fr[None]
        report.note("firing_rates is 2-D: read as one trial (MATLAB drops trailing singleton dimensions)")
    if fr.ndim != 3 or 0 in fr.shape:
        raise DataError(f"firing_rates has shape {fr.shape}", field="firing_rates",
                        expected="non-empty 3-D (trials, time, neurons) [MATLAB: neurons x time x trials]",
                        location=loc)
    K, T, N = fr.shape
    ref = fr.shape
    if np.isinf(fr).any() or (fr < 0).any():
        raise DataError(f"firing_rates has {int(np.isinf(fr).sum())} infinite and "
                        f"{int((fr < 0).sum())} negative values",
                        field="firing_rates", expected="finite rates >= 0 sp/s", location=loc)
    nt = _vector(raw, "neuron_type", N, "neurons", ref, loc)
    bad = ~np.isin(nt, (1, 2))
    if bad.any():
        raise DataError(f"neuron_type has values {sorted(set(nt[bad].tolist()))} at neurons (0-based) "
                        f"{np.flatnonzero(bad)[:10].tolist()}", field="neuron_type",
                        expected=f"1 (E) or 2 (I) for each of the {N} neurons", location=loc)
    b = _num(raw, "bin_size_ms", loc).ravel()
    if b.size != 1 or not np.isfinite(b[0]) or b[0] <= 0:
        raise DataError(f"bin_size_ms is {b.tolist()}", field="bin_size_ms",
                        expected="one positive number (ms)", location=loc)
    bin_ms = float(b[0])
    if "time_axis" in raw:
        time = _vector(raw, "time_axis", T, "time bins", ref, loc)
        check_time_axis(time, bin_ms, loc)
    else:
        time = (np.arange(T) + 0.5) * bin_ms
        report.note(f"no time_axis: time = bin centres 0.5..{T - 0.5} x {bin_ms:g} ms")
    for name, axis in _COUNTS.items():
        if name in raw and _num(raw, name, loc).ravel().tolist() != [ref[axis]]:
            raise DataError(f"{name} is {_num(raw, name, loc).ravel().tolist()} but firing_rates has shape {ref}",
                            field=name, expected=str(ref[axis]), location=loc)
    names, chans, labels, ncoords, attrs = [], [], {}, {}, {}
    order = {n: i for i, n in enumerate(INPUT_ORDER)}
    for var in sorted((v for v in raw if v.startswith("input_")), key=lambda v: (order.get(v[6:], 99), v)):
        a = _num(raw, var, loc)
        if K == 1 and fmt.startswith("mat") and a.ndim == 2 and a.shape[0] == T != 1:
            a = a[None]
        if a.ndim not in (2, 3) or a.shape[:2] != (K, T):
            flip = " (looks transposed: column-major order?)" if a.shape[::-1][:2] == (K, T) else ""
            raise DataError(f"{var} has shape {a.shape} but firing_rates {ref} implies "
                            f"(trials, time) = ({K}, {T}){flip}",
                            field=var, expected=f"({K}, {T}) or ({K}, {T}, channels)", location=loc)
        cols = [a] if a.ndim == 2 else [a[..., i] for i in range(a.shape[2])]
        names += [var[6:]] if a.ndim == 2 else [f"{var[6:]}_{i + 1}" for i in range(a.shape[2])]
        chans += cols
    report.note(f"read {fmt}: {K} trials x {T} bins of {bin_ms:g} ms x {N} neurons "
                 f"({int((nt == 1).sum())} E, {int((nt == 2).sum())} I), {len(names)} input channels, "
                 f"trial labels: {', '.join(v for v in raw if v.startswith('trial_')) or 'none'}")
    inputs = np.stack(chans, axis=-1) if chans else np.zeros((K, T, 0))
    if np.isinf(inputs).any():
        raise DataError(f"inputs have {int(np.isinf(inputs).sum())} infinite values", field="input_*",
                        expected="finite values", location=loc)
    if not chans:
        report.warn("no input_* variables: the model will have no task inputs")
    const = [n for n, c in zip(names, chans) if np.ptp(np.nan_to_num(c)) == 0]
    if const:
        report.note(f"input channels constant in all trials: {', '.join(const)}")
    for var in (v for v in raw if v.startswith("trial_")):
        key = var[6:] if var[6:] and var[6:] not in _RESERVED else var
        v = _vector(raw, var, K, "trials", ref, loc)
        labels[key] = v.astype(np.int64) if np.all(np.isfinite(v)) and np.all(v == np.round(v)) else v
    known = set(REQUIRED) | set(_COUNTS) | {"time_axis"}
    for var in sorted(v for v in raw if v not in known and not v.startswith(("input_", "trial_"))):
        v = raw[var]
        if isinstance(v, str) or np.size(v) == 1:
            attrs[var] = v if isinstance(v, str) else float(np.ravel(v)[0])
        elif np.size(v) == N and sum(d > 1 for d in np.shape(v)) == 1 and var not in _RESERVED:
            ncoords[var] = _vector(raw, var, N, "neurons", ref, loc)
        else:
            report.note(f"ignored variable {var!r} with shape {np.shape(v)}")
    ids = ncoords.pop("neuron_ids", None)
    if ids is not None and (np.any(ids != np.round(ids)) or len(np.unique(ids)) != N):
        report.note("neuron_ids are not unique integers: kept as coord 'neuron_ids', neuron = 0..N-1")
        ncoords["neuron_ids"], ids = ids, None
    ncoords = {"neuron": np.arange(N) if ids is None else ids.astype(np.int64), **ncoords}
    ei = np.where(nt == 1, "E", "I")
    return _Parsed(fr, ei, bin_ms, time, tuple(names), inputs, labels, ncoords, attrs)


def _select_inputs(names: tuple[str, ...], u: np.ndarray, wanted: Sequence[str] | None, loc: Location):
    if wanted is None:
        return names, u
    idx: list[int] = []
    for w in wanted:
        w = w[6:] if w.startswith("input_") else w
        hits = [i for i, n in enumerate(names) if n == w] or \
               [i for i, n in enumerate(names) if re.fullmatch(re.escape(w) + r"_\d+", n)]
        if not hits:
            raise DataError(f"input channel {w!r} not in file; available: {', '.join(names) or 'none'}",
                            field="inputs", expected="names of input_* variables (without prefix)", location=loc)
        idx += hits
    return tuple(names[i] for i in idx), u[..., idx]


def to_rnn_export_dict(ds: xr.Dataset) -> dict:
    """Turn a loaded Dataset back into rnn_export variables (python layout).

    Bins marked invalid in ``valid`` are written as NaN (``mask='nan'`` recovers them).
    """
    rate = ds["rate"].transpose("trial", "time", "neuron").values.astype(np.float64)
    if "valid" in ds:
        rate = np.where(ds["valid"].transpose("trial", "time").values[..., None], rate, np.nan)
    K, T, N = rate.shape
    out: dict = {"firing_rates": rate, "neuron_type": np.where(ds["ei"].values == "E", 1.0, 2.0),
                 "bin_size_ms": np.float64(ds.attrs["bin_size_ms"]),
                 "time_axis": ds["time"].values.astype(np.float64),
                 "neuron_ids": ds["neuron"].values.astype(np.float64),
                 "n_trials": np.float64(K), "n_time_bins": np.float64(T), "n_neurons": np.float64(N)}
    u = ds["inputs"].transpose("trial", "time", "input").values.astype(np.float64)
    names = [str(n) for n in ds["input"].values]
    groups: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        m = re.fullmatch(r"(.+)_(\d+)", n)
        groups.setdefault(m.group(1) if m else n, []).append(i)
    for base, idx in groups.items():
        if len(idx) > 1 and [names[i] for i in idx] == [f"{base}_{j + 1}" for j in range(len(idx))]:
            out[f"input_{base}"] = u[..., idx]
        else:
            out.update({f"input_{names[i]}": u[..., i] for i in idx})
    for name, c in ds.coords.items():
        if c.dims == ("trial",) and name != "trial":
            out[name if str(name).startswith("trial_") else f"trial_{name}"] = c.values.astype(np.float64)
        elif c.dims == ("neuron",) and name not in ("neuron", "ei"):
            out[str(name)] = c.values.astype(np.float64)
    for k, v in ds.attrs.items():
        if k not in _OWN_ATTRS and isinstance(v, (str, int, float, np.number)):
            out[k] = v if isinstance(v, str) else np.float64(v)
    return out


def write_rnn_export(path: str | Path, data, version: str = "7.3") -> Path:
    """Write ``data`` (a loaded Dataset or a dict in python layout) as rnn_export.

    The suffix picks npz (``.npz``) or netCDF (``.nc``); anything else is a MAT
    file of ``version`` "7.3" (HDF5, MATLAB-compatible) or "5".  Returns the path.
    """
    path = Path(path)
    arrays = to_rnn_export_dict(data) if isinstance(data, xr.Dataset) else dict(data)
    suffix = path.suffix.lower()
    fmt = ("npz" if suffix == ".npz" else "netcdf" if suffix in (".nc", ".nc4", ".cdf")
           else {"7.3": "mat-v7.3", "5": "mat-v5"}.get(str(version)))
    if fmt is None:
        raise DataError(f"unknown MAT version {version!r}", field="version", expected='"7.3" or "5"',
                        location=Location(file=str(path)))
    dims: dict[str, tuple[str, ...]] = {}
    fr = np.asarray(arrays.get("firing_rates", np.zeros((0, 0, 0))))
    if fr.ndim == 3:
        K, T, N = fr.shape
        for k, v in arrays.items():
            s = np.shape(v)
            dims[k] = (("trial", "time", "neuron") if k == "firing_rates"
                       else ("trial", "time", f"{k[6:]}_channel")[:len(s)] if k.startswith("input_")
                       else ("trial",) if k.startswith("trial_") and s == (K,)
                       else ("time",) if k == "time_axis" else ("neuron",) if s == (N,) else ())
    return write_raw(path, arrays, fmt, dims)


def condition_labels(ds: xr.Dataset, keys: Sequence[str] = DEFAULT_KEYS) -> tuple[np.ndarray, tuple[str, ...]]:
    """Condition id per trial (0..C-1, sorted by label values) and a name per id.

    ``keys`` are trial-label coords (``trial_`` prefix optional).  Combinations of
    the observed values that have no trials are reported with a warning.
    """
    loc = Location(file=str(ds.attrs.get("source", "<dataset>")))
    avail = [str(n) for n, c in ds.coords.items() if c.dims == ("trial",) and n != "trial"]
    if ds.sizes.get("trial", 0) == 0:
        raise DataError("dataset has no trials", field="trial", expected="at least one trial", location=loc)
    cols = []
    keys = [k[6:] if k.startswith("trial_") and k not in avail else k for k in keys]
    for k in keys:
        if k not in avail:
            raise DataError(f"no trial label {k!r}; available: {', '.join(avail) or 'none'}",
                            field=f"trial_{k}", expected="a trial_* variable in the file", location=loc)
        v = ds[k].values.astype(np.float64)
        if np.isnan(v).any():
            raise DataError(f"trial label {k!r} has {int(np.isnan(v).sum())} NaN values", field=f"trial_{k}",
                            expected="a label for every trial", location=loc)
        cols.append(v)
    combos, ids = np.unique(np.stack(cols, 1), axis=0, return_inverse=True)
    names = tuple("|".join(f"{k}={v:g}" for k, v in zip(keys, row)) for row in combos)
    n_cells = int(np.prod([len(np.unique(c)) for c in cols]))
    if n_cells > len(combos):
        warnings.warn(f"{n_cells - len(combos)} of {n_cells} combinations of {', '.join(keys)} have no trials",
                      RnnExportWarning, stacklevel=2)
    return ids.ravel().astype(np.int64), names


def stratified_split(ds: xr.Dataset, frac_val: float = 0.2, seed: int = 0,
                     keys: Sequence[str] = DEFAULT_KEYS) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic train/validation trial indices stratified by condition.

    Per condition of n trials, round(frac_val * n) go to validation, at least one
    when n >= 2 and frac_val > 0, and never all of them; single-trial conditions
    stay in training.  Same ``seed`` and data -> same split.
    """
    if not 0.0 <= frac_val < 1.0:
        raise DataError(f"frac_val is {frac_val}", field="frac_val", expected="0 <= frac_val < 1")
    ids, _ = condition_labels(ds, keys)
    rng = np.random.default_rng(seed)
    val: list[np.ndarray] = []
    for c in range(int(ids.max()) + 1):
        idx = rng.permutation(np.flatnonzero(ids == c))
        n = len(idx)
        k = int(np.floor(frac_val * n + 0.5))
        if frac_val > 0 and n >= 2:
            k = min(max(k, 1), n - 1)
        val.append(idx[:k] if n >= 2 else idx[:0])
    v = np.sort(np.concatenate(val)).astype(np.int64)
    return np.setdiff1d(np.arange(len(ids)), v).astype(np.int64), v

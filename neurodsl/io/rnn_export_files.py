"""Raw file access for the ``rnn_export`` format: MAT v7.3 (HDF5), MAT v5, npz, netCDF.

This module knows about *files*, not about what the variables mean; the
semantics and validation live in :mod:`neurodsl.io.rnn_export`.

Layout convention ("python layout")
-----------------------------------
MATLAB is column-major.  A MATLAB array of size ``neurons x time x trials``
is seen by h5py (v7.3) with its axes reversed, ``(trials, time, neurons)``,
while ``scipy.io.loadmat`` (v5) returns the MATLAB order.  Every reader here
returns arrays in *python layout* = MATLAB axes reversed, i.e. exactly what
h5py shows; v5 arrays are therefore transposed (``a.T``) after loading.
npz and netCDF files store python layout directly.  The writers are the exact
inverse, so MATLAB users see ``firing_rates`` as ``neurons x time x trials``
in all formats written by neurodsl and in the real exports.

Strings (MATLAB ``char``) come back as Python ``str``; cells, structs, sparse
and complex arrays are skipped with a note.
"""
from __future__ import annotations

import datetime as _dt
import sys
import zipfile
from pathlib import Path
from typing import Mapping

import h5py
import numpy as np
import scipy.io
import scipy.sparse
import xarray as xr

from neurodsl.errors import DataError, Location

FORMATS = ("mat-v7.3", "mat-v5", "npz", "netcdf")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_SKIP_H5 = ("#refs#", "#subsystem#")
_MATLAB_CLASS = {
    np.dtype(np.float64): "double", np.dtype(np.float32): "single",
    np.dtype(np.int8): "int8", np.dtype(np.int16): "int16",
    np.dtype(np.int32): "int32", np.dtype(np.int64): "int64",
    np.dtype(np.uint8): "uint8", np.dtype(np.uint16): "uint16",
    np.dtype(np.uint32): "uint32", np.dtype(np.uint64): "uint64",
}

Raw = dict[str, "np.ndarray | str"]


def detect_format(path: str | Path) -> str:
    """Return one of :data:`FORMATS` from the file's first bytes (not its suffix)."""
    path = Path(path)
    loc = Location(file=str(path))
    try:
        with open(path, "rb") as fh:
            head = fh.read(128)
    except OSError as exc:
        raise DataError(f"cannot read file: {exc.strerror or exc}", field="path",
                        expected="a readable rnn_export file", location=loc) from None
    if head.startswith(b"MATLAB"):
        version = head[124:126]
        if head[126:128] == b"MI":  # big-endian writer: version bytes swapped
            version = version[::-1]
        if version == b"\x00\x02":
            return "mat-v7.3"
        if version == b"\x00\x01":
            return "mat-v5"
        raise DataError(f"MAT-file header with unknown version bytes {version!r}",
                        field="header", expected="MAT v5 or v7.3", location=loc)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "npz"
    if head.startswith(b"CDF\x01") or head.startswith(b"CDF\x02") or head.startswith(_HDF5_MAGIC):
        return "netcdf"
    raise DataError("unrecognised file header", field="header",
                    expected="MAT v5/v7.3 (text header 'MATLAB ...'), npz (zip) or netCDF",
                    location=loc)


def read_raw(path: str | Path) -> tuple[Raw, str, list[str]]:
    """Read all top-level variables: ``(arrays in python layout, format, notes)``."""
    path = Path(path)
    fmt = detect_format(path)
    notes: list[str] = []
    reader = {"mat-v7.3": _read_h5, "mat-v5": _read_v5, "npz": _read_npz, "netcdf": _read_nc}[fmt]
    try:
        raw = reader(path, notes)
    except DataError:
        raise
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot read {fmt} file: {exc}", field="path",
                        expected=f"a valid {fmt} file", location=Location(file=str(path))) from None
    return raw, fmt, notes


def _read_h5(path: Path, notes: list[str]) -> Raw:
    out: Raw = {}
    with h5py.File(path, "r") as f:
        for name in f:
            if name in _SKIP_H5:
                continue
            obj = f[name]
            if not isinstance(obj, h5py.Dataset):
                notes.append(f"skipped variable {name!r} (MATLAB struct/object)")
                continue
            cls = obj.attrs.get("MATLAB_class", b"")
            cls = cls.decode() if isinstance(cls, bytes) else str(cls)
            if obj.attrs.get("MATLAB_empty", 0):
                out[name] = "" if cls == "char" else np.zeros(0)
            elif cls == "char":
                out[name] = "".join(map(chr, np.asarray(obj[()]).ravel(order="F")))
            elif cls == "cell" or obj.dtype.kind in "OV" or obj.dtype.names:
                notes.append(f"skipped variable {name!r} (MATLAB {cls or obj.dtype}, not a numeric array)")
            elif cls == "logical":
                out[name] = np.asarray(obj[()]).astype(bool)
            else:
                out[name] = np.asarray(obj[()])
    return out


def _read_v5(path: Path, notes: list[str]) -> Raw:
    mat = scipy.io.loadmat(path, squeeze_me=False, chars_as_strings=True, mat_dtype=False)
    out: Raw = {}
    for name, val in mat.items():
        if name.startswith("__"):
            continue
        if scipy.sparse.issparse(val):
            notes.append(f"skipped variable {name!r} (sparse matrix)")
        elif val.dtype.kind == "U":
            out[name] = "".join(val.ravel().tolist())
        elif val.dtype.kind in "OV" or np.iscomplexobj(val):
            notes.append(f"skipped variable {name!r} (cell/struct/complex, not a real array)")
        else:
            out[name] = np.asarray(val).T
    return out


def _read_npz(path: Path, notes: list[str]) -> Raw:
    out: Raw = {}
    with np.load(path, allow_pickle=False) as z:
        for name in z.files:
            val = z[name]
            if isinstance(val, np.ndarray):
                out[name] = _maybe_str(val)
            else:  # a zip member that is not a .npy array
                notes.append(f"skipped zip member {name!r} (not a .npy array)")
    return out


def _read_nc(path: Path, notes: list[str]) -> Raw:
    out: Raw = {}
    with xr.open_dataset(path, decode_times=False, mask_and_scale=False) as ds:
        for name, var in {**ds.data_vars, **ds.coords}.items():
            if name in ds.dims and name not in ds.data_vars:
                continue
            out[str(name)] = _maybe_str(np.asarray(var.values))
    return out


def _maybe_str(a: np.ndarray) -> "np.ndarray | str":
    if a.dtype.kind in "US" or (a.dtype.kind == "O" and a.size == 1 and isinstance(a.flat[0], str)):
        return "".join(str(x) for x in a.ravel().tolist())
    return a


# --------------------------------------------------------------------------- writing

def write_raw(path: str | Path, arrays: Mapping[str, "np.ndarray | str"], fmt: str,
              dims: Mapping[str, tuple[str, ...]] | None = None) -> Path:
    """Write python-layout ``arrays`` in ``fmt``; ``dims`` names netCDF dimensions."""
    path = Path(path)
    for name in arrays:
        if not (name[:1].isalpha() and name.replace("_", "a").isalnum() and len(name) <= 63):
            raise DataError(f"variable name {name!r} is not a valid MATLAB name", field=name,
                            expected="letter followed by letters/digits/_ (<= 63 chars)",
                            location=Location(file=str(path)))
    if fmt == "mat-v7.3":
        _write_h5(path, arrays)
    elif fmt == "mat-v5":
        scipy.io.savemat(path, {k: (v if isinstance(v, str) else np.asarray(v).T)
                                for k, v in arrays.items()},
                         format="5", do_compression=True, oned_as="column")
    elif fmt == "npz":
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        np.savez_compressed(path, **{k: np.asarray(v) for k, v in arrays.items()})
    elif fmt == "netcdf":
        _write_nc(path, arrays, dims or {})
    else:
        raise DataError(f"unknown format {fmt!r}", field="format", expected=" | ".join(FORMATS))
    return path


def _write_h5(path: Path, arrays: Mapping[str, "np.ndarray | str"]) -> None:
    with h5py.File(path, "w", userblock_size=512, libver="earliest") as f:
        for name, val in arrays.items():
            if isinstance(val, str):
                codes = np.frombuffer(val.encode("utf-16-le"), dtype="<u2")
                ds = f.create_dataset(name, data=codes.reshape(-1, 1) if codes.size else np.array([1, 0], np.uint64))
                ds.attrs["MATLAB_class"] = np.bytes_(b"char")
                if codes.size:
                    ds.attrs["MATLAB_int_decode"] = np.int32(2)
                else:
                    ds.attrs["MATLAB_empty"] = np.uint8(1)
                continue
            a = np.asarray(val)
            if a.ndim < 2:  # MATLAB has no 1-D arrays: scalars 1x1, vectors n x 1
                a = a.reshape(1, -1) if a.size else a.reshape(0, 0)
            cls = "logical" if a.dtype == bool else _MATLAB_CLASS.get(a.dtype)
            if cls is None:
                a, cls = a.astype(np.float64), "double"
            if a.dtype == bool:
                a = a.astype(np.uint8)
            if a.size == 0:
                ds = f.create_dataset(name, data=np.array(a.shape[::-1], dtype=np.uint64))
                ds.attrs["MATLAB_empty"] = np.uint8(1)
            elif a.size >= 64:
                ds = f.create_dataset(name, data=a, compression="gzip", compression_opts=4)
            else:
                ds = f.create_dataset(name, data=a)
            ds.attrs["MATLAB_class"] = np.bytes_(cls.encode())
            if cls == "logical":
                ds.attrs["MATLAB_int_decode"] = np.int32(1)
    stamp = _dt.datetime.now().strftime("%a %b %d %H:%M:%S %Y")
    text = (f"MATLAB 7.3 MAT-file, Platform: {sys.platform}, Created on: {stamp} "
            "HDF5 schema 1.00 .").ljust(116)[:116].encode("ascii")
    with open(path, "r+b") as fh:  # the 128-byte MAT header lives in the userblock
        fh.write(text + b"\x00" * 8 + b"\x00\x02" + b"IM")


def _write_nc(path: Path, arrays: Mapping[str, "np.ndarray | str"],
              dims: Mapping[str, tuple[str, ...]]) -> None:
    data_vars = {}
    for name, val in arrays.items():
        a = np.asarray(val)
        if isinstance(val, str):
            data_vars[name] = ((), np.array(val, dtype=object))
            continue
        d = tuple(dims.get(name, ())) or tuple(f"{name}_dim{i}" for i in range(a.ndim))
        if a.dtype == bool:
            a = a.astype(np.uint8)
        data_vars[name] = (d, a)
    xr.Dataset(data_vars).to_netcdf(path, format="NETCDF4")

"""Atomic file writes that respect the umask and clean up after killed writers.

Every file neurodsl writes "atomically" goes to a temporary file in the target's
folder and is renamed over the target (``os.replace``).  The temporary file is
named ``.NAME.@HOST.PID.XXXXXXXX.tmp`` so that a later writer can tell whose it
was: the first atomic write into a folder in a process (:func:`temp_file`)
removes the temporaries of dead processes on this host (a SIGKILL'ed run leaves
them behind), and any temporary older than :data:`STALE_AFTER_S` seconds
(other hosts, older versions' ``.NAME.XXXXXXXX.tmp``).  :func:`finish` gives
the file the mode an ordinary ``open()`` would (``0o666 & ~umask``; ``mkstemp``
alone makes it 0600, unreadable for colleagues on shared storage) before the
rename.
"""
from __future__ import annotations

import os
import re
import socket
import tempfile
import time
from pathlib import Path

STALE_AFTER_S = 3600.0
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:32]
_OURS = re.compile(r"^\..+\.@(?P<host>[A-Za-z0-9-]*)\.(?P<pid>\d+)\.[A-Za-z0-9_]{8}\.tmp$")
_LEGACY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")
_swept: set[str] = set()


def current_umask() -> int:
    """The process umask, read without changing it where /proc allows (thread-safe)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def file_mode() -> int:
    return 0o666 & ~current_umask()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(folder: str | Path) -> list[Path]:
    """Remove temporaries left by dead writers in ``folder``; return what was removed."""
    folder = Path(folder)
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for e in entries:
        if not e.name.endswith(".tmp") or not e.is_file(follow_symlinks=False):
            continue
        m = _OURS.match(e.name)
        try:
            old = now - e.stat(follow_symlinks=False).st_mtime > STALE_AFTER_S
        except OSError:
            continue
        dead = m is not None and m["host"] == _HOST and not _alive(int(m["pid"]))
        if dead or (old and (m is not None or _LEGACY.match(e.name))):
            try:
                os.unlink(e.path)
                removed.append(Path(e.path))
            except OSError:
                pass
    return removed


def temp_file(path: str | Path) -> tuple[int, str]:
    """``(fd, name)`` of a new temporary file beside ``path`` (its folder is created and swept)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = os.path.abspath(path.parent)
    if key not in _swept:
        sweep_stale(path.parent)
        _swept.add(key)
    return tempfile.mkstemp(prefix=f".{path.name}.@{_HOST}.{os.getpid()}.", suffix=".tmp", dir=path.parent)


def finish(tmp: str, path: str | Path) -> Path:
    """Give ``tmp`` the umask's mode and rename it over ``path``."""
    os.chmod(tmp, file_mode())
    os.replace(tmp, path)
    return Path(path)


def discard(tmp: str) -> None:
    if os.path.exists(tmp):
        os.unlink(tmp)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a fsync'ed temporary file and ``os.replace``."""
    fd, tmp = temp_file(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        return finish(tmp, path)
    finally:
        discard(tmp)

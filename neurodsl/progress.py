"""Progress bars that stay readable in log files.

``progress_bar(**kw)`` is ``tqdm(**kw)`` on a terminal.  When its stream (``file``,
default ``sys.stderr``) is not a terminal -- a cluster job's log, ``cmd 2> log`` --
the bar is printed as plain lines instead: one line per ``interval`` seconds
(default 30, or ``$NEURODSL_PROGRESS_INTERVAL``), ASCII only, no carriage returns or
cursor movement, and its final state is kept::

    fit final_rnn:  40%|####      | 240/600 [02:00<03:00,  2.00epoch/s, loss=0.41]
"""
from __future__ import annotations

import os
import re
import sys

from tqdm import tqdm

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class LineWriter:
    """A stream for tqdm that turns its ``\\r``-redrawn status into one line per distinct status."""

    def __init__(self, stream):
        self.stream = stream
        self.last = ""

    def write(self, s: str) -> int:
        for piece in re.split(r"[\r\n]", _ANSI.sub("", s)):
            piece = piece.rstrip()
            if piece and piece != self.last:
                self.stream.write(piece + "\n")
                self.last = piece
        return len(s)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return False


class LogBar(tqdm):
    """tqdm whose redraws (``update``, but also ``set_postfix``/``set_description``, which
    refresh at once) print at most one line per ``mininterval`` seconds; ``close`` prints the last."""

    def refresh(self, nolock=False, lock_args=None):
        now = self._time()
        if now - getattr(self, "_line_t", -float("inf")) < self.mininterval:
            return False
        self._line_t = now
        return super().refresh(nolock=nolock, lock_args=lock_args)


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress_bar(*args, interval: float | None = None, **kw) -> tqdm:
    """``tqdm(*args, **kw)``; plain lines every ``interval`` s when the stream is not a terminal."""
    stream = kw.get("file") or sys.stderr
    if kw.get("disable") or _is_terminal(stream):  # a disabled bar is tqdm's no-op
        return tqdm(*args, **kw)
    if interval is None:
        interval = float(os.environ.get("NEURODSL_PROGRESS_INTERVAL", 30))
    kw.update(file=LineWriter(stream), ascii=True, mininterval=interval,
              maxinterval=max(interval, kw.get("maxinterval", 10.0)), leave=True,
              dynamic_ncols=False, ncols=kw.get("ncols") or 100)
    return LogBar(*args, **kw)

"""Errors that point at the user's source.

Every error neurodsl raises for bad *user input* (a spec, a data file, a
command-line override) is a :class:`NeurodslError`.  Its one-line form is::

    FILE:LINE:COL: field.path: what is wrong (expected ...)

which editors and terminals turn into a clickable location.  The CLI prints
exactly that line and exits with status 2; ``--debug`` shows the traceback.
Internal bugs are ordinary exceptions and are never dressed up as user errors.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Location:
    """A place in a user's file; line and column are 1-based (0 = unknown)."""

    file: str = "<input>"
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.col or 1}"
        return self.file


class NeurodslError(Exception):
    """A problem with user input, formatted as ``FILE:LINE:COL: field: message (expected ...)``."""

    def __init__(self, message: str, *, field: str = "", expected: str = "",
                 location: Location | None = None):
        self.message = message
        self.field = field
        self.expected = expected
        self.location = location or Location()
        super().__init__(self.one_line())

    def one_line(self) -> str:
        parts = [str(self.location)]
        if self.field:
            parts.append(self.field)
        msg = self.message
        if self.expected:
            msg = f"{msg} (expected {self.expected})"
        parts.append(msg)
        return ": ".join(parts).replace("\n", " ")


class SpecError(NeurodslError):
    """The spec (YAML/TOML or a ``--set`` override) is invalid."""


class DataError(NeurodslError):
    """A data file (recordings, connectome, initial state) is missing or malformed."""


class OutputExistsError(NeurodslError):
    """The output directory exists and is not empty (use --force)."""

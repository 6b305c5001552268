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
                 location: Location | None = None, others: tuple["NeurodslError", ...] = ()):
        self.message = message
        self.field = field
        self.expected = expected
        self.location = location or Location()
        self.others = tuple(others)  # further problems found in the same pass, each with its location
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        """This error's line, then one line per further error (what the CLI prints)."""
        return [self.one_line()] + [o.one_line() for o in self.others]

    def one_line(self) -> str:
        parts = [str(self.location)]
        msg = self.message
        if self.field:
            parts.append(self.field)
            if msg.startswith(f"{self.field}: "):  # "--resume: --resume: ..." -> "--resume: ..."
                msg = msg[len(self.field) + 2:]
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

"""The errors mlpsearch reports, and the exit code of each (the command line's one table).

Each is shown as one line with no traceback: bad input exits 2 with nothing written, a run that
cannot go on exits 1 with every finished trial kept, an interruption exits 130. The engine's
two errors map here too: ``DataError`` (bad data) is bad input, and ``LockTimeout`` (a lock,
e.g. the journal's, held too long by a stopped or hung process) stops the run like a RunError.
"""

from __future__ import annotations

from mlpsearch.engine.data import DataError
from mlpsearch.engine.files import LockTimeout


class BadInput(ValueError):
    """Bad input (a flag, an experiment file, a storage, a trial id): exit 2, nothing written."""


class ConfigError(BadInput):
    """An experiment file or setting is wrong; the message names the key path."""


class UsageError(BadInput):
    """A command-line flag or argument is wrong."""


class RunError(Exception):
    """The run cannot go on (disk full, database gone); finished trials are kept: exit 1."""


class Interrupted(Exception):
    """Ctrl-C or a termination signal: finished trials are kept; the message says how to resume."""


def exit_code(err: BaseException) -> int | None:
    """The exit code for ``err``, or None for an error that is a bug (shown with its traceback)."""
    if isinstance(err, Interrupted | KeyboardInterrupt):
        return 130
    if isinstance(err, BadInput | DataError):
        return 2
    if isinstance(err, RunError | LockTimeout):
        return 1
    return None

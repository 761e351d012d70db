"""What the commands print, and how: a closed pipe ends the output, never the work.

``mlpsearch report ... | head -1`` closes our stdout after one line; ``mlpsearch run ... |
head -2`` closes it while trials are running. Writing to it then raises BrokenPipeError
wherever a ``print`` happens to be, which would end a report with a traceback and stop a run
(failing its running trials). While a command runs, :func:`pipe_safe_stdout` puts a guard in
front of ``sys.stdout``: the first write into a closed pipe points stdout at ``/dev/null`` and
everything after it is dropped quietly, so the work goes on and the exit code is the work's.

Each line is flushed as it is written, so a pipe sees lines as they come (and a closed pipe is
found at once, not at exit).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class PipeSafe:
    """A text stream that drops everything once its pipe is closed, instead of raising."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.broken = False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                self._stream.write(text)
                if "\n" in text:
                    self._stream.flush()
            except BrokenPipeError:
                self._drop()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._drop()

    def _drop(self) -> None:
        """From now on, drop output; point the descriptor at /dev/null so that the
        interpreter's last flush at exit does not complain either."""
        self.broken = True
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self._stream.fileno())
            os.close(null)
        except (OSError, ValueError, AttributeError):  # not a real file (a test's capture)
            pass

    def isatty(self) -> bool:
        return not self.broken and self._stream.isatty()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextmanager
def pipe_safe_stdout() -> Iterator[PipeSafe]:
    """``sys.stdout`` guarded by :class:`PipeSafe` for the duration of the block."""
    original = sys.stdout
    guard = PipeSafe(original)
    sys.stdout = guard
    try:
        yield guard
    finally:
        if sys.stdout is guard:
            sys.stdout = original


def printer(quiet: bool = False) -> Callable[[str], None]:
    """The ``echo`` of a command: ``print``, or nothing with ``--quiet`` or ``--json``."""
    return (lambda line: None) if quiet else print


def print_json(doc: Any) -> None:
    """One JSON object on one line (``--json``); numpy scalars and paths become plain values."""
    print(json.dumps(doc, default=_plain))


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalar
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)

"""Progress of a study as the parent sees it in the storage: one line per finished trial,
and on a terminal a bar with the best validation error so far and an ETA."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from optuna.trial import FrozenTrial, TrialState

from mlpsearch.trials import FINISHED, TrialRecord, best


class Progress:
    def __init__(self, total: int, echo: Callable[[str], None] = print) -> None:
        self.total, self.echo = total, echo
        self.seen: set[int] = set()
        self.started = time.monotonic()
        self.done_at_start: int | None = None
        self.best: float | None = None
        self.bar = sys.stdout.isatty()
        self._bar_shown = False

    def update(self, trials: list[FrozenTrial]) -> None:
        """Take the study's trials as the storage holds them now; print the newly finished."""
        new = [t for t in trials if t.state in FINISHED and t.number not in self.seen]
        finished = [TrialRecord.from_frozen(t) for t in sorted(new, key=lambda t: t.number)]
        if self.done_at_start is None:  # trials of an earlier run: counted, not printed
            self.seen.update(r.number for r in finished)
            self.done_at_start = len(finished)
            self._best_of(finished)
            return
        for r in finished:
            self.seen.add(r.number)
            self._best_of([r])
            self._clear()
            self.echo(trial_line(r))
        self._draw()

    def _best_of(self, trials: list[TrialRecord]) -> None:
        top = best(trials)
        if top is not None and (self.best is None or top.value < self.best):
            self.best = top.value

    def _counted(self) -> int:
        return len(self.seen)

    def _draw(self) -> None:
        if not self.bar:
            return
        done = min(self._counted(), self.total)
        width = 30
        filled = int(width * done / max(self.total, 1))
        new = done - (self.done_at_start or 0)
        elapsed = time.monotonic() - self.started
        if new > 0 and done < self.total:
            eta = _clock(elapsed / new * (self.total - done))
        else:
            eta = "--:--"
        best = f"{self.best:.2%}" if self.best is not None else "-"
        line = f"[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} trials"
        sys.stdout.write(f"\r{line}  best val {best}  elapsed {_clock(elapsed)}  ETA {eta} ")
        sys.stdout.flush()
        self._bar_shown = True

    def _clear(self) -> None:
        if self._bar_shown:
            sys.stdout.write("\r\033[K")
            self._bar_shown = False

    def close(self) -> None:
        self._clear()


def trial_line(r: TrialRecord) -> str:
    """One concise line about a finished trial."""
    shape = f"{r.activation} {list(r.units)}" if r.config else ""
    lr = f"lr {r.setting('learning_rate'):.3g}" if r.config else ""
    head = f"trial {r.number:>4} {r.state.name.lower():<8}"
    if r.state == TrialState.COMPLETE:
        body = (
            f"val {r.best_val_error:.2%}  train {r.best_train_error:.2%}"
            f"  {r.epochs:>3} ep  {r.seconds or 0:6.1f}s"
        )
    else:
        body = r.reason or ("pruned" if r.state == TrialState.PRUNED else "failed")
    return "  ".join(p for p in (head, body, shape, lr) if p)


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"

"""Progress of a study as the parent sees it in the storage: one line per finished trial,
and on a terminal a bar with the best validation error so far and an ETA."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from optuna.trial import FrozenTrial, TrialState

from mlpsearch import outcomes
from mlpsearch.confirm import CONFIRM_OF, CONFIRM_SEED, is_confirmation

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


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
        finished = [t for t in trials if t.state in FINISHED and t.number not in self.seen]
        if self.done_at_start is None:  # trials of an earlier run: counted, not printed
            self.seen.update(t.number for t in finished)
            self.done_at_start = len(finished)
            self._best_of(finished)
            return
        retries = outcomes.retried_as(trials) if finished else {}
        for t in sorted(finished, key=lambda t: t.number):
            self.seen.add(t.number)
            self._best_of([t])
            self._clear()
            self.echo(trial_line(t, retries))
        self._draw()

    def _best_of(self, trials: list[FrozenTrial]) -> None:
        for t in trials:
            if t.state != TrialState.COMPLETE or is_confirmation(t):
                continue
            if self.best is None or t.value < self.best:
                self.best = t.value

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


def trial_line(t: FrozenTrial, retries: dict[int, int] | None = None) -> str:
    """One concise line about a finished trial (``retries``: :func:`outcomes.retried_as`)."""
    a = t.user_attrs
    config = a.get("config", {})
    model, train = config.get("model", {}), config.get("train", {})
    layers = model.get("layer_sizes", [])[1:-1]
    shape = f"{model.get('activation', '?')} {layers}" if model else ""
    lr = f"lr {train['learning_rate']:.3g}" if "learning_rate" in train else ""
    state = outcomes.outcome(t)
    head = f"trial {t.number:>4} {state:<8}"
    if is_confirmation(t):
        of, k = t.user_attrs[CONFIRM_OF], t.user_attrs[CONFIRM_SEED]
        head += f"  confirms trial {of} (fresh seed {k})"
    if t.state == TrialState.COMPLETE:
        body = (
            f"val {a.get('best_val_error', t.value):.2%}  train {a.get('best_train_error', 0):.2%}"
            f"  {a.get('epochs', 0):>3} ep  {a.get('seconds', 0):6.1f}s"
        )
    elif t.state == TrialState.PRUNED:
        body = a.get("prune_reason", "pruned")
    elif state == "interrupted":
        body = outcomes.label(t, retries or {}) + f": {a.get(outcomes.INTERRUPTED, '')}"
    else:
        body = a.get("fail_reason", "failed")
    return "  ".join(p for p in (head, body, shape, lr) if p)


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"

"""Progress of a study as the parent sees it in the storage: one line per finished trial, and a
tqdm bar with the best validation error so far and an ETA.

The bar is ``tqdm.auto``'s: on a terminal a bar on stderr (none when stderr is not a terminal,
so logs and pipes get the lines only), in a notebook a widget. The trial lines go through
``echo`` (stdout); the bar steps aside while one is written.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

from optuna.trial import FrozenTrial, TrialState

from mlpsearch import outcomes
from mlpsearch.trials import FINISHED, RETRY_OF, TrialRecord, best


class Progress:
    """Counts finished trials (those of earlier runs too), prints the new ones, moves the bar.

    ``bar``: None shows it where it can be seen (a terminal's stderr, a notebook), True always
    (on stderr), False never.
    """

    def __init__(
        self, total: int, echo: Callable[[str], None] = print, bar: bool | None = None
    ) -> None:
        self.total, self.echo = total, echo
        self.seen: set[int] = set()
        self.done_at_start: int | None = None
        self.best: float | None = None
        self._show_bar = bar
        self.bar = None  # the tqdm bar, made at the first update (it knows the count then)

    def update(self, trials: list[FrozenTrial]) -> None:
        """Take the study's trials as the storage holds them now; print the newly finished."""
        new = [t for t in trials if t.state in FINISHED and t.number not in self.seen]
        finished = [TrialRecord.from_frozen(t) for t in sorted(new, key=lambda t: t.number)]
        if self.done_at_start is None:  # trials of an earlier run: counted, not printed
            self.seen.update(r.number for r in finished)
            self.done_at_start = len(finished)
            self._best_of(finished)
            self._open()
            return
        retries = {  # interrupted trial -> its re-run, for the lines of interrupted trials
            t.system_attrs[RETRY_OF]: t.number for t in trials if RETRY_OF in t.system_attrs
        }
        for r in finished:
            self.seen.add(r.number)
            self._best_of([r])
            with self.bar.external_write_mode() if self.bar is not None else nullcontext():
                self.echo(trial_line(r, retries))
        self._draw()

    def _open(self) -> None:
        if self._show_bar is False:
            return
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=self.total,
            initial=min(len(self.seen), self.total),
            unit="trial",
            dynamic_ncols=True,
            # None: off when stderr is not a terminal (a notebook's widget still shows)
            disable=None if self._show_bar is None else False,
            leave=False,
        )
        self._draw()

    def _best_of(self, trials: list[TrialRecord]) -> None:
        top = best(trials)
        if top is not None and (self.best is None or top.value < self.best):
            self.best = top.value

    def _draw(self) -> None:
        if self.bar is None:
            return
        done = min(len(self.seen), self.total)
        if done > self.bar.n:
            self.bar.update(done - self.bar.n)
        best = f"{self.best:.2%}" if self.best is not None else "-"
        self.bar.set_postfix_str(f"best val {best}", refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def trial_line(r: TrialRecord, retries: dict[int, int] | None = None) -> str:
    """One concise line about a finished trial (``retries``: :func:`outcomes.retried_as`)."""
    shape = f"{r.activation} {list(r.units)}" if r.config else ""
    lr = f"lr {r.setting('learning_rate'):.3g}" if r.config else ""
    state = outcomes.outcome(r)
    head = f"trial {r.number:>4} {state:<8}"
    if r.is_confirmation:
        head += f"  confirms trial {r.confirms} (fresh seed {r.confirm_seed})"
    if r.state == TrialState.COMPLETE:
        body = (
            f"val {r.best_val_error:.2%}  train {r.best_train_error:.2%}"
            f"  {r.epochs:>3} ep  {r.seconds or 0:6.1f}s"
        )
    elif state == "interrupted":
        body = f"{outcomes.label(r, retries or {})}: {r.interrupted or r.reason}"
    else:
        body = r.reason or ("pruned" if r.state == TrialState.PRUNED else "failed")
    return "  ".join(p for p in (head, body, shape, lr) if p)

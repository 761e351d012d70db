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

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


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
        finished = [t for t in trials if t.state in FINISHED and t.number not in self.seen]
        if self.done_at_start is None:  # trials of an earlier run: counted, not printed
            self.seen.update(t.number for t in finished)
            self.done_at_start = len(finished)
            self._best_of(finished)
            self._open()
            return
        for t in sorted(finished, key=lambda t: t.number):
            self.seen.add(t.number)
            self._best_of([t])
            with self.bar.external_write_mode() if self.bar is not None else nullcontext():
                self.echo(trial_line(t))
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

    def _best_of(self, trials: list[FrozenTrial]) -> None:
        for t in trials:
            if t.state == TrialState.COMPLETE and (self.best is None or t.value < self.best):
                self.best = t.value

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


def trial_line(t: FrozenTrial) -> str:
    """One concise line about a finished trial."""
    a = t.user_attrs
    config = a.get("config", {})
    model, train = config.get("model", {}), config.get("train", {})
    layers = model.get("layer_sizes", [])[1:-1]
    shape = f"{model.get('activation', '?')} {layers}" if model else ""
    lr = f"lr {train['learning_rate']:.3g}" if "learning_rate" in train else ""
    head = f"trial {t.number:>4} {t.state.name.lower():<8}"
    if t.state == TrialState.COMPLETE:
        body = (
            f"val {a.get('best_val_error', t.value):.2%}  train {a.get('best_train_error', 0):.2%}"
            f"  {a.get('epochs', 0):>3} ep  {a.get('seconds', 0):6.1f}s"
        )
    elif t.state == TrialState.PRUNED:
        body = a.get("prune_reason", "pruned")
    else:
        body = a.get("fail_reason", "failed")
    return "  ".join(p for p in (head, body, shape, lr) if p)

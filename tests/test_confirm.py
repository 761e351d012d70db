"""Results you can trust: confirmation on fresh seeds, summary.json, interrupted trials, and
the noise shown beside every validation error."""

from __future__ import annotations

import json
import os
import re
import socket
import statistics
import tomllib

import optuna
import pytest
from optuna.trial import TrialState

from mlpsearch import confirm, outcomes
from mlpsearch import trials as stored
from mlpsearch.config import ConfigError, parse_experiment
from mlpsearch.journal import open_journal
from mlpsearch.liveness import WORKER_KEY, fail_stale
from mlpsearch.progress import trial_line
from mlpsearch.report import summary as report_summary
from mlpsearch.report import top_trials, write_report
from mlpsearch.rerun import fresh_seeds
from mlpsearch.runner import run_study
from mlpsearch.summary import binomial_se, study_summary
from mlpsearch.tables import trials_frame
from mlpsearch.workers import claim_waiting


@pytest.fixture(scope="module")
def experiment(make_experiment):
    """``experiment(name="conf", n_trials=6, top=2, seeds=2, pruner="none")``: 6-epoch trials
    on digits, study seed 5, the best ``top`` configurations confirmed on ``seeds`` seeds."""

    def make(name="conf", n_trials=6, top=2, seeds=2, pruner="none"):
        return make_experiment(
            name, n_trials=n_trials, n_jobs=2, epochs=6, seed=5, pruner=pruner,
            confirm={"top": top, "seeds": seeds},
        )  # fmt: skip

    return make


@pytest.fixture(scope="module")
def confirmed(tmp_path_factory, experiment):
    """A 6-trial digits study whose best 2 configurations were confirmed on 2 fresh seeds."""
    results = tmp_path_factory.mktemp("confirmed")
    lines: list[str] = []
    result = run_study(experiment(), results, echo=lines.append)
    return result, results / "conf", lines


def test_confirmation_trials_retrain_the_top_configurations_on_fresh_seeds(confirmed):
    result, _, _ = confirmed
    trials = result.study.get_trials()
    search = [t for t in trials if confirm.CONFIRM_OF not in t.user_attrs]
    extra = [t for t in trials if confirm.CONFIRM_OF in t.user_attrs]
    assert len(search) == 6 and len(extra) == 4  # not counted in n_trials
    assert all("slot" not in t.user_attrs for t in extra)
    top = sorted((t for t in search if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    assert {t.user_attrs[confirm.CONFIRM_OF] for t in extra} == {top[0].number, top[1].number}
    for t in extra:
        of = trials[t.user_attrs[confirm.CONFIRM_OF]]
        assert t.state == TrialState.COMPLETE
        assert t.params == of.params  # the same configuration ...
        assert t.user_attrs["seed"] != of.user_attrs["seed"]  # ... on a fresh seed
        assert t.user_attrs["config"]["model"]["seed"] == t.user_attrs["seed"]
    seeds = [t.user_attrs["seed"] for t in extra]
    assert len(set(seeds)) == 4
    # disjoint from the seeds 'rerun --seeds 8' uses
    for t in top[:2]:
        assert not set(fresh_seeds(t.user_attrs["config"], 8)) & set(seeds)


def test_best_is_the_lowest_mean_over_seeds(confirmed):
    result, folder, _ = confirmed
    trials = result.study.get_trials()
    means = {}
    for t in [t for t in trials if confirm.CONFIRM_OF not in t.user_attrs]:
        values = [t.value] + [
            c.value for c in trials if c.user_attrs.get(confirm.CONFIRM_OF) == t.number
        ]
        if len(values) > 1:
            means[t.number] = (statistics.fmean(values), statistics.stdev(values), values)
    winner = min(means, key=lambda n: (means[n][0], n))
    best = confirm.best(stored.records(result.study))
    assert best.trial == winner and best.n == 3
    assert best.mean == pytest.approx(means[winner][0])
    assert best.std == pytest.approx(means[winner][1])
    assert best.optimism == pytest.approx(means[winner][0] - trials[winner].value)
    # rerun's default is that configuration
    assert stored.pick(result.study).number == winner
    assert result.best.number == winner


def test_summary_json_written_by_run_with_stable_keys(confirmed):
    result, folder, lines = confirmed
    summary = json.loads((folder / "summary.json").read_text())
    assert set(summary) == {"study", "counts", "best"}
    assert summary["study"] == "conf"
    assert set(summary["counts"]) >= {"complete", "pruned", "failed", "interrupted"}
    counts = summary["counts"]
    assert counts["complete"] + counts["pruned"] + counts["failed"] == 6
    assert counts["confirmations"] == 4
    best = summary["best"]
    expected = {
        "trial",
        "params",
        "val_error",
        "val_error_std",
        "n_seeds",
        "search_val_error",
        "optimism",
        "train_error",
        "test_error",
    }
    assert set(best) == expected
    est = confirm.best(stored.records(result.study))
    assert best["trial"] == est.trial and best["n_seeds"] == 3
    assert best["val_error"] == pytest.approx(est.mean)
    assert best["val_error_std"] == pytest.approx(est.std)
    assert best["search_val_error"] == result.study.trials[est.trial].value
    assert best["params"] == result.study.trials[est.trial].params
    assert best["test_error"] is None  # no rerun --final yet
    # the end of the run says it too: counts by state, the confirmed best with its ±, and
    # the next command
    text = "\n".join(lines)
    assert "confirming the best 2 configurations on 2 fresh seeds" in text
    assert f"best: trial {est.trial}: validation error {est.mean:.2%} ± {est.std:.2%}" in text
    assert "next: mlpsearch report " in lines[-1]
    assert any(line.startswith("trials: ") and " interrupted" in line for line in lines)


def test_confirmation_trials_are_shown_in_the_progress(confirmed):
    result, _, lines = confirmed
    extra = [t for t in stored.records(result.study) if t.is_confirmation]
    assert len(extra) == 4
    for t in extra:
        line = next(s for s in lines if s.startswith(f"trial {t.number:>4} "))
        assert f"confirms trial {t.confirms} (fresh seed {t.confirm_seed})" in line
        assert f"val {t.value:.2%}" in line


def test_summary_keys_are_the_ones_the_readme_documents(confirmed, root):
    """Every key of summary.json has a row in the README's table, and every row a key."""
    _, folder, _ = confirmed
    text = (root / "README.md").read_text(encoding="utf-8")
    table = text.split("### summary.json", 1)[1].split("\n\n## ", 1)[0]
    documented = set()
    for line in table.splitlines():
        if not line.startswith("| `"):
            continue
        parent = ""
        for key in re.findall(r"`([^`]+)`", line.split("|")[1]):
            if key.startswith("."):
                key = parent + key
            parent = key.rsplit(".", 1)[0] if "." in key else key
            documented.add(key)

    def keys(value: dict, prefix: str = "") -> set[str]:
        out = set()
        for k, v in value.items():
            if isinstance(v, dict) and k != "params":  # params: the study's own names
                out |= keys(v, f"{prefix}{k}.")
            else:
                out.add(prefix + k)
        return out

    assert keys(json.loads((folder / "summary.json").read_text())) == documented


def test_report_shows_confirmed_means_noise_and_rewrites_summary(confirmed, tmp_path):
    result, folder, _ = confirmed
    (folder / "summary.json").unlink()
    write_report(result.study, folder, echo=lambda s: None)
    assert json.loads((folder / "summary.json").read_text())["best"]["n_seeds"] == 3
    table = top_trials(stored.records(result.study))
    first = table.iloc[0]
    est = confirm.best(stored.records(result.study))
    assert first["trial"] == est.trial
    assert first["val error"] == f"{est.mean:.2%} ± {est.std:.2%} (n=3)"
    assert first["within noise"] == "best"
    # the others: yes or no, with the difference from the best in standard errors
    for verdict in table["within noise"].iloc[1:]:
        found = re.fullmatch(r"(yes|no) \((-?\d+\.\d) SE\)", verdict)
        assert found, verdict
        z = float(found[2])  # rounded to one decimal: 1.96 shows as 2.0
        assert z <= 2.0 if found[1] == "yes" else z >= 2.0
    # an unconfirmed trial carries the binomial standard error of its validation error
    single = table[table["search seed"] == ""].iloc[0]
    t = result.study.trials[int(single["trial"])]
    se = binomial_se(t.value, t.user_attrs["val_rows"])
    assert single["val error"] == f"{t.value:.2%} ± {se:.2%}"
    html = (folder / "report.html").read_text()
    assert "within noise" in html and f"{est.mean:.2%} ± {est.std:.2%} (n=3)" in html


def test_rerun_resumes_confirmation_and_turning_it_on_later_confirms(tmp_path, experiment):
    exp = experiment(name="later", top=0)
    first = run_study(exp, tmp_path, echo=lambda s: None)
    assert not any(t.is_confirmation for t in stored.records(first.study))
    assert json.loads((tmp_path / "later" / "summary.json").read_text())["best"]["n_seeds"] == 1
    on = experiment(name="later", top=1, seeds=2)
    second = run_study(on, tmp_path, echo=lambda s: None)
    extra = [t for t in stored.records(second.study) if t.is_confirmation]
    assert len(extra) == 2
    again = run_study(on, tmp_path, echo=lambda s: None)  # nothing left to do
    assert len(again.study.get_trials()) == len(second.study.get_trials())


def test_a_run_stopped_during_confirmation_finishes_it_when_resumed(tmp_path, experiment):
    """Confirmation trials wait in the storage like any trial: a run stopped after it enqueued
    them (before they ran) runs each of them once when resumed, and adds no duplicate."""
    run_study(experiment(name="stopped", top=0), tmp_path, echo=lambda s: None)
    storage = open_journal(tmp_path / "stopped" / "journal.log")
    planned = optuna.load_study(study_name="stopped", storage=storage)
    assert confirm.enqueue(planned, 2, 2) == 4  # what the stopped run had planned
    lines: list[str] = []
    second = run_study(experiment(name="stopped", top=2, seeds=2), tmp_path, echo=lines.append)
    extra = [t for t in stored.records(second.study) if t.is_confirmation]
    assert len(extra) == 4
    assert all(t.state == TrialState.COMPLETE for t in extra)
    assert len({(t.confirms, t.confirm_seed) for t in extra}) == 4
    assert sum("confirms trial" in line for line in lines) == 4
    best = json.loads((tmp_path / "stopped" / "summary.json").read_text())["best"]
    assert best["n_seeds"] == 3


def test_confirmation_is_never_pruned(tmp_path, experiment):
    """With a pruner that stops most trials early, confirmations still run every epoch."""
    exp = experiment(name="pruned", n_trials=8, top=2, seeds=1, pruner="median")
    result = run_study(exp, tmp_path, echo=lambda s: None)
    extra = [t for t in stored.records(result.study) if t.is_confirmation]
    assert len(extra) == 2
    assert all(t.state == TrialState.COMPLETE for t in extra)


def test_confirm_setting_is_checked(experiment):
    assert experiment().study.confirm.top == 2
    assert parse_experiment({}).study.confirm.to_toml() == {"top": 5, "seeds": 3}
    with pytest.raises(ConfigError, match=r"study\.confirm\.top: -1 is out of range"):
        experiment(top=-1)
    with pytest.raises(ConfigError, match=r"study\.confirm\.seed.*unknown key"):
        parse_experiment({"study": {"confirm": {"seed": 3}}})
    with pytest.raises(ConfigError, match="study.confirm: 3 is not a table"):
        parse_experiment({"study": {"confirm": 3}})
    # the setting survives the study's stored experiment
    text = experiment(top=4, seeds=1).to_toml()
    assert tomllib.loads(text)["study"]["confirm"] == {"top": 4, "seeds": 1}


# --- interrupted is not failed ----------------------------------------------------------------


def test_a_trial_whose_worker_died_is_interrupted_and_names_its_rerun(tmp_path):
    storage = open_journal(tmp_path / "journal.log")
    study = optuna.create_study(study_name="s", storage=storage)
    study.enqueue_trial({"x": 1.0}, user_attrs={"slot": 0, "seed": 9})
    trial_id = claim_waiting(study, storage)
    # a worker of this host that no longer exists (its process start time does not match)
    storage.set_trial_system_attr(trial_id, WORKER_KEY, f"{socket.gethostname()}:{os.getpid()}:0")
    diverged = study.ask()
    diverged.set_user_attr("fail_reason", "diverged: training diverged in epoch 2")
    study.tell(diverged, state=TrialState.FAIL)

    assert fail_stale(study, storage) == [0]
    trials = stored.records(study)
    killed, retry = trials[0], trials[-1]
    assert retry.retry_of == 0 and retry.state == TrialState.WAITING
    assert outcomes.outcome(killed) == "interrupted"
    assert outcomes.outcome(trials[1]) == "failed"
    retries = outcomes.retried_as(trials)
    assert outcomes.label(killed, retries) == f"interrupted (re-run as trial {retry.number})"
    assert outcomes.counts(trials) == {"complete": 0, "pruned": 0, "failed": 1, "interrupted": 1}
    assert f"interrupted (re-run as trial {retry.number})" in trial_line(killed, retries)
    frame = trials_frame(study)
    assert frame.loc[0, "outcome"] == f"interrupted (re-run as trial {retry.number})"
    assert frame.loc[1, "outcome"] == "failed"
    summary = study_summary(study)
    assert summary["counts"]["interrupted"] == 1 and summary["counts"]["failed"] == 1
    assert (retry.slot, retry.seed, retry.reason, retry.interrupted) == (0, 9, "", None)
    # the report's summary lines: counted apart from the failures, and named with the rerun
    facts = dict(report_summary(study, trials))
    assert "1 failed, 1 interrupted" in facts["trials"]
    assert facts["interrupted trials"] == f"0: interrupted (re-run as trial {retry.number})"
    assert facts["failed trials"] == "1: diverged: training diverged in epoch 2"


def test_a_confirmation_trial_keeps_its_tags_when_re_queued(tmp_path):
    storage = open_journal(tmp_path / "journal.log")
    study = optuna.create_study(study_name="s", storage=storage)
    tags = {confirm.CONFIRM_OF: 3, confirm.CONFIRM_SEED: 2, "seed": 77}
    study.enqueue_trial({"x": 1.0}, user_attrs=tags)
    trial_id = claim_waiting(study, storage)
    storage.set_trial_system_attr(trial_id, WORKER_KEY, f"{socket.gethostname()}:{os.getpid()}:0")
    fail_stale(study, storage)
    assert study.get_trials()[-1].user_attrs == tags


def test_binomial_standard_error():
    assert binomial_se(0.1, 100) == pytest.approx(0.03)
    assert binomial_se(0.0, 288) == 0.0
    assert binomial_se(0.1, None) is None


def test_rerun_final_of_the_confirmed_best_fills_test_error_and_best_toml_says_so(
    confirmed, tmp_path
):
    from mlpsearch.rerun import rerun

    result, folder, _ = confirmed
    est = confirm.best(stored.records(result.study))
    out = rerun(result.study, folder, final=True, echo=lambda s: None, warn=lambda s: None)
    assert out.trial == est.trial and out.reproduced
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["best"]["test_error"] == pytest.approx(out.test_error)
    header = (folder / "best.toml").read_text().split("[study]")[0]
    assert f"{est.mean:.4%} ± {est.std:.4%} (sd)" in header
    assert f"the search's single seed gave {est.search_value:.4%}" in header
    assert "optimism" in header


# --- an honest train error ---------------------------------------------------------------------


def test_stored_train_error_is_the_best_epoch_models_error_on_the_training_part(confirmed):
    """End to end: the train error a trial stores (its curve, ``best_train_error``, the
    trials.csv column, the top table) is the error of its best-epoch weights on the training
    part in evaluation mode, not the running average over the epoch's minibatches (that is
    kept apart, as the batch loss)."""
    from threadpoolctl import threadpool_limits

    from mlpsearch.data import load_data
    from mlpsearch.engine.training import TRAIN_EVAL_ROWS
    from mlpsearch.rerun import train_best

    result, _, _ = confirmed
    trials = stored.records(result.study)
    t = stored.best(trials)
    data = load_data(stored.stored_experiment(result.study))
    assert len(data.y_train) < TRAIN_EVAL_ROWS  # digits: every training row is evaluated
    with threadpool_limits(limits=t.blas_threads):
        history, model = train_best(t.config, data)
    assert tuple(history.val_error) == t.curves.val_error  # the very training of the trial
    _, error, _ = model.evaluate(data.X_train, data.y_train)
    assert t.best_train_error == pytest.approx(error, abs=1e-12)
    assert t.curves.train_error[t.best_epoch - 1] == t.best_train_error
    assert len(t.curves.batch_loss) == t.epochs  # the running average: kept, named apart
    frame = trials_frame(result.study).set_index("number")
    assert frame.loc[t.number, "best_train_error"] == pytest.approx(error, abs=1e-12)
    table = top_trials(trials).set_index("trial")
    assert table.loc[t.number, "train error"] == f"{error:.2%}"

"""manage.py optimize through two real Celery workers of the ``optimize`` queue on PostgreSQL and Redis: every
trial's stored value is the direct backtest's; each worker reads each file once; a command killed (SIGKILL) midway
is resumed to the requested count without running a finished trial again."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import optuna
import pytest
from django.core.management import call_command
from optuna.trial import TrialState

from optimize.storage import close, get_storage
from tests.support import processes, services
from tests.support.paths import CANDLES

ROOT = Path(__file__).resolve().parents[2]
FILES = [str(CANDLES / "ETH_BTC-5m.csv"), str(CANDLES / "LTC_BTC-5m.csv")]
WINDOW = ["--from", "2018-01-12", "--to", "2018-01-18"]

pytestmark = [pytest.mark.workers, pytest.mark.django_db(transaction=True), pytest.mark.shared_data]


@pytest.fixture(scope="module")
def optimize_workers(service_env, tmp_path_factory):
    """Two solo worker processes that take the optimize queue only (as docs/operations.md starts them)."""
    services.flush_broker()
    log_dir = tmp_path_factory.mktemp("optimize-workers")
    workers = [processes.start_worker(f"opt{i}", service_env, log_dir, queues="optimize", pool="solo") for i in (1, 2)]
    yield workers
    for worker in workers:
        worker.stop()
    close()


def command(service_env, study: str, *args: str, out: Path | None = None) -> subprocess.Popen:
    argv = [sys.executable, "manage.py", "optimize", "--study", study, "--workers", "2", "--no-progress", *args]
    if out is not None:
        argv += ["--json", str(out)]
    return processes.start(argv, cwd=ROOT, env=service_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(study: str) -> list[optuna.trial.FrozenTrial]:
    trials = optuna.load_study(study_name=study, storage=get_storage()).get_trials(deepcopy=False)
    return [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


def test_ten_trials_through_two_workers_equal_direct_backtests(optimize_workers, service_env, tmp_path):
    study = f"e2e-{uuid.uuid4().hex}"
    out = tmp_path / "out.json"
    args = ["--data", *FILES, *WINDOW, "--capital", "1", "--strategy", "momentum", "--space", "ema_fast=5:20"]
    args += ["--space", "ema_slow=21:60", "--space", "rsi_max=60:80:int", "--trials", "10", "--seed", "42"]
    process = command(service_env, study, *args, out=out)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    document = json.loads(out.read_text())
    assert len(document["trials"]) == 10
    assert "python manage.py backtest --data" in stdout

    stored = {t.number: t for t in finished(study)}
    assert len(stored) == 10
    by_worker = Counter()
    for trial in document["trials"]:
        if trial["pruned"] and trial["candles"] is None:  # refused combination (ema_fast ≥ ema_slow): no backtest
            continue
        result = stored[trial["number"]].user_attrs["result"]
        by_worker[result["worker"]] += 1
        assert result["loads"] == len(FILES)  # the worker read each file once, then kept it
        report = tmp_path / f"bt-{trial['number']}.json"
        backtest = ["--data", *FILES, *WINDOW, "--capital", "1", "--strategy", "momentum", "--no-progress"]
        for name, value in trial["params"].items():
            backtest += ["--param", f"{name}={value}"]
        call_command("backtest", *backtest, "--json", str(report), stdout=open(tmp_path / "bt-out", "w"))
        summary = json.loads(report.read_text())["summary"]
        assert stored[trial["number"]].value == trial["value"] == float(summary["sharpe"])
        assert (trial["trades"], trial["max_drawdown"]) == (summary["trades"], float(summary["max_drawdown_pct"]))
    assert len(by_worker) == 2, by_worker  # both workers took trials


def test_a_killed_command_resumes_without_running_a_finished_trial_again(optimize_workers, service_env, tmp_path):
    study = f"kill-{uuid.uuid4().hex}"
    # float parameters: two trials with the same values can only be one trial run twice
    args = ["--data", *FILES, "--capital", "1", "--strategy", "momentum", "--space", "STOP_LOSS_PCT=0.005:0.1"]
    args += ["--space", "MAX_POSITION_PCT=0.01:0.25", "--space", "rsi_max=55.5:80", "--trials", "10", "--seed", "9"]
    first = command(service_env, study, *args)
    try:
        processes.wait_until(
            lambda: _study_exists(study) and len(finished(study)) >= 3, timeout=120, message="3 finished trials"
        )
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    before = {t.number: (t.params, t.value, t.datetime_complete) for t in finished(study)}
    assert 3 <= len(before) < 10

    out = tmp_path / "resumed.json"
    second = command(service_env, study, out=out)  # --study NAME alone: the stored arguments
    stdout, stderr = second.communicate(timeout=300)
    assert second.returncode == 0, stderr

    after = finished(study)
    assert len(after) == 10
    for number, (params, value, completed) in before.items():
        trial = next(t for t in after if t.number == number)
        assert (trial.params, trial.value, trial.datetime_complete) == (params, value, completed)  # untouched
    runs = [(t.params["STOP_LOSS_PCT"], t.params["MAX_POSITION_PCT"], t.params["rsi_max"]) for t in after]
    assert len(set(runs)) == 10  # no parameter set finished twice
    assert len(json.loads(out.read_text())["trials"]) == 10
    # trials the killed command left running were either told from the figures a worker stored, or failed and
    # asked again with their parameters (none if it was killed while asking them); none is left running
    left = optuna.load_study(study_name=study, storage=get_storage()).get_trials(deepcopy=False)
    assert not [t for t in left if t.state == TrialState.RUNNING]
    for failed in (t for t in left if t.state == TrialState.FAIL):
        retried = [t for t in left if t.user_attrs.get("retry_of") == failed.number]
        if failed.params:
            assert len(retried) == 1 and failed.params.items() <= retried[0].params.items()
        else:
            assert not retried


def test_a_trial_failing_on_a_worker_stops_the_command_with_its_error(optimize_workers, service_env, tmp_path):
    """A file that disappears from the workers' machine: the next trial fails there, and the command stops with the
    worker's error and how to resume (exit 1) instead of waiting for it forever."""
    copy = tmp_path / "ETH_BTC-5m.csv"
    copy.write_bytes(Path(FILES[0]).read_bytes())
    study = f"gone-{uuid.uuid4().hex}"
    args = ["--data", str(copy), *WINDOW, "--capital", "1", "--strategy", "momentum", "--space", "rsi_max=55.5:80"]
    process = command(service_env, study, *args, "--trials", "5000")
    try:
        processes.wait_until(
            lambda: _study_exists(study) and len(finished(study)) >= 1, timeout=120, message="1 finished trial"
        )
        copy.unlink()
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 1, stderr
    assert (
        "failed: FileNotFoundError: " in stderr and f"resume with: python manage.py optimize --study {study}" in stderr
    )
    left = optuna.load_study(study_name=study, storage=get_storage()).get_trials(deepcopy=False)
    assert not [t for t in left if t.state == TrialState.RUNNING]  # the others in flight were handed back
    assert [t for t in left if t.state == TrialState.FAIL and "FileNotFoundError" in t.user_attrs.get("error", "")]


def _study_exists(study: str) -> bool:
    try:  # (not get_all_study_summaries: it reads every study's trials, slow once the test database holds many)
        get_storage().get_study_id_from_name(study)
    except KeyError:
        return False
    return True

"""manage.py optimize when its worker is killed (SIGKILL) in the middle of a trial, and when a second command
starts on the same study: real solo workers of the ``optimize`` queue, PostgreSQL and Redis."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from optimize.storage import close, get_storage
from tests.support import processes, services
from tests.support.paths import CANDLES

ROOT = Path(__file__).resolve().parents[2]
ETH = str(CANDLES / "ETH_BTC-5m.csv")

pytestmark = [pytest.mark.workers, pytest.mark.django_db(transaction=True), pytest.mark.shared_data]


@pytest.fixture(autouse=True, scope="module")
def _storage_closed():
    yield
    close()


def trials(study: str) -> list[optuna.trial.FrozenTrial]:
    try:  # (not get_all_study_summaries: it reads every study's trials, slow once the test database holds many)
        get_storage().get_study_id_from_name(study)
    except KeyError:
        return []
    return optuna.load_study(study_name=study, storage=get_storage()).get_trials(deepcopy=False)


def finished(study: str) -> int:
    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials(study))


def command(service_env, study: str, *args: str) -> subprocess.Popen:
    argv = [sys.executable, "manage.py", "optimize", "--study", study, "--no-progress", *args]
    return processes.start(argv, cwd=ROOT, env=service_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_worker_killed_mid_trial_does_not_hang_the_command(service_env, tmp_path):
    """The only worker killed (SIGKILL) while it runs a trial, a new one started: the trial it took (no figures
    stored) is failed once overdue and its parameters asked again; the command finishes its count."""
    services.flush_broker()
    study = f"wkill-{uuid.uuid4().hex}"
    args = ["--data", ETH, "--strategy", "momentum", "--space", "ema_fast=5:30", "--space", "ema_slow=20:120"]
    args += ["--trials", "40", "--capital", "10"]
    args += ["--workers", "1"]
    worker = processes.start_worker("kill1", service_env, tmp_path, queues="optimize", pool="solo")
    process = command(service_env, study, *args)
    replacement = None
    try:
        processes.wait_until(lambda: finished(study) >= 5, timeout=180, message="5 finished trials")
        processes.wait_until(
            lambda: any(t.state == TrialState.RUNNING and "result" not in t.user_attrs for t in trials(study)),
            timeout=120,
            message="a trial in flight",
            interval=0.05,
        )
        worker.popen.send_signal(signal.SIGKILL)
        worker.popen.wait(10)
        replacement = processes.start_worker("kill2", service_env, tmp_path, queues="optimize", pool="solo")
        stdout, stderr = process.communicate(timeout=300)
    finally:
        process.kill()
        worker.stop()
        if replacement is not None:
            replacement.stop()
    assert process.returncode == 0, stderr
    left = trials(study)
    assert finished(study) == 40 and not [t for t in left if t.state == TrialState.RUNNING]
    lost = [t for t in left if t.state == TrialState.FAIL]
    assert lost  # the trial(s) the killed worker held
    for trial in lost:
        retried = [t for t in left if t.user_attrs.get("retry_of") == trial.number]
        assert len(retried) == 1 and retried[0].params == trial.params

"""The ``optimize`` queue (CELERY_TASK_ROUTES): one trial, one backtest. A trading worker never takes them.

The worker stores the trial's figures in Optuna's storage (the trial's ``result`` attribute: what a resumed command
finds), finishes the trial there (complete with its value, or pruned) and wakes the command through a Redis list
with the trial id and the value. The command only asked and created the trial: it never writes a result. A late
result for a trial the command has given up on (Ctrl-C, or a resume after the command was killed) is dropped:
Optuna refuses to change a finished trial.
"""

from __future__ import annotations

import os
import socket
from functools import cache

from celery import shared_task
from celery.signals import worker_ready

RESULT = "result"  # the trial attribute holding what the worker measured
ERROR = "error"  # the trial attribute holding why its backtest raised (the trial failed)
DONE_TTL_SEC = 86_400


def finish(storage, trial_id: int, result: dict) -> bool:
    """End a RUNNING trial with its figures' value (pruned: none); False if it had ended already."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    try:
        if result["pruned"] or result["value"] is None:
            return storage.set_trial_state_values(trial_id, TrialState.PRUNED)
        return storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [result["value"]])
    except UpdateFinishedTrialError:
        return False


def execute(payload: dict) -> dict | None:
    """Run the trial, store its figures and finish it; None: the trial was given up on meanwhile (dropped)."""
    from optuna.exceptions import UpdateFinishedTrialError

    from . import data_cache
    from .storage import get_storage
    from .trial import Problem, evaluate

    storage = get_storage()
    trial_id = payload["trial_id"]
    outcome = evaluate(Problem.from_dict(payload["problem"]), payload["params"], payload["start"], payload["end"])
    outcome.update(worker=f"{socket.gethostname()}:{os.getpid()}", loads=data_cache.loads())
    try:
        storage.set_trial_user_attr(trial_id, RESULT, outcome)
    except UpdateFinishedTrialError:
        return None
    return outcome if finish(storage, trial_id, outcome) else None


def give_up(storage, trial_id: int, error: str) -> bool:
    """Fail a RUNNING trial whose backtest raised, the error kept on it; False if it had ended already."""
    from optuna.exceptions import UpdateFinishedTrialError

    try:
        storage.set_trial_user_attr(trial_id, ERROR, error)
    except UpdateFinishedTrialError:
        return False
    return fail(storage, trial_id)


def fail(storage, trial_id: int) -> bool:
    """Fail a RUNNING trial; False if it had ended already (its worker finished it meanwhile)."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    try:
        return storage.set_trial_state_values(trial_id, TrialState.FAIL)
    except UpdateFinishedTrialError:
        return False


def failed_with(storage, trial_id: int, error: Exception) -> dict | None:
    """Fail the trial whose backtest raised ``error``, the error kept on it; the message for the command (None: the
    trial had ended already)."""
    text = f"{type(error).__name__}: {error} (worker {socket.gethostname()}:{os.getpid()})"
    return {ERROR: text} if give_up(storage, trial_id, text) else None


@shared_task(name="optimize.run_trial", acks_late=True, ignore_result=True)
def run_trial(payload: dict) -> None:
    """Run one trial; a trial that raises (a file missing on this machine, a bug) is failed with the error and the
    command told (it counts the failure and goes on, or stops after several in a row) instead of waiting for the
    trial forever."""
    try:
        outcome = execute(payload)
    except Exception as error:
        from .storage import get_storage

        message = failed_with(get_storage(), payload["trial_id"], error)
        if message is not None:
            _wake(payload, message)
        raise  # and Celery logs it
    if outcome is not None:
        _wake(payload, {"value": outcome["value"], "pruned": outcome["pruned"]})  # what the command's sampler needs


def _wake(payload: dict, message: dict) -> None:
    """Push the trial id and ``message`` on the command's Redis list."""
    if not payload.get("done_key"):
        return
    import json

    from django.conf import settings

    client = _redis(settings.REDIS_URL)
    with client.pipeline() as pipe:
        pipe.rpush(payload["done_key"], json.dumps([payload["trial_id"], message]))
        pipe.expire(payload["done_key"], DONE_TTL_SEC)
        pipe.execute()


@cache
def _redis(url: str):
    """One client (and its connection pool) per process, not a new connection per trial."""
    import redis

    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


@worker_ready.connect
def warm_up(sender, **_) -> None:
    """A solo worker of the optimize queue (``-P solo``: it runs each trial in the process that takes it) imports the
    backtest and opens the study storage before it says it is ready, so its first trial does not pay for them. A
    prefork pool's processes are forked before this: warming their parent would only hand them its connections."""
    from celery.concurrency.solo import TaskPool

    if not isinstance(sender.pool, TaskPool) or "optimize" not in {q.name for q in sender.task_consumer.queues}:
        return
    from . import trial  # noqa: F401 - the backtest and the strategies
    from .storage import get_storage

    get_storage()

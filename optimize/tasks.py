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

RESULT = "result"  # the trial attribute holding what the worker measured
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


@shared_task(name="optimize.run_trial", acks_late=True, ignore_result=True)
def run_trial(payload: dict) -> None:
    outcome = execute(payload)
    if outcome is not None and payload.get("done_key"):
        import json

        from django.conf import settings

        done = {"value": outcome["value"], "pruned": outcome["pruned"]}  # what the command's sampler needs
        client = _redis(settings.REDIS_URL)
        with client.pipeline() as pipe:
            pipe.rpush(payload["done_key"], json.dumps([payload["trial_id"], done]))
            pipe.expire(payload["done_key"], DONE_TTL_SEC)
            pipe.execute()


@cache
def _redis(url: str):
    """One client (and its connection pool) per process, not a new connection per trial."""
    import redis

    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)

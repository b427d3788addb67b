"""The ``optimize`` queue (CELERY_TASK_ROUTES): one trial, one backtest. A trading worker never takes them.

The worker stores the trial's figures in Optuna's storage (the trial's ``result`` attribute: what a resumed command
finds) and hands them to the command through a Redis list; the command tells Optuna (ask in the command, run here,
tell there). A late result for a trial the command has given up on (Ctrl-C, or a resume after the command was
killed) is dropped: Optuna refuses to change a finished trial.
"""

from __future__ import annotations

import os
import socket

from celery import shared_task

RESULT = "result"  # the trial attribute holding what the worker measured
DONE_TTL_SEC = 86_400


def execute(payload: dict) -> dict | None:
    """Run the trial and store its figures; None: the trial was given up on meanwhile (the figures dropped)."""
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
    return outcome


@shared_task(name="optimize.run_trial", acks_late=True, ignore_result=True)
def run_trial(payload: dict) -> None:
    outcome = execute(payload)
    if outcome is not None and payload.get("done_key"):
        import json

        import redis
        from django.conf import settings

        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5)
        with client.pipeline() as pipe:
            pipe.rpush(payload["done_key"], json.dumps([payload["trial_id"], outcome]))
            pipe.expire(payload["done_key"], DONE_TTL_SEC)
            pipe.execute()

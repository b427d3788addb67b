"""Driving one Optuna study to its number of finished trials: ask here, run each trial as an ``optimize`` task
(or in this process with ``--local``), tell Optuna when its result is stored.

Crash safety: a trial is finished only once told. A worker stores its figures on the trial before the command
tells, so a command killed in between loses nothing: on the next start, a RUNNING trial that has figures is told
with them (never run again); one without figures (its task lost, or still queued for a command that is gone) is
marked FAIL and its parameters are enqueued to be asked first — a late result for it is dropped.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import optuna
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState

from .space import Dimension
from .tasks import RESULT, execute
from .trial import Problem, check_params

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
POLL_SEC = 1.0  # a result whose wake-up was lost is still found within this long
STALL_SEC = 10.0  # no result for this long: on_stall (the command checks that a worker takes the queue)


class Interrupted(Exception):
    """Ctrl-C: in-flight trials were handed back (failed, their parameters enqueued for the next run)."""


@dataclass(frozen=True)
class Plan:
    """One study to bring to ``trials`` finished trials on the candles of ``start``–``end``."""

    study: str
    problem: Problem
    dimensions: list[Dimension]
    start: int | None
    end: int | None
    trials: int
    seed: int | None
    fold: int | None = None


def distributions(dimensions: list[Dimension]) -> dict:
    return {
        d.name: IntDistribution(int(d.low), int(d.high)) if d.integer else FloatDistribution(d.low, d.high, log=d.log)
        for d in dimensions
    }


def finished_count(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def _tell(study: optuna.Study, number: int, result: dict) -> None:
    if result["pruned"] or result["value"] is None:
        study.tell(number, state=TrialState.PRUNED)
    else:
        study.tell(number, result["value"])


def recover(study: optuna.Study) -> tuple[int, int]:
    """Trials a killed command left RUNNING: told from their stored figures, or failed and enqueued again.
    Returns (told, re-enqueued)."""
    told = again = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        result = trial.user_attrs.get(RESULT)
        if result is not None:
            _tell(study, trial.number, result)
            told += 1
        else:
            _give_back(study, trial)
            again += 1
    return told, again


def _give_back(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    study.tell(trial.number, state=TrialState.FAIL)
    if trial.params:  # none yet: killed while the trial was being asked
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number}, skip_if_exists=False)


class Waiter:
    """Wakes the command when a worker stored a result (a Redis list per run); ``None`` client: just sleep."""

    def __init__(self, client, key: str) -> None:
        self.client, self.key = client, key

    def wait(self, timeout: float) -> dict[int, dict]:
        """Results (by trial id) that arrived within ``timeout`` (empty: none, or no Redis)."""
        if self.client is None:
            time.sleep(timeout)
            return {}
        got = self.client.blpop([self.key], timeout=max(timeout, 0.01))
        results = {}
        while got is not None:  # and what else has arrived
            trial_id, result = json.loads(got[1] if isinstance(got, (list, tuple)) else got)
            results[trial_id] = result
            got = self.client.lpop(self.key)
        return results

    def close(self) -> None:
        if self.client is not None:
            self.client.delete(self.key)


def run_study(
    plan: Plan,
    storage,
    *,
    local: bool,
    workers: int,
    progress: Callable[[int, int, float | None], None],
    on_start: Callable[[optuna.Study, int], None] = lambda study, finished: None,
    on_stall: Callable[[], None] = lambda: None,
) -> optuna.Study:
    """Ask, dispatch and tell until the study has ``plan.trials`` finished trials. ``progress(done, total, best)``
    after every finished trial; Ctrl-C hands the in-flight trials back and raises Interrupted."""
    study = optuna.create_study(study_name=plan.study, storage=storage, direction="maximize", load_if_exists=True)
    recover(study)
    already = len(study.trials)
    # Resumed with the same --seed, the sampler must not draw the first run's parameters again.
    seed = None if plan.seed is None else plan.seed + already
    # multivariate: one joint draw per trial (and one read of the trials) instead of one per parameter
    study.sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True, multivariate=True)
    finished = finished_count(study)
    best = _best(study)
    on_start(study, finished)
    space = distributions(plan.dimensions)
    capacity = 1 if local else 2 * workers  # each worker one trial running and one waiting: none idles
    run = secrets.token_hex(6)
    waiter = Waiter(None, "") if local else _redis_waiter(plan.study, run)
    in_flight: dict[int, int] = {}  # trial number -> trial id
    quiet, stalled = 0.0, False
    arrived: dict[int, dict | None] = {}  # results by trial id
    try:
        while finished < plan.trials:
            while len(in_flight) < capacity and finished + len(in_flight) < plan.trials:
                trial = study.ask(space)
                trial.set_user_attr("run", run)  # which command asked it
                reason = check_params(plan.problem, trial.params)
                if reason:
                    trial.set_user_attr("refused", reason)
                    study.tell(trial, state=TrialState.PRUNED)
                    finished += 1
                    progress(finished, plan.trials, best)
                    continue
                payload = {
                    "trial_id": trial._trial_id,
                    "problem": plan.problem.as_dict(),
                    "params": trial.params,
                    "start": plan.start,
                    "end": plan.end,
                    "done_key": waiter.key,
                }
                in_flight[trial.number] = trial._trial_id
                if local:
                    arrived[trial._trial_id] = execute(payload)
                else:
                    from .tasks import run_trial

                    run_trial.apply_async((payload,), queue="optimize")
            if not local and in_flight:
                arrived = waiter.wait(POLL_SEC)
                quiet = 0.0 if arrived else quiet + POLL_SEC
                if quiet >= STALL_SEC and not stalled:
                    stalled = True
                    on_stall()
                if not arrived:  # a wake-up lost? look at every trial in flight in the storage
                    arrived = {i: storage.get_trial_user_attrs(i).get(RESULT) for i in in_flight.values()}
            for number, trial_id in list(in_flight.items()):
                result = arrived.pop(trial_id, None)
                if result is not None:
                    _tell(study, number, result)
                    del in_flight[number]
                    finished += 1
                    if not result["pruned"] and result["value"] is not None:
                        best = result["value"] if best is None else max(best, result["value"])
                    progress(finished, plan.trials, best)
    except KeyboardInterrupt:
        _hand_back(study, storage, in_flight)
        raise Interrupted() from None
    finally:
        waiter.close()
    return study


def _hand_back(study: optuna.Study, storage, in_flight: dict[int, int]) -> None:
    for number, trial_id in in_flight.items():
        trial = storage.get_trial(trial_id)
        if trial.state != TrialState.RUNNING:
            continue
        result = trial.user_attrs.get(RESULT)
        if result is not None:
            _tell(study, number, result)
        else:
            _give_back(study, trial)


def _best(study: optuna.Study) -> float | None:
    try:
        return study.best_value
    except ValueError:  # no complete trial yet
        return None


def _redis_waiter(study: str, run: str) -> Waiter:
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=POLL_SEC + 5, socket_connect_timeout=5)
    return Waiter(client, f"optimize:{study}:{run}:done")

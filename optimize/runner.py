"""Driving one Optuna study to its number of finished trials: sample here, run each trial as an ``optimize`` task
(or in this process with ``--local``), where the trial's figures and its end are written to the study's storage.

The command samples from an in-memory copy of the study (the finished trials, then every trial it asks): TPE reads
its trials from this process's memory, not from the database, and asking and telling cost no round trip. The RDB
storage keeps the record: a trial is created there (RUNNING, with its parameters) in one transaction before it is
sent, and the worker that runs it stores its figures and finishes it there. The command learns of it through a
Redis list (BLPOP: no polling) and tells its in-memory copy.

Crash safety: a trial is finished only in the storage. On the next start, a RUNNING trial whose figures a worker
stored (its worker died before finishing it) is finished with them — never run again; one without figures (its task
lost, or still queued for a command that is gone) is marked FAIL, and its parameters are asked again first (the new
trial's ``retry_of`` names it) — a late result for it is dropped: Optuna refuses to change a finished trial.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import optuna
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from ground.amounts import counted

from .space import Dimension
from .tasks import ERROR, RESULT, execute, fail, failed_with, finish
from .trial import Problem, check_params

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
POLL_SEC = 1.0  # the longest wait for a wake-up before the command looks again (a stall, the trials overdue)
OVERDUE = 2  # a trial in flight this many times longer than the slowest one so far took is looked for in the storage
STALL_SEC = 10.0  # no result for this long: on_stall (the command checks that a worker takes the queue)
# this many failed trials in a row stop the command: a cause every trial meets (a file gone, a bug)
FAILURES_IN_A_ROW = 5
LOST_FIRST_SEC = 120.0  # no trial measured yet: a trial without figures this long after it was sent is lost
LOST = "lost twice (no worker stored figures for it in time: killed, or its task lost)"
IN_FLIGHT_PER_WORKER = 2  # each worker one trial running and one waiting in the queue: none idles between trials


class Interrupted(Exception):
    """Ctrl-C: in-flight trials were handed back (failed, their parameters asked again by the next run)."""


class TrialFailed(Exception):
    """FAILURES_IN_A_ROW trials' backtests raised, one after the other (the others in flight were handed back)."""


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


def recover(study: optuna.Study) -> tuple[int, int]:
    """Trials a killed command left RUNNING: finished from their stored figures, or failed (``retries`` asks their
    parameters again). Returns (finished, failed)."""
    told = failed = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        result = trial.user_attrs.get(RESULT)
        if result is not None:
            finish(study._storage, trial._trial_id, result)
            told += 1
        elif fail(study._storage, trial._trial_id):  # (False: a late worker of the dead command finished it)
            failed += 1
    return told, failed


def retries(trials: list[optuna.trial.FrozenTrial]) -> list[tuple[dict, int]]:
    """(parameters, trial number) of the failed trials not asked again yet, oldest first."""
    asked_again = {t.user_attrs.get("retry_of") for t in trials}
    return [
        (t.params, t.number)
        for t in trials
        if t.state == TrialState.FAIL and t.params and t.number not in asked_again  # no params: killed while asked
    ]


def sampler_study(trials: list[optuna.trial.FrozenTrial], seed: int | None) -> optuna.Study:
    """The in-memory study TPE samples from: the stored study's finished trials (values and parameters only), and
    the trials whose backtest raised as pruned ones (TPE ignores failed trials: it would search their region on)."""
    # multivariate: one joint draw per trial; constant liar: the trials in flight count as bad, so the next asks
    # look elsewhere
    sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True, multivariate=True)
    memory = optuna.create_study(direction="maximize", sampler=sampler)
    memory.add_trials(
        create_trial(
            state=t.state if t.state in FINISHED else TrialState.PRUNED,
            value=t.value if t.state == TrialState.COMPLETE else None,
            params=t.params,
            distributions=t.distributions,
        )
        for t in trials
        if t.state in FINISHED or ERROR in t.user_attrs
    )
    return memory


class Waiter:
    """Wakes the command when a worker finished a trial (a Redis list per run); ``None`` client: just sleep."""

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
    on_failure: Callable[[int, dict, str], None] = lambda number, params, error: None,
) -> optuna.Study:
    """Ask, dispatch and tell until the study has ``plan.trials`` finished trials. ``progress(done, total, best)``
    after every finished trial; ``on_failure(number, params, error)`` after a trial whose backtest raised (stored
    as FAIL with its error; the study goes on, unless FAILURES_IN_A_ROW failed one after the other: TrialFailed).
    Ctrl-C hands the in-flight trials back and raises Interrupted. Returns the study as stored."""
    record = optuna.create_study(study_name=plan.study, storage=storage, direction="maximize", load_if_exists=True)
    recover(record)
    stored = record.get_trials(deepcopy=False)
    # Resumed with the same --seed, the sampler must not draw the first run's parameters again.
    memory = sampler_study(stored, None if plan.seed is None else plan.seed + len(stored))
    again = deque(retries(stored))
    finished = sum(t.state in FINISHED for t in stored)
    best = _best(memory)
    on_start(record, finished)
    space = distributions(plan.dimensions)
    capacity = 1 if local else IN_FLIGHT_PER_WORKER * workers
    waiter = Waiter(None, "") if local else _redis_waiter(plan.study, secrets.token_hex(6))
    # trial id in the storage -> (trial number in memory, parameters, whether it asks a failed trial's again)
    in_flight: dict[int, tuple[int, dict, bool]] = {}
    quiet, stalled, failures_in_a_row = 0.0, False, 0
    sent: dict[int, float] = {}  # trial id -> when it was sent (monotonic)
    slowest = POLL_SEC  # the longest a trial took from being sent to its wake-up, so far
    # until a first wake-up measured a trial, a trial is overdue after LOST_FIRST_SEC (the first one loads the data)
    floor = LOST_FIRST_SEC / OVERDUE
    arrived: dict[int, dict] = {}  # results by trial id
    try:
        while finished < plan.trials:
            while len(in_flight) < capacity and finished + len(in_flight) < plan.trials:
                attrs = {}
                if again:
                    params, number = again.popleft()
                    memory.enqueue_trial(params, skip_if_exists=False)
                    attrs["retry_of"] = number
                trial = memory.ask(space)
                reason = check_params(plan.problem, trial.params)
                if reason:  # the strategy refuses the combination: pruned, no backtest
                    storage.create_new_trial(
                        record._study_id, _template(TrialState.PRUNED, trial.params, space, attrs | {"refused": reason})
                    )
                    memory.tell(trial, state=TrialState.PRUNED)
                    finished += 1
                    progress(finished, plan.trials, best)
                    continue
                trial_id = storage.create_new_trial(
                    record._study_id, _template(TrialState.RUNNING, trial.params, space, attrs)
                )
                in_flight[trial_id] = (trial.number, trial.params, "retry_of" in attrs)
                payload = {
                    "trial_id": trial_id,
                    "problem": plan.problem.as_dict(),
                    "params": trial.params,
                    "start": plan.start,
                    "end": plan.end,
                    "done_key": waiter.key,
                }
                if local:
                    try:
                        arrived[trial_id] = execute(payload)
                    except Exception as error:  # as on a worker: the trial fails with its error, the study goes on
                        arrived[trial_id] = failed_with(storage, trial_id, error) or {ERROR: str(error)}
                else:
                    from .tasks import run_trial

                    run_trial.apply_async((payload,), queue="optimize")
                    sent[trial_id] = time.monotonic()
            if not local and in_flight:
                arrived = waiter.wait(POLL_SEC)
                quiet = 0.0 if arrived else quiet + POLL_SEC
                if quiet >= STALL_SEC and not stalled:
                    stalled = True
                    on_stall()
                now = time.monotonic()
                if arrived:
                    slowest = max([slowest, *(now - sent[t] for t in arrived if t in sent)])
                    floor = 0.0
                else:  # a wake-up lost? look in the storage for the trials overdue (not every second for all)
                    overdue = [t for t in in_flight if now - sent[t] > OVERDUE * max(slowest, floor)]
                    arrived = stored_results(storage, overdue) if overdue else {}
                    for trial_id in overdue:
                        if trial_id not in arrived and lost(storage, trial_id):
                            number, params, retry = in_flight.pop(trial_id)
                            slowest = max(slowest, now - sent.pop(trial_id))  # the next one is given longer
                            memory.tell(number, state=TrialState.FAIL)  # its parameters are asked again below
                            if retry:  # lost twice: not asked a third time
                                on_failure(storage.get_trial_number_from_id(trial_id), params, LOST)
                            else:
                                again.append((params, storage.get_trial_number_from_id(trial_id)))
            for trial_id, result in arrived.items():
                if trial_id not in in_flight:  # found in the storage already, its wake-up came late
                    continue
                number, params, retry = in_flight.pop(trial_id)
                sent.pop(trial_id, None)
                if ERROR in result:
                    memory.tell(number, state=TrialState.PRUNED)  # for the sampler, a bad trial: search elsewhere
                    stored_number = storage.get_trial_number_from_id(trial_id)  # (memory's: finished trials only)
                    on_failure(stored_number, params, result[ERROR])
                    # a failed trial's parameters asked again may fail again (a bug they meet): only new trials
                    # failing in a row say that every trial meets the cause
                    failures_in_a_row += not retry
                    if failures_in_a_row >= FAILURES_IN_A_ROW:
                        raise TrialFailed(
                            f"{counted(failures_in_a_row, 'trial')} in a row failed, the last: trial {stored_number} "
                            "failed: "
                            f"{result[ERROR]}"
                        )
                    continue
                failures_in_a_row = 0
                if result["pruned"] or result["value"] is None:
                    memory.tell(number, state=TrialState.PRUNED)
                else:
                    memory.tell(number, result["value"])
                    best = result["value"] if best is None else max(best, result["value"])
                finished += 1
                progress(finished, plan.trials, best)
            arrived = {}
    except KeyboardInterrupt:
        _hand_back(storage, in_flight)
        raise Interrupted() from None
    except TrialFailed:
        _hand_back(storage, in_flight)
        raise
    finally:
        waiter.close()
    return optuna.load_study(study_name=plan.study, storage=storage)


def _template(state: TrialState, params: dict, space: dict, attrs: dict) -> optuna.trial.FrozenTrial:
    return create_trial(
        state=state, params=params, distributions={name: space[name] for name in params}, user_attrs=attrs
    )


def stored_results(storage, trial_ids: Iterable[int]) -> dict[int, dict]:
    """The in-flight trials a worker has stored figures for, finished here if the worker did not get to it."""
    found = {}
    for trial_id in trial_ids:
        trial = storage.get_trial(trial_id)
        if trial.state == TrialState.FAIL and ERROR in trial.user_attrs:
            found[trial_id] = {ERROR: trial.user_attrs[ERROR]}
            continue
        result = trial.user_attrs.get(RESULT)
        if result is not None:
            if trial.state == TrialState.RUNNING:
                finish(storage, trial_id, result)
            found[trial_id] = result
    return found


def lost(storage, trial_id: int) -> bool:
    """Fail an overdue RUNNING trial without stored figures (its worker was killed, its task lost): its parameters
    are asked again, as a start-up recovery does; False if it has ended meanwhile."""
    trial = storage.get_trial(trial_id)
    return trial.state == TrialState.RUNNING and RESULT not in trial.user_attrs and fail(storage, trial_id)


def _hand_back(storage, in_flight: dict) -> None:
    for trial_id in in_flight:
        trial = storage.get_trial(trial_id)
        if trial.state != TrialState.RUNNING:
            continue
        result = trial.user_attrs.get(RESULT)
        if result is not None:
            finish(storage, trial_id, result)
        else:
            fail(storage, trial_id)  # (a worker may finish it meanwhile: then it stays finished)


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

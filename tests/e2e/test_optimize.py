"""manage.py optimize in one process (--local): spaces checked against the declared ranges (exit 2), walk-forward
folds that never let out-of-sample candles into the in-sample optimization, each trial's value equal to the
backtest of its parameters, the report and the API. The runs through real workers:
tests/e2e/test_optimize_workers.py."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path

import optuna
import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from optuna.trial import TrialState
from rest_framework.test import APIClient

from optimize.folds import walk_forward
from optimize.models import OptimizationRun
from optimize.space import SpaceError, parse_space
from optimize.storage import close, get_storage
from tests.support import processes
from tests.support.paths import CANDLES
from trading.strategies import REGISTRY, Param, Strategy

ROOT = Path(__file__).resolve().parents[2]
ETH, LTC = str(CANDLES / "ETH_BTC-5m.csv"), str(CANDLES / "LTC_BTC-5m.csv")
SMALL = ["--data", ETH, LTC, "--from", "2018-01-12", "--to", "2018-01-16", "--capital", "1"]
MOMENTUM_EMAS = ["--strategy", "momentum", "--space", "ema_fast=5:20", "--space", "ema_slow=21:60"]

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.shared_data]


@pytest.fixture(autouse=True, scope="module")
def _storage_closed():
    """Optuna's connections to the test database closed after the module (else it cannot be dropped)."""
    yield
    close()


def optimize(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / f"{uuid.uuid4().hex}.json"
    with open(tmp_path / "stdout", "w") as stdout:
        call_command("optimize", *args, "--local", "--no-progress", "--json", str(out), stdout=stdout)
    return json.loads(out.read_text())


def direct_backtest(tmp_path: Path, files: list[str], params: dict, *, capital: str, start: str, end: str) -> dict:
    """`manage.py backtest` of these parameters: its JSON report."""
    out = tmp_path / f"bt-{uuid.uuid4().hex}.json"
    args = ["--data", *files, "--strategy", "momentum", "--capital", capital, "--from", start, "--to", end]
    for name, value in params.items():
        args += ["--param", f"{name}={value}"]
    with open(tmp_path / "bt-stdout", "w") as stdout:
        call_command("backtest", *args, "--json", str(out), "--no-progress", stdout=stdout)
    return json.loads(out.read_text())


# --- spaces ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("ema_fast=1:30", "ema_fast must stay within its declared range (allowed 2–200)"),
        ("STOP_LOSS_PCT=0.001:0.05", "STOP_LOSS_PCT must stay within its declared range (allowed 0.005–0.1)"),
        ("max_position_pct=0.01:0.5", "MAX_POSITION_PCT must stay within its declared range (allowed 0.01–0.25)"),
        ("ema_slow=60:20", "ema_slow's low end must be below its high end (allowed 3–500)"),
        ("ema_fast=5.5:20", "ema_fast searched as :int needs whole-number ends (allowed 2–200)"),
        ("ema_fast=5:20:float", "ema_fast is a whole number (allowed 2–200)"),
        ("rsi_max=60.5:80:int", "rsi_max searched as :int needs whole-number ends (allowed 0–100)"),
        ("rsi_max=0:80:log", "rsi_max searched as :log needs a low end above 0"),
        ("rsi_max=60:80:cube", "the kind 'cube' is not one of int, float, log"),
        ("nonsense=1:2", "nonsense: unknown parameter for strategy 'momentum'; known: ema_fast"),
        ("ema_fast=5", "expected NAME=LOW:HIGH"),
        ("ema_fast=a:9", "'a' is not a number"),
        ("ema_fast=1_0:20", "'1_0' is not a number in ASCII digits 0-9 with at most one '.' point"),
        ("STOP_LOSS_PCT=5e-3:0.05", "'5e-3' is not a number in ASCII digits"),
    ],
)
def test_a_bad_space_names_the_parameter_and_its_range(item, message):
    with pytest.raises(SpaceError) as error:
        parse_space("momentum", [item])
    assert message in str(error.value)


def test_spaces_parse_to_typed_dimensions():
    fast, stop, rsi, size = parse_space(
        "momentum", ["ema_fast=5:30", "stop_loss_pct=0.005:0.05", "rsi_max=60:80:int", "POSITION_SIZE_PCT=0.05:0.2:log"]
    )
    assert (fast.name, fast.low, fast.high, fast.integer, fast.target) == ("ema_fast", 5, 30, True, "strategy")
    assert (stop.name, stop.integer, stop.target) == ("STOP_LOSS_PCT", False, "risk")
    assert (rsi.integer, rsi.low, rsi.high) == (True, 60, 80)
    assert (size.log, size.target) == (True, "sizing")
    with pytest.raises(SpaceError, match="ema_fast: given twice"):
        parse_space("momentum", ["ema_fast=5:30", "ema_fast=6:7"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--space", "ema_fast=1:30"], "ema_fast must stay within its declared range (allowed 2–200)"),
        (["--space", "STOP_LOSS_PCT=0.005:0.5"], "STOP_LOSS_PCT must stay within its declared range"),
        ([], "give at least one --space"),
        (["--space", "ema_fast=5:30", "--strategy", "nope"], "unknown strategy 'nope'"),
        (["--space", "ema_fast=5:30", "--walk-forward", "5000"], "--walk-forward 5000"),
        (["--space", "ema_fast=5:30", "--from", "2030-01-01"], "no valid candles"),
        (["--space", "ema_fast=5:30", "--walk-forward", "0"], "--walk-forward 0: needs at least 1 fold"),
        (["--space", "ema_fast=5:30", "--walk-forward", "-1"], "--walk-forward -1: needs at least 1 fold"),
        (
            ["--space", "ema_fast=5:30", "--from", "2018-01-12", "--to", "2018-01-16", "--walk-forward", "20"],
            "--walk-forward 20: fold 1's in-sample part has 44 candles, not more than the strategy's warm-up of 50",
        ),
        (["--space", "ema_fast=5:30", "--json", "/nonexistent/out.json"], "--json /nonexistent/out.json: its folder"),
        (["--space", "ema_fast=5:30", "--html", "/"], "--html /: is a directory"),
        (["--space", "ema_fast=5:30", "--study", "s" * 501], "--study: 501 characters, at most 500"),
        (["--space", "ema_fast=5:30", "--capital", "1_0"], "--capital='1_0': must be a number in 0.00000001–"),
    ],
)
def test_the_command_refuses_bad_spaces_with_exit_2_before_any_study(args, message):
    study = f"bad-{uuid.uuid4().hex}"
    with pytest.raises(CommandError) as error:
        call_command("optimize", "--data", ETH, "--study", study, "--local", *args)
    assert error.value.returncode == 2
    assert message in str(error.value)
    assert study not in [s.study_name for s in optuna.get_all_study_summaries(get_storage())]


def test_exit_code_2_and_the_message_from_the_shell(service_env):
    answer = processes.run(
        [
            sys.executable,
            "manage.py",
            "optimize",
            "--data",
            ETH,
            "--strategy",
            "momentum",
            "--space",
            "ema_slow=20:900",
            "--local",
        ],
        cwd=ROOT,
        env=service_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert answer.returncode == 2, answer.stderr
    assert "ema_slow must stay within its declared range (allowed 3–500)" in answer.stderr


# --- walk-forward ---------------------------------------------------------------------------------------------
def test_folds_are_consecutive_and_never_overlap():
    times = list(range(0, 1000 * 300_000, 300_000))
    folds = walk_forward(times, 4)
    assert [f.number for f in folds] == [1, 2, 3, 4]
    bounds = [b for f in folds for b in (f.in_sample, f.out_of_sample)]
    for (a_from, a_to), (b_from, b_to) in zip(bounds, bounds[1:], strict=False):
        assert a_from <= a_to < b_from <= b_to
    assert bounds[0][0] == times[0] and bounds[-1][1] == times[-1]
    covered = sum(1 for t in times for low, high in bounds if low <= t <= high)
    assert covered == len(times)  # every candle time in exactly one part
    with pytest.raises(ValueError):
        walk_forward(times[:5], 4)


def test_walk_forward_keeps_out_of_sample_candles_out_of_the_optimization(tmp_path):
    study = f"wf-{uuid.uuid4().hex}"
    document = optimize(
        tmp_path,
        *SMALL,
        *MOMENTUM_EMAS,
        "--trials",
        "4",
        "--walk-forward",
        "2",
        "--objective",
        "profit",
        "--seed",
        "3",
        "--study",
        study,
    )
    folds = document["walk_forward"]
    assert [f["fold"] for f in folds] == [1, 2]
    assert folds[0]["out_of_sample"]["to_ms"] < folds[1]["in_sample"]["from_ms"]
    for fold in folds:
        inside, out = fold["in_sample"], fold["out_of_sample"]
        assert inside["from_ms"] <= inside["to_ms"] < out["from_ms"] <= out["to_ms"]
        trials = [t for t in document["trials"] if t["fold"] == fold["fold"]]
        assert len(trials) == 4
        for trial in trials:
            if trial["candles"] is None:  # refused combination: no backtest
                continue
            # the candle times this trial's backtest saw: all in-sample
            assert inside["from_ms"] <= trial["first_candle"] <= trial["last_candle"] <= inside["to_ms"]
            assert trial["last_candle"] < out["from_ms"]
        # the out-of-sample score is the backtest of the fold's best parameters on the candles that follow
        direct = direct_backtest(
            tmp_path, [ETH, LTC], fold["best_params"], capital="1", start=out["from"], end=out["to"]
        )
        assert out["value"] == float(direct["summary"]["total_return_pct"])
        assert out["trades"] == direct["summary"]["trades"]
        assert inside["value"] == max(t["value"] for t in trials if t["value"] is not None)
    assert document["best_params"] == folds[-1]["best_params"]
    # the printed command reproduces best_value (the last fold's in-sample run), and so does the equity shown
    out = tmp_path / "best.json"
    argv = shlex.split(document["backtest_command"])
    answer = processes.run(
        [sys.executable, *argv[1:], "--no-progress", "--json", str(out)], cwd=ROOT, capture_output=True, text=True
    )
    assert answer.returncode == 0, answer.stderr
    reproduced = json.loads(out.read_text())
    assert float(reproduced["summary"]["total_return_pct"]) == document["best_value"]
    assert Decimal(document["equity_curve"][-1][1]) == Decimal(reproduced["equity_curve"][-1][1])
    assert argv[argv.index("--from") + 1] == folds[-1]["in_sample"]["from"] == document["equity_from"]
    whole = shlex.split(document["whole_period_command"])
    assert (whole[whole.index("--from") + 1], whole[whole.index("--to") + 1]) == (
        "2018-01-12T00:00:00",
        "2018-01-16T00:00:00",
    )


# --- a local study, its report, its stored run -------------------------------------------------------------------
def test_a_local_study_stores_values_equal_to_direct_backtests_and_reports(tmp_path):
    study = f"local-{uuid.uuid4().hex}"
    html = tmp_path / "report.html"
    document = optimize(
        tmp_path,
        *SMALL,
        *MOMENTUM_EMAS,
        "--space",
        "STOP_LOSS_PCT=0.005:0.05",
        "--trials",
        "6",
        "--objective",
        "calmar",
        "--seed",
        "11",
        "--study",
        study,
        "--html",
        str(html),
    )
    assert document["study"] == study and document["objective"] == "calmar"
    assert len(document["trials"]) == 6
    scored = [t for t in document["trials"] if t["value"] is not None]
    assert scored
    for trial in scored:
        direct = direct_backtest(
            tmp_path, [ETH, LTC], trial["params"], capital="1", start="2018-01-12", end="2018-01-16"
        )
        summary = direct["summary"]
        assert trial["value"] == float(summary["total_return_pct"]) / float(summary["max_drawdown_pct"])
        assert (trial["trades"], trial["max_drawdown"]) == (summary["trades"], float(summary["max_drawdown_pct"]))
        assert trial["duration"] > 0
    best = max(scored, key=lambda t: t["value"])
    assert (document["best_params"], document["best_value"]) == (best["params"], best["value"])
    command = document["backtest_command"]
    assert command.startswith("python manage.py backtest --data ") and "\n" not in command
    for name, value in best["params"].items():
        assert f"--param {name}={value}" in command
    # the best run's equity curve is that backtest's
    direct = direct_backtest(tmp_path, [ETH, LTC], best["params"], capital="1", start="2018-01-12", end="2018-01-16")
    (last_time, last_equity), (direct_time, direct_equity) = document["equity_curve"][-1], direct["equity_curve"][-1]
    assert (last_time, Decimal(last_equity)) == (direct_time, Decimal(direct_equity))

    page = html.read_text()
    assert "<svg" in page and "Parameter importance" in page and "Best run's equity" in page
    assert "<script src" not in page and "http://" not in page and "https://" not in page

    run = OptimizationRun.objects.get(study=study)
    assert run.best_params == document["best_params"] and run.trials == 6
    client = APIClient()
    client.force_authenticate(User.objects.create_user("trader"))
    listed = client.get("/api/optimizations/").json()["results"]
    assert [r["study"] for r in listed] == [study] and "report" not in listed[0]
    detail = client.get(f"/api/optimizations/{run.pk}/").json()
    assert detail["report"]["trials"] == document["trials"]
    assert APIClient().get("/api/optimizations/").status_code == 401


def test_sortino_and_sharpe_objectives_match_the_backtest(tmp_path):
    for objective in ("sharpe", "sortino"):
        document = optimize(
            tmp_path, *SMALL, "--strategy", "momentum", "--space", "ema_fast=5:11", "--trials", "2",
            "--objective", objective, "--seed", "5", "--study", f"{objective}-{uuid.uuid4().hex}",
        )  # fmt: skip
        trial = next(t for t in document["trials"] if t["value"] is not None)
        direct = direct_backtest(
            tmp_path, [ETH, LTC], trial["params"], capital="1", start="2018-01-12", end="2018-01-16"
        )
        if objective == "sharpe":
            assert trial["value"] == float(direct["summary"]["sharpe"])
        else:  # recomputed here from the backtest's equity curve
            curve = [Decimal(e) for _, e in direct["equity_curve"]]
            returns = [float(b / a - 1) for a, b in zip(curve, curve[1:], strict=False)]
            downside = (sum(min(r, 0) ** 2 for r in returns) / len(returns)) ** 0.5
            mean = sum(returns) / len(returns)
            assert trial["value"] == pytest.approx(mean / downside * (365 * 24 * 12) ** 0.5, rel=1e-9)


def test_resuming_with_other_arguments_is_refused_and_study_alone_resumes(tmp_path):
    study = f"resume-{uuid.uuid4().hex}"
    args = [*SMALL, "--strategy", "momentum", "--space", "ema_fast=5:11", "--objective", "profit", "--study", study]
    first = optimize(tmp_path, *args, "--trials", "2", "--seed", "1")
    with pytest.raises(CommandError) as error:
        call_command("optimize", *args[:-2], "--objective", "sharpe", "--study", study, "--local")
    assert error.value.returncode == 2 and "exists with other objective" in str(error.value)
    second = optimize(tmp_path, "--study", study, "--trials", "4")
    assert [t["number"] for t in second["trials"]] == [0, 1, 2, 3]
    assert second["trials"][:2] == first["trials"][:2]


def test_recover_finishes_stored_results_and_asks_lost_trials_again():
    """What a resume finds after a SIGKILL: a trial whose worker stored its figures is finished with them (not run
    again); one without figures is failed, and its parameters are asked first next time, once."""
    from optimize.runner import recover, retries, sampler_study
    from optimize.tasks import RESULT

    space = {"x": optuna.distributions.FloatDistribution(0, 1)}
    study = optuna.create_study(study_name=f"recover-{uuid.uuid4().hex}", storage=get_storage(), direction="maximize")
    done, lost = study.ask(space), study.ask(space)
    done.set_user_attr(RESULT, {"value": 1.5, "pruned": None})
    assert recover(study) == (1, 1)
    trials = study.get_trials(deepcopy=False)
    assert (trials[0].state, trials[0].value) == (TrialState.COMPLETE, 1.5)
    assert trials[1].state == TrialState.FAIL
    assert retries(trials) == [(lost.params, 1)]
    # the sampler's in-memory copy holds the finished trial only
    memory = sampler_study(trials, seed=1)
    assert [(t.state, t.value, t.params) for t in memory.trials] == [(TrialState.COMPLETE, 1.5, done.params)]
    # once a trial says it asks trial 1 again, nothing is left to retry
    study.enqueue_trial(lost.params, user_attrs={"retry_of": 1})
    assert retries(study.get_trials(deepcopy=False)) == []


def _stored_problem(study: str) -> dict:
    storage = get_storage()
    return storage.get_study_user_attrs(storage.get_study_id_from_name(study))["config"]["problem"]


def test_the_worker_finishes_its_trial_and_a_late_result_is_dropped(tmp_path):
    """The worker stores the figures and ends the trial itself (the command writes no result); a trial the command
    gave up on (failed) stays failed and its result is dropped."""
    from optimize.runner import stored_results
    from optimize.tasks import RESULT, execute

    study = f"worker-{uuid.uuid4().hex}"
    optimize(
        tmp_path, *SMALL, "--strategy", "momentum", "--space", "rsi_max=60:80:int", "--trials", "1", "--study", study
    )
    storage = get_storage()
    study_id = storage.get_study_id_from_name(study)
    space = {"rsi_max": optuna.distributions.IntDistribution(60, 80)}

    def running(value: int) -> int:
        template = optuna.trial.create_trial(state=TrialState.RUNNING, params={"rsi_max": value}, distributions=space)
        return storage.create_new_trial(study_id, template)

    def payload(trial_id: int, value: int) -> dict:
        problem = _stored_problem(study)
        return {"trial_id": trial_id, "problem": problem, "params": {"rsi_max": value}, "start": None, "end": None}

    ran = running(70)
    outcome = execute(payload(ran, 70))
    trial = storage.get_trial(ran)
    assert trial.state == TrialState.COMPLETE and trial.value == outcome["value"] is not None
    assert trial.user_attrs[RESULT] == outcome

    given_up = running(71)
    storage.set_trial_state_values(given_up, TrialState.FAIL)
    assert execute(payload(given_up, 71)) is None
    assert (storage.get_trial(given_up).state, storage.get_trial(given_up).user_attrs) == (TrialState.FAIL, {})

    # a worker that died between storing the figures and ending the trial: the command, finding no wake-up, reads
    # the figures in the storage and ends the trial with them
    half = running(72)
    storage.set_trial_user_attr(half, RESULT, {"value": 0.5, "pruned": None})
    assert stored_results(storage, {half: 2, given_up: 1}) == {half: {"value": 0.5, "pruned": None}}
    assert (storage.get_trial(half).state, storage.get_trial(half).value) == (TrialState.COMPLETE, 0.5)


def test_the_database_work_per_trial_does_not_grow_with_the_trials(tmp_path):
    """The sampler reads its trials from memory: per trial the command creates the trial (one transaction) and, with
    --local, runs it and stores its figures — the same statements for the 4th trial as for the 12th."""
    from sqlalchemy import event

    statements = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    engine = get_storage().engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        counts = []
        for trials in (4, 8, 12):
            statements.clear()
            # float risk parameters: no combination the strategy refuses (a refused one is created, never run)
            space = ["--space", "STOP_LOSS_PCT=0.005:0.05", "--space", "rsi_max=60:80"]
            study = ["--study", f"count-{uuid.uuid4().hex}"]  # a new study each (a default name may repeat)
            optimize(tmp_path, *SMALL, "--strategy", "momentum", *space, "--trials", str(trials), "--seed", "3", *study)
            counts.append(len(statements))
    finally:
        event.remove(engine, "before_cursor_execute", count)
    per_trial = (counts[1] - counts[0]) / 4
    assert counts[2] - counts[1] == counts[1] - counts[0]  # no statement more for a later trial
    # creating the trial (lock the study, insert it, 2 × (the parameter's first use, insert), count its number) plus
    # the worker's two writes (figures, then state and value); the ask through the RDB storage it replaces took ~50
    assert per_trial <= 20, counts  # 16 when written


def test_a_trial_that_raises_is_failed_with_its_error_and_the_command_woken(tmp_path, settings):
    """A worker whose backtest raises (here: the file is missing on its machine) fails the trial, keeps the error on
    it and wakes the command with it, instead of leaving the trial RUNNING for a command that would wait forever."""
    import redis

    from optimize.runner import stored_results
    from optimize.tasks import ERROR, run_trial

    study = f"raises-{uuid.uuid4().hex}"
    optimize(
        tmp_path, *SMALL, "--strategy", "momentum", "--space", "rsi_max=60:80:int", "--trials", "1", "--study", study
    )
    storage = get_storage()
    space = {"rsi_max": optuna.distributions.IntDistribution(60, 80)}
    template = optuna.trial.create_trial(state=TrialState.RUNNING, params={"rsi_max": 70}, distributions=space)
    trial_id = storage.create_new_trial(storage.get_study_id_from_name(study), template)
    problem = _stored_problem(study) | {"files": [str(tmp_path / "gone-5m.csv")]}
    done_key = f"optimize:test:{uuid.uuid4().hex}:done"
    payload = {"trial_id": trial_id, "problem": problem, "params": {"rsi_max": 70}, "start": None, "end": None}
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        run_trial.apply(args=(payload | {"done_key": done_key},))  # in this process, as a worker runs it
        woken = json.loads(client.lpop(done_key))
    finally:
        client.delete(done_key)
    trial = storage.get_trial(trial_id)
    assert trial.state == TrialState.FAIL and trial.user_attrs[ERROR].startswith("FileNotFoundError: ")
    assert woken == [trial_id, {ERROR: trial.user_attrs[ERROR]}]
    assert stored_results(storage, {trial_id: 1}) == {trial_id: {ERROR: trial.user_attrs[ERROR]}}  # wake-up lost


# --- a trial whose backtest raises (--local) ---------------------------------------------------------------------
@pytest.fixture
def fragile_strategy():
    """A strategy with a bug that only some parameter values meet: its backtest raises above ``x`` = 0.85."""

    class Fragile(Strategy):
        name = "test_fragile"
        params = {"x": Param(0.5, 0.0, 1.0, integer=False)}
        warmup = 1

        def on_candle(self, candle):
            if self.values["x"] > 0.85:
                raise ZeroDivisionError(f"x={self.values['x']} above 0.85")
            return None

    yield Fragile.name
    REGISTRY.pop(Fragile.name)


def test_a_local_trial_that_raises_is_failed_with_its_error_and_the_study_goes_on(tmp_path, fragile_strategy):
    study = f"fragile-{uuid.uuid4().hex}"
    out, html, stdout = tmp_path / "out.json", tmp_path / "out.html", tmp_path / "stdout"
    args = [*SMALL, "--strategy", fragile_strategy, "--space", "x=0:1", "--trials", "8", "--seed", "4"]
    with open(stdout, "w") as output, pytest.raises(CommandError) as error:
        call_command(
            "optimize", *args, "--study", study, "--local", "--no-progress", "--json", str(out), "--html", str(html),
            stdout=output,
        )  # fmt: skip
    assert error.value.returncode == 3  # finished, with failed trials
    document = json.loads(out.read_text())
    failed = document["failed"]
    assert failed and all(f["params"]["x"] > 0.85 and "ZeroDivisionError: x=" in f["error"] for f in failed)
    assert f"{len(failed)} trial{'' if len(failed) == 1 else 's'} failed" in str(error.value)
    assert f"--study {study} --local --trials {8 + len(failed)}" in str(error.value)
    assert len(document["trials"]) == 8 and all(t["params"]["x"] <= 0.85 for t in document["trials"])  # went on
    assert f"8 trials finished, {len(failed)} failed" in stdout.read_text()
    assert "Failed trials" in html.read_text()
    client = APIClient()
    client.force_authenticate(User.objects.create_user("trader"))
    run = OptimizationRun.objects.get(study=study)
    assert client.get("/api/optimizations/").json()["results"][0]["failed"] == len(failed)
    assert client.get(f"/api/optimizations/{run.pk}/").json()["report"]["failed"] == failed
    stored = optuna.load_study(study_name=study, storage=get_storage()).get_trials(deepcopy=False)
    assert sorted(t.number for t in stored if t.state == TrialState.FAIL) == sorted(f["number"] for f in failed)
    assert all("ZeroDivisionError" in t.user_attrs["error"] for t in stored if t.state == TrialState.FAIL)
    assert not [t for t in stored if t.state == TrialState.RUNNING]

    # extended as the message says: the failed parameters are asked again first (and fail again: the bug is still
    # there)
    with open(stdout, "w") as output, pytest.raises(CommandError) as again:
        call_command(
            "optimize", "--study", study, "--local", "--no-progress", "--trials", str(8 + len(failed)),
            "--json", str(out), stdout=output,
        )  # fmt: skip
    assert again.value.returncode == 3
    retried = optuna.load_study(study_name=study, storage=get_storage()).get_trials(deepcopy=False)[len(stored) :]
    assert [t.user_attrs["retry_of"] for t in retried[: len(failed)]] == [f["number"] for f in failed]
    assert [t.params for t in retried[: len(failed)]] == [f["params"] for f in failed]


def test_local_trials_failing_one_after_another_stop_the_command(tmp_path, fragile_strategy):
    """A cause every trial meets (here: every x of the space raises): the command stops after 5 failed trials in a
    row, with the error and how to resume (exit 1), instead of failing the whole study."""
    study = f"doomed-{uuid.uuid4().hex}"
    with pytest.raises(CommandError) as error:
        call_command(
            "optimize", *SMALL, "--strategy", fragile_strategy, "--space", "x=0.9:1", "--trials", "50",
            "--study", study, "--local", "--no-progress", stdout=open(tmp_path / "stdout", "w"),
        )  # fmt: skip
    assert error.value.returncode == 1
    assert "5 trials in a row failed, the last: trial 4 failed: ZeroDivisionError: x=" in str(error.value)
    assert f"resume with: python manage.py optimize --study {study} --local" in str(error.value)
    stored = optuna.load_study(study_name=study, storage=get_storage()).get_trials(deepcopy=False)
    assert [t.state for t in stored] == [TrialState.FAIL] * 5
    assert not OptimizationRun.objects.filter(study=study).exists()


def stop_after_two_trials(service_env, study: str, trials: int, sig: int) -> tuple[int, str]:
    """A --local run from a shell, sent ``sig`` once 2 trials finished: (exit code, stderr)."""
    argv = [sys.executable, "manage.py", "optimize", *SMALL, "--strategy", "momentum", "--space", "rsi_max=55.5:80"]
    argv += ["--trials", str(trials), "--study", study, "--local", "--no-progress"]
    process = processes.start(
        argv, cwd=ROOT, env=service_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:

        def finished() -> int:
            try:  # (not get_all_study_summaries: slow once the test database holds many studies)
                get_storage().get_study_id_from_name(study)
            except KeyError:
                return 0
            trials = optuna.load_study(study_name=study, storage=get_storage()).get_trials(deepcopy=False)
            return sum(t.state == TrialState.COMPLETE for t in trials)

        processes.wait_until(lambda: finished() >= 2, timeout=120, message="2 finished trials")
        process.send_signal(sig)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    return process.returncode, stderr


def test_ctrl_c_stops_cleanly_says_how_to_resume_and_the_resume_finishes(service_env, tmp_path):
    """A trader's Ctrl-C (SIGINT) on a --local run from a shell: exit 130 with the resume line, the finished trials
    kept, none left running; the line, run as printed, brings the study to its count."""
    study = f"ctrl-c-{uuid.uuid4().hex}"
    returncode, stderr = stop_after_two_trials(service_env, study, 12, signal.SIGINT)
    assert returncode == 130, stderr
    resume = f"python manage.py optimize --study {study} --local"
    assert f"Stopped. Finished trials are kept. Resume with: {resume}" in stderr and "Traceback" not in stderr
    trials = optuna.load_study(study_name=study, storage=get_storage()).get_trials(deepcopy=False)
    kept = {t.number: t.value for t in trials if t.state == TrialState.COMPLETE}
    assert kept and not [t for t in trials if t.state == TrialState.RUNNING]

    answer = processes.run(
        [sys.executable, *resume.split()[1:], "--no-progress"], cwd=ROOT, env=service_env, capture_output=True,
        text=True, timeout=600,
    )  # fmt: skip
    assert answer.returncode == 0, answer.stderr
    after = optuna.load_study(study_name=study, storage=get_storage()).get_trials(deepcopy=False)
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in after) == 12
    assert all(after[number].value == value for number, value in kept.items())  # untouched


def test_a_second_command_on_a_running_study_is_refused_and_a_killed_ones_lock_is_gone(service_env, tmp_path):
    """Two commands on one study at once would both ask and tell it: the second is refused (exit 2) while the first
    runs; once the first is killed (SIGKILL), the study resumes."""
    study = f"busy-{uuid.uuid4().hex}"
    argv = [sys.executable, "manage.py", "optimize", *SMALL, "--strategy", "momentum", "--space", "rsi_max=55.5:80"]
    argv += ["--study", study, "--local", "--no-progress"]
    first = processes.start(
        [*argv, "--trials", "500"], cwd=ROOT, env=service_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:

        def started() -> bool:
            try:  # (not get_all_study_summaries: slow once the test database holds many studies)
                get_storage().get_study_id_from_name(study)
            except KeyError:
                return False
            return bool(optuna.load_study(study_name=study, storage=get_storage()).trials)

        processes.wait_until(started, timeout=120, message="a first trial")
        second = processes.run(
            [*argv, "--trials", "3"], cwd=ROOT, env=service_env, capture_output=True, text=True, timeout=120
        )
        assert second.returncode == 2, second.stderr
        assert f"study '{study}' is being run by another optimize command" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.kill()
        first.wait(10)
    again = processes.run(
        [sys.executable, "manage.py", "optimize", "--study", study, "--local", "--no-progress", "--trials", "3"],
        cwd=ROOT, env=service_env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr


def test_the_backtests_capital_warning_is_passed_through_once_per_study(tmp_path):
    """The default capital (INITIAL_CAPITAL, counted in BTC here) is far above what the candles' volumes absorb:
    `manage.py backtest` warns that PAPER_MAX_VOLUME_SHARE cut the entries; the study says it once, not per trial."""
    out, printed = tmp_path / "warned.json", tmp_path / "warned.txt"
    args = ["--data", ETH, "--from", "2018-01-12", "--to", "2018-01-16", "--strategy", "momentum"]
    args += ["--space", "rsi_max=55.5:80", "--trials", "4", "--seed", "1", "--study", f"warn-{uuid.uuid4().hex}"]
    with open(printed, "w") as stdout:
        call_command("optimize", *args, "--local", "--no-progress", "--json", str(out), stdout=stdout)
    text = printed.read_text()
    assert text.count("entries were cut by PAPER_MAX_VOLUME_SHARE") == 1, text
    assert "WARNING: " in text and "(in 4 of 4 trials)" in text
    assert json.loads(out.read_text())["warnings"] == [
        line[9:] for line in text.splitlines() if line.startswith("WARNING: ")
    ]


def test_a_trial_on_no_candles_fails_and_a_resume_on_changed_files_is_refused(tmp_path):
    """A data file changed under a study: a trial that finds no candles fails (not a quiet prune), and resuming the
    study on a file whose size or modification time changed is refused (exit 2)."""
    import os

    from optimize.tasks import ERROR, run_trial

    copy = tmp_path / "ETH_BTC-5m.csv"
    copy.write_bytes(Path(ETH).read_bytes())
    study = f"changed-{uuid.uuid4().hex}"
    args = ["--data", str(copy), "--from", "2018-01-12", "--to", "2018-01-16", "--capital", "1"]
    args += ["--strategy", "momentum", "--space", "rsi_max=60:80:int", "--study", study]
    optimize(tmp_path, *args, "--trials", "2")

    storage = get_storage()
    study_id = storage.get_study_id_from_name(study)
    template = optuna.trial.create_trial(
        state=TrialState.RUNNING,
        params={"rsi_max": 70},
        distributions={"rsi_max": optuna.distributions.IntDistribution(60, 80)},
    )
    trial_id = storage.create_new_trial(study_id, template)
    future = 1_900_000_000_000  # 2030: no candle of the file
    payload = {"trial_id": trial_id, "problem": _stored_problem(study), "params": {"rsi_max": 70}}
    with pytest.raises(ValueError, match="no candles"):
        run_trial({**payload, "start": future, "end": future + 1})
    trial = storage.get_trial(trial_id)
    assert trial.state == TrialState.FAIL and "no candles" in trial.user_attrs[ERROR]

    stat = copy.stat()
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    for resume in (["--study", study], args):
        with pytest.raises(CommandError) as error:
            call_command("optimize", *resume, "--trials", "3", "--local", "--no-progress")
        assert error.value.returncode == 2
        assert f"{copy} changed since the study began" in str(error.value)


def test_a_study_whose_trials_are_all_pruned_says_why_and_exits_4(tmp_path):
    study = f"pruned-{uuid.uuid4().hex}"
    args = [*SMALL, "--strategy", "momentum", "--space", "rsi_max=55.5:80", "--trials", "3", "--min-trades", "100000"]
    with pytest.raises(CommandError) as error:
        call_command("optimize", *args, "--study", study, "--local", "--no-progress", stdout=open(tmp_path / "o", "w"))
    assert error.value.returncode == 4
    assert "no complete trial: all 3 were pruned (" in str(error.value)
    assert "fewer than --min-trades 100000" in str(error.value)
    assert OptimizationRun.objects.filter(study=study).exists()  # the report and the run are kept


def test_sigterm_stops_like_ctrl_c(service_env):
    """SIGTERM (kill, a service manager stopping it): the resume line, the in-flight trial handed back, exit 143."""
    study = f"term-{uuid.uuid4().hex}"
    returncode, stderr = stop_after_two_trials(service_env, study, 500, signal.SIGTERM)
    assert returncode == 143, stderr
    assert f"Resume with: python manage.py optimize --study {study} --local" in stderr and "Traceback" not in stderr
    trials = optuna.load_study(study_name=study, storage=get_storage()).get_trials(deepcopy=False)
    assert not [t for t in trials if t.state == TrialState.RUNNING]

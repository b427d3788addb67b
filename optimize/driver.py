"""The command's shell around the runner: the study (or one study per walk-forward fold), the out-of-sample
check, the best run's equity curve, the report and the stored ``OptimizationRun``."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import optuna
from django.core.management.base import CommandError
from optuna.trial import TrialState
from tqdm import tqdm

from ground.amounts import counted
from trading.backtest import BacktestInputError

from . import data_cache
from .folds import walk_forward
from .report import failed_rows, importance, trial_rows
from .runner import Plan, run_study
from .space import Dimension
from .tasks import RESULT
from .trial import Problem, backtest_command, evaluate, iso, least_warmup


@dataclass
class Stage:
    plan: Plan
    fold: dict | None  # the fold's bounds (walk-forward), None for a plain study


class Driver:
    def __init__(self, name: str, config: dict, storage, *, local: bool, workers: int, seed: int | None) -> None:
        self.name, self.config, self.storage = name, config, storage
        self.local, self.workers, self.seed = local, workers, seed
        self.problem = Problem.from_dict(config["problem"])
        self.dimensions = [Dimension(**d) for d in config["space"]]

    def prepare(self, stored: dict | None) -> None:
        """Load the candles (a bad file exits 2 before anything is stored), cut the folds, record the study."""
        try:
            candles = data_cache.candles(self.problem.files)
        except BacktestInputError as error:
            raise CommandError(str(error), returncode=2) from None
        window = candles.window(self.config["from"], self.config["to"])
        if not window:
            raise CommandError("no valid candles in the given files and dates", returncode=2)
        self.start, self.end = window[0].row.timestamp, window[-1].row.timestamp
        trials = self.config["trials"]
        if self.config["walk_forward"]:
            try:
                folds = walk_forward([b.row.timestamp for b in window], self.config["walk_forward"])
            except ValueError as error:
                raise CommandError(str(error), returncode=2) from None
            self._check_folds(folds, [b.row.timestamp for b in window])
            self.stages = [
                Stage(
                    Plan(
                        f"{self.name}.fold{f.number}",
                        self.problem,
                        self.dimensions,
                        *f.in_sample,
                        trials,
                        None if self.seed is None else self.seed + f.number,
                        f.number,
                    ),
                    f.as_dict(),
                )
                for f in folds
            ]
        else:
            self.stages = [
                Stage(Plan(self.name, self.problem, self.dimensions, self.start, self.end, trials, self.seed), None)
            ]
        study = optuna.create_study(
            study_name=self.name, storage=self.storage, direction="maximize", load_if_exists=True
        )
        study.set_user_attr("config", self.config)

    def _check_folds(self, folds: list, timestamps: list[int]) -> None:
        """Every fold's in-sample and out-of-sample part longer than the strategy's warm-up (else no trial, or no
        out-of-sample check, could trade there): refused before anything is stored."""
        lows = {d.name: d.low for d in self.dimensions if d.target == "strategy"}
        warmup = least_warmup(self.problem, lows)
        if warmup is None:
            return
        times = sorted(set(timestamps))
        for fold in folds:
            for part, (begin, stop) in (("in-sample", fold.in_sample), ("out-of-sample", fold.out_of_sample)):
                count = sum(begin <= t <= stop for t in times)
                if count <= warmup:
                    raise CommandError(
                        f"--walk-forward {len(folds)}: fold {fold.number}'s {part} part has "
                        f"{counted(count, 'candle')}, not "
                        f"more than the strategy's warm-up of {warmup} (at the space's lowest values): no trade "
                        "possible; use fewer folds or a longer period",
                        returncode=2,
                    )

    def run(self, progress: bool = True, on_stall=lambda: None, stopping=lambda: False) -> dict:
        """``stopping()`` true (a Ctrl-C or SIGTERM whose KeyboardInterrupt was swallowed): stop after the next
        trial."""
        studies = []
        for stage in self.stages:
            label = f"fold {stage.plan.fold}/{len(self.stages)}" if stage.fold else "trials"
            failed = [0]  # this stage's failed trials, for the bar
            with tqdm(total=stage.plan.trials, unit="trial", desc=label, file=sys.stderr, disable=not progress) as bar:

                def update(done: int, total: int, best: float | None, bar=bar, failed=failed) -> None:
                    if stopping():
                        raise KeyboardInterrupt  # (the runner hands the trials in flight back)
                    bar.n = done
                    text = f"best {best:.4g}" if best is not None else "best –"
                    bar.set_postfix_str(text + (f", {failed[0]} failed" if failed[0] else ""), refresh=False)
                    bar.refresh()

                def failure(number: int, params: dict, error: str, failed=failed) -> None:
                    failed[0] += 1
                    shown = ", ".join(f"{k}={v}" for k, v in params.items())
                    tqdm.write(f"trial {number} failed ({shown}): {error}", file=sys.stderr)

                def started(study, finished: int, bar=bar) -> None:
                    # a resumed study's finished trials are not this run's: the rate and the ETA leave them out
                    bar.n = bar.last_print_n = bar.initial = finished
                    bar.refresh()

                studies.append(
                    run_study(
                        stage.plan,
                        self.storage,
                        local=self.local,
                        workers=self.workers,
                        progress=update,
                        on_start=started,
                        on_stall=on_stall,
                        on_failure=failure,
                    )
                )
        return self.document(studies)

    def document(self, studies: list[optuna.Study]) -> dict:
        trials, failed, folds = [], [], []
        for stage, study in zip(self.stages, studies, strict=True):
            trials += trial_rows(study, stage.plan.fold)
            failed += failed_rows(study, stage.plan.fold)
            if stage.fold:
                folds.append(self._fold(stage, study))
        last = studies[-1]
        best = _best_trial(last)
        params = best.params if best else {}
        start, end = self.config["from"], self.config["to"]
        # the best trial's own run (its value is best_value): with walk-forward, on the last fold's in-sample part
        best_from, best_to = self.stages[-1].fold["in_sample"] if folds else (start, end)
        curve = best.user_attrs[RESULT]["equity"] if best else []
        return {
            "study": self.name,
            "objective": self.problem.objective,
            "strategy": self.config["strategy"],
            "files": self.problem.files,
            "space": self.config["space"],
            "from": iso(self.start),
            "to": iso(self.end),
            "best_params": params,
            "best_value": best.value if best else None,
            "best_trial": best.number if best else None,
            "trials": trials,
            "failed": failed,
            "walk_forward": folds,
            "importance": importance(last),
            "warnings": _warnings(studies, best),
            "equity_curve": curve,
            "equity_from": iso(best_from if best_from is not None else self.start),
            "equity_to": iso(best_to if best_to is not None else self.end),
            "backtest_command": backtest_command(self.problem, params, best_from, best_to) if best else None,
            # walk-forward: the last fold's best parameters over the whole period (not what best_value measured)
            "whole_period_command": backtest_command(self.problem, params, start, end) if best and folds else None,
        }

    def _fold(self, stage: Stage, study: optuna.Study) -> dict:
        """The fold's best in-sample trial, scored on the out-of-sample candles that follow."""
        best = _best_trial(study)
        inside_from, inside_to = stage.fold["in_sample"]
        out_from, out_to = stage.fold["out_of_sample"]
        inside = best.user_attrs[RESULT] if best else {}
        out = evaluate(self.problem, best.params, out_from, out_to) if best else {}

        def figures(result: dict, begin: int, finish: int) -> dict:
            return {
                "from": iso(begin),
                "to": iso(finish),
                "from_ms": begin,
                "to_ms": finish,
                "value": result.get("value"),
                "trades": result.get("trades"),
                "max_drawdown": result.get("max_drawdown_pct"),
                "total_return_pct": result.get("total_return_pct"),
                "candles": result.get("candles"),
            }

        return {
            "fold": stage.plan.fold,
            "study": stage.plan.study,
            "best_params": best.params if best else {},
            "in_sample": figures(inside, inside_from, inside_to),
            "out_of_sample": figures(out, out_from, out_to),
        }

    def save(self, document: dict):
        from .models import OptimizationRun

        run, _ = OptimizationRun.objects.update_or_create(
            study=self.name,
            defaults={
                "strategy": self.config["strategy"],
                "objective": self.problem.objective,
                "files": self.problem.files,
                "space": self.config["space"],
                "trials": len(document["trials"]),
                "walk_forward": self.config["walk_forward"],
                "best_params": document["best_params"],
                "best_value": document["best_value"],
                "backtest_command": document["backtest_command"] or "",
                "report": document,
            },
        )
        return run


def _warnings(studies: list[optuna.Study], best) -> list[str]:
    """The backtest's warnings once per study: the best trial's (else the first warned trial's), with how many of
    the finished trials met one."""
    finished = [t for study in studies for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    warned = [t for t in finished if (t.user_attrs.get(RESULT) or {}).get("warnings")]
    if not warned:
        return []
    shown = best if best in warned else warned[0]
    return [
        f"{w} (in {len(warned)} of {counted(len(finished), 'trial')})" for w in shown.user_attrs[RESULT]["warnings"]
    ]


def _best_trial(study: optuna.Study):
    try:
        return study.best_trial
    except ValueError:  # no complete trial
        return None

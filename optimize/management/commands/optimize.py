"""`manage.py optimize`: tune a strategy's and the risk layers' parameters with Optuna, one backtest per trial,
the trials run by the workers of the ``optimize`` queue (or in this process with ``--local``)."""

from __future__ import annotations

import shlex
import signal
import sys
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from execution.run_settings import CAPITAL_RANGE, checked_decimal
from ground.amounts import counted
from ground.numbers import SEED, number_option
from trading.management.commands.backtest import date_ms
from trading.strategies import build_strategy, parse_spec

from ...objectives import OBJECTIVES
from ...space import SpaceError, parse_space

DEFAULT_TRIALS = 100
WHOLE = number_option(whole=True)  # the rule for a typed number; the ranges are checked (and said) below
# Optuna stores at most 512 characters; a walk-forward fold's study adds ".foldK"
MAX_STUDY_NAME = 500
EXIT_NO_COMPLETE = 4  # every finished trial was pruned: no best parameters
# What defines a study: resuming it with other values of these would mix two problems in one study.
PROBLEM_ARGS = ("files", "strategy", "space", "objective", "capital", "min_trades", "walk_forward", "from", "to")


def _date_ms(text: str | None, option: str) -> int | None:
    return None if text is None else date_ms(text, option)


class Command(BaseCommand):
    requires_system_checks = []  # as `backtest`: no URL/view imports for a command that serves none
    help = (
        "Optimize a strategy's and the risk layers' parameters with Optuna (TPE): each trial is one backtest, run "
        "by the workers of the optimize queue (celery -A cdb_project worker -Q optimize -P solo) or here with --local. "
        "Resumable: --study NAME continues a study after a crash or Ctrl-C."
    )

    def add_arguments(self, parser):
        parser.add_argument("--data", nargs="+", metavar="FILE", help="SYMBOL-INTERVAL.csv files")
        parser.add_argument("--strategy", default=None, help="registered strategy, optionally name:key=value,…")
        parser.add_argument(
            "--space",
            action="append",
            default=[],
            metavar="NAME=LOW:HIGH[:int|float|log]",
            help="a searched parameter (strategy, SPEC §4 risk parameter or POSITION_SIZE_PCT); repeat",
        )
        parser.add_argument(
            "--trials", type=WHOLE, default=None, help=f"finished trials wanted (default {DEFAULT_TRIALS})"
        )
        parser.add_argument("--objective", choices=OBJECTIVES, default=None, help="maximised (default sharpe)")
        parser.add_argument("--capital", default=None, help="initial cash (default INITIAL_CAPITAL)")
        parser.add_argument("--min-trades", type=WHOLE, default=None, help="fewer closed trades: pruned (default 0)")
        parser.add_argument("--walk-forward", type=WHOLE, default=None, metavar="K", help="K walk-forward folds")
        parser.add_argument("--from", dest="date_from", default=None, help="first candle time (UTC date/time)")
        parser.add_argument("--to", dest="date_to", default=None, help="last candle time (UTC date/time)")
        parser.add_argument("--study", default=None, help="study name: a new one, or an existing one to resume")
        where = parser.add_mutually_exclusive_group()
        where.add_argument("--workers", type=WHOLE, default=2, help="worker processes taking trials (default 2)")
        where.add_argument("--local", action="store_true", help="run the trials in this process")
        parser.add_argument("--seed", type=SEED, default=None, help="the sampler's seed")
        parser.add_argument("--json", dest="json_out", default=None, metavar="OUT.json")
        parser.add_argument("--html", dest="html_out", default=None, metavar="OUT.html")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **options):
        import optuna

        from ...storage import get_storage

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = get_storage()
        name = options["study"] or f"{datetime.now(UTC):%Y%m%d-%H%M%S}"
        if len(name) > MAX_STUDY_NAME:
            raise CommandError(
                f"--study: {len(name)} characters, at most {MAX_STUDY_NAME} (Optuna's limit, less a fold's suffix)",
                returncode=2,
            )
        stored = _stored_config(storage, name)
        config = self._config(options, stored)
        if options["trials"] is not None and options["trials"] < 1:
            raise CommandError("--trials must be at least 1", returncode=2)
        if options["workers"] < 1:
            raise CommandError("--workers must be at least 1", returncode=2)
        for option, path in (("--json", options["json_out"]), ("--html", options["html_out"])):
            if path is not None:
                _check_writable(option, Path(path))
        from ...lock import StudyBusy, study_lock

        try:
            with study_lock(storage, name):
                self._run(name, config, stored, storage, options)
        except StudyBusy:
            raise CommandError(
                f"study {name!r} is being run by another optimize command; wait for it to end (or stop it: "
                "Ctrl-C), then resume",
                returncode=2,
            ) from None

    def _run(self, name: str, config: dict, stored: dict | None, storage, options: dict) -> None:
        from ...driver import Driver

        local = options["local"] or settings.EMBEDDED
        driver = Driver(name, config, storage, local=local, workers=options["workers"], seed=options["seed"])
        driver.prepare(stored)
        from ...runner import Interrupted, TrialFailed

        self.stdout.write(
            f"study {name}: {counted(config['trials'], 'trial')}, {config['objective']}, {config['strategy']}"
        )
        stopped_by: list[int] = []

        def terminate(signum, frame) -> None:  # Ctrl-C, and SIGTERM (kill, systemd, docker stop) as Ctrl-C
            stopped_by.append(signum)
            raise KeyboardInterrupt  # (swallowed if it lands in a finalizer: then `stopping` stops the run)

        previous = {signum: signal.signal(signum, terminate) for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            document = driver.run(
                progress=not options["no_progress"],
                on_stall=lambda: _check_workers(self.stderr),
                stopping=lambda: bool(stopped_by),
            )
        except (Interrupted, KeyboardInterrupt):  # (the latter: while the report was being made)
            self.stderr.write(f"Stopped. Finished trials are kept. Resume with: {_resume(name, local)}")
            sys.exit(128 + (stopped_by[0] if stopped_by else signal.SIGINT))
        except TrialFailed as error:
            raise CommandError(
                f"{error}. Finished trials are kept; fix the cause and resume with: {_resume(name, local)}"
            ) from None
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        self._print(document)
        if options["json_out"]:
            from ...report import json_text

            Path(options["json_out"]).write_text(json_text(document))
            self.stdout.write(f"JSON report: {options['json_out']}")
        if options["html_out"]:
            from ...report import html_page

            Path(options["html_out"]).write_text(html_page(document))
            self.stdout.write(f"HTML report: {options['html_out']}")
        run = driver.save(document)
        self.stdout.write(f"saved as optimization run #{run.pk}")
        pruned = ""
        if document["trials"] and document["best_value"] is None:
            reasons = Counter(t["pruned"] for t in document["trials"])
            why = "; ".join(f"{count} × {reason}" for reason, count in reasons.most_common(3))
            pruned = f"no complete trial: all {len(document['trials'])} were pruned ({why})"
        if document["failed"]:  # (first: the failed trials' parameters are asked again by the line it gives)
            raise CommandError(
                f"{counted(len(document['failed']), 'trial')} failed (their errors above and in the report's "
                "'failed'); fix the cause, then an extended run asks their parameters again first: "
                f"{_resume(name, local)} --trials {config['trials'] + len(document['failed'])}"
                + (f". Also {pruned}" if pruned else ""),
                returncode=3,
            )
        if pruned:
            raise CommandError(f"{pruned}; widen the space or relax --min-trades", returncode=EXIT_NO_COMPLETE)

    def _config(self, options: dict, stored: dict | None) -> dict:
        """The study's arguments: from the options, checked against the stored ones when resuming; with no
        --data, a stored study's own."""
        if options["data"] is None:
            if stored is None:
                raise CommandError(
                    "--data is required (only an existing study resumes with --study NAME alone)", returncode=2
                )
            config = dict(stored)
        else:
            config = self._from_options(options)
            if stored is not None:
                differ = [k for k in PROBLEM_ARGS if stored.get(k) != config.get(k)]
                if differ:
                    raise CommandError(
                        f"study {options['study']!r} exists with other {', '.join(differ)}: resume it with "
                        f"--study {options['study']} alone, or choose another name",
                        returncode=2,
                    )
                config["problem"] = stored["problem"]
        if stored is not None and "file_stamps" in stored:
            changed = [f for f, stamp in stored["file_stamps"].items() if _file_stamp(f) != stamp]
            if changed:
                raise CommandError(
                    f"study {options['study']!r}: {', '.join(changed)} changed since the study began (size or "
                    "modification time): its trials would not be comparable; start a new study",
                    returncode=2,
                )
        if options["trials"] is not None:
            config["trials"] = options["trials"]
        return config

    def _from_options(self, options: dict) -> dict:
        spec = options["strategy"] or settings.STRATEGY
        try:
            strategy, fixed = parse_spec(spec)
            build_strategy(strategy, **fixed)
            dimensions = parse_space(strategy, options["space"])
        except (SpaceError, ValueError) as error:
            raise CommandError(str(error), returncode=2) from None
        for dimension in dimensions:
            if dimension.name in fixed:
                raise CommandError(f"--space {dimension.name}: also fixed in --strategy {spec}", returncode=2)
        capital_text = options["capital"] or str(settings.INITIAL_CAPITAL)
        try:
            capital = checked_decimal("--capital", capital_text, *CAPITAL_RANGE)
        except ValueError as error:
            raise CommandError(str(error), returncode=2) from None
        min_trades = options["min_trades"] or 0
        if min_trades < 0:
            raise CommandError("--min-trades cannot be negative", returncode=2)
        walk_forward = options["walk_forward"] or 0  # (0: no walk-forward, when the option is not given)
        if options["walk_forward"] is not None and options["walk_forward"] < 1:
            raise CommandError(
                f"--walk-forward {options['walk_forward']}: needs at least 1 fold (leave the option out for none)",
                returncode=2,
            )
        start, end = _date_ms(options["date_from"], "--from"), _date_ms(options["date_to"], "--to")
        if start is not None and end is not None and start > end:
            raise CommandError("--from is after --to", returncode=2)
        files = []
        for raw in options["data"]:
            path = Path(raw)
            if not path.is_file():
                raise CommandError(f"{raw}: no such file", returncode=2)
            files.append(str(path.resolve()))
        return {
            "files": files,
            "strategy": spec,
            "space": [d.as_dict() | {"target": d.target} for d in dimensions],
            "space_args": options["space"],
            "objective": options["objective"] or "sharpe",
            "capital": str(capital),
            "min_trades": min_trades,
            "walk_forward": walk_forward,
            "from": start,
            "to": end,
            "trials": DEFAULT_TRIALS,
            "file_stamps": {f: _file_stamp(f) for f in files},  # a resume refuses files changed since
            "problem": _problem(files, strategy, fixed, capital_text, options, min_trades),
        }

    def _print(self, document: dict) -> None:
        failed = f", {len(document['failed'])} failed" if document["failed"] else ""
        self.stdout.write(f"{counted(len(document['trials']), 'trial')} finished{failed}")
        self.stdout.write(f"best {document['objective']}: {document['best_value']}")
        for key, value in document["best_params"].items():
            self.stdout.write(f"  {key} = {value}")
        for fold in document["walk_forward"]:
            inside, out = fold["in_sample"], fold["out_of_sample"]
            self.stdout.write(
                f"  fold {fold['fold']}: in-sample {inside['value']} ({counted(inside['trades'], 'trade')}) · "
                f"out-of-sample {out['value']} ({counted(out['trades'], 'trade')})"
            )
        for warning in document["warnings"]:
            self.stdout.write(f"WARNING: {warning}")
        if document["backtest_command"]:
            window = (
                " on the last fold's in-sample part (reproduces the best value)" if document["walk_forward"] else ""
            )
            self.stdout.write(f"backtest the best parameters{window}:")
            self.stdout.write(document["backtest_command"])
        if document["whole_period_command"]:
            self.stdout.write("the last fold's best parameters over the whole period (not the best value's run):")
            self.stdout.write(document["whole_period_command"])


def _file_stamp(path: str) -> list[int] | None:
    """A data file's size and modification time (ns); None: it is gone."""
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def _check_writable(option: str, path: Path) -> None:
    """A report path the command could not write at the end (after the whole study) is refused before it."""
    import os

    folder = path.parent
    if path.is_dir():
        reason = "is a directory"
    elif not folder.is_dir():
        reason = f"its folder {folder} does not exist"
    elif not os.access(path if path.exists() else folder, os.W_OK):
        reason = "is not writable" if path.exists() else f"its folder {folder} is not writable"
    else:
        return
    raise CommandError(f"{option} {path}: {reason}", returncode=2)


def _resume(study: str, local: bool) -> str:
    return shlex.join(["python", "manage.py", "optimize", "--study", study, *(["--local"] if local else [])])


def _problem(files: list[str], strategy: str, fixed: dict, capital: str, options: dict, min_trades: int) -> dict:
    """Everything the backtest depends on, resolved here (this process's settings) and sent with every trial."""
    from ...trial import Problem

    return Problem(
        files=files,
        strategy=strategy,
        strategy_params=fixed,
        risk={name: str(seed.value) for name, seed in settings.RISK_PARAMETER_SEEDS.items()},
        size_pct=str(settings.POSITION_SIZE_PCT),
        capital=str(Decimal(capital)),
        slippage_pct=str(settings.PAPER_SLIPPAGE_PCT),
        fee_rate=str(settings.FEE_RATE),
        max_volume_share=str(settings.PAPER_MAX_VOLUME_SHARE),
        paper_seed=settings.PAPER_SEED,
        whitelist=list(settings.SYMBOL_WHITELIST),
        objective=options["objective"] or "sharpe",
        min_trades=min_trades,
    ).as_dict()


def _stored_config(storage, name: str) -> dict | None:
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return None
    return storage.get_study_user_attrs(study_id).get("config")


def _check_workers(stderr) -> None:
    """Warn (not fail: one may start them next) when no worker answers for the optimize queue (asked when no
    result came for a while, so a healthy run does not wait for the answers)."""
    from cdb_project.celery import app

    try:
        queues = app.control.inspect(timeout=1.0).active_queues() or {}
    except Exception:  # noqa: BLE001 - a broker problem shows when the first trial is sent
        return
    if not any(q["name"] == "optimize" for worker in queues.values() for q in worker):
        stderr.write(
            "WARNING: no worker takes the optimize queue yet; start one with: "
            "celery -A cdb_project worker -Q optimize -P solo -n optimize1@%h -l INFO (one per core, each with its "
            "own -n name: optimize2@%h, …; or run with --local)"
        )

"""`manage.py backtest`: the live strategy, risk layers and paper fills over recorded candles, in one process."""

from __future__ import annotations

import gc
import json
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from cdb_project.standalone import ensure_apps
from execution.paper import PaperExchange
from execution.run_settings import CAPITAL_RANGE, SIZING_RANGE, checked_decimal, run_settings_problem
from ground.numbers import SEED
from risk.operator_commands import OperatorCommandsError, OperatorSchedule, read_operator_commands
from risk.parameters import PARAMETER_SPECS
from trading.backtest import Backtest, BacktestInputError, read_bars, watched_series
from trading.backtest_report import amounts, html_report, refused_entries, report
from trading.strategies import build_strategy, parse_spec
from trading.strategies.signals_file import SignalsFileError

SIZING = "POSITION_SIZE_PCT"
HTML_MAX_BARS = 5000  # per symbol in --html: longer runs are resampled to coarser bars


def date_ms(text: str, option: str) -> int:
    """``--from``/``--to``: an ISO date or date-time (UTC unless it says otherwise) as epoch ms; else exit 2."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"{option} {text!r}: use a date like 2018-01-31 or 2018-01-31T12:00", returncode=2) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _decimal(name: str, text: str, low: Decimal, high: Decimal) -> Decimal:
    try:
        return checked_decimal(name, text, low, high)
    except ValueError as error:
        raise CommandError(str(error), returncode=2) from None


def _output_dir(option: str, path: str | None) -> None:
    """Refuse an output file whose directory is not there before the run, not after it."""
    if path is not None and not Path(path).parent.is_dir():
        raise CommandError(f"{option} {path}: no such directory", returncode=2)


def _write(option: str, path: str, text: str) -> None:
    try:
        Path(path).write_text(text)
    except OSError as error:  # not writable, a directory, /proc, a full disk …
        raise CommandError(f"{option} {path}: {error.strerror or error}", returncode=2) from None


def _json_text(document: dict) -> str:
    """The report as JSON, one top-level key a line. (``indent`` makes json use its pure-Python encoder: ten times
    slower, 0.4 s on a run of the six shared files with its orders and risk events.)"""
    return "{\n" + ",\n".join(f"{json.dumps(key)}: {json.dumps(value)}" for key, value in document.items()) + "\n}\n"


def _unmatched_signals(strategy, open_times: dict, start: int | None, end: int | None) -> str | None:
    """A signals file's rows that no candle of the run (within --from/--to) met, said (None: all met one)."""
    if not hasattr(strategy, "unmatched_warning"):
        return None
    low, high = start if start is not None else -(2**62), end if end is not None else 2**62
    return strategy.unmatched_warning(
        {key: set(times[(times >= low) & (times <= high)].tolist()) for key, times in open_times.items()}
    )


def _rows_in(paths: list[str]) -> int:
    """About how many candles the files have, for the progress bar: their lines but the header (0: not a CSV)."""
    return sum(max(0, Path(p).read_bytes().count(b"\n") - 1) for p in paths if Path(p).suffix == ".csv")


def _progress_bar(total: int):
    """tqdm's bar, drawn by this process alone: with a thread lock (tqdm's default one also makes a
    multiprocessing lock, importing multiprocessing, to share the terminal with child processes) and no monitor
    thread (it wakes bars that went quiet for 10 s; this one is updated at every candle time)."""
    import threading

    from tqdm import tqdm

    class Bar(tqdm):
        monitor_interval = 0

    Bar.set_lock(threading.RLock())
    return Bar(total=total, unit="candle", file=sys.stderr)


class Command(BaseCommand):
    # The system checks import every URL and view (the API schema, the dashboard): a third of the start-up of a
    # command that serves none of them. `manage.py check` (and every server's start) still runs them.
    requires_system_checks = []
    help = (
        "Backtest a strategy over SYMBOL-INTERVAL.csv files with all six risk layers and the paper fill model: "
        "the same decision code as live. Progress on stderr, a summary on stdout."
    )

    def add_arguments(self, parser):
        parser.add_argument("--data", nargs="+", required=True, metavar="FILE", help="SYMBOL-INTERVAL.csv files")
        parser.add_argument("--strategy", default=None, help="registered strategy (default: the STRATEGY setting)")
        parser.add_argument("--capital", default=None, help="initial cash (default INITIAL_CAPITAL, 10000)")
        parser.add_argument("--from", dest="date_from", default=None, help="first candle time (UTC date/time)")
        parser.add_argument("--to", dest="date_to", default=None, help="last candle time (UTC date/time)")
        parser.add_argument(
            "--param",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="a risk parameter (MAX_POSITION_PCT=0.2), POSITION_SIZE_PCT, or a strategy parameter (fast=10)",
        )
        parser.add_argument("--failure-rate", default="0", help="paper failure rate (default 0: no failures)")
        parser.add_argument("--seed", type=SEED, default=settings.PAPER_SEED, help="paper exchange seed")
        parser.add_argument("--json", dest="json_out", default=None, metavar="OUT.json")
        parser.add_argument("--html", dest="html_out", default=None, metavar="OUT.html")
        parser.add_argument("--save", action="store_true", help="store the run (admin, /api/backtests/)")
        parser.add_argument("--no-progress", action="store_true")
        parser.add_argument(
            "--operator-commands",
            default=None,
            metavar="FILE",
            help="a CSV of timestamp_ms,command[,reason] (halt, halt_close, release), each given at its market time "
            "as a person would (as run_feed --source replay --operator-commands)",
        )

    def handle(self, *args, **options):
        strategy_spec = options["strategy"] or settings.STRATEGY
        try:
            name, strategy_params = parse_spec(strategy_spec)
        except ValueError as error:
            raise CommandError(str(error), returncode=2) from None
        paper = ("PAPER_SLIPPAGE_PCT", "FEE_RATE", "PAPER_MAX_VOLUME_SHARE", "POSITION_SIZE_PCT")
        problem = run_settings_problem({name: getattr(settings, name) for name in paper})
        if problem:
            raise CommandError(problem, returncode=2)
        risk = {n: seed.value for n, seed in settings.RISK_PARAMETER_SEEDS.items()}
        size_pct = Decimal(settings.POSITION_SIZE_PCT)
        for item in options["param"]:
            key, sep, value = item.partition("=")
            key, value = key.strip(), value.strip()
            if not sep or not key or not value:
                raise CommandError(f"--param {item!r}: expected NAME=VALUE", returncode=2)
            if key.upper() in PARAMETER_SPECS:
                try:
                    risk[key.upper()] = PARAMETER_SPECS[key.upper()].check(value)
                except ValueError as error:
                    raise CommandError(f"--param {error}", returncode=2) from None
            elif key.upper() == SIZING:
                size_pct = _decimal(SIZING, value, *SIZING_RANGE)
            else:
                strategy_params[key] = value
        try:
            strategy = build_strategy(name, **strategy_params)  # validates name and parameters before any work
        except ValueError as error:
            raise CommandError(str(error), returncode=2) from None
        if options["capital"] is None:
            capital = _decimal("INITIAL_CAPITAL", settings.INITIAL_CAPITAL, *CAPITAL_RANGE)
        else:
            capital = _decimal("--capital", options["capital"], *CAPITAL_RANGE)
        failure_rate = _decimal("--failure-rate", options["failure_rate"], Decimal(0), Decimal(1))
        start = date_ms(options["date_from"], "--from") if options["date_from"] else None
        end = date_ms(options["date_to"], "--to") if options["date_to"] else None
        if start is not None and end is not None and start > end:
            raise CommandError("--from is after --to", returncode=2)
        schedule = OperatorSchedule()
        if options["operator_commands"]:
            try:
                schedule = OperatorSchedule(read_operator_commands(options["operator_commands"]))
            except OperatorCommandsError as error:
                raise CommandError(f"--operator-commands: {error}", returncode=2) from None
        _output_dir("--json", options["json_out"])
        _output_dir("--html", options["html_out"])
        if options["save"] or options["html_out"]:
            ensure_apps()  # the ORM: `manage.py backtest` runs without the app registry (cdb_project/standalone.py)

        exchange = PaperExchange(
            slippage_pct=Decimal(settings.PAPER_SLIPPAGE_PCT),
            fee_rate=Decimal(settings.FEE_RATE),
            failure_rate=failure_rate,
            seed=options["seed"],
            max_volume_share=Decimal(settings.PAPER_MAX_VOLUME_SHARE),
        )
        backtest = Backtest(
            lambda: build_strategy(name, **strategy_params),
            risk,
            capital,
            exchange,
            size_pct,
            whitelist=frozenset(settings.SYMBOL_WHITELIST),
            operator=schedule,
        )
        # The run makes millions of objects and next to no cycles (the six shared files: 485 objects found in 111
        # collections, the same peak RSS without them), so the collector is off while it runs: its collections were
        # 3.6 % of the command's instructions. Frozen first: what start-up left for it may stay (a one-shot process).
        gc.freeze()
        collecting = gc.isenabled()
        gc.disable()
        rejected: dict[str, int] = {}
        try:
            series: dict = {}
            open_times: dict = {}
            bars = read_bars(options["data"], rejected, series, open_times)
            backtest.watched = watched_series(series, settings.SYMBOL_WHITELIST)
            if start is not None or end is not None:
                bars = (
                    b
                    for b in bars
                    if (start is None or b.row.timestamp >= start) and (end is None or b.row.timestamp <= end)
                )
            if options["no_progress"]:  # no bar: tqdm (and the multiprocessing lock it makes) not even imported
                result = backtest.run(bars)
            else:
                with _progress_bar(_rows_in(options["data"])) as bar:
                    result = backtest.run(bars, progress=bar.update)
        except BacktestInputError as error:
            raise CommandError(str(error), returncode=2) from None
        except SignalsFileError as error:  # each series builds its strategy at its first candle, reading the file
            raise CommandError(f"{error} (during the run: keep the signals file until it ends)", returncode=1) from None
        finally:
            if collecting:
                gc.enable()
        if result.candles == 0:
            raise CommandError(
                f"no valid candles in the given files and dates{_off_grid(options['data'])}", returncode=2
            )

        parameters = {**risk, SIZING: size_pct, **{f"strategy.{k}": v for k, v in strategy_params.items()}}
        document = report(result, strategy=name, parameters=parameters, files=options["data"])
        document["rejected_rows"] = rejected
        unmatched = _unmatched_signals(strategy, open_times, start, end)  # the rows as read at the start
        if unmatched:
            document["summary"]["warnings"].append(unmatched)
        if schedule.not_given():
            document["summary"]["warnings"].append(schedule.not_given())
        self._print_summary(document)
        if options["json_out"]:
            _write("--json", options["json_out"], _json_text(document))
            self.stdout.write(f"JSON report: {options['json_out']}")
        if options["html_out"]:
            from trading.chart_service import backtest_chart  # the ORM's chart code: only for --html

            charts = {}
            for symbol in sorted({Path(p).name.split("-")[0] for p in options["data"]}):
                charts[symbol] = backtest_chart(document, symbol, max_bars=HTML_MAX_BARS)
            try:
                page = html_report(document, charts)
            except FileNotFoundError as error:
                raise CommandError(str(error), returncode=2) from None
            _write("--html", options["html_out"], page)
            self.stdout.write(f"HTML report: {options['html_out']}")
        if options["save"]:
            from trading.models import BacktestRun

            run = BacktestRun.objects.create(
                strategy=name,
                parameters=document["parameters"],
                files=options["data"],
                initial_capital=capital,
                final_equity=result.final_equity,
                candles=result.candles,
                total_return_pct=Decimal(document["summary"]["total_return_pct"]).quantize(Decimal("1e-6")),
                report=document,
            )
            self.stdout.write(f"saved as backtest run #{run.pk}")

    def _print_summary(self, document: dict) -> None:
        """For people: amounts in the quote currency's places (the JSON report keeps them exact)."""
        from ground.amounts import money, percent

        s = document["summary"]
        shown = amounts(document, trades=False)
        quote = shown["quote"]

        def pct(value):
            return percent(value, fraction=False)

        refused, because = refused_entries(document)

        rows = [
            ("candles", f"{document['candles']} in {shown['seconds']}"),
            ("initial capital", shown["initial_capital"]),
            ("final equity", shown["final_equity"]),
            ("total return", pct(s["total_return_pct"])),
            ("max drawdown", pct(s["max_drawdown_pct"])),
            ("trades (closed / open)", f"{s['trades']} / {s['open_trades']}"),
            ("orders (filled / all)", f"{s['orders_filled']} / {s['orders']}"),
            ("entries refused", f"{refused}: {because}" if refused else "0"),
            ("win rate", percent(s["win_rate"], 1)),
            ("profit factor", shown["profit_factor"]),
            ("sharpe", shown["sharpe"]),
            ("fees paid", shown["fees_paid"]),
            ("time in market", pct(s["time_in_market_pct"])),
            ("final trading state", s["trading_state"]),
        ]
        width = max(len(label) for label, _ in rows)
        for label, value in rows:
            self.stdout.write(f"{label:<{width}}  {value}")
        for warning in s.get("warnings", []):
            self.stdout.write(f"WARNING: {warning}")
        for symbol, item in s["per_symbol"].items():
            self.stdout.write(
                f"  {symbol:<12} trades {item['trades']:>4}  win {percent(item['win_rate'], 1):>7}"
                f"  P&L after fees {money(item['profit_loss'], quote, unit=True, sign=True)}"
            )


def _off_grid(paths: list[str]) -> str:
    """The first file's time off its interval's grid, said with a refusal for want of candles ("" for none)."""
    from marketdata.validation import off_grid_hint, parse_file_name

    for path in paths:
        named = parse_file_name(path)
        if named is None or not path.endswith(".csv"):
            continue
        with open(path, encoding="utf-8", errors="replace", newline="") as handle:
            hint = off_grid_hint(handle, named[1])
        if hint:
            return f" ({Path(path).name}: {hint})"
    return ""

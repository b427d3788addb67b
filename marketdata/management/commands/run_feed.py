import shlex
import sys
from argparse import ArgumentTypeError

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from ground.amounts import DEFAULT_QUOTE, counted, mixed_quotes, quote_of
from ground.numbers import SEED, number_option
from marketdata.feeds.sim import DEFAULT_SYMBOLS
from marketdata.feeds.sim_runner import build_market, run_blocking
from marketdata.validation import SYMBOL
from risk.state import no_state_from_the_future


def symbol_list(value: str) -> list[str]:
    symbols = [s.strip().upper() for s in value.split(",") if s.strip()]
    if not symbols:
        raise ValueError("no symbols given")
    return symbols


def check_symbols(symbols: list[str] | None) -> None:
    """A one-line error (exit code 2) for a symbol that is not BASE_QUOTE (it used to fail the event schema at the
    first candle, with a traceback), and for markets of two quote currencies (they would share one account)."""
    for symbol in symbols or []:
        if not SYMBOL.fullmatch(symbol):
            raise CommandError(f"--symbols: {symbol!r} is not a symbol: BASE_QUOTE, e.g. BTC_USDT", returncode=2)
    mixed = mixed_quotes(symbols or [])
    if mixed:
        raise CommandError(f"--symbols refused: {mixed}. Give markets of one quote currency", returncode=2)


SECONDS = number_option(0.001, 3600, cast=float)
BACKFILL = number_option(0, 100_000, whole=True)


def speed_value(value: str) -> float | None:
    if value.strip().lower() == "max":
        return None
    speed = number_option(0, cast=float)(value)
    if not speed > 0:
        raise ArgumentTypeError("speed must be a positive number or max")
    return speed


class Command(BaseCommand):
    help = "Run a market data feed (MEXC live, CSV replay or simulated) that publishes market_data through the bus."

    def add_arguments(self, parser):
        parser.add_argument(
            "--source",
            choices=["mexc", "replay", "sim"],
            default="sim",
            help="mexc: live through ccxt; replay: CSV files; sim: seeded simulated market",
        )
        parser.add_argument("--symbols", type=symbol_list, default=None, help="comma-separated, e.g. BTC_USDT,ETH_USDT")
        parser.add_argument(
            "--interval", default=None, help=f"candle interval (default {settings.INTERVAL}; replay: from file name)"
        )
        parser.add_argument("--data", nargs="+", default=None, metavar="FILE", help="replay: SYMBOL-INTERVAL.csv files")
        parser.add_argument(
            "--speed", type=speed_value, default=None, help="replay: multiple of real time, or max (default)"
        )
        parser.add_argument("--no-publish", action="store_true", help="replay: store only, publish nothing")
        parser.add_argument(
            "--lockstep",
            action="store_true",
            help="replay: publish the next candle only when the pipeline has finished the previous one "
            "(deterministic, same results as the backtest)",
        )
        parser.add_argument("--no-progress", action="store_true", help="replay: no progress bar")
        parser.add_argument(
            "--operator-commands",
            default=None,
            metavar="FILE",
            help="replay: a CSV of timestamp_ms,command[,reason] (halt, halt_close, release), each given at its "
            "market time as a person would (as manage.py backtest --operator-commands)",
        )
        parser.add_argument("--seed", type=SEED, default=7, help="sim: random seed")
        parser.add_argument(
            "--tick-seconds", type=SECONDS, default=1.0, help="sim: real seconds between two simulated candles"
        )
        parser.add_argument("--backfill", type=BACKFILL, default=60, help="sim/mexc: candles published on start")
        parser.add_argument("--steps", type=BACKFILL, default=None, help="sim: stop after this many live candles")
        parser.add_argument(
            "--transport", choices=["auto", "ws", "rest"], default="auto", help="mexc: websocket, REST polling or auto"
        )
        parser.add_argument("--poll-seconds", type=SECONDS, default=5.0, help="mexc: REST polling period")

    def handle(self, *args, **options):
        from cdb_project.ops import freeze_startup_objects

        freeze_startup_objects()
        check_symbols(options["symbols"])
        feed_lock = _hold_feed(options)
        try:
            source = options["source"]
            if source == "replay":
                return self.replay(options)
            if source == "mexc":
                return self.mexc(options)
            return self.sim(options)
        finally:
            if feed_lock is not None:
                feed_lock.release()

    # --- replay ---------------------------------------------------------------------------------------
    def replay(self, options):
        from tqdm import tqdm

        from ground.bus import wait_until_idle
        from marketdata.feeds.replay import Replay, ReplayError, count_lines, resolve_sources
        from marketdata.watchlist import register_feed_symbols
        from risk.data_stale import StaleWatch
        from risk.decision_service import expire_waiting_orders

        try:
            sources = resolve_sources(options["data"] or [], options["symbols"], options["interval"])
        except ReplayError as error:
            raise CommandError(str(error), returncode=2) from None
        _check_strategy()
        _check_run_settings()
        _create_tables_of_a_new_database(self.stdout.write)
        _check_replay_fits(sources)
        publish = not options["no_publish"]
        schedule = _operator_schedule(options["operator_commands"])
        symbols = sorted({s.symbol for s in sources})
        register_feed_symbols(symbols, "replay")
        progress = tqdm(
            total=count_lines(sources),
            unit="row",
            desc="replay",
            file=sys.stderr,
            disable=options["no_progress"],
            mininterval=0.5,
        )
        watch = StaleWatch(
            watched=[s for s in symbols if not settings.SYMBOL_WHITELIST or s in settings.SYMBOL_WHITELIST],
            on_without_data=expire_waiting_orders,  # as the backtest's watch: orders that can get no price expire
        )
        replay = Replay(
            sources,
            speed=options["speed"],
            publish=publish,
            stale_watch=watch if publish else None,
            tick=progress.update,
            after_event=wait_until_idle if options["lockstep"] else None,
            before_time=_giver(schedule, watch) if schedule and publish else None,
            on_start=no_state_from_the_future,  # a fresh database's state: since the replay's start, not wall time
        )
        before = _pipeline_counts()
        try:
            summary = replay.run()
        except KeyboardInterrupt:
            progress.close()
            self.stdout.write("stopped")
            summary = replay.summary
        progress.close()
        for line in summary.lines():
            self.stdout.write(line)
        signals, orders, errors = (after - then for after, then in zip(_pipeline_counts(), before, strict=True))
        self.stdout.write(f"signals:         {signals}")
        self.stdout.write(f"orders:          {orders}")
        self.stdout.write(f"errors:          {errors}")
        try:
            unmatched = _unmatched_signals(sources) if publish else None
        except ValueError as error:  # the signals file, gone or changed since the start
            raise CommandError(
                f"{error} (during the replay: keep the signals file until it ends; "
                f"{counted(errors, 'consumer task')} failed)",
                returncode=1,
            ) from None
        if unmatched:
            self.stdout.write(self.style.WARNING(f"WARNING: {unmatched}"))
        not_given = schedule.not_given() if schedule is not None else None
        if not_given:
            self.stdout.write(self.style.WARNING(f"WARNING: {not_given}"))
        if not options["lockstep"] and publish:
            self.stdout.write("(without --lockstep the workers may still be deciding: these counts are so far)")
        if summary.rows_read and summary.rows_read == summary.rejected_total:
            raise CommandError(f"no valid candles in the given files{_off_grid(sources)}", returncode=2)
        if errors:
            raise CommandError(
                f"replayed {counted(len(sources), 'file')}: {counted(summary.stored, 'new candle')}, but "
                f"{counted(errors, 'consumer task')} failed: see the workers' log (or this one, embedded)",
                returncode=1,
            )
        self.stdout.write(
            self.style.SUCCESS(f"replayed {counted(len(sources), 'file')}: {counted(summary.stored, 'new candle')}")
        )

    # --- live MEXC ------------------------------------------------------------------------------------
    def mexc(self, options):
        from marketdata.feeds.mexc_runner import run_live

        symbols = options["symbols"] or list(settings.SYMBOL_WHITELIST) or ["BTC_USDT"]
        check_quote_fits(symbols)
        try:
            run_live(
                symbols,
                options["interval"] or settings.INTERVAL,
                transport=options["transport"],
                backfill=options["backfill"],
                poll_seconds=options["poll_seconds"],
                report=self.stdout.write,
            )
        except ValueError as error:
            raise CommandError(str(error), returncode=2) from None
        except KeyboardInterrupt:
            self.stdout.write("stopped")

    # --- simulated ------------------------------------------------------------------------------------
    def sim(self, options):
        if options["tick_seconds"] < 0 or options["backfill"] < 0:
            raise CommandError("--tick-seconds and --backfill must not be negative", returncode=2)
        symbols = options["symbols"] or list(DEFAULT_SYMBOLS)
        check_quote_fits(symbols)
        try:
            plan = build_market(symbols, options["seed"], options["interval"] or settings.INTERVAL, options["backfill"])
        except ValueError as error:
            raise CommandError(str(error), returncode=2) from None
        self.stdout.write(plan.describe())
        try:
            published = run_blocking(
                plan.market,
                plan.backfill,
                options["tick_seconds"],
                options["steps"],
                report=self.stdout.write,
                on_start=no_state_from_the_future,
            )
        except KeyboardInterrupt:
            self.stdout.write("stopped")
            return
        self.stdout.write(self.style.SUCCESS(f"published {counted(published, 'candle')}"))


def _pipeline_counts() -> tuple[int, int, int]:
    """Signals and orders stored, and consumer tasks failed for good, so far."""
    from execution.models import Order
    from ground.bus import consumer_failures
    from trading.models import Signal

    return Signal.objects.count(), Order.objects.count(), consumer_failures()


def _unmatched_signals(sources) -> str | None:
    """A signals file's rows that no replayed candle met, said (None: all met one, or no signals file)."""
    from marketdata.candle_files import read_file
    from trading.strategies import strategy_from_spec

    strategy = strategy_from_spec(settings.STRATEGY)
    if not hasattr(strategy, "unmatched_warning"):
        return None
    open_times: dict[tuple[str, str], set[int]] = {}
    for source in sources:  # read again, validated as replayed: only a signals file's run pays for it
        times = read_file(source.path, source.symbol, source.interval).timestamps.tolist()
        open_times.setdefault((source.symbol, source.interval), set()).update(times)
    return strategy.unmatched_warning(open_times)


def _create_tables_of_a_new_database(say) -> None:
    """A replay into a database of its own (``DATABASE_URL=sqlite:///replay.sqlite3``): a new, empty one gets its
    tables first, as ``make run`` migrates its own."""
    from django.core.management import call_command
    from django.db import connection

    if not connection.introspection.table_names():
        say(f"a new database ({connection.settings_dict['NAME']}): creating its tables")
        call_command("migrate", interactive=False, verbosity=0)


def _hold_feed(options):
    """One feed per database (``ground.serve_lock``): a second ``run_feed``, or one into the database whose
    `manage.py serve` (`make run`) runs its own simulated market, took over the first feed's symbols (the data-stale
    watch, the page's freshness), its clock label and its trading day (rolled by candles hours ahead of the market).
    The lock held while this command runs, or refused, exit 2. A `serve --feed none` holds none: its feed is this."""
    from django.db import connection

    from ground.serve_lock import Holder, hold_feed

    held = hold_feed(connection.settings_dict, f"run_feed --source {options['source']}")
    if not isinstance(held, Holder):
        return held
    own = "DATABASE_URL=sqlite:///replay.sqlite3"
    if options["source"] == "replay":
        files = " ".join(shlex.quote(path) for path in options["data"] or [])
        own = f"{own} .venv/bin/python manage.py run_feed --source replay --data {files}"
    name = connection.settings_dict["NAME"]
    feeds = "runs its simulated market on" if held.command == "serve" else "feeds"
    raise CommandError(
        f"refused: `manage.py {held.command}` (pid {held.pid}) {feeds} {name}: a second feed would take over its "
        f"symbols, its market clock and its trading day. Stop it first (Ctrl-C where it runs), or feed a database of "
        f"its own: {own}",
        returncode=2,
    )


def check_quote_fits(symbols: list[str]) -> None:
    """Markets quoted in another currency than the account already stored in this database are refused (exit 2),
    nothing stored: a BTC account's cash buying SOL_USDT, or ETH_BTC bought from USDT cash."""
    from execution.replay_fit import quote_refusal

    reason = quote_refusal(symbols)
    if reason is not None:
        raise CommandError(
            f"refused: {reason}. Feed a database of its own: DATABASE_URL=sqlite:///other.sqlite3", returncode=2
        )


def _check_replay_fits(sources) -> None:
    """A replay that would wreck this database's account (another quote currency; positions held while the replay
    goes back in time) is refused before anything is stored, with a command that works."""
    from execution.replay_fit import replay_refusal

    reason = replay_refusal(sources)
    if reason is None:
        return
    files = " ".join(shlex.quote(str(source.path)) for source in sources)
    capital = "" if quote_of(sources[0].symbol) == DEFAULT_QUOTE else "INITIAL_CAPITAL=1 "
    raise CommandError(
        f"refused: {reason}. Replay into a database of its own: DATABASE_URL=sqlite:///replay.sqlite3 {capital}"
        f".venv/bin/python manage.py run_feed --source replay --data {files}",
        returncode=2,
    )


def _check_run_settings() -> None:
    """The capital, sizing and paper model the consumers use (``execution.run_settings``): a bad one is said before
    anything is stored (INITIAL_CAPITAL=1e30 made every consumer task fail)."""
    from execution.run_settings import RANGES, run_settings_problem

    problem = run_settings_problem({name: getattr(settings, name) for name in RANGES})
    if problem:
        raise CommandError(problem, returncode=2)


def _check_strategy() -> None:
    """The consumers build settings.STRATEGY for every candle: a bad one is said before anything is stored."""
    from trading.strategies import strategy_from_spec

    try:
        strategy_from_spec(settings.STRATEGY)
    except ValueError as error:
        raise CommandError(f"STRATEGY={settings.STRATEGY!r}: {error}", returncode=2) from None


def _operator_schedule(path: str | None):
    """The commands of ``--operator-commands`` (None without it); a bad file is a one-line error (exit 2)."""
    if path is None:
        return None
    from risk.operator_commands import OperatorCommandsError, OperatorSchedule, read_operator_commands

    try:
        return OperatorSchedule(read_operator_commands(path))
    except OperatorCommandsError as error:
        raise CommandError(f"--operator-commands: {error}", returncode=2) from None


def _giver(schedule, watch):
    """The replay's ``before_time``: the commands due before a time's candles, each given at its own market time
    through the same code as the admin, the API and ``manage.py halt``/``release`` (``risk.state``)."""
    from risk.state import operator_command

    def give(now: int) -> None:
        given = False
        for timed in schedule.due(now):
            operator_command(timed.command, timed.timestamp_ms)
            given = True
        if given:  # a person's command may have handed the watch's pause back (``risk.state._hand_back_stale_pause``)
            watch.reload()

    return give


def _off_grid(sources) -> str:
    """The first file's time off its interval's grid, said with a refusal for want of candles ("" for none)."""
    from marketdata.validation import off_grid_hint

    for source in sources:
        with source.path.open(encoding="utf-8", errors="replace", newline="") as handle:
            hint = off_grid_hint(handle, source.interval)
        if hint:
            return f" ({source.path.name}: {hint})"
    return ""

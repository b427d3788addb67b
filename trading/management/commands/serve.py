"""Run the ASGI server (daphne) and, in embedded mode, the simulated feed inside its event loop.

In embedded mode the Channels layer lives in this process's memory, so the feed
must run here for its pushes to reach the browser. With Redis configured, run
the feed as its own process (``manage.py run_feed``) and this only serves.
"""

import asyncio
import os

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from ground import serve_lock
from ground.amounts import counted
from ground.numbers import SEED, typed_whole
from marketdata.feeds.sim import DEFAULT_SYMBOLS
from marketdata.management.commands.run_feed import BACKFILL, SECONDS, check_quote_fits, check_symbols, symbol_list


def port_number(text: str) -> int:
    """The port from ``--port`` or ``$PORT`` (``make run PORT=…``), checked here rather than by argparse so a value
    like ``abc`` or ``1.5`` in the environment is the same one-line error (exit 2) as ``--port 99999``, not a
    traceback while the parser is being built."""
    try:
        port = typed_whole(text)
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise CommandError(f"--port {text}: must be 1–65535", returncode=2)
    return port


def hold_database(database: dict, feed: str) -> list[serve_lock.Held]:
    """One server per SQLite file and one feed per database (``ground.serve_lock``): the locks held as long as this
    process lives, or a one-line error (exit 2) naming the process that holds one already — two simulated markets,
    or a market and a ``run_feed``, writing one store."""
    held = serve_lock.hold_server(database)
    if isinstance(held, serve_lock.Holder):
        raise CommandError(
            f"another `manage.py serve` (pid {held.pid}) is serving {database['NAME']} already: stop it first "
            "(Ctrl-C where it runs), or give this one its own database (DATABASE_URL=sqlite:///other.sqlite3)",
            returncode=2,
        )
    locks = [held] if held else []
    market = serve_lock.hold_feed(database, "serve") if feed == "sim" else None
    if isinstance(market, serve_lock.Holder):
        for lock in locks:
            lock.release()
        raise CommandError(
            f"refused: `manage.py {market.command}` (pid {market.pid}) feeds {database['NAME']} already: this "
            "server's simulated market would take over its symbols, its market clock and its trading day. Stop it "
            "first, serve without a market of its own (manage.py serve --feed none), or give this one its own "
            "database (DATABASE_URL=sqlite:///other.sqlite3)",
            returncode=2,
        )
    return locks + ([market] if market else [])


def check_migrated(connection) -> None:
    """Stop with a one-line error (exit 2) on a database whose migrations are not all applied: serving it ended in a
    traceback from the first query of a missing table. ``make run`` migrates before it serves."""
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    unapplied = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if unapplied:
        name = connection.settings_dict["NAME"]
        raise CommandError(
            f"the database {name} lacks {counted(len(unapplied), 'migration')} (first: {unapplied[0][0].app_label}."
            f"{unapplied[0][0].name}): run `python manage.py migrate` first (`make run` does)",
            returncode=2,
        )


class Command(BaseCommand):
    help = "Serve the dashboard, admin and API with daphne (and the simulated feed when embedded)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", default=os.environ.get("PORT") or "8000", help="default: $PORT, else 8000")
        parser.add_argument("--feed", choices=["sim", "none"], default="sim" if settings.EMBEDDED else "none")
        parser.add_argument("--symbols", type=symbol_list, default=list(DEFAULT_SYMBOLS))
        parser.add_argument("--seed", type=SEED, default=7)
        parser.add_argument("--tick-seconds", type=SECONDS, default=1.0)
        parser.add_argument("--backfill", type=BACKFILL, default=60)

    def handle(self, *args, **options):
        from daphne.server import Server, twisted_loop  # installs the asyncio reactor: import it first
        from twisted.internet import reactor

        from cdb_project.asgi import application
        from marketdata.feeds.sim import pace
        from marketdata.feeds.sim_runner import build_market, run_async
        from risk.state import no_state_from_the_future
        from risk.state_watch import watch_trading_state

        options["port"] = port_number(options["port"])
        check_symbols(options["symbols"])
        self.lock = hold_database(connections["default"].settings_dict, options["feed"])  # held until the process ends
        check_migrated(connections["default"])
        if options["feed"] == "sim":
            check_quote_fits(options["symbols"])

        if options["feed"] == "sim" and not settings.EMBEDDED:
            self.stderr.write(
                "note: with Redis configured, run the feed as its own process instead (manage.py run_feed)"
            )
        plan = None
        if options["feed"] == "sim":  # where the simulated market carries on from (it reads the stored candles)
            try:
                plan = build_market(options["symbols"], options["seed"], settings.INTERVAL, options["backfill"])
            except ValueError as error:
                raise CommandError(str(error)) from None

        def ready() -> None:
            url = f"http://{options['host']}:{options['port']}/"
            self.stdout.write(self.style.SUCCESS(f"Claire de Binare is serving at {url}"), ending="\n")
            if options["feed"] == "sim":
                self.stdout.write(f"{plan.describe()}: {pace(settings.INTERVAL, options['tick_seconds'])}")
            self.stdout.flush()
            if settings.EMBEDDED:  # a halt or release from a shell reaches the open dashboards at once
                watch = asyncio.ensure_future(watch_trading_state(), loop=twisted_loop)
                reactor.addSystemEventTrigger("before", "shutdown", watch.cancel)
            if options["feed"] == "sim":
                feed = asyncio.ensure_future(
                    run_async(plan.market, plan.backfill, options["tick_seconds"], on_start=no_state_from_the_future),
                    loop=twisted_loop,
                )
                reactor.addSystemEventTrigger("before", "shutdown", lambda: _stopped(feed))

        server = Server(
            application,
            endpoints=[f"tcp:port={options['port']}:interface={options['host']}"],
            ready_callable=ready,
        )
        connections.close_all()  # what the start-up read: the web process holds no connection while idle
        server.run()
        if not server.listening_addresses:  # daphne logged why ("Listen failure: …") and returned
            raise CommandError(f"could not listen on {options['host']}:{options['port']}", returncode=2)


def _stopped(feed: asyncio.Future):
    """On Ctrl-C or SIGTERM: cancel the simulated feed and let the reactor stop only once the step in progress is
    done (a Deferred the shutdown waits for); stopped in the middle of one, the process never exited."""
    from twisted.internet.defer import Deferred

    if feed.done():
        return None
    feed.cancel()

    async def settled() -> None:
        try:
            await feed
        except (asyncio.CancelledError, Exception):
            pass

    return Deferred.fromFuture(asyncio.ensure_future(settled(), loop=feed.get_loop()))

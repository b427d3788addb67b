"""Run the ASGI server (daphne) and, in embedded mode, the simulated feed inside its event loop.

In embedded mode the Channels layer lives in this process's memory, so the feed
must run here for its pushes to reach the browser. With Redis configured, run
the feed as its own process (``manage.py run_feed``) and this only serves.
"""

import asyncio

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from marketdata.feeds.sim import DEFAULT_SYMBOLS
from marketdata.management.commands.run_feed import check_symbols, symbol_list


class Command(BaseCommand):
    help = "Serve the dashboard, admin and API with daphne (and the simulated feed when embedded)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--feed", choices=["sim", "none"], default="sim" if settings.EMBEDDED else "none")
        parser.add_argument("--symbols", type=symbol_list, default=list(DEFAULT_SYMBOLS))
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument("--tick-seconds", type=float, default=1.0)
        parser.add_argument("--backfill", type=int, default=60)

    def handle(self, *args, **options):
        from daphne.server import Server, twisted_loop  # installs the asyncio reactor: import it first

        from cdb_project.asgi import application
        from marketdata.feeds.sim_runner import build_market, run_async

        if not 0 < options["port"] < 65536:
            raise CommandError(f"--port {options['port']}: must be 1–65535", returncode=2)
        check_symbols(options["symbols"])

        if options["feed"] == "sim" and not settings.EMBEDDED:
            self.stderr.write(
                "note: with Redis configured, run the feed as its own process instead (manage.py run_feed)"
            )
        try:
            market = build_market(options["symbols"], options["seed"], settings.INTERVAL, options["backfill"])
        except ValueError as error:
            raise CommandError(str(error)) from None

        def ready() -> None:
            url = f"http://{options['host']}:{options['port']}/"
            self.stdout.write(self.style.SUCCESS(f"Claire de Binare is serving at {url}"), ending="\n")
            self.stdout.flush()
            if options["feed"] == "sim":
                asyncio.ensure_future(
                    run_async(market, options["backfill"], options["tick_seconds"]), loop=twisted_loop
                )

        server = Server(
            application,
            endpoints=[f"tcp:port={options['port']}:interface={options['host']}"],
            ready_callable=ready,
        )
        server.run()
        if not server.listening_addresses:  # daphne logged why ("Listen failure: …") and returned
            raise CommandError(f"could not listen on {options['host']}:{options['port']}", returncode=2)

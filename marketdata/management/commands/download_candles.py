import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from ground.amounts import counted
from marketdata.clock import SYSTEM
from marketdata.download import DownloadError, download, parse_time
from marketdata.feeds.mexc import make_exchange, to_ccxt
from marketdata.management.commands.run_feed import symbol_list
from marketdata.validation import interval_ms


class Command(BaseCommand):
    help = "Download MEXC candles through ccxt into SYMBOL-INTERVAL.csv files; resumes where a file ends."

    def add_arguments(self, parser):
        parser.add_argument("--symbols", type=symbol_list, required=True, help="comma-separated, e.g. BTC_USDT")
        parser.add_argument("--interval", default=settings.INTERVAL)
        parser.add_argument("--since", required=True, help="UTC date/time (2024-01-01) or epoch ms")
        parser.add_argument("--until", default=None, help="UTC date/time or epoch ms (exclusive; default now)")
        parser.add_argument("--out", required=True, help="directory for the CSV files")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **options):
        from tqdm import tqdm

        try:
            step = interval_ms(options["interval"])
            for symbol in options["symbols"]:
                to_ccxt(symbol)
            since = parse_time(options["since"])
            until = parse_time(options["until"]) if options["until"] else SYSTEM.now_ms()
        except (ValueError, DownloadError) as error:
            raise CommandError(str(error), returncode=2) from None
        if until <= since:
            raise CommandError("--until must be after --since", returncode=2)
        out = Path(options["out"])
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise CommandError(f"--out {out}: {error.strerror or error}", returncode=2) from None
        exchange = make_exchange("sync")
        total = 0
        for symbol in options["symbols"]:
            bar = tqdm(
                total=max(0, (until - since) // step),
                unit="candle",
                desc=symbol,
                file=sys.stderr,
                disable=options["no_progress"],
            )
            try:
                result = download(exchange, symbol, options["interval"], since, until, out, progress=bar.update)
            except DownloadError as error:
                raise CommandError(str(error), returncode=2) from None
            finally:
                bar.close()
            total += result.written
            self.stdout.write(
                f"{symbol}: {counted(result.written, 'candle')} written to {result.path} "
                f"({counted(result.requests, 'request')})"
            )
        self.stdout.write(self.style.SUCCESS(f"downloaded {counted(total, 'candle')}"))

"""The shell around MexcFeed: the database sink, and the blocking entry point of ``run_feed --source mexc``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from .. import clock, stale
from ..ingest import bulk_store, publish_stored
from .mexc import MexcFeed, make_exchange, to_ccxt

logger = logging.getLogger("cdb.feed.mexc")


class CandleSink:
    """Stores closed candles once and publishes the new ones as market_data (oldest first)."""

    def __init__(self, interval: str, publish: bool = True) -> None:
        self.interval = interval
        self.publish = publish
        self.published = 0

    def last_stored(self, symbol: str) -> int | None:
        from ..models import Candle

        return (
            Candle.objects.filter(symbol=symbol, interval=self.interval)
            .order_by("-timestamp")
            .values_list("timestamp", flat=True)
            .first()
        )

    def store(self, symbol: str, candles: list[list]) -> int:
        from ..ingest import _decimal

        rows = [
            (symbol, self.interval, int(c[0]), *(_decimal(x) for x in c[1:6]))
            for c in candles
            if all(x is not None for x in c[:6])
        ]
        new = bulk_store(rows)
        if self.publish:
            for row in rows:
                if (symbol, self.interval, row[2]) in new:
                    publish_stored(*row)
                    self.published += 1
        return len(new)

    def touch(self, symbol: str) -> None:
        stale.touch(symbol, clock.now_ms())


def run_live(
    symbols: list[str],
    interval: str,
    *,
    transport: str = "auto",
    backfill: int = 60,
    poll_seconds: float = 5.0,
    report: Callable[[str], None] = logger.info,
) -> None:
    """Run the live MEXC feed until interrupted. Live time is wall time: any replay clock is released."""
    from ..watchlist import clear_feed_symbols

    for symbol in symbols:
        to_ccxt(symbol)
    clock.release_shared_event_time()
    clear_feed_symbols()
    report(f"MEXC feed: {', '.join(symbols)} {interval} over {transport}")

    async def main() -> None:
        exchange = make_exchange("pro" if transport != "rest" else "async")
        feed = MexcFeed(
            exchange,
            symbols,
            interval,
            CandleSink(interval),
            transport=transport,
            backfill=backfill,
            poll_seconds=poll_seconds,
        )
        try:
            await feed.run()
        finally:
            await exchange.close()

    asyncio.run(main())

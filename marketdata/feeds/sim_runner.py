"""Running the simulated market: a blocking loop (``run_feed``) and an asyncio task (``serve``)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from asgiref.sync import sync_to_async

from cdb_project.timeutil import now_ms

from .publishing import publish_candle
from .sim import INTERVAL_MS, SimulatedMarket

logger = logging.getLogger("cdb.feed.sim")


def build_market(symbols: list[str], seed: int, interval: str, backfill: int) -> SimulatedMarket:
    """Start ``backfill`` intervals in the past so strategies are warm right away."""
    step = INTERVAL_MS.get(interval, 60_000)
    return SimulatedMarket(symbols, seed, interval, now_ms() - backfill * step)


def publish_step(market: SimulatedMarket) -> int:
    """Publish one candle per symbol; the market clock follows the simulated time (event time)."""
    from .. import clock

    candles = market.next_candles()
    for symbol, candle in candles:
        publish_candle(symbol, market.interval, candle)
    if candles:
        clock.set_shared_event_time(candles[-1][1].timestamp)
    return len(candles)


def register(market: SimulatedMarket) -> None:
    """The simulated symbols are tradable without a screener list (unless SYMBOL_WHITELIST says otherwise)."""
    from ..watchlist import register_feed_symbols

    register_feed_symbols(market.symbols, "sim")


def run_blocking(
    market: SimulatedMarket,
    backfill: int,
    tick_seconds: float,
    steps: int | None,
    report: Callable[[str], None] = logger.info,
) -> int:
    """Publish ``backfill`` steps at once, then one step per tick; ``steps`` bounds the live part."""
    register(market)
    published = sum(publish_step(market) for _ in range(backfill))
    report(f"backfilled {published} candles")
    done = 0
    while steps is None or done < steps:
        time.sleep(tick_seconds)
        published += publish_step(market)
        done += 1
    return published


async def run_async(market: SimulatedMarket, backfill: int, tick_seconds: float) -> None:
    """The same loop inside an event loop (the embedded server), database work in Django's sync thread."""
    step = sync_to_async(publish_step)
    try:
        await sync_to_async(register)(market)
        for _ in range(backfill):
            await step(market)
        logger.info(
            "simulated feed running: %s, one %s candle every %ss",
            ", ".join(market.symbols),
            market.interval,
            tick_seconds,
        )
        failures = 0
        while True:
            await asyncio.sleep(min(30.0, tick_seconds * 2 ** min(failures, 16)))  # backs off while steps fail
            try:
                await step(market)
                failures = 0
            except Exception:  # e.g. the database briefly unavailable: the dashboard must not sit without data
                failures += 1
                logger.exception(
                    "simulated feed: a step failed (%d in a row); its candles not yet published are skipped", failures
                )
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception("simulated feed stopped")

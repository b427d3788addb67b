"""Running the simulated market: a blocking loop (``run_feed``) and an asyncio task (``serve``)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from asgiref.sync import sync_to_async

from ground.amounts import counted
from ground.timeutil import now_ms

from .publishing import publish_candle
from .sim import INTERVAL_MS, SimulatedMarket, pace

logger = logging.getLogger("cdb.feed.sim")


@dataclass(frozen=True)
class SimPlan:
    """A simulated market ready to run: ``backfill`` candles at once first, ``resumed_from_ms`` the stored candle it
    carries on from. Carrying on, the backfill is what an interrupted first run left of its own (the stored history
    is shorter than the ``--backfill`` asked: ``make run`` stopped during its first backfill), else 0: the stored
    history warms the strategies."""

    market: SimulatedMarket
    backfill: int
    resumed_from_ms: int | None = None

    def describe(self) -> str:
        symbols = ", ".join(self.market.symbols)
        if self.resumed_from_ms is None:
            return f"simulated market ({symbols}) starting {counted(self.backfill, 'candle')} before now"
        said = f"simulated market ({symbols}) carrying on from its last stored candle"
        if self.backfill:
            candles = f"{self.backfill} candle" + ("s" if self.backfill != 1 else "")
            said += f", first completing the backfill a stopped run left short ({candles} at once)"
        return said


@dataclass(frozen=True)
class StoredMarket:
    """What is stored of a simulated market's symbols at one interval: each symbol's newest candle time, its close
    there, and how many candles it has."""

    newest: dict[str, int]
    closes: dict[str, float]
    counts: dict[str, int]


def stored_market(symbols: list[str], interval: str) -> StoredMarket | None:
    """The stored candles of ``symbols`` at ``interval`` (None when there are none)."""
    from django.db.models import Count, Max

    from ..models import Candle

    rows = (
        Candle.objects.filter(symbol__in=symbols, interval=interval)
        .values("symbol")
        .annotate(ts=Max("timestamp"), n=Count("id"))
        .values_list("symbol", "ts", "n")
    )
    newest = {symbol: ts for symbol, ts, _ in rows}
    if not newest:
        return None
    closes = {
        symbol: float(close)
        for symbol, ts, close in Candle.objects.filter(
            interval=interval, symbol__in=list(newest), timestamp__in=set(newest.values())
        ).values_list("symbol", "timestamp", "close")
        if newest[symbol] == ts
    }
    return StoredMarket(newest, closes, {symbol: n for symbol, _, n in rows})


def build_market(symbols: list[str], seed: int, interval: str, backfill: int) -> SimPlan:
    """Carry on from the last candle stored for these symbols (a restart: the market goes on where it stopped,
    so every new candle is newer than what is decided already); on an empty database start ``backfill``
    intervals in the past so strategies are warm right away.

    A run stopped in the middle of its first backfill (or of a step, before every symbol had its candle) is carried
    on cleanly: the market goes on from the symbol that is furthest behind, a symbol never gets a candle time it has
    already (nothing is published, so nothing decided, twice; no gap is left in a symbol that lags), and the part of
    the backfill still missing is published at once as the first run would have."""
    if interval not in INTERVAL_MS:
        raise ValueError(f"unsupported interval {interval!r}; use one of {', '.join(INTERVAL_MS)}")
    step = INTERVAL_MS[interval]
    stored = stored_market(symbols, interval)
    if stored is None:
        return SimPlan(SimulatedMarket(symbols, seed, interval, now_ms() - backfill * step), backfill)
    behind = min(stored.newest.values())
    market = SimulatedMarket(symbols, seed, interval, behind + step, prices=stored.closes)
    market.stored_until = dict(stored.newest)
    missing = max(0, backfill - min(stored.counts.values()))
    return SimPlan(market, missing, max(stored.newest.values()))


def publish_step(market: SimulatedMarket) -> int:
    """Publish one candle per symbol; the market clock follows the simulated time (event time)."""
    from .. import clock

    candles = market.next_candles()
    stored_until = market.stored_until  # a symbol already stored at this time (a step a stopped run cut short)
    if stored_until:
        candles = [(symbol, candle) for symbol, candle in candles if candle.timestamp > stored_until.get(symbol, -1)]
        if market.timestamp > max(stored_until.values()):
            market.stored_until = {}
    for symbol, candle in candles:
        publish_candle(symbol, market.interval, candle)
    if candles:
        clock.set_shared_event_time(candles[-1][1].timestamp)
    return len(candles)


MarketStart = Callable[[int], None]  # told the simulated market's start (epoch ms) once the clock is set to it


def register(market: SimulatedMarket, tick_seconds: float | None = None, *, on_start: MarketStart) -> None:
    """The simulated symbols are tradable without a screener list (unless SYMBOL_WHITELIST says otherwise), and
    the market clock is the simulation's from now on: set to its last candle before the first new one arrives (a
    replay may have left its own time behind), with its pace for the page. Then ``on_start`` is told that time:
    the command that runs the market passes ``risk.state.no_state_from_the_future`` (the layers above market data
    keep their clocks in line; this one does not import them)."""
    from .. import clock
    from ..watchlist import register_feed_symbols

    register_feed_symbols(market.symbols, "sim")
    note = "simulated market: " + pace(market.interval, tick_seconds) if tick_seconds is not None else ""
    now = market.timestamp - market.step_ms
    clock.set_shared_event_time(now, note=note)
    on_start(now)


def run_blocking(
    market: SimulatedMarket,
    backfill: int,
    tick_seconds: float,
    steps: int | None,
    report: Callable[[str], None] = logger.info,
    *,
    on_start: MarketStart,
) -> int:
    """Publish ``backfill`` steps at once, then one step per tick; ``steps`` bounds the live part (``on_start``:
    see ``register``)."""
    register(market, tick_seconds, on_start=on_start)
    published = sum(publish_step(market) for _ in range(backfill))
    report(f"backfilled {counted(published, 'candle')}")
    done = 0
    while steps is None or done < steps:
        time.sleep(tick_seconds)
        published += publish_step(market)
        done += 1
    return published


async def _whole(call) -> None:
    """Run ``call`` to its end even when the task is cancelled meanwhile (then re-raise the cancel): a step in
    Django's sync thread pushes to the dashboard through this event loop, so a server that stopped its loop in the
    middle of one would wait for it forever on exit."""
    pending = asyncio.ensure_future(call)
    try:
        await asyncio.shield(pending)
    except asyncio.CancelledError:
        await pending
        raise


async def run_async(market: SimulatedMarket, backfill: int, tick_seconds: float, *, on_start: MarketStart) -> None:
    """The same loop inside an event loop (the embedded server), database work in Django's sync thread.
    Cancelled, it finishes the step in progress first (see ``_whole``; ``on_start``: see ``register``)."""
    sync_step = sync_to_async(publish_step)

    async def step(market: SimulatedMarket) -> None:
        await _whole(sync_step(market))

    try:
        await sync_to_async(register)(market, tick_seconds, on_start=on_start)
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

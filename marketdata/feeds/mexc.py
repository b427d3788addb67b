"""MEXC public market data through ccxt: websocket klines (ccxt.pro ``watch_ohlcv``) with REST (``fetch_ohlcv``)
backfill, or REST polling alone. No API key is needed.

A candle is stored only once it is closed, i.e. once the exchange shows the next one: over the websocket the
first update of window N closes window N − 1 (stored with the last values pushed for it); over REST the
newest kline returned is the running one and waits for the next poll. Whenever continuity is in doubt — a
reconnect, a jump of more than one interval, a start-up after a pause — the gap is fetched through REST from
the last stored candle up to (not including) the running one. Storage ignores what is already there and only
new candles are published, so nothing is missed and nothing is published twice.

Reconnects back off exponentially with jitter (``backoff_delay``). Exchange URLs come from settings
(``MEXC_REST_URL``, ``MEXC_CONTRACT_URL``, ``MEXC_WS_URL``) so tests point ccxt at a local fake server.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from ..validation import interval_ms

logger = logging.getLogger("cdb.feed.mexc")

PAGE_LIMIT = 500  # MEXC documents 1000 per kline request; ccxt notes 500 in practice


def to_ccxt(symbol: str) -> str:
    """``BTC_USDT`` → ``BTC/USDT``."""
    base, _, quote = symbol.partition("_")
    if not base or not quote:
        raise ValueError(f"symbol {symbol!r} is not BASE_QUOTE (e.g. BTC_USDT)")
    return f"{base}/{quote}"


def from_ccxt(symbol: str) -> str:
    return symbol.replace("/", "_").split(":")[0]


def backoff_delay(
    attempt: int, base: float = 1.0, cap: float = 60.0, rand: Callable[[], float] = random.random
) -> float:
    """Exponential backoff with jitter: attempt 0, 1, 2 … waits about base·2^attempt (capped), scaled by a
    random factor in [0.5, 1) so many clients do not reconnect in step."""
    return min(cap, base * (2 ** max(attempt, 0))) * (0.5 + rand() / 2)


def exchange_config(**overrides) -> dict:
    from django.conf import settings

    config = {
        "enableRateLimit": True,
        "timeout": 10_000,
        "urls": {
            "api": {
                "spot": {"public": settings.MEXC_REST_URL, "private": settings.MEXC_REST_URL},
                "contract": {"public": settings.MEXC_CONTRACT_URL, "private": settings.MEXC_CONTRACT_URL},
                "ws": {"spot": settings.MEXC_WS_URL, "swap": settings.MEXC_WS_URL},
            }
        },
    }
    config.update(overrides)
    return config


def make_exchange(kind: str = "pro", **overrides):
    """A ccxt MEXC client on the configured URLs: ``pro`` (async + websocket), ``async`` or ``sync``."""
    if kind == "pro":
        import ccxt.pro as module
    elif kind == "async":
        import ccxt.async_support as module
    else:
        import ccxt as module
    return module.mexc(exchange_config(**overrides))  # ccxt deep-merges ``urls`` into its own description


@dataclass
class _Window:
    """The running candle of one symbol as seen over the websocket."""

    ts: int
    values: list
    session: int


@dataclass
class FeedStats:
    ws_candles: int = 0
    rest_candles: int = 0
    reconnects: int = 0
    backfills: int = 0
    errors: list[str] = field(default_factory=list)


class MexcFeed:
    """The async feed loop. ``sink`` is synchronous (database work) and is called through ``run_sync``.

    sink.last_stored(symbol) -> int | None
    sink.store(symbol, candles: list[list]) -> int   # closed candles oldest first; returns how many were new
    sink.touch(symbol) -> None                       # data seen now (the data-stale watch's freshness mark)
    """

    def __init__(
        self,
        exchange,
        symbols: list[str],
        interval: str,
        sink,
        *,
        transport: str = "auto",
        backfill: int = 60,
        poll_seconds: float = 5.0,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        touch_every: float = 5.0,
        idle_seconds: float = 2.0,
        run_sync=None,
    ) -> None:
        if transport not in ("auto", "ws", "rest"):
            raise ValueError(f"unknown transport {transport!r}")
        self.exchange = exchange
        self.symbols = list(symbols)
        self.interval = interval
        self.step = interval_ms(interval)
        self.sink = sink
        self.transport = transport
        self.backfill = backfill
        self.poll_seconds = poll_seconds
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.touch_every = touch_every
        self.idle_seconds = idle_seconds
        self.stats = FeedStats()
        self._last: dict[str, int | None] = {}
        self._window: dict[str, _Window | None] = {}
        self._touched: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        if run_sync is None:
            from asgiref.sync import sync_to_async

            def run_sync(func, *args):
                return sync_to_async(func, thread_sensitive=True)(*args)

        self.run_sync = run_sync

    # --- entry point ---------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        for symbol in self.symbols:
            to_ccxt(symbol)
            self._locks[symbol] = asyncio.Lock()
            self._window[symbol] = None
            self._last[symbol] = await self.run_sync(self.sink.last_stored, symbol)
        await self._retrying(self.exchange.load_markets, stop)
        for symbol in self.symbols:
            await self._retrying(lambda s=symbol: self.sync_rest(s), stop)
        use_ws = self.transport in ("ws", "auto") and self.exchange.has.get("watchOHLCV")
        loops = [self._watch(symbol, stop) for symbol in self.symbols] if use_ws else [self._poll(stop)]
        waiter = asyncio.ensure_future(stop.wait())
        tasks = [asyncio.ensure_future(loop) for loop in loops]
        try:
            await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in [waiter, *tasks]:
                task.cancel()
            await asyncio.gather(waiter, *tasks, return_exceptions=True)
            for task in tasks:
                if task.done() and not task.cancelled() and task.exception():
                    raise task.exception()

    async def _retrying(self, call, stop: asyncio.Event):
        attempt = 0
        while not stop.is_set():
            try:
                return await call()
            except Exception as error:  # network trouble at start-up: back off and try again
                if not _is_transient(error):
                    raise
                delay = backoff_delay(attempt, self.backoff_base, self.backoff_cap)
                logger.warning("MEXC request failed (%s); retrying in %.1fs", error, delay)
                self.stats.errors.append(repr(error))
                attempt += 1
                await _sleep_or_stop(delay, stop)

    # --- REST ----------------------------------------------------------------------------------------
    async def sync_rest(self, symbol: str, until: int | None = None) -> int:
        """Store every closed candle after the last stored one, up to ``until`` (exclusive) or up to the
        running candle. Returns how many were new."""
        async with self._locks[symbol]:
            return await self._sync_rest(symbol, until)

    async def _sync_rest(self, symbol: str, until: int | None) -> int:
        market = to_ccxt(symbol)
        last = self._last.get(symbol)
        if until is None:
            limit = PAGE_LIMIT if last is not None else max(self.backfill, 0) + 1
            latest = await self.exchange.fetch_ohlcv(market, self.interval, limit=limit)
            if not latest:
                return 0
            until = int(latest[-1][0])  # the running candle: not closed yet
            closed = [c for c in latest[:-1] if last is None or c[0] > last]
            if last is not None and closed and closed[0][0] > last + self.step:
                closed = await self._fill(market, last + self.step, int(closed[0][0])) + closed
            elif last is not None and not closed and until > last + self.step:
                closed = await self._fill(market, last + self.step, until)
        else:
            start = last + self.step if last is not None else until - self.backfill * self.step
            if start >= until:
                return 0
            closed = await self._fill(market, start, until)
        self.stats.backfills += 1
        return await self._store(symbol, closed, rest=True)

    async def _fill(self, market: str, since: int, until: int) -> list[list]:
        """Closed candles with since <= ts < until, page by page (each page a fixed window of PAGE_LIMIT)."""
        out: list[list] = []
        while since < until:
            window_end = min(until, since + PAGE_LIMIT * self.step)
            page = await self.exchange.fetch_ohlcv(
                market, self.interval, since=since, limit=PAGE_LIMIT, params={"until": window_end - 1}
            )
            out.extend(c for c in page if since <= c[0] < window_end)
            since = window_end
        return out

    async def _store(self, symbol: str, candles: list[list], *, rest: bool) -> int:
        last = self._last.get(symbol)
        fresh: dict[int, list] = {}
        for candle in candles:
            ts = int(candle[0])
            if (last is None or ts > last) and None not in candle[:6]:
                fresh[ts] = candle
        if not fresh:
            return 0
        ordered = [fresh[ts] for ts in sorted(fresh)]
        new = await self.run_sync(self.sink.store, symbol, ordered)
        self._last[symbol] = int(ordered[-1][0])
        if rest:
            self.stats.rest_candles += new
        else:
            self.stats.ws_candles += new
        await self._touch(symbol, force=True)
        return new

    async def _touch(self, symbol: str, force: bool = False) -> None:
        now = asyncio.get_running_loop().time()
        if force or now - self._touched.get(symbol, -1e9) >= self.touch_every:
            self._touched[symbol] = now
            await self.run_sync(self.sink.touch, symbol)

    async def _poll(self, stop: asyncio.Event) -> None:
        attempt = 0
        while not stop.is_set():
            try:
                for symbol in self.symbols:
                    await self.sync_rest(symbol)
                    await self._touch(symbol, force=True)
                attempt = 0
                await _sleep_or_stop(self.poll_seconds, stop)
            except Exception as error:
                if not _is_transient(error):
                    raise
                self.stats.errors.append(repr(error))
                delay = backoff_delay(attempt, self.backoff_base, self.backoff_cap)
                attempt += 1
                logger.warning("MEXC REST poll failed (%s); retrying in %.1fs", error, delay)
                await _sleep_or_stop(delay, stop)

    # --- websocket ---------------------------------------------------------------------------------------
    async def _watch(self, symbol: str, stop: asyncio.Event) -> None:
        market = to_ccxt(symbol)
        session, attempt = 0, 0
        pending: asyncio.Future | None = None
        try:
            while not stop.is_set():
                try:
                    if pending is None:
                        pending = asyncio.ensure_future(self.exchange.watch_ohlcv(market, self.interval))
                    done, _ = await asyncio.wait({pending}, timeout=self.idle_seconds)
                    if pending in done:
                        updates, pending = pending.result(), None
                        attempt = 0
                    else:
                        # ccxt hands over updates only when the next message arrives; read the last ones from
                        # its cache so a window close is not held back by a quiet market
                        updates = self._cached(market)
                    await self._on_updates(symbol, updates, session)
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    pending = None
                    if not _is_transient(error):
                        raise
                    session += 1
                    self.stats.reconnects += 1
                    self.stats.errors.append(repr(error))
                    delay = backoff_delay(attempt, self.backoff_base, self.backoff_cap)
                    attempt += 1
                    logger.warning("MEXC websocket for %s lost (%s); reconnecting in %.1fs", symbol, error, delay)
                    if self.transport == "auto":
                        try:  # REST keeps the data flowing while the socket is down
                            await self.sync_rest(symbol)
                        except Exception as rest_error:
                            if not _is_transient(rest_error):
                                raise
                    await _sleep_or_stop(delay, stop)
        finally:
            if pending is not None:
                pending.cancel()

    def _cached(self, market: str) -> list[list]:
        cache = (self.exchange.ohlcvs or {}).get(market, {}).get(self.interval)
        return [list(c) for c in cache[-2:]] if cache else []

    async def _on_updates(self, symbol: str, updates: list[list], session: int) -> None:
        await self._touch(symbol)
        for candle in sorted(updates, key=lambda c: c[0]):
            ts = int(candle[0])
            window = self._window.get(symbol)
            if window is None or ts > window.ts:
                if window is not None:
                    await self._close(symbol, window, ts, session)
                elif self._last.get(symbol) is not None and ts > self._last[symbol] + self.step:
                    await self.sync_rest(symbol, until=ts)  # a gap before the first window seen
                self._window[symbol] = _Window(ts, list(candle), session)
            elif ts == window.ts:
                window.values = list(candle)
                # (a late update of an older window is ignored: that candle is already closed)

    async def _close(self, symbol: str, window: _Window, next_ts: int, session: int) -> None:
        """Window ``window.ts`` closed because ``next_ts`` opened."""
        continuous = window.session == session and next_ts == window.ts + self.step
        last = self._last.get(symbol)
        if continuous and (last is None or window.ts == last + self.step):
            async with self._locks[symbol]:
                await self._store(symbol, [window.values], rest=False)
        else:
            await self.sync_rest(symbol, until=next_ts)


def _is_transient(error: Exception) -> bool:
    import ccxt

    return isinstance(error, (ccxt.NetworkError, ccxt.ExchangeNotAvailable, OSError, asyncio.TimeoutError))


async def _sleep_or_stop(seconds: float, stop: asyncio.Event) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass

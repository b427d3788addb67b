"""A fake MEXC spot v3 server on 127.0.0.1, written from MEXC's public API documentation.

REST (``https://api.mexc.com`` in production):

* ``GET /api/v3/ping`` → ``{}``; ``GET /api/v3/time`` → ``{"serverTime": ms}``;
* ``GET /api/v3/exchangeInfo`` → ``{"timezone", "serverTime", "rateLimits", "exchangeFilters", "symbols": [...]}``,
  each symbol with ``status "1"`` (online) and ``isSpotTradingAllowed``;
* ``GET /api/v3/klines?symbol&interval&startTime&endTime&limit`` → ``[[openTime, "o", "h", "l", "c", "v",
  closeTime, "quoteVolume"], …]`` oldest first; ``limit`` default 500, max 1000; ``endTime`` exclusive;
  without ``startTime`` the most recent klines; intervals ``1m 5m 15m 30m 60m 4h 1d 1W 1M``;
* ``GET /api/v1/contract/detail`` (the futures host, which ccxt also loads) → no contracts.

Websocket (``wss://wbs-api.mexc.com/ws``): ``{"method": "SUBSCRIPTION", "params": [channel]}`` is answered with
``{"id": 0, "code": 0, "msg": channel}``; ``{"method": "PING"}`` with ``{"id": 0, "code": 0, "msg": "PONG"}``.
Kline channels ``spot@public.kline.v3.api.pb@<SYMBOL>@<Min1|Min5|…>`` are pushed as binary protobuf
``PushDataV3ApiWrapper`` frames carrying ``publicSpotKline`` (windowStart/windowEnd in seconds), as MEXC does.

The market is a script the test drives: ``history`` candles per symbol, of which the first ``position`` are
closed and the one at ``position`` is the running candle. ``step()`` sends the running candle's final values,
moves on, and sends the first (partial) update of the next one. ``drop()`` closes every socket and refuses
new ones until ``allow()``. Every request is recorded in ``requests``.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import defaultdict
from dataclasses import dataclass

from aiohttp import WSMsgType, web

REST_INTERVALS = {"1m": 60_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000, "60m": 3_600_000}
WS_INTERVALS = {"Min1": 60_000, "Min5": 300_000, "Min15": 900_000, "Min30": 1_800_000, "Min60": 3_600_000}


@dataclass(frozen=True)
class Kline:
    t: int
    o: str
    h: str
    l: str  # noqa: E741
    c: str
    v: str

    def rest(self, interval_ms: int) -> list:
        quote = f"{float(self.c) * float(self.v):.8f}"
        return [self.t, self.o, self.h, self.l, self.c, self.v, self.t + interval_ms, quote]

    def partial(self) -> Kline:
        """The running candle's first update: one trade at the open."""
        return Kline(self.t, self.o, self.o, self.o, self.o, "0.001")


def klines_from_csv(path, limit: int | None = None, start: int = 0, every_ms: int | None = None) -> list[Kline]:
    """Recorded candles as klines; ``every_ms`` re-times them back to back (the recording has quiet gaps)."""
    rows = [line.split(",") for line in open(path).read().splitlines()[1:] if line.strip()]
    rows = rows[start : start + limit if limit else None]
    first = int(rows[0][0]) if rows else 0
    return [
        Kline(first + i * every_ms if every_ms else int(r[0]), r[1], r[2], r[3], r[4], r[5]) for i, r in enumerate(rows)
    ]


class FakeMexc:
    def __init__(self, history: dict[str, list[Kline]], interval: str = "1m", position: int | None = None) -> None:
        """``history``: MEXC symbol id (e.g. ``UNITTESTBTC``) → klines at ``interval``. ``position``: index of
        the running candle (default: the last one)."""
        self.history = history
        self.interval = interval
        self.interval_ms = REST_INTERVALS[interval]
        self.position = {s: (len(k) - 1 if position is None else position) for s, k in history.items()}
        self.requests: list[tuple[str, dict]] = []
        self.request_times: list[tuple[str, float]] = []
        self.pushed: list[tuple[str, Kline]] = []
        self.refusing = False
        self.connections = 0
        self.subscriptions = 0  # SUBSCRIPTION requests answered, ever
        self._sockets: set[web.WebSocketResponse] = set()
        self._subscribers: dict[str, set[web.WebSocketResponse]] = defaultdict(set)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # --- lifecycle (test thread) -------------------------------------------------------------------------
    def start(self) -> FakeMexc:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="fake-mexc", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake MEXC did not start")
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def contract_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1/contract"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def settings(self) -> dict[str, str]:
        return {"MEXC_REST_URL": self.rest_url, "MEXC_CONTRACT_URL": self.contract_url, "MEXC_WS_URL": self.ws_url}

    # --- the script (test thread) ------------------------------------------------------------------------
    def closed(self, symbol: str) -> list[Kline]:
        return self.history[symbol][: self.position[symbol]]

    def step(self, symbols: list[str] | None = None) -> None:
        """The running candle closes (final values pushed), the next one opens (partial values pushed)."""
        self._call(self._step(symbols or list(self.history)))

    def drop(self) -> None:
        """The server drops every websocket and refuses new ones until allow()."""
        self.refusing = True
        self._call(self._drop())

    def allow(self) -> None:
        self.refusing = False

    def subscribed(self) -> int:
        return sum(len(s) for s in self._subscribers.values())

    def kline_requests(self) -> list[dict]:
        return [q for path, q in self.requests if path == "/api/v3/klines"]

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    # --- server side -------------------------------------------------------------------------------------
    def _serve(self, ready: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_get("/api/v3/ping", self._ping)
        app.router.add_get("/api/v3/time", self._time)
        app.router.add_get("/api/v3/exchangeInfo", self._exchange_info)
        app.router.add_get("/api/v3/klines", self._klines)
        app.router.add_get("/api/v1/contract/detail", self._contract_detail)
        app.router.add_get("/ws", self._ws)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        ready.set()
        self._loop.run_forever()

    async def _shutdown(self) -> None:
        await self._drop()
        await self._runner.cleanup()

    def _record(self, request: web.Request) -> dict:
        query = dict(request.query)
        self.requests.append((request.path, query))
        self.request_times.append((request.path, time.monotonic()))
        return query

    @staticmethod
    def _error(code: int, msg: str, status: int = 400) -> web.Response:
        return web.json_response({"code": code, "msg": msg}, status=status)

    async def _ping(self, request):
        self._record(request)
        return web.json_response({})

    async def _time(self, request):
        self._record(request)
        return web.json_response({"serverTime": int(time.time() * 1000)})

    async def _contract_detail(self, request):
        self._record(request)
        return web.json_response({"success": True, "code": 0, "data": []})

    async def _exchange_info(self, request):
        self._record(request)
        symbols = []
        for symbol_id in self.history:
            base, quote = symbol_id[:-3], symbol_id[-3:]
            if symbol_id.endswith("USDT"):
                base, quote = symbol_id[:-4], "USDT"
            symbols.append(
                {
                    "symbol": symbol_id,
                    "status": "1",
                    "baseAsset": base,
                    "baseAssetPrecision": "8",
                    "quoteAsset": quote,
                    "quotePrecision": "8",
                    "quoteAssetPrecision": "8",
                    "baseCommissionPrecision": "8",
                    "quoteCommissionPrecision": "8",
                    "orderTypes": ["LIMIT", "MARKET", "LIMIT_MAKER"],
                    "isSpotTradingAllowed": True,
                    "isMarginTradingAllowed": False,
                    "quoteAmountPrecision": "1",
                    "baseSizePrecision": "0.0001",
                    "permissions": ["SPOT"],
                    "filters": [],
                    "maxQuoteAmount": "2000000",
                    "makerCommission": "0",
                    "takerCommission": "0.0005",
                    "tradeSideType": "1",
                }
            )
        now = int(time.time() * 1000)
        return web.json_response(
            {"timezone": "CST", "serverTime": now, "rateLimits": [], "exchangeFilters": [], "symbols": symbols}
        )

    async def _klines(self, request):
        query = self._record(request)
        symbol, interval = query.get("symbol"), query.get("interval")
        if symbol not in self.history:
            return self._error(-1121, "Invalid symbol.")
        if interval != self.interval:
            return self._error(-1121, "Invalid interval.")
        try:
            limit = int(query.get("limit", 500))
            start = int(query["startTime"]) if "startTime" in query else None
            end = int(query["endTime"]) if "endTime" in query else None
        except ValueError:
            return self._error(-1100, "Illegal characters found in parameter.")
        limit = max(1, min(limit, 1000))
        visible = self.history[symbol][: self.position[symbol] + 1]
        selected = [k for k in visible if (start is None or k.t >= start) and (end is None or k.t < end)]
        selected = selected[:limit] if start is not None else selected[-limit:]
        return web.json_response([k.rest(self.interval_ms) for k in selected])

    async def _ws(self, request):
        self.requests.append(("/ws", dict(request.query)))
        if self.refusing:
            return web.Response(status=503, text="maintenance")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.connections += 1
        self._sockets.add(ws)
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                try:
                    body = json.loads(message.data)
                except ValueError:
                    continue
                method = str(body.get("method", "")).upper()
                if method == "PING":
                    await ws.send_str(json.dumps({"id": 0, "code": 0, "msg": "PONG"}))
                elif method in ("SUBSCRIPTION", "UNSUBSCRIPTION"):
                    for channel in body.get("params", []):
                        (
                            self._subscribers[channel].add
                            if method == "SUBSCRIPTION"
                            else self._subscribers[channel].discard
                        )(ws)
                    await ws.send_str(
                        json.dumps({"id": body.get("id", 0), "code": 0, "msg": ",".join(body.get("params", []))})
                    )
                    self.subscriptions += method == "SUBSCRIPTION"
        finally:
            self._sockets.discard(ws)
            for subscribers in self._subscribers.values():
                subscribers.discard(ws)
        return ws

    async def _drop(self) -> None:
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"going away")
        self._sockets.clear()
        self._subscribers.clear()

    def _channel(self, symbol: str) -> str:
        ws_interval = {v: k for k, v in WS_INTERVALS.items()}[self.interval_ms]
        return f"spot@public.kline.v3.api.pb@{symbol}@{ws_interval}"

    async def _push(self, symbol: str, kline: Kline) -> None:
        from ccxt.protobuf.mexc import PushDataV3ApiWrapper_pb2

        channel = self._channel(symbol)
        message = PushDataV3ApiWrapper_pb2.PushDataV3ApiWrapper()
        message.channel = channel
        message.symbol = symbol
        message.sendTime = int(time.time() * 1000)
        k = message.publicSpotKline
        k.interval = channel.rsplit("@", 1)[1]
        k.windowStart = kline.t // 1000
        k.windowEnd = (kline.t + self.interval_ms) // 1000
        k.openingPrice, k.highestPrice, k.lowestPrice, k.closingPrice = kline.o, kline.h, kline.l, kline.c
        k.volume = kline.v
        k.amount = f"{float(kline.c) * float(kline.v):.8f}"
        data = message.SerializeToString()
        delivered = False
        for ws in list(self._subscribers.get(channel, ())):
            try:
                await ws.send_bytes(data)
                delivered = True
            except ConnectionError:
                self._subscribers[channel].discard(ws)
        if delivered:
            self.pushed.append((symbol, kline))

    async def _step(self, symbols: list[str]) -> None:
        for symbol in symbols:
            index = self.position[symbol]
            if index + 1 >= len(self.history[symbol]):
                raise RuntimeError(f"the fake market has no more {symbol} candles")
            await self._push(symbol, self.history[symbol][index])  # final values of the closing candle
            self.position[symbol] = index + 1
            await self._push(symbol, self.history[symbol][index + 1].partial())

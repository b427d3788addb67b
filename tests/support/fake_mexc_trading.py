"""A fake MEXC spot v3 server for the signed trading endpoints, run on 127.0.0.1 in a background thread.

Implements what the live executor uses, after MEXC's spot v3 documentation:

* public: ``GET /api/v3/ping``, ``/api/v3/time``, ``/api/v3/exchangeInfo``, ``/api/v3/ticker/price``;
* signed: ``POST/GET/DELETE /api/v3/order``, ``GET /api/v3/myTrades``, ``GET /api/v3/account``.

Signed requests are checked the way MEXC documents them: the ``X-MEXC-APIKEY`` header must carry the
known key, ``timestamp`` must lie inside ``recvWindow`` (default 5000, at most 60000), and ``signature``
must be the lowercase hex HMAC-SHA256 of *totalParams* (the query string, without the signature,
concatenated with the request body) keyed with the secret. Errors are MEXC's ``{"code": ..., "msg": ...}``
bodies with HTTP 400.

Error codes, as MEXC documents and answers them (https://www.mexc.com/api-docs/spot-v3/error-code and
https://www.mexc.com/api-docs/spot-v3/general-info; ccxt's mexc exception table maps the same codes):

* ``30004`` "Insufficient position": a SELL for more than the free base balance, or a BUY the free quote balance
  cannot pay (ccxt: InsufficientFunds);
* ``30002`` "The minimum transaction volume cannot be less than:" + the minimum notional (ccxt: InvalidOrder),
  for a quantity below the market's minimum or an order value below its minimum notional;
* ``-2013`` "Order does not exist." for GET /api/v3/order, ``-2011`` "Unknown order sent." for DELETE;
* HTTP ``429`` "Too Many Requests" with a ``Retry-After`` header (seconds to wait) when a rate limit is broken
  (general info, "Limits Error"); ``rate_limited`` makes the next so many signed requests answer it.

Behaviours for tests: fills at ``prices[symbol]``; balances are checked (fee included) and moved by every fill;
the commission is charged in ``fee_in``: ``"quote"``, ``"base"``, ``"received"`` (what the order receives: the base
asset on a BUY, the quote on a SELL — MEXC's usual way) or a third asset such as ``"MX"`` (valued at
``prices[asset + quote]``); ``trades_per_order`` splits a fill into several trades (each with its own commission);
``fill_ratio`` < 1 leaves a market order PARTIALLY_CANCELED; ``hang_seconds`` > 0 stores (and fills) a new order but
answers only after that delay, so the client times out while the order exists; ``visible_after_seconds`` > 0 makes
an accepted order (and its trades) invisible to queries for that long after it was placed (MEXC's indexing lag);
``lagging_balances`` makes the next account reads answer older balances (the account view lagging behind the
matching engine); a reused ``newClientOrderId`` is refused; ``orders_invisible`` makes order queries answer
"Order does not exist.".
``stop()`` then ``start()`` restarts the server on the same port with its orders and balances kept (an exchange
restart). Every ``POST /api/v3/order`` that reaches the server is recorded in ``received_orders`` (accepted or not),
every request in ``requests``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from urllib.parse import parse_qsl

from aiohttp import web

DEFAULT_SYMBOLS = {
    # symbol: (base, quote, base decimals, min quantity, min notional)
    "ETHUSDT": ("ETH", "USDT", 4, "0.0001", "5"),
    "BTCUSDT": ("BTC", "USDT", 6, "0.000001", "5"),
    "DOGEUSDT": ("DOGE", "USDT", 2, "1", "1"),
}
DEFAULT_PRICES = {"ETHUSDT": "2000.00", "BTCUSDT": "60000.00", "DOGEUSDT": "0.1500"}
DEFAULT_BALANCES = {"USDT": "10000", "ETH": "1", "BTC": "0.1", "DOGE": "1000"}

# MEXC error codes and messages (spot v3 "Error Code" table; -2013 and -1121 as the API answers them).
SIGNATURE_INVALID = (700002, "Signature for this request is not valid.")
API_KEY_REQUIRED = (400, "api key required")
ACCESS_KEY_INVALID = (10072, "invalid access key")
TIMESTAMP_OUTSIDE = (700003, "Timestamp for this request is outside of the recvWindow.")
RECV_WINDOW_TOO_LARGE = (700005, "recvWindow must less than 60000")
ORDER_ID_MISSING = (700004, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null")
ORDER_NOT_FOUND = (-2013, "Order does not exist.")
UNKNOWN_ORDER = (-2011, "Unknown order sent.")
INVALID_SYMBOL = (-1121, "Invalid symbol.")
INSUFFICIENT_POSITION = (30004, "Insufficient position")
MIN_QUANTITY = (30002, "The minimum transaction volume cannot be less than:")
DECIMALS_TOO_LONG = (10096, "amount decimal places is too long")
PARAM_ERROR = (33333, "param is error")
# MEXC's table lists no code for a reused client order id; the fake answers like the Binance-style v3 API.
DUPLICATE_ORDER = (-2010, "Duplicate order sent.")
TOO_MANY_REQUESTS = (429, "Too Many Requests")


@dataclass
class ReceivedOrder:
    params: dict[str, str]
    api_key: str
    signature_valid: bool
    accepted: bool = False
    error_code: int | None = None


@dataclass
class FakeMexcTrading:
    api_key: str = "fake-mexc-key"
    api_secret: str = "fake-mexc-secret"
    symbols: dict = field(default_factory=lambda: dict(DEFAULT_SYMBOLS))
    prices: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_PRICES))
    balances: dict[str, Decimal] = field(default_factory=lambda: {k: Decimal(v) for k, v in DEFAULT_BALANCES.items()})
    taker_fee: Decimal = Decimal("0.0005")
    fee_in: str = "quote"  # "quote", "base", "received" or a third asset ("MX"): where the commission is charged
    trades_per_order: int = 1
    fill_ratio: Decimal = Decimal("1")
    hang_seconds: float = 0.0
    visible_after_seconds: float = 0.0  # an accepted order is unknown to queries for this long
    orders_invisible: bool = False  # GET /api/v3/order answers -2013 for every order (MEXC's indexing lag)
    rate_limited: int = 0  # the next so many signed requests answer HTTP 429
    lagging_balances: list = field(default_factory=list)  # answers of the next account reads (a lagging view)
    retry_after_seconds: int = 1

    def __post_init__(self) -> None:
        self.orders: dict[str, dict] = {}
        self.client_ids: dict[str, str] = {}
        self.trades: list[dict] = []
        self.received_orders: list[ReceivedOrder] = []
        self.requests: list[tuple[str, str]] = []
        self._placed_at: dict[str, float] = {}  # order id -> time.monotonic() of its placement
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._release: asyncio.Event | None = None
        self.port = 0

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeMexcTrading:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve())
            except BaseException as exc:  # pragma: no cover - reported to start()
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-mexc-trading", daemon=True)
        self._thread.start()
        if not ready.wait(10) or failure:
            raise RuntimeError(f"fake MEXC server did not start: {failure}")
        return self

    async def _serve(self) -> None:
        self._release = asyncio.Event()
        app = web.Application()
        app.router.add_get("/api/v3/ping", self._ping)
        app.router.add_get("/api/v3/time", self._time)
        app.router.add_get("/api/v3/exchangeInfo", self._exchange_info)
        app.router.add_get("/api/v3/ticker/price", self._ticker_price)
        app.router.add_post("/api/v3/order", self._signed(self._new_order))
        app.router.add_get("/api/v3/order", self._signed(self._query_order))
        app.router.add_delete("/api/v3/order", self._signed(self._cancel_order))
        app.router.add_get("/api/v3/myTrades", self._signed(self._my_trades))
        app.router.add_get("/api/v3/account", self._signed(self._account))
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)  # a restart keeps its port
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    def stop(self, *, abrupt: bool = False) -> None:
        """Stop serving (orders and balances are kept for a ``start()`` again). ``abrupt``: a request still
        hanging gets no answer (its connection is dropped), as when the exchange goes down mid-order."""
        if self._loop is None:
            return
        loop = self._loop

        async def shutdown() -> None:
            if not abrupt:
                self._release.set()
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(10)
        self._loop = None

    def __enter__(self) -> FakeMexcTrading:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- what tests read ---------------------------------------------------------------------

    def orders_for(self, client_order_id: str) -> list[ReceivedOrder]:
        with self._lock:
            return [o for o in self.received_orders if o.params.get("newClientOrderId") == client_order_id]

    def shows(self, client_order_id: str) -> bool:
        """Whether a query for this order would find it now (``visible_after_seconds`` has passed)."""
        with self._lock:
            order_id = self.client_ids.get(client_order_id)
        return order_id is not None and not self.orders_invisible and self._visible(order_id)

    def placed_orders(self) -> list[dict]:
        with self._lock:
            return list(self.orders.values())

    def sign(self, total_params: str, secret: str | None = None) -> str:
        return hmac.new((secret or self.api_secret).encode(), total_params.encode(), hashlib.sha256).hexdigest()

    # --- plumbing ----------------------------------------------------------------------------

    @staticmethod
    def _error(code_msg: tuple[int, str], status: int = 400, extra: str = "") -> web.Response:
        code, msg = code_msg
        return web.json_response({"code": code, "msg": msg + extra}, status=status)

    @staticmethod
    def _without_signature(raw: str) -> tuple[str, str | None]:
        kept, signature = [], None
        for part in raw.split("&") if raw else []:
            if part.startswith("signature="):
                signature = part[len("signature=") :]
            else:
                kept.append(part)
        return "&".join(kept), signature

    def _signed(self, handler):
        async def wrapped(request: web.Request) -> web.Response:
            body = (await request.text()) if request.can_read_body else ""
            query, query_signature = self._without_signature(request.query_string)
            body_params, body_signature = self._without_signature(body if "=" in body else "")
            total_params = query + body_params
            signature = query_signature or body_signature
            params = dict(parse_qsl(body_params, keep_blank_values=True))
            params.update(parse_qsl(query, keep_blank_values=True))  # the query string wins, as documented
            api_key = request.headers.get("X-MEXC-APIKEY", "")
            valid = bool(signature) and hmac.compare_digest(signature, self.sign(total_params))
            with self._lock:
                self.requests.append((request.method, request.path))
                if request.method == "POST" and request.path == "/api/v3/order":
                    record = ReceivedOrder(params=params, api_key=api_key, signature_valid=valid)
                    self.received_orders.append(record)
                else:
                    record = None
            refusal = self._authenticate(api_key, valid, params)
            if refusal is None and self._take_rate_limit():
                refusal = self._error(TOO_MANY_REQUESTS, status=429)
                refusal.headers["Retry-After"] = str(self.retry_after_seconds)
            if refusal is not None:
                if record is not None:
                    record.error_code = json.loads(refusal.body)["code"]
                return refusal
            return await handler(request, params, record)

        return wrapped

    def _take_rate_limit(self) -> bool:
        with self._lock:
            if self.rate_limited <= 0:
                return False
            self.rate_limited -= 1
            return True

    def _authenticate(self, api_key: str, signature_valid: bool, params: dict) -> web.Response | None:
        if not api_key:
            return self._error(API_KEY_REQUIRED)
        if not hmac.compare_digest(api_key, self.api_key):
            return self._error(ACCESS_KEY_INVALID)
        if not signature_valid:
            return self._error(SIGNATURE_INVALID)
        try:
            timestamp = int(params["timestamp"])
            recv_window = int(params.get("recvWindow", "5000"))
        except (KeyError, ValueError):
            return self._error(TIMESTAMP_OUTSIDE)
        if recv_window > 60000:
            return self._error(RECV_WINDOW_TOO_LARGE)
        server_time = int(time.time() * 1000)
        if not (timestamp < server_time + 1000 and server_time - timestamp <= recv_window):
            return self._error(TIMESTAMP_OUTSIDE)
        return None

    def _symbol(self, params: dict) -> tuple | None:
        return self.symbols.get(params.get("symbol", ""))

    # --- public endpoints --------------------------------------------------------------------

    async def _ping(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def _time(self, request: web.Request) -> web.Response:
        return web.json_response({"serverTime": int(time.time() * 1000)})

    async def _exchange_info(self, request: web.Request) -> web.Response:
        symbols = []
        for name, (base, quote, decimals, min_qty, min_notional) in self.symbols.items():
            symbols.append(
                {
                    "symbol": name,
                    "status": "1",
                    "baseAsset": base,
                    "baseAssetPrecision": decimals,
                    "quoteAsset": quote,
                    "quotePrecision": 4,
                    "quoteAssetPrecision": 4,
                    "baseCommissionPrecision": decimals,
                    "quoteCommissionPrecision": 4,
                    "orderTypes": ["LIMIT", "MARKET", "LIMIT_MAKER"],
                    "isSpotTradingAllowed": True,
                    "isMarginTradingAllowed": False,
                    "quoteAmountPrecision": min_notional,
                    "baseSizePrecision": min_qty,
                    "permissions": ["SPOT"],
                    "filters": [],
                    "maxQuoteAmount": "2000000",
                    "makerCommission": "0",
                    "takerCommission": str(self.taker_fee),
                    "quoteAmountPrecisionMarket": min_notional,
                    "maxQuoteAmountMarket": "100000",
                    "fullName": base,
                    "tradeSideType": 1,
                }
            )
        return web.json_response(
            {
                "timezone": "CST",
                "serverTime": int(time.time() * 1000),
                "rateLimits": [],
                "exchangeFilters": [],
                "symbols": symbols,
            }
        )

    async def _ticker_price(self, request: web.Request) -> web.Response:
        symbol = request.query.get("symbol", "")
        if symbol not in self.prices:
            return self._error(INVALID_SYMBOL)
        return web.json_response({"symbol": symbol, "price": self.prices[symbol]})

    # --- signed endpoints --------------------------------------------------------------------

    async def _new_order(self, request: web.Request, params: dict, record: ReceivedOrder) -> web.Response:
        response, order = self._place(params)
        if record is not None:
            with self._lock:
                record.accepted = order is not None
                record.error_code = None if order is not None else json.loads(response.body)["code"]
        if order is not None and self.hang_seconds > 0:
            try:
                await asyncio.wait_for(self._release.wait(), timeout=self.hang_seconds)
            except TimeoutError:
                pass
        return response

    def _place(self, params: dict) -> tuple[web.Response, dict | None]:
        spec = self._symbol(params)
        if spec is None:
            return self._error(INVALID_SYMBOL), None
        base, quote, decimals, min_qty, min_notional = spec
        side, order_type = params.get("side"), params.get("type")
        if side not in ("BUY", "SELL") or order_type != "MARKET" or "quantity" not in params:
            return self._error(PARAM_ERROR), None
        try:
            quantity = Decimal(params["quantity"])
        except ArithmeticError:
            return self._error(PARAM_ERROR), None
        if quantity != quantity.quantize(Decimal(1).scaleb(-decimals), ROUND_DOWN):
            return self._error(DECIMALS_TOO_LONG), None
        price = Decimal(self.prices[params["symbol"]])
        if quantity < Decimal(min_qty) or quantity * price < Decimal(min_notional):
            return self._error(MIN_QUANTITY, extra=f"{min_notional}{quote}"), None
        client_id = params.get("newClientOrderId") or uuid.uuid4().hex
        with self._lock:
            if client_id in self.client_ids:
                return self._error(DUPLICATE_ORDER), None
            filled = (quantity * self.fill_ratio).quantize(Decimal(1).scaleb(-decimals), ROUND_DOWN)
            fee_asset = self._fee_asset(side, base, quote)
            # What the whole order would need, fee included: a market order the balance cannot pay is refused.
            needs = self._movements(side, base, quote, quantity, price, fee_asset)
            for asset, change in needs.items():
                if change < 0 and self.balances.get(asset, Decimal(0)) + change < 0:
                    return self._error(INSUFFICIENT_POSITION), None
            now = int(time.time() * 1000)
            order_id = f"C02__{uuid.uuid4().int % 10**18}"
            status = "FILLED" if filled == quantity else ("PARTIALLY_CANCELED" if filled else "CANCELED")
            parts = self._split(filled, decimals)
            cost = Decimal(0)
            for part in parts:
                part_cost = part * price
                cost += part_cost
                moved = self._movements(side, base, quote, part, price, fee_asset)
                for asset, change in moved.items():
                    self.balances[asset] = self.balances.get(asset, Decimal(0)) + change
                self.trades.append(
                    {
                        "symbol": params["symbol"],
                        "id": uuid.uuid4().hex,
                        "orderId": order_id,
                        "orderListId": -1,
                        "price": str(price),
                        "qty": str(part),
                        "quoteQty": str(part_cost),
                        "commission": str(self._fee(part, price, fee_asset, base, quote)),
                        "commissionAsset": fee_asset,
                        "time": now,
                        "isBuyer": side == "BUY",
                        "isMaker": False,
                        "isBestMatch": True,
                        "isSelfTrade": False,
                        "clientOrderId": client_id,
                    }
                )
            order = {
                "symbol": params["symbol"],
                "orderId": order_id,
                "orderListId": -1,
                "clientOrderId": client_id,
                "price": "0",
                "origQty": str(quantity),
                "executedQty": str(filled),
                "cummulativeQuoteQty": str(cost),
                "status": status,
                "timeInForce": None,
                "type": "MARKET",
                "side": side,
                "stopPrice": None,
                "icebergQty": None,
                "time": now,
                "updateTime": now,
                "isWorking": True,
                "origQuoteOrderQty": "0",
            }
            self.orders[order_id] = order
            self.client_ids[client_id] = order_id
            self._placed_at[order_id] = time.monotonic()
        answer = {
            "symbol": params["symbol"],
            "orderId": order_id,
            "orderListId": -1,
            "price": "0",
            "origQty": str(quantity),
            "type": "MARKET",
            "side": side,
            "transactTime": now,
        }
        return web.json_response(answer), order

    def _fee_asset(self, side: str, base: str, quote: str) -> str:
        if self.fee_in == "quote":
            return quote
        if self.fee_in == "base":
            return base
        if self.fee_in == "received":
            return base if side == "BUY" else quote
        return self.fee_in

    def _fee(self, quantity: Decimal, price: Decimal, fee_asset: str, base: str, quote: str) -> Decimal:
        """The commission of a fill of ``quantity`` at ``price`` in ``fee_asset`` (a third asset at its own price)."""
        if fee_asset == base:
            return quantity * self.taker_fee
        value = quantity * price * self.taker_fee
        return value if fee_asset == quote else value / Decimal(self.prices[fee_asset + quote])

    def _movements(
        self, side: str, base: str, quote: str, quantity: Decimal, price: Decimal, fee_asset: str
    ) -> dict[str, Decimal]:
        """How a fill moves the balances: base and quote by the trade, the fee asset by the commission."""
        sign = 1 if side == "BUY" else -1
        moved = {base: sign * quantity, quote: -sign * quantity * price}
        moved[fee_asset] = moved.get(fee_asset, Decimal(0)) - self._fee(quantity, price, fee_asset, base, quote)
        return moved

    def _split(self, filled: Decimal, decimals: int) -> list[Decimal]:
        """``filled`` as ``trades_per_order`` trades at the market's step (the last takes the rest)."""
        if filled <= 0:
            return []
        count = max(1, self.trades_per_order)
        part = (filled / count).quantize(Decimal(1).scaleb(-decimals), ROUND_DOWN)
        parts = [part] * (count - 1) if part > 0 else []
        return [*parts, filled - sum(parts, Decimal(0))]

    def _visible(self, order_id: str) -> bool:
        placed = self._placed_at.get(order_id)
        return placed is None or time.monotonic() - placed >= self.visible_after_seconds

    def _find(self, params: dict) -> tuple[dict | None, web.Response | None]:
        if self._symbol(params) is None:
            return None, self._error(INVALID_SYMBOL)
        client_id, order_id = params.get("origClientOrderId"), params.get("orderId")
        if not client_id and not order_id:
            return None, self._error(ORDER_ID_MISSING)
        with self._lock:
            if client_id:
                order_id = self.client_ids.get(client_id)
            order = self.orders.get(order_id or "")
        hidden = self.orders_invisible or (order is not None and not self._visible(order["orderId"]))
        if order is None or order["symbol"] != params["symbol"] or hidden:
            return None, self._error(ORDER_NOT_FOUND)
        return order, None

    async def _query_order(self, request: web.Request, params: dict, record) -> web.Response:
        order, refusal = self._find(params)
        return refusal or web.json_response(order)

    async def _cancel_order(self, request: web.Request, params: dict, record) -> web.Response:
        order, refusal = self._find(params)
        if refusal is not None:
            return self._error(UNKNOWN_ORDER) if json.loads(refusal.body)["code"] == ORDER_NOT_FOUND[0] else refusal
        if order["status"] not in ("NEW", "PARTIALLY_FILLED"):
            return self._error(UNKNOWN_ORDER)  # MEXC: no longer valid for cancellation
        with self._lock:
            order["status"] = "PARTIALLY_CANCELED" if Decimal(order["executedQty"]) else "CANCELED"
        answer = {k: order[k] for k in ("symbol", "orderId", "price", "origQty", "type", "side")}
        answer.update(origClientOrderId=order["clientOrderId"], executedQty=order["executedQty"])
        answer.update(cummulativeQuoteQty=order["cummulativeQuoteQty"], status=order["status"])
        return web.json_response(answer)

    async def _my_trades(self, request: web.Request, params: dict, record) -> web.Response:
        if self._symbol(params) is None:
            return self._error(INVALID_SYMBOL)
        with self._lock:
            trades = [
                t
                for t in self.trades
                if t["symbol"] == params["symbol"]
                and params.get("orderId") in (None, t["orderId"])
                and self._visible(t["orderId"])
            ]
        return web.json_response(trades)

    async def _account(self, request: web.Request, params: dict, record) -> web.Response:
        with self._lock:
            shown = self.lagging_balances.pop(0) if self.lagging_balances else self.balances
            balances = [{"asset": k, "free": str(v), "locked": "0"} for k, v in sorted(shown.items())]
        return web.json_response(
            {
                "canTrade": True,
                "canWithdraw": False,
                "canDeposit": False,
                "updateTime": None,
                "accountType": "SPOT",
                "balances": balances,
                "permissions": ["SPOT"],
            }
        )

    def add_open_order(self, symbol: str, side: str, quantity: str, client_order_id: str) -> dict:
        """Store a resting (NEW) order directly, for cancel tests: market orders never rest."""
        now = int(time.time() * 1000)
        order_id = f"C02__{uuid.uuid4().int % 10**18}"
        order = {
            "symbol": symbol,
            "orderId": order_id,
            "orderListId": -1,
            "clientOrderId": client_order_id,
            "price": "0",
            "origQty": quantity,
            "executedQty": "0",
            "cummulativeQuoteQty": "0",
            "status": "NEW",
            "timeInForce": None,
            "type": "MARKET",
            "side": side,
            "stopPrice": None,
            "icebergQty": None,
            "time": now,
            "updateTime": now,
            "isWorking": True,
            "origQuoteOrderQty": "0",
        }
        with self._lock:
            self.orders[order_id] = order
            self.client_ids[client_order_id] = order_id
        return order

"""The live executor: MARKET orders on MEXC spot through ccxt, idempotent by client order id.

Contract with the execution shell (see the module's public names below):

* ``submit`` first asks the exchange for the client order id; an order it already knows is returned
  as it stands and nothing is sent again, so a redelivered task never places a second order.
* A quantity is rounded down to the market's amount step and checked against the market's minimum
  amount and minimum notional before anything is sent; below a minimum the answer is a REJECTED fill.
* Exchange refusals come back as REJECTED (business: funds, quantity, symbol) or FAILED (credentials,
  permissions, rate limit, clock) fills with the exchange's reason.
* When the outcome of a placement cannot be known (timeout, connection lost, HTTP 5xx, order accepted
  but not final in time) ``submit`` raises ``OrderOutcomeUnknown``: the order stays PENDING and the
  reconciliation asks ``find`` later — several times, since an accepted order can take a moment to become
  visible to queries, before it concludes that the exchange never received it.
* A rate limit (HTTP 429) is waited out (its ``Retry-After``, at most ``RATE_LIMIT_MAX_WAIT_SEC``) and the
  placement tried again, a few times; then the order is FAILED (it was never placed).
* What an order executed comes from its trades (``fetch_order_trades``), each with its commission's currency:
  a ``LiveFill`` carries the commission paid in the quote asset, in the base asset (it reduces what is held)
  and in any other asset (recorded as such).

Money and quantities are ``Decimal`` built from the exchange's strings, never from floats. The API key
and secret never appear in log records, fill reasons or exception texts (ccxt's own debug log of the
request headers goes through a redacting logger).

ccxt is imported where it is used (building the client, catching its errors): ``import ccxt`` loads every
exchange it knows (about a second), and the modules that only ask ``live_trading_enabled`` (dashboard, risk
decisions, a backtest) must not pay for it.
"""

from __future__ import annotations

import json
import logging
import time
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal, InvalidOperation
from functools import cache
from typing import NamedTuple

from django.conf import settings

logger = logging.getLogger("cdb.execution.live")

PRICE_STEP = Decimal("0.000000000001")  # MoneyField: 12 fractional digits
ZERO = Decimal(0)
POLL_INTERVAL_SEC = 0.2

# MEXC spot v3 error codes (https://mexcdevelop.github.io/apidocs/spot_v3_en/#error-code)
ORDER_DOES_NOT_EXIST = -2013  # GET /api/v3/order for an unknown order
UNKNOWN_ORDER_SENT = -2011  # DELETE /api/v3/order for an unknown or no longer cancellable order
DUPLICATE_ORDER = -2010
CREDENTIAL_CODES = {400, 401, 402, 602, 700001, 700002, 700006, 700007, 10072, 70011, 730100}
UNKNOWN_OUTCOME_CODES = {500, 503, 504, 20002}  # MEXC: a 5xx answer means the execution status is UNKNOWN

INSUFFICIENT_POSITION = 30004  # MEXC: not enough free balance for the order
MIN_TRANSACTION_VOLUME = 30002  # MEXC: below the minimum quantity or the minimum notional
RESIZABLE_CODES = {INSUFFICIENT_POSITION, MIN_TRANSACTION_VOLUME}  # a SELL refused so is sized again

FINAL_STATUSES = {"FILLED", "CANCELED", "PARTIALLY_CANCELED", "REJECTED", "EXPIRED"}
LOOKUP_ATTEMPTS = 4  # ``find``: lookups before an order is taken as never received
LOOKUP_FIRST_WAIT_SEC = 0.25  # doubled after each miss: 0.25 + 0.5 + 1 s in all
RATE_LIMIT_RETRIES = 2
RATE_LIMIT_MAX_WAIT_SEC = 5.0
TRADES_ATTEMPTS = 3  # an order's trades may show a moment after the order itself


class LiveFill(NamedTuple):
    """What the exchange executed for one order, read from its trades.

    ``quantity`` is what was traded (before any commission), ``price`` its average; ``fee`` is the commission
    valued in the quote asset (quote part plus base part at the fill price: what the book counts as fees);
    ``quote_fee`` and ``base_fee`` are the commission paid in each of the two assets, ``other_fees`` what was
    paid in a third asset (e.g. MX) as ``(asset, amount)`` pairs. ``code`` is the exchange's error code of a
    refusal."""

    status: str  # FILLED, PARTIALLY_FILLED, PENDING (still open), FAILED, REJECTED or EXPIRED
    quantity: Decimal
    price: Decimal | None
    fee: Decimal
    order_id: str
    reason: str = ""
    quote_fee: Decimal = Decimal(0)
    base_fee: Decimal = Decimal(0)
    other_fees: tuple[tuple[str, Decimal], ...] = ()
    code: int | None = None


class LiveExecutionError(Exception):
    """The live executor could not do what was asked (configuration, credentials)."""


class OrderOutcomeUnknown(LiveExecutionError):
    """A placement may or may not have reached the exchange: keep the order PENDING and reconcile with lookup."""


class ExchangeUnreachable(LiveExecutionError):
    """A read (lookup, cancel, balance) failed on the network; nothing is known, try again later."""


def live_trading_enabled() -> bool:
    """Live orders only when LIVE_TRADING is on and both MEXC keys are set."""
    return bool(
        getattr(settings, "LIVE_TRADING", False)
        and getattr(settings, "MEXC_API_KEY", "")
        and getattr(settings, "MEXC_API_SECRET", "")
    )


def system_symbol_to_ccxt(symbol: str) -> str:
    """``ETH_USDT`` -> ``ETH/USDT`` (a ccxt symbol is returned unchanged)."""
    if "/" in symbol:
        return symbol
    base, sep, quote = symbol.partition("_")
    return f"{base}/{quote}" if sep else symbol


@cache
def spot_mexc_class() -> type:
    """ccxt's mexc restricted to spot: no contract market list, no wallet (withdraw-read) currency list."""
    from ccxt import mexc

    class SpotMexc(mexc):
        def describe(self):
            return self.deep_extend(super().describe(), {"has": {"fetchCurrencies": False}})

        def fetch_markets(self, params=None):
            if self.safe_bool(self.options, "adjustForTimeDifference", False):
                self.load_time_difference()
            return self.fetch_spot_markets(params or {})

    return SpotMexc


class _RedactingLogger:
    """Stands in for ccxt's logger: formats the record and blanks every secret before passing it on."""

    def __init__(self, target: logging.Logger, secrets: list[str]):
        self._target = target
        self._secrets = [s for s in secrets if s]

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 - logging.Logger's name
        return self._target.isEnabledFor(level)

    def log(self, level: int, msg, *args, **kwargs) -> None:
        if not self._target.isEnabledFor(level):
            return
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):
            text = " ".join([str(msg), *map(str, args)])
        for secret in self._secrets:
            text = text.replace(secret, "***")
        self._target.log(level, "%s", text)

    def debug(self, msg, *args, **kwargs) -> None:
        self.log(logging.DEBUG, msg, *args)

    def info(self, msg, *args, **kwargs) -> None:
        self.log(logging.INFO, msg, *args)

    def warning(self, msg, *args, **kwargs) -> None:
        self.log(logging.WARNING, msg, *args)

    def error(self, msg, *args, **kwargs) -> None:
        self.log(logging.ERROR, msg, *args)

    def exception(self, msg, *args, **kwargs) -> None:
        self.log(logging.ERROR, msg, *args)


def build_exchange():
    """A sync ccxt MEXC client from settings: spot only, rate limited, MEXC_REST_URL as the base."""
    key, secret = getattr(settings, "MEXC_API_KEY", ""), getattr(settings, "MEXC_API_SECRET", "")
    if not (key and secret):
        raise LiveExecutionError("live trading needs MEXC_API_KEY and MEXC_API_SECRET")
    base = settings.MEXC_REST_URL.rstrip("/")
    exchange = spot_mexc_class()(
        {
            "apiKey": key,
            "secret": secret,
            "enableRateLimit": True,
            "timeout": int(Decimal(str(settings.LIVE_ORDER_TIMEOUT_SEC)) * 1000),
            "options": {"defaultType": "spot", "adjustForTimeDifference": True, "recvWindow": 5000},
        }
    )
    exchange.urls["api"]["spot"] = {"public": base, "private": base}
    return exchange


def _exchange_answer(exc: Exception) -> tuple[int | None, str]:
    """MEXC's ``{"code", "msg"}`` out of a ccxt error text ("mexc {json}"), else (None, the text)."""
    text = str(exc)
    start = text.find("{")
    if start >= 0:
        try:
            body = json.loads(text[start:])
        except ValueError:
            body = None
        if isinstance(body, dict) and "code" in body:
            try:
                code = int(body["code"])
            except (TypeError, ValueError):
                code = None
            return code, str(body.get("msg") or body.get("message") or "")
    return None, text


def _plain(value: Decimal) -> str:
    """A Decimal without exponent or trailing zeros: 5.0 -> "5", 1E+1 -> "10"."""
    return format(value.normalize(), "f")


def _dec(value, default: Decimal = ZERO) -> Decimal:
    if value is None or value == "":
        return default
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return default


class LiveExecutor:
    def __init__(self, exchange=None):
        self.exchange = exchange if exchange is not None else build_exchange()
        self._secrets = [s for s in (getattr(self.exchange, "apiKey", ""), getattr(self.exchange, "secret", "")) if s]
        self.exchange.logger = _RedactingLogger(logging.getLogger("cdb.execution.live.ccxt"), self._secrets)
        timeout_ms = getattr(self.exchange, "timeout", 10000) or 10000
        self.settle_timeout_sec = max(Decimal(timeout_ms) / 1000, Decimal(1))

    def __repr__(self) -> str:
        return f"<LiveExecutor {getattr(self.exchange, 'id', '?')}>"

    # --- public API ---------------------------------------------------------------------------

    def submit(
        self, client_order_id: str, symbol: str, side: str, quantity: Decimal, reference_price: Decimal | None = None
    ) -> LiveFill:
        """Place a MARKET order once; see the module docstring. ``reference_price`` (e.g. the approved
        price) is used for the minimum-notional check; without it the exchange's last price is asked."""
        import ccxt

        side = side.upper()
        if side not in ("BUY", "SELL"):
            raise ValueError(f"side must be BUY or SELL, not {side!r}")
        try:
            market = self._market(symbol)
        except ccxt.NetworkError as exc:
            raise OrderOutcomeUnknown(
                self._text(f"markets of the exchange unavailable: {type(exc).__name__}")
            ) from None
        if market is None:
            return self._refused("REJECTED", f"unknown symbol {symbol} on MEXC spot")

        try:
            existing = self._lookup(client_order_id, market)
        except ExchangeUnreachable as exc:
            raise OrderOutcomeUnknown(self._text(f"could not check {client_order_id} before sending: {exc}")) from None
        except LiveExecutionError as exc:  # credentials refused: nothing was sent
            logger.warning("order %s FAILED before sending: %s", client_order_id, exc)
            return self._refused("FAILED", self._text(f"exchange refused the credentials: {exc}"))
        if existing is not None:
            logger.info("order %s already on the exchange (%s); not sent again", client_order_id, existing.status)
            if existing.status == "PENDING":  # still open: follow it like a fresh placement
                return self._await_final(client_order_id, market, existing.order_id)
            return existing

        amount, problem = self._checked_amount(market, _dec(quantity), reference_price)
        if problem:
            logger.info("order %s rejected before sending: %s", client_order_id, problem)
            return self._refused("REJECTED", problem)

        try:
            created = self._create_order(client_order_id, market, side, amount)
        except (ccxt.InvalidNonce, ccxt.RateLimitExceeded, ccxt.DDoSProtection) as exc:
            return self._refusal(client_order_id, "FAILED", exc)  # an explicit answer: not placed
        except ccxt.NetworkError as exc:
            logger.warning("order %s: outcome unknown after %s", client_order_id, type(exc).__name__)
            raise OrderOutcomeUnknown(
                self._text(f"{side} {amount} {market['symbol']} ({client_order_id}): no answer ({type(exc).__name__})")
            ) from None
        except (ccxt.AuthenticationError, ccxt.PermissionDenied, ccxt.AccountSuspended) as exc:
            return self._refusal(client_order_id, "FAILED", exc)
        except (ccxt.InsufficientFunds, ccxt.InvalidOrder, ccxt.BadRequest) as exc:
            code, message = _exchange_answer(exc)
            if code == DUPLICATE_ORDER or "duplicate" in message.lower():
                return self._existing_after_duplicate(client_order_id, market)
            if code in CREDENTIAL_CODES:
                return self._refusal(client_order_id, "FAILED", exc)
            return self._refusal(client_order_id, "REJECTED", exc)
        except ccxt.ExchangeError as exc:
            code, message = _exchange_answer(exc)
            if code == DUPLICATE_ORDER or "duplicate" in message.lower():
                return self._existing_after_duplicate(client_order_id, market)
            if code is None or code in UNKNOWN_OUTCOME_CODES:
                raise OrderOutcomeUnknown(
                    self._text(f"{client_order_id}: exchange error without a definite answer")
                ) from None
            return self._refusal(client_order_id, "FAILED" if code in CREDENTIAL_CODES else "REJECTED", exc)
        except Exception as exc:  # anything else after the request may have left: assume it might be placed
            logger.warning("order %s: unexpected %s while sending", client_order_id, type(exc).__name__)
            raise OrderOutcomeUnknown(self._text(f"{client_order_id}: unexpected {type(exc).__name__}")) from None

        order_id = str(created.get("id") or "")
        logger.info("order %s sent as %s: %s %s %s", client_order_id, order_id, side, amount, market["symbol"])
        return self._await_final(client_order_id, market, order_id)

    def lookup(self, client_order_id: str, symbol: str) -> LiveFill | None:
        """The exchange's state of the order with this client id; None when the exchange does not know it.

        Open orders come back as ``LiveFill(status="PENDING")``. Raises ExchangeUnreachable on network trouble
        and LiveExecutionError when the exchange refuses the credentials."""
        import ccxt

        try:
            market = self._market(symbol)
        except ccxt.NetworkError as exc:
            raise ExchangeUnreachable(self._text(f"markets unavailable: {type(exc).__name__}")) from None
        if market is None:
            return None
        return self._lookup(client_order_id, market)

    def find(self, client_order_id: str, symbol: str, attempts: int = LOOKUP_ATTEMPTS) -> LiveFill | None:
        """``lookup``, asked up to ``attempts`` times (waiting 0.25 s, 0.5 s, 1 s … between) while the exchange does
        not know the order: one accepted a moment ago may not be visible yet. None only when every lookup said
        the order does not exist; ExchangeUnreachable when the exchange could not be asked."""
        wait = LOOKUP_FIRST_WAIT_SEC
        for attempt in range(attempts):
            found = self.lookup(client_order_id, symbol)
            if found is not None:
                return found
            if attempt + 1 < attempts:
                time.sleep(wait)
                wait *= 2
        logger.info("order %s unknown to the exchange after %d lookups", client_order_id, attempts)
        return None

    def cancel(self, client_order_id: str, symbol: str) -> LiveFill | None:
        """Cancel the order if it is still open; returns its final state (None when the exchange does not know it)."""
        import ccxt

        try:
            market = self._market(symbol)
        except ccxt.NetworkError as exc:
            raise ExchangeUnreachable(self._text(f"markets unavailable: {type(exc).__name__}")) from None
        if market is None:
            return None
        try:
            self.exchange.cancel_order("", market["symbol"], {"clientOrderId": client_order_id})
        except ccxt.NetworkError as exc:
            raise ExchangeUnreachable(self._text(f"cancel {client_order_id}: {type(exc).__name__}")) from None
        except ccxt.AuthenticationError as exc:
            raise LiveExecutionError(self._text(f"cancel {client_order_id}: {self._reason(exc)}")) from None
        except ccxt.ExchangeError as exc:
            code, _ = _exchange_answer(exc)
            if code not in (UNKNOWN_ORDER_SENT, ORDER_DOES_NOT_EXIST):
                raise LiveExecutionError(self._text(f"cancel {client_order_id}: {self._reason(exc)}")) from None
            # unknown, or no longer cancellable (already final): the lookup tells which
        return self._lookup(client_order_id, market)

    def balance(self) -> dict[str, Decimal]:
        """Free (available) balance per asset on the spot account."""
        import ccxt

        try:
            answer = self.exchange.fetch_balance()
        except ccxt.NetworkError as exc:
            raise ExchangeUnreachable(self._text(f"balance: {type(exc).__name__}")) from None
        except ccxt.ExchangeError as exc:
            raise LiveExecutionError(self._text(f"balance: {self._reason(exc)}")) from None
        return {entry["asset"]: _dec(entry.get("free")) for entry in (answer.get("info") or {}).get("balances", [])}

    def balances(self) -> dict[str, tuple[Decimal, Decimal]]:
        """(free, locked) per asset on the spot account, as ``fetch_balance`` reports them."""
        import ccxt

        try:
            answer = self.exchange.fetch_balance()
        except ccxt.NetworkError as exc:
            raise ExchangeUnreachable(self._text(f"balance: {type(exc).__name__}")) from None
        except ccxt.ExchangeError as exc:
            raise LiveExecutionError(self._text(f"balance: {self._reason(exc)}")) from None
        return {
            entry["asset"]: (_dec(entry.get("free")), _dec(entry.get("locked")))
            for entry in (answer.get("info") or {}).get("balances", [])
        }

    def market_of(self, symbol: str) -> dict | None:
        """The ccxt market of a system symbol (None when MEXC spot has no such market)."""
        import ccxt

        try:
            return self._market(symbol)
        except ccxt.NetworkError as exc:
            raise ExchangeUnreachable(self._text(f"markets unavailable: {type(exc).__name__}")) from None

    def last_price(self, symbol: str) -> Decimal:
        """The exchange's last traded price of the symbol; 0 when it cannot be had."""
        market = self.market_of(symbol)
        return ZERO if market is None else self._last_price(market)

    def sellable(self, symbol: str, wanted: Decimal, free: Decimal) -> tuple[Decimal, str]:
        """What a SELL of ``wanted`` can really send with ``free`` units of the base asset available: the smaller of
        the two rounded down to the market's step, and why it cannot be sent (below the market's minimum
        quantity or notional: dust) — an empty reason when it can."""
        market = self.market_of(symbol)
        if market is None:
            return ZERO, f"unknown symbol {symbol} on MEXC spot"
        return self._checked_amount(market, min(_dec(wanted), _dec(free)), None)

    # --- internals ----------------------------------------------------------------------------

    def _text(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _reason(self, exc: Exception) -> str:
        code, message = _exchange_answer(exc)
        if code is not None:
            return self._text(f"MEXC {code}: {message}")
        return self._text(f"{type(exc).__name__}: {message}")

    @staticmethod
    def _refused(status: str, reason: str, order_id: str = "", code: int | None = None) -> LiveFill:
        return LiveFill(status, ZERO, None, ZERO, order_id, reason, code=code)

    def _refusal(self, client_order_id: str, status: str, exc: Exception) -> LiveFill:
        import ccxt

        reason = f"exchange refused the order: {self._reason(exc)}"
        if isinstance(exc, ccxt.InsufficientFunds):
            reason = f"insufficient balance: {self._reason(exc)}"
        logger.warning("order %s %s: %s", client_order_id, status, reason)
        return self._refused(status, reason, code=_exchange_answer(exc)[0])

    def _create_order(self, client_order_id: str, market: dict, side: str, amount: Decimal) -> dict:
        return self._waiting_out_rate_limits(
            client_order_id,
            lambda: self.exchange.create_order(
                market["symbol"], "market", side.lower(), str(amount), None, {"clientOrderId": client_order_id}
            ),
        )

    def _waiting_out_rate_limits(self, client_order_id: str, call):
        """``call()``; a rate limit (HTTP 429) is waited out (its Retry-After) and the call made again, a few times."""
        import ccxt

        for attempt in range(RATE_LIMIT_RETRIES + 1):
            try:
                return call()
            except ccxt.RateLimitExceeded:
                if attempt == RATE_LIMIT_RETRIES:
                    raise
                wait = self._retry_after()
                logger.warning("order %s: rate limited, asking again in %.1f s", client_order_id, wait)
                time.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _retry_after(self) -> float:
        """The wait the exchange asked for in its last answer's ``Retry-After`` (1 s if none), capped."""
        headers = getattr(self.exchange, "last_response_headers", None) or {}
        value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
        try:
            wait = float(value) if value is not None else 1.0
        except ValueError:
            wait = 1.0
        return min(max(wait, 0.0), RATE_LIMIT_MAX_WAIT_SEC)

    def _market(self, symbol: str) -> dict | None:
        self.exchange.load_markets()
        unified = system_symbol_to_ccxt(symbol)
        market = self.exchange.markets.get(unified)
        if market is None and unified in self.exchange.markets_by_id:
            market = self.exchange.markets_by_id[unified][0]
        if market is None or not market.get("spot"):
            return None
        return market

    def _checked_amount(self, market: dict, quantity: Decimal, reference_price: Decimal | None) -> tuple[Decimal, str]:
        symbol = market["symbol"]
        step = _dec(market["precision"].get("amount"))
        amount = (quantity / step).to_integral_value(ROUND_DOWN) * step if step > 0 else quantity
        amount = amount.quantize(step) if step > 0 else amount
        min_amount = _dec((market["limits"].get("amount") or {}).get("min"))
        if amount <= 0 or amount < min_amount:
            return amount, (
                f"quantity {_plain(quantity)} rounds down to {_plain(amount)} {market['base']}, "
                f"below the minimum order quantity {_plain(min_amount)} {market['base']} for {symbol}"
            )
        min_cost = _dec((market["limits"].get("cost") or {}).get("min"))
        price = _dec(reference_price) if reference_price is not None else self._last_price(market)
        if min_cost > 0 and price > 0 and amount * price < min_cost:
            return amount, (
                f"order value {_plain(amount * price)} {market['quote']} "
                f"is below the minimum notional {_plain(min_cost)} {market['quote']} for {symbol}"
            )
        return amount, ""

    def _last_price(self, market: dict) -> Decimal:
        """The last traded price, for the minimum-notional check; 0 (check left to the exchange) if unavailable."""
        try:
            return _dec(self.exchange.spotPublicGetTickerPrice({"symbol": market["id"]}).get("price"))
        except Exception as exc:  # the exchange enforces the minimum anyway
            logger.warning("no last price for %s (%s); minimum notional left to the exchange", market["id"], exc)
            return ZERO

    def _fetch_order(self, client_order_id: str, market: dict) -> dict | None:
        import ccxt

        try:
            order = self._waiting_out_rate_limits(
                client_order_id,
                lambda: self.exchange.fetch_order("", market["symbol"], {"clientOrderId": client_order_id}),
            )
        except ccxt.NetworkError as exc:
            raise ExchangeUnreachable(self._text(f"lookup {client_order_id}: {type(exc).__name__}")) from None
        except ccxt.AuthenticationError as exc:
            raise LiveExecutionError(self._text(f"lookup {client_order_id}: {self._reason(exc)}")) from None
        except ccxt.ExchangeError as exc:
            code, message = _exchange_answer(exc)
            if code == ORDER_DOES_NOT_EXIST or "does not exist" in message.lower():
                return None
            if code in CREDENTIAL_CODES:
                raise LiveExecutionError(self._text(f"lookup {client_order_id}: {self._reason(exc)}")) from None
            raise ExchangeUnreachable(self._text(f"lookup {client_order_id}: {self._reason(exc)}")) from None
        return order.get("info") or {}

    def _lookup(self, client_order_id: str, market: dict) -> LiveFill | None:
        info = self._fetch_order(client_order_id, market)
        return None if info is None else self._fill_from_order(info, market)

    def _await_final(self, client_order_id: str, market: dict, order_id: str) -> LiveFill:
        """Follow an accepted order until the exchange reports it final, within the settle timeout."""
        deadline = time.monotonic() + float(self.settle_timeout_sec)
        last = "not visible yet"
        while True:
            try:
                info = self._fetch_order(client_order_id, market)
            except ExchangeUnreachable as exc:
                info, last = None, str(exc)
            if info is not None:
                last = info.get("status") or "?"
                if last in FINAL_STATUSES:
                    return self._fill_from_order(info, market)
            if time.monotonic() >= deadline:
                raise OrderOutcomeUnknown(
                    self._text(f"order {order_id} ({client_order_id}) accepted but not final in time: {last}")
                )
            time.sleep(POLL_INTERVAL_SEC)

    def _fill_from_order(self, info: dict, market: dict) -> LiveFill:
        order_id = str(info.get("orderId") or "")
        status = info.get("status") or ""
        executed = _dec(info.get("executedQty"))
        cost = _dec(info.get("cummulativeQuoteQty"))
        price = (cost / executed).quantize(PRICE_STEP, ROUND_HALF_EVEN) if executed > 0 else None
        if status not in FINAL_STATUSES:
            return LiveFill("PENDING", executed, price, ZERO, order_id, f"open on the exchange ({status})")
        if executed <= 0:
            return self._refused("FAILED", f"cancelled by the exchange with nothing filled ({status})", order_id)
        fill_status = "FILLED" if status == "FILLED" else "PARTIALLY_FILLED"
        fill = self._fill_from_trades(order_id, market, executed, cost, price)._replace(status=fill_status)
        if fill_status == "PARTIALLY_FILLED":
            note = f"{_plain(executed)} of {_plain(_dec(info.get('origQty')))} filled ({status})"
            fill = fill._replace(reason=note + (f"; {fill.reason}" if fill.reason else ""))
        return fill

    def _fill_from_trades(
        self, order_id: str, market: dict, executed: Decimal, cost: Decimal, price: Decimal
    ) -> LiveFill:
        """The order's fill from its trades: quantity, average price and each commission in its own currency.
        When the trades do not add up to what the order executed (not all visible yet, even after asking again),
        the order's own totals are used and the commission is estimated at the taker rate in the quote asset."""
        trades = []
        for attempt in range(TRADES_ATTEMPTS):
            try:
                trades = self.exchange.fetch_order_trades(order_id, market["symbol"])
            except Exception as exc:
                logger.warning("order %s: trades unavailable (%s)", order_id, type(exc).__name__)
                trades = []
            if sum((_dec((t.get("info") or {}).get("qty")) for t in trades), ZERO) == executed:
                break
            if attempt + 1 < TRADES_ATTEMPTS:
                time.sleep(POLL_INTERVAL_SEC)
        traded, quote_amount = ZERO, ZERO
        fees: dict[str, Decimal] = {}
        for trade in trades:
            raw = trade.get("info") or {}
            qty = _dec(raw.get("qty"))
            traded += qty
            quote_amount += _dec(raw.get("quoteQty"), qty * _dec(raw.get("price")))
            asset = raw.get("commissionAsset") or market["quoteId"]
            fees[asset] = fees.get(asset, ZERO) + _dec(raw.get("commission"))
        if not trades or traded != executed:
            estimate = (cost * _dec(market.get("taker"))).quantize(PRICE_STEP, ROUND_HALF_EVEN)
            note = "trades not available: fee estimated at the taker rate"
            return LiveFill("FILLED", executed, price, estimate, order_id, note, quote_fee=estimate)
        price = (quote_amount / traded).quantize(PRICE_STEP, ROUND_HALF_EVEN)
        quote_fee = fees.pop(market["quoteId"], ZERO)
        base_fee = fees.pop(market["baseId"], ZERO)
        value = (quote_fee + base_fee * price).quantize(PRICE_STEP, ROUND_HALF_EVEN)
        other = tuple((asset, amount) for asset, amount in sorted(fees.items()) if amount)
        note = "; ".join(f"fee paid as {_plain(amount)} {asset}" for asset, amount in other)
        return LiveFill("FILLED", traded, price, value, order_id, note, quote_fee, base_fee, other)

    def _existing_after_duplicate(self, client_order_id: str, market: dict) -> LiveFill:
        """The exchange refused a reused client id: the first order exists, so report that one."""
        try:
            existing = self._lookup(client_order_id, market)
        except ExchangeUnreachable as exc:
            raise OrderOutcomeUnknown(
                self._text(f"{client_order_id}: duplicate refused, lookup failed: {exc}")
            ) from None
        if existing is None:
            raise OrderOutcomeUnknown(f"{client_order_id}: exchange reports a duplicate it cannot show yet")
        logger.info("order %s: duplicate refused by the exchange; existing order returned", client_order_id)
        return existing

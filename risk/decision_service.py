"""The risk shell: load the account under its row lock, ask the engine, store the decision, publish orders.

Three entry points, all serialized by ``TradingState``'s row lock:
- ``decide_signal``: a signal becomes an approved PENDING order or a stored rejection;
- ``fill_market``: paper orders waiting for a symbol's next candle meet its price;
- ``watch_market``: each market_data event checks the daily drawdown (halt and close
  everything), stop-losses (one exit per trade) and the circuit breaker's retry.
"""

from __future__ import annotations

import logging
import os
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max, Q

from execution.live import live_trading_enabled
from execution.models import Order, Portfolio, Trade
from ground import bus
from ground.prepared import Prepared
from ground.raw_rows import converted, fetch_singleton_rows
from ground.timeutil import ms_to_datetime
from marketdata import clock as market_clock
from marketdata.ingest import latest_known_times, latest_prices
from marketdata.models import Candle
from marketdata.validation import known_at
from marketdata.watchlist import is_tradable

from . import metrics
from .account_view import (
    AccountRows,
    KnownRows,
    account_rows,
    account_state,
    day_rolls,
    load_account,
    pending_count,
    rows_of,
)
from .alerts import alert_event, raise_alerts
from .desk import (
    CLOSING_HALTS,
    RISK_EXITS,
    SUPPRESSED,
    CancelOrder,
    ChangeState,
    Desk,
    DeskState,
    DeskView,
    Effect,
    ExpireOrder,
    FillOrder,
    RaiseAlert,
    RecordRiskEvent,
    SignalIn,
    SubmitOrder,
    UpdateBreaker,
)
from .engine import (
    PAUSED,
    SPREAD_WINDOW,
    MarketSnapshot,
    RiskEngine,
    snapshot_from_candles,
    stop_price,
)
from .models import AccountVersion, RiskEvent, RiskParameters, TradingState
from .order_executor import execute_order
from .order_service import Ledger, cancel_order, fill_paper_order, pending_orders_with_fill_candles
from .state import apply_state_change

logger = logging.getLogger("cdb.risk")


def signal_id_of(event: dict) -> str:
    return event.get("signal_id") or f"{event['symbol']}:{event['side']}:{event['timestamp']}"


def risk_engine() -> RiskEngine:
    return RiskEngine(fee_rate=Decimal(settings.FEE_RATE), slippage_pct=Decimal(settings.PAPER_SLIPPAGE_PCT))


def market_at(symbol: str, at_ms: int) -> MarketSnapshot:
    """The market snapshot of the symbol's last candles known at ``at_ms`` (a candle is known at its close, open
    time + interval); its data is as fresh as the newest one's close."""
    return snapshot_from_candles(_last_candles(symbol, at_ms))


_last_candles = Prepared(
    lambda symbol, at_ms: (
        Candle.objects.filter(symbol=symbol, known_at__lte=at_ms)
        .order_by("-known_at", "interval")
        .values_list("known_at", "high", "low", "close")[: SPREAD_WINDOW + 1]
    ),
    str,
    int,
)


def event_known_at(event: dict) -> int:
    """The market time of a decision on an event's candle: when that candle is known, at its close."""
    return known_at(event["timestamp"], event.get("interval") or settings.INTERVAL)


def decide_signal(event: dict, mark_decided: Callable[[str], bool]) -> Order | None:
    """Turn a signal into an approved PENDING order or a stored rejection; redeliveries change nothing.

    ``mark_decided(signal_id)`` marks the stored signal decided, in this transaction under the account lock, and
    says whether it was stored undecided: trading writes the signal rows (``trading.signal_service.mark_decided``),
    risk does not import them."""
    signal_id = signal_id_of(event)
    with transaction.atomic():
        state = TradingState.load(for_update=True)  # serializes every decision for the account
        # A stored signal still NEW has never been decided (its decision would have marked it in the same
        # transaction); otherwise — decided already, or a signal that was never stored — ask the risk events.
        fresh = mark_decided(signal_id)
        if not fresh and (
            RiskEvent.objects.filter(signal_id=signal_id).exclude(decision=RiskEvent.Decision.STATE_CHANGE).exists()
        ):
            _redrive_pending_order(signal_id)
            return None
        return decide_locked(state, event)


def decide_locked(
    state: TradingState, event: dict, parameters: RiskParameters | None = None, known: KnownRows | None = None
) -> Order | None:
    """``decide_signal``'s decision for a signal not decided before, in the caller's transaction, which holds the
    account lock (``state``, loaded ``for_update``; ``parameters``, if the caller read them with it): the desk's
    effects carried out. An approved order is stored PENDING: live, sent to the exchange; on paper, it waits for
    its symbol's next candle (``fill_waiting_orders``). The decision's market time is its candle's close.
    ``known``: the account rows the market watch of the signal's candle read (``MarketWatch.known``), used if they
    are still the account's (``load_account``)."""
    now = event_known_at(event)
    symbol = event["symbol"]
    account = load_account(state.state, now, (symbol,), known=known)
    market = market_at(symbol, now)
    decided_at = market_clock.decision_time_ms(now)  # live: wall time, so a late candle's signal is stale
    if event["side"] == "BUY" and not is_tradable(symbol):
        market = replace(market, tradable=False)
    view = DeskView(desk_state(state), account, (parameters or RiskParameters.load()).as_dict(), decided_at, market)
    price = event.get("price")
    signal = SignalIn(
        signal_id_of(event),
        symbol,
        event["side"],
        Decimal(str(price)) if price else None,
        float(event["confidence"]),  # a number, or the exact decimal string of one
        event.get("strategy", ""),
        event.get("source_timestamp", event["timestamp"]),
    )
    return _apply(desk().decide(view, signal, StoredExits()), state, now, signal_id=signal.signal_id)


def fill_waiting_orders(
    state: TradingState,
    symbol: str,
    opened_ms: int,
    now: int,
    pending: list[tuple[Order, tuple | None]],
    parameters: RiskParameters | None = None,
    ledger: Ledger | None = None,
) -> None:
    """Paper: the symbol's PENDING orders decided by ``opened_ms`` (the open of the candle at hand) meet the first
    price after their decision, the open of the symbol's first candle opened at or after it, through the desk's
    fill step (``Desk.fill``: a state that now blocks an order cancels it; an entry's slippage beyond
    MAX_SLIPPAGE_PCT trips the circuit breaker), oldest first, at the market time ``now`` (the candle's close). In
    the caller's transaction, which holds the account lock (``state``; ``parameters``, if the caller read them with
    it; ``ledger``, the portfolio and positions if the caller read them, ``Ledger.read``). ``pending``: every
    PENDING order, locked, with its fill candle by ``opened_ms`` (``pending_orders_with_fill_candles``)."""
    waiting = [(order, candle) for order, candle in pending if order.symbol == symbol and order.event_time <= opened_ms]
    if not waiting:
        return
    parameters = (parameters or RiskParameters.load()).as_dict()
    for order, candle in waiting:
        if candle is not None:
            effects = desk().fill(desk_state(state), parameters, order, candle[0])
            _apply(effects, state, now, fills={order.client_order_id: (order, candle, parameters)}, ledger=ledger)


def expire_waiting_orders(without_data: dict[str, str], now: int) -> None:
    """Paper: the PENDING orders of symbols without data at ``now`` (``marketdata.stale.without_data``: stale, or
    a replay's data of them over) can get no price: they expire through the desk (``Desk.expire``), under the
    account lock. Called by the data-stale watch where the backtest runs its own."""
    if not without_data or live_trading_enabled():
        return
    symbols = sorted(without_data)
    if not Order.objects.filter(status=Order.Status.PENDING, symbol__in=symbols).exists():
        return
    with transaction.atomic():
        state = TradingState.load(for_update=True)
        waiting = list(
            Order.objects.select_for_update().filter(status=Order.Status.PENDING, symbol__in=symbols).order_by("id")
        )
        fills = {order.client_order_id: (order, (), {}) for order in waiting}
        _apply(desk().expire(waiting, without_data), state, now, fills=fills)


def fill_market(event: dict) -> tuple[TradingState, RiskParameters, int | None, int | None, AccountRows]:
    """Paper, per market_data of a symbol with orders waiting for it, in one step under the account lock: roll the
    day (it starts before this candle's fills, at the prices before), fill those orders (``fill_waiting_orders``),
    then read the account as the fills left it, with what ``MarketWatch`` keeps of it: the trading state, the
    parameters, the account's version and latest order time (``_account_version``) and its rows with the open
    lots. The watch of the same candle follows as for any candle (``MarketWatch``), on those rows."""
    now = event_known_at(event)
    with transaction.atomic():
        state, parameters, portfolio = TradingState.load_for_fills()
        if day_rolls(portfolio, now):
            load_account(state.state, now, (event["symbol"],), for_decision=False)
            portfolio = Portfolio.load(for_update=True)  # as the day's roll left it
        ledger = Ledger.read(portfolio)
        pending = pending_orders_with_fill_candles(event["timestamp"])
        fill_waiting_orders(state, event["symbol"], event["timestamp"], now, pending, parameters, ledger)
        # read as MarketWatch._load_account reads: the version first, the rest after or with it (a parameter
        # change committed before the fills wrote is in it); the portfolio and the positions are the ledger's,
        # locked since the step began, the PENDING orders those read locked before the fills less the ones they
        # settled (unless the count says an order was made meanwhile)
        state, parameters, version, latest_order_time, count = fetch_singleton_rows(
            (TradingState, RiskParameters), extra=[*_VERSION_AND_LATEST_ORDER, pending_count()]
        )
        if connection.vendor == "sqlite":  # it stores a money column as REAL (15 digits): the rows as stored
            rows = account_rows(lock=True, with_lots=True)
        else:
            still = [order for order, _ in pending if order.status == Order.Status.PENDING]
            waiting = sorted(still, key=lambda order: (order.event_time, order.id), reverse=True)
            positions = ledger.positions()
            rows = rows_of(
                ledger.portfolio, positions, count, with_lots=True, pending=waiting if len(waiting) == count else None
            )
    return state, parameters, version, latest_order_time, rows


def watch_market(event: dict) -> None:
    """Per market_data, under the account lock: roll the day, then the desk's watch (the daily drawdown's halt and
    close-out, stop-losses, the circuit breaker's retry). ``MarketWatch`` calls it for the candles where its look
    without the lock found work. Its market time is the candle's close."""
    now = event_known_at(event)
    with transaction.atomic():
        state = TradingState.load(for_update=True)
        late = _superseded(now)
        if late and _superseded(now, event["symbol"]):
            return
        account = load_account(state.state, now, (event["symbol"],), for_decision=False, with_lots=True)
        parameters = RiskParameters.load().as_dict()
        breaker = state.state == PAUSED and state.pause_layer == "circuit_breaker"
        market = market_at(state.breaker_symbol, now) if breaker else None
        view = DeskView(desk_state(state), account, parameters, now, market)
        if late:  # only its own symbol's stop-loss: see _superseded
            _apply(desk().watch(view, StoredExits(), only_symbol=event["symbol"]), state, now)
            return
        metrics.record_account(account, state.state)
        _apply(desk().watch(view, StoredExits()), state, now)


class MarketWatch:
    """``watch_market`` without reading the whole account for every candle.

    The account rows (portfolio, positions, PENDING orders, open lots), the trading state, the parameters and the
    latest order time are kept; before each candle one small query (``_account_version``) tells whether any of
    them changed — a decision, a fill, another worker, the admin — and if so they are read again. Prices are read
    per candle (by the same query, for the symbols held when it is sent), or for a batch once: the closes
    of every held symbol up to ``window_end``. So each candle is judged on what is stored at that moment; a candle
    that finds something to do takes ``watch_market``, which judges it again under the account lock. So workers do
    not queue behind each other's candles for the lock. A candle with paper orders waiting for it (the same query
    says so) takes one locked step first, ``fill_market``, which fills them and reads the account as they left it:
    the watch needs no read of the account before the fills and none after that step.
    """

    def __init__(self, window_end: int | None = None) -> None:
        self.window_end = window_end
        self.version: int | None = None
        self.closes: dict[str, tuple[list[int], list[Decimal]]] | None = None
        self.closes_from = 0
        self.held: list[str] = []
        self.read_prices: tuple[int, dict[str, Decimal]] | None = None  # (time, closes of self.held then)

    def __call__(self, event: dict) -> None:
        now = event_known_at(event)
        asked = self.held if self.window_end is None else []
        waiting_for = None if live_trading_enabled() else (event["symbol"], event["timestamp"])
        version, latest_order_time, closes, waiting = _account_version(asked, now, waiting_for)
        if waiting:  # its paper orders meet this candle's price; then this candle's watch, on the fills
            state, parameters, version, latest_order_time, rows = fill_market(event)
            self._keep_account(state, parameters, rows, latest_order_time)
            self.version = version
        elif version is None or version != self.version:
            self._load_account(latest_order_time)
            self.version = version
        if asked == self.held:
            read = zip(asked, closes, strict=True)
            self.read_prices = (now, {symbol: close for symbol, close in read if close is not None})
        if self.latest_order_time is not None and self.latest_order_time > now:
            if self._own_stop_may_trigger(event, now):  # all a late candle may do: see _superseded
                watch_market(event)
            return
        if day_rolls(self.rows.portfolio, now):
            watch_market(event)
            return
        account = account_state(self.rows, self.state.state, self._prices(now))
        metrics.record_account(account, self.state.state)
        if desk().watch_has_work(DeskView(desk_state(self.state), account, self.parameters, now)):
            watch_market(event)

    def known(self) -> KnownRows | None:
        """The account rows as last read, with the version they were read after (None: none read yet, or no
        version row): for the decision on a signal of the candle just watched (``decide_locked``)."""
        if self.version is None or not hasattr(self, "rows"):
            return None
        return KnownRows(self.version, self.rows)

    def _load_account(self, latest_order_time: int | None) -> None:
        """Read after the version (and the latest order time, read with it): a change in between is read now and
        seen again as a new version next time."""
        state, parameters = TradingState.load_with_parameters()
        self._keep_account(state, parameters, account_rows(lock=False, with_lots=True), latest_order_time)

    def _keep_account(
        self, state: TradingState, parameters: RiskParameters, rows: AccountRows, latest_order_time: int | None
    ) -> None:
        self.state, self.parameters, self.rows = state, parameters.as_dict(), rows
        self.latest_order_time = latest_order_time
        self.held = sorted(self.rows.priced_symbols())
        self.closes = None
        self.read_prices = None
        self.latest_symbol_orders: dict[str, int | None] = {}

    def _own_stop_may_trigger(self, event: dict, now: int) -> bool:
        """For a late candle: its symbol is held, has no later order, and its price is at or below its stop."""
        symbol = event["symbol"]
        if symbol not in self.held:
            return False
        if symbol not in self.latest_symbol_orders:
            latest = Order.objects.filter(symbol=symbol).aggregate(latest=Max("event_time"))["latest"]
            self.latest_symbol_orders[symbol] = latest
        latest = self.latest_symbol_orders[symbol]
        if latest is not None and latest > now:
            return False
        price = self._prices(now).get(symbol)
        account = account_state(self.rows, self.state.state, {symbol: price} if price is not None else {})
        return bool(risk_engine().stop_loss_exits(account))

    def _prices(self, now: int) -> dict[str, Decimal]:
        if not self.held:
            return {}
        if self.window_end is None or now > self.window_end:
            if self.read_prices is not None and self.read_prices[0] == now:
                return self.read_prices[1]
            return latest_prices(self.held, now)
        if self.closes is None or now < self.closes_from:
            self._load_window(now)
        prices = {}
        for symbol, (stamps, closes) in self.closes.items():
            i = bisect_right(stamps, now)
            if i:
                prices[symbol] = closes[i - 1]
        return prices

    def _load_window(self, now: int) -> None:
        """The last close of each held symbol known at ``now``, then every close known after it up to
        ``window_end``."""
        series: dict[str, tuple[list[int], list[Decimal]]] = {symbol: ([], []) for symbol in self.held}
        for symbol, close in latest_prices(self.held, now).items():
            series[symbol][0].append(now)
            series[symbol][1].append(close)
        later = (
            Candle.objects.filter(symbol__in=self.held, known_at__gt=now, known_at__lte=self.window_end)
            .order_by("known_at", "-timestamp")
            .values_list("symbol", "known_at", "close")
        )
        for symbol, ts, close in later:
            stamps, closes = series[symbol]
            # two intervals known at one time: the latest open (the shorter interval), as latest_price keeps
            if not stamps or stamps[-1] != ts:
                stamps.append(ts)
                closes.append(close)
        self.closes, self.closes_from = series, now


_process_watch: tuple[int, MarketWatch] | None = None


def process_market_watch() -> MarketWatch:
    """This process's MarketWatch for single candles (kept between tasks; a forked child starts its own)."""
    global _process_watch
    if _process_watch is None or _process_watch[0] != os.getpid():
        _process_watch = (os.getpid(), MarketWatch())
    return _process_watch[1]


_VERSION_AND_LATEST_ORDER = [
    (f'(SELECT "version" FROM "{AccountVersion._meta.db_table}" WHERE "id" = 1)', []),  # noqa: S608
    (f'(SELECT MAX("event_time") FROM "{Order._meta.db_table}")', []),  # noqa: S608
]  # the account's version and the latest order's event time (``_account_version``), as fetch_singleton_rows' extra


def _account_version(
    held: list[str], now: int, waiting_for: tuple[str, int] | None = None
) -> tuple[int | None, int | None, list[Decimal | None], bool]:
    """The account's version (``AccountVersion``, bumped by triggers whenever anything ``MarketWatch`` read
    changes; None before its row exists) and, in the same statement, the latest order's event time, the last
    close at ``now`` of each of the ``held`` symbols (None for one without a candle by then), in their order, and
    whether ``waiting_for`` (symbol, candle open) has PENDING orders decided by that open (``fill_waiting_orders``
    fills them: so a candle that fills needs no read of the account before its locked step)."""
    version_table = connection.ops.quote_name(AccountVersion._meta.db_table)
    order_table = connection.ops.quote_name(Order._meta.db_table)
    candle_table = connection.ops.quote_name(Candle._meta.db_table)
    close = (
        f'(SELECT "close" FROM {candle_table} WHERE "symbol" = %s AND "known_at" <= %s '  # noqa: S608
        'ORDER BY "known_at" DESC, "interval" LIMIT 1)'
    )
    sql = (
        f'SELECT (SELECT "version" FROM {version_table} WHERE "id" = 1), '  # noqa: S608
        f'(SELECT MAX("event_time") FROM {order_table}), '
    )
    params: list = []
    if waiting_for is None:
        sql += "FALSE"
    else:
        sql += f'EXISTS (SELECT 1 FROM {order_table} WHERE "status" = %s AND "symbol" = %s AND "event_time" <= %s)'
        params += [Order.Status.PENDING, *waiting_for]
    sql += "".join(f", {close}" for _ in held)
    params += [value for symbol in held for value in (symbol, now)]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        version, latest_order_time, waiting, *closes = cursor.fetchone()
    closes = [close for (close,) in converted(Candle, ("close",), [(value,) for value in closes])]
    return version, latest_order_time, closes, bool(waiting)


def _superseded(now: int, symbol: str | None = None) -> bool:
    """A late or redelivered candle: an order (of ``symbol``, if given) is later than it.

    The account has moved on since: valuing it at the candle's time would put old prices on positions taken
    later (a spurious drawdown halt, or a stop-loss fired by prices from before the entry). So a late candle
    skips the drawdown check and the circuit breaker's retry, and checks only its own symbol's stop-loss, and
    that only if its symbol has no later order: that position and price belong to the same moment. Without
    this, a symbol lagging behind another (a backlog worked off by several workers) would go unwatched until
    it caught up."""
    orders = Order.objects.filter(event_time__gt=now)
    return (orders if symbol is None else orders.filter(symbol=symbol)).exists()


def desk() -> Desk:
    return Desk(risk_engine(), Decimal(settings.POSITION_SIZE_PCT))


def desk_state(state: TradingState) -> DeskState:
    return DeskState(
        state.state,
        state.pause_layer,
        state.reason,
        state.breaker_symbol,
        state.breaker_tries,
        state.breaker_checked_ms,
        state.breaker_price,
    )


class StoredExits:
    """The desk's ``ExitLedger`` on the database, for one decision: open trades, orders made under an exit key,
    held-back stops. Each kind of question is answered from one query, made when it is first asked, for every open
    trade at once: a close-out of many positions reads as much as one of a single position."""

    def __init__(self) -> None:
        self._open: dict[str, list[tuple[str, int]]] | None = None  # symbol → (trade id, entry order id), oldest first
        self._attempts: dict[str, list[str]] | None = None  # an open trade's exit key → its orders' statuses
        self._attempted_at: dict[str, int | None] = {}  # an exit key → when its last order was decided
        self._suppressed: set[str] | None = None
        self._price_times: tuple[int, dict[str, int | None]] | None = None  # (at, the open trades' price times)

    def _open_trades(self) -> dict[str, list[tuple[str, int]]]:
        if self._open is None:
            self._open = {}
            trades = Trade.objects.filter(status=Trade.Status.OPEN).order_by("entry_time", "id")
            for symbol, trade_id, order_id in trades.values_list("symbol", "trade_id", "order_id"):
                self._open.setdefault(symbol, []).append((trade_id, order_id))
        return self._open

    def oldest_open_trade(self, symbol: str) -> str | None:
        trades = self._open_trades().get(symbol)
        return trades[0][0] if trades else None

    def exit_attempts(self, base: str) -> list[str]:
        if self._attempts is None:
            # An exit of an open trade is made after that trade's entry order: so after the oldest one's.
            open_trades = [trade for trades in self._open_trades().values() for trade in trades]
            self._attempts = {f"{kind}:{trade_id}": [] for trade_id, _ in open_trades for kind in _EXIT_KINDS}
            if open_trades:
                exits = Order.objects.filter(
                    purpose__in=RISK_EXITS,
                    symbol__in=list(self._open),
                    id__gt=min(order_id for _, order_id in open_trades),
                ).order_by("id")
                for signal_id, status, decided in exits.values_list("signal_id", "status", "source_timestamp"):
                    key = signal_id.partition("#")[0]
                    statuses = self._attempts.get(key)
                    if statuses is not None:
                        statuses.append(status)
                        self._attempted_at[key] = decided
        if base in self._attempts:
            return list(self._attempts[base])
        attempts = Order.objects.filter(Q(signal_id=base) | Q(signal_id__startswith=f"{base}#")).order_by("id")
        rows = list(attempts.values_list("status", "source_timestamp"))  # not an open trade's key: asked on its own
        self._attempted_at[base] = rows[-1][1] if rows else None
        return [status for status, _ in rows]

    def last_attempt_at(self, base: str) -> int | None:
        return self._attempted_at.get(base)

    def suppressed(self, base: str) -> bool:
        stops = {f"stop:{trade_id}" for trades in self._open_trades().values() for trade_id, _ in trades}
        if base not in stops:  # not an open trade's stop: asked on its own
            return RiskEvent.objects.filter(signal_id=base, layer=SUPPRESSED).exists()
        if self._suppressed is None:
            events = RiskEvent.objects.filter(layer=SUPPRESSED, signal_id__in=sorted(stops))
            self._suppressed = set(events.values_list("signal_id", flat=True))
        return base in self._suppressed

    def price_time(self, symbol: str, at_ms: int) -> int | None:
        if self._price_times is None or self._price_times[0] != at_ms or symbol not in self._price_times[1]:
            symbols = {symbol, *self._open_trades()}
            self._price_times = (at_ms, {name: None for name in symbols} | latest_known_times(symbols, at_ms))
        return self._price_times[1][symbol]


_EXIT_KINDS = ("stop", *(kind for _, kind in CLOSING_HALTS.values()))  # the keys of risk exits: KIND:trade id


class _Rows:
    """The desk's effects that are rows of their own — risk events, alerts, orders — gathered in effect order and
    written with one INSERT per model (``write``). An effect that reads or writes the account or the trading state
    writes the rows gathered before it first, so everything is stored in the order the desk said it."""

    def __init__(self, paper: bool) -> None:
        self.paper = paper
        self.risk_events: list[RiskEvent] = []
        self.alerts: list[dict] = []
        self.orders: list[tuple[Order, bool]] = []  # with: sent at once (a live risk exit)

    def write(self) -> None:
        if self.risk_events:
            RiskEvent.objects.bulk_create(self.risk_events)
            self.risk_events = []
        if self.alerts:
            raise_alerts(self.alerts)
            self.alerts = []
        if self.orders:
            orders, self.orders = self.orders, []
            Order.objects.bulk_create([order for order, _ in orders])
            for order, send in orders:
                # after commit: published to the executor — or, on paper, only announced: it waits for its symbol's
                # next candle (``fill_waiting_orders``)
                bus.publish(order_event(order), consumed=self.paper)
                if send:  # the risk manager's own exits are sent at once, in this transaction
                    execute_order({"client_order_id": order.client_order_id})


def _apply(
    effects: list[Effect],
    state: TradingState,
    now: int,
    *,
    signal_id: str | None = None,
    fills: dict[str, tuple[Order, tuple, dict]] | None = None,
    ledger: Ledger | None = None,
) -> Order | None:
    """Carry out the desk's effects, in the caller's transaction (which holds the account lock): the risk events,
    alerts and orders in one INSERT per model (``_Rows``), so a decision's statements do not grow with its effects.
    Returns the order of the signal ``signal_id``, if one was made. ``fills``: for a fill step's effects, the order
    they name by client order id, with its fill candle (``pending_orders_with_fill_candles``) and the parameters,
    and the step's ``ledger`` (``Ledger.read``)."""
    paper = not live_trading_enabled()
    made = None
    rows = _Rows(paper)
    for effect in effects:
        kind = effect.__class__
        if kind is RecordRiskEvent:
            if effect.signal_id == signal_id:
                metrics.record_decision(effect.decision, effect.layer)
            rows.risk_events.append(_risk_event(effect, now))
            continue
        if kind is RaiseAlert:
            rows.alerts.append(
                alert_event(effect.level, effect.code, effect.message, timestamp=now, symbol=effect.symbol)
            )
            continue
        if kind is SubmitOrder:
            the_signals = effect.signal_id == signal_id
            order = _order(effect, now)
            rows.orders.append((order, not paper and not the_signals))
            if the_signals:
                made = order
            continue
        rows.write()
        if kind is ChangeState:
            apply_state_change(state, effect.new_state, effect.reason, effect.actor, now, layer=effect.layer)
            if effect.breaker_symbol:
                state.breaker_symbol, state.breaker_tries, state.breaker_checked_ms = effect.breaker_symbol, 0, now
                state.breaker_price = effect.breaker_price
                state.save(update_fields=["breaker_symbol", "breaker_tries", "breaker_checked_ms", "breaker_price"])
        elif kind is UpdateBreaker:
            state.breaker_tries, state.breaker_checked_ms = effect.tries, effect.checked_ms
            state.breaker_price = effect.price
            state.save(update_fields=["breaker_tries", "breaker_checked_ms", "breaker_price"])
        elif kind is FillOrder:
            order, candle, parameters = fills[effect.client_order_id]
            stop_loss_pct = parameters["STOP_LOSS_PCT"]
            fill_paper_order(
                order, (effect.price, *candle[1:]), stop_loss_pct=stop_loss_pct, known_ms=now, ledger=ledger
            )
        elif kind is CancelOrder:
            cancel_order(fills[effect.client_order_id][0], effect.reason, now)
        elif kind is ExpireOrder:
            cancel_order(fills[effect.client_order_id][0], effect.reason, now, Order.Status.EXPIRED)
    rows.write()
    return made


def _risk_event(record: RecordRiskEvent, now: int) -> RiskEvent:
    return RiskEvent(**record._asdict(), timestamp=now)  # the effect's fields are the model's


def _order(submit: SubmitOrder, now: int) -> Order:
    """The PENDING order of a ``SubmitOrder``, to be stored (``_Rows.write``)."""
    return Order(
        client_order_id=submit.client_order_id,
        signal_id=submit.signal_id,
        symbol=submit.symbol,
        side=submit.side,
        quantity=submit.quantity,
        requested_price=submit.price,
        event_time=now,
        source_timestamp=submit.source_timestamp or now,
        submitted_at=ms_to_datetime(now),
        # an entry's stop until its fill fixes it (risk.order_service: from the fill price)
        stop_loss=stop_price(submit.price, submit.stop_loss_pct) if submit.stop_loss_pct is not None else None,
        strategy=submit.strategy,
        risk_score=Decimal(str(submit.confidence)) if submit.confidence is not None else None,
        risk_checks=submit.checks,
        purpose=submit.purpose,
    )


def _redrive_pending_order(signal_id: str) -> None:
    """A redelivered signal was decided before: its live order may still be PENDING because the process that
    stored it died before enqueueing its execution. Enqueue it again (execution is idempotent by client_order_id).
    A paper order waits for its symbol's next candle: nothing to enqueue."""
    order = Order.objects.filter(signal_id=signal_id, status=Order.Status.PENDING).first()
    if order is None or not live_trading_enabled():
        logger.info("signal %s already decided; redelivery ignored", signal_id)
        return
    logger.warning(
        "signal %s already decided, its order %s still PENDING: enqueued again", signal_id, order.client_order_id
    )
    event = order_event(order)
    transaction.on_commit(lambda: bus.redeliver(event))


def order_event(order: Order) -> dict:
    """The ``order`` event of a stored order: what the executor is sent (it acts on ``client_order_id``)."""
    return {
        "type": "order",
        "client_order_id": order.client_order_id,
        "signal_id": order.signal_id,
        "symbol": order.symbol,
        "side": order.side,
        "quantity": float(order.quantity),
        "price": float(order.requested_price),
        "approved_by": "risk",
        "risk_checks": order.risk_checks,
        "stop_loss": float(order.stop_loss) if order.stop_loss is not None else None,
        "timestamp": order.event_time,
    }

"""The risk shell: load the account under its row lock, ask the engine, store the decision, publish orders.

Two entry points, both serialized by ``TradingState``'s row lock:
- ``decide_signal``: a signal becomes an approved PENDING order or a stored rejection;
- ``watch_market``: each market_data event checks the daily drawdown (halt and close
  everything), stop-losses (one exit per trade) and the circuit breaker's retry.
"""

from __future__ import annotations

import logging
import os
from bisect import bisect_right
from dataclasses import replace
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max, Q

from cdb_project import bus, deferred_writes
from cdb_project.raw_rows import fetch_values
from cdb_project.timeutil import ms_to_datetime
from execution.account import account_rows, account_state, day_rolls, load_account
from execution.live import live_trading_enabled
from execution.models import Order, Portfolio, Position, Trade
from execution.service import execute_order, fill_paper_order
from marketdata.ingest import latest_prices
from marketdata.models import Candle
from marketdata.watchlist import is_tradable

from . import metrics
from .alerts import raise_alert
from .engine import (
    HALTED,
    PAUSED,
    SPREAD_WINDOW,
    AccountState,
    ExitOrder,
    MarketSnapshot,
    ProposedOrder,
    RiskEngine,
    breaker_retry,
    client_order_id_for,
    proposed_quantity,
    round_quantity,
    snapshot_from_candles,
)
from .models import RiskEvent, RiskParameters, TradingState
from .state import apply_state_change

logger = logging.getLogger("cdb.risk")


def signal_id_of(event: dict) -> str:
    return event.get("signal_id") or f"{event['symbol']}:{event['side']}:{event['timestamp']}"


def risk_engine() -> RiskEngine:
    return RiskEngine(fee_rate=Decimal(settings.FEE_RATE), slippage_pct=Decimal(settings.PAPER_SLIPPAGE_PCT))


def market_snapshot(symbol: str, at_ms: int) -> MarketSnapshot:
    """Last price, candle-range spread against its recent average, and the last data time, at ``at_ms``."""
    return market_at(symbol, at_ms)[0]


def market_at(symbol: str, at_ms: int) -> tuple[MarketSnapshot, tuple | None]:
    """``market_snapshot`` and, from the same query, the last candle as a paper fill reads it
    (``execution.service.FILL_CANDLE_FIELDS``; None if the symbol has none)."""
    rows = fetch_values(
        Candle,
        ("timestamp", "high", "low", "close", "volume", "created_at"),
        '"symbol" = %s AND "timestamp" <= %s',
        [symbol, at_ms],
        order_by='"timestamp" DESC',
        limit=SPREAD_WINDOW + 1,
    )
    snapshot = snapshot_from_candles([row[:4] for row in rows])
    if not rows:
        return snapshot, None
    timestamp, _high, _low, close, volume, created_at = rows[0]
    return snapshot, (close, volume, timestamp, created_at)


def decide_signal(event: dict) -> Order | None:
    """Turn a signal into an approved PENDING order or a stored rejection; redeliveries change nothing."""
    from trading.models import Signal

    signal_id = signal_id_of(event)
    with transaction.atomic():
        state = TradingState.load(for_update=True)  # serializes every decision for the account
        # A stored signal still NEW has never been decided (its decision would have marked it in the same
        # transaction); otherwise — decided already, or a signal that was never stored — ask the risk events.
        undecided = Signal.objects.filter(signal_id=signal_id, status=Signal.Status.NEW)
        fresh = undecided.update(status=Signal.Status.DECIDED)
        if not fresh and (
            RiskEvent.objects.filter(signal_id=signal_id).exclude(decision=RiskEvent.Decision.STATE_CHANGE).exists()
        ):
            _redrive_pending_order(signal_id)
            return None
        return decide_locked(state, event)


def decide_locked(state: TradingState, event: dict, parameters: RiskParameters | None = None) -> Order | None:
    """``decide_signal``'s decision for a signal not decided before, in the caller's transaction, which holds the
    account lock (``state``, loaded ``for_update``; ``parameters``, if the caller read them with it). A paper
    order is filled here too."""
    signal_id = signal_id_of(event)
    now = event["timestamp"]
    symbol = event["symbol"]
    rows = account_rows(lock=True)
    account = load_account(state.state, now, (symbol,), rows=rows)
    market, last_candle = market_at(symbol, now)
    if event["side"] == "BUY" and not is_tradable(symbol):
        market = replace(market, tradable=False)
    parameters = (parameters or RiskParameters.load()).as_dict()
    price = Decimal(str(event.get("price"))) if event.get("price") else market.price
    quantity = proposed_quantity(event["side"], account, symbol, price, Decimal(settings.POSITION_SIZE_PCT))
    proposal = ProposedOrder(symbol, event["side"], quantity, price)
    decision = risk_engine().evaluate(account, proposal, market, parameters, now)
    metrics.record_decision(decision)
    client_order_id = client_order_id_for(signal_id)
    deferred_writes.insert(
        RiskEvent(
            decision=decision.action,
            layer=decision.layer,
            symbol=symbol,
            signal_id=signal_id,
            client_order_id=client_order_id if decision.approved else "",
            requested_quantity=proposal.quantity if proposal.quantity.is_finite() else None,
            approved_quantity=decision.quantity,
            reason="; ".join(decision.reasons),
            details={**decision.details, "checks": list(decision.checks), "confidence": event["confidence"]},
            timestamp=now,
        )
    )
    for alert in decision.alerts:
        raise_alert(alert.level, alert.code, alert.message, timestamp=now, symbol=symbol)
    if decision.state_change:
        _trip(state, decision.state_change, decision.layer, decision.reasons[0], now, symbol)
    if decision.close_positions:
        _close_all(account, decision.reasons[0], now, state.state)
    if not decision.approved:
        return None
    stop_loss = price * (1 - parameters["STOP_LOSS_PCT"]) if event["side"] == "BUY" else None
    purpose = Order.Purpose.ENTRY if event["side"] == "BUY" else Order.Purpose.EXIT
    paper = not live_trading_enabled()
    order = _create_order(
        client_order_id,
        signal_id,
        symbol,
        event["side"],
        decision.quantity,
        market.price,
        now,
        purpose,
        checks=list(decision.checks),
        stop_loss=stop_loss,
        strategy=event.get("strategy", ""),
        risk_score=Decimal(str(event["confidence"])),
        source_timestamp=event.get("source_timestamp", now),
        filled_here=paper,
    )
    if paper:  # read under this lock a moment ago: the account and the candle
        fill_paper_order(
            order, state.state, candle=last_candle, account=(rows.portfolio, list(rows.positions.values()))
        )
    return order


def watch_market(event: dict) -> None:
    """Per market_data, under the account lock: roll the day, halt on drawdown, fire stop-losses, retry a tripped
    circuit breaker. ``MarketWatch`` calls it for the candles where its look without the lock found work."""
    now = event["timestamp"]
    with transaction.atomic():
        state = TradingState.load(for_update=True)
        late = _superseded(now)
        if late and _superseded(now, event["symbol"]):
            return
        account = load_account(state.state, now, (event["symbol"],), for_decision=False)
        parameters = RiskParameters.load().as_dict()
        engine = risk_engine()
        if late:  # only its own symbol's stop-loss: see _superseded
            for exit_order in engine.stop_loss_exits(account, parameters):
                if exit_order.symbol == event["symbol"]:
                    _stop_loss(exit_order, now, state.state)
            return
        metrics.record_account(account, state.state)
        if engine.drawdown_breached(account, parameters):
            message = (
                f"Daily drawdown {account.daily_drawdown:.4%} reached the limit "
                f"{parameters['MAX_DAILY_DRAWDOWN_PCT']:.2%}. Trading halted."
            )
            raise_alert("CRITICAL", "RISK_LIMIT", message, timestamp=now)
            _trip(state, HALTED, "drawdown", message, now, "")
            _close_all(account, message, now, state.state)
            return
        for exit_order in engine.stop_loss_exits(account, parameters):
            _stop_loss(exit_order, now, state.state)
        if state.state == PAUSED and state.pause_layer == "circuit_breaker":
            _retry_breaker(state, parameters, now)


class MarketWatch:
    """``watch_market`` without reading the whole account for every candle.

    The account rows (portfolio, positions, PENDING orders), the trading state, the parameters and the latest
    order time are kept; before each candle one small query (``_account_version``) tells whether any of them
    changed — a decision, a fill, another worker, the admin — and if so they are read again. Prices are read per
    candle (on PostgreSQL by the same query, for the symbols held when it is sent), or for a batch once: the closes
    of every held symbol up to ``window_end``. So each candle is judged on what is stored at that moment; a candle
    that finds something to do takes ``watch_market``, which judges it again under the account lock. So workers do
    not queue behind each other's candles for the lock.
    """

    def __init__(self, window_end: int | None = None) -> None:
        self.window_end = window_end
        self.version: tuple | None = None
        self.closes: dict[str, tuple[list[int], list[Decimal]]] | None = None
        self.closes_from = 0
        self.held: list[str] = []
        self.read_prices: tuple[int, dict[str, Decimal]] | None = None  # (time, closes of self.held then)

    def __call__(self, event: dict) -> None:
        now = event["timestamp"]
        asked = self.held if self.window_end is None else []
        version, closes = _account_version(asked, now)
        if version is None or version != self.version:
            self._load_account(version)
            self.version = version
        if closes is not None and asked == self.held:
            read = zip(asked, closes, strict=True)
            self.read_prices = (now, {symbol: close for symbol, close in read if close is not None})
        if self.latest_order_time is not None and self.latest_order_time > now:
            if self._own_stop_may_trigger(event):  # all a late candle may do: see _superseded
                watch_market(event)
            return
        if day_rolls(self.rows.portfolio, now):
            watch_market(event)
            return
        account = account_state(self.rows, self.state.state, self._prices(now))
        metrics.record_account(account, self.state.state)
        if _watch_has_work(account, self.state, self.parameters):
            watch_market(event)

    def _load_account(self, version: tuple | None) -> None:
        self.state = TradingState.load()
        self.parameters = RiskParameters.load().as_dict()
        self.rows = account_rows(lock=False)
        if version is not None:
            self.latest_order_time = version[0]  # the version row reads it first
        else:  # the one-row tables were only just created
            self.latest_order_time = Order.objects.aggregate(latest=Max("event_time"))["latest"]
        self.held = sorted(symbol for symbol, quantity in self.rows.quantities.items() if quantity > 0)
        self.closes = None
        self.read_prices = None
        self.latest_symbol_orders: dict[str, int | None] = {}

    def _own_stop_may_trigger(self, event: dict) -> bool:
        """For a late candle: its symbol is held, has no later order, and its price is at or below its stop."""
        symbol, now = event["symbol"], event["timestamp"]
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
        return bool(risk_engine().stop_loss_exits(account, self.parameters))

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
        """The last close of each held symbol at ``now``, then every close after it up to ``window_end``."""
        series: dict[str, tuple[list[int], list[Decimal]]] = {symbol: ([], []) for symbol in self.held}
        for symbol, close in latest_prices(self.held, now).items():
            series[symbol][0].append(now)
            series[symbol][1].append(close)
        later = (
            Candle.objects.filter(symbol__in=self.held, timestamp__gt=now, timestamp__lte=self.window_end)
            .order_by("timestamp")
            .values_list("symbol", "timestamp", "close")
        )
        for symbol, ts, close in later:
            stamps, closes = series[symbol]
            if stamps and stamps[-1] == ts:  # two intervals at one time: keep one, as latest_price does
                closes[-1] = close
            else:
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


def _account_version(held: list[str], now: int) -> tuple[tuple | None, list[Decimal | None] | None]:
    """One row that changes whenever anything ``MarketWatch`` read changes (None before the rows exist): the
    latest order's event time (first: MarketWatch uses it), the whole one-row tables (portfolio, trading state,
    parameters, even if written by a bulk UPDATE), and for the orders and positions their newest id / update and
    count / quantity. PostgreSQL returns all but the first as one MD5 of their text: converting some twenty
    numeric and date columns to Python for every candle cost three times the query.

    With it, on PostgreSQL, the last close at ``now`` of each of the ``held`` symbols (None for one without a
    candle by then), in their order: a statement fewer per candle. Elsewhere that is None: not read."""
    models_by_name = {
        "portfolio": Portfolio,
        "order": Order,
        "position": Position,
        "state": TradingState,
        "parameters": RiskParameters,
        "candle": Candle,
    }
    tables = {name: connection.ops.quote_name(model._meta.db_table) for name, model in models_by_name.items()}
    parts = (
        "p.*, s.*, r.*, (SELECT MAX(id) FROM {order}), (SELECT COUNT(*) FROM {order} WHERE status = %s), "
        "(SELECT MAX(updated_at) FROM {position}), (SELECT SUM(quantity) FROM {position})"
    )
    postgresql = connection.vendor == "postgresql"
    if postgresql:
        closes = (
            "ARRAY(SELECT (SELECT c.close FROM {candle} c WHERE c.symbol = h.symbol AND c.timestamp <= $3 "
            "ORDER BY c.timestamp DESC LIMIT 1) FROM unnest($2::text[]) WITH ORDINALITY AS h(symbol, n) ORDER BY h.n)"
        )
        parts = f"md5(ROW({parts.replace('%s', '$1')})::text), {closes}"
    sql = (
        f"SELECT (SELECT MAX(event_time) FROM {{order}}), {parts} "
        "FROM {portfolio} p, {state} s, {parameters} r WHERE p.id = 1 AND s.id = 1 AND r.id = 1"
    ).format(**tables)
    if not postgresql:
        with connection.cursor() as cursor:
            cursor.execute(sql, [Order.Status.PENDING])
            return cursor.fetchone(), None
    with connection.cursor() as cursor:
        # Planning this query takes PostgreSQL several times longer than running it: prepare it once per session,
        # and keep its generic plan (for an array parameter PostgreSQL would otherwise plan it again every time,
        # expecting a custom plan for the array's length to be cheaper). The setting applies to this session's
        # prepared statements and PL/pgSQL functions only; Django prepares none, its own queries are unaffected.
        session = connection.connection
        key = (id(session), session.get_backend_pid())
        if key not in _version_prepared:
            cursor.execute("SET plan_cache_mode = force_generic_plan")
            cursor.execute(f"PREPARE cdb_account_version (text, text[], bigint) AS {sql}")
            _version_prepared.add(key)
        cursor.execute("EXECUTE cdb_account_version (%s, %s, %s)", [Order.Status.PENDING, list(held), now])
        row = cursor.fetchone()
    return (None, None) if row is None else (row[:2], row[2])


_version_prepared: set[tuple[int, int]] = set()  # PostgreSQL sessions that have cdb_account_version


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


def _watch_has_work(account: AccountState, state: TradingState, parameters: dict) -> bool:
    engine = risk_engine()
    return (
        engine.drawdown_breached(account, parameters)
        or bool(engine.stop_loss_exits(account, parameters))
        or (state.state == PAUSED and state.pause_layer == "circuit_breaker")
    )


def _retry_breaker(state: TradingState, parameters: dict, now: int) -> None:
    """Every 60 s of event time: resume if the tripped symbol's market is normal again; HALT after 10 tries."""
    market = market_snapshot(state.breaker_symbol, now)
    step, tries = breaker_retry(state.breaker_tries, state.breaker_checked_ms, market, parameters, now)
    if step == "resume":
        apply_state_change(state, "ACTIVE", f"circuit breaker: {state.breaker_symbol} normal again", "risk", now)
    elif step == "halt":
        reason = f"circuit breaker: {state.breaker_symbol} still anomalous after {tries} retries"
        apply_state_change(state, HALTED, reason, "risk", now)
    elif step == "retry":
        state.breaker_tries, state.breaker_checked_ms = tries, now
        state.save(update_fields=["breaker_tries", "breaker_checked_ms"])


def _trip(state: TradingState, new_state: str, layer: str, reason: str, now: int, symbol: str) -> None:
    if state.state == HALTED or state.state == new_state:
        return
    apply_state_change(state, new_state, reason, "risk", now, layer=layer)
    if layer == "circuit_breaker":
        state.breaker_symbol, state.breaker_tries, state.breaker_checked_ms = symbol, 0, now
        state.save(update_fields=["breaker_symbol", "breaker_tries", "breaker_checked_ms"])


def _oldest_open_trade(symbol: str) -> Trade | None:
    return Trade.objects.filter(symbol=symbol, status=Trade.Status.OPEN).order_by("entry_time", "id").first()


def _exit_key(kind: str, symbol: str) -> str | None:
    """``kind:trade_id[#attempt]`` — one live exit per trade; a FAILED attempt may be retried under a new key."""
    trade = _oldest_open_trade(symbol)
    if trade is None:
        return None
    base = f"{kind}:{trade.trade_id}"
    attempts = list(
        Order.objects.filter(Q(signal_id=base) | Q(signal_id__startswith=f"{base}#")).values_list("status", flat=True)
    )
    if any(status != Order.Status.FAILED for status in attempts):
        return None
    return base if not attempts else f"{base}#{len(attempts)}"


def _stop_loss(exit_order: ExitOrder, now: int, trading_state: str) -> None:
    key = _exit_key("stop", exit_order.symbol)
    if key is None:
        return
    raise_alert("WARNING", "RISK_LIMIT", f"Stop-loss: {exit_order.reason}", timestamp=now, symbol=exit_order.symbol)
    _submit_exit(key, exit_order, now, trading_state)


def _close_all(account: AccountState, reason: str, now: int, trading_state: str) -> None:
    for exit_order in risk_engine().close_all(account, reason):
        key = _exit_key("ddclose", exit_order.symbol)
        if key is not None:
            _submit_exit(key, exit_order, now, trading_state)


def _submit_exit(key: str, exit_order: ExitOrder, now: int, trading_state: str) -> None:
    paper = not live_trading_enabled()
    RiskEvent.objects.create(
        decision=RiskEvent.Decision.APPROVE,
        layer=exit_order.purpose,
        symbol=exit_order.symbol,
        signal_id=key,
        client_order_id=client_order_id_for(key),
        requested_quantity=exit_order.quantity,
        approved_quantity=exit_order.quantity,
        reason=exit_order.reason,
        timestamp=now,
    )
    price = Candle.objects.filter(symbol=exit_order.symbol, timestamp__lte=now).order_by("-timestamp")
    order = _create_order(
        client_order_id_for(key),
        key,
        exit_order.symbol,
        "SELL",
        round_quantity(exit_order.quantity),
        price.values_list("close", flat=True).first(),
        now,
        exit_order.purpose,
        checks=[exit_order.purpose],
        filled_here=paper,
    )
    # The risk manager's own exits settle at once, inside this transaction, before any further decision.
    if paper:
        fill_paper_order(order, trading_state)
    else:
        execute_order({"client_order_id": order.client_order_id})


def _redrive_pending_order(signal_id: str) -> None:
    """A redelivered signal was decided before: its order may still be PENDING because the process that stored
    it died before enqueueing its execution. Enqueue it again (execution is idempotent by client_order_id)."""
    order = Order.objects.filter(signal_id=signal_id, status=Order.Status.PENDING).first()
    if order is None:
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


def _create_order(
    client_order_id: str,
    signal_id: str,
    symbol: str,
    side: str,
    quantity: Decimal,
    price: Decimal,
    now: int,
    purpose: str,
    *,
    checks: list[str],
    stop_loss: Decimal | None = None,
    strategy: str = "",
    risk_score: Decimal | None = None,
    source_timestamp: int | None = None,
    filled_here: bool = False,
) -> Order:
    """Store the order PENDING, then (after commit) publish it to the executor — or, ``filled_here``, only
    announce it: the caller fills it in this transaction and stores it then, once, with its outcome."""
    order = (Order if filled_here else Order.objects.create)(
        client_order_id=client_order_id,
        signal_id=signal_id,
        symbol=symbol,
        side=side,
        quantity=quantity,
        requested_price=price,
        event_time=now,
        source_timestamp=source_timestamp or now,
        submitted_at=ms_to_datetime(now),
        stop_loss=stop_loss,
        strategy=strategy,
        risk_score=risk_score,
        risk_checks=checks,
        purpose=purpose,
    )
    bus.publish(order_event(order), consumed=filled_here)
    return order

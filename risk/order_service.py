"""The execution shell: re-check the state under the account lock, fill, account, publish the order_result.

Exactly once: the order row is locked and must still be PENDING; a redelivered task
finds it settled and only republishes a result that was never published.
"""

from __future__ import annotations

import logging
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import F, OuterRef, Subquery
from django.utils import timezone

from execution import metrics
from execution.accounting import AccountingError, Book, Holding, money
from execution.models import Order, Portfolio, Position, Trade
from execution.paper import Fill, PaperExchange
from execution.trades import Lot, close_lots, exit_target, open_lot, target_first
from ground import amounts, bus
from ground.amounts import plain
from ground.prepared import Prepared, PreparedUpdate
from ground.timeutil import ms_to_datetime
from marketdata.models import Candle

from .alerts import raise_alert
from .desk import blocked_by_state
from .engine import stop_price
from .models import RiskParameters, TradingState

logger = logging.getLogger("cdb.execution")
SETTLED_BY_FILL = {"FILLED": Order.Status.FILLED, "PARTIALLY_FILLED": Order.Status.PARTIALLY_FILLED}


def paper_exchange() -> PaperExchange:
    return PaperExchange(
        slippage_pct=Decimal(settings.PAPER_SLIPPAGE_PCT),
        fee_rate=Decimal(settings.FEE_RATE),
        failure_rate=Decimal(settings.PAPER_FAILURE_RATE),
        seed=settings.PAPER_SEED,
        max_volume_share=Decimal(settings.PAPER_MAX_VOLUME_SHARE),
    )


def order_result_event(order: Order) -> dict:
    """The order_result event: amounts as exact decimal strings (as every JSON the system serves), the quantity
    ordered beside the one filled."""
    return {
        "type": "order_result",
        "order_id": order.order_id or order.client_order_id,
        "client_order_id": order.client_order_id,
        "symbol": order.symbol,
        "side": order.side,
        "status": order.status,
        "quantity": plain(order.quantity),
        "filled_quantity": plain(order.filled_quantity),
        "price": plain(order.price) if order.price else None,
        "fees": plain(order.fees),
        "reason": order.reason,
        "timestamp": order.event_time,
    }


def locked_paper_order(event: dict) -> Order | None:
    """The stored order named by the event (a paper order waits for its candle: nothing is executed here)."""
    with transaction.atomic():  # an order event naming no stored order is rejected (stored, as SPEC §7 asks)
        _, order = _locked_order(event)
    return order


# The candle a paper order fills at: the first of its symbol after the order's decision.
FILL_CANDLE_FIELDS = ("open", "volume", "timestamp", "created_at")


def pending_orders_with_fill_candles(up_to_ms: int) -> list[tuple[Order, tuple | None]]:
    """Every PENDING order, locked, oldest first, each with its fill candle (``FILL_CANDLE_FIELDS``, None if there
    is none yet): the first candle of its symbol opened at or after its decision (the order's event time, a market
    time: a candle's open at that moment is the first price after it), opened by ``up_to_ms``. One statement for a
    paper fill step: the orders it fills and those that still wait after it (``risk.decision_service.fill_market``).
    Call inside the transaction that holds the account lock."""
    found = []
    for order in _pending_with_fill_candle(up_to_ms):
        candle = tuple(getattr(order, f"fill_{field}") for field in FILL_CANDLE_FIELDS)
        found.append((order, candle if candle[2] is not None else None))
    return found


def _fill_candle_column(field: str, up_to: int) -> Subquery:
    first = Candle.objects.filter(symbol=OuterRef("symbol"), timestamp__gte=OuterRef("event_time"))
    return Subquery(first.filter(timestamp__lte=up_to).order_by("timestamp", "interval").values(field)[:1])


_pending_with_fill_candle = Prepared(
    lambda up_to: (
        Order.objects.select_for_update(of=("self",))
        .filter(status=Order.Status.PENDING)
        .annotate(**{f"fill_{field}": _fill_candle_column(field, up_to) for field in FILL_CANDLE_FIELDS})
        .order_by("id")
    ),
    int,
)


def fill_paper_order(
    order: Order,
    candle: tuple,
    *,
    stop_loss_pct: Decimal | None = None,
    known_ms: int | None = None,
    ledger: Ledger | None = None,
) -> Order:
    """Fill a stored PENDING order on the paper exchange at ``candle``'s open (its fill candle,
    ``pending_orders_with_fill_candles``), settle the account, store the order and publish its order_result. Call
    inside the transaction that holds the account lock (``TradingState``), once the desk has let the order through
    (``risk.desk.Desk.fill``); a filled BUY's stop is its fill price × (1 − ``stop_loss_pct``, else the current
    parameter). ``known_ms``: the market time of the fill step, when a failure is known (its ORDER_FAILED alert's
    time). ``ledger``: the step's ledger, read once for all its fills (``Ledger.read``)."""
    price, volume, _timestamp, created_at = candle
    fill = paper_exchange().fill(
        order.client_order_id, order.side, order.quantity, price, volume, asset=amounts.base_of(order.symbol)
    )
    return _settle_and_finish(order, fill, created_at, stop_loss_pct, known_ms, ledger)


def cancel_order(order: Order, reason: str, known_ms: int | None = None, status: str = Order.Status.REJECTED) -> Order:
    """A stored PENDING order the desk held back: REJECTED (or ``status``), stored, its order_result published, an
    ORDER_FAILED alert raised at ``known_ms`` (the market time of the desk's step; None: the market clock now)."""
    order.status, order.reason = status, reason
    _finish(order, known_ms=known_ms)
    return order


def _locked_order(event: dict) -> tuple[TradingState, Order | None]:
    """Lock the account and the order. A settled order is returned as it is (its result republished if that
    never happened); only a PENDING one is to be executed."""
    state = TradingState.load(for_update=True)
    found = list(Order.objects.select_for_update().filter(client_order_id=event["client_order_id"]))
    order = found[0] if found else None
    if order is None:
        bus.reject(
            event,
            f"no stored order with client_order_id {event['client_order_id']}",
            stage="consume",
            consumer="execution.execute_order",
        )
        return state, None
    if order.status != Order.Status.PENDING:
        logger.info("order %s already %s; redelivery ignored", order.client_order_id, order.status)
        if not order.result_published:
            _publish_result(order)
    return state, order


def _finish(order: Order, candle_stored_at=None, *, known_ms: int | None = None) -> None:
    """Store the settled order, publish its result; a FAILED or REJECTED one raises ORDER_FAILED at the time its
    failure was known: ``known_ms`` (a paper fill step's market time), else the market clock now (an exchange's
    answer) — not its decision time."""
    _publish_result(order)
    _observe(order, candle_stored_at)
    if order.status in (Order.Status.FAILED, Order.Status.REJECTED):
        raise_alert(
            "WARNING",
            "ORDER_FAILED",
            f"{order.symbol} {order.side} {amounts.quantity(order.quantity, amounts.base_of(order.symbol))} "
            f"{order.status}: {order.reason}",
            timestamp=known_ms,
            symbol=order.symbol,
        )


def _blocked_by_state(state: TradingState, order: Order) -> str:
    """A HALT stops every order but the halt's own closing orders; PAUSED stops entries (``risk.desk``)."""
    return blocked_by_state(state.state, state.pause_layer, order.purpose, order.side)


def _publish_result(order: Order) -> None:
    order.result_published = True
    _save_order(order)
    bus.publish(order_result_event(order))


def _observe(order: Order, stored=None) -> None:
    """Count the trade and observe the order latency: from storing its candle (``stored``, if known) to now."""
    if order.status in SETTLED_BY_FILL.values():
        metrics.trades_total.labels(side=order.side).inc()
    else:
        metrics.trades_failed_total.labels(status=order.status).inc()
    if stored is None:
        stored = (
            Candle.objects.filter(symbol=order.symbol, timestamp=order.source_timestamp)
            .values_list("created_at", flat=True)
            .first()
        )
    if stored is not None:
        metrics.order_latency_seconds.observe(max(0.0, (timezone.now() - stored).total_seconds()))


def load_book() -> tuple[Book, Portfolio]:
    """The stored portfolio and its open positions as a pure Book (locked: call inside the account transaction)."""
    ledger = Ledger.read(Portfolio.load(for_update=True))
    return ledger.book, ledger.portfolio


class Ledger:
    """The portfolio and the open positions of a paper fill step, read once under the account lock (``read``) and
    kept as the step's fills change them (``_settle``: the ``book`` is changed only by a fill it takes, and stored
    at once): the fills after the first and the account read after the step (``positions``) read neither again.
    Every writer of them holds the account lock, and the rows are locked besides."""

    def __init__(self, portfolio: Portfolio, positions: list[Position]) -> None:
        self.portfolio = portfolio
        holdings = {p.symbol: Holding(p.quantity, p.cost_basis) for p in positions}
        self.book = Book(
            portfolio.initial_capital, portfolio.cash, holdings, portfolio.realized_pnl, portfolio.fees_paid
        )

    @classmethod
    def read(cls, portfolio: Portfolio) -> Ledger:
        """The ledger of ``portfolio`` (read locked by the caller) and the open positions, locked."""
        return cls(portfolio, _locked_positions())

    def positions(self) -> dict[str, Position]:
        """The open positions as stored now, by symbol (the rows ``account_rows`` would read; not saved rows)."""
        return {
            symbol: Position(
                symbol=symbol,
                quantity=money(holding.quantity),
                cost_basis=money(holding.cost),
                avg_entry_price=holding.avg_entry_price,
            )
            for symbol, holding in sorted(self.book.holdings.items())
            if holding.quantity > 0
        }


def _settle_and_finish(
    order: Order,
    fill: Fill,
    candle_stored_at=None,
    stop_loss_pct: Decimal | None = None,
    known_ms: int | None = None,
    ledger: Ledger | None = None,
) -> Order:
    """Settle the fill, store the order and publish its order_result, then record its trades: they refer to the
    order row, which a new paper order gets only now."""
    filled = _settle(order, fill, stop_loss_pct, ledger)
    _finish(order, candle_stored_at, known_ms=known_ms)
    if filled:
        _record_trades(order, fill)
    return order


def _settle(order: Order, fill: Fill, stop_loss_pct: Decimal | None = None, ledger: Ledger | None = None) -> bool:
    """Apply a fill to the order's fields and to the account (portfolio, position), read under the lock (or held
    in the fill step's ``ledger``). True when it filled: its trades are then to be recorded (``_record_trades``). A
    filled BUY gets its lot's stop from its fill price (``stop_loss_pct`` of the decision, else the parameter)."""
    order.order_id = fill.order_id
    if fill.status not in SETTLED_BY_FILL:
        order.status, order.reason = (
            Order.Status.REJECTED if fill.status == "REJECTED" else Order.Status.FAILED,
            fill.reason,
        )
        return False
    book, portfolio = load_book() if ledger is None else (ledger.book, ledger.portfolio)
    try:  # Book.apply changes nothing when it refuses a fill
        book.apply(order.symbol, order.side, fill.quantity, fill.price, fill.fee)
    except AccountingError as error:
        order.status, order.reason = Order.Status.FAILED, str(error)
        return False
    save_book(book, portfolio, order.symbol)
    filled_at = ms_to_datetime(order.event_time)
    order.status, order.reason = SETTLED_BY_FILL[fill.status], fill.reason
    order.filled_quantity, order.price, order.fees, order.filled_at = fill.quantity, fill.price, fill.fee, filled_at
    if order.side == "BUY":
        if stop_loss_pct is None:
            stop_loss_pct = RiskParameters.load().stop_loss_pct
        order.entry_price, order.stop_loss = fill.price, stop_price(fill.price, stop_loss_pct)
    return True


def save_book(book: Book, portfolio: Portfolio, symbol: str) -> None:
    """Store what a fill changed in the book: the portfolio's totals and the symbol's position (inserted, or
    updated where stored: one statement)."""
    portfolio.cash, portfolio.realized_pnl, portfolio.fees_paid = book.cash, book.realized_pnl, book.fees
    _save_portfolio_totals(portfolio)
    holding = book.holding(symbol)
    position = Position(
        symbol=symbol, quantity=holding.quantity, cost_basis=holding.cost, avg_entry_price=holding.avg_entry_price
    )
    fields = ["quantity", "cost_basis", "avg_entry_price", "updated_at"]
    Position.objects.bulk_create([position], update_conflicts=True, unique_fields=["symbol"], update_fields=fields)


def _record_trades(order: Order, fill: Fill) -> None:
    """A filled BUY opens a trade; a SELL closes open trades of the symbol (the order row is stored)."""
    if order.side == "BUY":
        lot = open_lot(
            order.client_order_id, order.symbol, fill.quantity, fill.price, fill.fee, order.event_time, order.stop_loss
        )
        _store_open_trade(lot, order.pk, order.filled_at)
    else:
        _close_trades(order, fill)


def _store_open_trade(lot: Lot, order_id: int, entry_time) -> None:
    """Insert an open lot as an OPEN trade of the order (row id) that bought it, entered at ``entry_time``."""
    Trade(
        trade_id=lot.trade_id,
        order_id=order_id,
        symbol=lot.symbol,
        quantity=lot.quantity,
        entry_price=lot.entry_price,
        entry_time=entry_time,
        entry_fees=lot.entry_fees,
        stop_loss=lot.stop,
    ).save(force_insert=True)


def _close_trades(order: Order, fill: Fill) -> None:
    """Close open trades of the symbol oldest first — a stop-loss its own lot first — (execution.trades decides the
    split and the P&L)."""
    rows = _open_trades_locked(order.symbol)
    lots = [Lot(t.trade_id, t.entry, t.symbol, t.quantity, t.entry_price, 0, t.entry_fees, t.stop_loss) for t in rows]
    lots = target_first(lots, exit_target(order.signal_id, order.purpose))
    reason = "signal" if order.purpose == Order.Purpose.EXIT else order.purpose
    closed, remainder = close_lots(
        lots, fill.quantity, fill.price, fill.fee, order.client_order_id, order.event_time, reason
    )
    by_id = {t.trade_id: t for t in rows}
    for item in closed:
        trade = by_id[item.lot.trade_id]
        trade.quantity, trade.entry_fees = item.lot.quantity, item.lot.entry_fees
        trade.exit_order, trade.exit_price, trade.exit_fees = order, item.exit_price, item.exit_fees
        trade.exit_time = ms_to_datetime(item.exit_time)
        trade.profit_loss, trade.profit_loss_percent = item.profit_loss, item.profit_loss_percent
        trade.exit_reason, trade.status = item.exit_reason, Trade.Status.CLOSED
        _save_closed_trade(trade)
    if remainder is not None:
        source = by_id[closed[-1].lot.trade_id]  # the lot that was only partly sold
        _store_open_trade(remainder, source.order_id, source.entry_time)


_locked_positions = Prepared(
    lambda: Position.objects.select_for_update().filter(quantity__gt=0).order_by("symbol")
)  # the open positions, locked (``Ledger.read``)
_open_trades_locked = Prepared(
    lambda symbol: (
        Trade.objects.select_for_update(of=("self",))
        .filter(symbol=symbol, status=Trade.Status.OPEN)
        .annotate(entry=F("order__client_order_id"))  # the entry order's
        .order_by("entry_time", "id")
    ),
    str,
)  # a symbol's open trades, oldest first, locked, each with its entry order's client order id (``_close_trades``)

CLOSED_TRADE_FIELDS = (
    "quantity",
    "entry_fees",
    "exit_order",
    "exit_price",
    "exit_fees",
    "exit_time",
    "profit_loss",
    "profit_loss_percent",
    "exit_reason",
    "status",
)
# The stored rows a fill or an order's outcome changes, saved as ``save()`` saves them, through one statement built
# once (``ground.prepared.PreparedUpdate``): every field of the order, the portfolio's totals, a closed trade's.
_save_order = PreparedUpdate(Order)
_save_portfolio_totals = PreparedUpdate(Portfolio, ["cash", "realized_pnl", "fees_paid", "updated_at"])
_save_closed_trade = PreparedUpdate(Trade, CLOSED_TRADE_FIELDS)

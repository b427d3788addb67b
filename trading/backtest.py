"""The backtest: the live decision code (strategy, the six risk layers, the paper fill model, the book) run
in one process over recorded candles, with the same order of effects as the live pipeline.

Per candle, exactly as the live ``trading.on_market_data`` task and its followers do:
1. the symbol's approved orders meet their price, the candle's open: the first price after their decision
   (``Desk.fill``: the state may cancel them, an entry's slippage may trip the circuit breaker); the paper
   exchange fills them and the book takes the fills;
2. the risk watch: day roll-over at 00:00 UTC, daily drawdown (HALT and close everything), stop-loss exits,
   the circuit breaker's retry;
3. the strategy on the candle; a signal is sized and judged by the desk. Its approved order waits, as every
   order the desk makes, for step 1 of its symbol's next candle.

Nothing here touches the ORM, Redis or the clock: state lives in this object, time is the candles' time.
Identifiers (signal ids, client order ids, trade ids, exit keys) are derived exactly as live, so a replay
through Celery/Redis/PostgreSQL and this loop can be compared order by order.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple

from execution.accounting import AccountingError, Book
from execution.paper import PaperExchange
from execution.trades import ClosedLot, Lot, close_lots, exit_target, open_lot, target_first
from ground.amounts import base_of
from ground.timeutil import DAY_MS, MINUTE_MS
from marketdata import stale
from marketdata.validation import CandleRow, interval_ms, parse_file_name
from risk.desk import (
    CLOSING_HALTS,
    SUPPRESSED,
    CancelOrder,
    ChangeState,
    Desk,
    DeskState,
    DeskView,
    FillOrder,
    RaiseAlert,
    RecordRiskEvent,
    SignalIn,
    SubmitOrder,
    UpdateBreaker,
)
from risk.engine import (
    ACTIVE,
    HALTED,
    PAUSED,
    SPREAD_WINDOW,
    AccountState,
    AlertSpec,
    MarketSnapshot,
    RiskEngine,
    fold_waiting,
    snapshot_from_rows,
    stop_price,
)
from trading.signal_ids import signal_id_for
from trading.strategies import Candle, Strategy

EXIT_KEYED = ("stop_loss", "drawdown_close", "operator_close")  # orders made under an exit key (desk._exit)
STOP_MARGIN = 1 + 1e-9  # float pre-check of a stop: far above float error, so it never misses an exact trigger


class BacktestInputError(ValueError):
    """A file that cannot be backtested (missing, empty, unnamed); the message says which and why."""


class Bar(NamedTuple):
    """One validated candle of one file (a tuple: cheap to build for every candle)."""

    symbol: str
    interval: str
    row: CandleRow  # exact Decimals: prices, fills and the book
    candle: Candle  # the same candle in floats: what the strategy reads


def _entry_time(lot: Lot) -> int:
    return lot.entry_time


def read_bars(
    paths: list[str], rejected: dict[str, int] | None = None, series: dict[str, stale.CandleSeries] | None = None
) -> Iterator[Bar]:
    """Candles of several SYMBOL-INTERVAL.csv files (or Freqtrade's .feather/.parquet), validated like a replay
    and merged by (time, symbol); ``rejected`` counts the refused rows by reason (marketdata/candle_files.py);
    ``series`` gets each symbol's interval and last candle: what the data-stale watch expects (``Backtest.watched``)."""
    from marketdata.candle_files import freqtrade_file_name, iter_merged, read_file  # numpy: not for --help

    files = []
    for raw in paths:
        path = Path(raw)
        named = parse_file_name(path) or freqtrade_file_name(path)
        if named is None:
            raise BacktestInputError(f"{path}: name it SYMBOL-INTERVAL.csv (e.g. ETH_BTC-5m.csv)")
        if not path.is_file():
            raise BacktestInputError(f"{path}: no such file")
        if path.stat().st_size == 0:
            raise BacktestInputError(f"{path}: the file is empty")
        try:
            files.append(read_file(path, *named))
        except (OSError, ValueError) as error:  # unreadable, or not a Freqtrade candle table
            raise BacktestInputError(f"{path}: {error}") from None
    for file in files if rejected is not None else ():
        for reason, count in file.rejected.items():
            rejected[reason] = rejected.get(reason, 0) + count
    for file in files if series is not None else ():
        if len(file):
            add_series(series, file.symbol, stale.CandleSeries(interval_ms(file.interval), int(file.timestamps.max())))
    return iter_merged(files, Bar, Candle)


def add_series(series: dict[str, stale.CandleSeries], symbol: str, more: stale.CandleSeries) -> None:
    """Another file of ``symbol``: the watch expects its shortest interval, until its latest candle."""
    known = series.get(symbol)
    if known is not None:
        more = stale.CandleSeries(min(more.interval_ms, known.interval_ms), max(more.last_ms, known.last_ms))
    series[symbol] = more


def watched_series(series: dict[str, stale.CandleSeries], whitelist) -> dict[str, stale.CandleSeries]:
    """What the data-stale watch expects (``Backtest.watched``): the files' symbols, as ``run_feed --source replay``
    watches its files', less what a whitelist leaves out."""
    return {symbol: v for symbol, v in sorted(series.items()) if not whitelist or symbol in whitelist}


@dataclass
class Order:
    client_order_id: str
    signal_id: str
    symbol: str
    side: str
    quantity: Decimal
    requested_price: Decimal
    timestamp: int
    purpose: str
    decision: str
    risk_checks: list[str]
    status: str = "PENDING"
    filled_quantity: Decimal = Decimal(0)
    price: Decimal | None = None
    fees: Decimal = Decimal(0)
    reason: str = ""
    stop_loss: Decimal | None = None  # a filled entry's stop: its fill price × (1 − STOP_LOSS_PCT)


@dataclass
class Result:
    initial_capital: Decimal
    book: Book
    marks: dict[str, Decimal]
    candles: int
    seconds: float
    orders: list[Order]
    closed: list[ClosedLot]
    open_lots: dict[str, list[Lot]]
    risk_events: list[dict]
    alerts: list[dict]
    equity_curve: list[tuple[int, Decimal]]
    in_market: list[bool]
    trading_state: str

    @property
    def final_equity(self) -> Decimal:
        return self.book.equity(self.marks)


@dataclass
class Backtest:
    strategy_factory: Callable[[], Strategy]
    parameters: dict[str, Decimal]
    capital: Decimal
    exchange: PaperExchange
    position_size_pct: Decimal
    # SYMBOL_WHITELIST: backtested symbols are like replayed ones, tradable unless a whitelist leaves them out
    whitelist: frozenset[str] = frozenset()
    # The symbols the data-stale watch expects candles of, as a replay's watch expects its files' symbols
    # (``read_bars``' ``series``, less what a whitelist leaves out); empty: no watch.
    watched: dict[str, stale.CandleSeries] = field(default_factory=dict)
    desk: Desk = field(init=False)

    def __post_init__(self) -> None:
        engine = RiskEngine(fee_rate=self.exchange.fee_rate, slippage_pct=self.exchange.slippage_pct)
        self.desk = Desk(engine, self.position_size_pct)
        self.book = Book.new(self.capital)
        self.state, self.layer, self.reason = ACTIVE, "", ""  # the trading state, the layer that set it, why
        self.breaker = {"symbol": "", "tries": 0, "checked": None}
        self.day_number: int | None = None
        self.day_start_equity: Decimal | None = None
        self.day_start_f = 0.0
        self.max_drawdown_f = float(self.parameters["MAX_DAILY_DRAWDOWN_PCT"])
        self.stop_loss_pct = self.parameters["STOP_LOSS_PCT"]
        # Float copies of the book, for the pre-checks only (never for a decision or an amount).
        self.cash_f = float(self.capital)
        self.held_f: dict[str, float] = {}
        self.stop_f: dict[str, float] = {}
        self.equity_f: float | None = None  # cash_f + held_f at the last candles; None: to be recomputed
        # The waiting exits as the account counts them (``_account``), in floats: their proceeds in, their quantities
        # off the positions (a waiting entry leaves the equity as it is).
        self.pending_cash_f = 0.0
        self.pending_held_f: dict[str, float] = {}
        self.alarm: bool | None = None  # the drawdown pre-check's answer for equity_f and the state; None: to do
        self.stop_dirty: set[str] = set()
        self.marks: dict[str, Decimal] = {}
        self.last: dict[str, Bar] = {}  # each symbol's latest candle: its float close, its volume
        self.history: dict[str, deque[CandleRow]] = {}  # each symbol's last SPREAD_WINDOW + 1 rows, newest first
        self.strategies: dict[tuple[str, str], Strategy] = {}
        self.orders: list[Order] = []
        self.pending: dict[str, list[Order]] = {}  # approved orders waiting for their symbol's next candle
        self.pending_orders: list[Order] = []  # the same, oldest first
        self.exit_attempts_by_key: dict[str, list[Order]] = {}  # exit key base -> the orders of its attempts
        self.suppressed_stops: set[str] = set()  # stop keys a halt held back (and said so)
        self.entry_times: deque[int] = deque()
        self.last_stop: dict[str, int] = {}
        self.lots: dict[str, list[Lot]] = {}
        self.closed: list[ClosedLot] = []
        self.risk_events: list[dict] = []
        self.alerts: list[dict] = []
        self.equity_curve: list[tuple[int, Decimal]] = []
        self.open_point: int | None = None  # the time of the equity point the next step (or the end) values
        self.in_market: list[bool] = []  # per equity-curve point: was anything held
        # The data-stale watch, as a replay runs it (marketdata/stale.py): each symbol's latest candle time, the
        # symbols found stale at the last check, whether its own pause holds, and who changed the state last.
        self.last_seen: dict[str, int] = {}
        self.stale_symbols: tuple[str, ...] = ()
        self.paused_by_watch = False
        self.changed_by = ""
        self.stale_timeout_ms = int(self.parameters["DATA_STALE_TIMEOUT_SEC"]) * 1000

    # --- the loop ---------------------------------------------------------------------------------------
    def run(self, bars: Iterable[Bar], progress: Callable[[int], None] = lambda n: None) -> Result:
        started = time.perf_counter()
        count = 0
        group: list[Bar] = []
        now = None
        step = self.step
        for bar in bars:
            if bar[2].timestamp != now:  # bar.row.timestamp
                if group:
                    step(group)
                    progress(len(group))
                    count += len(group)
                group = [bar]
                now = bar[2].timestamp
            else:
                group.append(bar)
        if group:
            step(group)
            progress(len(group))
            count += len(group)
        if self.open_point is not None:
            if self.watched:
                self._check_stale(self.open_point)  # as a replay checks once more after its last candle
            self._close_point()
        return Result(
            self.capital,
            self.book,
            self.marks,
            count,
            time.perf_counter() - started,
            self.orders,
            self.closed,
            self.lots,
            self.risk_events,
            self.alerts,
            self.equity_curve,
            self.in_market,
            self.state,
        )

    def step(self, bars: list[Bar]) -> None:
        """One timestamp: every candle of that time is in before any decision (as in the store of a replay,
        where a decision at time T sees all candles up to and including T), then each symbol in order."""
        now = bars[0][2].timestamp  # bar.row.timestamp
        if self.open_point is not None:
            if self.watched:
                self._check_stale(self.open_point)  # the previous time's candles are all in: is anyone missing?
            self._close_point()
        if now // DAY_MS != self.day_number:  # before any fill: as the live watch rolls the day, then fills
            self._roll_day(now, bars[0].symbol)
        marks, last, history, stops, seen = self.marks, self.last, self.history, self.stop_f, self.last_seen
        for bar in bars:
            symbol, _, row, candle = bar
            seen[symbol] = now
            marks[symbol] = row.close
            last[symbol] = bar
            try:
                history[symbol].appendleft(row)
            except KeyError:
                history[symbol] = deque((row,), maxlen=SPREAD_WINDOW + 1)
            stop = stops.get(symbol)
            if stop is not None and candle.close <= stop * STOP_MARGIN:  # as _flag_stop, inlined: every candle
                self.stop_dirty.add(symbol)
        self.equity_f = self.alarm = None  # the marks moved
        strategies = self.strategies
        # The watch runs before each symbol's strategy, but only when it can do something: the drawdown
        # pre-check fires (see ``_watch``), a stop may trigger, or the circuit breaker waits for a retry.
        # What it looks at changes only through the watch itself or a decision, so it is re-read after those.
        alarm = self._drawdown_alarm()
        pending = self.pending
        for symbol, interval, row, candle in bars:
            if symbol in pending:
                self._fill_pending(symbol, row, now)
                alarm = self._drawdown_alarm()
            if alarm or self.stop_dirty or self.state != ACTIVE:
                self._watch(symbol, now)
                alarm = self.alarm if self.alarm is not None else self._drawdown_alarm()
            strategy = strategies.get((symbol, interval))
            if strategy is None:
                strategy = strategies[symbol, interval] = self.strategy_factory().for_series(symbol, interval)
            emitted = strategy.on_candle(candle)
            if emitted is not None:
                signal_id = signal_id_for(symbol, interval, strategy.name, now)
                self._decide(symbol, emitted.side, Decimal(str(emitted.price)), emitted.confidence, signal_id, now)
                alarm = self.alarm if self.alarm is not None else self._drawdown_alarm()
        self.open_point = now

    def _roll_day(self, now: int, symbol: str) -> None:
        """The day starts at the equity valued at the last prices before 00:00 UTC (the marks before this time's
        candles), waiting orders counted as the account counts them."""
        self.day_number = now // DAY_MS
        self.day_start_equity = self._account(symbol, now).equity
        self.day_start_f = float(self.day_start_equity)
        self.alarm = None

    def _drawdown_alarm(self) -> bool:
        """The float pre-check of the daily drawdown: False only where the exact check cannot trip (the margin
        of 1e-9 is far above float error). Kept in ``alarm`` until the marks, the book, the day or the state
        change (each of those resets it). Waiting orders count as the exact account counts them
        (``_pending_changed``)."""
        alarm = self.alarm
        if alarm is None:
            alarm = False
            if self.day_start_f > 0 and self.state != HALTED:
                equity = self.equity_f
                if equity is None:
                    last, held = self.last, 0.0
                    for s, q in self.held_f.items():  # summed as sum() would, without its generator
                        held += q * last[s].candle.close
                    for s, q in self.pending_held_f.items():
                        held += q * last[s].candle.close
                    equity = self.equity_f = self.cash_f + self.pending_cash_f + held
                alarm = (self.day_start_f - equity) / self.day_start_f >= self.max_drawdown_f - 1e-9
            self.alarm = alarm
        return alarm

    def _close_point(self) -> None:
        """Value the book once per timestamp, after every candle of that time is in."""
        self.equity_curve.append((self.open_point, self.book.equity(self.marks)))
        self.in_market.append(bool(self.held_f))
        self.open_point = None

    # --- the account as the engine sees it --------------------------------------------------------------
    def _account(self, symbol: str, now: int, *, with_lots: bool = False) -> AccountState:
        """The account as the engine sees it; ``with_lots``: with each held symbol's open lots and their stops
        (what the watch checks stop-losses on; a decision does not read them). Orders waiting for their fill
        count as the live account counts PENDING orders (``execution.account.account_rows``): an entry's estimated
        cost leaves the cash and it counts as being entered (not held), an exit's units leave the position."""
        entry_times = self.entry_times
        while entry_times and entry_times[0] <= now - MINUTE_MS:
            entry_times.popleft()
        lots = {s: tuple(held) for s, held in self.lots.items() if held} if with_lots else {}
        quantities = {s: h.quantity for s, h in self.book.holdings.items() if h.quantity > 0}
        cash, receivable, entering, entering_cost = self.book.cash, Decimal(0), {}, Decimal(0)
        if self.pending_orders:  # newest first, as the live query reads them
            exchange = self.exchange
            quantities, cash, receivable, entering, entering_cost = fold_waiting(
                quantities, cash, reversed(self.pending_orders), exchange.slippage_pct, exchange.fee_rate
            )
            quantities = {s: q for s, q in quantities.items() if q > 0}
        # The engine only looks up prices (of held symbols and ``symbol``): a copy of the whole map answers as the
        # live queries do.
        return AccountState(
            trading_state=self.state,
            cash=cash,
            positions=quantities,
            prices=self.marks.copy(),
            day_start_equity=self.day_start_equity,
            orders_last_minute=len(entry_times),
            last_stop_ms={symbol: self.last_stop[symbol]} if symbol in self.last_stop else {},
            lots=lots,
            receivable=receivable,
            entering=entering,
            entering_cost=entering_cost,
        )

    def _market(self, symbol: str) -> MarketSnapshot:
        """The engine's market snapshot from the symbol's recent candles (newest first)."""
        return snapshot_from_rows(self.history.get(symbol, ()))

    # --- 1. the watch -----------------------------------------------------------------------------------
    def _watch(self, symbol: str, now: int) -> None:
        """The desk's watch, where it can do something. Float pre-checks only skip work that cannot trigger (with
        a margin far above float error); whenever a layer might trip, the desk decides on exact Decimals, as live.

        A stop can only newly trigger where a price moved or a position or its exit changed and the float
        pre-check then passed (``stop_dirty``, see ``_flag_stop``): every other position was checked with the
        same numbers before. Re-checked here: a position closed since it was flagged has no stop any more."""
        candidates, self.stop_dirty = self.stop_dirty, set()
        stops, last = self.stop_f, self.last
        stop_due = bool(stops) and any(
            s in stops and last[s].candle.close <= stops[s] * STOP_MARGIN for s in candidates
        )
        closing = self.state == HALTED and self.layer in CLOSING_HALTS and bool(self.held_f)
        if not (stop_due or closing or self.state == PAUSED or self._drawdown_alarm()):
            return
        breaker = self.breaker["symbol"] if self.state == PAUSED and self.layer == "circuit_breaker" else None
        view = self._view(symbol, now, self._market(breaker) if breaker else None, with_lots=True)
        self._apply(self.desk.watch(view, self), now)

    # --- 2. the decision --------------------------------------------------------------------------------
    def _decide(self, symbol: str, side: str, price: Decimal, confidence: float, signal_id: str, now: int) -> None:
        market = self._market(symbol)
        if self.whitelist and symbol not in self.whitelist:
            market = replace(market, tradable=False)
        signal = SignalIn(signal_id, symbol, side, price, confidence, source_timestamp=now)
        self._apply(self.desk.decide(self._view(symbol, now, market), signal, self), now)

    def _view(self, symbol: str, now: int, market: MarketSnapshot | None, *, with_lots: bool = False) -> DeskView:
        account = self._account(symbol, now, with_lots=with_lots)
        return DeskView(self._desk_state(), account, self.parameters, now, market)

    def _desk_state(self) -> DeskState:
        breaker = self.breaker
        return DeskState(self.state, self.layer, self.reason, breaker["symbol"], breaker["tries"], breaker["checked"])

    def _apply(self, effects: list, now: int, fills: dict[str, tuple[Order, Decimal]] | None = None) -> None:
        """Carry out the desk's effects in order, in memory (the live worker writes the same to the database);
        ``fills``: the order a fill step's effects name, by client order id, with its candle's volume."""
        for effect in effects:
            kind = effect.__class__
            if kind is RecordRiskEvent:
                if effect.layer == SUPPRESSED:
                    self.suppressed_stops.add(effect.signal_id)
                requested = effect.requested_quantity
                self.risk_events.append(
                    {
                        "timestamp": now,
                        "symbol": effect.symbol,
                        "signal_id": effect.signal_id,
                        "decision": effect.decision,
                        "layer": effect.layer,
                        "requested_quantity": str(requested) if requested is not None else None,
                        "approved_quantity": str(effect.approved_quantity),
                        "reason": effect.reason,
                        "details": effect.details,
                    }
                )
            elif kind is RaiseAlert:
                self._alert(AlertSpec(effect.level, effect.code, effect.message), now)
            elif kind is ChangeState:
                self._set_state(effect.new_state, effect.layer, now, effect.reason)
                if effect.breaker_symbol:
                    self.breaker = {"symbol": effect.breaker_symbol, "tries": 0, "checked": now}
            elif kind is UpdateBreaker:
                self.breaker.update(tries=effect.tries, checked=effect.checked_ms)
            elif kind is SubmitOrder:
                self._submit(effect, now)
            elif kind is FillOrder:
                order, volume = fills[effect.client_order_id]
                self._fill(order, effect.price, volume)
            elif kind is CancelOrder:
                order = fills[effect.client_order_id][0]
                order.status, order.reason = "REJECTED", effect.reason
                self._alert_failed(order)

    def _submit(self, submit: SubmitOrder, now: int) -> None:
        order = Order(
            submit.client_order_id,
            submit.signal_id,
            submit.symbol,
            submit.side,
            submit.quantity,
            submit.price,
            now,
            submit.purpose,
            submit.decision,
            submit.checks,
        )
        self.orders.append(order)
        if order.purpose == "entry":
            self.entry_times.append(order.timestamp)
        self.pending.setdefault(order.symbol, []).append(order)
        self.pending_orders.append(order)
        if order.side == "SELL":  # a waiting entry leaves the float equity as it is
            self._pending_changed()
        if order.purpose in EXIT_KEYED:
            base = order.signal_id.split("#", 1)[0]
            self.exit_attempts_by_key.setdefault(base, []).append(order)

    # --- the ExitLedger the desk asks -----------------------------------------------------------------------
    def oldest_open_trade(self, symbol: str) -> str | None:
        lots = self.lots.get(symbol)
        return lots[0].trade_id if lots else None

    def exit_attempts(self, base: str) -> list[str]:
        return [order.status for order in self.exit_attempts_by_key.get(base, ())]

    def suppressed(self, base: str) -> bool:
        return base in self.suppressed_stops

    # --- 1. the fills -----------------------------------------------------------------------------------
    def _fill_pending(self, symbol: str, row: CandleRow, now: int) -> None:
        """The symbol's orders decided before this candle, oldest first, at its open (``Desk.fill``); one decided at
        this very time (by the watch of another symbol, or on another interval of this one) waits for the next."""
        waiting = self.pending.pop(symbol)
        due = [order for order in waiting if order.timestamp < now]
        if len(due) < len(waiting):
            self.pending[symbol] = [order for order in waiting if order.timestamp >= now]
        for order in due:
            self.pending_orders.remove(order)
            if order.side == "SELL":
                self._pending_changed()
            effects = self.desk.fill(self._desk_state(), self.parameters, order, row.open)
            self._apply(effects, now, {order.client_order_id: (order, row.volume)})

    def _pending_changed(self) -> None:
        """The float copies of what the waiting orders add to the account (for the drawdown pre-check)."""
        slippage, fee = float(self.exchange.slippage_pct), float(self.exchange.fee_rate)
        cash, held = 0.0, {}
        for order in self.pending_orders:  # an entry's cost stays in the equity until it fills: nothing to add
            if order.side == "SELL":
                quantity, price = float(order.quantity), float(order.requested_price)
                cash += quantity * price * (1 - slippage) * (1 - fee)
                held[order.symbol] = held.get(order.symbol, 0.0) - quantity
        self.pending_cash_f, self.pending_held_f = cash, held
        self.equity_f = self.alarm = None

    def _fill(self, order: Order, price: Decimal, volume: Decimal) -> None:
        fill = self.exchange.fill(
            order.client_order_id, order.side, order.quantity, price, volume, asset=base_of(order.symbol)
        )
        self._settle(order, fill)
        self._flag_stop(order.symbol)
        if order.status in ("FAILED", "REJECTED"):
            self._alert_failed(order)

    def _alert_failed(self, order: Order) -> None:
        message = f"{order.side} {order.quantity} {order.symbol} {order.status}: {order.reason}"
        self._alert(AlertSpec("WARNING", "ORDER_FAILED", message), order.timestamp)

    def _flag_stop(self, symbol: str) -> None:
        """Queue ``symbol`` for the watch's stop-loss check where the float pre-check says its stop might trigger
        (its price moved, or its position or the exit of it changed): elsewhere the exact check cannot trip."""
        stop = self.stop_f.get(symbol)
        if stop is not None and self.last[symbol].candle.close <= stop * STOP_MARGIN:
            self.stop_dirty.add(symbol)

    def _settle(self, order: Order, fill) -> None:
        if fill.status not in ("FILLED", "PARTIALLY_FILLED"):
            order.status, order.reason = ("REJECTED" if fill.status == "REJECTED" else "FAILED"), fill.reason
            return
        try:
            self.book.apply(order.symbol, order.side, fill.quantity, fill.price, fill.fee)
        except AccountingError as error:
            order.status, order.reason = "FAILED", str(error)
            return
        order.status, order.reason = fill.status, fill.reason
        order.filled_quantity, order.price, order.fees = fill.quantity, fill.price, fill.fee
        symbol = order.symbol
        lots = self.lots.setdefault(symbol, [])
        if order.side == "BUY":
            order.stop_loss = stop_price(fill.price, self.stop_loss_pct)
            lots.append(
                open_lot(
                    order.client_order_id, symbol, fill.quantity, fill.price, fill.fee, order.timestamp, order.stop_loss
                )
            )
        else:
            if order.purpose == "stop_loss":
                self.last_stop[symbol] = order.timestamp
            reason = "signal" if order.purpose == "exit" else order.purpose
            ordered = target_first(lots, exit_target(order.signal_id, order.purpose))
            closed, remainder = close_lots(
                ordered, fill.quantity, fill.price, fill.fee, order.client_order_id, order.timestamp, reason
            )
            self.closed.extend(closed)
            rest = ordered[len(closed) :]
            if remainder is not None:
                rest.insert(0, remainder)
            lots[:] = sorted(rest, key=_entry_time)  # oldest first, as the live store orders its open trades
        self._refresh_cache(symbol)

    def _refresh_cache(self, symbol: str) -> None:
        self.cash_f = float(self.book.cash)
        self.equity_f = self.alarm = None
        holding = self.book.holding(symbol)
        if holding.quantity > 0:
            self.held_f[symbol] = float(holding.quantity)
        else:
            self.held_f.pop(symbol, None)
        lots = self.lots.get(symbol)
        if holding.quantity > 0 and lots:
            self.stop_f[symbol] = float(max(lot.stop for lot in lots))  # the highest stop is reached first
        else:
            self.stop_f.pop(symbol, None)

    # --- state ---------------------------------------------------------------------------------------------
    def _set_state(self, new_state: str, layer: str, now: int, reason: str = "", actor: str = "risk") -> None:
        self.changed_by = actor
        self.risk_events.append(
            {
                "timestamp": now,
                "decision": "STATE_CHANGE",
                "layer": layer or "state",
                "reason": f"{self.state} → {new_state}: {reason}",
            }
        )
        self.state, self.layer, self.reason = new_state, layer if new_state != ACTIVE else "", reason
        self.alarm = None
        if new_state != PAUSED:
            self.breaker = {"symbol": "", "tries": 0, "checked": None}

    def _check_stale(self, now: int) -> None:
        """The data-stale watch at ``now`` (``marketdata.stale.StaleWatch._act``, in memory): a watched symbol without
        a candle for longer than DATA_STALE_TIMEOUT_SEC pauses an ACTIVE account; when every one is fresh again the
        watch lifts its own pause (never another layer's, never a HALT)."""
        seen = self.last_seen
        if not self.stale_symbols and not self.paused_by_watch and all(seen.get(s) == now for s in self.watched):
            return  # every symbol has its candle of ``now``: nothing is stale, nothing to lift (the common case)
        decision = stale.decide(
            self.last_seen,
            self.watched,
            now,
            self.stale_timeout_ms,
            paused_by_watch=self.paused_by_watch,
            previously_stale=self.stale_symbols,
            candles=self.watched,
        )
        if decision.newly_stale:
            message = stale.stale_message(decision.newly_stale, self.stale_timeout_ms)
            self._alert(AlertSpec("WARNING", "DATA_STALE", message), now)
        own_pause = self.state == PAUSED and self.changed_by == stale.ACTOR
        if decision.action == "pause":
            if self.state == ACTIVE:
                self._set_state(PAUSED, "", now, stale.pause_reason(decision.stale), stale.ACTOR)
                self.paused_by_watch = True
            elif own_pause:
                self.paused_by_watch = True
        elif decision.action == "resume":
            if own_pause:
                self._set_state(ACTIVE, "", now, stale.RESUME_REASON, stale.ACTOR)
                self._alert(AlertSpec("INFO", "DATA_RECOVERED", stale.RECOVERED_MESSAGE), now)
            self.paused_by_watch = False
        self.stale_symbols = decision.stale

    def _alert(self, alert: AlertSpec, now: int) -> None:
        self.alerts.append({"timestamp": now, "level": alert.level, "code": alert.code, "message": alert.message})

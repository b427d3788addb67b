"""The backtest: the live decision code (strategy, the six risk layers, the paper fill model, the book) run
in one process over recorded candles, with the same order of effects as the live pipeline.

Candles are taken in the order they are known, at their close (open time + interval), every candle known at one
time before any decision of that time; that time is the decisions' market time. Per candle, exactly as the live
``trading.on_market_data`` task and its followers do:
1. the symbol's approved orders decided by the candle's open meet their price, that open: the first price after
   their decision
   (``Desk.fill``: the state may cancel them, an entry's slippage may trip the circuit breaker); the paper
   exchange fills them and the book takes the fills;
2. the risk watch: day roll-over at 00:00 UTC, daily drawdown (HALT and close everything), stop-loss exits,
   the circuit breaker's retry;
3. the strategy on the candle; a signal is sized and judged by the desk. Its approved order waits, as every
   order the desk makes, for step 1 of its symbol's next candle.

Nothing here touches the ORM, Redis or the clock: state lives in this object, time is the candles' (close) time.
Identifiers (signal ids, client order ids, trade ids, exit keys) are derived exactly as live, so a replay
through Celery/Redis/PostgreSQL and this loop can be compared order by order.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import repeat
from operator import eq, itemgetter
from pathlib import Path
from typing import Any, NamedTuple

from execution.accounting import AccountingError, Book
from execution.paper import PaperExchange
from execution.trades import ClosedLot, Lot, close_lots, exit_target, open_lot, target_first
from ground import amounts
from ground.amounts import base_of, common_quote, mixed_quotes, plain
from ground.timeutil import DAY_MS, MINUTE_MS
from marketdata import stale
from marketdata.validation import CandleRow, exchange_interval, interval_ms, parse_file_name
from risk.desk import (
    CLOSING_HALTS,
    LEVEL_BY_STATE,
    SUPPRESSED,
    AmendHalt,
    CancelOrder,
    ChangeState,
    Desk,
    DeskState,
    DeskView,
    ExpireOrder,
    FillOrder,
    RaiseAlert,
    RecordRiskEvent,
    RestartDay,
    SignalIn,
    SubmitOrder,
    UpdateBreaker,
    operate,
    state_change_message,
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
    RowsSnapshot,
    fold_waiting,
    snapshot_from_rows,
    stop_price,
)
from risk.operator_commands import OperatorSchedule
from trading.signal_ids import signal_id_for
from trading.strategies import Candle, Strategy

EXIT_KEYED = ("stop_loss", "drawdown_close", "operator_close")  # orders made under an exit key (desk._exit)
KNOWN = itemgetter(4)  # a Bar's known time
STOP_MARGIN = 1 + 1e-9  # float pre-check of a stop: far above float error, so it never misses an exact trigger


class BacktestInputError(ValueError):
    """A file that cannot be backtested (missing, empty, unnamed); the message says which and why."""


class Bar(NamedTuple):
    """One validated candle of one file (a tuple: cheap to build for every candle)."""

    symbol: str
    interval: str
    row: CandleRow  # exact Decimals: prices, fills and the book
    candle: Candle  # the same candle in floats: what the strategy reads
    known: int  # when it is known: its close, open time + interval (the market time of its decisions)


def _entry_time(lot: Lot) -> int:
    return lot.entry_time


def read_bars(
    paths: list[str],
    rejected: dict[str, int] | None = None,
    series: dict[str, stale.CandleSeries] | None = None,
    open_times: dict[tuple[str, str], Any] | None = None,
) -> Iterator[Bar]:
    """Candles of several SYMBOL-INTERVAL.csv files (or Freqtrade's .feather/.parquet), validated like a replay
    and merged by (the time each is known: its close, symbol); ``rejected`` counts the refused rows by reason
    (marketdata/candle_files.py);
    ``series`` gets each symbol's interval and last candle: what the data-stale watch expects (``Backtest.watched``);
    ``open_times`` each (symbol, interval)'s valid open times (a numpy array): what a signals file's rows can meet."""
    from marketdata.candle_files import freqtrade_file_name, iter_merged, read_file  # numpy: not for --help

    files = []
    seen: dict[tuple[str, str], Path] = {}
    for raw in paths:
        path = Path(raw)
        named = parse_file_name(path) or freqtrade_file_name(path)
        if named is None:
            raise BacktestInputError(f"{path}: name it SYMBOL-INTERVAL.csv (e.g. ETH_BTC-5m.csv)")
        if tuple(named) in seen:  # as the replay refuses them: one series would be read twice, interleaved
            raise BacktestInputError(
                f"{seen[tuple(named)]} and {path}: two files replay the same symbol and interval "
                f"({named[0]} {named[1]}); backtest them one after the other"
            )
        seen[tuple(named)] = path
        try:
            exchange_interval(named[1])
        except ValueError as error:
            raise BacktestInputError(f"{path}: {error}") from None
        if not path.is_file():
            raise BacktestInputError(f"{path}: no such file")
        if path.stat().st_size == 0:
            raise BacktestInputError(f"{path}: the file is empty")
        try:
            files.append(read_file(path, *named))
        except (OSError, ValueError) as error:  # unreadable, or not a Freqtrade candle table
            raise BacktestInputError(f"{path}: {error}") from None
    mixed = mixed_quotes(name[0] for name in seen)
    if mixed:
        raise BacktestInputError(f"refused: {mixed}. Backtest each quote currency on its own")
    for file in files if rejected is not None else ():
        for reason, count in file.rejected.items():
            rejected[reason] = rejected.get(reason, 0) + count
    for file in files if open_times is not None else ():
        open_times[(file.symbol, file.interval)] = file.timestamps
    for file in files if series is not None else ():
        if len(file):
            length = interval_ms(file.interval)
            add_series(series, file.symbol, stale.CandleSeries(length, int(file.timestamps.max()) + length))
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
    # An operator's commands (``--operator-commands``), each given at its market time, as a replay gives them.
    operator: OperatorSchedule = field(default_factory=OperatorSchedule)
    desk: Desk = field(init=False)

    def __post_init__(self) -> None:
        engine = RiskEngine(fee_rate=self.exchange.fee_rate, slippage_pct=self.exchange.slippage_pct)
        self.desk = Desk(engine, self.position_size_pct)
        self.book = Book.new(self.capital)
        self.state, self.layer, self.reason = ACTIVE, "", ""  # the trading state, the layer that set it, why
        self.desk_state = DeskState(ACTIVE)  # the same as the desk reads it, with the circuit breaker's retries
        self.day_number: int | None = None
        self.day_start_equity: Decimal | None = None
        self.day_start_f = 0.0
        self.max_drawdown_f = float(self.parameters["MAX_DAILY_DRAWDOWN_PCT"])
        self.stop_loss_pct = self.parameters["STOP_LOSS_PCT"]
        self.sell_factor_f = (1 - float(self.exchange.slippage_pct)) * (1 - float(self.exchange.fee_rate))
        # Float copies of the book, for the pre-checks only (never for a decision or an amount).
        self.cash_f = float(self.capital)
        self.held_f: dict[str, float] = {}
        self.stop_f: dict[str, float] = {}
        self.equity_f: float | None = None  # cash_f + held_f at the last candles; None: to be recomputed
        # The waiting exits as the account counts them (``_account``), in floats: their proceeds in, their quantities
        # off the positions (a waiting entry leaves the equity as it is).
        self.pending_cash_f = 0.0
        self.pending_held_f: dict[str, float] = {}
        self.waiting_sells_f: dict[str, tuple[str, float, float]] = {}  # client order id → symbol, units, proceeds
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
        self.open_group = 0  # how many candles that time had
        self.in_market: list[bool] = []  # per equity-curve point: was anything held
        # The data-stale watch, as a replay runs it (marketdata/stale.py): the symbols found stale at the last check
        # (each symbol's latest candle time is its ``last`` bar's), whether its own pause holds, and who changed the
        # state last.
        self.stale_symbols: tuple[str, ...] = ()
        self.paused_by_watch = False
        self.changed_by = ""
        self.stale_timeout_ms = int(self.parameters["DATA_STALE_TIMEOUT_SEC"]) * 1000
        self.quiet_ms = 0  # the shortest time a watched symbol's data can stay unchanged without going stale (run)

    # --- the loop ---------------------------------------------------------------------------------------
    def run(self, bars: Iterable[Bar], progress: Callable[[int], None] = lambda n: None) -> Result:
        started = time.perf_counter()
        timeout = self.stale_timeout_ms
        self.quiet_ms = min((max(timeout + 1, series.interval_ms) for series in self.watched.values()), default=0)
        count = 0
        group: list[Bar] = []
        now = None
        step = self.step
        for bar in bars:
            if bar[4] != now:  # bar.known
                if group:
                    step(group)
                    progress(len(group))
                    count += len(group)
                group = [bar]
                now = bar[4]
            else:
                group.append(bar)
        if group:
            step(group)
            progress(len(group))
            count += len(group)
        if self.open_point is not None:
            if self.watched:
                self._check_stale(self.open_point)  # as a replay checks once more after its last candle
            if self.pending_orders:  # the data has ended: no order still waiting will get a price
                self._expire({order.symbol: stale.ENDED for order in self.pending_orders}, self.open_point)
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
        """One time: every candle known (closed) at that time is in before any decision (as in the store of a
        replay, where a decision at time T sees all candles known by T), then each candle in (symbol, interval)
        order."""
        now = bars[0][4]  # bar.known
        point = self.open_point
        if point is not None:
            # The previous time's candles are all in: is anyone missing? Not when nothing is stale or paused by the
            # watch and every symbol has its candle of that time (the common case): surely so when that time had a
            # candle of every series seen so far (one strategy each), else asked symbol by symbol.
            if self.watched and (
                self.stale_symbols
                or self.paused_by_watch
                or (self.open_group < len(self.strategies) and not self._all_in(point))
            ):
                self._check_stale(point)
            self._close_point()
            # Between the two times, where the beat would have found data stale (a gap in every file at once):
            # never when every series had its candle at ``point`` and the next time is no further than a candle
            # due after the timeout.
            if self.watched and (now - point > self.quiet_ms or self.open_group < len(self.strategies)):
                self._stale_between(point, now)
        if self.operator:
            self._give_commands(now)
        if (now - 1) // DAY_MS != self.day_number:  # before any fill, as live (``validation.market_day``)
            self._roll_day(now, bars[0].symbol)
        marks, last, history, stops = self.marks, self.last, self.history, self.stop_f
        for bar in bars:
            symbol, _, row, candle, _ = bar
            known = last.get(symbol)
            # At an equal close the shorter interval's candle (the latest open) gives the price, as live
            # (``marketdata.ingest.latest_prices_query``), whichever interval comes first in the step.
            if known is None or known[4] != now or row.timestamp > known[2].timestamp:
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
        if self.paused_by_watch:
            self._check_stale(now, resume_only=True)  # its pause ends on fresh data, before decisions on it
        strategies = self.strategies
        # The watch runs before each symbol's strategy, but only when it can do something: the drawdown
        # pre-check fires (see ``_watch``), a stop may trigger, or the circuit breaker waits for a retry.
        # What it looks at changes only through the watch itself or a decision, so it is re-read after those.
        alarm = self._drawdown_alarm()
        pending = self.pending
        for symbol, interval, row, candle, _ in bars:
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
                signal_id = signal_id_for(symbol, interval, strategy.name, row.timestamp)  # keyed by the candle
                price = Decimal(str(emitted.price))
                self._decide(symbol, emitted.side, price, emitted.confidence, signal_id, now, row.timestamp)
                alarm = self.alarm if self.alarm is not None else self._drawdown_alarm()
        self.open_point, self.open_group = now, len(bars)

    def _roll_day(self, now: int, symbol: str) -> None:
        """The day starts at the equity valued at the last prices before 00:00 UTC (the marks before this time's
        candles), waiting orders counted as the account counts them."""
        self.day_number = (now - 1) // DAY_MS
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
        count as the live account counts PENDING orders (``risk.account_view.account_rows``): an entry's estimated
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

    def _market(self, symbol: str, *, tradable: bool = True) -> MarketSnapshot | RowsSnapshot:
        """The engine's market snapshot from the symbol's recent candles (newest first); its data is as fresh as
        the newest one's close."""
        bar = self.last.get(symbol)
        return snapshot_from_rows(self.history.get(symbol, ()), bar[4] if bar is not None else None, tradable=tradable)

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
        # Of a pause only the circuit breaker's has work of its own (its retry): a data-stale pause leaves the watch
        # what it has when ACTIVE (``Desk.watch_has_work``).
        breaker_waits = self.state == PAUSED and self.layer == "circuit_breaker"
        if not (stop_due or closing or breaker_waits or self._drawdown_alarm()):
            return
        breaker = self.desk_state.breaker_symbol if breaker_waits else None
        view = self._view(symbol, now, self._market(breaker) if breaker else None, with_lots=True)
        self._apply(self.desk.watch(view, self), now)

    # --- 2. the decision --------------------------------------------------------------------------------
    def _decide(
        self, symbol: str, side: str, price: Decimal, confidence: float, signal_id: str, now: int, opened: int
    ) -> None:
        market = self._market(symbol, tradable=not self.whitelist or symbol in self.whitelist)
        signal = SignalIn(signal_id, symbol, side, price, confidence, source_timestamp=opened)
        self._apply(self.desk.decide(self._view(symbol, now, market), signal, self), now)

    def _view(self, symbol: str, now: int, market: MarketSnapshot | None, *, with_lots: bool = False) -> DeskView:
        account = self._account(symbol, now, with_lots=with_lots)
        return DeskView(self.desk_state, account, self.parameters, now, market)

    def _apply(self, effects: list, now: int, fills: dict[str, tuple[Order, Decimal]] | None = None) -> None:
        """Carry out the desk's effects in order, in memory (the live worker writes the same to the database);
        ``fills``: the order a fill step's effects name, by client order id, with its candle's volume."""
        for effect in effects:
            kind = effect.__class__
            if kind is FillOrder:  # the most frequent effects first
                order, volume = fills[effect.client_order_id]
                self._fill(order, effect.price, volume, now)
            elif kind is SubmitOrder:
                self._submit(effect, now)
            elif kind is RecordRiskEvent:
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
                        "requested_quantity": plain(requested) if requested is not None else None,
                        "approved_quantity": plain(effect.approved_quantity),
                        "reason": effect.reason,
                        "details": effect.details,
                    }
                )
            elif kind is RaiseAlert:
                self._alert(AlertSpec(effect.level, effect.code, effect.message), now)
            elif kind is ChangeState:
                self._set_state(effect.new_state, effect.layer, now, effect.reason, effect.actor)
                if effect.breaker_symbol:
                    self.desk_state = self.desk_state._replace(
                        breaker_symbol=effect.breaker_symbol,
                        breaker_tries=0,
                        breaker_checked_ms=now,
                        breaker_price=effect.breaker_price,
                    )
            elif kind is UpdateBreaker:
                self.desk_state = self.desk_state._replace(
                    breaker_tries=effect.tries, breaker_checked_ms=effect.checked_ms, breaker_price=effect.price
                )
            elif kind is CancelOrder:
                order = fills[effect.client_order_id][0]
                order.status, order.reason = "REJECTED", effect.reason
                self._alert_failed(order, now)
                self._flag_stop(order.symbol)  # its exit gone: the stop is armed again
            elif kind is ExpireOrder:
                order = fills[effect.client_order_id][0]
                order.status, order.reason = "EXPIRED", effect.reason
                self._flag_stop(order.symbol)
            elif kind is AmendHalt:
                self.reason, self.layer = effect.reason, effect.layer
                self.desk_state = self.desk_state._replace(layer=effect.layer, reason=effect.reason)
            elif kind is RestartDay:
                self.day_start_equity, self.day_start_f, self.alarm = effect.equity, float(effect.equity), None

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
            quantity = float(order.quantity)
            proceeds = quantity * float(order.requested_price) * self.sell_factor_f
            self.waiting_sells_f[order.client_order_id] = (order.symbol, quantity, proceeds)
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

    def last_attempt_at(self, base: str) -> int | None:
        attempts = self.exit_attempts_by_key.get(base)
        return attempts[-1].timestamp if attempts else None

    def suppressed(self, base: str) -> bool:
        return base in self.suppressed_stops

    def price_time(self, symbol: str, at_ms: int) -> int | None:
        bar = self.last.get(symbol)  # the symbol's latest candle: known at or before every decision of this time
        return bar[4] if bar is not None else None

    # --- an operator's commands -----------------------------------------------------------------------------
    def _give_commands(self, now: int) -> None:
        """The commands given before the candles known at ``now`` (``OperatorSchedule.due``), each at its own time
        through the desk's operator input, as a replay gives them (``risk.state.operator_command``)."""
        quote = common_quote(self.watched or self.last)
        for timed in self.operator.due(now):
            at = timed.timestamp_ms
            effects = operate(self.desk_state, timed.command, lambda at=at: self._account("", at), quote)
            self._apply(effects, at)
            for effect in effects:
                if effect.__class__ is ChangeState:  # the person's now (``risk.state._hand_back_stale_pause``)
                    self.paused_by_watch = False
                    self.stale_symbols = stale.handed_back(effect.new_state, self.stale_symbols)

    # --- 1. the fills -----------------------------------------------------------------------------------
    def _fill_pending(self, symbol: str, row: CandleRow, now: int) -> None:
        """The symbol's orders decided by this candle's open, oldest first, at that open (``Desk.fill``): the first
        price after their decision. One decided later (at this very time, by the watch of another symbol, or on
        another interval of this one) waits for the next candle; the step's market time is ``now``."""
        due = self.pending.pop(symbol)  # in the order they were decided
        opened = row.timestamp
        if due[-1].timestamp > opened:
            first_later = next(i for i, order in enumerate(due) if order.timestamp > opened)
            due, self.pending[symbol] = due[:first_later], due[first_later:]
        for order in due:
            self.pending_orders.remove(order)
            if order.side == "SELL":
                del self.waiting_sells_f[order.client_order_id]
                self._pending_changed()
            effects = self.desk.fill(self.desk_state, self.parameters, order, row.open)
            self._apply(effects, now, {order.client_order_id: (order, row.volume)})

    def _expire(self, without_data: dict[str, str], now: int) -> None:
        """The waiting orders of symbols without data (``stale.without_data``) expire (``Desk.expire``)."""
        waiting = [order for order in self.pending_orders if order.symbol in without_data]
        if waiting:
            for order in waiting:  # each ends now (expired, or a risk exit cancelled to be decided again)
                self._stop_waiting(order)
            fills = {order.client_order_id: (order, None) for order in waiting}
            self._apply(self.desk.expire(waiting, without_data), now, fills)

    def _stop_waiting(self, order: Order) -> None:
        self.pending_orders.remove(order)
        rest = [other for other in self.pending[order.symbol] if other is not order]
        if rest:
            self.pending[order.symbol] = rest
        else:
            del self.pending[order.symbol]
        if order.side == "SELL":
            del self.waiting_sells_f[order.client_order_id]
            self._pending_changed()

    def _pending_changed(self) -> None:
        """The float copies of what the waiting orders add to the account (for the drawdown pre-check): the waiting
        sells' (an entry's cost stays in the equity until it fills: nothing to add), each converted once."""
        cash, held = 0.0, {}
        for symbol, quantity, proceeds in self.waiting_sells_f.values():  # in the order they were decided
            cash += proceeds
            held[symbol] = held.get(symbol, 0.0) - quantity
        self.pending_cash_f, self.pending_held_f = cash, held
        self.equity_f = self.alarm = None

    def _fill(self, order: Order, price: Decimal, volume: Decimal, now: int) -> None:
        fill = self.exchange.fill(
            order.client_order_id, order.side, order.quantity, price, volume, asset=base_of(order.symbol)
        )
        self._settle(order, fill)
        self._flag_stop(order.symbol)
        if order.status in ("FAILED", "REJECTED"):
            self._alert_failed(order, now)

    def _alert_failed(self, order: Order, now: int) -> None:
        """ORDER_FAILED at ``now``, the fill step's time: when the failure is known (not the order's decision)."""
        message = (
            f"{order.symbol} {order.side} {amounts.quantity(order.quantity, base_of(order.symbol))} "
            f"{order.status}: {order.reason}"
        )
        self._alert(AlertSpec("WARNING", "ORDER_FAILED", message), now)

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
        # A stop held back (or left to a closing halt) is armed again by the change: live checks every held symbol at
        # the next watch, on its last price, whichever symbol's candle comes next; so does this one.
        for symbol in self.stop_f:
            self._flag_stop(symbol)
        message = state_change_message(new_state, reason, actor)  # as live stores it (risk.state)
        self._alert(AlertSpec(LEVEL_BY_STATE[new_state], "TRADING_STATE", message), now)
        if new_state != PAUSED:  # the circuit breaker's retries end with its pause
            self.desk_state = DeskState(new_state, self.layer, reason)
        else:
            self.desk_state = self.desk_state._replace(state=new_state, layer=self.layer, reason=reason)

    def _all_in(self, now: int) -> bool:
        """Whether every watched symbol's latest candle is known at ``now``."""
        try:
            return all(map(eq, map(KNOWN, map(self.last.__getitem__, self.watched)), repeat(now)))
        except KeyError:  # a symbol not seen yet
            return False

    def _stale_between(self, point: int, now: int) -> None:
        """The watch at each time between two candle times where the beat would have found data stale
        (``stale.stale_onsets``), each after the operator's commands given before it, as a replay runs it."""
        seen = {symbol: bar[4] for symbol, bar in self.last.items()}
        for onset in stale.stale_onsets(seen, self.watched, point, now, self.stale_timeout_ms, self.watched):
            if self.operator:
                self._give_commands(onset)
            self._check_stale(onset)

    def _check_stale(self, now: int, *, resume_only: bool = False) -> None:
        """The data-stale watch at ``now`` (``risk.data_stale.StaleWatch._act``, in memory): a watched symbol without
        a candle for longer than DATA_STALE_TIMEOUT_SEC pauses an ACTIVE account; when every one is fresh again the
        watch lifts its own pause (never another layer's, never a HALT). ``resume_only``: a time's candles are in,
        before its decisions: only the lifting (``StaleWatch.fresh_data``)."""
        seen = {symbol: bar[4] for symbol, bar in self.last.items()}  # each symbol's latest candle time
        decision = stale.decide(
            seen,
            self.watched,
            now,
            self.stale_timeout_ms,
            paused_by_watch=self.paused_by_watch,
            previously_stale=self.stale_symbols,
            candles=self.watched,
        )
        if resume_only and decision.action != "resume":
            return
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
        if self.pending_orders and not resume_only:
            self._expire(stale.without_data(seen, self.watched, now, self.stale_timeout_ms, self.watched), now)

    def _alert(self, alert: AlertSpec, now: int) -> None:
        self.alerts.append({"timestamp": now, "level": alert.level, "code": alert.code, "message": alert.message})

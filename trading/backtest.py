"""The backtest: the live decision code (strategy, the six risk layers, the paper fill model, the book) run
in one process over recorded candles, with the same order of effects as the live pipeline.

Per candle, exactly as the live ``trading.on_market_data`` task and its followers do:
1. the risk watch: day roll-over at 00:00 UTC, daily drawdown (HALT and close everything), stop-loss exits
   (settled at once), the circuit breaker's retry;
2. the strategy on the candle; a signal is sized and judged by ``RiskEngine.evaluate``;
3. an approved order is filled by the paper exchange at the candle's close and booked.

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
from execution.trades import ClosedLot, Lot, close_lots, open_lot
from marketdata.validation import CandleRow, parse_file_name
from risk.engine import (
    ACTIVE,
    HALTED,
    PAUSED,
    SPREAD_WINDOW,
    AccountState,
    AlertSpec,
    ExitOrder,
    MarketSnapshot,
    ProposedOrder,
    RiskEngine,
    breaker_retry,
    client_order_id_for,
    proposed_quantity,
    round_quantity,
    snapshot_from_rows,
)
from trading.signal_service import signal_id_for
from trading.strategies import Candle, Strategy

MINUTE_MS = 60_000
DAY_MS = 86_400_000
RISK_EXITS = ("stop_loss", "drawdown_close")
STOP_MARGIN = 1 + 1e-9  # float pre-check of a stop: far above float error, so it never misses an exact trigger


class BacktestInputError(ValueError):
    """A file that cannot be backtested (missing, empty, unnamed); the message says which and why."""


class Bar(NamedTuple):
    """One validated candle of one file (a tuple: cheap to build for every candle)."""

    symbol: str
    interval: str
    row: CandleRow  # exact Decimals: prices, fills and the book
    candle: Candle  # the same candle in floats: what the strategy reads


def read_bars(paths: list[str], rejected: dict[str, int] | None = None) -> Iterator[Bar]:
    """Candles of several SYMBOL-INTERVAL.csv files (or Freqtrade's .feather/.parquet), validated like a replay
    and merged by (time, symbol); ``rejected`` counts the refused rows by reason (marketdata/candle_files.py)."""
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
    return iter_merged(files, Bar, Candle)


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
    engine: RiskEngine = field(init=False)

    def __post_init__(self) -> None:
        self.engine = RiskEngine(fee_rate=self.exchange.fee_rate, slippage_pct=self.exchange.slippage_pct)
        self.book = Book.new(self.capital)
        self.state, self.pause_layer = ACTIVE, ""
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
        self.alarm: bool | None = None  # the drawdown pre-check's answer for equity_f and the state; None: to do
        self.stop_dirty: set[str] = set()
        self.marks: dict[str, Decimal] = {}
        self.last: dict[str, Bar] = {}  # each symbol's latest candle: its float close, its volume
        self.history: dict[str, deque[CandleRow]] = {}  # each symbol's last SPREAD_WINDOW + 1 rows, newest first
        self.avg_entry: dict[str, Decimal] = {}  # the book's average entry price per held symbol
        self.strategies: dict[tuple[str, str], Strategy] = {}
        self.orders: list[Order] = []
        self.exit_attempts: dict[str, list[str]] = {}  # exit key base -> statuses of its attempts
        self.entry_times: deque[int] = deque()
        self.last_stop: dict[str, int] = {}
        self.lots: dict[str, list[Lot]] = {}
        self.closed: list[ClosedLot] = []
        self.risk_events: list[dict] = []
        self.alerts: list[dict] = []
        self.equity_curve: list[tuple[int, Decimal]] = []
        self.open_point: int | None = None  # the time of the equity point the next step (or the end) values
        self.in_market: list[bool] = []  # per equity-curve point: was anything held

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
            self._close_point()
        marks, last, history, stops = self.marks, self.last, self.history, self.stop_f
        for bar in bars:
            symbol, _, row, candle = bar
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
        if now // DAY_MS != self.day_number:
            self.day_number = now // DAY_MS
            self.day_start_equity = self._account(bars[0].symbol, now).equity
            self.day_start_f = float(self.day_start_equity)
            self.alarm = None
        strategies = self.strategies
        # The watch runs before each symbol's strategy, but only when it can do something: the drawdown
        # pre-check fires (see ``_watch``), a stop may trigger, or the circuit breaker waits for a retry.
        # What it looks at changes only through the watch itself or a decision, so it is re-read after those.
        alarm = self._drawdown_alarm()
        for symbol, interval, _, candle in bars:
            if alarm or self.stop_dirty or self.state == PAUSED:
                self._watch(symbol, now)
                alarm = self.alarm if self.alarm is not None else self._drawdown_alarm()
            strategy = strategies.get((symbol, interval))
            if strategy is None:
                strategy = strategies[symbol, interval] = self.strategy_factory()
            emitted = strategy.on_candle(candle)
            if emitted is not None:
                signal_id = signal_id_for(symbol, interval, strategy.name, now)
                self._decide(symbol, emitted.side, Decimal(str(emitted.price)), emitted.confidence, signal_id, now)
                alarm = self.alarm if self.alarm is not None else self._drawdown_alarm()
        self.open_point = now

    def _drawdown_alarm(self) -> bool:
        """The float pre-check of the daily drawdown: False only where the exact check cannot trip (the margin
        of 1e-9 is far above float error). Kept in ``alarm`` until the marks, the book, the day or the state
        change (each of those resets it)."""
        alarm = self.alarm
        if alarm is None:
            alarm = False
            if self.day_start_f > 0 and self.state != HALTED:
                equity = self.equity_f
                if equity is None:
                    last, held = self.last, 0.0
                    for s, q in self.held_f.items():  # summed as sum() would, without its generator
                        held += q * last[s].candle.close
                    equity = self.equity_f = self.cash_f + held
                alarm = (self.day_start_f - equity) / self.day_start_f >= self.max_drawdown_f - 1e-9
            self.alarm = alarm
        return alarm

    def _close_point(self) -> None:
        """Value the book once per timestamp, after every candle of that time is in."""
        self.equity_curve.append((self.open_point, self.book.equity(self.marks)))
        self.in_market.append(bool(self.held_f))
        self.open_point = None

    # --- the account as the engine sees it --------------------------------------------------------------
    def _account(self, symbol: str, now: int) -> AccountState:
        entry_times = self.entry_times
        while entry_times and entry_times[0] <= now - MINUTE_MS:
            entry_times.popleft()
        # The engine only looks up prices and entries (of held symbols and ``symbol``): copies of the whole maps
        # (``avg_entry`` has exactly the held symbols) answer as the live queries do.
        return AccountState(
            trading_state=self.state,
            cash=self.book.cash,
            positions={s: h.quantity for s, h in self.book.holdings.items() if h.quantity > 0},
            prices=self.marks.copy(),
            day_start_equity=self.day_start_equity,
            orders_last_minute=len(entry_times),
            last_stop_ms={symbol: self.last_stop[symbol]} if symbol in self.last_stop else {},
            avg_entry=self.avg_entry.copy(),
        )

    def _market(self, symbol: str) -> MarketSnapshot:
        """The engine's market snapshot from the symbol's recent candles (newest first)."""
        return snapshot_from_rows(self.history.get(symbol, ()))

    # --- 1. the watch -----------------------------------------------------------------------------------
    def _watch(self, symbol: str, now: int) -> None:
        """The live watch. Float pre-checks only skip work that cannot trigger (with a margin far above float
        error); whenever a layer might trip, the engine decides on exact Decimals, as live."""
        if self._drawdown_alarm():
            self._watch_drawdown(symbol, now)
            if self.state == HALTED:
                return
        # A stop can only newly trigger where a price moved or a position or its exit changed and the float
        # pre-check then passed (``stop_dirty``, see ``_flag_stop``): every other position was checked with the
        # same numbers before. Re-checked here: a position closed since it was flagged has no stop any more.
        if self.stop_dirty:
            candidates, self.stop_dirty = self.stop_dirty, set()
            stops, last = self.stop_f, self.last
            if stops and any(s in stops and last[s].candle.close <= stops[s] * STOP_MARGIN for s in candidates):
                account = self._account(symbol, now)
                for exit_order in self.engine.stop_loss_exits(account, self.parameters):
                    key = self._exit_key("stop", exit_order.symbol)
                    if key is not None:
                        self._alert(AlertSpec("WARNING", "RISK_LIMIT", f"Stop-loss: {exit_order.reason}"), now)
                        self._submit_exit(key, exit_order, now)
        if self.state == PAUSED and self.pause_layer == "circuit_breaker":
            market = self._market(self.breaker["symbol"])
            step, tries = breaker_retry(self.breaker["tries"], self.breaker["checked"], market, self.parameters, now)
            if step == "resume":
                self._set_state(ACTIVE, "", now)
            elif step == "halt":
                self._set_state(HALTED, "", now)
            elif step == "retry":
                self.breaker.update(tries=tries, checked=now)

    def _watch_drawdown(self, symbol: str, now: int) -> None:
        account = self._account(symbol, now)
        if not self.engine.drawdown_breached(account, self.parameters):
            return
        message = (
            f"Daily drawdown {account.daily_drawdown:.4%} reached the limit "
            f"{self.parameters['MAX_DAILY_DRAWDOWN_PCT']:.2%}. Trading halted."
        )
        self._alert(AlertSpec("CRITICAL", "RISK_LIMIT", message), now)
        self._trip(HALTED, "drawdown", message, now, "")
        self._close_all(account, message, now)

    # --- 2. the decision --------------------------------------------------------------------------------
    def _decide(self, symbol: str, side: str, price: Decimal, confidence: float, signal_id: str, now: int) -> None:
        account = self._account(symbol, now)
        market = self._market(symbol)
        if self.whitelist and symbol not in self.whitelist:
            market = replace(market, tradable=False)
        quantity = proposed_quantity(side, account, symbol, price, self.position_size_pct)
        decision = self.engine.evaluate(
            account, ProposedOrder(symbol, side, quantity, price), market, self.parameters, now
        )
        client_order_id = client_order_id_for(signal_id)
        self.risk_events.append(
            {
                "timestamp": now,
                "symbol": symbol,
                "signal_id": signal_id,
                "decision": decision.action,
                "layer": decision.layer,
                "requested_quantity": str(quantity),
                "approved_quantity": str(decision.quantity),
                "reason": "; ".join(decision.reasons),
                "details": decision.details,
            }
        )
        for alert in decision.alerts:
            self._alert(alert, now)
        if decision.state_change:
            self._trip(decision.state_change, decision.layer, decision.reasons[0], now, symbol)
        if decision.close_positions:
            self._close_all(account, decision.reasons[0], now)
        if not decision.approved:
            return
        purpose = "entry" if side == "BUY" else "exit"
        order = Order(
            client_order_id,
            signal_id,
            symbol,
            side,
            decision.quantity,
            market.price,
            now,
            purpose,
            decision.action,
            list(decision.checks),
        )
        self._execute(order)

    # --- 3. execution -----------------------------------------------------------------------------------
    def _execute(self, order: Order) -> None:
        self.orders.append(order)
        if order.purpose == "entry":
            self.entry_times.append(order.timestamp)
        if self.state == HALTED and order.purpose not in RISK_EXITS:
            order.status, order.reason = "REJECTED", "trading HALTED before execution"
        elif self.state == PAUSED and order.side == "BUY":
            order.status, order.reason = "REJECTED", "trading PAUSED before execution: entries blocked"
        else:
            fill = self.exchange.fill(
                order.client_order_id,
                order.side,
                order.quantity,
                self.marks[order.symbol],
                self.last[order.symbol].row.volume,
            )
            self._settle(order, fill)
            self._flag_stop(order.symbol)
        if order.status in ("FAILED", "REJECTED"):
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
        self._refresh_cache(order.symbol)
        lots = self.lots.setdefault(order.symbol, [])
        if order.side == "BUY":
            lots.append(
                open_lot(order.client_order_id, order.symbol, fill.quantity, fill.price, fill.fee, order.timestamp)
            )
            return
        if order.purpose == "stop_loss":
            self.last_stop[order.symbol] = order.timestamp
        reason = "signal" if order.purpose == "exit" else order.purpose
        closed, remainder = close_lots(
            lots, fill.quantity, fill.price, fill.fee, order.client_order_id, order.timestamp, reason
        )
        self.closed.extend(closed)
        del lots[: len(closed)]
        if remainder is not None:
            lots.insert(0, remainder)

    def _refresh_cache(self, symbol: str) -> None:
        self.cash_f = float(self.book.cash)
        self.equity_f = self.alarm = None
        holding = self.book.holding(symbol)
        if holding.quantity > 0:
            avg_entry = self.avg_entry[symbol] = holding.avg_entry_price
            self.held_f[symbol] = float(holding.quantity)
            self.stop_f[symbol] = float(avg_entry * (1 - self.stop_loss_pct))
        else:
            self.avg_entry.pop(symbol, None)
            self.held_f.pop(symbol, None)
            self.stop_f.pop(symbol, None)

    # --- risk exits and state -----------------------------------------------------------------------------
    def _exit_key(self, kind: str, symbol: str) -> str | None:
        lots = self.lots.get(symbol)
        if not lots:
            return None
        base = f"{kind}:{lots[0].trade_id}"
        attempts = self.exit_attempts.get(base, [])
        if any(status != "FAILED" for status in attempts):
            return None
        return base if not attempts else f"{base}#{len(attempts)}"

    def _submit_exit(self, key: str, exit_order: ExitOrder, now: int) -> None:
        self.risk_events.append(
            {
                "timestamp": now,
                "symbol": exit_order.symbol,
                "signal_id": key,
                "decision": "APPROVE",
                "layer": exit_order.purpose,
                "requested_quantity": str(exit_order.quantity),
                "approved_quantity": str(exit_order.quantity),
                "reason": exit_order.reason,
            }
        )
        order = Order(
            client_order_id_for(key),
            key,
            exit_order.symbol,
            "SELL",
            round_quantity(exit_order.quantity),
            self.marks[exit_order.symbol],
            now,
            exit_order.purpose,
            "APPROVE",
            [exit_order.purpose],
        )
        self._execute(order)
        base = key.split("#", 1)[0]
        self.exit_attempts.setdefault(base, []).append(order.status)

    def _close_all(self, account: AccountState, reason: str, now: int) -> None:
        for exit_order in self.engine.close_all(account, reason):
            key = self._exit_key("ddclose", exit_order.symbol)
            if key is not None:
                self._submit_exit(key, exit_order, now)

    def _trip(self, new_state: str, layer: str, reason: str, now: int, symbol: str) -> None:
        if self.state == HALTED or self.state == new_state:
            return
        self._set_state(new_state, layer, now, reason)
        if layer == "circuit_breaker":
            self.breaker = {"symbol": symbol, "tries": 0, "checked": now}

    def _set_state(self, new_state: str, layer: str, now: int, reason: str = "") -> None:
        self.risk_events.append(
            {
                "timestamp": now,
                "decision": "STATE_CHANGE",
                "layer": layer or "state",
                "reason": f"{self.state} → {new_state}: {reason}",
            }
        )
        self.state, self.pause_layer = new_state, layer if new_state == PAUSED else ""
        self.alarm = None
        if new_state != PAUSED:
            self.breaker = {"symbol": "", "tries": 0, "checked": None}

    def _alert(self, alert: AlertSpec, now: int) -> None:
        self.alerts.append({"timestamp": now, "level": alert.level, "code": alert.code, "message": alert.message})

"""The desk: what the risk manager does on a signal, on a candle and on a person's command, as one pure function of
what is known at decision time, returning the effects to carry out.

``RiskEngine`` judges one proposed order; the desk is the orchestration around it that the live worker and the
backtest used to write twice: sizing the signal, recording the decision, tripping the state, the daily drawdown's
halt and close-out, stop-losses, the retry of a failed or rejected risk exit, the circuit breaker's retry, and
which orders an execution may still carry out in a given trading state.

Nothing here touches the ORM, Redis or the clock. A shell builds a ``DeskView`` (trading state, account, market,
parameters, decision time), passes an ``ExitLedger`` (its store of open trades and earlier exit attempts, asked
only when an exit is due) and carries out the returned effects in order: the live worker in the decision's
transaction (``risk/decision_service.py``), the backtest in memory (``trading/backtest.py``). A person's command
(``operate``) is carried out by ``risk/state.py`` live (admin, API, dashboard, ``manage.py halt``, a replay's
operator-commands file) and by the backtest in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import NamedTuple, Protocol

from ground import amounts

from .engine import (
    ACTIVE,
    HALTED,
    PAUSED,
    AccountState,
    ExitOrder,
    MarketSnapshot,
    ProposedOrder,
    RiskEngine,
    breaker_retry,
    client_order_id_for,
    proposed_quantity,
    round_quantity,
)

# The halts that close every position, by the layer that halted, and the purpose of their closing orders:
# the daily drawdown (SPEC §4 layer 1) and an operator's "halt and close positions".
DRAWDOWN, OPERATOR_CLOSE = "drawdown", "operator_close"
CLOSING_HALTS = {DRAWDOWN: ("drawdown_close", "ddclose"), OPERATOR_CLOSE: ("operator_close", "opclose")}
RETRIED_STATUSES = frozenset({"FAILED", "REJECTED"})  # a risk exit that ended so is tried again
RISK_EXITS = frozenset({"stop_loss", *(purpose for purpose, _ in CLOSING_HALTS.values())})  # keyed by their trade
# An order's quantity is stored with 12 decimals in 30 digits (``ground.fields.MoneyField``): below 10^18 units.
MAX_ORDER_QUANTITY = Decimal("1e18")
SUPPRESSED = "suppressed"  # the risk event's decision-layer pair for a stop-loss that a HALT held back
REASON_MAX = 500  # a trading state's reason is stored in at most this many characters (TradingState.reason)
LEVEL_BY_STATE = {ACTIVE: "INFO", PAUSED: "WARNING", HALTED: "CRITICAL"}  # a TRADING_STATE alert's level
# An operator's commands (admin, API, dashboard, ``manage.py halt``/``release``, an operator-commands file):
# halt, halt and close every position, release.
HALT, HALT_CLOSE, RELEASE = "halt", "halt_close", "release"
OPERATOR_COMMANDS = (HALT, HALT_CLOSE, RELEASE)


def state_change_message(new_state: str, reason: str, actor: str) -> str:
    """The TRADING_STATE alert of a change of the trading state, as every shell stores it."""
    return f"Trading {new_state}: {reason} ({actor})"


class DeskState(NamedTuple):
    """The trading state as the desk reads it."""

    state: str  # ACTIVE / PAUSED / HALTED
    layer: str = ""  # the layer that paused or halted ("" for a person's halt)
    reason: str = ""
    breaker_symbol: str = ""
    breaker_tries: int = 0
    breaker_checked_ms: int | None = None
    breaker_price: Decimal | None = None  # a slippage trip: the price its retry measures the move from


class DeskView(NamedTuple):
    """What is known at decision time."""

    state: DeskState
    account: AccountState
    parameters: Mapping[str, Decimal]
    now: int  # decision time, epoch ms
    market: MarketSnapshot | None = None  # the signal's symbol (a decision), or the breaker's symbol (the watch)


class SignalIn(NamedTuple):
    signal_id: str
    symbol: str
    side: str
    price: Decimal | None  # what the strategy computed it at; None: the market price
    confidence: float
    strategy: str = ""
    source_timestamp: int | None = None


class ExitLedger(Protocol):
    """The shell's store, as the desk asks it when an exit is due."""

    def oldest_open_trade(self, symbol: str) -> str | None:
        """The trade id of the symbol's oldest open trade (None: nothing open)."""

    def exit_attempts(self, base: str) -> list[str]:
        """The statuses of the orders made under an exit key (``base`` or ``base#n``), oldest first."""

    def last_attempt_at(self, base: str) -> int | None:
        """When the last order made under an exit key was decided (None: no attempt)."""

    def suppressed(self, base: str) -> bool:
        """Whether the stop-loss of ``base`` (``stop:<trade id>``) was held back by a halt and said so already."""

    def price_time(self, symbol: str, at_ms: int) -> int | None:
        """When the symbol's last price known at ``at_ms`` became known: its candle's close (None: no price)."""


class OperatorCommand(NamedTuple):
    """A person's command: ``halt``, ``halt_close`` (halt and close every position) or ``release``."""

    command: str
    reason: str
    actor: str


# --- effects, carried out by the shell in the order given -------------------------------------------------
class RecordRiskEvent(NamedTuple):
    decision: str  # APPROVE / TRIM / REJECT
    layer: str
    symbol: str
    signal_id: str
    client_order_id: str
    requested_quantity: Decimal | None
    approved_quantity: Decimal
    reason: str
    details: dict


class RaiseAlert(NamedTuple):
    level: str
    code: str
    message: str
    symbol: str = ""


class ChangeState(NamedTuple):
    new_state: str
    layer: str
    reason: str
    breaker_symbol: str = ""  # a circuit breaker's trip: the symbol whose market it waits for
    actor: str = "risk"  # who changed it: the risk manager, or the person of an operator command
    breaker_price: Decimal | None = None  # a slippage trip: the price that slipped (its retries measure from it)


class AmendHalt(NamedTuple):
    """An operator halt on top of a HALT: the state stays HALTED and keeps both reasons (``reason``); ``layer`` is
    the halt's layer now (a plain halt asked to close becomes ``operator_close``). ``closing``: it closes every
    position from now on; ``still_closing``: it was a closing halt already, and stays one."""

    reason: str
    layer: str
    closing: bool
    still_closing: bool


class RestartDay(NamedTuple):
    """Releasing a drawdown halt: the day's drawdown counts from ``equity``, the equity at the release (was
    ``previous``)."""

    equity: Decimal
    previous: Decimal | None


class UpdateBreaker(NamedTuple):
    tries: int
    checked_ms: int
    price: Decimal | None = None  # a slippage trip: the price of this retry, the next one measures from


class SubmitOrder(NamedTuple):
    client_order_id: str
    signal_id: str
    symbol: str
    side: str
    quantity: Decimal
    price: Decimal  # the market price at the decision (requested price)
    purpose: str  # entry, exit, stop_loss, drawdown_close, operator_close
    decision: str
    checks: list[str]
    stop_loss_pct: Decimal | None = None  # an entry: its lot's stop is its fill price × (1 − this)
    strategy: str = ""
    confidence: float | None = None
    source_timestamp: int | None = None


class FillOrder(NamedTuple):
    """Fill the approved order at ``price``: the first price known after its decision."""

    client_order_id: str
    price: Decimal


class CancelOrder(NamedTuple):
    """The approved order does not go to the market: it ends REJECTED for ``reason``."""

    client_order_id: str
    reason: str


class ExpireOrder(NamedTuple):
    """The approved order can get no price: it ends EXPIRED for ``reason``, and what the account held back for it
    (an entry's cost, an exit's units) is free again."""

    client_order_id: str
    reason: str


class PendingOrder(Protocol):
    """An approved order waiting for its price, as the desk reads it (the live ``Order`` or the backtest's)."""

    @property
    def client_order_id(self) -> str: ...

    @property
    def signal_id(self) -> str: ...

    @property
    def symbol(self) -> str: ...

    @property
    def side(self) -> str: ...

    @property
    def purpose(self) -> str: ...

    @property
    def quantity(self) -> Decimal: ...

    @property
    def requested_price(self) -> Decimal: ...  # the market price at its decision


Effect = (
    RecordRiskEvent
    | RaiseAlert
    | ChangeState
    | AmendHalt
    | RestartDay
    | UpdateBreaker
    | SubmitOrder
    | FillOrder
    | CancelOrder
    | ExpireOrder
)


def blocked_by_state(state: str, layer: str, purpose: str, side: str) -> str:
    """Why an execution may not carry out an order now ("" if it may): a HALT stops every order except, under a
    halt that closes every position (a drawdown halt, an operator's halt-and-close), the sells that close them —
    its own closing orders and exits decided before it, which it would otherwise have to decide again a candle
    later; PAUSED stops entries."""
    if state == HALTED:
        if layer not in CLOSING_HALTS or side != "SELL":
            return "trading HALTED before execution"
    if state == PAUSED and side == "BUY":
        return "trading PAUSED before execution: entries blocked"
    return ""


def slippage_guarded(side: str) -> bool:
    """Whether the slippage circuit breaker (SPEC §4 layer 2) may hold an order back: entries only. Its action is a
    PAUSE, and a PAUSE stops new orders, never an exit (SPEC §4 layer 3, ``blocked_by_state``); a risk exit
    (stop-loss, drawdown or operator close) must be able to close a position in a crash, when the price after its
    decision has moved the most, and a signal's exit reduces what is at risk the same way. So every SELL fills at
    the first price after its decision however far it moved, and trips nothing; the next entry's fill is guarded."""
    return side == "BUY"


def merge_reasons(older: str, newest: str, limit: int = REASON_MAX) -> str:
    """A halt's reasons once another is added: ``older; newest``. Past ``limit`` characters the oldest part goes
    (an ellipsis marks where), so the newest reason always stays visible."""
    merged = f"{older}; {newest}"
    if len(merged) <= limit:
        return merged
    return "…" + merged[len(merged) - limit + 1 :]


def operate(state: DeskState, command: OperatorCommand, valued: Callable[[], AccountState], quote: str) -> list[Effect]:
    """A person's command, the same wherever it is given (admin, API, dashboard, ``manage.py halt``/``release``, an
    operator-commands file in a replay or a backtest). A halt stops every order from now on (``blocked_by_state``);
    ``halt_close`` also closes every position, on the next candles, until the account is flat (``Desk.watch``). A
    halt on top of a halt keeps both reasons; a closing halt stays closing. A release makes trading ACTIVE again;
    releasing a drawdown halt starts the day's drawdown again from the equity at the release: the person has seen
    the day's loss and let trading go on. ``valued``: the account valued now, asked only for that release;
    ``quote``: the account's currency, to say the equity in."""
    if command.command == RELEASE:
        return _release(state, command, valued, quote)
    if command.command not in (HALT, HALT_CLOSE):
        raise ValueError(f"unknown operator command {command.command!r}: one of {', '.join(OPERATOR_COMMANDS)}")
    close = command.command == HALT_CLOSE
    if state.state != HALTED:
        change = ChangeState(HALTED, OPERATOR_CLOSE if close else "", command.reason, actor=command.actor)
        return [change, *(_unpriced(valued()) if close else ())]
    still_closing = state.layer in CLOSING_HALTS
    closing = close and not still_closing
    what = (
        "closing every position"
        if closing
        else "halted already; still closing positions"
        if still_closing
        else "halted already"
    )
    merged = merge_reasons(state.reason, f"then {command.actor}: {command.reason}")
    return [
        AmendHalt(merged, OPERATOR_CLOSE if closing else state.layer, closing, still_closing),
        RaiseAlert("CRITICAL", "TRADING_STATE", f"Trading HALTED ({what}): {command.reason} ({command.actor})"),
        *(_unpriced(valued()) if closing else ()),
    ]


def _unpriced(account: AccountState) -> list[Effect]:
    """A closing halt's word on each held symbol without a price at decision time: its close waits for one."""
    held = sorted(symbol for symbol, quantity in account.positions.items() if quantity > 0)
    return [_waits_for_a_price(symbol) for symbol in held if symbol not in account.prices]


def _waits_for_a_price(symbol: str) -> RaiseAlert:
    return RaiseAlert("CRITICAL", "RISK_LIMIT", f"{symbol}: no price at decision time; its close waits for one", symbol)


def _release(
    state: DeskState, command: OperatorCommand, valued: Callable[[], AccountState], quote: str
) -> list[Effect]:
    if state.state == ACTIVE:
        return []
    reason, effects = command.reason, []
    if state.state == HALTED and state.layer == DRAWDOWN:
        account = valued()
        equity, previous = account.equity, account.day_start_equity
        reason += (
            f"; the daily drawdown restarts from the equity at release {amounts.money(equity, quote, unit=True)} "
            f"(was {amounts.money(previous, quote, unit=True)})"
        )
        effects.append(RestartDay(equity, previous))
    return [*effects, ChangeState(ACTIVE, "", reason, actor=command.actor)]


@dataclass(frozen=True)
class Desk:
    engine: RiskEngine
    position_size_pct: Decimal

    # --- a signal -------------------------------------------------------------------------------------------
    def decide(self, view: DeskView, signal: SignalIn, ledger: ExitLedger) -> list[Effect]:
        account, market, parameters, now = view.account, view.market, view.parameters, view.now
        symbol, side = signal.symbol, signal.side
        price = signal.price if signal.price else market.price
        try:
            quantity = proposed_quantity(side, account, symbol, price, self.position_size_pct)
        except InvalidOperation:  # beyond Decimal's precision once quantized: absurd, but no reason to crash
            quantity = None
        if quantity is None or quantity >= MAX_ORDER_QUANTITY:
            return [self._absurd_size(signal, account.equity, price)]
        proposal = ProposedOrder(symbol, side, quantity, price)
        decision = self.engine.evaluate(account, proposal, market, parameters, now)
        approved = decision.approved
        client_order_id = client_order_id_for(signal.signal_id) if approved else ""  # a rejection makes no order
        effects: list[Effect] = [
            RecordRiskEvent(
                decision.action,
                decision.layer,
                symbol,
                signal.signal_id,
                client_order_id,
                quantity if quantity.is_finite() else None,
                decision.quantity,
                "; ".join(decision.reasons),
                {**decision.details, "checks": list(decision.checks), "confidence": signal.confidence, "side": side},
            )
        ]
        effects += [RaiseAlert(alert.level, alert.code, alert.message, symbol) for alert in decision.alerts]
        if decision.state_change:
            effects += self._trip(view.state, decision.state_change, decision.layer, decision.reasons[0], symbol)
        if decision.close_positions:
            effects += self._close_all(view, DRAWDOWN, decision.reasons[0], ledger, announce=True)
        if approved:
            stop_loss_pct = parameters["STOP_LOSS_PCT"] if side == "BUY" else None
            effects.append(
                SubmitOrder(
                    client_order_id,
                    signal.signal_id,
                    symbol,
                    side,
                    decision.quantity,
                    market.price,
                    "entry" if side == "BUY" else "exit",
                    decision.action,
                    list(decision.checks),
                    stop_loss_pct,
                    signal.strategy,
                    signal.confidence,
                    signal.source_timestamp,
                )
            )
        return effects

    def _absurd_size(self, signal: SignalIn, equity: Decimal, price: Decimal | None) -> RecordRiskEvent:
        """A signal whose size cannot be an order (a price of 0.00000001 on a huge capital): rejected, said why."""
        quote = amounts.quote_of(signal.symbol)
        reason = (
            f"{signal.symbol}: {self.position_size_pct:.2%} of the equity {float(equity):.8g} {quote} at "
            f"{float(price):.8g} {quote} is {float(equity * self.position_size_pct / price):.8g} units, beyond what "
            f"an order can carry (less than {float(MAX_ORDER_QUANTITY):.0e}); signal rejected"
        )
        details = {
            "equity": str(equity),
            "price": str(price),
            "max_quantity": str(MAX_ORDER_QUANTITY),
            "side": signal.side,
        }
        return RecordRiskEvent("REJECT", "size", signal.symbol, signal.signal_id, "", None, Decimal(0), reason, details)

    # --- an approved order at the first price after its decision ----------------------------------------------
    def fill(
        self, state: DeskState, parameters: Mapping[str, Decimal], order: PendingOrder, price: Decimal
    ) -> list[Effect]:
        """An approved order meets the first price known after its decision (replay and backtest: the next candle
        open of its symbol). A trading state that now blocks it cancels it; an entry whose price moved from the
        decision's by more than MAX_SLIPPAGE_PCT trips the circuit breaker (SPEC §4 layer 2: PAUSE, a
        CIRCUIT_BREAKER alert) and is cancelled, before anything is filled; otherwise it fills at that price.
        Exits are exempt from the slippage breaker (``slippage_guarded``)."""
        blocked = blocked_by_state(state.state, state.layer, order.purpose, order.side)
        if blocked:
            return [CancelOrder(order.client_order_id, blocked)]
        if slippage_guarded(order.side):
            decided, limit = order.requested_price, parameters["MAX_SLIPPAGE_PCT"]
            if abs(price - decided) > limit * decided:  # exactly: no rounded division (the share only to say it)
                slippage = abs(price - decided) / decided
                quote = amounts.quote_of(order.symbol)
                message = (
                    f"{order.symbol}: the price {amounts.price(price, quote)} after the decision moved {slippage:.4%} "
                    f"from {amounts.price(decided, quote)} at the decision, beyond MAX_SLIPPAGE_PCT {limit:.2%}; "
                    "circuit breaker"
                )
                details = {
                    "price": str(price),
                    "decision_price": str(decided),
                    "slippage": str(slippage),
                    "side": order.side,
                }
                effects: list[Effect] = [
                    RecordRiskEvent(
                        "REJECT",
                        "circuit_breaker",
                        order.symbol,
                        order.signal_id,
                        order.client_order_id,
                        order.quantity,
                        Decimal(0),
                        message,
                        details,
                    ),
                    RaiseAlert("WARNING", "CIRCUIT_BREAKER", message, order.symbol),
                ]
                effects += self._trip(state, PAUSED, "circuit_breaker", message, order.symbol, price)
                return [*effects, CancelOrder(order.client_order_id, message)]
        return [FillOrder(order.client_order_id, price)]

    # --- an approved order that can get no price --------------------------------------------------------------
    def expire(self, orders: Iterable[PendingOrder], without_data: Mapping[str, str]) -> list[Effect]:
        """The waiting orders of symbols without data at decision time — the data-stale watch's finding, by symbol,
        with why: stale (no candle for longer than DATA_STALE_TIMEOUT_SEC once one was due) or ended (a replay's or
        backtest's data of it is over) — can get no first price after their decision: each EXPIRES, with a WARNING
        ``ORDER_EXPIRED`` alert, and releases what the account held back for it. A risk exit (stop-loss, close) is
        cancelled instead (REJECTED, with the shell's ORDER_FAILED alert): like any rejected risk exit it is decided
        again on a later candle, when its symbol has a price — its position must not stay without its stop."""
        effects: list[Effect] = []
        for order in orders:
            why = without_data.get(order.symbol)
            if why is None:
                continue
            reason = f"no price after its decision: {order.symbol}'s market data {why}"
            if order.purpose in RISK_EXITS:
                effects.append(CancelOrder(order.client_order_id, reason))
                continue
            message = f"{order.side} {amounts.plain(order.quantity)} {order.symbol} EXPIRED: {reason}"
            effects += [
                RaiseAlert("WARNING", "ORDER_EXPIRED", message, order.symbol),
                ExpireOrder(order.client_order_id, reason),
            ]
        return effects

    # --- a candle: the watch ----------------------------------------------------------------------------------
    def watch_has_work(self, view: DeskView) -> bool:
        """Whether ``watch`` may do anything: the shells skip it (and its ledger's lookups) otherwise."""
        state, account, parameters = view.state, view.account, view.parameters
        if state.state == HALTED:
            if state.layer in CLOSING_HALTS:
                return any(quantity > 0 for quantity in account.positions.values())
            return bool(self.engine.stop_loss_exits(account))
        return (
            self.engine.drawdown_breached(account, parameters)
            or bool(self.engine.stop_loss_exits(account))
            or (state.state == PAUSED and state.layer == "circuit_breaker")
        )

    def watch(self, view: DeskView, ledger: ExitLedger, *, only_symbol: str | None = None) -> list[Effect]:
        """One candle's watch: halt and close everything on the daily drawdown; stop-losses; the circuit breaker's
        retry. While a closing halt holds, its closes are retried until the account is flat; while any other
        halt holds, a stop-loss that would have fired is held back and said once per trade.

        ``only_symbol``: a late candle, older than the account's latest order: it may only act on its own
        symbol's position (a stop-loss, a close), whose price belongs to the same moment; valuing the whole
        account at its time would put old prices on positions taken later."""
        state, account, parameters = view.state, view.account, view.parameters
        if only_symbol is not None:
            held = {s: q for s, q in account.positions.items() if s == only_symbol}
            account = replace(account, positions=held, day_start_equity=None)
            view = view._replace(
                account=account, state=state._replace(layer=state.layer if state.state == HALTED else "")
            )
        if state.state == HALTED:
            if state.layer in CLOSING_HALTS:
                return self._close_all(view, state.layer, state.reason, ledger, announce=False)
            return self._suppress_stops(view, ledger)
        if self.engine.drawdown_breached(account, parameters):
            message = (
                f"Daily drawdown {account.daily_drawdown:.4%} reached the limit "
                f"{parameters['MAX_DAILY_DRAWDOWN_PCT']:.2%}. Trading halted."
            )
            effects: list[Effect] = [RaiseAlert("CRITICAL", "RISK_LIMIT", message)]
            effects += self._trip(state, HALTED, DRAWDOWN, message, "")
            return effects + self._close_all(view, DRAWDOWN, message, ledger, announce=True)
        effects = []
        for exit_order in self.engine.stop_loss_exits(account):
            effects += self._exit(view, "stop", exit_order, ledger, f"Stop-loss: {exit_order.reason}")
        if view.state.state == PAUSED and view.state.layer == "circuit_breaker":
            effects += self._retry_breaker(view)
        return effects

    # --- pieces -----------------------------------------------------------------------------------------------
    def _trip(
        self, state: DeskState, new_state: str, layer: str, reason: str, symbol: str, price: Decimal | None = None
    ) -> list[Effect]:
        """``price``: a slippage trip's price, which its retries measure the symbol's move from."""
        if state.state == HALTED or state.state == new_state:
            return []
        breaker = layer == "circuit_breaker"
        return [
            ChangeState(new_state, layer, reason, symbol if breaker else "", breaker_price=price if breaker else None)
        ]

    def _retry_breaker(self, view: DeskView) -> list[Effect]:
        state = view.state
        market = view.market if view.market is not None else MarketSnapshot(price=None)
        step, tries = breaker_retry(
            state.breaker_tries, state.breaker_checked_ms, market, view.parameters, view.now, state.breaker_price
        )
        if step == "resume":
            return [ChangeState(ACTIVE, "", f"circuit breaker: {state.breaker_symbol} normal again")]
        if step == "halt":
            reason = f"circuit breaker: {state.breaker_symbol} still anomalous after {tries} retries"
            return [ChangeState(HALTED, "circuit_breaker", reason)]
        if step == "retry":  # a slippage trip's next retry measures the move from this price
            return [UpdateBreaker(tries, view.now, market.price if state.breaker_price is not None else None)]
        return []

    def _close_all(self, view: DeskView, layer: str, reason: str, ledger: ExitLedger, *, announce: bool):
        """Close every position for a closing halt. A symbol with no price at decision time cannot be valued or
        sold: its close waits for a price (said when the halt happens)."""
        purpose, kind = CLOSING_HALTS[layer]
        account = view.account
        effects: list[Effect] = []
        for exit_order in self.engine.close_all(account, reason):
            if exit_order.symbol not in account.prices:
                if announce:
                    effects.append(_waits_for_a_price(exit_order.symbol))
                continue
            effects += self._exit(view, kind, replace(exit_order, purpose=purpose), ledger)
        return effects

    def _exit(
        self, view: DeskView, kind: str, exit_order: ExitOrder, ledger: ExitLedger, announcement: str = ""
    ) -> list[Effect]:
        """One risk exit, keyed by its trade (``kind:trade_id[#attempt]``): a stop-loss by the lot it sells, a close
        of the whole position by the symbol's oldest open trade. One exit per trade, tried again under a new key
        after a FAILED or REJECTED attempt, with a CRITICAL alert."""
        trade = exit_order.trade_id or ledger.oldest_open_trade(exit_order.symbol)
        if trade is None:
            return []
        base = f"{kind}:{trade}"
        attempts = ledger.exit_attempts(base)
        if any(status not in RETRIED_STATUSES for status in attempts):
            return []
        key = base if not attempts else f"{base}#{len(attempts)}"
        symbol, quantity, now = exit_order.symbol, exit_order.quantity, view.now
        known = ledger.price_time(symbol, now)
        if attempts and (known is None or known <= (ledger.last_attempt_at(base) or 0)):
            return []  # no price newer than the one the failed attempt used: decided again when one comes
        effects: list[Effect] = []
        if announcement:
            effects.append(RaiseAlert("WARNING", "RISK_LIMIT", announcement, symbol))
        if attempts:
            message = (
                f"{symbol}: {exit_order.purpose} exit tried again (attempt {len(attempts) + 1}); "
                f"the last attempt was {attempts[-1]}"
            )
            effects.append(RaiseAlert("CRITICAL", "RISK_LIMIT", message, symbol))
        client_order_id = client_order_id_for(key)
        price = view.account.prices[symbol]
        details = _price_details(price, known, now)
        effects.append(
            RecordRiskEvent(
                "APPROVE",
                exit_order.purpose,
                symbol,
                key,
                client_order_id,
                quantity,
                quantity,
                exit_order.reason,
                details,
            )
        )
        effects.append(
            SubmitOrder(
                client_order_id,
                key,
                symbol,
                "SELL",
                round_quantity(quantity),
                price,
                exit_order.purpose,
                "APPROVE",
                [exit_order.purpose],
                source_timestamp=now,
            )
        )
        return effects

    def _suppress_stops(self, view: DeskView, ledger: ExitLedger) -> list[Effect]:
        """A HALT stops every order, stop-losses included: each stop that would fire is said once per trade."""
        effects: list[Effect] = []
        for exit_order in self.engine.stop_loss_exits(view.account):
            trade = exit_order.trade_id
            if trade is None or ledger.suppressed(f"stop:{trade}"):
                continue
            message = f"stop-loss suppressed while HALTED: {exit_order.reason}"
            effects.append(RaiseAlert("CRITICAL", "RISK_LIMIT", message, exit_order.symbol))
            effects.append(
                RecordRiskEvent(
                    "REJECT",
                    SUPPRESSED,
                    exit_order.symbol,
                    f"stop:{trade}",
                    "",
                    exit_order.quantity,
                    Decimal(0),
                    message,
                    {},
                )
            )
        return effects


def _price_details(price: Decimal, known_ms: int | None, now: int) -> dict:
    """What a risk exit was valued at: the symbol's last known price, when it became known and how old it was at the
    decision (a close after an outage sells at a price that may be minutes old: the risk event says so)."""
    details: dict = {"price": amounts.plain(price)}  # exact, the same whatever places the store keeps
    if known_ms is not None:
        details.update(price_time=known_ms, price_age_ms=now - known_ms)
    return details

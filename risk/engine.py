"""The risk engine: pure functions of (account state, proposed order, market, parameters, now) → decisions.

No ORM, Redis or clock in here; the Celery tasks and the backtest load the
snapshot, call the engine and persist what it returns. Layers run in SPEC §4's
priority order and the first that rejects decides:

1. daily drawdown → HALT and close every position (CRITICAL)
2. market anomaly (slippage / spread) → circuit breaker PAUSE (WARNING)
3. data stale → no new entries
4. total exposure → entries blocked at the limit (INFO); CRITICAL above 80 % of it
5. single position → entry trimmed to the limit (WARNING)
6. stop-loss per trade → one automatic exit (``stop_loss_exits``)

plus the order throttle, the per-symbol cool-down after a stop-loss and the exchange's minimum order value (an
entry trimmed below it is not placed, as the live exchange would refuse it). Exits that reduce a position pass
every layer except HALTED.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_FLOOR, Decimal
from typing import NamedTuple, Protocol

from ground import amounts
from ground.timeutil import MINUTE_MS

QUANTITY_STEP = Decimal("0.00000001")
STOP_STEP = Decimal("0.000000000001")  # prices are stored to 12 places
APPROVE, TRIM, REJECT = "APPROVE", "TRIM", "REJECT"
ACTIVE, PAUSED, HALTED = "ACTIVE", "PAUSED", "HALTED"
EXPOSURE_ALERT_SHARE = Decimal("0.8")
ZERO = Decimal(0)  # made once: what an account holds of a symbol it has none of, many times per decision
# The minimum order value per quote currency (its markets' limits.cost.min): paper entries below it are not placed,
# as live ones are refused (execution/live.py checks the exchange's own figure before sending). MEXC spot: 5 USDT /
# 5 USDC. A coin-quoted market gets a fixed figure in its quote, the exchanges' usual one (Binance's ETHBTC cost.min
# is 0.0001 BTC: about 5 USDT at 50,000 USDT a BTC) and the same ≈ 5 USDT for ETH (at 2,500 USDT an ETH), so a
# backtest or a replay of a 2018 file decides as today's market would, with no price of the quote in USDT needed.
MIN_NOTIONAL = {"USDT": Decimal("5"), "USDC": Decimal("5"), "BTC": Decimal("0.0001"), "ETH": Decimal("0.002")}


class cached_property:  # functools.cached_property without its lock (Python 3.11 locks every first access)
    """Computed on first access and stored in the instance ``__dict__``, which then shadows this descriptor."""

    def __init__(self, func) -> None:
        self.func = func
        self.name = func.__name__
        self.__doc__ = func.__doc__

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        value = instance.__dict__[self.name] = self.func(instance)
        return value


class ProposedOrder(NamedTuple):  # immutable; a tuple: one per signal, ~4× cheaper to build than a frozen dataclass
    symbol: str
    side: str  # BUY or SELL
    quantity: Decimal
    price: Decimal  # the price the signal was computed at (what the order is sized at)


@dataclass(frozen=True)
class MarketSnapshot:
    """What the market looks like for the order's symbol at decision time."""

    price: Decimal | None  # last price at or before now
    spread_pct: Decimal | None = None  # current spread (or candle range) as a share of the price
    avg_spread_pct: Decimal | None = None  # its recent average
    last_data_ms: int | None = None  # time of the last market_data for the symbol
    tradable: bool = True  # on the screener's watch list (or replayed/simulated) and not excluded by the whitelist


class OpenLot(Protocol):
    """What the engine reads of an open lot (one entry's trade): the live store's ``LotStop`` or the backtest's own
    ``execution.trades.Lot``, as they are."""

    @property
    def trade_id(self) -> str: ...

    @property
    def quantity(self) -> Decimal: ...

    @property
    def stop(self) -> Decimal: ...  # its stop-loss: entry price × (1 − STOP_LOSS_PCT), fixed at the fill


class LotStop(NamedTuple):
    """An open lot as the live store reads it (``risk.account_view.open_lots``)."""

    trade_id: str
    quantity: Decimal
    stop: Decimal


@dataclass(frozen=True)
class AccountState:
    trading_state: str  # ACTIVE / PAUSED / HALTED
    cash: Decimal
    positions: Mapping[str, Decimal]  # symbol -> quantity held
    prices: Mapping[str, Decimal]  # symbol -> last price
    day_start_equity: Decimal | None = None
    orders_last_minute: int = 0
    last_stop_ms: Mapping[str, int] = field(default_factory=dict)  # symbol -> time of its last stop-loss exit
    # symbol -> its open lots (trades), oldest first, each with its own stop: read where stop-losses are checked
    lots: Mapping[str, Sequence[OpenLot]] = field(default_factory=dict)
    # Proceeds (after costs) of approved sells not yet executed: their quantity has left ``positions`` so that
    # nothing is sold twice, and this keeps it in the equity (not in the cash that new entries may spend).
    receivable: Decimal = Decimal(0)
    # Quantities of approved entries not yet executed, by symbol: not held (never sold, never stopped), but being
    # entered, so they count in the exposure and the position limit at the market price; their estimated cost has
    # left the cash and stays in the equity as it is (``entering_cost``) until they fill: a price move before the
    # fill is not a gain or loss of the account (an entry the move cancels never happened).
    entering: Mapping[str, Decimal] = field(default_factory=dict)
    entering_cost: Decimal = Decimal(0)

    def position_value(self, symbol: str) -> Decimal:
        quantity = self.positions.get(symbol, ZERO) + self.entering.get(symbol, ZERO)
        return quantity * self.prices.get(symbol, ZERO)

    @cached_property
    def held_value(self) -> Decimal:
        total, prices = ZERO, self.prices  # summed in the positions' order, as sum(..., Decimal(0)) would
        for symbol, quantity in self.positions.items():
            total += quantity * prices.get(symbol, ZERO)
        return total

    @cached_property
    def exposure(self) -> Decimal:
        total, prices = self.held_value, self.prices
        for symbol, quantity in self.entering.items():
            total += quantity * prices.get(symbol, ZERO)
        return total

    @cached_property
    def equity(self) -> Decimal:
        return self.cash + self.receivable + self.entering_cost + self.held_value

    @cached_property
    def daily_drawdown(self) -> Decimal:
        """Loss since the day's start as a share of the day's starting equity (0 when up or unknown)."""
        start = self.day_start_equity
        if not start or start <= 0:
            return ZERO
        return max(ZERO, (start - self.equity) / start)


class AlertSpec(NamedTuple):  # immutable; a tuple: cheaper to build than a frozen dataclass (as ProposedOrder)
    level: str
    code: str
    message: str


class Decision(NamedTuple):  # immutable; a tuple: one per signal, cheaper to build than a frozen dataclass
    action: str  # APPROVE / TRIM / REJECT
    quantity: Decimal
    layer: str  # the layer that decided
    reasons: tuple[str, ...]
    checks: tuple[str, ...]  # layers the order passed
    details: dict  # what the decision saw, as exact strings (no default: a shared dict would leak between them)
    alerts: tuple[AlertSpec, ...] = ()
    state_change: str | None = None  # PAUSED or HALTED when a layer trips
    close_positions: bool = False  # daily drawdown: the risk manager closes everything

    @property
    def approved(self) -> bool:
        return self.action in (APPROVE, TRIM)


@dataclass(frozen=True)
class ExitOrder:
    symbol: str
    quantity: Decimal
    purpose: str  # stop_loss, drawdown_close or operator_close
    reason: str
    trade_id: str | None = None  # a stop-loss sells its own lot; a close sells the whole position


def round_quantity(quantity: Decimal) -> Decimal:
    return quantity.quantize(QUANTITY_STEP, rounding=ROUND_DOWN)


def _finite_positive(value: Decimal | None) -> bool:
    return value is not None and value.is_finite() and value > 0


class RiskEngine:
    def __init__(
        self,
        fee_rate: Decimal = Decimal("0.001"),
        slippage_pct: Decimal = Decimal("0.0005"),
        min_notional: Mapping[str, Decimal] = MIN_NOTIONAL,
    ) -> None:
        self.fee_rate = fee_rate
        self.slippage_pct = slippage_pct
        self.min_notional = min_notional  # quote currency → the smallest order value an entry may have

    # --- the decision on a proposed order -------------------------------------------------------------
    def evaluate(
        self,
        state: AccountState,
        order: ProposedOrder,
        market: MarketSnapshot,
        parameters: Mapping[str, Decimal],
        now: int,
    ) -> Decision:
        checks: list[str] = []
        equity = state.equity
        position_value = state.position_value(order.symbol)
        details = {
            "equity": amounts.plain(equity),
            "cash": amounts.plain(state.cash),
            "exposure": amounts.plain(state.exposure),
            "position_value": amounts.plain(position_value),
            "daily_drawdown": amounts.plain(state.daily_drawdown),
            "price": amounts.plain(market.price),
            "signal_price": amounts.plain(order.price),
            "requested_quantity": amounts.plain(order.quantity),
            "now": now,
        }

        def reject(layer: str, reason: str, *alerts: AlertSpec, state_change=None, close=False) -> Decision:
            return Decision(REJECT, ZERO, layer, (reason,), tuple(checks), details, alerts, state_change, close)

        if order.side not in ("BUY", "SELL"):
            return reject("input", f"unknown side {order.side!r}")
        if not _finite_positive(order.price):
            return reject("input", f"invalid signal price {order.price}")
        if not _finite_positive(market.price):
            return reject("input", f"no valid market price for {order.symbol} (unknown symbol or no data)")
        is_exit = order.side == "SELL"
        quote, base = amounts.quote_of(order.symbol), amounts.base_of(order.symbol)

        def worth(value: Decimal) -> str:  # an amount of money, as the reasons say it
            return amounts.money(value, quote, unit=True)

        def held_as(value: Decimal) -> str:  # a quantity of the symbol's base asset
            return amounts.quantity(value, base)

        # Layer 1: daily drawdown.
        max_drawdown = parameters["MAX_DAILY_DRAWDOWN_PCT"]
        drawdown = state.daily_drawdown
        if state.trading_state != HALTED and drawdown >= max_drawdown:
            message = (
                f"Daily drawdown {drawdown:.4%} reached the limit {max_drawdown:.2%} "
                f"(day start equity {worth(state.day_start_equity)}, equity {worth(equity)}). Trading halted."
            )
            return reject(
                "drawdown", message, AlertSpec("CRITICAL", "RISK_LIMIT", message), state_change=HALTED, close=True
            )
        if state.trading_state == HALTED:
            return reject("state", "trading is HALTED: nothing executes until a person releases it")
        checks.append("drawdown")

        if is_exit:
            held = state.positions.get(order.symbol, ZERO)
            if held <= 0:
                return reject("position", f"no {order.symbol} position to sell (spot only, no shorting)")
            if not order.quantity.is_finite() or order.quantity <= 0:
                return reject("input", f"invalid quantity {order.quantity}")
            quantity = min(order.quantity, held)
            checks.append("position")
            action = TRIM if quantity < order.quantity else APPROVE
            reason = f"exit of {held_as(quantity)} (held {held_as(held)})"
            return Decision(action, quantity, "position", (reason,), tuple(checks), details)

        if not order.quantity.is_finite() or order.quantity <= 0:
            return reject("input", f"invalid quantity {order.quantity}")
        if not market.tradable:
            return reject("watchlist", f"{order.symbol} is not on the watch list: no new entries (exits still go)")

        # Layer 2: market anomaly circuit breaker.
        slippage = abs(market.price - order.price) / order.price
        details["expected_slippage"] = amounts.plain(slippage)
        if slippage > parameters["MAX_SLIPPAGE_PCT"]:
            message = (
                f"{order.symbol}: expected slippage {slippage:.4%} against the signal price "
                f"{amounts.price(order.price, quote)} "
                f"exceeds MAX_SLIPPAGE_PCT {parameters['MAX_SLIPPAGE_PCT']:.2%}; circuit breaker"
            )
            return reject(
                "circuit_breaker", message, AlertSpec("WARNING", "CIRCUIT_BREAKER", message), state_change=PAUSED
            )
        spread, avg_spread = market.spread_pct, market.avg_spread_pct  # each read once (computed on first read)
        if _finite_positive(avg_spread) and spread is not None:
            limit = parameters["MAX_SPREAD_MULTIPLIER"] * avg_spread
            details["spread_pct"] = amounts.plain(spread)
            details["avg_spread_pct"] = amounts.plain(avg_spread)
            if spread > limit:
                multiplier = amounts.plain(parameters["MAX_SPREAD_MULTIPLIER"])  # "5", as stored or not ("5.000")
                message = (
                    f"{order.symbol}: spread {spread:.4%} exceeds {multiplier} × "
                    f"the recent average {avg_spread:.4%}; circuit breaker"
                )
                return reject(
                    "circuit_breaker", message, AlertSpec("WARNING", "CIRCUIT_BREAKER", message), state_change=PAUSED
                )
        checks.append("circuit_breaker")
        if state.trading_state == PAUSED:
            return reject("state", "trading is PAUSED: only exits that reduce a position go through")

        # Layer 3: data stale.
        timeout_ms = int(parameters["DATA_STALE_TIMEOUT_SEC"]) * 1000
        if market.last_data_ms is None or now - market.last_data_ms > timeout_ms:
            age = "never" if market.last_data_ms is None else f"{(now - market.last_data_ms) / 1000:.1f}s ago"
            return reject("data_stale", f"{order.symbol}: last market data {age}, limit {timeout_ms // 1000}s")
        checks.append("data_stale")

        # Throttle and cool-down.
        if state.orders_last_minute >= int(parameters["MAX_ORDERS_PER_MINUTE"]):
            return reject(
                "throttle",
                f"{amounts.counted(state.orders_last_minute, 'order')} in the last minute ≥ MAX_ORDERS_PER_MINUTE "
                f"{int(parameters['MAX_ORDERS_PER_MINUTE'])}",
            )
        last_stop = state.last_stop_ms.get(order.symbol)
        cooldown_ms = int(parameters["COOLDOWN_AFTER_STOP_MIN"]) * MINUTE_MS
        if last_stop is not None and now - last_stop < cooldown_ms:
            return reject(
                "cooldown",
                f"{order.symbol} is cooling down after a stop-loss: {(now - last_stop) / MINUTE_MS:.1f} of "
                f"{int(parameters['COOLDOWN_AFTER_STOP_MIN'])} minutes passed",
            )
        checks.append("throttle")

        if equity <= 0:
            return reject("input", f"equity is {worth(equity)}: no new entries")

        # Layer 4: total exposure.
        max_exposure = parameters["MAX_EXPOSURE_PCT"] * equity
        exposure = state.exposure
        if exposure >= max_exposure:
            message = (
                f"total exposure {worth(exposure)} ≥ limit {worth(max_exposure)} "
                f"({parameters['MAX_EXPOSURE_PCT']:.2%} of equity {worth(equity)}): "
                "new entries blocked"
            )
            return reject("exposure", message, AlertSpec("INFO", "RISK_LIMIT", f"{order.symbol}: {message}"))
        checks.append("exposure")

        # Layer 5: single position (bounded too by the room under the exposure limit and by cash).
        unit_cost = market.price * (1 + self.slippage_pct) * (1 + self.fee_rate)
        position_limit = parameters["MAX_POSITION_PCT"] * equity
        limits = {
            "position": (position_limit - position_value) / market.price,
            "exposure": (max_exposure - exposure) / market.price,
            "cash": state.cash / unit_cost,
        }
        binding = min(limits, key=limits.__getitem__)
        rounded = {name: round_quantity(value) for name, value in limits.items()}  # each quantized once
        room = rounded[binding]
        allowed = min(order.quantity, room) if room > 0 else ZERO
        details.update(
            max_quantity_position=amounts.plain(rounded["position"]),
            max_quantity_exposure=amounts.plain(rounded["exposure"]),
            max_quantity_cash=amounts.plain(rounded["cash"]),
        )
        if allowed <= 0:
            article = "an" if order.symbol[:1] in "AEIOU" else "a"  # an ETH_BTC entry, a BTC_USDT entry
            return reject(binding, f"no room for {article} {order.symbol} entry: the {binding} limit leaves nothing")
        minimum = self.min_notional.get(quote)
        if minimum and allowed * market.price < minimum:
            return reject(
                "min_notional",
                f"{order.symbol} entry of {held_as(allowed)} (≈ {worth(allowed * market.price)}, "
                f"after the {binding} limit) is below the minimum order value {worth(minimum)}: "
                "not placed",
            )
        checks.append("position")

        alerts: list[AlertSpec] = []
        exposure_after = exposure + allowed * market.price
        if exposure_after > EXPOSURE_ALERT_SHARE * max_exposure:
            alerts.append(
                AlertSpec(
                    "CRITICAL",
                    "RISK_LIMIT",
                    f"Exposure {worth(exposure_after)} above 80 % of its limit {worth(max_exposure)}",
                )
            )
        if allowed < order.quantity:
            reason = (
                f"trimmed {held_as(order.quantity)} → {held_as(allowed)} by the {binding} limit "
                f"(MAX_POSITION_PCT {parameters['MAX_POSITION_PCT']:.2%} of equity {worth(equity)}"
                f" = {worth(position_limit)}, held value {worth(position_value)})"
            )
            alerts.append(AlertSpec("WARNING", "RISK_LIMIT", f"{order.symbol} entry {reason}"))
            return Decision(TRIM, allowed, binding, (reason,), tuple(checks), details, tuple(alerts))
        reason = f"approved {held_as(allowed)} at {amounts.price(market.price, quote)}"
        return Decision(APPROVE, allowed, "position", (reason,), tuple(checks), details, tuple(alerts))

    # --- what the market alone can trigger ------------------------------------------------------------
    def drawdown_breached(self, state: AccountState, parameters: Mapping[str, Decimal]) -> bool:
        return state.trading_state != HALTED and state.daily_drawdown >= parameters["MAX_DAILY_DRAWDOWN_PCT"]

    def close_all(self, state: AccountState, reason: str) -> list[ExitOrder]:
        return [
            ExitOrder(symbol, quantity, "drawdown_close", reason)
            for symbol, quantity in sorted(state.positions.items())
            if quantity > 0
        ]

    def stop_loss_exits(self, state: AccountState) -> list[ExitOrder]:
        """One exit per open lot whose stop its symbol's last price has reached (SPEC §4 layer 6: per trade), for
        that lot's quantity (never more than is held)."""
        exits = []
        for symbol, lots in sorted(state.lots.items()):
            held, price = state.positions.get(symbol, ZERO), state.prices.get(symbol)
            if not _finite_positive(price):
                continue
            for lot in lots:
                if held <= 0:
                    break
                if price <= lot.stop:
                    quantity = min(lot.quantity, held)
                    held -= quantity
                    quote = amounts.quote_of(symbol)
                    reason = (
                        f"{symbol} at {amounts.price(price, quote)} is at or below the stop "
                        f"{amounts.price(lot.stop, quote, rounding=ROUND_FLOOR)} of trade {lot.trade_id}"
                    )
                    exits.append(ExitOrder(symbol, quantity, "stop_loss", reason, lot.trade_id))
        return exits


# --- pure pieces the live shell and the backtest share ---------------------------------------------------
SPREAD_WINDOW = 20
BREAKER_RETRY_MS = 60_000
BREAKER_MAX_TRIES = 10


class Waiting(NamedTuple):
    """Approved orders not yet executed, folded into the account (``fold_waiting``)."""

    quantities: dict[str, Decimal]  # held, less what waiting SELLs will sell
    cash: Decimal  # less what waiting BUYs are estimated to cost
    receivable: Decimal  # what waiting SELLs will bring in
    entering: dict[str, Decimal]  # what waiting BUYs will buy, by symbol
    entering_cost: Decimal  # their estimated cost (still the account's)


def fold_waiting(held: Mapping[str, Decimal], cash: Decimal, orders, slippage: Decimal, fee: Decimal) -> Waiting:
    """The account with its approved, not yet executed orders (newest first; each with ``symbol``, ``side``,
    ``quantity``, ``requested_price``) counted as the live store and the backtest both count them: two decisions in
    a row must not spend the same cash nor sell the same units. A waiting BUY is not held (an exit is never sized
    on units that may not arrive) but is being entered: it counts in the exposure, and its cost stays in the
    equity, as a waiting SELL's proceeds do."""
    quantities, receivable, entering, entering_cost = dict(held), ZERO, {}, ZERO
    for order in orders:
        symbol, quantity, price = order.symbol, order.quantity, order.requested_price
        if order.side == "BUY":
            cost = quantity * price * (1 + slippage) * (1 + fee)
            cash -= cost
            entering_cost += cost
            entering[symbol] = entering.get(symbol, ZERO) + quantity
        else:
            quantities[symbol] = quantities.get(symbol, ZERO) - quantity
            receivable += quantity * price * (1 - slippage) * (1 - fee)
    return Waiting(quantities, cash, receivable, entering, entering_cost)


def stop_price(entry_price: Decimal, stop_loss_pct: Decimal) -> Decimal:
    """A lot's stop-loss: its entry (fill) price × (1 − STOP_LOSS_PCT), to the stored precision, rounded down: a
    long's stop must stay below its entry, and rounding to nearest put a 1e-11 entry's stop (0.98e-11) on the entry
    itself (1.0e-11), firing at once."""
    return (entry_price * (1 - stop_loss_pct)).quantize(STOP_STEP, rounding=ROUND_FLOOR)


def client_order_id_for(key: str) -> str:
    """Deterministic, at most 32 characters (MEXC's limit for client order ids)."""
    return "cdb" + hashlib.sha256(key.encode()).hexdigest()[:29]


def proposed_quantity(side: str, state: AccountState, symbol: str, price: Decimal | None, size_pct: Decimal) -> Decimal:
    """What a signal asks for before risk trims it: the whole holding to exit, ``size_pct`` of equity to enter."""
    if side == "SELL":
        return state.positions.get(symbol, ZERO)
    if not _finite_positive(price) or state.equity <= 0:
        return ZERO
    return round_quantity(state.equity * size_pct / price)


def snapshot_from_candles(rows: list[tuple[int, Decimal, Decimal, Decimal]]) -> MarketSnapshot:
    """Market snapshot from the symbol's last ``SPREAD_WINDOW + 1`` candles, newest first: (known at, high, low,
    close); the data is as fresh as the newest candle's close (its known time).

    The candle range stands in for the spread; its average over the previous candles is the baseline.
    """
    if not rows:
        return MarketSnapshot(price=None)
    spreads = [(high - low) / close for _, high, low, close in rows if close > 0]
    return _snapshot(rows[0][3], rows[0][0], spreads)


def snapshot_from_rows(rows: Sequence, known_ms: int, *, tradable: bool = True) -> MarketSnapshot | RowsSnapshot:
    """:func:`snapshot_from_candles` from candle objects (``timestamp``, ``high``, ``low``, ``close``: the
    backtest's validated rows), newest first, without building the tuples; ``known_ms``: when the newest one closed.
    Its spreads are computed when first read (``RowsSnapshot``)."""
    if not rows:
        return MarketSnapshot(None, tradable=tradable)
    return RowsSnapshot(rows[0].close, known_ms, tradable, tuple(rows))


class RowsSnapshot:
    """A ``MarketSnapshot`` (the same attributes, read-only) of the backtest's rows whose spread and average spread
    are computed on first read, exactly as ``snapshot_from_candles`` computes them: an exit's decision (half of the
    decisions) never reads them, since the spread check guards entries only. Each row's spread is divided afresh:
    a symbol's entries are mostly further apart than the window, so a memo of rows' spreads kept from one snapshot
    to the next cost more lookups than the divisions it saved (one row in five was in it)."""

    __slots__ = ("price", "last_data_ms", "tradable", "_rows", "_full")

    def __init__(self, price: Decimal, last_data_ms: int, tradable: bool, rows: tuple) -> None:
        self.price, self.last_data_ms, self.tradable = price, last_data_ms, tradable
        self._rows, self._full = rows, None

    @property
    def spread_pct(self) -> Decimal | None:
        return self._computed().spread_pct

    @property
    def avg_spread_pct(self) -> Decimal | None:
        return self._computed().avg_spread_pct

    def _computed(self) -> MarketSnapshot:
        full = self._full
        if full is None:
            spreads = [(row.high - row.low) / row.close for row in self._rows if row.close > 0]
            full = self._full = _snapshot(self.price, self.last_data_ms, spreads)
        return full


def _snapshot(price: Decimal, last_data_ms: int, spreads: list[Decimal]) -> MarketSnapshot:
    history = spreads[1:]
    return MarketSnapshot(
        price=price,
        spread_pct=spreads[0] if spreads else None,
        avg_spread_pct=sum(history) / len(history) if len(history) >= 5 else None,
        last_data_ms=last_data_ms,
    )


def breaker_retry(
    tries: int,
    checked_ms: int | None,
    market: MarketSnapshot,
    parameters: Mapping[str, Decimal],
    now: int,
    moved_from: Decimal | None = None,
) -> tuple[str, int]:
    """One retry of a tripped circuit breaker: ("wait" | "resume" | "retry" | "halt", tries after this step).

    Retried every 60 s of event time; the market is normal again when the condition that tripped it is gone: a
    spread trip's symbol's spread is back under the limit; a slippage trip's (``moved_from``: the price that
    slipped, or the last retry's) symbol's price moved no more than MAX_SLIPPAGE_PCT from it since. After 10 failed
    retries trading is HALTED.
    """
    if checked_ms is not None and now - checked_ms < BREAKER_RETRY_MS:
        return "wait", tries
    if moved_from is not None:
        normal = (
            market.price is not None and abs(market.price - moved_from) <= parameters["MAX_SLIPPAGE_PCT"] * moved_from
        )
    else:
        normal = market.price is not None and (
            market.avg_spread_pct is None
            or market.spread_pct is None
            or market.spread_pct <= parameters["MAX_SPREAD_MULTIPLIER"] * market.avg_spread_pct
        )
    if normal:
        return "resume", 0
    tries += 1
    return ("halt" if tries >= BREAKER_MAX_TRIES else "retry"), tries

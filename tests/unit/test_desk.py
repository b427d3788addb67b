"""The desk (risk/desk.py) alone, on hand-worked numbers, and the backtest shell over it on crafted candles.

Each numbered case is a defect the issue "One desk" found in both copies of the orchestration; the arithmetic is
written beside it. The desk is pure: the ledger below is the shell's store (open trades, exit attempts) in a dict.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D
from typing import NamedTuple

import pytest

from execution.paper import PaperExchange
from marketdata import stale
from risk.desk import (
    AmendHalt,
    CancelOrder,
    ChangeState,
    Desk,
    DeskState,
    DeskView,
    ExpireOrder,
    FillOrder,
    OperatorCommand,
    RaiseAlert,
    RecordRiskEvent,
    RestartDay,
    SignalIn,
    SubmitOrder,
    UpdateBreaker,
    blocked_by_state,
    operate,
    slippage_guarded,
)
from risk.engine import AccountState, LotStop, MarketSnapshot, RiskEngine, stop_price
from risk.operator_commands import OperatorCommandsError, OperatorSchedule, read_operator_commands
from risk.parameters import PARAMETER_SPECS
from trading.backtest import Backtest, read_bars
from trading.strategies.signals_file import SignalsFile

PARAMETERS = {name: spec.default for name, spec in PARAMETER_SPECS.items()}  # STOP_LOSS_PCT 0.02, drawdown 0.05
NOW = 1_700_000_000_000
ACTIVE = DeskState("ACTIVE")
DESK = Desk(RiskEngine(fee_rate=D(0), slippage_pct=D(0)), D("0.10"))


class Ledger:
    """The shell's store as the desk asks it, in memory."""

    def __init__(self, trades=None, attempts=None, suppressed=(), price_times=None, attempted_at=None):
        self.trades, self.attempts, self.held_back = trades or {}, attempts or {}, set(suppressed)
        self.price_times, self.attempted_at = price_times or {}, attempted_at or {}

    def oldest_open_trade(self, symbol):
        return self.trades.get(symbol)

    def exit_attempts(self, base):
        return self.attempts.get(base, [])

    def last_attempt_at(self, base):
        return self.attempted_at.get(base)

    def suppressed(self, base):
        return base in self.held_back

    def price_time(self, symbol, at_ms):
        return self.price_times.get(symbol)


def view(state: DeskState = ACTIVE, **account) -> DeskView:
    fields = {"trading_state": state.state, "cash": D(0), "positions": {}, "prices": {}, **account}
    return DeskView(state, AccountState(**fields), PARAMETERS, NOW)


def orders(effects):
    return [e for e in effects if isinstance(e, SubmitOrder)]


def alerts(effects, level=None):
    return [e for e in effects if isinstance(e, RaiseAlert) and (level is None or e.level == level)]


# 1 BTC bought at 100 (trade T1); its stop is 100 × (1 − 0.02) = 98; the last price 97 is below it. Day start 97:
# no drawdown.
UNDER_STOP = {
    "positions": {"BTC_USDT": D(1)},
    "prices": {"BTC_USDT": D(97)},
    "lots": {"BTC_USDT": [LotStop("T1", D(1), D(98))]},
    "day_start_equity": D(97),
}


NEWER = {"BTC_USDT": NOW}  # a price known at NOW, after any attempt (none decided here)


def test_a_failed_risk_exit_is_tried_again_only_on_a_price_newer_than_the_attempts():
    # The stop's first attempt was decided at NOW − 60 s on the price known then (NOW − 60 s); it was REJECTED. With
    # no newer price (still the one known at NOW − 60 s, or none) no new order and no alert: one every minute at the
    # old price would flood. A price known at NOW (> NOW − 60 s) brings the retry, with its CRITICAL alert.
    tried = {"stop:T1": NOW - 60_000}
    for known in ({"BTC_USDT": NOW - 60_000}, {}):
        ledger = Ledger({"BTC_USDT": "T1"}, {"stop:T1": ["REJECTED"]}, price_times=known, attempted_at=tried)
        assert DESK.watch(view(**UNDER_STOP), ledger) == []
    ledger = Ledger({"BTC_USDT": "T1"}, {"stop:T1": ["REJECTED"]}, price_times=NEWER, attempted_at=tried)
    effects = DESK.watch(view(**UNDER_STOP), ledger)
    assert [o.signal_id for o in orders(effects)] == ["stop:T1#1"] and len(alerts(effects, "CRITICAL")) == 1


def test_a_rejected_stop_loss_is_tried_again_with_a_critical_alert():
    # Defect 9: only FAILED exits were retried; a REJECTED one (e.g. the exchange refused it) never again.
    effects = DESK.watch(view(**UNDER_STOP), Ledger({"BTC_USDT": "T1"}, {"stop:T1": ["REJECTED"]}, price_times=NEWER))
    [order] = orders(effects)
    assert (order.signal_id, order.side, order.quantity, order.price, order.purpose) == (
        "stop:T1#1",
        "SELL",
        D(1),
        D(97),
        "stop_loss",
    )
    [critical] = alerts(effects, "CRITICAL")
    assert "attempt 2" in critical.message and "REJECTED" in critical.message
    # A stop still PENDING or already FILLED is never sent twice.
    for status in ("PENDING", "FILLED", "PARTIALLY_FILLED"):
        assert DESK.watch(view(**UNDER_STOP), Ledger({"BTC_USDT": "T1"}, {"stop:T1": [status]})) == []
    # The first attempt is keyed by the trade alone and announced as a stop-loss (WARNING), not as a retry.
    first = DESK.watch(view(**UNDER_STOP), Ledger({"BTC_USDT": "T1"}))
    assert [o.signal_id for o in orders(first)] == ["stop:T1"] and alerts(first, "CRITICAL") == []


def test_each_lot_has_its_own_stop_and_its_exit_sells_that_lot():
    # Defect 6: the stop was per position (average entry). Bought 1 at 100 (stop 98) and 1 at 110 (stop 107.8):
    # the average entry 105 put one stop at 102.9 for both lots, so at 102.5 both were sold. Per trade: at 107 only
    # the 110 lot (T2) is at its stop, and only its quantity is sold; the 100 lot (T1) stays until 98.
    assert (stop_price(D(100), D("0.02")), stop_price(D(110), D("0.02"))) == (D(98), D("107.8"))
    lots = {"BTC_USDT": [LotStop("T1", D(1), D(98)), LotStop("T2", D(1), D("107.8"))]}
    account = {"positions": {"BTC_USDT": D(2)}, "lots": lots, "day_start_equity": D(214)}
    effects = DESK.watch(view(prices={"BTC_USDT": D(107)}, **account), Ledger())
    assert [(o.signal_id, o.quantity, o.purpose) for o in orders(effects)] == [("stop:T2", D(1), "stop_loss")]
    assert (
        DESK.watch(
            view(prices={"BTC_USDT": D("102.5")}, **{**account, "lots": {"BTC_USDT": lots["BTC_USDT"][:1]}}), Ledger()
        )
        == []
    )
    both = DESK.watch(view(prices={"BTC_USDT": D(97)}, **{**account, "day_start_equity": D(194)}), Ledger())
    assert [(o.signal_id, o.quantity) for o in orders(both)] == [("stop:T1", D(1)), ("stop:T2", D(1))]


def test_an_operator_halt_holds_back_stop_losses_and_says_so_once_per_trade():
    # Defect 7: stop-losses executed after an operator HALT. Now nothing is sent; one CRITICAL alert per trade.
    halted = DeskState("HALTED", "", "manual check")
    effects = DESK.watch(view(halted, **UNDER_STOP), Ledger({"BTC_USDT": "T1"}))
    assert orders(effects) == []
    [critical] = alerts(effects, "CRITICAL")
    assert critical.message.startswith("stop-loss suppressed while HALTED") and critical.symbol == "BTC_USDT"
    [event] = [e for e in effects if isinstance(e, RecordRiskEvent)]
    assert (event.decision, event.signal_id, event.approved_quantity) == ("REJECT", "stop:T1", D(0))
    assert DESK.watch(view(halted, **UNDER_STOP), Ledger({"BTC_USDT": "T1"}, suppressed={"stop:T1"})) == []
    # And an execution under an operator halt carries out no order at all, stop-losses included.
    assert blocked_by_state("HALTED", "", "stop_loss", "SELL") == "trading HALTED before execution"


@pytest.mark.parametrize(
    ("state", "layer", "purpose", "side", "blocked"),
    [
        ("HALTED", "", "stop_loss", "SELL", True),
        ("HALTED", "", "exit", "SELL", True),
        ("HALTED", "drawdown", "drawdown_close", "SELL", False),
        # a halt that closes everything lets an exit decided before it through: it would close it anyway
        ("HALTED", "drawdown", "stop_loss", "SELL", False),
        ("HALTED", "drawdown", "exit", "SELL", False),
        ("HALTED", "drawdown", "entry", "BUY", True),
        ("HALTED", "operator_close", "operator_close", "SELL", False),
        ("HALTED", "operator_close", "drawdown_close", "SELL", False),
        ("HALTED", "operator_close", "entry", "BUY", True),
        ("HALTED", "circuit_breaker", "stop_loss", "SELL", True),
        ("PAUSED", "circuit_breaker", "entry", "BUY", True),
        ("PAUSED", "circuit_breaker", "stop_loss", "SELL", False),
        ("ACTIVE", "", "entry", "BUY", False),
    ],
)
def test_what_an_execution_may_carry_out_in_each_state(state, layer, purpose, side, blocked):
    assert bool(blocked_by_state(state, layer, purpose, side)) is blocked


def test_after_a_drawdown_halt_a_failed_close_is_tried_again_until_flat():
    # Defect 5: after the drawdown HALT a close that FAILED was never retried; the position stayed open.
    halted = DeskState("HALTED", "drawdown", "Daily drawdown 6.0000% reached the limit 5.00%. Trading halted.")
    held = {
        "positions": {"ETH_USDT": D(2)},
        "prices": {"ETH_USDT": D(50)},
        "lots": {"ETH_USDT": [LotStop("T9", D(2), D(58.8))]},
    }
    effects = DESK.watch(
        view(halted, **held), Ledger({"ETH_USDT": "T9"}, {"ddclose:T9": ["FAILED"]}, price_times={"ETH_USDT": NOW})
    )
    [order] = orders(effects)
    assert (order.signal_id, order.quantity, order.price, order.purpose) == (
        "ddclose:T9#1",
        D(2),
        D(50),
        "drawdown_close",
    )
    assert len(alerts(effects, "CRITICAL")) == 1
    assert blocked_by_state("HALTED", "drawdown", order.purpose, "SELL") == ""
    # Flat: nothing left to do, so the shells skip the watch.
    assert DESK.watch_has_work(view(halted, **held))
    assert not DESK.watch_has_work(view(halted, positions={}, prices={"ETH_USDT": D(50)}))


def test_a_drawdown_close_of_a_symbol_without_a_price_waits_for_one():
    # Defect 10: a close for a symbol with no price at decision time crashed (TypeError) and stopped the replay.
    # Day start 10,000; cash 9,000, 0.01 BTC at 1,000 = 10, SOL unpriced (valued 0): equity 9,010, down 9.9 % ≥ 5 %.
    account = {
        "cash": D(9000),
        "positions": {"BTC_USDT": D("0.01"), "SOL_USDT": D(10)},
        "prices": {"BTC_USDT": D(1000)},
        "day_start_equity": D(10000),
    }
    effects = DESK.watch(view(**account), Ledger({"BTC_USDT": "TB", "SOL_USDT": "TS"}))
    assert [e for e in effects if isinstance(e, ChangeState)] == [
        ChangeState("HALTED", "drawdown", alerts(effects)[0].message)
    ]
    assert [(o.symbol, o.quantity, o.price, o.purpose) for o in orders(effects)] == [
        ("BTC_USDT", D("0.01"), D(1000), "drawdown_close")
    ]
    waiting = [a for a in alerts(effects, "CRITICAL") if a.symbol == "SOL_USDT"]
    assert len(waiting) == 1 and "waits" in waiting[0].message


# --- a close values a symbol at its last known price, with that price's age ----------------------------------
def _exit_details(effects):
    return [(e.signal_id, e.details) for e in effects if isinstance(e, RecordRiskEvent) and e.decision == "APPROVE"]


def test_risk_exits_say_the_price_they_are_valued_at_and_its_age():
    # A stop-loss: BTC's last price 97 became known 60 s before the decision (its 1m candle closed at NOW − 60,000):
    # the exit is valued at 97, 60,000 ms old.
    ledger = Ledger({"BTC_USDT": "T1"}, price_times={"BTC_USDT": NOW - 60_000})
    [(key, details)] = _exit_details(DESK.watch(view(**UNDER_STOP), ledger))
    assert (key, details) == ("stop:T1", {"price": "97", "price_time": NOW - 60_000, "price_age_ms": 60_000})
    # The daily drawdown: day start 10,000; cash 9,000 + 1 ETH at 500 (its 5m close known 240 s ago) + 0.01 BTC at
    # 1,000 (known now) = 9,510: down 4.9 % < 5 %. At 450: 9,460, down 5.4 % ≥ 5 % → HALT and close both, each valued
    # at its own last price with its own age.
    account = {
        "cash": D(9000),
        "positions": {"BTC_USDT": D("0.01"), "ETH_USDT": D(1)},
        "day_start_equity": D(10000),
    }
    ledger = Ledger({"BTC_USDT": "TB", "ETH_USDT": "TE"}, price_times={"BTC_USDT": NOW, "ETH_USDT": NOW - 240_000})
    assert DESK.watch(view(prices={"BTC_USDT": D(1000), "ETH_USDT": D(500)}, **account), ledger) == []
    effects = DESK.watch(view(prices={"BTC_USDT": D(1000), "ETH_USDT": D(450)}, **account), ledger)
    assert _exit_details(effects) == [
        ("ddclose:TB", {"price": "1000", "price_time": NOW, "price_age_ms": 0}),
        ("ddclose:TE", {"price": "450", "price_time": NOW - 240_000, "price_age_ms": 240_000}),
    ]
    assert [(o.symbol, o.price) for o in orders(effects)] == [("BTC_USDT", D(1000)), ("ETH_USDT", D(450))]
    # An operator's halt-and-close: the same, on the next candle's watch; a symbol with no price gets no order
    # (no price to value it at) and waits for one.
    closing = DeskState("HALTED", "operator_close", "close out")
    held = {**account, "positions": {**account["positions"], "SOL_USDT": D(3)}}
    effects = DESK.watch(view(closing, prices={"BTC_USDT": D(1000), "ETH_USDT": D(450)}, **held), ledger)
    assert [key for key, _ in _exit_details(effects)] == ["opclose:TB", "opclose:TE"]
    assert _exit_details(effects)[1][1]["price_age_ms"] == 240_000
    assert [o.purpose for o in orders(effects)] == ["operator_close", "operator_close"]


# --- the operator's commands --------------------------------------------------------------------------------
def _never():
    raise AssertionError("the account is read only to release a drawdown halt or to close every position")


def test_operator_commands_through_the_desk():
    person = ("check the feed", "alice")
    halt, close, release = (OperatorCommand(c, *person) for c in ("halt", "halt_close", "release"))
    # A halt of an ACTIVE account: HALTED by the person, nothing read.
    assert operate(ACTIVE, halt, _never, "USDT") == [ChangeState("HALTED", "", "check the feed", actor="alice")]
    # Halt and close: a closing halt; a held symbol with no price (SOL) is said to wait for one.
    account = AccountState("ACTIVE", D(0), {"BTC_USDT": D(1), "SOL_USDT": D(2)}, {"BTC_USDT": D(100)})
    effects = operate(ACTIVE, close, lambda: account, "USDT")
    assert effects[0] == ChangeState("HALTED", "operator_close", "check the feed", actor="alice")
    assert [(a.code, a.symbol) for a in alerts(effects)] == [("RISK_LIMIT", "SOL_USDT")]
    # A plain halt asked to close becomes a closing halt, both reasons kept; a closing halt stays one.
    plain = DeskState("HALTED", "", "maintenance")
    amend, said = operate(plain, close, lambda: AccountState("HALTED", D(0), {}, {}), "USDT")
    assert amend == AmendHalt("maintenance; then alice: check the feed", "operator_close", True, False)
    assert said == RaiseAlert(
        "CRITICAL", "TRADING_STATE", "Trading HALTED (closing every position): check the feed (alice)"
    )
    drawdown = DeskState("HALTED", "drawdown", "Daily drawdown 6% reached the limit 5%. Trading halted.")
    amend, said = operate(drawdown, halt, _never, "USDT")
    assert (amend.layer, amend.closing, amend.still_closing) == ("drawdown", False, True)
    assert "still closing positions" in said.message
    # A release of an ACTIVE account changes nothing; of a plain halt or a pause, trading is ACTIVE again.
    assert operate(ACTIVE, release, _never, "USDT") == []
    assert operate(plain, release, _never, "USDT") == [ChangeState("ACTIVE", "", "check the feed", actor="alice")]
    # A release of a drawdown halt restarts the day's drawdown from the equity at release: cash 9,000 + 1 BTC at 500
    # = 9,500 (the day started at 10,000).
    down = AccountState("HALTED", D(9000), {"BTC_USDT": D(1)}, {"BTC_USDT": D(500)}, day_start_equity=D(10000))
    restart, change = operate(drawdown, release, lambda: down, "USDT")
    assert restart == RestartDay(D(9500), D(10000))
    assert change == ChangeState(
        "ACTIVE",
        "",
        "check the feed; the daily drawdown restarts from the equity at release 9,500.00 USDT (was 10,000.00 USDT)",
        actor="alice",
    )
    with pytest.raises(ValueError, match="unknown operator command"):
        operate(ACTIVE, OperatorCommand("pause", *person), _never, "USDT")


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (["1700000000000"], "line 2: expected timestamp_ms,command"),
        (["1700000000,halt"], "line 2: the time 1700000000 is not epoch milliseconds \\(a time in seconds\\?\\)"),
        (["17e11,halt"], "line 2: the time '17e11' is not epoch milliseconds"),
        (["1700000000000,pause"], "line 2: unknown command 'pause': one of halt, halt_close, release"),
        (["1700000000000,halt," + "x" * 501], "line 2: the reason has 501 characters, at most 500"),
        (
            ["1700000000000,halt", "1600000000000,release"],
            "line 3: its time 1600000000000 is before the previous row's 1700000000000",
        ),
        ([], "no command rows"),
        (["1700000000000,halt,feed check,part 1"], "line 2: 4 columns, expected at most 3"),
        (['1700000000000,halt,"feed check'], "line 2: not a CSV row"),
    ],
)
def test_an_operator_commands_file_refuses_a_bad_row_naming_its_line(tmp_path, rows, message):
    path = tmp_path / "ops.csv"
    path.write_text("timestamp_ms,command,reason\n" + "".join(f"{row}\n" for row in rows))
    with pytest.raises(OperatorCommandsError, match=message):
        read_operator_commands(path)


def test_operator_commands_are_given_before_the_candles_known_after_their_time(tmp_path):
    # A command at T is given once every candle known by T is in, before those known after T: at the step of the
    # first time after T. Two at one time are given in the file's order; a quoted reason may hold commas.
    path = tmp_path / "ops.csv"
    path.write_text('1700000060000,halt,"feed check, part 1"\n1700000060000,halt_close\n1700000120000,release\n')
    commands = read_operator_commands(path)
    assert [(c.timestamp_ms, c.command.command, c.command.reason, c.line) for c in commands] == [
        (1_700_000_060_000, "halt", "feed check, part 1", 1),
        (1_700_000_060_000, "halt_close", "ops.csv line 2", 2),
        (1_700_000_120_000, "release", "ops.csv line 3", 3),
    ]
    assert commands[0].command.actor == "operator file ops.csv"
    schedule = OperatorSchedule(commands)
    assert schedule.due(1_700_000_060_000) == []  # the candles known at T come first
    assert [c.line for c in schedule.due(1_700_000_120_000)] == [1, 2]
    assert schedule.not_given() == (
        "1 operator command at or after the last candle's time was not given: first line 3, 1700000120000,release"
    )
    assert [c.line for c in schedule.due(1_700_000_180_000)] == [3] and schedule.not_given() is None


# --- the backtest shell on crafted candles ------------------------------------------------------------------
DAY_MS = 86_400_000
DAY2 = 1_700_006_400_000  # 2023-11-15 00:00 UTC
FIVE_MIN = 300_000


def _candles(tmp_path, closes: dict[int, float]) -> str:
    path = tmp_path / "TEST_USDT-5m.csv"
    rows = ["timestamp_ms,open,high,low,close,volume"]
    rows += [f"{ts},{price},{price},{price},{price},1000000" for ts, price in sorted(closes.items())]
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def _signals(tmp_path, rows: list[str]) -> str:
    path = tmp_path / "signals.csv"
    path.write_text("timestamp_ms,symbol,side,confidence,reason\n" + "\n".join(rows) + "\n")
    return str(path)


def _backtest(tmp_path, closes, signal_rows, position_size_pct=D("0.25"), **parameters):
    signals = _signals(tmp_path, signal_rows)
    exchange = PaperExchange(slippage_pct=D(0), fee_rate=D(0), failure_rate=D(0), max_volume_share=D(0))
    parameters = {**PARAMETERS, **parameters}
    backtest = Backtest(lambda: SignalsFile(path=signals), parameters, D(10000), exchange, position_size_pct)
    return backtest.run(read_bars([_candles(tmp_path, closes)]))


class Waiting(NamedTuple):
    client_order_id: str = "cdbx"
    signal_id: str = "sig"
    symbol: str = "TEST_USDT"
    side: str = "BUY"
    purpose: str = "entry"
    quantity: D = D(10)
    requested_price: D = D(100)


def test_an_order_fills_at_the_first_price_after_its_decision_and_slippage_trips_the_breaker():
    # Defect 1: the breaker compared the signal's price with the same candle's close (0 % every time). Now the
    # desk meets an approved order with the first price after its decision. Decided at 100, MAX_SLIPPAGE_PCT 1 %:
    # 100.9 is 0.9 % away → filled at 100.9; 101.5 is 1.5 % away → the entry is cancelled, PAUSED by the circuit
    # breaker with a CIRCUIT_BREAKER alert and a REJECT risk event; an exit at 101.5 fills (it reduces risk).
    assert DESK.fill(ACTIVE, PARAMETERS, Waiting(), D("100.9")) == [FillOrder("cdbx", D("100.9"))]
    effects = DESK.fill(ACTIVE, PARAMETERS, Waiting(), D("101.5"))
    assert [type(e) for e in effects] == [RecordRiskEvent, RaiseAlert, ChangeState, CancelOrder]
    event, alert, change, cancel = effects
    assert (event.decision, event.layer, event.approved_quantity) == ("REJECT", "circuit_breaker", D(0))
    assert D(event.details["slippage"]) == D("0.015")
    assert (alert.level, alert.code) == ("WARNING", "CIRCUIT_BREAKER")
    assert (change.new_state, change.layer, change.breaker_symbol) == ("PAUSED", "circuit_breaker", "TEST_USDT")
    assert cancel.client_order_id == "cdbx" and "circuit breaker" in cancel.reason
    exit_order = Waiting(side="SELL", purpose="exit")
    assert DESK.fill(ACTIVE, PARAMETERS, exit_order, D("101.5")) == [FillOrder("cdbx", D("101.5"))]
    # A state that now blocks the order cancels it: PAUSED stops entries, HALTED everything but its closes.
    assert DESK.fill(DeskState("PAUSED"), PARAMETERS, Waiting(), D(100)) == [
        CancelOrder("cdbx", "trading PAUSED before execution: entries blocked")
    ]
    assert DESK.fill(DeskState("HALTED"), PARAMETERS, exit_order, D(100)) == [
        CancelOrder("cdbx", "trading HALTED before execution")
    ]


@pytest.mark.parametrize("purpose", ["exit", "stop_loss", "drawdown_close", "operator_close"])
def test_exits_are_exempt_from_the_slippage_breaker_and_fill_in_a_crash(purpose):
    # SPEC §4 layer 2's action is a PAUSE, and a PAUSE stops new orders, never an exit: a risk exit must close its
    # position in a crash. Decided at 100, the next open is 60: 40 % > MAX_SLIPPAGE_PCT 1 % (an entry there would
    # trip the breaker); each SELL fills at 60 and trips nothing, also while PAUSED by the breaker already.
    assert not slippage_guarded("SELL") and slippage_guarded("BUY")
    order = Waiting(side="SELL", purpose=purpose)
    assert DESK.fill(ACTIVE, PARAMETERS, order, D(60)) == [FillOrder("cdbx", D(60))]
    paused = DeskState("PAUSED", "circuit_breaker", breaker_symbol="TEST_USDT")
    assert DESK.fill(paused, PARAMETERS, order, D(60)) == [FillOrder("cdbx", D(60))]
    assert [type(e) for e in DESK.fill(ACTIVE, PARAMETERS, Waiting(), D(60))][-1] is CancelOrder


def test_a_slippage_trip_is_retried_on_the_price_move_and_halts_after_ten_retries():
    # Decided at 100, filled at 101.5 (1.5 % > MAX_SLIPPAGE_PCT 1 %): the trip keeps 101.5, the price its retry
    # measures the move from. 60 s later the price is 103.6: moved 2.1 > 1 % × 101.5 = 1.015 → still anomalous (the
    # spread, 0, is ordinary: a spread-only judge would resume), try 1, the next retry measures from 103.6. At
    # 104.5 (0.9 < 1.036) it is normal again and trading resumes; the tenth failed retry HALTS.
    [change] = [e for e in DESK.fill(ACTIVE, PARAMETERS, Waiting(), D("101.5")) if isinstance(e, ChangeState)]
    assert (change.breaker_symbol, change.breaker_price) == ("TEST_USDT", D("101.5"))
    tripped = DeskState("PAUSED", "circuit_breaker", "slipped", "TEST_USDT", 0, NOW - 60_000, D("101.5"))
    calm = MarketSnapshot(price=D("103.6"), spread_pct=D(0), avg_spread_pct=D(0), last_data_ms=NOW)
    watched = view(tripped)._replace(market=calm)
    assert DESK.watch(watched, Ledger()) == [UpdateBreaker(1, NOW, D("103.6"))]
    moved_less = watched._replace(
        state=tripped._replace(breaker_price=D("103.6")), market=replace(calm, price=D("104.5"))
    )
    [resumed] = DESK.watch(moved_less, Ledger())
    assert (resumed.new_state, resumed.reason) == ("ACTIVE", "circuit breaker: TEST_USDT normal again")
    [halted] = DESK.watch(watched._replace(state=tripped._replace(breaker_tries=9)), Ledger())
    assert (halted.new_state, halted.layer) == ("HALTED", "circuit_breaker")
    assert halted.reason == "circuit breaker: TEST_USDT still anomalous after 10 retries"
    # A spread trip (no price kept) is judged on the spread as before: 0 is ordinary.
    spread_trip = tripped._replace(breaker_price=None)
    [resumed] = DESK.watch(watched._replace(state=spread_trip), Ledger())
    assert resumed.new_state == "ACTIVE"


def test_a_price_that_keeps_slipping_halts_the_backtest_after_ten_retries(tmp_path):
    # 30 1m candles, each opening 2 % above the last close, a BUY every minute: the first entry slips 2 % and trips
    # the breaker at 00:02; every retry (00:03 … 00:12) finds the price moved 2 % since the last one: the tenth, at
    # 00:12, HALTS. Nothing was bought.
    minute = 60_000
    path = tmp_path / "TEST_USDT-1m.csv"
    prices = [100 * 1.02**i for i in range(30)]
    rows = [f"{DAY2 + i * minute},{p:.4f},{p:.4f},{p:.4f},{p:.4f},1000000" for i, p in enumerate(prices)]
    path.write_text("timestamp_ms,open,high,low,close,volume\n" + "\n".join(rows) + "\n")
    signals = _signals(tmp_path, [f"{DAY2 + i * minute},TEST_USDT,BUY" for i in range(30)])
    exchange = PaperExchange(slippage_pct=D(0), fee_rate=D(0), failure_rate=D(0), max_volume_share=D(0))
    backtest = Backtest(lambda: SignalsFile(path=signals), PARAMETERS, D(10000), exchange, D("0.10"))
    result = backtest.run(read_bars([str(path)]))
    changes = [
        (e["timestamp"] - DAY2, e["reason"].split(":")[0])
        for e in result.risk_events
        if e["decision"] == "STATE_CHANGE"
    ]
    assert changes == [(2 * minute, "ACTIVE → PAUSED"), (12 * minute, "PAUSED → HALTED")]
    assert result.trading_state == "HALTED" and not [o for o in result.orders if o.status == "FILLED"]


def test_a_gap_after_the_signal_trips_the_breaker_in_the_backtest(tmp_path):
    # BUY signal on the candle closing at 100; the next candle opens at 103 (3 % > 1 %): no fill, the entry is
    # REJECTED and trading PAUSED by the circuit breaker; its retry finds the market normal (the spread is
    # ordinary) 60 s later and resumes. The second BUY, decided at 103, fills at the next open, 103.5 (0.49 %).
    # Each order is decided at its signal candle's close, one interval after its open.
    closes = {DAY2 + i * FIVE_MIN: p for i, p in enumerate([100, 100, 103, 103, 103.5, 103.5])}
    path = tmp_path / "TEST_USDT-5m.csv"
    rows = ["timestamp_ms,open,high,low,close,volume"]
    opens = {DAY2 + 2 * FIVE_MIN: 103, DAY2 + 4 * FIVE_MIN: 103.5}
    rows += [f"{ts},{opens.get(ts, p)},{p},{p},{p},1000000" for ts, p in sorted(closes.items())]
    path.write_text("\n".join(rows) + "\n")
    signals = _signals(tmp_path, [f"{DAY2 + FIVE_MIN},TEST_USDT,BUY", f"{DAY2 + 3 * FIVE_MIN},TEST_USDT,BUY"])
    exchange = PaperExchange(slippage_pct=D(0), fee_rate=D(0), failure_rate=D(0), max_volume_share=D(0))
    backtest = Backtest(lambda: SignalsFile(path=signals), PARAMETERS, D(10000), exchange, D("0.10"))
    result = backtest.run(read_bars([str(path)]))
    assert [(o.status, o.price, o.timestamp) for o in result.orders] == [
        ("REJECTED", None, DAY2 + 2 * FIVE_MIN),
        ("FILLED", D("103.5"), DAY2 + 4 * FIVE_MIN),
    ]
    changes = [e["reason"].split(":")[0] for e in result.risk_events if e["decision"] == "STATE_CHANGE"]
    assert changes == ["ACTIVE → PAUSED", "PAUSED → ACTIVE"]
    # The pause is stored as live stores it: a TRADING_STATE alert (level, message, time), after the breaker's own.
    assert [a["code"] for a in result.alerts][:3] == ["CIRCUIT_BREAKER", "TRADING_STATE", "ORDER_FAILED"]
    paused = result.alerts[1]
    assert (paused["level"], paused["timestamp"]) == ("WARNING", DAY2 + 3 * FIVE_MIN)
    assert paused["message"].startswith("Trading PAUSED: TEST_USDT: the price 103") and paused["message"].endswith(
        "circuit breaker (risk)"
    )
    # The failure is known when the entry meets its price, at the step the 103 candle has closed (00:15), not at
    # its decision (00:10).
    failed = [a for a in result.alerts if a["code"] == "ORDER_FAILED"]
    assert [a["timestamp"] for a in failed] == [DAY2 + 3 * FIVE_MIN]


@pytest.mark.parametrize("crash_at", [DAY2 - FIVE_MIN, DAY2])
def test_a_crash_at_midnight_halts_like_a_crash_a_candle_earlier(tmp_path, crash_at):
    # Defect 4: the day-start equity was taken after the day's first candle was applied, so its loss was missed.
    # BUY 25 at 100 on the 23:45 candle (0.25 × 10,000 = 2,500; fee and slippage 0): cash 7,500.
    # The crash to 60 at 23:55 or at 00:00: equity 7,500 + 25 × 60 = 9,000; the day started at 10,000 (the
    # prices before 00:00 were 100, or already 60 when the crash came at 23:55 — then the halt is on day 1):
    # down 10 % ≥ 5 % → HALT and close 25 at 60 — at 00:00 too, where it used to be missed (only the 2 % stop fired).
    # Decisions are made at a candle's close: the entry at 23:50, the close when the crash candle has closed.
    closes = {DAY2 - 4 * FIVE_MIN: 100.0, DAY2 - 3 * FIVE_MIN: 100.0, DAY2 - 2 * FIVE_MIN: 100.0}
    closes.update({ts: 100.0 for ts in range(DAY2 - 2 * FIVE_MIN, crash_at, FIVE_MIN)})
    closes.update({ts: 60.0 for ts in range(crash_at, DAY2 + 2 * FIVE_MIN, FIVE_MIN)})
    result = _backtest(
        tmp_path, closes, [f"{DAY2 - 3 * FIVE_MIN},TEST_USDT,BUY,0.9,crafted"], MAX_POSITION_PCT=D("0.25")
    )
    assert [(o.side, o.purpose, o.filled_quantity, o.price, o.timestamp) for o in result.orders] == [
        ("BUY", "entry", D(25), D(100), DAY2 - 2 * FIVE_MIN),
        ("SELL", "drawdown_close", D(25), D(60), crash_at + FIVE_MIN),
    ]
    assert result.trading_state == "HALTED"
    assert result.final_equity == D(9000)


def test_a_stop_loss_sells_its_own_lot_in_the_backtest(tmp_path):
    # 10 bought at 100 (0.10 × 10,000 = 1,000; stop 98), then 10 at 105 (stop 102.9; 0.10 × 10,050 = 1,005 → 9.57142857
    # at 105 — the position limit 0.25 leaves room). At 102 only the second lot's stop is reached: it alone is sold and
    # its trade closed — at the next candle's open, 101 (an order fills at the first price after its decision); the
    # first stays open until 97 reaches its stop 98, and is sold at the next open, 97. Each order's time is its
    # decision's: the close of the candle it was decided on (open + 5 min).
    closes = {DAY2 + i * FIVE_MIN: p for i, p in enumerate([100, 100, 105, 105, 102, 101, 97, 97])}
    result = _backtest(
        tmp_path,
        closes,
        [f"{DAY2},TEST_USDT,BUY", f"{DAY2 + 2 * FIVE_MIN},TEST_USDT,BUY"],
        MAX_POSITION_PCT=D("0.25"),
        position_size_pct=D("0.10"),
    )
    summary = [(o.purpose, o.filled_quantity, o.price, o.timestamp, o.stop_loss) for o in result.orders]
    assert summary == [
        ("entry", D(10), D(100), DAY2 + FIVE_MIN, D(98)),
        ("entry", D("9.57142857"), D(105), DAY2 + 3 * FIVE_MIN, D("102.9")),
        ("stop_loss", D("9.57142857"), D(101), DAY2 + 5 * FIVE_MIN, None),
        ("stop_loss", D(10), D(97), DAY2 + 7 * FIVE_MIN, None),
    ]
    closed = [(c.lot.entry_price, c.exit_price) for c in result.closed]
    assert closed == [(D(105), D(101)), (D(100), D(97))]


def test_signals_file_rows_become_decisions_at_their_candles(tmp_path):
    # A BUY and a SELL from the file: 25 bought at 100 (2,500 of 10,000), sold at 110: +250.
    closes = {DAY2 + i * FIVE_MIN: 100.0 if i < 3 else 110.0 for i in range(6)}
    result = _backtest(
        tmp_path,
        closes,
        [f"{DAY2 + FIVE_MIN},TEST_USDT,BUY", f"{DAY2 + 4 * FIVE_MIN},TEST_USDT,SELL,0.5,take profit"],
        MAX_POSITION_PCT=D("0.25"),
    )
    assert [(o.side, o.purpose, o.filled_quantity, o.price) for o in result.orders] == [
        ("BUY", "entry", D(25), D(100)),
        ("SELL", "exit", D(25), D(110)),
    ]
    assert result.final_equity == D(10250)
    assert (
        result.risk_events[0]["details"]["confidence"] == 1.0 and "take profit" not in result.risk_events[0]["reason"]
    )


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("17000,TEST_USDT", "expected timestamp_ms,symbol,side"),
        ("soon,TEST_USDT,BUY", "is not a time in epoch milliseconds"),
        ("17000,TEST USDT,BUY", "is not a symbol"),
        ("17000,TEST_USDT,HOLD", "neither BUY nor SELL"),
        ("17000,TEST_USDT,BUY,2", "not a number in 0–1"),
    ],
)
def test_signals_file_refuses_a_bad_row_naming_its_line(tmp_path, row, message):
    path = _signals(tmp_path, ["16000,TEST_USDT,SELL", row])
    with pytest.raises(ValueError, match=message) as error:
        SignalsFile(path=path)
    assert "line 3" in str(error.value)


def test_signals_file_needs_a_readable_path(tmp_path):
    with pytest.raises(ValueError, match="path=FILE"):
        SignalsFile()
    with pytest.raises(ValueError, match="cannot read"):
        SignalsFile(path=str(tmp_path / "missing.csv"))


def test_signals_file_interval_keeps_a_row_to_one_series(tmp_path):
    # A symbol on 1m and 5m candles: without interval= a row signals on both series (two entries); with it, one.
    path = _signals(tmp_path, ["1000,AAA_USDT,BUY"])
    both = [SignalsFile(path=path).for_series("AAA_USDT", interval) for interval in ("1m", "5m")]
    assert [s.due for s in both] == [{1000: ("BUY", 1.0, "signals file")}] * 2
    one = [SignalsFile(path=path, interval="5m").for_series("AAA_USDT", interval) for interval in ("1m", "5m")]
    assert [bool(s.due) for s in one] == [False, True]


def test_signals_file_reads_a_bom_and_refuses_what_is_not_text_or_not_ascii_digits(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_text("\ufefftimestamp_ms,symbol,side\n1000,AAA_USDT,SELL\n", encoding="utf-8")
    assert SignalsFile(path=str(path)).for_series("AAA_USDT", "1m").due == {1000: ("SELL", 1.0, "signals file")}
    path.write_bytes("timestamp_ms,symbol,side\n1000,AAA_USDT,BUY\n".encode("utf-16"))
    with pytest.raises(ValueError, match="is not UTF-8 text"):
        SignalsFile(path=str(path))
    for stamp in ("١٢٣", "¹²³"):  # Arabic-Indic and superscript digits are not epoch milliseconds
        path.write_text(f"{stamp},AAA_USDT,BUY\n", encoding="utf-8")
        with pytest.raises(ValueError, match="line 1: timestamp_ms"):
            SignalsFile(path=str(path))
    with pytest.raises(ValueError, match="known: path, interval"):
        SignalsFile(path=str(path), foo=1)


def test_a_cached_signals_file_strategy_does_not_carry_the_file(tmp_path):
    import pickle

    path = _signals(tmp_path, [f"{ts},AAA_USDT,BUY" for ts in range(1000, 21000)])
    strategy = SignalsFile(path=path).for_series("AAA_USDT", "1m")
    blob = pickle.dumps(strategy)
    assert len(blob) < 1000  # the 20,000 rows come back from the file, not from the cache
    assert pickle.loads(blob).due == strategy.due


MINUTE = 60_000


def _write_rows(path, rows: list[tuple[int, float, float]]) -> str:
    """Candles (open time, open, close) with high/low spanning them."""
    lines = ["timestamp_ms,open,high,low,close,volume"]
    lines += [f"{ts},{o},{max(o, c)},{min(o, c)},{c},1000000" for ts, o, c in rows]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_a_5m_close_is_not_seen_by_1m_decisions_before_it_has_closed(tmp_path):
    # Defect 3: candles were ordered and keyed by their open time, so the 5m FIVE candle opened at 00:10 (closing at
    # 00:15) was in the store of 00:10 and its crash to 60 was seen by the 1m decisions of 00:10-00:14.
    # 10,000 capital, 25 % sizing, no fee or slippage. FIVE's BUY on its 00:00 candle is decided at its close 00:05:
    # 0.25 × 10,000 / 100 = 25 FIVE, filled at the next open 100 (cash 7,500). ONE's BUY on its 00:11 candle is
    # decided at 00:12: FIVE is still worth its 00:05-00:10 close, 100, so equity is 7,500 + 25 × 100 = 10,000, no
    # drawdown: 25 ONE at 100 (cash 5,000). At 00:15 the crash candle has closed: 5,000 + 25 × 100 + 25 × 60 = 9,000,
    # down 10 % ≥ 5 % → HALT at 00:15 and close both (by symbol), FIVE at its 00:15 open 60, ONE at its 00:15 open 100:
    # final equity 5,000 + 2,500 + 1,500 = 9,000.
    # Before: HALT at 00:10, ONE's BUY rejected, and FIVE sold at 100 — before a crash that had not happened yet.
    five = [(DAY2, 100, 100), (DAY2 + 5 * MINUTE, 100, 100), (DAY2 + 10 * MINUTE, 100, 60)]
    five += [(DAY2 + 15 * MINUTE, 60, 60), (DAY2 + 20 * MINUTE, 60, 60)]
    one = [(DAY2 + i * MINUTE, 100, 100) for i in range(25)]
    files = [_write_rows(tmp_path / "ONE_USDT-1m.csv", one), _write_rows(tmp_path / "FIVE_USDT-5m.csv", five)]
    signals = _signals(tmp_path, [f"{DAY2},FIVE_USDT,BUY", f"{DAY2 + 11 * MINUTE},ONE_USDT,BUY"])
    exchange = PaperExchange(slippage_pct=D(0), fee_rate=D(0), failure_rate=D(0), max_volume_share=D(0))
    parameters = {**PARAMETERS, "MAX_POSITION_PCT": D("0.25"), "MAX_EXPOSURE_PCT": D(1)}
    backtest = Backtest(lambda: SignalsFile(path=signals), parameters, D(10000), exchange, D("0.25"))
    result = backtest.run(read_bars(files))
    summary = [(o.symbol, o.purpose, o.status, o.filled_quantity, o.price, o.timestamp) for o in result.orders]
    assert summary == [
        ("FIVE_USDT", "entry", "FILLED", D(25), D(100), DAY2 + 5 * MINUTE),
        ("ONE_USDT", "entry", "FILLED", D(25), D(100), DAY2 + 12 * MINUTE),
        ("FIVE_USDT", "drawdown_close", "FILLED", D(25), D(60), DAY2 + 15 * MINUTE),
        ("ONE_USDT", "drawdown_close", "FILLED", D(25), D(100), DAY2 + 15 * MINUTE),
    ]
    [halt] = [e for e in result.risk_events if e["decision"] == "STATE_CHANGE"]
    assert halt["timestamp"] == DAY2 + 15 * MINUTE and "HALTED" in halt["reason"]
    assert result.final_equity == D(9000) and result.trading_state == "HALTED"


def test_capital_warnings_count_only_entries_that_filled():
    # Two entries filled (one in full, one cut to half by the volume share) and two cancelled before any fill: one
    # cut of two filled is not "more than half" → no warning. Counting the cancelled ones (filled 0 < asked) made it
    # three cut of four, and a warning about a capital too large for the markets that no fill had shown.
    from trading.backtest import Order as BacktestOrder
    from trading.backtest_report import capital_warnings

    def entry(status, filled):
        return BacktestOrder("c", "s", "AAA_BTC", "BUY", D(10), D(1), NOW, "entry", "APPROVE", [], status, D(filled))

    orders = [entry("FILLED", 10), entry("PARTIALLY_FILLED", 5), entry("REJECTED", 0), entry("REJECTED", 0)]
    result = type("R", (), {"orders": orders, "initial_capital": D(10000)})()
    assert capital_warnings(result) == []
    # Two of two filled entries cut → warned, with the median fill ratio 0.5 × 10,000 = 5,000 suggested.
    result.orders = [entry("PARTIALLY_FILLED", 5), entry("PARTIALLY_FILLED", 5), entry("PENDING", 0)]
    [warning] = capital_warnings(result)
    assert warning.startswith("2 of 2 entries were cut") and "--capital 5000" in warning


def test_the_expiry_and_spread_messages_say_amounts_alike_in_both_shells():
    # The live store gives 12 places (10.000000000000, MAX_SPREAD_MULTIPLIER 5.000), the backtest its own (10.00000000,
    # 5.0): both say the exact number without trailing zeros.
    for quantity in (D("10.000000000000"), D("10.00000000")):
        [alert, _] = DESK.expire([Waiting(quantity=quantity)], {"TEST_USDT": "has ended"})
        assert alert.message.startswith("BUY 10 TEST_USDT EXPIRED:")
    wide = MarketSnapshot(price=D(100), spread_pct=D("0.2"), avg_spread_pct=D("0.01"), last_data_ms=NOW)
    signal = SignalIn("sig", "TEST_USDT", "BUY", D(100), 1.0, source_timestamp=NOW - 60_000)
    for multiplier in (D("5.000"), D("5.0")):
        seen = view(cash=D(10000), day_start_equity=D(10000))._replace(
            market=wide, parameters={**PARAMETERS, "MAX_SPREAD_MULTIPLIER": multiplier}
        )
        [breaker] = [e for e in DESK.decide(seen, signal, Ledger()) if isinstance(e, RaiseAlert)]
        assert breaker.message == "TEST_USDT: spread 20.0000% exceeds 5 × the recent average 1.0000%; circuit breaker"


def test_an_order_that_can_get_no_price_expires_and_frees_its_cost():
    # The desk's rule: a waiting order of a symbol the data-stale watch finds without data (stale, or its data ended)
    # EXPIRES with an ORDER_EXPIRED alert; orders of other symbols wait on.
    other = Waiting(client_order_id="cdby", symbol="OTHER_USDT")
    effects = DESK.expire([Waiting(), other], {"TEST_USDT": "has ended"})
    assert [type(e) for e in effects] == [RaiseAlert, ExpireOrder]
    alert, expire = effects
    assert (alert.level, alert.code, alert.symbol) == ("WARNING", "ORDER_EXPIRED", "TEST_USDT")
    assert expire == ExpireOrder("cdbx", "no price after its decision: TEST_USDT's market data has ended")
    # A risk exit is cancelled instead (REJECTED), so that it is decided again once its symbol has a price: a
    # position must not be left without its stop (an EXPIRED exit is never retried, as the live dust exit is not).
    stop = Waiting(client_order_id="cdbs", side="SELL", purpose="stop_loss")
    reason = "no price after its decision: TEST_USDT's market data is stale"
    assert DESK.expire([stop], {"TEST_USDT": "is stale"}) == [CancelOrder("cdbs", reason)]
    retry = DESK.watch(view(**UNDER_STOP), Ledger({"BTC_USDT": "T1"}, {"stop:T1": ["REJECTED"]}, price_times=NEWER))
    assert [o.signal_id for o in orders(retry)] == ["stop:T1#1"]
    assert DESK.watch(view(**UNDER_STOP), Ledger({"BTC_USDT": "T1"}, {"stop:T1": ["EXPIRED"]})) == []


def test_the_backtest_expires_an_order_whose_symbol_has_no_more_candles(tmp_path):
    # AAA's file ends with the candle opened at 00:09; BBB's goes on to 00:19. 10,000 capital, 25 % sizing, no fee.
    # AAA's BUY on its last candle is decided at 00:10: 0.25 × 10,000 / 100 = 25 AAA, 2,500 held back while it waits.
    # AAA never has another candle: the watch's check at 00:11 finds its data ended (00:11 > 00:10, its last close)
    # → EXPIRED with an ORDER_EXPIRED alert at 00:11, the 2,500 free again. BBB's BUY decided at 00:13 counts no
    # exposure but its own: 0.25 × 10,000 / 50 = 50 BBB = 25 % ≤ MAX_EXPOSURE_PCT 30 %, approved in full; with AAA's
    # cost still held back, 2,500 + 2,500 = 50 % > 30 % would have cut it. BBB's SELL on the very last candle (00:19,
    # decided 00:20, all 50) can get no price either: EXPIRED when the data ends; the 50 BBB stay held.
    aaa = [(DAY2 + i * MINUTE, 100, 100) for i in range(10)]
    bbb = [(DAY2 + i * MINUTE, 50, 50) for i in range(20)]
    files = [_write_rows(tmp_path / "AAA_USDT-1m.csv", aaa), _write_rows(tmp_path / "BBB_USDT-1m.csv", bbb)]
    rows = [
        f"{DAY2 + 9 * MINUTE},AAA_USDT,BUY",
        f"{DAY2 + 12 * MINUTE},BBB_USDT,BUY",
        f"{DAY2 + 19 * MINUTE},BBB_USDT,SELL",
    ]
    signals = _signals(tmp_path, rows)
    exchange = PaperExchange(slippage_pct=D(0), fee_rate=D(0), failure_rate=D(0), max_volume_share=D(0))
    parameters = {**PARAMETERS, "MAX_POSITION_PCT": D("0.25"), "MAX_EXPOSURE_PCT": D("0.3")}
    series: dict = {}
    bars = read_bars(files, None, series)
    backtest = Backtest(lambda: SignalsFile(path=signals), parameters, D(10000), exchange, D("0.25"))
    backtest.watched = series
    result = backtest.run(bars)
    print([(e["decision"], e.get("layer"), e["reason"]) for e in result.risk_events])
    assert [(o.symbol, o.status, o.quantity, o.filled_quantity, o.timestamp) for o in result.orders] == [
        ("AAA_USDT", "EXPIRED", D(25), D(0), DAY2 + 10 * MINUTE),
        ("BBB_USDT", "FILLED", D(50), D(50), DAY2 + 13 * MINUTE),
        ("BBB_USDT", "EXPIRED", D(50), D(0), DAY2 + 20 * MINUTE),
    ]
    expired = [(a["timestamp"], a["message"]) for a in result.alerts if a["code"] == "ORDER_EXPIRED"]
    assert expired == [
        (
            DAY2 + 11 * MINUTE,
            "BUY 25 AAA_USDT EXPIRED: no price after its decision: AAA_USDT's market data has ended",
        ),
        (
            DAY2 + 20 * MINUTE,
            "SELL 50 BBB_USDT EXPIRED: no price after its decision: BBB_USDT's market data has ended",
        ),
    ]
    assert result.final_equity == D(10000)


def test_a_signal_too_large_to_be_an_order_is_rejected_not_raised(tmp_path):
    # Capital 10^15 at a price of 0.00000001: 0.10 × 10^15 / 10^-8 = 10^22 units — 31 digits once quantized to 8
    # decimals, beyond Decimal's 28 (InvalidOperation), and beyond what an order stores (below 10^18 units).
    # The desk rejects the signal with a risk event saying why, and nothing else.
    huge = view(cash=D("1e15"), day_start_equity=D("1e15"))._replace(market=MarketSnapshot(price=D("0.00000001")))
    signal = SignalIn("s1", "TEST_USDT", "BUY", D("0.00000001"), 0.9)
    [event] = DESK.decide(huge, signal, Ledger())
    assert (event.decision, event.layer, event.approved_quantity, event.client_order_id) == ("REJECT", "size", 0, "")
    assert "1e+22 units" in event.reason and "1e+18" in event.reason
    # At 0.000001: 10^14 / 10^-6 = 10^20 units, quantized fine but not storable: rejected too; at 1: 10^14 units,
    # a size the risk layers judge (here the snapshot has no data time: stale).
    at_micro = huge._replace(market=MarketSnapshot(price=D("0.000001")))
    assert DESK.decide(at_micro, signal._replace(price=D("0.000001")), Ledger())[0].layer == "size"
    at_one = huge._replace(market=MarketSnapshot(price=D(1)))
    judged = DESK.decide(at_one, signal._replace(price=D(1)), Ledger())[0]
    assert judged.layer != "size" and judged.requested_quantity == D("1e14")
    # The backtest shell, capital 10^15, candles at 0.00000001: the BUY is a stored REJECT, no order, no crash.
    closes = {DAY2 + i * FIVE_MIN: 0.00000001 for i in range(4)}
    signals = _signals(tmp_path, [f"{DAY2},TEST_USDT,BUY"])
    exchange = PaperExchange(slippage_pct=D(0), fee_rate=D(0), failure_rate=D(0), max_volume_share=D(0))
    backtest = Backtest(lambda: SignalsFile(path=signals), PARAMETERS, D("1e15"), exchange, D("0.10"))
    result = backtest.run(read_bars([_candles(tmp_path, closes)]))
    assert result.orders == [] and result.final_equity == D("1e15")
    assert [(e["decision"], e["layer"]) for e in result.risk_events] == [("REJECT", "size")]


def test_releasing_a_drawdown_halt_in_the_backtest_restarts_the_day_and_the_report_says_so(tmp_path):
    # Defect 8 through an operator-commands file. 10 % of 10,000 (MAX_POSITION_PCT) = 10 TEST at 100 (no costs);
    # the candle known at 00:15 closes at 40: equity 9,400, down 6 % ≥ 5 % → HALT and close at the next open, 40:
    # cash 9,400. Released at 00:20 (given before the candles known at 00:25): the day restarts from 9,400, so the BUY
    # decided at 00:30 is approved and trading stays ACTIVE (against the old start, 10,000, it would halt again).
    closes = [100, 100, 40, 40, 40, 40, 40, 40]
    path = tmp_path / "TEST_USDT-5m.csv"
    rows = ["timestamp_ms,open,high,low,close,volume"]
    rows += [f"{DAY2 + i * FIVE_MIN},{100 if i < 3 else 40},100,40,{c},1000000" for i, c in enumerate(closes)]
    path.write_text("\n".join(rows) + "\n")
    signals = _signals(tmp_path, [f"{DAY2},TEST_USDT,BUY", f"{DAY2 + 5 * FIVE_MIN},TEST_USDT,BUY"])
    commands = tmp_path / "ops.csv"
    commands.write_text(f"{DAY2 + 4 * FIVE_MIN},release,seen the loss\n")
    exchange = PaperExchange(slippage_pct=D(0), fee_rate=D(0), failure_rate=D(0), max_volume_share=D(0))
    backtest = Backtest(
        lambda: SignalsFile(path=signals),
        PARAMETERS,
        D(10000),
        exchange,
        D("0.25"),
        operator=OperatorSchedule(read_operator_commands(commands)),
    )
    result = backtest.run(read_bars([str(path)]))
    assert [(o.purpose, o.status, o.price) for o in result.orders] == [
        ("entry", "FILLED", D(100)),
        ("drawdown_close", "FILLED", D(40)),
        ("entry", "FILLED", D(40)),
    ]
    assert result.trading_state == "ACTIVE"
    states = [(a["timestamp"], a["level"], a["message"]) for a in result.alerts if a["code"] == "TRADING_STATE"]
    assert states == [
        (
            DAY2 + 3 * FIVE_MIN,
            "CRITICAL",
            "Trading HALTED: Daily drawdown 6.0000% reached the limit 5.00%. Trading halted. (risk)",
        ),
        (
            DAY2 + 4 * FIVE_MIN,
            "INFO",
            "Trading ACTIVE: seen the loss; the daily drawdown restarts from the equity at release 9,400.00 USDT "
            "(was 10,000.00 USDT) (operator file ops.csv)",
        ),
    ]
    # The report: the JSON keeps its keys and carries the state changes; the HTML page lists them.
    from trading.backtest_report import html_report, report

    document = report(result, strategy="signals_file", parameters={}, files=[str(path)])
    assert [a["message"] for a in document["alerts"] if a["code"] == "TRADING_STATE"] == [s[2] for s in states]
    page = html_report(document)
    assert "<h2>Trading state</h2>" in page and "Trading ACTIVE: seen the loss; the daily drawdown restarts" in page


def test_a_gap_in_every_file_is_stale_at_the_times_the_beat_would_have_run(tmp_path):
    # AAA and BBB (1m) both miss the candles opened at 00:10-00:29: the market time jumps from 00:10 (the close of
    # the candles opened at 00:09) to 00:31 (the close of those opened at 00:30), with no candle time in between.
    # Live, the beat would have found both stale once their age exceeded DATA_STALE_TIMEOUT_SEC 30 s and a candle
    # was due: last seen 00:10, stale from 00:10 + max(30 s + 1 ms, 60 s) = 00:11 (stale.stale_onsets).
    # AAA's BUY on its candle opened at 00:09 is decided at 00:10: 0.25 × 10,000 / 100 = 25 AAA, waiting for the
    # open of AAA's next candle. At 00:11 the watch: one DATA_STALE alert for both, PAUSED, and AAA's order can get
    # no price (its data stale): EXPIRED at 00:11, its 2,500 free again.
    # At 00:31 the candles opened at 00:30 are in: every symbol is fresh again, the pause ends before any decision
    # of 00:31 (DATA_RECOVERED), and BBB's BUY on its candle opened at 00:30 is judged on that candle's age,
    # 00:31 − 00:31 = 0 s ≤ 30 s: fresh, approved (0.25 × 10,000 / 50 = 50 BBB) and filled at the next open, 50.
    hours = [i for i in range(40) if not 10 <= i < 30]
    aaa = [(DAY2 + i * MINUTE, 100, 100) for i in hours]
    bbb = [(DAY2 + i * MINUTE, 50, 50) for i in hours]
    files = [_write_rows(tmp_path / "AAA_USDT-1m.csv", aaa), _write_rows(tmp_path / "BBB_USDT-1m.csv", bbb)]
    signals = _signals(tmp_path, [f"{DAY2 + 9 * MINUTE},AAA_USDT,BUY", f"{DAY2 + 30 * MINUTE},BBB_USDT,BUY"])
    exchange = PaperExchange(slippage_pct=D(0), fee_rate=D(0), failure_rate=D(0), max_volume_share=D(0))
    parameters = {**PARAMETERS, "MAX_POSITION_PCT": D("0.25")}
    series: dict = {}
    bars = read_bars(files, None, series)
    backtest = Backtest(lambda: SignalsFile(path=signals), parameters, D(10000), exchange, D("0.25"))
    backtest.watched = series
    result = backtest.run(bars)
    assert [(o.symbol, o.status, o.filled_quantity, o.price, o.timestamp) for o in result.orders] == [
        ("AAA_USDT", "EXPIRED", D(0), None, DAY2 + 10 * MINUTE),
        ("BBB_USDT", "FILLED", D(50), D(50), DAY2 + 31 * MINUTE),
    ]
    watch = [(a["timestamp"], a["code"], a["message"]) for a in result.alerts if a["code"] != "TRADING_STATE"]
    assert watch == [
        (
            DAY2 + 11 * MINUTE,
            "DATA_STALE",
            "No market data for AAA_USDT, BBB_USDT for more than 30s; new orders paused",
        ),
        (
            DAY2 + 11 * MINUTE,
            "ORDER_EXPIRED",
            "BUY 25 AAA_USDT EXPIRED: no price after its decision: AAA_USDT's market data is stale",
        ),
        (DAY2 + 31 * MINUTE, "DATA_RECOVERED", "Market data fresh again; trading resumed"),
    ]
    states = [(e["timestamp"], e["reason"]) for e in result.risk_events if e["decision"] == "STATE_CHANGE"]
    assert states == [
        (DAY2 + 11 * MINUTE, "ACTIVE → PAUSED: data stale: AAA_USDT, BBB_USDT"),
        (DAY2 + 31 * MINUTE, "PAUSED → ACTIVE: market data fresh again"),
    ]
    fresh = [e for e in result.risk_events if e.get("signal_id", "").startswith("BBB_USDT")]
    assert [(e["decision"], D(e["approved_quantity"])) for e in fresh] == [("APPROVE", D(50))]
    assert "data_stale" in fresh[0]["details"]["checks"]
    assert result.final_equity == D(10000) and result.trading_state == "ACTIVE"


def test_stale_onsets_are_the_times_between_two_candle_times_where_data_turns_stale():
    # 1m AAA seen at 0, 5m FIVE seen at 0, 30 s timeout: AAA is stale from max(30,001, 60,000) = 60,000 ms on,
    # FIVE from 300,000 on. Between 0 and 400,000 both fall; between 0 and 60,000 neither (60,000 is the next
    # candle time itself, checked with its candles in). A timeout of 90 s ends between two 1m candle times: AAA
    # stale from 90,001. A file that ended at 30,000 expects nothing more (its end is said as ENDED, not stale).
    series = {"AAA": stale.CandleSeries(MINUTE), "FIVE": stale.CandleSeries(5 * MINUTE)}
    seen = {"AAA": 0, "FIVE": 0}
    assert stale.stale_onsets(seen, series, 0, 400_000, 30_000, series) == [60_000, 300_000]
    assert stale.stale_onsets(seen, series, 0, 60_000, 30_000, series) == []
    assert stale.stale_onsets(seen, ["AAA"], 0, 120_000, 90_000, series) == [90_001]
    ended = {"AAA": stale.CandleSeries(MINUTE, last_ms=30_000)}
    assert stale.stale_onsets(seen, ["AAA"], 0, 400_000, 30_000, ended) == []

"""Every risk layer on hand-worked numbers, at and just past each boundary (SPEC §4, defaults)."""

from decimal import Decimal as D

import pytest

from ground import amounts
from marketdata.validation import CandleRow
from risk.engine import (
    MIN_NOTIONAL,
    AccountState,
    LotStop,
    MarketSnapshot,
    ProposedOrder,
    RiskEngine,
    snapshot_from_candles,
    snapshot_from_rows,
    stop_price,
)
from risk.parameters import PARAMETER_SPECS

PARAMS = {name: spec.default for name, spec in PARAMETER_SPECS.items()}
NOW = 1_730_443_200_000
ENGINE = RiskEngine(fee_rate=D("0.001"), slippage_pct=D("0.0005"))


def account(cash="10000", positions=None, prices=None, state="ACTIVE", day_start=None, **extra) -> AccountState:
    positions = {k: D(v) for k, v in (positions or {}).items()}
    prices = {"ETH_USDT": D("100"), **{k: D(v) for k, v in (prices or {}).items()}}
    start = D(day_start) if day_start else None
    return AccountState(state, D(cash), positions, prices, start, **extra)


def market(price="100", spread=None, avg=None, last=NOW) -> MarketSnapshot:
    return MarketSnapshot(D(price), D(spread) if spread else None, D(avg) if avg else None, last)


def buy(qty="10", price="100", symbol="ETH_USDT") -> ProposedOrder:
    return ProposedOrder(symbol, "BUY", D(qty), D(price))


def decide(state, order=None, mkt=None, **params):
    return ENGINE.evaluate(
        state, order or buy(), mkt or market(), {**PARAMS, **{k: D(v) for k, v in params.items()}}, NOW
    )


# Layer 1 — daily drawdown: (day start − equity) / day start ≥ 0.05 halts and closes everything.
def test_drawdown_exactly_at_the_limit_halts_and_closes():
    # 10,000 at the day start, 9,500 now: (10,000 − 9,500) / 10,000 = 0.05 = limit.
    decision = decide(account(cash="9500", day_start="10000"))
    assert (decision.action, decision.layer, decision.state_change, decision.close_positions) == (
        "REJECT",
        "drawdown",
        "HALTED",
        True,
    )
    assert decision.alerts[0].level == "CRITICAL" and decision.alerts[0].code == "RISK_LIMIT"


def test_drawdown_just_below_the_limit_passes():
    # 9,500.01 → (10,000 − 9,500.01) / 10,000 = 0.049999 < 0.05; the entry passes (trimmed to 10 % of 9,500.01).
    decision = decide(account(cash="9500.01", day_start="10000"))
    assert decision.approved and "drawdown" in decision.checks and decision.state_change is None


def test_drawdown_counts_open_positions_at_market():
    # cash 8,500 + 10 ETH × 100 = 9,500 equity → 5 % down on 10,000.
    assert decide(account(cash="8500", positions={"ETH_USDT": "10"}, day_start="10000")).layer == "drawdown"


def test_the_halt_stays_after_midnight():
    # New day: day-start equity is re-based (no drawdown any more), but HALTED needs a person.
    decision = decide(account(cash="9500", day_start="9500", state="HALTED"))
    assert decision.action == "REJECT" and decision.layer == "state" and decision.state_change is None


# Layer 2 — market anomaly circuit breaker.
def test_slippage_at_the_limit_passes_and_just_past_pauses():
    # |101 − 100| / 100 = 0.01 = MAX_SLIPPAGE_PCT: not above.
    assert decide(account(prices={"ETH_USDT": "101"}), mkt=market("101")).approved
    # |101.01 − 100| / 100 = 0.0101 > 0.01.
    decision = decide(account(prices={"ETH_USDT": "101.01"}), mkt=market("101.01"))
    assert (decision.layer, decision.state_change) == ("circuit_breaker", "PAUSED")
    assert decision.alerts[0].code == "CIRCUIT_BREAKER" and decision.alerts[0].level == "WARNING"


def test_spread_at_five_times_average_passes_and_just_past_pauses():
    assert decide(account(), mkt=market(spread="0.05", avg="0.01")).approved  # 0.05 = 5 × 0.01
    assert decide(account(), mkt=market(spread="0.0501", avg="0.01")).layer == "circuit_breaker"


def test_paused_blocks_entries_but_lets_exits_through():
    paused = account(positions={"ETH_USDT": "3"}, state="PAUSED")
    assert decide(paused).layer == "state"
    sell = decide(paused, ProposedOrder("ETH_USDT", "SELL", D("3"), D("100")))
    assert sell.action == "APPROVE" and sell.quantity == D("3")


def test_halted_blocks_exits_too():
    halted = account(positions={"ETH_USDT": "3"}, state="HALTED")
    assert decide(halted, ProposedOrder("ETH_USDT", "SELL", D("3"), D("100"))).action == "REJECT"


# Layer 3 — data stale: DATA_STALE_TIMEOUT_SEC = 30.
def test_data_exactly_30s_old_passes_and_older_is_refused():
    assert decide(account(), mkt=market(last=NOW - 30_000)).approved
    decision = decide(account(), mkt=market(last=NOW - 30_001))
    assert decision.layer == "data_stale" and "30.0s ago" in decision.reasons[0]


# Layer 4 — total exposure: MAX_EXPOSURE_PCT 0.50 of equity.
def test_exposure_at_the_limit_blocks_new_entries():
    # 50 BTC at 100 = 5,000 of equity 5,000 + 5,000 = 10,000 → exposure 5,000 = 0.5 × 10,000.
    state = account(cash="5000", positions={"BTC_USDT": "50"}, prices={"BTC_USDT": "100"})
    decision = decide(state)
    assert decision.layer == "exposure" and decision.alerts[0].level == "INFO"


def test_exposure_just_below_the_limit_trims_to_the_room_left():
    # 4,990 exposure of equity 10,000: the room is 10 → 10 / 100 = 0.1 ETH (above the 5 USDT minimum order value).
    state = account(cash="5010", positions={"BTC_USDT": "49.9"}, prices={"BTC_USDT": "100"})
    decision = decide(state)
    assert (decision.action, decision.layer, decision.quantity) == ("TRIM", "exposure", D("0.1"))


def test_an_entry_trimmed_below_the_minimum_order_value_is_not_placed():
    # 4,999.99 exposure: the room is 0.01 → 0.0001 ETH ≈ 0.01 USDT, a dust order MEXC would refuse (minimum 5 USDT).
    state = account(cash="5000.01", positions={"BTC_USDT": "49.9999"}, prices={"BTC_USDT": "100"})
    decision = decide(state)
    assert (decision.action, decision.layer, decision.quantity) == ("REJECT", "min_notional", D(0))
    assert "below the minimum order value 5.00 USDT" in decision.reasons[0] and "exposure limit" in decision.reasons[0]
    # 0.05 ETH at 100 = 5 USDT: exactly the minimum goes through
    assert decide(account(), buy(qty="0.05")).action == "APPROVE"
    # a quote without a known minimum (an engine told none) trims to the dust as before
    no_minimum = RiskEngine(fee_rate=D("0.001"), slippage_pct=D("0.0005"), min_notional={})
    trimmed = no_minimum.evaluate(state, buy(), market(), PARAMS, NOW)
    assert (trimmed.action, trimmed.quantity) == ("TRIM", D("0.0001"))


@pytest.mark.parametrize(
    ("symbol", "price", "minimum", "shown"),
    [("ETH_BTC", "0.05", "0.0001", "0.00010000 BTC"), ("LINK_ETH", "0.004", "0.002", "0.00200000 ETH")],
)
def test_coin_quoted_entries_below_their_quotes_minimum_are_not_placed(symbol, price, minimum, shown):
    """BTC- and ETH-quoted markets have a minimum order value too (issue 22: paper placed any dust order there)."""
    below = D(minimum) * D("0.99") / D(price)  # just under the minimum, after no trim
    state = account(cash="1", prices={symbol: price})
    decision = decide(state, buy(qty=str(below.quantize(D("0.00000001"))), price=price, symbol=symbol), market(price))
    assert (decision.action, decision.layer, decision.quantity) == ("REJECT", "min_notional", D(0))
    assert f"below the minimum order value {shown}: not placed" in decision.reasons[0]
    at = D(minimum) / D(price)
    assert decide(state, buy(qty=str(at), price=price, symbol=symbol), market(price)).action == "APPROVE"
    assert MIN_NOTIONAL[amounts.quote_of(symbol)] == D(minimum)


def test_exposure_above_80_percent_of_the_limit_raises_a_critical_alert():
    # Limit 5,000; 80 % = 4,000. 3,000 held + 1,000 new = 4,000: not above → no alert.
    at = decide(account(cash="7000", positions={"BTC_USDT": "30"}, prices={"BTC_USDT": "100"}))
    assert at.approved and not [a for a in at.alerts if a.level == "CRITICAL"]
    # 3,000.01 held (equity 10,000.01, position cap 1,000.001 → 10 ETH fits): 4,000.01 > 0.8 × 5,000.005.
    above = decide(account(cash="7000", positions={"BTC_USDT": "30.0001"}, prices={"BTC_USDT": "100"}))
    assert above.approved and [a for a in above.alerts if a.level == "CRITICAL" and a.code == "RISK_LIMIT"]


# Layer 5 — single position: MAX_POSITION_PCT 0.10 of equity.
def test_position_exactly_at_the_cap_is_approved():
    # 10 × 100 = 1,000 = 0.10 × 10,000.
    decision = decide(account())
    assert (decision.action, decision.quantity) == ("APPROVE", D("10"))


def test_position_just_past_the_cap_is_trimmed_with_a_warning():
    decision = decide(account(), buy("10.00000001"))
    assert (decision.action, decision.layer, decision.quantity) == ("TRIM", "position", D("10"))
    assert decision.alerts[-1].level == "WARNING" and decision.alerts[-1].code == "RISK_LIMIT"


def test_existing_holding_counts_against_the_cap():
    # Holding 4 ETH (400) of equity 10,000: room 1,000 − 400 = 600 → 6 ETH.
    decision = decide(account(cash="9600", positions={"ETH_USDT": "4"}))
    assert decision.quantity == D("6")


def test_cash_bounds_the_entry_including_slippage_and_fee():
    # 500 cash / (100 × 1.0005 × 1.001) = 4.99250...: rounded down to 8 places.
    decision = decide(
        account(cash="500", positions={"BTC_USDT": "95"}, prices={"BTC_USDT": "100"}),
        MAX_EXPOSURE_PCT="1.0",
        MAX_POSITION_PCT="0.25",
    )
    expected = (D("500") / (D("100") * D("1.0005") * D("1.001"))).quantize(D("1e-8"), rounding="ROUND_DOWN")
    assert (decision.layer, decision.quantity) == ("cash", expected)


# Layer 6 — stop-loss per trade: STOP_LOSS_PCT 0.02 below the entry.
def test_stop_loss_fires_at_the_stop_and_not_above():
    # Entry 100 → stop 98.
    stop = stop_price(D("100"), PARAMS["STOP_LOSS_PCT"])
    holding = dict(positions={"ETH_USDT": "5"}, lots={"ETH_USDT": [LotStop("T1", D("5"), stop)]})
    exits = ENGINE.stop_loss_exits(account(prices={"ETH_USDT": "98"}, **holding))
    assert [(e.symbol, e.quantity, e.purpose, e.trade_id) for e in exits] == [("ETH_USDT", D("5"), "stop_loss", "T1")]
    assert ENGINE.stop_loss_exits(account(prices={"ETH_USDT": "98.0001"}, **holding)) == []


def test_a_stop_message_never_shows_the_stop_rounded_up():
    # Entry 110.055 × (1 − 0.02) = 107.8539 (stored): to 6 significant digits, to nearest that would read 107.854, a
    # stop above the one stored; the message rounds it down: 107.853.
    stop = stop_price(D("110.055"), PARAMS["STOP_LOSS_PCT"])
    assert stop == D("107.8539")
    holding = dict(positions={"ETH_USDT": "5"}, lots={"ETH_USDT": [LotStop("T1", D("5"), stop)]})
    [exit_order] = ENGINE.stop_loss_exits(account(prices={"ETH_USDT": "107.8"}, **holding))
    assert exit_order.reason == "ETH_USDT at 107.80 USDT is at or below the stop 107.853 USDT of trade T1"


def test_a_stop_is_rounded_down_below_the_entry_at_tiny_prices():
    # Prices are stored to 12 places. Entry 1e-11 × (1 − 0.02) = 0.98e-11 = 9.8e-12: to nearest that is 1.0e-11, the
    # entry itself (a stop that fires at once); rounded down it is 9e-12, below the entry. Entry 3e-12 × 0.98 =
    # 2.94e-12 → 2e-12. Where no rounding is needed nothing changes: 100 × 0.98 = 98.
    assert stop_price(D("1e-11"), D("0.02")) == D("9e-12") < D("1e-11")
    assert stop_price(D("3e-12"), D("0.02")) == D("2e-12")
    assert stop_price(D("100"), D("0.02")) == D(98)


# Throttle and cool-down.
def test_throttle_at_30_orders_a_minute():
    assert decide(account(orders_last_minute=29)).approved
    assert decide(account(orders_last_minute=30)).layer == "throttle"


def test_cooldown_of_15_minutes_after_a_stop():
    assert decide(account(last_stop_ms={"ETH_USDT": NOW - 899_999})).layer == "cooldown"
    assert decide(account(last_stop_ms={"ETH_USDT": NOW - 900_000})).approved
    assert decide(account(last_stop_ms={"BTC_USDT": NOW})).approved  # per symbol


# Bad input: a rejection with a reason, never an exception.
@pytest.mark.parametrize(
    "state,order,mkt,layer",
    [
        (account(), buy(price="NaN"), market(), "input"),
        (account(), buy(), MarketSnapshot(None), "input"),  # unknown symbol: no market data
        (account(), buy(qty="0"), market(), "input"),
        (account(), buy(qty="-1"), market(), "input"),
        (account(cash="0"), buy(), market(), "input"),
        (account(), ProposedOrder("ETH_USDT", "SELL", D("1"), D("100")), market(), "position"),  # nothing held
    ],
    ids=["nan price", "unknown symbol", "zero quantity", "negative quantity", "zero equity", "sell without position"],
)
def test_bad_input_is_rejected_with_a_reason(state, order, mkt, layer):
    decision = ENGINE.evaluate(state, order, mkt, PARAMS, NOW)
    assert decision.action == "REJECT" and decision.layer == layer and decision.reasons[0]


# The screener's watch list: only watched (or replayed/simulated, whitelisted) symbols get new entries.
def test_an_entry_on_a_symbol_off_the_watch_list_is_rejected():
    off_list = MarketSnapshot(D("100"), None, None, NOW, tradable=False)
    decision = decide(account(), mkt=off_list)
    assert (decision.action, decision.layer) == ("REJECT", "watchlist")
    assert "ETH_USDT is not on the watch list" in decision.reasons[0]


def test_an_exit_on_a_symbol_off_the_watch_list_still_goes():
    off_list = MarketSnapshot(D("100"), None, None, NOW, tradable=False)
    held = account(cash="9000", positions={"ETH_USDT": "10"})
    decision = decide(held, ProposedOrder("ETH_USDT", "SELL", D("10"), D("100")), off_list)
    assert decision.approved and decision.quantity == D("10")


def test_an_entry_not_yet_filled_counts_in_the_exposure_but_is_not_held():
    # 10 BTC held at 100 and 5 more approved, not filled yet (entering, estimated cost 500 out of the 1,500 cash):
    # equity 1,000 cash + 500 entering cost + 1,000 held = 2,500, whatever the price does before the fill; the
    # exposure 1,500 (held and entering at 100) reaches MAX_EXPOSURE_PCT 0.6 × 2,500 = 1,500, so the next entry is
    # blocked — counting only what is held (1,000) it would pass; an exit still sells only the 10 held.
    from risk.engine import AccountState, MarketSnapshot, ProposedOrder, RiskEngine, proposed_quantity

    def account(price):
        return AccountState(
            "ACTIVE",
            D(1000),
            {"BTC": D(10)},
            {"BTC": D(price)},
            entering={"BTC": D(5)},
            entering_cost=D(500),
        )

    state = account(100)
    assert state.exposure == D(1500) and state.equity == D(2500)
    assert state.position_value("BTC") == D(1500)
    assert account(70).equity == D(2200)  # only the 10 held lost 30 each: the entry's 500 stays as it was
    parameters = {**PARAMS, "MAX_EXPOSURE_PCT": D("0.6")}
    market = MarketSnapshot(price=D(100), last_data_ms=NOW)
    decision = RiskEngine().evaluate(state, ProposedOrder("BTC", "BUY", D(1), D(100)), market, parameters, NOW)
    assert (decision.action, decision.layer) == ("REJECT", "exposure")
    assert proposed_quantity("SELL", state, "BTC", D(100), D("0.1")) == D(10)


def test_the_backtests_snapshot_of_rows_reads_each_rows_own_spread():
    """The backtest's snapshot (spreads computed when read) equals ``snapshot_from_candles``: a 1m and a 5m candle
    of one symbol with the same open time are two rows with two spreads (0.02 and 0.1 here); one snapshot after the
    other never gives one the other's."""
    one = CandleRow(NOW, D(100), D(101), D(99), D(100), D(1))  # range 2 / close 100 = 0.02
    five = CandleRow(NOW, D(100), D(105), D(95), D(100), D(5))  # the same open time: 10 / 100 = 0.1
    older = [CandleRow(NOW - 60_000 * i, D(100), D(100 + i), D(100), D(100), D(1)) for i in range(1, 6)]
    first = snapshot_from_rows([one, *older], NOW)
    second = snapshot_from_rows([five, one, *older], NOW)
    for got, newest_first in ((first, [one, *older]), (second, [five, one, *older])):
        expected = snapshot_from_candles([(NOW, row.high, row.low, row.close) for row in newest_first])
        assert (got.price, got.spread_pct, got.avg_spread_pct, got.last_data_ms) == (
            expected.price,
            expected.spread_pct,
            expected.avg_spread_pct,
            expected.last_data_ms,
        )
    # the older rows' spreads are 0.01 … 0.05; the first window's average is theirs, 0.15 / 5 = 0.03
    assert (first.spread_pct, first.avg_spread_pct) == (D("0.02"), D("0.03"))
    # the second's: (0.02 + 0.01 + 0.02 + 0.03 + 0.04 + 0.05) / 6 = 0.17 / 6
    assert (second.spread_pct, second.avg_spread_pct) == (D("0.1"), D("0.17") / 6)


@pytest.mark.parametrize(("symbol", "said"), [("ETH_USDT", "an ETH_USDT entry"), ("BTC_USDT", "a BTC_USDT entry")])
def test_no_room_says_its_article_as_english_does(symbol, said):
    # a positive equity, but too little cash for the smallest quantity at 100
    held = account(cash="0.0000001", prices={symbol: "100"})
    decision = decide(held, buy(symbol=symbol))
    assert decision.action == "REJECT", decision
    assert f"no room for {said}: the position limit leaves nothing" in decision.reasons, decision.reasons

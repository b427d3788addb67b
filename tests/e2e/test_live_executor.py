"""The live executor against a local fake MEXC spot server: real ccxt, real HTTP, real HMAC signatures.

No database. Nothing here talks to the real MEXC: MEXC_REST_URL points at the fake on 127.0.0.1.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests

from execution.live import (
    ExchangeUnreachable,
    LiveExecutor,
    NotSent,
    OrderOutcomeUnknown,
    build_exchange,
    live_trading_enabled,
    system_symbol_to_ccxt,
)
from tests.support import processes
from tests.support.fake_mexc_trading import FakeMexcTrading

API_KEY = "mx0vglFAKEKEYdoNotLeak7"
API_SECRET = "FAKEsecretNeverInLogs0123456789abcdef"


@pytest.fixture
def fake():
    server = FakeMexcTrading(api_key=API_KEY, api_secret=API_SECRET).start()
    yield server
    server.stop()


@pytest.fixture
def live_settings(settings, fake):
    settings.LIVE_TRADING = True
    settings.MEXC_REST_URL = fake.url
    settings.MEXC_API_KEY = API_KEY
    settings.MEXC_API_SECRET = API_SECRET
    settings.LIVE_ORDER_TIMEOUT_SEC = 1.0
    return settings


@pytest.fixture
def executor(live_settings) -> LiveExecutor:
    return LiveExecutor()


def signed_query(params: dict, secret: str = API_SECRET) -> str:
    query = urlencode(params)
    return f"{query}&signature={FakeMexcTrading(api_secret=secret).sign(query)}"


def settings_dir() -> str:
    return str(Path(__file__).resolve().parent.parent.parent)


def now_ms() -> int:
    return int(time.time() * 1000)


# --- success -----------------------------------------------------------------------------------


def test_market_buy_is_filled_once_with_a_valid_signature(executor, fake):
    fill = executor.submit("cdb-buy-1", "ETH_USDT", "BUY", Decimal("0.25"))

    assert fill.status == "FILLED", fill
    assert fill.quantity == Decimal("0.25") and isinstance(fill.quantity, Decimal)
    assert fill.price == Decimal("2000") and isinstance(fill.price, Decimal)
    assert fill.fee == Decimal("0.25") and isinstance(fill.fee, Decimal)  # 500 USDT x 0.05 % taker
    assert fill.order_id.startswith("C02__") and fill.reason == ""

    [received] = fake.received_orders
    assert received.params["newClientOrderId"] == "cdb-buy-1"
    assert received.params["type"] == "MARKET" and received.params["side"] == "BUY"
    assert received.params["symbol"] == "ETHUSDT" and received.params["quantity"] == "0.25"
    assert received.api_key == API_KEY and received.signature_valid and received.accepted
    assert executor.balance()["ETH"] == Decimal("1.25")


def test_sell_fee_charged_in_base_asset_is_converted_to_quote(executor, fake):
    fake.fee_in = "base"
    fill = executor.submit("cdb-sell-1", "ETH_USDT", "SELL", Decimal("0.5"))

    assert fill.status == "FILLED"
    assert fill.fee == Decimal("0.5")  # 0.00025 ETH at 2000 USDT
    assert executor.balance()["USDT"] == Decimal("11000")


def test_partial_market_fill_reports_the_executed_part(executor, fake):
    fake.fill_ratio = Decimal("0.5")
    fill = executor.submit("cdb-part-1", "ETH_USDT", "BUY", Decimal("0.25"))

    assert fill.status == "PARTIALLY_FILLED"
    assert fill.quantity == Decimal("0.125") and fill.price == Decimal("2000")
    assert fill.fee == Decimal("0.125")
    assert "0.125 of 0.25" in fill.reason


# --- signatures --------------------------------------------------------------------------------


def test_fake_signs_like_the_mexc_documentation():
    # MEXC spot v3 "SIGNED Endpoint Examples for POST /api/v3/order", examples 2 and 3 (the signature printed
    # for example 1 does not match its own openssl command; examples 2 and 3 do).
    fake = FakeMexcTrading(api_secret="45d0b3c26f2644f19bfb98b07741b2f5")
    as_one_string = "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=11&recvWindow=5000&timestamp=1644489390087"
    assert fake.sign(as_one_string) == "fd3e4e8543c5188531eb7279d68ae7d26a573d0fc5ab0d18eb692451654d837a"
    query_then_body = (
        "symbol=BTCUSDT&side=BUY&type=LIMIT" + "quantity=1&price=11&recvWindow=5000&timestamp=1644489390087"
    )
    assert fake.sign(query_then_body) == "d1a676610ceb39174c8039b3f548357994b2a34139a8addd33baadba65684592"


def test_fake_refuses_bad_signatures_keys_and_timestamps(fake):
    account = f"{fake.url}/api/v3/account"
    headers = {"X-MEXC-APIKEY": API_KEY}
    params = {"recvWindow": 5000, "timestamp": now_ms()}

    assert requests.get(f"{account}?{signed_query(params)}", headers=headers, timeout=5).status_code == 200

    tampered = signed_query(params).replace("recvWindow=5000", "recvWindow=4000")
    answer = requests.get(f"{account}?{tampered}", headers=headers, timeout=5)
    assert answer.status_code == 400
    assert answer.json() == {"code": 700002, "msg": "Signature for this request is not valid."}

    wrong_secret = requests.get(f"{account}?{signed_query(params, 'not-the-secret')}", headers=headers, timeout=5)
    assert wrong_secret.json()["code"] == 700002

    no_key = requests.get(f"{account}?{signed_query(params)}", timeout=5)
    assert no_key.status_code == 400 and no_key.json()["code"] == 400

    other_key = requests.get(f"{account}?{signed_query(params)}", headers={"X-MEXC-APIKEY": "mx0other"}, timeout=5)
    assert other_key.json()["code"] == 10072

    stale = {"recvWindow": 5000, "timestamp": now_ms() - 60_000}
    answer = requests.get(f"{account}?{signed_query(stale)}", headers=headers, timeout=5)
    assert answer.json()["code"] == 700003

    order = {"symbol": "ETHUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.1", "timestamp": now_ms()}
    bad_order = signed_query(order, "not-the-secret")
    answer = requests.post(f"{fake.url}/api/v3/order?{bad_order}", headers=headers, timeout=5)
    assert answer.json()["code"] == 700002
    [received] = fake.received_orders
    assert not received.signature_valid and not received.accepted
    assert fake.placed_orders() == []


def test_fake_accepts_params_split_between_query_and_body(fake):
    """totalParams is the query string concatenated with the body, without an '&' (MEXC example 3)."""
    query = urlencode({"symbol": "ETHUSDT", "side": "BUY", "type": "MARKET"})
    body = urlencode({"quantity": "0.1", "newClientOrderId": "split-1", "recvWindow": 5000, "timestamp": now_ms()})
    signature = fake.sign(query + body)
    answer = requests.post(
        f"{fake.url}/api/v3/order?{query}",
        data=f"{body}&signature={signature}",
        headers={"X-MEXC-APIKEY": API_KEY, "Content-Type": "application/x-www-form-urlencoded"},
        timeout=5,
    )
    assert answer.status_code == 200, answer.text
    assert [o.params["newClientOrderId"] for o in fake.received_orders if o.accepted] == ["split-1"]


def test_wrong_secret_fails_clearly_and_places_nothing(live_settings, fake):
    live_settings.MEXC_API_SECRET = "a-wrong-secret-value"
    executor = LiveExecutor()

    fill = executor.submit("cdb-badsig-1", "ETH_USDT", "BUY", Decimal("0.25"))

    assert fill.status == "FAILED"
    assert "700002" in fill.reason and "Signature for this request is not valid" in fill.reason
    assert fake.placed_orders() == []
    assert "a-wrong-secret-value" not in fill.reason

    # the order endpoint itself refuses the bad signature too
    with pytest.raises(Exception, match="700002"):
        executor.exchange.create_order("ETH/USDT", "market", "buy", "0.25", None, {"clientOrderId": "cdb-badsig-2"})
    [received] = fake.received_orders
    assert not received.signature_valid and received.error_code == 700002
    assert fake.placed_orders() == []


# --- refusals and local checks -----------------------------------------------------------------


def test_insufficient_balance_is_rejected_with_the_exchange_reason(executor, fake):
    fake.balances["USDT"] = Decimal("10")

    fill = executor.submit("cdb-poor-1", "ETH_USDT", "BUY", Decimal("0.25"))

    assert fill.status == "REJECTED"
    assert "insufficient balance" in fill.reason and "30004" in fill.reason and "Insufficient position" in fill.reason
    assert fill.quantity == 0 and fill.price is None
    [received] = fake.orders_for("cdb-poor-1")
    assert not received.accepted and received.error_code == 30004
    assert fake.placed_orders() == []


def test_quantity_is_rounded_down_to_the_amount_step(executor, fake):
    fill = executor.submit("cdb-round-1", "ETH_USDT", "BUY", Decimal("0.123456789"))

    assert fill.status == "FILLED"
    assert fill.quantity == Decimal("0.1234")
    [received] = fake.orders_for("cdb-round-1")
    assert received.params["quantity"] == "0.1234"


@pytest.mark.parametrize(
    ("symbol", "quantity", "reference", "expected"),
    [
        ("ETH_USDT", "0.002", "2000", "order value 4 USDT is below the minimum notional 5 USDT for ETH/USDT"),
        ("ETH_USDT", "0.002", None, "order value 4 USDT is below the minimum notional 5 USDT for ETH/USDT"),
        ("ETH_USDT", "0.00009", "2000", "rounds down to 0 ETH, below the minimum order quantity 0.0001 ETH"),
        ("DOGE_USDT", "0.999", "0.15", "rounds down to 0.99 DOGE, below the minimum order quantity 1 DOGE"),
    ],
)
def test_below_the_market_minimum_is_rejected_without_an_order(executor, fake, symbol, quantity, reference, expected):
    price = Decimal(reference) if reference else None
    fill = executor.submit("cdb-small-1", symbol, "BUY", Decimal(quantity), reference_price=price)

    assert fill.status == "REJECTED"
    assert expected in fill.reason
    assert fake.received_orders == []
    assert ("POST", "/api/v3/order") not in fake.requests


def test_unknown_symbol_is_rejected_without_an_order(executor, fake):
    fill = executor.submit("cdb-sym-1", "NOPE_USDT", "BUY", Decimal("1"))

    assert fill.status == "REJECTED" and "unknown symbol NOPE_USDT" in fill.reason
    assert fake.received_orders == []


# --- timeouts and idempotency ------------------------------------------------------------------


def test_timeout_leaves_the_outcome_unknown_then_lookup_finds_it_and_resubmit_sends_nothing(executor, fake):
    fake.hang_seconds = 5.0  # the order is stored and filled, the answer comes after the client's 1 s timeout

    with pytest.raises(OrderOutcomeUnknown) as raised:
        executor.submit("cdb-hang-1", "ETH_USDT", "BUY", Decimal("0.25"))
    assert "RequestTimeout" in str(raised.value)
    assert len(fake.placed_orders()) == 1  # the exchange has it although the client saw no answer

    found = executor.lookup("cdb-hang-1", "ETH_USDT")
    assert found is not None and found.status == "FILLED"
    assert found.quantity == Decimal("0.25") and found.price == Decimal("2000") and found.fee == Decimal("0.25")

    fake.hang_seconds = 0.0
    again = executor.submit("cdb-hang-1", "ETH_USDT", "BUY", Decimal("0.25"))
    assert again == found
    assert len(fake.orders_for("cdb-hang-1")) == 1
    assert len(fake.placed_orders()) == 1


def test_redelivery_after_a_fill_returns_the_first_order(executor, fake):
    first = executor.submit("cdb-redo-1", "ETH_USDT", "BUY", Decimal("0.25"))
    second = executor.submit("cdb-redo-1", "ETH_USDT", "BUY", Decimal("0.25"))

    assert second == first
    assert len(fake.orders_for("cdb-redo-1")) == 1


def test_duplicate_refused_by_the_exchange_is_never_a_second_order(executor, fake):
    first = executor.submit("cdb-dup-1", "ETH_USDT", "BUY", Decimal("0.25"))
    fake.orders_invisible = True  # the exchange lags: queries do not show the order yet

    with pytest.raises(OrderOutcomeUnknown, match="duplicate"):
        executor.submit("cdb-dup-1", "ETH_USDT", "BUY", Decimal("0.25"))

    received = fake.orders_for("cdb-dup-1")
    assert [r.accepted for r in received] == [True, False] and received[1].error_code == -2010
    assert len(fake.placed_orders()) == 1
    fake.orders_invisible = False
    assert executor.lookup("cdb-dup-1", "ETH_USDT") == first


def test_lookup_of_an_unknown_order_is_none(executor, fake):
    assert executor.lookup("cdb-never-sent", "ETH_USDT") is None
    assert executor.lookup("cdb-never-sent", "NOPE_USDT") is None


def test_cancel_an_open_order_and_an_unknown_one(executor, fake):
    fake.add_open_order("ETHUSDT", "BUY", "0.25", "cdb-open-1")

    resting = executor.lookup("cdb-open-1", "ETH_USDT")
    assert resting.status == "PENDING" and "NEW" in resting.reason

    cancelled = executor.cancel("cdb-open-1", "ETH_USDT")
    assert cancelled.status == "FAILED" and "nothing filled (CANCELED)" in cancelled.reason
    assert executor.cancel("cdb-open-1", "ETH_USDT") == cancelled  # already final: the lookup answers
    assert executor.cancel("cdb-unknown", "ETH_USDT") is None


def test_unreachable_exchange_is_not_a_failure_and_nothing_is_sent(live_settings, fake):
    live_settings.MEXC_REST_URL = "http://127.0.0.1:9"  # discard port: connection refused
    executor = LiveExecutor()
    marked = []

    with pytest.raises(NotSent):  # the markets could not be read: nothing left, the order may be sent later
        executor.submit("cdb-down-1", "ETH_USDT", "BUY", Decimal("0.25"), before_sending=lambda: marked.append(1))
    assert marked == []
    with pytest.raises(ExchangeUnreachable):
        executor.lookup("cdb-down-1", "ETH_USDT")


# --- secrets -------------------------------------------------------------------------------------


def test_keys_never_reach_logs_fills_or_exceptions(live_settings, fake, caplog):
    caplog.set_level(logging.DEBUG)
    texts = []
    executor = LiveExecutor()
    texts.append(repr(executor))
    texts.append(executor.submit("cdb-secret-1", "ETH_USDT", "BUY", Decimal("0.25")).reason)
    fake.balances["USDT"] = Decimal("1")
    texts.append(executor.submit("cdb-secret-2", "ETH_USDT", "BUY", Decimal("0.25")).reason)
    fake.hang_seconds = 5.0
    with pytest.raises(OrderOutcomeUnknown) as raised:
        executor.submit("cdb-secret-3", "ETH_USDT", "SELL", Decimal("0.25"))
    texts.append(str(raised.value))
    fake.hang_seconds = 0.0
    live_settings.MEXC_API_SECRET = API_SECRET + "x"
    texts.append(LiveExecutor().submit("cdb-secret-4", "ETH_USDT", "BUY", Decimal("0.25")).reason)

    # ccxt's request log (headers included) was captured, with the key blanked
    assert any("X-MEXC-APIKEY" in r.getMessage() for r in caplog.records)
    assert "***" in caplog.text
    for text in [caplog.text, *texts]:
        assert API_KEY not in text
        assert API_SECRET not in text


# --- switch and helpers --------------------------------------------------------------------------


def test_live_trading_needs_the_switch_and_both_keys(settings):
    settings.LIVE_TRADING, settings.MEXC_API_KEY, settings.MEXC_API_SECRET = True, API_KEY, API_SECRET
    assert live_trading_enabled() is True
    settings.LIVE_TRADING = False
    assert live_trading_enabled() is False
    settings.LIVE_TRADING, settings.MEXC_API_KEY = True, ""
    assert live_trading_enabled() is False
    settings.MEXC_API_KEY, settings.MEXC_API_SECRET = API_KEY, ""
    assert live_trading_enabled() is False


def test_live_trading_is_off_by_default():
    """The project settings without LIVE_TRADING / keys in the environment: off, and the real MEXC base URL."""
    environment = {k: v for k, v in os.environ.items() if k not in ("LIVE_TRADING", "MEXC_API_KEY", "MEXC_API_SECRET")}
    code = (
        "import cdb_project.settings as s; "
        "print(s.LIVE_TRADING, repr(s.MEXC_API_KEY), repr(s.MEXC_API_SECRET), "
        "s.LIVE_ORDER_TIMEOUT_SEC, s.MEXC_REST_URL)"
    )
    out = processes.run(
        [sys.executable, "-c", code], env=environment, cwd=settings_dir(), capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[:3] == ["False", "''", "''"]
    assert float(out[3]) > 0 and out[4].startswith("http")


def test_an_open_order_found_on_resubmit_is_followed_not_resent(executor, fake):
    fake.add_open_order("ETHUSDT", "BUY", "0.25", "cdb-open-2")

    with pytest.raises(OrderOutcomeUnknown, match="not final in time: NEW"):
        executor.submit("cdb-open-2", "ETH_USDT", "BUY", Decimal("0.25"))
    assert fake.orders_for("cdb-open-2") == []


def test_exchange_is_spot_only_and_pointed_at_the_configured_url(live_settings, fake):
    exchange = build_exchange()
    assert exchange.urls["api"]["spot"] == {"public": fake.url, "private": fake.url}
    assert exchange.enableRateLimit and exchange.timeout == 1000
    markets = exchange.load_markets()
    assert set(markets) == {"ETH/USDT", "BTC/USDT", "DOGE/USDT"}
    assert all(m["spot"] for m in markets.values())
    assert ("GET", "/api/v3/capital/config/getall") not in fake.requests  # no withdraw-read endpoint


def test_symbols_are_converted_to_ccxt():
    assert system_symbol_to_ccxt("ETH_USDT") == "ETH/USDT"
    assert system_symbol_to_ccxt("ETH/USDT") == "ETH/USDT"


# --- what the exchange really does (issue 20) ---------------------------------------------------------------------


def test_a_rate_limit_is_waited_out_and_the_order_placed_once(executor, fake):
    fake.rate_limited, fake.retry_after_seconds = 1, 1  # the next signed request answers 429, Retry-After: 1
    started = time.monotonic()
    fill = executor.submit("cdb-429-1", "ETH_USDT", "BUY", Decimal("0.25"))
    assert fill.status == "FILLED" and time.monotonic() - started >= 1.0
    # The 429 hit the lookup before sending (placements wait it out the same way): one order, accepted.
    assert [r.accepted for r in fake.orders_for("cdb-429-1")] == [True]
    assert len(fake.placed_orders()) == 1


def test_fees_are_read_per_trade_in_their_own_currency(executor, fake):
    fake.fee_in, fake.trades_per_order = "received", 2
    buy = executor.submit("cdb-fee-1", "ETH_USDT", "BUY", Decimal("0.25"))
    assert (buy.quote_fee, buy.base_fee, buy.other_fees) == (Decimal(0), Decimal("0.000125"), ())
    assert buy.fee == Decimal("0.25")  # 0.000125 ETH valued at 2,000
    fake.fee_in, fake.prices["MXUSDT"], fake.balances["MX"] = "MX", "2.5", Decimal("5")
    sell = executor.submit("cdb-fee-2", "ETH_USDT", "SELL", Decimal("0.25"))
    assert sell.fee == 0 and sell.other_fees == (("MX", Decimal("0.1")),) and "0.1 MX" in sell.reason


def test_find_asks_again_for_an_order_that_shows_late(executor, fake):
    fake.visible_after_seconds = 0.6
    fake.hang_seconds = 2.0
    with pytest.raises(OrderOutcomeUnknown):
        executor.submit("cdb-late-1", "ETH_USDT", "BUY", Decimal("0.25"))
    assert executor.lookup("cdb-late-1", "ETH_USDT") is not None  # by now it shows
    fake.visible_after_seconds = 30.0
    assert executor.find("cdb-late-1", "ETH_USDT", attempts=2) is None
    asked = [r for r in fake.requests if r == ("GET", "/api/v3/order")]
    assert len(asked) >= 3


def test_sellable_is_the_smaller_of_wanted_and_free_and_names_dust(executor, fake):
    assert executor.sellable("ETH_USDT", Decimal("0.45427275"), Decimal("1")) == (Decimal("0.4542"), "")
    assert executor.sellable("ETH_USDT", Decimal("0.5"), Decimal("0.3")) == (Decimal("0.3000"), "")
    amount, problem = executor.sellable("ETH_USDT", Decimal("0.00007275"), Decimal("1"))
    assert amount == 0 and "below the minimum order quantity 0.0001 ETH" in problem

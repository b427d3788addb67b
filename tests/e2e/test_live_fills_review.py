"""Live trading after the review of issue 20: each defect the reviewer reproduced against the fake MEXC, kept as a
regression test (see tests/integration/test_live_fills.py for the scenarios of the issue itself and the helpers)."""

import os
import sys
from datetime import timedelta
from decimal import Decimal as D
from io import StringIO

import pytest
from aiohttp import web
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.utils import timezone

from dashboard.snapshot import status
from execution.accounting import Book
from execution.live import LiveExecutor, TradesUnavailable
from execution.live_book import book_exchange_fill
from execution.models import BalanceCheck, Order
from risk import live_order_service
from risk.models import Alert, TradingState
from risk.reconcile import reconcile_balances
from risk.state import halt
from tests.integration.test_live_fills import (  # the issue's own tests' helpers
    BOUGHT,
    assert_book_is_the_exchange,
    live_fake,
    publish_candles,
    publish_crossing,
    reconcile_pending,
)
from tests.support import processes
from tests.support.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def fake(settings, sma_cross):
    with live_fake(settings) as server:
        yield server


def lookups(fake) -> int:
    return len([r for r in fake.requests if r == ("GET", "/api/v3/order")])


def limit_my_trades(fake, answers: int, retry_after: str = "1") -> dict:
    """The next ``answers`` GET /api/v3/myTrades answer HTTP 429 with Retry-After (the fake restarted to route it)."""
    original, left = fake._my_trades, {"n": answers}

    async def limited(request, params, record):
        if left["n"] > 0:
            left["n"] -= 1
            response = web.json_response({"code": 429, "msg": "Too Many Requests"}, status=429)
            response.headers["Retry-After"] = retry_after
            return response
        return await original(request, params, record)

    fake.stop()
    fake._my_trades = limited
    fake.start()
    return left


# --- 1. a sent order is booked whatever the trading state -------------------------------------------------------


def test_a_halt_while_an_entrys_outcome_is_unknown_books_the_exchanges_fill(fake):
    fake.hang_seconds = 1.5  # filled on the exchange, the answer comes after the 1 s timeout
    order = publish_crossing()
    assert order.status == "PENDING" and order.sent_at is not None and fake.balances["ETH"] == BOUGHT
    fake.hang_seconds = 0.0
    halt("operator pause", "tester")
    reconcile_pending()
    order.refresh_from_db()
    assert order.status == "FILLED" and order.filled_quantity == BOUGHT  # not REJECTED by the halt
    assert TradingState.load().state == "HALTED" and len(fake.orders_for(order.client_order_id)) == 1
    assert_book_is_the_exchange(fake)


# --- 2. an exit sells what is there; dust only below the market's minimum --------------------------------------


def test_one_lagging_balance_read_does_not_turn_a_stop_loss_into_dust(fake):
    publish_crossing()
    fake.prices["ETHUSDT"] = "2150"
    fake.lagging_balances = [{"USDT": fake.balances["USDT"], "ETH": D("0")}]  # one stale read
    publish_candles(2150)
    stop = Order.objects.get(purpose=Order.Purpose.STOP_LOSS)
    assert stop.status == "FILLED" and stop.filled_quantity == BOUGHT  # read again before deciding
    assert not Alert.objects.filter(code__in=["EXIT_DUST", "EXIT_NOT_COVERED"]).exists()
    assert_book_is_the_exchange(fake)


def test_a_stop_loss_the_balance_does_not_cover_is_rejected_and_tried_again_on_the_next_candle(fake):
    publish_crossing()
    fake.prices["ETHUSDT"] = "2150"
    stale = {"USDT": fake.balances["USDT"], "ETH": D("0")}
    fake.lagging_balances = [stale, stale]  # the account view lags for both reads of this candle
    publish_candles(2150)
    first = Order.objects.get(purpose=Order.Purpose.STOP_LOSS)
    assert first.status == "REJECTED" and "tried again on the next candle" in first.reason  # not EXPIRED
    assert Alert.objects.get(code="EXIT_NOT_COVERED").level == "CRITICAL"
    assert fake.received_orders[1:] == []  # nothing sent for it
    publish_candles(2140, after=1)  # the next candle: a price newer than the rejected attempt's
    stops = list(Order.objects.filter(purpose=Order.Purpose.STOP_LOSS).order_by("id"))
    assert [s.status for s in stops] == ["REJECTED", "FILLED"] and stops[1].filled_quantity == BOUGHT
    assert fake.balances["ETH"] == 0
    assert_book_is_the_exchange(fake)


def test_a_full_exit_with_the_fee_charged_in_the_base_asset_is_resized_not_called_dust(fake):
    fake.fee_in = "base"  # on a SELL the commission comes on top, in ETH: selling all of it is refused (30004)
    publish_crossing()
    halt("close everything", "tester", close_positions=True)
    publish_candles(2200)
    close = Order.objects.get(purpose=Order.Purpose.OPERATOR_CLOSE)
    sent = [(r.params["quantity"], r.error_code) for r in fake.orders_for(close.client_order_id)]
    assert sent[0][1] == 30004 and sent[-1][1] is None and len(sent) == 2
    assert close.status == "FILLED" and close.filled_quantity == D(sent[-1][0]) < BOUGHT
    assert Alert.objects.get(code="EXIT_RESIZED").level == "CRITICAL"
    assert fake.balances["ETH"] < D("0.0001")  # what is left is below the market's minimum
    assert_book_is_the_exchange(fake)


# --- 3. rate limits waited out; a fee never guessed -------------------------------------------------------------


def test_a_rate_limited_trades_read_is_waited_out_and_the_base_fee_booked_as_such(fake):
    fake.fee_in = "received"
    limit_my_trades(fake, 3)
    entry = publish_crossing()
    assert entry.status == "FILLED" and entry.fees_by_asset == {"ETH": "0.00022725"}
    assert_book_is_the_exchange(fake)


def test_trades_that_cannot_be_read_leave_the_order_for_the_reconciliation_instead_of_a_guessed_fee(fake):
    fake.fee_in = "received"
    left = limit_my_trades(fake, 1000, retry_after="0")
    entry = publish_crossing()
    assert entry.status == "PENDING" and entry.fees == 0  # nothing booked on an estimate
    assert "trades cannot be read" in Alert.objects.get(code="ORDER_UNKNOWN").message
    left["n"] = 0
    reconcile_pending()
    entry.refresh_from_db()
    assert entry.status == "FILLED" and entry.fees_by_asset == {"ETH": "0.00022725"}
    assert len(fake.received_orders) == 1
    assert_book_is_the_exchange(fake)


def test_balance_and_ticker_reads_wait_out_a_rate_limit(fake):
    executor = live_order_service.live_executor()
    fake.rate_limited = 2  # the account read: answered 429 twice, then the balances
    assert executor.balances()["USDT"] == (D("10000"), D("0"))
    fake.stop()
    fake.retry_after_seconds = 0
    original, left = fake._ticker_price, {"n": 2}

    async def limited(request):
        if left["n"] > 0:
            left["n"] -= 1
            return web.json_response({"code": 429, "msg": "Too Many Requests"}, status=429)
        return await original(request)

    fake._ticker_price = limited
    fake.start()
    assert executor.last_price("ETH_USDT") == D("2200") and left["n"] == 0


# --- 4 and 5. one order per signal; a sent order never expired without the exchange ------------------------------


def test_an_order_shown_late_is_looked_up_again_and_never_posted_twice(fake):
    fake.hang_seconds, fake.visible_after_seconds = 1.5, 5.0
    order = publish_crossing()
    assert order.status == "PENDING"
    fake.hang_seconds = 0.0
    reconcile_pending()  # its lookups miss it: left PENDING, not sent again
    order.refresh_from_db()
    assert order.status == "PENDING" and len(fake.orders_for(order.client_order_id)) == 1
    wait_until(lambda: fake.shows(order.client_order_id), timeout=10, message="the exchange to show the order")
    reconcile_pending()  # the next run finds it
    order.refresh_from_db()
    assert order.status == "FILLED" and len(fake.orders_for(order.client_order_id)) == 1
    assert_book_is_the_exchange(fake)


def test_an_order_the_exchange_never_shows_goes_to_a_person_not_to_a_second_post(fake):
    fake.hang_seconds, fake.orders_invisible = 1.5, True
    order = publish_crossing()
    fake.hang_seconds = 0.0
    sent_long_ago = timezone.now() - timedelta(seconds=live_order_service.UNSEEN_MAX_SEC + 1)
    Order.objects.filter(pk=order.pk).update(sent_at=sent_long_ago)
    reconcile_pending()
    order.refresh_from_db()
    assert order.status == "UNKNOWN" and "a person must check" in order.reason
    assert Alert.objects.get(code="ORDER_NEEDS_CHECK").level == "CRITICAL"
    reconcile_pending()  # UNKNOWN is final: nothing retries it
    assert len(fake.received_orders) == 1 and lookups(fake) >= 2


def test_an_entry_shown_only_after_the_age_limit_is_booked_not_expired(fake):
    fake.hang_seconds, fake.visible_after_seconds = 1.5, 30.0
    order = publish_crossing()
    fake.hang_seconds = 0.0
    Order.objects.filter(pk=order.pk).update(created_at=timezone.now() - timedelta(seconds=61))
    reconcile_pending()
    order.refresh_from_db()
    assert order.status == "PENDING"  # sent: never EXPIRED while the exchange may hold it
    fake.visible_after_seconds = 0.0
    reconcile_pending()
    order.refresh_from_db()
    assert order.status == "FILLED" and len(fake.received_orders) == 1
    assert_book_is_the_exchange(fake)


# --- 6. no false alarms -----------------------------------------------------------------------------------------


def test_one_lagging_balance_read_after_a_fill_neither_alerts_nor_halts(fake):
    publish_crossing()
    fake.lagging_balances = [{"USDT": D("10000")}]  # the read still shows the account before the BUY
    report = reconcile_balances()
    assert report.checked and report.ok and not report.halted
    assert TradingState.load().state != "HALTED" and not Alert.objects.filter(code="BALANCE_MISMATCH").exists()


def test_a_cent_of_difference_in_cash_does_not_halt(fake):
    fake.balances["USDT"] += D("0.01")
    report = reconcile_balances()
    assert report.checked and report.ok, report.detail
    fake.balances["USDT"] += D("5")  # beyond the tolerance (no market traded yet: 1 USDT)
    report = reconcile_balances()
    assert [d.asset for d in report.differences] == ["USDT"] and report.differences[0].tolerance == D("1")


# --- 7. a check that could not run says so ----------------------------------------------------------------------


def balances_command() -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("reconcile_orders", "--balances", stdout=out)
    except CommandError as error:
        return error.returncode, out.getvalue() + str(error)
    return 0, out.getvalue()


def test_the_balance_check_exits_3_and_says_why_when_the_exchange_is_down(fake):
    assert balances_command()[0] == 0 and BalanceCheck.objects.get().ok
    fake.stop()
    code, text = balances_command()
    assert code == 3 and "exchange balances unavailable" in text
    check = BalanceCheck.objects.get()
    assert not check.ok and check.detail.startswith("skipped: exchange balances unavailable")
    assert status()["health"]["balances"]["ok"] is False


def test_the_balance_check_exits_3_with_a_wrong_key(fake, settings):
    settings.MEXC_API_KEY = "not-the-key"
    live_order_service.live_executor.cache_clear()
    code, text = balances_command()
    assert code == 3 and "unavailable" in text and not BalanceCheck.objects.get().ok


def test_live_trading_without_keys_is_not_called_paper_trading(settings):
    settings.LIVE_TRADING, settings.MEXC_API_KEY, settings.MEXC_API_SECRET = True, "", ""
    code, text = balances_command()
    assert code == 3 and "LIVE_TRADING=true but MEXC_API_KEY" in text and "paper" not in text
    assert status()["health"]["balances"]["ok"] is False


def test_paper_trading_balance_check_exits_0(settings):
    settings.LIVE_TRADING = False
    assert balances_command() == (
        0,
        "reconciled 0 orders\nbalances: paper trading: no exchange balances to compare\n",
    )


# --- 8. LIVE_PENDING_MAX_AGE_SEC is validated -------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf", "abc", ""])
def test_an_invalid_live_pending_max_age_is_refused(value):
    env = {**os.environ, "LIVE_PENDING_MAX_AGE_SEC": value, "DJANGO_SETTINGS_MODULE": "cdb_project.settings"}
    done = processes.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env=env,
        capture_output=True,
        text=True,
        cwd=django_settings.BASE_DIR,
        timeout=120,
    )
    assert done.returncode != 0
    assert "ImproperlyConfigured: LIVE_PENDING_MAX_AGE_SEC must be a number of seconds from 1 to 3600" in done.stderr


# --- 9. cash moves by what the trades paid; a commission is never booked as 0 on a guess ------------------------


class TradesOnly:
    """An exchange that only answers an order's trades (what ``_fill_from_trades`` reads)."""

    apiKey = secret = ""
    timeout = 1000

    def __init__(self, trades: list[dict]):
        self.trades = trades

    def fetch_order_trades(self, order_id, symbol):
        return [{"info": trade} for trade in self.trades]


MARKET = {"symbol": "ETH/USDT", "quoteId": "USDT", "baseId": "ETH", "taker": 0.0005}


def trade(qty: str, price: str, commission="0", asset="USDT") -> dict:
    return {
        "id": f"{qty}@{price}",
        "qty": qty,
        "price": price,
        "quoteQty": str(D(qty) * D(price)),
        **({"commission": commission} if commission is not None else {}),
        "commissionAsset": asset,
    }


def test_the_cash_moves_by_the_sum_of_the_trades_amounts_exactly():
    trades = [trade("1", "2000.00"), trade("1", "2000.01"), trade("1", "2000.01")]  # a market order walking the book
    fill = LiveExecutor(TradesOnly(trades))._fill_from_trades("1", MARKET, D("3"))
    assert fill.cost == D("6000.02") and fill.price == D("2000.006666666667")  # the average, rounded
    book = Book.new(D("10000"))
    book_exchange_fill(book, "ETH_USDT", "BUY", fill.quantity, fill.price, fill.quote_fee, fill.base_fee, fill.cost)
    assert book.cash == D("10000") - D("6000.02")


@pytest.mark.parametrize("commission", [None, "", "-0.1"])
def test_a_trade_without_a_valid_commission_is_not_booked(commission):
    executor = LiveExecutor(TradesOnly([trade("1", "2000", commission=commission)]))
    with pytest.raises(TradesUnavailable, match="no valid commission"):
        executor._fill_from_trades("1", MARKET, D("1"))


def test_a_commission_without_its_asset_is_not_booked():
    executor = LiveExecutor(TradesOnly([trade("1", "2000", commission="1", asset="")]))
    with pytest.raises(TradesUnavailable, match="no valid commission"):
        executor._fill_from_trades("1", MARKET, D("1"))

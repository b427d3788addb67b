"""The live executor wired into the pipeline, against the local fake MEXC (never a real exchange)."""

from decimal import Decimal as D
from io import StringIO

import pytest
from django.core.management import call_command

from execution.models import Order, Position
from risk.live_order_service import live_executor
from risk.models import Alert
from risk.status import risk_status
from tests.support import series
from tests.support.fake_mexc_trading import FakeMexcTrading

pytestmark = pytest.mark.django_db(transaction=True)
KEY, SECRET = "test-live-key-0123", "test-live-secret-4567"


@pytest.fixture
def fake(settings, sma_cross):
    server = FakeMexcTrading(api_key=KEY, api_secret=SECRET).start()
    settings.LIVE_TRADING = True
    settings.MEXC_API_KEY, settings.MEXC_API_SECRET = KEY, SECRET
    settings.MEXC_REST_URL = server.url
    settings.LIVE_ORDER_TIMEOUT_SEC = 1.0
    live_executor.cache_clear()
    yield server
    live_executor.cache_clear()
    server.stop()


def _publish_crossing():
    """The crafted series at ETH prices: BUY at 2,200 for 0.10 × 10,000 / 2,200 = 0.45454545 ETH."""
    series.publish_all(series.events("ETH_USDT", [p * 20 for p in series.crossing_prices()]))
    return Order.objects.get()


def test_an_approved_order_fills_on_the_exchange_once(fake):
    order = _publish_crossing()
    assert order.status == "FILLED" and order.sent_at is not None
    placed = fake.orders_for(order.client_order_id)
    assert len(placed) == 1 and fake.placed_orders()[0]["symbol"] == "ETHUSDT"
    # The fake fills at its own price (2,000) the quantity rounded down to its 4-decimal step.
    assert order.filled_quantity == D("0.4545") and order.price == D("2000")
    assert Position.objects.get(symbol="ETH_USDT").quantity == D("0.4545")
    assert risk_status()["mode"] == "LIVE"


def test_a_timeout_stays_pending_and_reconcile_settles_without_a_second_order(fake):
    fake.hang_seconds = 4.0  # the exchange takes and fills the order; the answer comes after the 1 s timeout
    order = _publish_crossing()
    assert order.status == "PENDING"
    assert Alert.objects.filter(code="ORDER_UNKNOWN", symbol="ETH_USDT").exists()
    fake.hang_seconds = 0.0
    out = StringIO()
    call_command("reconcile_orders", "--older-than", "0", stdout=out)
    order.refresh_from_db()
    assert order.status == "FILLED" and "FILLED" in out.getvalue()
    assert len(fake.orders_for(order.client_order_id)) == 1 and len(fake.placed_orders()) == 1


def test_insufficient_balance_is_rejected_with_the_reason(fake):
    fake.balances["USDT"] = D("10")
    order = _publish_crossing()
    assert order.status == "REJECTED" and "Insufficient position" in order.reason
    assert not Position.objects.filter(quantity__gt=0).exists()
    assert Alert.objects.filter(code="ORDER_FAILED").exists()


def test_keys_never_reach_the_logs_or_the_store(fake, caplog):
    caplog.set_level("DEBUG")
    _publish_crossing()
    stored = " ".join(str(v) for o in Order.objects.values() for v in o.values())
    assert KEY not in caplog.text and SECRET not in caplog.text and KEY not in stored


def test_paper_mode_without_keys(settings):
    settings.LIVE_TRADING = True  # asked for, but no keys: paper it is
    settings.MEXC_API_KEY = settings.MEXC_API_SECRET = ""
    assert risk_status()["mode"] == "PAPER"

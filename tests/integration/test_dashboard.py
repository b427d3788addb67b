"""The dashboard page, its snapshot and its websocket consumer, in-process (runs embedded too)."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser, Permission, User
from django.test import Client

from dashboard.routing import websocket_urlpatterns
from dashboard.snapshot import build_snapshot, equity_curve, watchlist
from execution.models import Order, Portfolio, Position
from marketdata.models import Candle
from risk.models import TradingState

pytestmark = pytest.mark.django_db(transaction=True)

T0 = 1_730_443_200_000


def _user(name: str, *perms: str, staff: bool = False) -> User:
    user = User.objects.create_user(name, password="pw", is_staff=staff)
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _candle(symbol: str, ts: int, close: str) -> None:
    c = Decimal(close)
    Candle.objects.create(symbol=symbol, interval="1m", timestamp=ts, open=c, high=c, low=c, close=c, volume=1)


# --- the page -----------------------------------------------------------------------------------------


def test_dashboard_needs_a_login():
    response = Client().get("/")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/?next=/"
    login = Client().get("/accounts/login/?next=/")
    assert login.status_code == 200 and b'name="password"' in login.content


def test_login_form_signs_in_and_lands_on_the_dashboard():
    _user("trader")
    client = Client()
    response = client.post("/accounts/login/", {"username": "trader", "password": "pw", "next": "/"})
    assert response.status_code == 302 and response["Location"] == "/"
    page = client.get("/")
    assert page.status_code == 200
    for card in ("card-state", "card-mode", "card-equity", "card-pnl", "card-exposure", "card-freshness"):
        assert f'id="{card}"'.encode() in page.content
    assert b"initial-snapshot" in page.content


def test_halt_buttons_only_for_the_permission():
    plain = _client(_user("viewer")).get("/").content
    staff_only = _client(_user("staffer", staff=True)).get("/").content
    operator = _client(_user("operator", "halt_trading")).get("/").content
    for content in (plain, staff_only):
        assert b'id="halt-button"' not in content and b'id="state-dialog"' not in content
    assert (
        b'id="halt-button"' in operator
        and b'id="release-button"' in operator
        and b'id="state-reason-input"' in operator
    )


def test_page_loads_nothing_from_outside():
    content = _client(_user("viewer")).get("/").content.decode()
    assert "http://" not in content and "https://" not in content and "//cdn" not in content


def test_snapshot_url_needs_a_login():
    assert Client().get("/api/dashboard/snapshot/").status_code == 401
    data = _client(_user("viewer")).get("/api/dashboard/snapshot/").json()
    assert data["trading_state"]["state"] == "ACTIVE" and data["mode"] == "PAPER"


# --- the snapshot's content ---------------------------------------------------------------------------------


def _fill(n: int, side: str, price: str, qty: str = "1", fees: str = "0") -> Order:
    return Order.objects.create(
        client_order_id=f"cdbdash{n}",
        symbol="BTC_USDT",
        side=side,
        quantity=Decimal(qty),
        requested_price=Decimal(price),
        price=Decimal(price),
        filled_quantity=Decimal(qty),
        fees=Decimal(fees),
        status=Order.Status.FILLED,
        event_time=T0 + n * 60_000,
    )


def test_equity_curve_follows_the_fills():
    _fill(1, "BUY", "100", fees="1")  # equity 10000 - 1 fee
    _fill(2, "SELL", "110", fees="1")  # +10 profit, -1 fee
    curve = equity_curve("10008", T0 + 10 * 60_000)
    assert [p["equity"] for p in curve] == ["10000", "9999", "10008", "10008"]  # exact decimal strings
    assert [p["t"] for p in curve] == sorted(p["t"] for p in curve)


def test_snapshot_has_positions_with_unrealized_pnl_watchlist_and_freshness(settings):
    settings.SYMBOL_WHITELIST = ["BTC_USDT", "ETH_USDT"]
    _candle("BTC_USDT", T0, "120")
    Position.objects.create(symbol="BTC_USDT", quantity=Decimal("2"), avg_entry_price=Decimal("100"))
    portfolio = Portfolio.load()
    portfolio.cash = Decimal("9800")
    portfolio.save()
    data = build_snapshot()
    assert data["positions"] == [
        {
            "symbol": "BTC_USDT",
            "quantity": "2",
            "avg_entry_price": "100",
            "price": "120",
            "market_value": "240",
            "unrealized_pnl": "40",
            "unrealized_pnl_pct": "0.2",
        }
    ]
    assert data["account"]["equity"] == "10040" and data["account"]["open_positions"] == 1
    fresh = {f["symbol"]: f for f in data["freshness"]}
    assert fresh["BTC_USDT"]["last_seen_ms"] == T0 and fresh["BTC_USDT"]["stale"] is True  # 2024 is long ago
    assert fresh["ETH_USDT"]["last_seen_ms"] is None and fresh["ETH_USDT"]["stale"] is True
    assert [e["symbol"] for e in data["watchlist"]["entries"]] == ["BTC_USDT", "ETH_USDT"]
    json.dumps(data)  # all of it goes over the websocket


def test_freshness_says_how_far_data_is_ahead_of_the_market_clock(settings):
    """A replay of later candles leaves a symbol's data after the market clock: its age is 0, never negative, and
    how far ahead it is is said apart (the page writes "43 min ahead of the market clock", not "0 s ago")."""
    from dashboard.snapshot import freshness

    settings.SYMBOL_WHITELIST = ["BTC_USDT", "ETH_USDT"]
    _candle("BTC_USDT", T0 + 43 * 60_000, "120")
    _candle("ETH_USDT", T0 - 60_000, "10")
    fresh = {f["symbol"]: f for f in freshness(now=T0)}
    assert (fresh["BTC_USDT"]["age_sec"], fresh["BTC_USDT"]["ahead_sec"]) == (0, 43 * 60)
    assert (fresh["ETH_USDT"]["age_sec"], fresh["ETH_USDT"]["ahead_sec"]) == (60, 0)


def test_watchlist_comes_from_the_screener_when_it_ran():
    from marketdata.models import WatchList

    watch = WatchList.objects.create(as_of_ms=T0, lookback_minutes=15, top_n=2, interval="1m")
    watch.entries.create(rank=1, symbol="SOL_USDT", pct_change=5, quote_volume=1000, score=2)
    watch.entries.create(rank=2, symbol="ETH_USDT", pct_change=3, quote_volume=900, score=1)
    data = build_snapshot()["watchlist"]
    assert data["source"] == "screener" and data["as_of_ms"] == T0
    assert [(e["rank"], e["symbol"], e["pct_change"]) for e in data["entries"]] == [
        (1, "SOL_USDT", "5"),
        (2, "ETH_USDT", "3"),
    ]


def test_watchlist_without_a_screener_list_ranks_the_watched_symbols_over_the_lookback(settings):
    """No stored list (embedded mode, a replay): % change and quote volume over LOOKBACK_MINUTES, as the screener
    computes them, with its rank; a candle older than the window does not count."""
    settings.SYMBOL_WHITELIST = ["BTC_USDT", "ETH_USDT", "SOL_USDT"]
    settings.LOOKBACK_MINUTES = 3
    minute = 60_000
    _candle("BTC_USDT", T0 - 5 * minute, "50")  # outside the 3-minute window
    for i, close in enumerate(["100", "104", "110"]):
        _candle("BTC_USDT", T0 + i * minute, close)
    for i, close in enumerate(["10", "10.1", "10.2"]):
        _candle("ETH_USDT", T0 + i * minute, close)
    data = watchlist(now=T0 + 2 * minute)
    assert data["lookback_minutes"] == 3 and data["source"] == "watched symbols, ranked live"
    rows = [(e["rank"], e["symbol"], e["pct_change"], e["quote_volume"]) for e in data["entries"]]
    assert rows == [
        (1, "BTC_USDT", "0.1", "314"),
        (2, "ETH_USDT", "0.02", "30.3"),
        (3, "SOL_USDT", None, None),  # no candles: listed last, no figures
    ]


# --- the websocket consumer, in-process ---------------------------------------------------------------------


def _run(coro_fn):
    return async_to_sync(coro_fn)()


def test_consumer_refuses_anonymous():
    async def scenario():
        communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/dashboard/")
        communicator.scope["user"] = AnonymousUser()
        connected, code = await communicator.connect()
        return connected, code

    connected, code = _run(scenario)
    assert connected is False and code == 4401


def test_consumer_sends_snapshot_and_guards_halt():
    from importlib import import_module

    from django.conf import settings
    from django.test import Client

    viewer, operator = _user("viewer"), _user("operator", "halt_trading")
    sessions = {}  # each user's logged-in session, as AuthMiddlewareStack puts it in the scope
    for name, user in (("viewer", viewer), ("operator", operator)):
        browser = Client()
        browser.force_login(user)
        store = import_module(settings.SESSION_ENGINE).SessionStore
        sessions[name] = store(session_key=browser.cookies[settings.SESSION_COOKIE_NAME].value)

    async def scenario():
        results = {}
        for name, user in (("viewer", viewer), ("operator", operator)):
            communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/dashboard/")
            communicator.scope["user"], communicator.scope["session"] = user, sessions[name]
            connected, _ = await communicator.connect()
            assert connected
            results[name + "_snapshot"] = await communicator.receive_json_from(timeout=10)
            await communicator.send_json_to({"action": "halt", "reason": f"by {name}"})
            reply = await communicator.receive_json_from(timeout=10)
            while reply["kind"] not in ("ack", "error"):  # skip the pushes the halt itself causes
                reply = await communicator.receive_json_from(timeout=10)
            results[name] = reply
            await communicator.send_json_to({"action": "dance"})
            results[name + "_unknown"] = await _next(communicator, ("error",))
            await communicator.send_json_to({"action": "refresh"})
            results[name + "_refresh"] = await _next(communicator, ("refresh",))
            await communicator.disconnect()
        return results

    results = _run(scenario)
    assert results["viewer_snapshot"]["kind"] == "snapshot"
    assert results["viewer"] == {
        "kind": "error",
        "data": {"status": 403, "action": "halt", "detail": "halt: needs the risk.halt_trading permission"},
    }
    assert results["operator"]["kind"] == "ack"
    assert results["operator"]["data"]["trading_state"]["state"] == "HALTED"
    assert results["viewer_unknown"]["data"]["status"] == 400
    assert results["operator_refresh"]["data"]["trading_state"]["state"] == "HALTED"
    state = TradingState.load()
    assert (state.state, state.reason, state.changed_by) == ("HALTED", "by operator", "operator")


async def _next(communicator, kinds):
    while True:
        message = await communicator.receive_json_from(timeout=10)
        if message["kind"] in kinds:
            return message


def test_health_card_names_a_configured_redis_that_is_down(settings):
    # Nothing listens on port 1: the card says Redis and the workers are down and why, the database is fine.
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    health = build_snapshot()["health"]
    assert health["database"]["ok"] is True
    assert health["redis"]["ok"] is False and "Connection" in health["redis"]["detail"]
    assert health["workers"]["ok"] is False


def test_health_card_in_embedded_mode_needs_no_redis(settings):
    settings.REDIS_URL = ""
    health = build_snapshot()["health"]
    assert health == {
        "database": {"ok": True, "detail": health["database"]["detail"]},
        "redis": {"ok": True, "detail": "not used (embedded)"},
        "workers": {"ok": True, "detail": "in-process (embedded)"},
    }


@pytest.mark.redis
def test_an_idle_dashboard_socket_outlives_the_channel_layers_pop_timeout():
    """channels-redis waits for a message with a 5 s BZPOPMIN; redis-py 8 reads with a 5 s socket timeout by default,
    so an idle consumer raised redis' TimeoutError and the page reconnected every ~6 s. Waiting 7 s must end in our
    own timeout, not in redis'."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()

    async def idle() -> None:
        name = await layer.new_channel()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(layer.receive(name), 7)

    asyncio.run(idle())

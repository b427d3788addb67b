"""The REST API: authentication and permissions on every endpoint, filters, pagination, validation, side effects."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from execution.models import Order, Portfolio, Position, Trade
from ground import bus
from marketdata.models import Candle
from risk.models import Alert, AuditLog, RiskEvent, RiskParameters, TradingState
from trading.models import Signal

pytestmark = pytest.mark.django_db

T0 = 1_730_443_200_000  # 2024-11-01 06:40 UTC

READ_ENDPOINTS = [
    "/api/status/",
    "/api/orders/",
    "/api/trades/",
    "/api/positions/",
    "/api/signals/",
    "/api/alerts/",
    "/api/risk-events/",
    "/api/candles/",
    "/api/risk/parameters/",
    "/api/risk/state/",
    "/api/backtests/",
    "/api/chart/?symbol=BTC_USDT",
    "/api/trades/totals/",
]


# --- users and clients --------------------------------------------------------------------------------


def make_user(name: str, *perms: str, staff: bool = False, superuser: bool = False) -> User:
    if superuser:
        return User.objects.create_superuser(name, password="pw")
    user = User.objects.create_user(name, password="pw", is_staff=staff)
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


def token_client(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


@pytest.fixture
def viewer() -> APIClient:
    return token_client(make_user("viewer"))


@pytest.fixture
def staff() -> APIClient:
    """Staff, but without any model permission."""
    return token_client(make_user("staff", staff=True))


@pytest.fixture
def risk_admin() -> APIClient:
    return token_client(make_user("riskadmin", "change_riskparameters", staff=True))


@pytest.fixture
def operator() -> APIClient:
    return token_client(make_user("operator", "halt_trading"))


@pytest.fixture
def superuser() -> APIClient:
    return token_client(make_user("root", superuser=True))


# --- data ---------------------------------------------------------------------------------------------


def order(n: int, *, symbol="BTC_USDT", side="BUY", status=Order.Status.FILLED, created=None, price="100") -> Order:
    o = Order.objects.create(
        order_id=f"PAPER_{n}",
        client_order_id=f"cdbtest{n:05d}",
        symbol=symbol,
        side=side,
        quantity=Decimal("1"),
        requested_price=Decimal(price),
        price=Decimal(price) if status == Order.Status.FILLED else None,
        filled_quantity=Decimal("1") if status == Order.Status.FILLED else Decimal(0),
        status=status,
        event_time=T0 + n * 60_000,
    )
    if created is not None:
        Order.objects.filter(pk=o.pk).update(created_at=created)
    return o


def candle(symbol: str, ts: int, close: str, interval: str = "1m") -> Candle:
    c = Decimal(close)
    return Candle.objects.create(
        symbol=symbol, interval=interval, timestamp=ts, open=c, high=c, low=c, close=c, volume=Decimal(10)
    )


# --- authentication and permissions ---------------------------------------------------------------------


@pytest.mark.parametrize("url", READ_ENDPOINTS)
def test_every_read_endpoint_needs_authentication(url):
    response = APIClient().get(url)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Token")


@pytest.mark.parametrize("url", READ_ENDPOINTS)
def test_a_wrong_token_is_refused(url):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token 0123456789abcdef0123456789abcdef01234567")
    assert client.get(url).status_code == 401


@pytest.mark.parametrize("url", READ_ENDPOINTS)
def test_every_read_endpoint_answers_an_authenticated_user(url, viewer):
    response = viewer.get(url)
    assert response.status_code == 200, response.content


def test_session_authentication_works_too():
    client = APIClient()
    client.force_login(make_user("sessionuser"))
    assert client.get("/api/status/").status_code == 200


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("post", "/api/risk/halt/", {"reason": "x"}),
        ("post", "/api/risk/release/", {}),
        ("patch", "/api/risk/parameters/", {"max_exposure_pct": "0.4"}),
    ],
)
def test_writes_refuse_anonymous_401_and_plain_users_403(method, url, body, viewer, staff):
    assert getattr(APIClient(), method)(url, body, format="json").status_code == 401
    assert getattr(viewer, method)(url, body, format="json").status_code == 403
    # staff alone is not enough: the permission decides
    assert getattr(staff, method)(url, body, format="json").status_code == 403
    assert TradingState.load().state == "ACTIVE"
    assert RiskParameters.load().max_exposure_pct == Decimal("0.5")
    assert not AuditLog.objects.exists()


def test_session_writes_need_the_csrf_token():
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(make_user("csrfop", "halt_trading"))
    response = client.post("/api/risk/halt/", {"reason": "no csrf"}, format="json")
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]
    assert TradingState.load().state == "ACTIVE"


# --- token --------------------------------------------------------------------------------------------


def test_token_for_username_and_password_then_use_it():
    make_user("alice")
    response = APIClient().post("/api/token/", {"username": "alice", "password": "pw"}, format="json")
    assert response.status_code == 200
    key = response.json()["token"]
    assert key == Token.objects.get(user__username="alice").key
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/status/").status_code == 200


def test_tokens_expire_and_a_login_hands_out_a_new_one(settings):
    settings.TOKEN_TTL_HOURS = 24
    make_user("scripted")
    old = token_client(User.objects.get(username="scripted"))
    Token.objects.filter(user__username="scripted").update(created=timezone.now() - timedelta(hours=25))
    refused = old.get("/api/status/")
    assert refused.status_code == 401 and "expired" in refused.json()["detail"]
    fresh = APIClient().post("/api/token/", {"username": "scripted", "password": "pw"}, format="json").json()["token"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {fresh}")
    assert client.get("/api/status/").status_code == 200
    assert old.get("/api/status/").status_code == 401  # the expired key is gone
    settings.TOKEN_TTL_HOURS = 0  # never
    Token.objects.filter(key=fresh).update(created=timezone.now() - timedelta(days=3650))
    assert client.get("/api/status/").status_code == 200


def test_password_reset_is_not_offered_without_mail():
    for url in ["/accounts/password_reset/", "/accounts/reset/done/"]:
        assert Client().get(url).status_code == 404, url
    assert Client().get("/accounts/login/").status_code == 200


def test_token_refuses_a_wrong_password():
    make_user("bob")
    response = APIClient().post("/api/token/", {"username": "bob", "password": "nope"}, format="json")
    assert response.status_code == 400
    assert not Token.objects.exists()


def test_drf_create_token_command_makes_a_working_token():
    make_user("carol")
    out = StringIO()
    call_command("drf_create_token", "carol", stdout=out)
    key = Token.objects.get(user__username="carol").key
    assert key in out.getvalue()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/orders/").status_code == 200


# --- status -------------------------------------------------------------------------------------------


def test_status_reports_state_mode_account_freshness_and_health(viewer, settings):
    settings.SYMBOL_WHITELIST = ["BTC_USDT"]
    candle("BTC_USDT", T0, "110")
    Position.objects.create(symbol="BTC_USDT", quantity=Decimal("2"), avg_entry_price=Decimal("100"))
    portfolio = Portfolio.load()
    portfolio.cash = Decimal("9800")
    portfolio.save()

    data = viewer.get("/api/status/").json()
    assert data["trading_state"]["state"] == "ACTIVE"
    assert data["mode"] == "PAPER"
    account = data["account"]
    assert (account["equity"], account["cash"], account["exposure"]) == ("10020", "9800", "220")  # exact strings
    assert (account["quote"], account["quote_decimals"]) == ("USDT", 2)
    assert Decimal(account["exposure_pct"]) == (Decimal(220) / Decimal(10020)).quantize(Decimal("1e-12"))
    assert (account["exposure_limit_pct"], account["drawdown_limit_pct"]) == ("0.5", "0.05")
    assert all(isinstance(v, str) for k, v in account.items() if k not in ("open_positions", "quote_decimals"))
    assert account["open_positions"] == 1
    # every time in the JSON in one shape: ISO 8601 UTC with Z, as the state's since
    time_shape = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
    assert re.fullmatch(time_shape, account["day_start"]), account["day_start"]
    assert re.fullmatch(time_shape, data["trading_state"]["since"]), data["trading_state"]
    assert [f["symbol"] for f in data["freshness"]] == ["BTC_USDT"]
    assert data["freshness"][0]["last_seen_ms"] == T0
    assert data["health"]["database"]["ok"] is True
    assert set(data["health"]) == {"database", "redis", "workers"}


def test_every_time_in_the_api_has_one_json_shape(viewer):
    """ISO 8601 UTC with milliseconds and Z, whatever the moment: DRF wrote ``…:00Z`` for a whole second and six
    digits (``.123456Z``) otherwise, so the parameters' ``updated_at`` and an order's ``created_at`` differed from
    ``since`` (issue 22)."""
    time_shape = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
    RiskParameters.load()
    RiskParameters.objects.update(updated_at=datetime(2026, 12, 3, 14, 1, 2, 123456, tzinfo=UTC))
    whole_second = order(1, created=datetime(2026, 12, 3, 14, 1, tzinfo=UTC))
    Order.objects.filter(pk=whole_second.pk).update(submitted_at=datetime(2026, 12, 3, 14, 1, 0, 5000, tzinfo=UTC))
    assert viewer.get("/api/risk/parameters/").json()["updated_at"] == "2026-12-03T14:01:02.123Z"
    (row,) = viewer.get("/api/orders/").json()["results"]
    assert (row["created_at"], row["submitted_at"]) == ("2026-12-03T14:01:00.000Z", "2026-12-03T14:01:00.005Z"), row
    assert row["event_time"] == T0 + 60_000  # epoch ms, as the API documents it
    assert re.fullmatch(time_shape, viewer.get("/api/risk/state/").json()["since"])


def test_status_mode_is_live_only_with_the_switch_and_keys(viewer, settings):
    settings.LIVE_TRADING = True
    assert viewer.get("/api/status/").json()["mode"] == "PAPER"  # no keys
    settings.MEXC_API_KEY, settings.MEXC_API_SECRET = "k", "s"
    assert viewer.get("/api/status/").json()["mode"] == "LIVE"
    settings.LIVE_TRADING = False
    assert viewer.get("/api/status/").json()["mode"] == "PAPER"


def test_daily_pnl_and_drawdown_since_midnight(viewer, settings):
    """A position bought yesterday at 100, marked at 100 at midnight and at 90 now: a 10-unit daily loss."""
    settings.SYMBOL_WHITELIST = ["ETH_USDT"]
    midnight = int(datetime(2024, 11, 1, tzinfo=UTC).timestamp() * 1000)
    candle("ETH_USDT", midnight - 60_000, "100")
    candle("ETH_USDT", midnight + 3_600_000, "90")
    o = order(1, symbol="ETH_USDT", price="100")
    Order.objects.filter(pk=o.pk).update(event_time=midnight - 120_000, fees=Decimal(0))
    Position.objects.create(symbol="ETH_USDT", quantity=Decimal("1"), avg_entry_price=Decimal("100"))
    portfolio = Portfolio.load()
    portfolio.cash = portfolio.initial_capital - 100
    portfolio.save()
    from marketdata.clock import ManualClock, use_clock

    with use_clock(ManualClock(midnight + 3_600_000)):
        account = viewer.get("/api/status/").json()["account"]
    assert (account["day_start_equity"], account["daily_pnl"], account["drawdown_pct"]) == ("10000", "-10", "0.001")


# --- orders: filters and pagination ------------------------------------------------------------------------


def test_orders_filter_by_symbol_status_side_and_date_range(viewer):
    now = timezone.now()
    order(1, symbol="BTC_USDT", side="BUY", status="FILLED", created=now - timedelta(days=3))
    order(2, symbol="ETH_USDT", side="SELL", status="FILLED", created=now - timedelta(days=2))
    order(3, symbol="ETH_USDT", side="BUY", status="REJECTED", created=now - timedelta(days=1))
    order(4, symbol="BTC_USDT", side="SELL", status="FAILED", created=now)

    def ids(query: str) -> list[str]:
        response = viewer.get("/api/orders/" + query)
        assert response.status_code == 200, response.content
        return [o["order_id"] for o in response.json()["results"]]

    assert ids("") == ["PAPER_4", "PAPER_3", "PAPER_2", "PAPER_1"]  # newest first
    assert ids("?symbol=ETH_USDT") == ["PAPER_3", "PAPER_2"]
    assert ids("?status=FILLED") == ["PAPER_2", "PAPER_1"]
    assert ids("?side=SELL") == ["PAPER_4", "PAPER_2"]
    assert ids("?symbol=ETH_USDT&side=BUY") == ["PAPER_3"]
    since = (now - timedelta(days=2, hours=1)).isoformat()
    until = (now - timedelta(hours=12)).isoformat()
    assert ids(f"?since={since.replace('+', '%2B')}&until={until.replace('+', '%2B')}") == ["PAPER_3", "PAPER_2"]


@pytest.mark.parametrize("query", ["?status=NOPE", "?side=HOLD", "?since=yesterday", "?until=2024-13-45"])
def test_orders_invalid_filters_are_400_naming_the_parameter(viewer, query):
    response = viewer.get("/api/orders/" + query)
    assert response.status_code == 400
    assert query[1:].split("=")[0] in response.json()


def test_orders_are_paginated(viewer):
    for n in range(120):
        order(n)
    first = viewer.get("/api/orders/").json()
    assert first["count"] == 120 and len(first["results"]) == 50
    assert first["previous"] is None and "page=2" in first["next"]
    last = viewer.get("/api/orders/?page=3").json()
    assert len(last["results"]) == 20 and last["next"] is None
    small = viewer.get("/api/orders/?page_size=7&page=2").json()
    assert [o["order_id"] for o in small["results"]] == [f"PAPER_{n}" for n in range(112, 105, -1)]
    assert len(viewer.get("/api/orders/?page_size=100000").json()["results"]) == 120  # capped at 500
    assert viewer.get("/api/orders/?page=9").status_code == 404


def test_order_detail(viewer):
    o = order(1)
    data = viewer.get(f"/api/orders/{o.pk}/").json()
    assert data["client_order_id"] == o.client_order_id and data["status"] == "FILLED"
    assert data["price"] == "100"  # money as exact, normalised decimal strings (no padding, no exponent)
    assert viewer.get("/api/orders/999999/").status_code == 404


# --- the other lists -------------------------------------------------------------------------------------


def test_trades_filter_by_symbol_and_status(viewer):
    entry = order(1, symbol="BTC_USDT")
    other = order(2, symbol="ETH_USDT")
    now = timezone.now()
    Trade.objects.create(
        trade_id="T1", order=entry, symbol="BTC_USDT", quantity=1, entry_price=100, entry_time=now, status="OPEN"
    )
    Trade.objects.create(
        trade_id="T2",
        order=other,
        symbol="ETH_USDT",
        quantity=1,
        entry_price=100,
        entry_time=now - timedelta(hours=1),
        exit_price=110,
        exit_time=now,
        profit_loss=10,
        profit_loss_percent=10,
        status="CLOSED",
    )
    assert [t["trade_id"] for t in viewer.get("/api/trades/").json()["results"]] == ["T1", "T2"]
    closed = viewer.get("/api/trades/?status=CLOSED").json()["results"]
    assert [t["trade_id"] for t in closed] == ["T2"] and closed[0]["profit_loss"] == "10"
    assert closed[0]["order"] == other.client_order_id
    assert (closed[0]["exit_fees"], closed[0]["quantity"], closed[0]["exit_price"]) == ("0", "1", "110")
    totals = viewer.get("/api/trades/totals/").json()
    assert (totals["win_rate"], totals["profit_loss"], totals["fees"]) == ("0.5", "10", "0")  # strings, exact
    assert [t["trade_id"] for t in viewer.get("/api/trades/?symbol=BTC_USDT").json()["results"]] == ["T1"]


def test_positions_show_unrealized_pnl(viewer):
    candle("BTC_USDT", T0, "100")
    candle("BTC_USDT", T0 + 60_000, "120")
    Position.objects.create(symbol="BTC_USDT", quantity=Decimal("0.5"), avg_entry_price=Decimal("100"))
    Position.objects.create(symbol="ETH_USDT", quantity=Decimal("0"), avg_entry_price=Decimal("0"))  # closed
    rows = viewer.get("/api/positions/").json()["results"]
    assert [p["symbol"] for p in rows] == ["BTC_USDT"]
    assert Decimal(rows[0]["price"]) == 120
    assert Decimal(rows[0]["unrealized_pnl"]) == 10
    assert Decimal(rows[0]["unrealized_pnl_percent"]) == 20
    assert viewer.get("/api/positions/BTC_USDT/").json()["symbol"] == "BTC_USDT"
    assert viewer.get("/api/positions/ETH_USDT/").status_code == 404


def test_signals_filter(viewer):
    for i, (symbol, side) in enumerate([("BTC_USDT", "BUY"), ("ETH_USDT", "SELL"), ("BTC_USDT", "SELL")]):
        Signal.objects.create(
            signal_id=f"s{i}",
            symbol=symbol,
            interval="1m",
            side=side,
            confidence=Decimal("0.8"),
            reason=f"reason {i}",
            strategy="sma_cross",
            price=Decimal(100),
            timestamp=T0 + i,
        )
    assert [s["signal_id"] for s in viewer.get("/api/signals/").json()["results"]] == ["s2", "s1", "s0"]
    assert [s["signal_id"] for s in viewer.get("/api/signals/?symbol=BTC_USDT&side=SELL").json()["results"]] == ["s2"]
    assert viewer.get("/api/signals/?side=MAYBE").status_code == 400


def test_alerts_filter_by_level_and_code(viewer):
    bus.publish({"type": "alert", "level": "INFO", "code": "A", "message": "one", "timestamp": T0})
    bus.publish({"type": "alert", "level": "CRITICAL", "code": "RISK_LIMIT", "message": "two", "timestamp": T0 + 1})
    assert [a["message"] for a in viewer.get("/api/alerts/").json()["results"]] == ["two", "one"]
    assert [a["message"] for a in viewer.get("/api/alerts/?level=CRITICAL").json()["results"]] == ["two"]
    assert [a["message"] for a in viewer.get("/api/alerts/?code=A").json()["results"]] == ["one"]
    assert viewer.get("/api/alerts/?level=LOUD").status_code == 400


def test_risk_events_filter_by_decision_and_symbol(viewer):
    RiskEvent.objects.create(decision="APPROVE", layer="position", symbol="BTC_USDT", reason="ok", timestamp=T0)
    RiskEvent.objects.create(decision="REJECT", layer="exposure", symbol="ETH_USDT", reason="too much", timestamp=T0)
    assert [e["reason"] for e in viewer.get("/api/risk-events/?decision=REJECT").json()["results"]] == ["too much"]
    assert [e["reason"] for e in viewer.get("/api/risk-events/?symbol=BTC_USDT").json()["results"]] == ["ok"]
    assert viewer.get("/api/risk-events/?decision=MAYBE").status_code == 400


def test_candles_by_symbol_interval_and_since(viewer):
    for i in range(5):
        candle("BTC_USDT", T0 + i * 60_000, str(100 + i))
        candle("ETH_USDT", T0 + i * 60_000, "50")
    candle("BTC_USDT", T0, "99", interval="5m")
    rows = viewer.get(f"/api/candles/?symbol=BTC_USDT&interval=1m&since={T0 + 120_000}").json()["results"]
    assert [(c["timestamp"], Decimal(c["close"])) for c in rows] == [
        (T0 + 120_000, 102),
        (T0 + 180_000, 103),
        (T0 + 240_000, 104),
    ]
    assert viewer.get("/api/candles/?symbol=BTC_USDT&interval=5m").json()["count"] == 1
    assert viewer.get("/api/candles/?since=soon").status_code == 400


# --- risk parameters --------------------------------------------------------------------------------------


def test_parameters_get_shows_values_sources_and_ranges(viewer):
    data = viewer.get("/api/risk/parameters/").json()
    # exact decimal strings without the column's padding, as `risk_status --json` gives them
    assert data["MAX_DAILY_DRAWDOWN_PCT"] == "0.05"
    assert data["MAX_SPREAD_MULTIPLIER"] == "5"
    assert data["DATA_STALE_TIMEOUT_SEC"] == "30"
    assert data["sources"]["MAX_DAILY_DRAWDOWN_PCT"] == "default"
    assert data["ranges"]["MAX_EXPOSURE_PCT"] == {
        "minimum": "0.1",
        "maximum": "1",
        "default": "0.5",
        "description": "Total exposure above which new entries are blocked",
    }


def test_patch_parameters_changes_audits_and_marks_the_source(risk_admin):
    response = risk_admin.patch(
        "/api/risk/parameters/",
        {"max_exposure_pct": "0.4", "data_stale_timeout_sec": 60, "reason": "calmer market"},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["MAX_EXPOSURE_PCT"] == "0.4" and response.json()["DATA_STALE_TIMEOUT_SEC"] == "60"
    params = RiskParameters.load()
    assert params.max_exposure_pct == Decimal("0.4") and params.data_stale_timeout_sec == 60
    assert params.sources["MAX_EXPOSURE_PCT"] == "admin" and params.sources["DATA_STALE_TIMEOUT_SEC"] == "admin"
    audit = {a.target: a for a in AuditLog.objects.filter(action="parameter_change")}
    assert set(audit) == {"MAX_EXPOSURE_PCT", "DATA_STALE_TIMEOUT_SEC"}
    assert (audit["MAX_EXPOSURE_PCT"].old_value, audit["MAX_EXPOSURE_PCT"].new_value) == ("0.50000", "0.40000")
    assert audit["MAX_EXPOSURE_PCT"].actor == "riskadmin" and audit["MAX_EXPOSURE_PCT"].reason == "calmer market"


@pytest.mark.parametrize("name", ["MAX_EXPOSURE_PCT", "max_exposure_pct"])
def test_patch_takes_the_spec_names_in_either_case(risk_admin, name):
    response = risk_admin.patch("/api/risk/parameters/", {name: "0.3", "REASON": "as SPEC §4 spells it"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["MAX_EXPOSURE_PCT"] == "0.3"
    assert RiskParameters.load().max_exposure_pct == Decimal("0.3")
    assert AuditLog.objects.get(action="parameter_change").reason == "as SPEC §4 spells it"


@pytest.mark.parametrize(
    ("body", "key", "said"),
    [
        ({"sources": {"MAX_EXPOSURE_PCT": "env"}}, "sources", "sources is read-only"),
        ({"updated_at": "2024-01-01T00:00:00Z"}, "updated_at", "updated_at is read-only"),
        ({"max_exposure_pct": "0.4000001"}, "MAX_EXPOSURE_PCT", "more than 5 decimal places"),
    ],
)
def test_patch_parameters_refuses_read_only_keys_and_excess_precision(risk_admin, body, key, said):
    response = risk_admin.patch("/api/risk/parameters/", body, format="json")
    assert response.status_code == 400, response.content
    assert said in " ".join(response.json()[key])
    assert RiskParameters.load().max_exposure_pct == Decimal("0.5")  # nothing stored, nothing rounded


def test_parameters_read_alike_in_the_api_and_risk_status_json(viewer):
    """One shape for a parameter: the API's value, default and range are risk_status --json's strings."""
    shell = StringIO()
    call_command("risk_status", "--json", stdout=shell)
    printed = json.loads(shell.getvalue())["parameters"]
    served = viewer.get("/api/risk/parameters/").json()
    for name, item in printed.items():
        assert served[name] == item["value"], name
        ranges = served["ranges"][name]
        assert [ranges["minimum"], ranges["maximum"]] == item["range"] and ranges["default"] == item["default"]
    assert printed["MAX_DAILY_DRAWDOWN_PCT"]["value"] == "0.05" and printed["COOLDOWN_AFTER_STOP_MIN"]["value"] == "15"


def test_patch_with_the_same_value_writes_no_audit(superuser):
    assert superuser.patch("/api/risk/parameters/", {"stop_loss_pct": 0.02}, format="json").status_code == 200
    assert not AuditLog.objects.exists()


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({"max_daily_drawdown_pct": 0.5}, "MAX_DAILY_DRAWDOWN_PCT", "0.01–0.20"),
        ({"MAX_DAILY_DRAWDOWN_PCT": 0.001}, "MAX_DAILY_DRAWDOWN_PCT", "0.01–0.20"),
        ({"data_stale_timeout_sec": 5}, "DATA_STALE_TIMEOUT_SEC", "10–120"),
        ({"Data_Stale_Timeout_Sec": 30.5}, "DATA_STALE_TIMEOUT_SEC", ""),
        ({"max_position_pct": "ten percent"}, "MAX_POSITION_PCT", ""),
        ({"max_spread_multiplier": None}, "MAX_SPREAD_MULTIPLIER", ""),
        ({"STOP_LOSS_PCT": 0.05, "max_exposure_pct": 2}, "MAX_EXPOSURE_PCT", "0.10–1.00"),
        ({"MAX_EXPOSURE_PCT": 0.3, "max_exposure_pct": 0.4}, "MAX_EXPOSURE_PCT", "given twice"),
        ({"max_leverage": 3}, "max_leverage", "unknown"),
        # full-width or other Unicode digits, which Python would read as 0.2 and 15: refused, not stored
        ({"max_position_pct": "０.２"}, "MAX_POSITION_PCT", "not a number in ASCII digits"),
        ({"COOLDOWN_AFTER_STOP_MIN": "１５"}, "COOLDOWN_AFTER_STOP_MIN", "not a number in ASCII digits"),
        ({"STOP_LOSS_PCT": "0.0٢"}, "STOP_LOSS_PCT", "not a number in ASCII digits"),
        # what Python's Decimal and int also read (0.12, 10, 0.05, 0.1): one rule for every number a person types
        ({"max_position_pct": "0.1_2"}, "MAX_POSITION_PCT", "no '_', exponent or '+'"),
        ({"COOLDOWN_AFTER_STOP_MIN": "1_0"}, "COOLDOWN_AFTER_STOP_MIN", "no '_', exponent or '+'"),
        ({"STOP_LOSS_PCT": "5e-2"}, "STOP_LOSS_PCT", "not a number in ASCII digits 0-9 with at most one '.' point"),
        ({"MAX_POSITION_PCT": "+0.1"}, "MAX_POSITION_PCT", "not a number in ASCII digits"),
        ({"MAX_POSITION_PCT": "0.1.2"}, "MAX_POSITION_PCT", "at most one '.' point"),
    ],
)
def test_patch_out_of_range_is_400_naming_field_and_range(risk_admin, body, field, fragment):
    before = RiskParameters.load().as_dict()
    response = risk_admin.patch("/api/risk/parameters/", body, format="json")
    assert response.status_code == 400, response.content
    errors = response.json()
    assert field in errors
    assert fragment in " ".join(errors[field])
    assert RiskParameters.load().as_dict() == before  # nothing stored, not even the valid part
    assert not AuditLog.objects.exists()


def test_parameters_service_names_field_and_range():
    from risk.parameters_service import update_parameters

    with pytest.raises(ValueError, match=r"MAX_POSITION_PCT: 0.3 is out of range \(allowed 0.01–0.25\)"):
        update_parameters({"max_position_pct": "0.3"}, actor="test")
    with pytest.raises(ValueError, match=r"MAX_POSITION_PCT: 0.123456 has more than 5 decimal places"):
        update_parameters({"MAX_POSITION_PCT": "0.123456"}, actor="test", reason="r")  # refused, not rounded
    params = update_parameters({"MAX_POSITION_PCT": "0.12346"}, actor="test", reason="r")
    assert params.max_position_pct == Decimal("0.12346")
    assert AuditLog.objects.get().new_value == "0.12346"


# --- halt / release ----------------------------------------------------------------------------------------


def test_halt_and_release_through_the_api(operator):
    response = operator.post("/api/risk/halt/", {"reason": "manual check"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["state"] == "HALTED" and response.json()["reason"] == "manual check"
    state = TradingState.load()
    assert (state.state, state.reason, state.changed_by) == ("HALTED", "manual check", "operator")
    assert AuditLog.objects.filter(action="state:halted", actor="operator").exists()
    assert Alert.objects.filter(code="TRADING_STATE", level="CRITICAL").exists()
    assert operator.get("/api/risk/state/").json()["state"] == "HALTED"

    # a second halt is told when the first began: ISO 8601 UTC, labelled with its clock (the market's)
    again = operator.post("/api/risk/halt/", {"reason": "still checking"}, format="json").json()
    assert again["changed"] is False
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", again["since"]), again
    assert re.match(
        r"Trading is HALTED already \(since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ, market time\)", again["message"]
    )

    response = operator.post("/api/risk/release/", {"reason": "all clear"}, format="json")
    assert response.status_code == 200 and response.json()["state"] == "ACTIVE"
    assert TradingState.load().state == "ACTIVE"
    twice = operator.post("/api/risk/release/", {"reason": "all clear"}, format="json").json()
    assert re.match(r"Trading is ACTIVE already \(since \S+Z, market time, by operator\)", twice["message"]), twice


@pytest.mark.parametrize("body", [{}, {"reason": ""}, {"reason": "   "}, {"reason": "x" * 501}])
def test_halt_needs_a_reason(operator, body):
    response = operator.post("/api/risk/halt/", body, format="json")
    assert response.status_code == 400 and "reason" in response.json()
    assert TradingState.load().state == "ACTIVE"


def test_superuser_may_halt(superuser):
    assert superuser.post("/api/risk/halt/", {"reason": "root"}, format="json").status_code == 200


def test_after_a_halt_a_signal_creates_no_order(operator, sma_cross, django_capture_on_commit_callbacks):
    """Control first: the same kind of signal while ACTIVE does create an order."""
    candle("AAA_USDT", T0, "100")
    candle("BBB_USDT", T0, "100")

    def signal(symbol: str) -> dict:
        return {
            "type": "signal",
            "symbol": symbol,
            "side": "BUY",
            "confidence": 0.9,
            "reason": "test",
            "timestamp": T0,
            "price": 100.0,
            "signal_id": f"{symbol}:test",
        }

    with django_capture_on_commit_callbacks(execute=True):
        bus.publish(signal("AAA_USDT"))
    assert Order.objects.filter(symbol="AAA_USDT").count() == 1

    assert operator.post("/api/risk/halt/", {"reason": "stop everything"}, format="json").status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        bus.publish(signal("BBB_USDT"))
    assert not Order.objects.filter(symbol="BBB_USDT").exists()
    assert RiskEvent.objects.filter(symbol="BBB_USDT", decision="REJECT").exists()


# --- schema and docs ------------------------------------------------------------------------------------


def test_schema_and_docs_need_a_login(viewer):
    assert APIClient().get("/api/schema/").status_code == 401
    docs = APIClient().get("/api/docs/")
    assert docs.status_code == 302 and docs["Location"] == "/accounts/login/?next=/api/docs/"
    assert viewer.get("/api/schema/").status_code == 200


def test_openapi_schema_lists_every_endpoint(viewer):
    response = viewer.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    for path in [
        *(url.split("?")[0] for url in READ_ENDPOINTS),
        "/api/backtests/{id}/chart/",
        "/api/risk/halt/",
        "/api/risk/release/",
        "/api/token/",
        "/api/backtests/{id}/",
    ]:
        assert path in schema["paths"], path
    order_params = {p["name"] for p in schema["paths"]["/api/orders/"]["get"]["parameters"]}
    assert {"symbol", "status", "side", "since", "until", "page", "page_size"} <= order_params
    patch = schema["components"]["schemas"]["PatchedRiskParametersRequest"]["properties"]
    number, text = patch["MAX_DAILY_DRAWDOWN_PCT"]["oneOf"]  # a PATCH takes a number or a decimal string
    assert number["maximum"] == 0.2 and number["minimum"] == 0.01 and text["type"] == "string"
    assert patch["DATA_STALE_TIMEOUT_SEC"]["oneOf"][0] == {"type": "integer", "maximum": 120, "minimum": 10}
    answer = schema["components"]["schemas"]["RiskParameters"]["properties"]
    for name in ("MAX_DAILY_DRAWDOWN_PCT", "DATA_STALE_TIMEOUT_SEC"):  # answered as an exact decimal string
        assert answer[name]["type"] == "string", answer[name]
    ranges = answer["ranges"]["additionalProperties"]
    ranges = schema["components"]["schemas"][ranges["$ref"].rsplit("/", 1)[1]]["properties"]
    assert ranges["minimum"]["type"] == "string"
    assert {"tokenAuth", "cookieAuth"} <= set(schema["components"]["securitySchemes"])


def test_the_schema_labels_each_time_fields_clock(viewer):
    """Orders carry market time, ``created_at`` / ``updated_at`` the server's wall time: the schema says which, the
    names stay (issue 22: "one clock … both labelled")."""
    schema = viewer.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    components = schema["components"]["schemas"]
    walls = markets = 0
    for name, component in components.items():
        for field, spec in component.get("properties", {}).items():
            said = spec.get("description", "")
            if field in ("created_at", "updated_at", "sent_at"):
                assert said.startswith("Wall time: the server's clock"), (name, field, said)
                assert "market time" in said and "ISO 8601 UTC" in said
                walls += 1
            elif field in ("timestamp", "event_time", "submitted_at", "filled_at", "entry_time", "exit_time"):
                assert said.startswith("Market time:"), (name, field, said)
                markets += 1
    order, trade = components["Order"]["properties"], components["Trade"]["properties"]
    assert {"created_at", "event_time", "submitted_at", "filled_at"} <= set(order)
    assert order["event_time"]["description"].endswith("Event time of the decision, epoch ms")  # the model's kept
    assert trade["entry_time"]["description"].startswith("Market time:")
    assert components["RiskParameters"]["properties"]["updated_at"]["description"].startswith("Wall time:")
    assert components["Notification"]["properties"]["created_at"]["description"].startswith("Wall time:")
    assert walls >= 8 and markets >= 10, (walls, markets)


def test_swagger_ui_is_served_from_the_installed_package():
    client = Client()
    client.force_login(make_user("reader"))
    html = client.get("/api/docs/").content.decode()
    assert "swagger-ui" in html
    assert "cdn" not in html.lower() and "https://" not in html
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")


# --- regressions found by schemathesis ----------------------------------------------------------------------


@pytest.mark.parametrize("offset", ["%2B23:34", "-20:41", "%2B00:16"])
def test_date_filters_take_any_offset_python_accepts(viewer, offset):
    """PostgreSQL refuses offsets beyond ±15:59; the filter converts to UTC first (it was a 500)."""
    order(1, created=datetime(2024, 6, 1, tzinfo=UTC))
    response = viewer.get(f"/api/orders/?since=2024-05-30T12:00:00{offset}&until=2024-06-02T12:00:00{offset}")
    assert response.status_code == 200 and response.json()["count"] == 1


def test_date_filter_out_of_range_after_conversion_is_400(viewer):
    response = viewer.get("/api/signals/?until=0001-01-01T00:00:00%2B23:00")
    assert response.status_code == 400 and "until" in response.json()


def test_json_nested_deeper_than_the_decoder_follows_is_a_400():
    deep = "[" * 1000 + "]" * 1000
    response = APIClient().post("/api/token/", deep, content_type="application/json")
    assert response.status_code == 400 and "nested too deeply" in response.json()["detail"]


def test_a_nul_in_the_positions_symbol_filter_is_a_400(viewer):
    Position.objects.create(symbol="BTC_USDT", quantity=1, avg_entry_price=100)
    response = viewer.get("/api/positions/?symbol=%00")
    assert response.status_code == 400 and "symbol" in response.json()
    assert viewer.get("/api/positions/?symbol=BTC_USDT").json()["count"] == 1
    assert viewer.get("/api/positions/?symbol=ETH_USDT").json()["count"] == 0


def test_live_state_is_never_cached(viewer):
    for url in ["/api/status/", "/api/risk/state/"]:
        assert "no-store" in viewer.get(url)["Cache-Control"], url


def test_api_404_is_json_even_when_no_route_matches(viewer):
    response = viewer.get("/api/orders/1.5e-3/")
    assert response.status_code == 404 and response.json() == {"detail": "Not found."}
    assert Client().get("/no-such-page/")["Content-Type"].startswith("text/html")


def test_a_body_of_a_type_the_endpoint_does_not_read_is_refused_with_a_documented_415(superuser):
    response = superuser.generic("POST", "/api/risk/halt/", "halt now", content_type="text/plain")
    assert response.status_code == 415 and "text/plain" in response.json()["detail"]
    schema = superuser.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    writes = [("/api/risk/halt/", "post"), ("/api/risk/release/", "post"), ("/api/risk/parameters/", "patch")]
    for path, method in writes:
        assert "415" in schema["paths"][path][method]["responses"], (path, method)
    assert "415" not in schema["paths"]["/api/orders/"]["get"]["responses"]


def test_the_api_root_lists_its_endpoints(viewer):
    listed = APIClient().get("/api/").json()  # public: paths only, each endpoint asks for its own credentials
    assert {"status", "orders", "risk-parameters", "risk-halt", "schema", "docs"} <= set(listed)
    for name, path in listed.items():
        assert path.startswith("/api/"), name
        # there, not a 404 (the docs page sends a browser without a session to the login page)
        assert viewer.get(path).status_code in (200, 302, 400, 403, 405), path

"""Fuzzing (hypothesis) of every event consumer, of bus.publish, and of the REST API's writes and list filters.

Events: arbitrary JSON-ish values and mutations of valid events (keys dropped, values replaced by anything,
NaN / ±inf, huge and negative numbers, unknown symbols, extra keys). Whatever arrives, no exception escapes a
consumer (EVENT_CONSUMERS) — a malformed event is stored as a RejectedEvent naming the problem — and
``bus.publish`` either accepts an event or raises the documented ``InvalidEvent`` (with a RejectedEvent).

API: PATCH /api/risk/parameters/, POST /api/risk/halt/ and /api/risk/release/, POST /api/token/ with arbitrary
bodies, and the list endpoints with arbitrary since / until / symbol / page / page_size: never a 5xx, and a
400 names the offending field. (tests/integration/test_schemathesis_api.py checks schema conformance; this file throws
values the schema does not describe.)

Examples found by the fuzzer are kept as plain tests at the end.
"""

from __future__ import annotations

import json
import math
import os

import pytest
from django.conf import settings as django_settings
from django.utils.module_loading import import_string
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from risk.parameters import PARAMETER_SPECS

pytestmark = pytest.mark.django_db(transaction=True)

FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "60")),  # FUZZ_EXAMPLES=2000 for a longer hunt
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
T0 = 1_735_689_600_000
SYMBOL = "FUZZ_USDT"

# --- events -----------------------------------------------------------------------------------------------------

WEIRD_NUMBERS = st.sampled_from(
    [
        math.nan,
        math.inf,
        -math.inf,
        0,
        -0.0,
        -1,
        -1e-300,
        1e-300,
        5e-324,
        1e300,
        1.7976931348623157e308,
        10**40,
        -(10**40),
        2**63,
        2**64 + 1,
        1e16,
        123456789012345678.5,
        0.1,
        True,
        False,
    ]
)
JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | WEIRD_NUMBERS
    | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
SYMBOLS = st.sampled_from(
    [SYMBOL, "NOPE_XYZ", "BTC_USDT", "", "fuzz_usdt", "A" * 30 + "_B", "FUZZ-USDT", "X_" + "9" * 20]
)


def valid_events() -> dict[str, dict]:
    return {
        "market_data": {
            "type": "market_data",
            "symbol": SYMBOL,
            "interval": "1m",
            "timestamp": T0,
            "price": 100.5,
            "volume": 10.0,
            "open": 100.0,
            "high": 101.0,
            "low": 99.5,
            "close": 100.5,
        },
        "signal": {
            "type": "signal",
            "signal_id": f"{SYMBOL}:1m:fuzz:{T0}",
            "strategy": "fuzz",
            "symbol": SYMBOL,
            "interval": "1m",
            "side": "BUY",
            "confidence": 0.7,
            "reason": "fuzz",
            "price": 100.5,
            "timestamp": T0,
        },
        "order": {
            "type": "order",
            "client_order_id": "cdbfuzz0000000000000000000000000",
            "signal_id": "fuzz",
            "symbol": SYMBOL,
            "side": "BUY",
            "quantity": 1.0,
            "price": 100.5,
            "approved_by": "risk",
            "risk_checks": ["drawdown"],
            "stop_loss": 98.0,
            "timestamp": T0,
        },
        "order_result": {
            "type": "order_result",
            "order_id": "PAPER_1",
            "client_order_id": "cdbfuzz",
            "status": "FILLED",
            "filled_quantity": 1.0,
            "price": 100.0,
            "fees": 0.1,
            "timestamp": T0,
        },
        "alert": {"type": "alert", "level": "INFO", "code": "FUZZ", "message": "fuzz", "timestamp": T0},
        "health": {"type": "health", "service": "fuzz", "status": "ok", "timestamp": T0},
    }


@st.composite
def mutated(draw, event_type: str | None = None) -> dict:
    """A valid event of the type, then a few mutations: drop, replace (anything / weird numbers), add keys."""
    events = valid_events()
    base = dict(events[event_type or draw(st.sampled_from(sorted(events)))])
    for _ in range(draw(st.integers(0, 4))):
        action = draw(st.sampled_from(["drop", "replace", "weird", "symbol", "extra", "type"]))
        keys = sorted(base)
        if action == "drop" and keys:
            base.pop(draw(st.sampled_from(keys)), None)
        elif action == "replace" and keys:
            base[draw(st.sampled_from(keys))] = draw(JSONISH)
        elif action == "weird" and keys:
            base[draw(st.sampled_from(keys))] = draw(WEIRD_NUMBERS)
        elif action == "symbol":
            base["symbol"] = draw(SYMBOLS)
        elif action == "extra":
            base[draw(st.text(min_size=1, max_size=12))] = draw(JSONISH)
        elif action == "type":
            base["type"] = draw(st.sampled_from([*events, "nope", "", None, 1]))
    return base


ANY_PAYLOAD = (
    mutated()
    | JSONISH
    | st.binary(max_size=40)
    | mutated().map(lambda e: json.dumps(e, default=str))
    | st.text(max_size=40)
)


def consumers() -> list[tuple[str, str]]:
    return [(topic, path) for topic, paths in django_settings.EVENT_CONSUMERS.items() for path in paths]


def _candle(timestamp: int = T0, price: str = "100") -> None:
    from marketdata.models import Candle

    Candle.objects.get_or_create(
        symbol=SYMBOL,
        interval="1m",
        timestamp=timestamp,
        defaults={"open": price, "high": price, "low": price, "close": price, "volume": "10"},
    )


def _consume(path: str, payload) -> None:
    """Run the consumer task in-process, the way a worker does; nothing may escape it."""
    from ground import bus
    from ground.models import RejectedEvent

    task = import_string(path)
    before = RejectedEvent.objects.count()
    try:
        invalid = None
        event = bus.validate(payload)
    except bus.InvalidEvent as error:
        invalid = str(error)
    task(payload)  # an exception here fails the test: a bad event must never stop a worker
    if invalid is not None:
        rejected = RejectedEvent.objects.order_by("-id").first()
        assert RejectedEvent.objects.count() == before + 1, f"malformed event not stored: {payload!r}"
        assert rejected.stage == "consume" and rejected.consumer and rejected.reason
    else:
        assert isinstance(event, dict)


@pytest.mark.parametrize("topic,path", consumers())
def test_consumers_survive_arbitrary_payloads(topic, path):
    _candle()

    @FUZZ
    @given(payload=ANY_PAYLOAD)
    def check(payload):
        _consume(path, payload)

    check()


@pytest.mark.parametrize("topic,path", consumers())
def test_consumers_survive_mutations_of_their_own_event(topic, path):
    event_type = {"market_data": "market_data", "signals": "signal", "orders": "order"}[topic]
    _candle()

    @FUZZ
    @given(payload=mutated(event_type))
    def check(payload):
        _consume(path, payload)

    check()


def test_publish_accepts_or_raises_invalid_event():
    """bus.publish: a valid event goes through (persisted, dispatched); anything else raises InvalidEvent with the
    reason and leaves a RejectedEvent — never another exception."""
    from ground import bus
    from ground.models import RejectedEvent

    _candle()

    md = valid_events()["market_data"]

    @FUZZ
    @given(payload=ANY_PAYLOAD)
    @example(payload={**md, "price": 1e300, "close": 1e300})
    @example(payload={**md, "timestamp": T0 + 60_000, "price": 1e-300, "close": 1e-300, "low": 1e-300})
    @example(payload={**md, "timestamp": 2**62})
    @example(payload={**md, "timestamp": 10**20})
    @example(payload={**md, "timestamp": T0 + 120_000, "volume": 1e19})
    def check(payload):
        before = RejectedEvent.objects.count()
        try:
            published = bus.publish(payload)
        except bus.InvalidEvent as error:
            assert str(error)
            assert RejectedEvent.objects.count() == before + 1
            assert RejectedEvent.objects.order_by("-id").first().stage == "publish"
        else:
            assert isinstance(published, dict) and published.get("type")

    check()


# --- REST API ---------------------------------------------------------------------------------------------------

TEXT_VALUES = (
    st.text(max_size=40)
    | st.sampled_from(
        [
            "",
            "-1",
            "0",
            "1e309",
            "NaN",
            "inf",
            "-inf",
            "99999999999999999999999999",
            "2024-13-45T99:99:99",
            "2024-01-01T00:00:00+25:00",
            "9999-12-31T23:59:59-15:59",
            "0001-01-01T00:00:00+15:59",
            "2024-01-01",
            "\x00",
            "' OR 1=1 --",
            "%",
            "1" * 400,
        ]
    )
    | st.integers().map(str)
    | st.floats().map(str)
)
BODY_VALUES = JSONISH | TEXT_VALUES


@pytest.fixture
def api():
    from django.contrib.auth.models import User
    from rest_framework.test import APIClient

    user = User.objects.create_superuser("fuzzer", password="pw-fuzz")
    client = APIClient()
    client.force_authenticate(user)
    return client


def _assert_answer(response, fields: set[str]) -> None:
    assert response.status_code < 500, f"{response.status_code}: {getattr(response, 'content', b'')[:300]!r}"
    if response.status_code == 400:
        body = response.json()
        assert isinstance(body, dict) and body, body
        named = set(body)
        as_parsed = {f.strip() for f in fields}  # a form body's parser strips whitespace from its keys
        assert named & (fields | as_parsed | {"non_field_errors", "detail"}), f"400 without a field name: {body}"


PARAMETER_NAMES = [*PARAMETER_SPECS, *(name.lower() for name in PARAMETER_SPECS), "reason"]


def test_patch_risk_parameters_with_arbitrary_bodies(api):
    keys = st.sampled_from(PARAMETER_NAMES) | st.text(max_size=12)

    @FUZZ
    @given(body=st.dictionaries(keys, BODY_VALUES, max_size=4), as_json=st.booleans())
    def check(body, as_json):
        if as_json:
            raw = json.dumps(body, default=str)
            response = api.patch("/api/risk/parameters/", raw, content_type="application/json")
        else:
            form = {k: json.dumps(v, default=str) if isinstance(v, (dict, list)) else str(v) for k, v in body.items()}
            response = api.patch("/api/risk/parameters/", form, format="multipart")
        _assert_answer(response, set(body) | set(PARAMETER_NAMES))

    check()


def test_patch_risk_parameters_with_non_object_bodies(api):
    @FUZZ
    @given(raw=st.one_of(JSONISH.map(lambda v: json.dumps(v, default=str)), st.text(max_size=30)))
    def check(raw):
        response = api.patch("/api/risk/parameters/", raw, content_type="application/json")
        assert response.status_code < 500

    check()


@pytest.mark.parametrize("path", ["/api/risk/halt/", "/api/risk/release/"])
def test_halt_and_release_with_arbitrary_bodies(api, path):
    from risk.models import TradingState

    @FUZZ
    @given(body=st.dictionaries(st.sampled_from(["reason", "state"]) | st.text(max_size=8), BODY_VALUES, max_size=3))
    def check(body):
        response = api.post(path, json.dumps(body, default=str), content_type="application/json")
        _assert_answer(response, set(body) | {"reason"})
        if response.status_code == 200:
            assert TradingState.load().state == ("HALTED" if "halt" in path else "ACTIVE")

    check()


def test_token_with_arbitrary_credentials():
    from django.contrib.auth.models import User
    from rest_framework.test import APIClient

    User.objects.create_user("someone", password="right-password")
    client = APIClient()

    @FUZZ
    @given(
        body=st.dictionaries(st.sampled_from(["username", "password"]) | st.text(max_size=8), BODY_VALUES, max_size=3),
        as_json=st.booleans(),
    )
    def check(body, as_json):
        if as_json:
            response = client.post("/api/token/", json.dumps(body, default=str), content_type="application/json")
        else:
            response = client.post("/api/token/", {k: str(v) for k, v in body.items()})
        _assert_answer(response, set(body) | {"username", "password"})
        assert response.status_code in (200, 400)

    check()


LISTS = ["/api/orders/", "/api/trades/", "/api/signals/", "/api/alerts/", "/api/risk-events/", "/api/candles/"]
LIST_PARAMS = ["since", "until", "symbol", "page", "page_size", "status", "side", "level", "decision", "interval"]


def test_list_filters_with_arbitrary_values(api):
    _candle()

    @FUZZ
    @given(
        path=st.sampled_from(LISTS + ["/api/positions/", "/api/backtests/"]),
        params=st.dictionaries(st.sampled_from(LIST_PARAMS) | st.text(max_size=8), TEXT_VALUES, max_size=4),
    )
    @example(path="/api/orders/", params={"since": "9999-12-31T23:59:59-15:59"})
    @example(path="/api/candles/", params={"since": "1e309"})
    @example(path="/api/candles/", params={"until": "99999999999999999999999999"})
    @example(path="/api/orders/", params={"symbol": "\x00"})
    @example(path="/api/orders/", params={"page": "999999999999999999999"})
    def check(path, params):
        response = api.get(path, params)
        assert response.status_code in (200, 400, 404), (response.status_code, response.content[:300])
        if response.status_code == 400:
            assert set(response.json()) & set(params), response.json()

    check()


# --- examples the fuzzer found, kept as plain tests ------------------------------------------------------------


@pytest.mark.parametrize(
    "payload", ["\x00", b"\x00{", {"type": "market_data\x00"}, {"type": "signal", "reason": "a\x00"}]
)
def test_a_payload_with_nul_characters_is_still_stored_as_rejected(payload):
    """PostgreSQL text cannot hold NUL: the rejected payload used to be lost (only logged)."""
    from ground.models import RejectedEvent
    from trading.tasks import on_market_data

    assert on_market_data(payload) is None
    rejected = RejectedEvent.objects.get()
    assert rejected.stage == "consume" and rejected.reason and "\x00" not in rejected.payload + rejected.reason


@pytest.mark.parametrize("price", [5e-324, 1e-300, 1e-13, 1e-12, 0.5, 9.99e17, 1e18, 1e300])
@pytest.mark.parametrize("side", ["BUY", "SELL"])
def test_a_signal_with_an_extreme_price_is_decided_or_refused_without_an_exception(price, side):
    from risk.models import RiskEvent
    from trading.tasks import on_signal

    _candle()
    event = {**valid_events()["signal"], "price": price, "side": side}
    on_signal(event)
    on_signal(event)  # a redelivery changes nothing
    assert RiskEvent.objects.exclude(decision="STATE_CHANGE").count() <= 1


@pytest.mark.parametrize("quantity", [5e-324, 1e-13, 9.99e17])
def test_an_order_with_an_extreme_quantity_is_refused_without_an_exception(quantity):
    from ground.models import RejectedEvent
    from risk.tasks import on_order

    on_order({**valid_events()["order"], "quantity": quantity})
    assert RejectedEvent.objects.filter(stage="consume").exists()  # no such stored order

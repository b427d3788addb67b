"""Property-based API tests: schemathesis generates requests from /api/schema/ and checks every response.

It calls the Django app in-process (WSGI) with a superuser's token, over a database with a little of everything
in it. Checked: no 5xx, and every response conforms to the schema (status code documented, content type, body).
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
import schemathesis
from django.contrib.auth.models import User
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis import checks as st_checks

from execution.models import Order, Position, Trade
from marketdata.models import Candle
from risk.models import Alert, RiskEvent
from trading.models import Signal

T0 = 1_730_443_200_000


def _seed() -> None:
    price = Decimal("100")
    for i, symbol in enumerate(["BTC_USDT", "ETH_USDT"]):
        Candle.objects.create(
            symbol=symbol, interval="1m", timestamp=T0, open=price, high=price, low=price, close=price, volume=5
        )
        order = Order.objects.create(
            order_id=f"PAPER_{i}",
            client_order_id=f"cdbschema{i}",
            symbol=symbol,
            side="BUY",
            quantity=1,
            requested_price=price,
            price=price,
            filled_quantity=1,
            status="FILLED",
            event_time=T0,
        )
        Trade.objects.create(
            trade_id=f"T{i}", order=order, symbol=symbol, quantity=1, entry_price=price, entry_time=timezone.now()
        )
        Position.objects.create(symbol=symbol, quantity=1, avg_entry_price=price)
        Signal.objects.create(
            signal_id=f"s{i}",
            symbol=symbol,
            interval="1m",
            side="BUY",
            confidence=Decimal("0.5"),
            reason="seed",
            strategy="sma_cross",
            price=price,
            timestamp=T0,
        )
        Alert.objects.create(level="INFO", code="SEED", message="seed", timestamp=T0)
        RiskEvent.objects.create(decision="APPROVE", layer="position", symbol=symbol, reason="seed", timestamp=T0)


def _load_schema() -> schemathesis.openapi.OpenApiSchema:
    """The schema /api/schema/ serves, made by its own generator at collection time: the endpoint needs a login,
    and a user needs the database, which collection has not set up."""
    document = OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True))
    loaded = schemathesis.openapi.from_dict(json.loads(document))
    loaded.app = get_wsgi_application()
    return loaded


schema = _load_schema()


@pytest.fixture(autouse=True)
def _keep_the_test_connection():
    """Like Django's test client: a WSGI request must not close the connection holding the test's transaction."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def token(db) -> str:
    _seed()
    user = User.objects.create_superuser("schemathesis", password="pw")
    return Token.objects.create(user=user).key


CHECKS = [
    st_checks.not_a_server_error,
    st_checks.status_code_conformance,
    st_checks.content_type_conformance,
    st_checks.response_schema_conformance,
]


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema(case, token):
    case.call_and_validate(headers={"Authorization": f"Token {token}"}, checks=CHECKS)

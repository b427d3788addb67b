"""Notifications in production mode: a trading worker (default queue), a notify worker (``-Q notify``) and daphne
on Redis and PostgreSQL. A halt through the HTTP API reaches the destinations; a destination that answers 500 slowly
is retried by Celery with backoff and given up on, while the trading worker fills the next order undisturbed."""

from __future__ import annotations

import json
import urllib.request

import pytest
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token

from execution.models import Order
from ground import bus
from notify import service
from notify.models import Destination, Notification
from tests.support import processes, series, services
from tests.support.notify_servers import WebhookServer
from tests.support.processes import wait_until

pytestmark = [pytest.mark.workers, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def production(django_db_setup, tmp_path):
    services.flush_broker()
    env = processes.child_env(
        PAPER_FAILURE_RATE="0",
        STRATEGY="sma_cross",
        NOTIFY_MAX_ATTEMPTS="3",
        NOTIFY_RETRY_BACKOFF_SEC="0.5",
        NOTIFY_TIMEOUT_SEC="4",
    )
    started = [
        processes.start_worker("trading", env, tmp_path),
        processes.start_worker("notify", env, tmp_path, concurrency=2, queues="notify"),
    ]
    web = processes.start_daphne(env, tmp_path)
    started.append(web)
    yield web, started
    for process in started:
        process.stop()


def _post(port: int, path: str, token: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json", "Host": "localhost"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def _get(port: int, path: str, token: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Token {token}", "Host": "localhost"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def test_halt_retries_and_fills_through_the_notify_queue(production):
    web, started = production
    token = Token.objects.create(user=User.objects.create_superuser("boss", password="pw")).key
    with WebhookServer(status=500, delay=2.0) as failing, WebhookServer() as healthy:
        secret = "Worker-Secret-5"
        service.seed_from_env(
            f"{failing.url('down', credentials='cdb:' + secret)},{healthy.url(query='topics=alerts,fills')}"
        )
        failing_name = Destination.objects.get(masked_url__contains=f":{failing.port}/").name

        assert _post(web.port, "/api/risk/halt/", token, {"reason": "night check"})["state"] == "HALTED"
        wait_until(lambda: healthy.received, message="the halt at the healthy destination")
        assert healthy.received[0]["title"] == "[CRITICAL] TRADING_STATE"
        assert "Trading HALTED: night check" in healthy.received[0]["message"]
        _post(web.port, "/api/risk/release/", token, {"reason": "all good"})

        evts = series.filled_events()
        series.publish_all(evts[:-1])  # to the trading worker through Redis: a BUY decided at the cross
        wait_until(lambda: Order.objects.exists(), timeout=60, message="the decided order")
        bus.publish(evts[-1])  # the next candle, whose open it fills at
        order = wait_until(
            lambda: Order.objects.filter(status=Order.Status.FILLED).first(), timeout=60, message="a filled order"
        )
        # Filled while the slow, failing destination was still being tried (two messages, 2 s per attempt).
        unsettled = Notification.objects.filter(
            destination_name=failing_name, status__in=[Notification.Status.QUEUED, Notification.Status.RETRYING]
        )
        assert unsettled.exists()
        wait_until(
            lambda: any(m["title"] == "Fill: BUY TEST_USDT" for m in healthy.received), message="the fill message"
        )
        wait_until(
            lambda: Notification.objects.filter(destination_name=failing_name, status="FAILED").count() == 2,
            timeout=60,
            message="the failing destination given up on",
        )
        assert len(failing.received) == 6  # two messages, NOTIFY_MAX_ATTEMPTS each
    assert f"BUY {order.filled_quantity.normalize():,f} TEST @ " in next(  # in the base asset
        m["message"] for m in healthy.received if m["title"].startswith("Fill")
    )
    health = _get(web.port, "/api/status/", token)["health"]["notifications"]
    assert health["ok"] is False and failing_name in health["detail"]
    notify_log = next(p for p in started if p.name == "notify").output()
    assert "notify.deliver" in notify_log and "retry 1 of" in notify_log  # Celery's retry, with backoff
    for process in started:
        assert secret not in process.output(), process.name

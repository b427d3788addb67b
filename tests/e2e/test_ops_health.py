"""/health: 200 with the parts, 503 naming the database or Redis when down, always within a second.

The outages are real: a real daphne process talks to PostgreSQL and Redis through TCP proxies the test
controls (closed = connection refused, hang = accepts and never answers)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
from django.conf import settings

from tests.support import processes
from tests.support.tcp_proxy import TcpProxy


def get(port: int, path: str = "/health", timeout: float = 5) -> tuple[int, dict | str, float]:
    start = time.monotonic()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Host": "localhost"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    elapsed = time.monotonic() - start
    try:
        return status, json.loads(raw), elapsed
    except ValueError:
        return status, raw.decode(), elapsed


# --- in-process (both modes) -----------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_health_reports_every_part_to_staff_and_only_up_or_down_to_others(client, admin_client):
    from risk.state import halt

    anonymous = client.get("/health", HTTP_HOST="localhost")
    assert anonymous.status_code == 200
    assert set(anonymous.json()) == {"status", "db", "redis"} and anonymous.json()["db"] == "ok"
    client = admin_client
    response = client.get("/health", HTTP_HOST="localhost")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["db"] == "ok"
    assert body["trading_state"] == "ACTIVE"
    assert set(body) >= {"status", "db", "redis", "workers", "trading_state", "last_market_data_age_s"}
    if settings.REDIS_URL:
        assert body["redis"] == "ok" and isinstance(body["workers"], int)
    else:
        assert body["redis"] == "not used"
    halt("drill", actor="tester")
    assert client.get("/health", HTTP_HOST="localhost").json()["trading_state"] == "HALTED"


@pytest.mark.django_db(transaction=True)
def test_health_reports_the_age_of_the_newest_candle(admin_client):
    client = admin_client
    from ground import bus
    from tests.support import series

    assert client.get("/health", HTTP_HOST="localhost").json()["last_market_data_age_s"] is None
    bus.publish(series.events()[0])
    age = client.get("/health", HTTP_HOST="localhost").json()["last_market_data_age_s"]
    assert age is not None and 0 <= age < 5


@pytest.mark.django_db(transaction=True)
def test_health_names_a_configured_redis_that_is_down(client, admin_client, settings):
    port = processes.free_port()
    settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
    start = time.monotonic()
    response = admin_client.get("/health", HTTP_HOST="localhost")
    assert time.monotonic() - start < 1.0
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["redis"] and body["redis"].startswith("down:") and body["db"] == "ok"
    # Anonymous callers learn which part is down, not the error text with the host and port behind it.
    public = client.get("/health", HTTP_HOST="localhost")
    assert public.status_code == 503 and public.json() == {
        "status": "error", "db": "ok", "redis": "down", "failing": ["redis"]
    }  # fmt: skip
    assert str(port) not in public.content.decode()


# --- real daphne through proxies ---------------------------------------------------------------------------------
@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_health_turns_503_when_postgres_is_unreachable_and_recovers(service_env, tmp_path):
    db = settings.DATABASES["default"]
    proxy = TcpProxy(int(db["PORT"] or 5432))
    env = {**service_env, "DATABASE_URL": f"postgres://{db['USER']}@127.0.0.1:{proxy.port}/{db['NAME']}"}
    server = processes.start_daphne(env, tmp_path)
    try:
        status, body, _ = get(server.port)
        assert status == 200 and body["db"] == "ok", body

        proxy.down()
        went_down = time.monotonic()
        status, body, elapsed = get(server.port)
        assert status == 503 and body["failing"] == ["db"] and body["redis"] == "ok", body
        assert time.monotonic() - went_down < 5 and elapsed < 1.0

        proxy.hang()  # accepts and never answers: the check must still give up in time
        status, body, elapsed = get(server.port)
        assert status == 503 and body["failing"] == ["db"], body
        assert elapsed < 1.0, f"/health took {elapsed:.2f}s with a hanging database"

        proxy.up()
        back = time.monotonic()
        status, body = processes.wait_until(
            lambda: (r := get(server.port))[0] == 200 and r[:2], timeout=10, message="/health to recover"
        )
        assert body["db"] == "ok" and time.monotonic() - back < 5
    finally:
        server.stop()
        proxy.close()


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_health_names_redis_when_it_is_down_or_hangs(service_env, tmp_path):
    from urllib.parse import urlsplit

    redis_url = urlsplit(settings.REDIS_URL)
    proxy = TcpProxy(redis_url.port or 6379)
    env = {**service_env, "REDIS_URL": f"redis://127.0.0.1:{proxy.port}{redis_url.path}"}
    server = processes.start_daphne(env, tmp_path)
    try:
        status, body, _ = get(server.port)
        assert status == 200 and body["redis"] == "ok", body
        for outage in (proxy.down, proxy.hang):
            outage()
            status, body, elapsed = get(server.port)
            assert status == 503 and body["failing"] == ["redis"] and body["db"] == "ok", (outage.__name__, body)
            assert elapsed < 1.0, f"/health took {elapsed:.2f}s with Redis {outage.__name__}"
        proxy.up()
        status, body = processes.wait_until(
            lambda: (r := get(server.port))[0] == 200 and r[:2], timeout=10, message="/health to recover"
        )
        assert body["redis"] == "ok"
    finally:
        server.stop()
        proxy.close()

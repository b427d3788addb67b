"""The kill switch answers under load: the web process does not hold a PostgreSQL connection per request thread.

1,000 mixed requests (Prometheus's /metrics, anonymous /health, token /api/status/, a logged-in dashboard) from
20 concurrent clients against a real daphne on PostgreSQL and Redis, with halt, release and status sent in the
middle of it: every one of those answers correctly, the web process never holds more connections than requests in
flight, and none once it is idle. Before, each request thread kept its connection for CONN_MAX_AGE (60 s): about
1,000 requests filled PostgreSQL's 100 and then the halt answered 500 "too many clients already".
"""

from __future__ import annotations

import json
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.contrib.auth.models import User
from django.db import connection
from rest_framework.authtoken.models import Token

from tests.support.processes import wait_until
from tests.support.ws import session_cookie

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]
REQUESTS, CLIENTS = 1000, 20


def _web_connections() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'cdb-web' AND datname = current_database()"
        )
        return cursor.fetchone()[0]


def _get(url: str, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _post(url: str, token: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, json.loads(response.read())


@pytest.mark.parametrize("serve", [False, True], ids=["daphne", "manage.py serve"])
def test_a_thousand_requests_leave_no_connection_held_and_the_kill_switch_answers(service_env, tmp_path, serve):
    from tests.support.processes import start_daphne

    server = start_daphne({**service_env, "METRICS_TOKEN": "a-metrics-token-for-tests"}, tmp_path, serve=serve)
    try:
        _load(f"http://127.0.0.1:{server.port}")
    finally:
        server.stop()


def _load(base: str) -> None:
    boss = User.objects.create_superuser("boss", password="pw-boss-only-for-tests")
    token = Token.objects.create(user=boss).key
    kinds = [
        (f"{base}/metrics", {"Authorization": "Bearer a-metrics-token-for-tests"}),
        (f"{base}/health", {}),
        (f"{base}/api/status/", {"Authorization": f"Token {token}"}),
        (f"{base}/", {"Cookie": session_cookie(boss)}),
    ]
    most, stop = [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            most[0] = max(most[0], _web_connections())
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    switch: list[tuple[int, dict]] = []
    with ThreadPoolExecutor(CLIENTS) as pool:
        futures = [pool.submit(_get, *kinds[i % len(kinds)]) for i in range(REQUESTS)]
        switch.append(_post(f"{base}/api/risk/halt/", token, {"reason": "under load"}))
        switch.append(_post(f"{base}/api/risk/release/", token, {"reason": "still under load"}))
        statuses = [future.result() for future in futures]
    stop.set()
    sampler.join(5)

    assert statuses.count(200) == REQUESTS, {code: statuses.count(code) for code in set(statuses)}
    assert [(code, body["state"]) for code, body in switch] == [(200, "HALTED"), (200, "ACTIVE")]
    assert most[0] <= CLIENTS + 2, f"the web process held {most[0]} connections for {CLIENTS} clients"
    assert most[0] >= 1, "no connection named cdb-web under load: the server did not run as the web process"
    wait_until(lambda: _web_connections() == 0, timeout=10, message="no connection held by the idle web process")

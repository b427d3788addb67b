"""/metrics: django-prometheus plus the business metrics; sums over several real worker processes
(prometheus_client multiprocess mode, PROMETHEUS_MULTIPROC_DIR shared by the workers and daphne)."""

from __future__ import annotations

import os
import re
import urllib.request

import pytest

from tests.support import processes, series
from tests.support.processes import wait_until

BUSINESS = [
    "trades_total",
    "trades_failed_total",
    "daily_drawdown_percent",
    "total_exposure_percent",
    "risk_checks_passed_total",
    "risk_checks_failed_total",
    "service_health",
    "signal_latency_seconds",
    "order_latency_seconds",
    "events_rejected_total",
    "celery_queue_length",
    "trading_state",
]


def samples(text: str, name: str) -> dict[str, float]:
    """{label string: value} of one sample name in the Prometheus text format."""
    out = {}
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})?\s+(\S+)$", line)
        if match:
            out[match.group(1) or ""] = float(match.group(2))
    return out


def total(text: str, name: str) -> float:
    return sum(samples(text, name).values())


@pytest.mark.django_db(transaction=True)
def test_metrics_lists_every_business_metric_in_process(client, sma_cross, settings):
    from ground import bus

    series.publish_all(series.events())
    with pytest.raises(bus.InvalidEvent):
        bus.publish({"type": "market_data", "symbol": "BAD"})
    assert client.get("/metrics", HTTP_HOST="localhost").status_code == 401  # the account's figures: not public
    settings.METRICS_TOKEN = "a-metrics-token-for-tests"
    wrong = client.get("/metrics", HTTP_HOST="localhost", HTTP_AUTHORIZATION="Bearer not-the-token")
    assert wrong.status_code == 401
    response = client.get("/metrics", HTTP_HOST="localhost", HTTP_AUTHORIZATION="Bearer a-metrics-token-for-tests")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    for name in BUSINESS:
        assert f"# TYPE {name} " in text, name
    assert "django_http_requests_total_by_method_total" in text  # django-prometheus
    assert samples(text, "service_health")['{component="db"}'] == 1.0
    assert samples(text, "events_rejected_total")['{topic="market_data"}'] >= 1
    assert samples(text, "signal_latency_seconds_count")[""] >= 1
    assert samples(text, "trading_state")[""] == 0.0


@pytest.mark.postgres  # the child process reads the test database by its PostgreSQL URL
@pytest.mark.django_db(transaction=True)
def test_a_fresh_web_process_lists_every_business_metric_at_zero(service_env, tmp_path):
    """Before any event: every metric SPEC §6 names is on /metrics, the counters at 0 (no lazy registration)."""
    metrics_dir = tmp_path / "prom"
    metrics_dir.mkdir()
    env = {**service_env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "METRICS_TOKEN": "a-metrics-token-for-tests"}
    server = processes.start_daphne(env, tmp_path)
    try:
        headers = {"Host": "localhost", "Authorization": "Bearer a-metrics-token-for-tests"}
        request = urllib.request.Request(f"http://127.0.0.1:{server.port}/metrics", headers=headers)
        text = urllib.request.urlopen(request, timeout=10).read().decode()
    finally:
        server.stop()
    for name in BUSINESS:
        assert f"# TYPE {name} " in text, name
    for counter in ("trades_total", "trades_failed_total", "risk_checks_passed_total", "risk_checks_failed_total"):
        assert samples(text, counter) and total(text, counter) == 0, counter
    assert samples(text, "trades_total") == {'{side="BUY"}': 0.0, '{side="SELL"}': 0.0}
    assert samples(text, "events_rejected_total")['{topic="market_data"}'] == 0
    assert samples(text, "order_latency_seconds_count")[""] == samples(text, "signal_latency_seconds_count")[""] == 0


@pytest.mark.django_db(transaction=True)
def test_market_data_health_follows_the_live_stale_timeout(client, settings):
    """service_health{component="market_data"} compares the newest candle's age with DATA_STALE_TIMEOUT_SEC as
    the admin set it, not with the environment's seed."""
    from datetime import timedelta

    from django.utils import timezone

    from marketdata.models import Candle
    from risk.models import RiskParameters

    settings.METRICS_TOKEN = "a-metrics-token-for-tests"
    candle = Candle.objects.create(
        symbol="BTC_USDT", interval="1m", timestamp=60_000, open=1, high=1, low=1, close=1, volume=1
    )
    Candle.objects.filter(pk=candle.pk).update(created_at=timezone.now() - timedelta(seconds=100))  # 100 s old

    def market_data_health(timeout_sec: int) -> float:
        RiskParameters.objects.filter(pk=RiskParameters.load().pk).update(data_stale_timeout_sec=timeout_sec)
        headers = {"HTTP_HOST": "localhost", "HTTP_AUTHORIZATION": "Bearer a-metrics-token-for-tests"}
        text = client.get("/metrics", **headers).content.decode()
        return samples(text, "service_health")['{component="market_data"}']

    assert market_data_health(120) == 1.0  # 100 s ≤ 120 s (the environment seed, 30 s, would call it stale)
    assert market_data_health(60) == 0.0  # 100 s > 60 s


@pytest.mark.workers
@pytest.mark.django_db(transaction=True)
def test_metrics_sum_what_several_worker_processes_counted(service_env, tmp_path):
    from execution.models import Order
    from ground import bus
    from risk.models import RiskEvent
    from tests.support.services import flush_broker
    from trading.models import Signal
    from trading.tasks import on_market_data

    flush_broker()
    metrics_dir = tmp_path / "prom"
    metrics_dir.mkdir()
    env = {**service_env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "METRICS_TOKEN": "a-metrics-token-for-tests"}
    workers = [processes.start_worker(f"m{i}", env, tmp_path) for i in (1, 2)]
    server = processes.start_daphne(env, tmp_path)
    symbols = ["AAA_USDT", "BBB_USDT", "CCC_USDT", "DDD_USDT", "EEE_USDT", "FFF_USDT"]
    try:
        crossings = [series.events(symbol) for symbol in symbols]
        for evts in crossings:
            series.publish_all(evts)
        on_market_data.delay({"type": "market_data", "symbol": 42})  # malformed: rejected inside a worker
        wait_until(lambda: Signal.objects.count() == len(symbols), timeout=60, message="every crossing's signal")
        wait_until(lambda: Order.objects.exists(), timeout=60, message="a first order")
        bus.wait_until_idle(timeout=60)
        assert not Order.objects.exclude(status="PENDING").exists()  # each waits for its symbol's next candle
        for evts in crossings:
            bus.publish(series.next_event(evts))
        bus.wait_until_idle(timeout=60)
        orders = Order.objects.count()
        assert orders >= 2 and not Order.objects.filter(status="PENDING").exists()
        headers = {"Host": "localhost", "Authorization": "Bearer a-metrics-token-for-tests"}
        request = urllib.request.Request(f"http://127.0.0.1:{server.port}/metrics", headers=headers)
        text = urllib.request.urlopen(request, timeout=10).read().decode()

        filled = Order.objects.filter(status__in=["FILLED", "PARTIALLY_FILLED"]).count()
        assert total(text, "trades_total") == filled
        assert total(text, "trades_failed_total") == orders - filled
        approved = RiskEvent.objects.filter(decision__in=["APPROVE", "TRIM"]).count()
        assert total(text, "risk_checks_passed_total") == approved
        assert samples(text, "signal_latency_seconds_count")[""] == Signal.objects.count() == len(symbols)
        assert samples(text, "order_latency_seconds_count")[""] == orders
        assert samples(text, "events_rejected_total")['{topic="market_data"}'] == 1
        assert samples(text, "service_health")['{component="workers"}'] == 1.0
        assert samples(text, "celery_workers")[""] == 2
        assert '{queue="celery"}' in samples(text, "celery_queue_length")
        # the counters came from more than one worker process, and none shows up once per process
        pids = {name.rsplit("_", 1)[1].split(".")[0] for name in os.listdir(metrics_dir) if name.startswith("counter")}
        assert len(pids) >= 2, pids
        assert not any("pid=" in line for line in text.splitlines() if line.startswith(("trading_state", "daily_")))
    finally:
        server.stop()
        for worker in workers:
            worker.stop()

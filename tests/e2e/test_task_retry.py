"""A consumer task that meets a database connection error retries itself (exponential backoff) instead of failing
with its work undone: the candle's signal is stored and decided once, on the retry (and filled at the next
candle)."""

import pytest
from django.db import OperationalError

from execution.models import Order, Trade
from ground import bus
from risk import decision_service
from risk.models import RiskEvent
from tests.support import series
from trading.models import Signal
from trading.tasks import on_market_data, on_market_data_batch

pytestmark = pytest.mark.django_db(transaction=True)


def test_every_consumer_task_retries_on_database_connection_errors():
    from risk.tasks import on_order
    from trading.tasks import on_signal

    for task in (on_market_data, on_market_data_batch, on_signal, on_order):
        assert task.autoretry_for == (OperationalError, bus.InterfaceError), task.name
        assert task.retry_backoff == 1 and task.retry_backoff_max == 60 and task.max_retries == 100


def test_a_decision_that_loses_the_database_is_retried_and_done_once(sma_cross, monkeypatch):
    real, failures = decision_service.market_at, []

    def losing_the_connection_once(symbol, at_ms):
        if not failures:
            failures.append(at_ms)
            raise OperationalError("server closed the connection unexpectedly")
        return real(symbol, at_ms)

    monkeypatch.setattr(decision_service, "market_at", losing_the_connection_once)
    events = series.events()
    series.publish_all(events)  # eager tasks, as embedded mode runs them

    assert failures, "the decision met the error"
    assert Signal.objects.count() == 1 and RiskEvent.objects.count() == 1
    assert Order.objects.get().status == Order.Status.PENDING
    series.publish_all(series.events(prices=[110.0], base_ts=events[-1]["timestamp"] + series.STEP_MS))
    assert Order.objects.get().status == Order.Status.FILLED and Trade.objects.count() == 1


@pytest.mark.workers
def test_a_worker_that_loses_postgresql_mid_replay_retries_until_it_is_back(service_env, tmp_path, sma_cross):
    """A real worker reaching PostgreSQL through a TCP proxy that the test takes down as the signal's candle
    arrives: the task fails, retries with backoff while the database is unreachable, and does its work once it is
    back — before, the failed task was acknowledged and the signal lost."""
    from django.conf import settings

    from tests.support import processes
    from tests.support.services import flush_broker
    from tests.support.tcp_proxy import TcpProxy

    db = settings.DATABASES["default"]
    proxy = TcpProxy(int(db["PORT"] or 5432))
    env = {**service_env, "DATABASE_URL": f"postgres://{db['USER']}@127.0.0.1:{proxy.port}/{db['NAME']}"}
    flush_broker()
    worker = processes.start_worker("retrying", env, tmp_path)
    try:
        events = series.events()
        series.publish_all(events[:-1])
        bus.wait_until_idle(timeout=60)
        assert not Signal.objects.exists()

        proxy.down()
        series.publish_all(events[-1:])  # stored by this process; the worker's task cannot reach the database
        processes.wait_until(lambda: "retry 1 of 100 scheduled" in worker.output(), timeout=30, message="a retry")
        assert not Signal.objects.exists()
        proxy.up()
        processes.wait_until(lambda: Order.objects.exists(), timeout=90, message="the retried task to decide")
        bus.wait_until_idle(timeout=60)
        series.publish_all(series.events(prices=[110.0], base_ts=events[-1]["timestamp"] + series.STEP_MS))

        order = processes.wait_until(
            lambda: Order.objects.filter(status="FILLED").first(), timeout=90, message="the retried task to fill"
        )
        assert Signal.objects.count() == 1 and RiskEvent.objects.count() == 1 and Order.objects.count() == 1
        assert Trade.objects.get().order_id == order.id
    finally:
        worker.stop()
        proxy.close()

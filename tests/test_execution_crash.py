"""A worker SIGKILLed between PENDING and send: the task is redelivered and the order fills exactly once."""

import os
import signal

import pytest

from execution.models import Order, Position, Trade
from tests.support import processes, series
from tests.support.processes import wait_until

pytestmark = [pytest.mark.workers, pytest.mark.django_db(transaction=True)]


def test_killed_worker_redelivers_and_fills_once(service_env, tmp_path):
    from tests.support.services import flush_broker

    flush_broker()
    pause_file = tmp_path / "paused.pid"
    env = {**service_env, "CDB_TEST_PAUSE_BEFORE_SEND": f"{pause_file}:60"}
    worker = processes.start_worker("crashy", env, tmp_path, concurrency=1)
    try:
        series.publish_all(series.events())
        pid = int(
            wait_until(
                lambda: pause_file.exists() and pause_file.read_text(),
                timeout=60,
                message="the executor to pause before sending",
            )
        )
        assert Order.objects.get().status == "PENDING"  # stored before sending
        os.kill(pid, signal.SIGKILL)  # the pool process dies mid-task, holding the unacknowledged message

        order = wait_until(
            lambda: Order.objects.filter(status="FILLED").first(),
            timeout=60,
            message="the redelivered task to fill the order",
        )
        assert Order.objects.count() == 1 and Trade.objects.count() == 1
        assert Position.objects.get(symbol="TEST_USDT").quantity == order.quantity
        assert "WorkerLostError" in worker.output() or "SIGKILL" in worker.output()
    finally:
        worker.stop()

"""Shared fixtures: service markers, eager tasks for in-process tests, real Celery workers and daphne for e2e, and
no child process outliving the test or module that started it."""

from __future__ import annotations

import os

import pytest

from tests.support import processes, services

CI = os.environ.get("CI") == "true"
EMBEDDED_RUN = os.environ.get("CDB_EMBEDDED_TESTS") == "1"
SERVICE_MARKERS = ("postgres", "redis", "workers", "browser", "shared_data")


@pytest.hookimpl(tryfirst=True)  # before skipif marks, so that under CI a missing service fails even there
def pytest_runtest_setup(item: pytest.Item) -> None:
    for name in SERVICE_MARKERS:
        if item.get_closest_marker(name) is None:
            continue
        configured, problem = services.check(name)
        if problem is None:
            continue
        # Under CI a missing service is a failure; only an explicit embedded run may skip.
        if CI and not (EMBEDDED_RUN and not configured):
            pytest.fail(f"{name} required: {problem}")
        pytest.skip(f"{name} not available: {problem}")


@pytest.fixture(autouse=True, scope="module")
def _no_child_left_by_the_module():
    """Process groups a module's fixtures started (its workers) end with the module, even if a teardown failed."""
    point = processes.mark()
    yield
    processes.stop_started_since(point)


@pytest.fixture(autouse=True)
def _no_child_left_by_the_test():
    """Process groups a test started end with it, passed or failed: whatever its own teardown left is killed.
    (Higher-scoped fixtures start first, so the module's workers are not the test's.)"""
    point = processes.mark()
    yield
    processes.stop_started_since(point)


def pytest_sessionfinish(session: pytest.Session) -> None:
    processes.stop_started_since(0)


@pytest.fixture(autouse=True)
def _eager_tasks_unless_workers(request: pytest.FixtureRequest):
    """In-process tests run consumer tasks eagerly; tests with real workers send them to Redis."""
    from cdb_project.celery import app

    eager = request.node.get_closest_marker("workers") is None
    previous = app.conf.task_always_eager
    app.conf.task_always_eager = eager or previous
    yield
    app.conf.task_always_eager = previous


@pytest.fixture
def sma_cross(settings):
    """Pin the placeholder SMA crossover that tests/support/series.py is worked out for."""
    settings.STRATEGY = "sma_cross"
    settings.PAPER_FAILURE_RATE = "0"


@pytest.fixture
def orders_left_pending(monkeypatch):
    """Decisions hand their PENDING orders to the executor after the commit, as they do for live trading (a paper
    order otherwise waits for its symbol's next candle). The executor stays the paper one, which leaves a paper order
    to that candle: what is tested is how a stored PENDING order is found and handed on."""
    monkeypatch.setattr("risk.decision_service.live_trading_enabled", lambda: True)


@pytest.fixture(scope="session")
def service_env(django_db_setup) -> dict[str, str]:
    """Environment for child processes: the test database (created by pytest-django) and the test Redis."""
    return processes.child_env(PAPER_FAILURE_RATE="0", STRATEGY="sma_cross")


@pytest.fixture(scope="module")
def celery_workers(service_env, tmp_path_factory):
    """Two real Celery worker processes on Redis and the PostgreSQL test database, for one test module
    (so a module that starts workers of its own, e.g. to kill them, has the queue to itself)."""
    services.flush_broker()
    log_dir = tmp_path_factory.mktemp("workers")
    workers = [processes.start_worker(f"w{i}", service_env, log_dir) for i in (1, 2)]
    yield workers
    for worker in workers:
        worker.stop()


@pytest.fixture
def daphne_server(service_env, tmp_path):
    """A real daphne process serving the ASGI app with the Redis channel layer."""
    server = processes.start_daphne(service_env, tmp_path)
    yield server
    server.stop()

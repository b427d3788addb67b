"""Operations: ``/health``, ``/metrics`` and the process-wide hooks behind them.

``/health`` checks the database, Redis (when configured) and the Celery workers in parallel threads with a
hard deadline (``HEALTH_TIMEOUT_SEC``, default 0.8 s), so it answers within a second even when a dependency
hangs: 200 ``{"status": "ok", ...}``, or 503 with ``"failing": [...]`` naming the database and/or Redis.

``/metrics`` is the Prometheus text format. Counters and histograms are incremented wherever the work happens
(Celery worker processes); with ``PROMETHEUS_MULTIPROC_DIR`` set (prometheus_client multiprocess mode) every
process writes its values to files in that directory and any process reading the directory exports the sum:
the web process (``/metrics``) when web and workers share the directory on one machine, and each worker
container's own exporter (``WORKER_METRICS_PORT``) when workers run elsewhere. Without the variable (embedded,
one process) the default registry is exported. State gauges that must have one value for the whole system
(trading state, drawdown, exposure, health, queue length) are read from PostgreSQL / Redis at scrape time by
the web process, not taken from whichever worker wrote last.
"""

from __future__ import annotations

import gc
import hmac
import logging
import os
import threading
import time
from datetime import UTC, datetime

from django.apps import AppConfig
from django.conf import settings
from django.db import close_old_connections
from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ground.logging import log_context
from ground.redis_client import redis_client

logger = logging.getLogger("cdb.ops")

HEALTH_REDIS_TIMEOUT = 0.5  # seconds: a health check answers within its budget even when Redis hangs

signal_latency_seconds = Histogram(
    "signal_latency_seconds",
    "Wall time from storing a candle to storing the signal it caused",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
events_rejected_total = Counter(
    "events_rejected_total", "Events refused by the bus (stored as RejectedEvent)", ["topic"]
)

# Gauges computed at scrape time from the shared store; per-process copies (risk/metrics.py) are left out.
LIVE_GAUGES = frozenset({"daily_drawdown_percent", "total_exposure_percent", "trading_state"})
STATE_CODES = {"ACTIVE": 0, "PAUSED": 1, "HALTED": 2}


def _deadline() -> float:
    return float(getattr(settings, "HEALTH_TIMEOUT_SEC", 0.8))


# --- checks ---------------------------------------------------------------------------------------------------
def _db_check() -> dict:
    """SELECT 1, the trading state and the newest candle's age, with connect and statement timeouts."""
    db = settings.DATABASES["default"]
    from marketdata.models import Candle
    from risk.models import TradingState

    state_sql = f"SELECT state FROM {TradingState._meta.db_table} WHERE id = 1"
    candle_sql = f"SELECT created_at FROM {Candle._meta.db_table} ORDER BY id DESC LIMIT 1"
    if db["ENGINE"] == "django.db.backends.postgresql":
        import psycopg2

        conn = psycopg2.connect(
            host=db["HOST"] or "127.0.0.1",
            port=db["PORT"] or 5432,
            user=db["USER"],
            password=db["PASSWORD"] or None,
            dbname=db["NAME"],
            connect_timeout=2,
            options="-c statement_timeout=1000",
            application_name="cdb-health",
        )
        try:
            with conn.cursor() as cur:
                cur.execute(state_sql)
                row = cur.fetchone()
                cur.execute(candle_sql)
                candle = cur.fetchone()
        finally:
            conn.close()
        last = candle[0] if candle else None
    else:
        from django.db import connection

        try:
            with connection.cursor() as cur:
                cur.execute(state_sql)
                row = cur.fetchone()
                cur.execute(candle_sql)
                candle = cur.fetchone()
        finally:
            connection.close()
        last = candle[0] if candle else None
        if isinstance(last, str):
            last = datetime.fromisoformat(last)
    age = None
    if last is not None:
        if last.tzinfo is None:
            last = last.replace(tzinfo=UTC)
        age = round(max(0.0, (datetime.now(UTC) - last).total_seconds()), 3)
    return {"trading_state": row[0] if row else "ACTIVE", "last_market_data_age_s": age}


def _redis_check() -> dict:
    from celery import current_app as app  # the configured app (cdb_project/celery_on_use.py)

    client = redis_client(HEALTH_REDIS_TIMEOUT)
    client.ping()
    queue = app.conf.task_default_queue
    return {"queue_length": client.llen(queue), "unacked": client.hlen("unacked"), "queue": queue}


def _workers_check() -> int:
    """Celery workers answering a broadcast ping (stops waiting once every registered pidbox has answered)."""
    from celery import current_app as app  # the configured app (cdb_project/celery_on_use.py)

    bindings = redis_client(HEALTH_REDIS_TIMEOUT).scard(f"_kombu.binding.{app.conf.control_exchange}.pidbox")
    if not bindings:
        return 0
    return len(app.control.ping(timeout=0.4, limit=bindings) or [])


def _warm_up() -> None:
    """Imports and Celery's lazy configuration happen here, once, not inside a check's time budget."""
    from celery import current_app as app  # the configured app (cdb_project/celery_on_use.py)

    from marketdata.models import Candle  # noqa: F401
    from risk.models import TradingState  # noqa: F401

    app.conf.task_default_queue  # noqa: B018
    if settings.REDIS_URL:
        import redis  # noqa: F401


def run_checks(deadline: float | None = None, parts: tuple[str, ...] = ("db", "redis", "workers")) -> dict:
    """Every check in its own daemon thread; whatever has not answered by the deadline counts as down.
    Redis and the workers are checked only when Redis is configured; ``parts`` narrows the checks."""
    deadline = _deadline() if deadline is None else deadline
    _warm_up()
    checks = {"db": _db_check}
    if settings.REDIS_URL:
        checks["redis"] = _redis_check
        checks["workers"] = _workers_check
    checks = {name: check for name, check in checks.items() if name in parts}
    results: dict[str, tuple[bool, object]] = {}

    def run(name, func):
        try:
            results[name] = (True, func())
        except Exception as error:  # a check reports, never raises
            results[name] = (
                False,
                f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error) else ''}",
            )
        finally:
            if name == "db" and settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
                from django.db import connections

                connections.close_all()

    threads = [
        threading.Thread(target=run, args=item, daemon=True, name=f"health-{item[0]}") for item in checks.items()
    ]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - (time.monotonic() - start)))
    out = dict(results)
    for name in checks:
        out.setdefault(name, (False, f"no answer within {deadline}s"))
    return out


def health_report(deadline: float | None = None) -> tuple[int, dict]:
    results = run_checks(deadline)
    body: dict = {"status": "ok"}
    failing = []
    ok, value = results["db"]
    body["db"] = "ok" if ok else f"down: {value}"
    if not ok:
        failing.append("db")
    if settings.REDIS_URL:
        ok, value = results["redis"]
        body["redis"] = "ok" if ok else f"down: {value}"
        if not ok:
            failing.append("redis")
        ok, workers = results["workers"]
        body["workers"] = workers if ok else 0
        if ok is False and results["redis"][0]:
            body["workers_error"] = workers
            body["workers"] = 0
    else:
        body["redis"] = "not used"
        body["workers"] = 0  # embedded: tasks run inside the web process
        body["mode"] = "embedded"
    db_ok, db_value = results["db"]
    body["trading_state"] = db_value["trading_state"] if db_ok else None
    body["last_market_data_age_s"] = db_value["last_market_data_age_s"] if db_ok else None
    if failing:
        body["status"] = "error"
        body["failing"] = failing
    return (503 if failing else 200), body


PUBLIC_HEALTH_PARTS = ("db", "redis")


def public_health(body: dict) -> dict:
    """What /health tells a caller who is not logged-in staff: ok or error and which part is down — not the error
    texts (they name internal hosts and ports), the trading state or the workers."""
    public = {"status": body["status"]}
    for part in PUBLIC_HEALTH_PARTS:
        value = body.get(part)
        public[part] = value if value in ("ok", "not used") else "down"
    if "failing" in body:
        public["failing"] = body["failing"]
    return public


@never_cache
def health(request):
    status, body = health_report()
    if not (request.user.is_authenticated and request.user.is_staff):
        body = public_health(body)
    return JsonResponse(body, status=status)


# --- /metrics -------------------------------------------------------------------------------------------------
class _Without:
    """A collector that forwards another's families except the named ones."""

    def __init__(self, source, names: frozenset[str]):
        self.source, self.names = source, names

    def collect(self):
        for family in self.source.collect():
            if family.name not in self.names:
                yield family


class LiveCollector:
    """Gauges read at scrape time: service health, Celery queue length, trading state, drawdown, exposure."""

    def collect(self):
        results = run_checks()
        health = GaugeMetricFamily("service_health", "1 when the component answers, 0 when not", labels=["component"])
        health.add_metric(["db"], 1.0 if results["db"][0] else 0.0)
        queue = GaugeMetricFamily("celery_queue_length", "Tasks waiting in the Celery queue", labels=["queue"])
        unacked = GaugeMetricFamily("celery_unacked_tasks", "Tasks delivered to a worker and not yet acknowledged")
        workers = GaugeMetricFamily("celery_workers", "Celery workers answering a ping")
        if settings.REDIS_URL:
            ok, value = results["redis"]
            health.add_metric(["redis"], 1.0 if ok else 0.0)
            if ok:
                queue.add_metric([value["queue"]], value["queue_length"])
                unacked.add_metric([], value["unacked"])
            w_ok, count = results["workers"]
            count = count if w_ok else 0
            health.add_metric(["workers"], 1.0 if count else 0.0)
            workers.add_metric([], count)
        else:
            health.add_metric(["workers"], 1.0)  # embedded: the web process runs the tasks
            queue.add_metric(["embedded"], 0)
            unacked.add_metric([], 0)
            workers.add_metric([], 0)
        db_ok, db_value = results["db"]
        age = db_value["last_market_data_age_s"] if db_ok else None
        health.add_metric(["market_data"], 1.0 if age is not None and age <= _stale_limit() else 0.0)
        yield from (health, queue, unacked, workers)
        if age is not None:
            yield GaugeMetricFamily("last_market_data_age_seconds", "Seconds since the newest candle was stored", age)
        if db_ok:
            yield from self._account()

    @staticmethod
    def _account():
        try:
            from risk.models import RiskParameters
            from risk.status import risk_status

            status = risk_status()
            limit = float(RiskParameters.load().max_daily_drawdown_pct) * 100
        except Exception:
            logger.warning("account metrics unavailable", exc_info=True)
            return
        finally:
            from django.db import connection

            connection.close_if_unusable_or_obsolete()
        yield GaugeMetricFamily(
            "trading_state", "Trading state: 0 ACTIVE, 1 PAUSED, 2 HALTED", STATE_CODES.get(status["state"], -1)
        )
        yield GaugeMetricFamily(
            "daily_drawdown_percent",
            "Loss since 00:00 UTC as a percentage of day-start equity",
            float(status["daily_drawdown_pct"]) * 100,
        )
        yield GaugeMetricFamily("daily_drawdown_limit_percent", "MAX_DAILY_DRAWDOWN_PCT as a percentage", limit)
        yield GaugeMetricFamily(
            "total_exposure_percent",
            "Value of open positions as a percentage of equity",
            float(status["exposure_pct"]) * 100,
        )
        yield GaugeMetricFamily("equity", "Paper/live account equity in the quote currency", float(status["equity"]))
        yield GaugeMetricFamily(
            "daily_pnl", "Equity change since 00:00 UTC in the quote currency", float(status["daily_pnl"])
        )


def _stale_limit() -> float:
    """DATA_STALE_TIMEOUT_SEC as the live risk parameter has it (an admin change counts at the next scrape)."""
    from risk.models import RiskParameters

    return float(RiskParameters.load().data_stale_timeout_sec)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def process_registry() -> CollectorRegistry:
    """Everything the processes sharing this machine's metrics directory counted (or this process alone)."""
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_dir():
        from prometheus_client.multiprocess import MultiProcessCollector

        registry.register(_Without(MultiProcessCollector(None, path=multiprocess_dir()), LIVE_GAUGES))
    else:
        registry.register(_Without(REGISTRY, LIVE_GAUGES))
    return registry


def metrics_text() -> bytes:
    registry = process_registry()
    registry.register(LiveCollector())
    return generate_latest(registry)


def may_read_metrics(request) -> bool:
    """Prometheus with the bearer token (METRICS_TOKEN), or a logged-in staff user: the figures are the account's."""
    if request.user.is_authenticated and request.user.is_staff:
        return True
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    token = settings.METRICS_TOKEN
    return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(credentials.strip(), token)


@never_cache
def metrics(request):
    if not may_read_metrics(request):
        response = HttpResponse("metrics need Authorization: Bearer <METRICS_TOKEN>\n", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(metrics_text(), content_type=CONTENT_TYPE_LATEST)


# --- process hooks --------------------------------------------------------------------------------------------
def _on_signal_saved(sender, instance, created, **kwargs):
    if not created:
        return
    from trading.signal_service import candle_stored_at

    stored_at = candle_stored_at(instance.symbol, instance.interval, instance.timestamp)
    if stored_at is None:
        return
    from django.utils import timezone

    signal_latency_seconds.observe(max(0.0, (timezone.now() - stored_at).total_seconds()))


def _on_rejected_saved(sender, instance, created, **kwargs):
    if created:
        events_rejected_total.labels(topic=instance.topic or "unknown").inc()


def _task_prerun(task=None, args=None, **kwargs):
    _close_old_connections(task)
    event = args[0] if args else None
    context = {}
    if isinstance(event, dict):
        for key in ("symbol", "client_order_id"):
            if isinstance(event.get(key), str):
                context[key] = event[key]
    kwargs_token = log_context.set(context)
    if task is not None:
        task.request._cdb_log_token = kwargs_token


def _task_postrun(task=None, **kwargs):
    token = getattr(getattr(task, "request", None), "_cdb_log_token", None)
    if token is not None:
        try:
            log_context.reset(token)
        except ValueError:
            log_context.set({})
    _close_old_connections(task)


def _close_old_connections(task) -> None:
    """What Django does around each request, around each task a worker runs: close a connection that is broken or
    older than CONN_MAX_AGE, keep the others (see CELERY_DB_REUSE_MAX). Eager tasks run inside their caller."""
    if task is not None and not getattr(task.request, "is_eager", False):
        close_old_connections()


def _worker_process_shutdown(pid=None, **kwargs):
    if multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid(), multiprocess_dir())


def freeze_startup_objects(**kwargs) -> None:
    """Put what is alive after start-up (Django, Celery, ccxt: some 250,000 objects) out of the garbage collector's
    reach. A full collection otherwise scans them all: a 50–100 ms pause of whatever task or candle is running,
    which made the latency's maximum. What is made later is collected as before. For worker children, the worker
    (a solo pool runs tasks in it) and the feed."""
    gc.collect()
    gc.freeze()


def _worker_ready(**kwargs):
    """With WORKER_METRICS_PORT set, the worker's main process serves its children's metrics (one exporter per
    worker container, for workers on machines that do not share the web's metrics directory)."""
    port = os.environ.get("WORKER_METRICS_PORT")
    if not port:
        return
    from prometheus_client import start_http_server

    start_http_server(int(port), addr=os.environ.get("WORKER_METRICS_ADDR", "0.0.0.0"), registry=process_registry())
    logger.info("worker metrics exporter on port %s", port)


def _setup_logging(**kwargs):
    """Celery leaves logging alone when this signal has a receiver: Django's LOGGING (JSON lines) applies."""


class OpsConfig(AppConfig):
    name = "cdb_project.ops"
    label = "cdb_ops"
    verbose_name = "Operations"

    def ready(self):
        from django.db.models.signals import post_save

        from cdb_project import recovery
        from execution import metrics as execution_metrics  # noqa: F401  every business metric, at 0, from start-up
        from ground import bus
        from notify import metrics as notify_metrics  # noqa: F401
        from risk import metrics as risk_metrics  # noqa: F401

        bus.on_broker_recovered(recovery.redrive)
        for topic in settings.EVENT_CONSUMERS:
            events_rejected_total.labels(topic=topic)

        post_save.connect(_on_signal_saved, sender="trading.Signal", dispatch_uid="cdb_ops_signal_latency")
        post_save.connect(_on_rejected_saved, sender="cdb_project.RejectedEvent", dispatch_uid="cdb_ops_rejected")


def connect_celery_signals() -> None:
    """The task metrics, the workers' start-up and shutdown hooks and Django's logging for Celery: connected by the
    Celery app as it is created (``cdb_project/celery.py``), in the processes that load Celery."""
    from celery import signals as celery_signals

    celery_signals.task_prerun.connect(_task_prerun, weak=False, dispatch_uid="cdb_ops_prerun")
    celery_signals.task_postrun.connect(_task_postrun, weak=False, dispatch_uid="cdb_ops_postrun")
    celery_signals.worker_process_shutdown.connect(_worker_process_shutdown, weak=False, dispatch_uid="cdb_ops_wps")
    celery_signals.worker_ready.connect(_worker_ready, weak=False, dispatch_uid="cdb_ops_ready")
    celery_signals.worker_process_init.connect(freeze_startup_objects, weak=False, dispatch_uid="cdb_ops_gc_child")
    celery_signals.worker_ready.connect(freeze_startup_objects, weak=False, dispatch_uid="cdb_ops_gc_worker")
    celery_signals.setup_logging.connect(_setup_logging, weak=False, dispatch_uid="cdb_ops_logging")

"""The event bus: one way in (``publish``) and one guard on the way out (``consumer``).

``publish(event)``
  1. validates the event against ``EVENT_SCHEMA.json``; an invalid one is stored
     as a ``RejectedEvent`` with the reason and ``InvalidEvent`` is raised;
  2. persists what must survive: events that arrive from outside the domain
     (``market_data`` → Candle, ``alert`` → Alert) through ``EVENT_PERSISTERS``.
     Signals, orders and order results are stored by the task that produces them,
     inside its own transaction, before it publishes;
  3. once the surrounding transaction commits (persist before publish), PUBLISHes
     the JSON on the Redis channel named after the topic (when Redis is in use),
     enqueues the consuming Celery tasks (``EVENT_CONSUMERS``), forwards the
     event to the dashboard's Channels group and hands it to its ``EVENT_OBSERVERS`` (notifications).

Broker outages (Redis down or restarted): enqueueing retries with backoff (``CELERY_TASK_PUBLISH_RETRY_POLICY``,
about ``BROKER_RETRY_SECONDS``) — the event is stored already, so the caller just waits for Redis. A lockstep
waiter (``wait_until_idle``) that loses the broker waits for it, then re-drives what Redis may have lost: the
events this process sent since the pipeline was last idle are sent again and the jobs registered with
``on_broker_recovered`` (``cdb_project.recovery.redrive``) re-queue stored work that is not finished (NEW signals,
PENDING orders). Every consumer is idempotent, so a
second delivery changes nothing.

``@consumer(event_type)`` wraps every task that receives events: it validates
on receipt and turns a malformed payload into a stored ``RejectedEvent`` instead
of an exception, so one bad message never stops a worker.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from functools import lru_cache, partial, wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.utils.module_loading import import_string

from .dashboard_push import background_pusher
from .logging import log_context
from .redis_client import redis_client

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator  # imported by the first validation: 0.1 s no command needs

logger = logging.getLogger("cdb.bus")

SCHEMA_PATH = Path(__file__).with_name("EVENT_SCHEMA.json")
TOPIC_BY_TYPE = {
    "market_data": "market_data",
    "signal": "signals",
    "order": "orders",
    "order_result": "order_results",
    "alert": "alerts",
    "health": "health",
}
DASHBOARD_TOPICS = frozenset({"market_data", "signals", "orders", "order_results", "alerts"})
# Of an approved order the page is told only that it was placed, to read the account again at once (a waiting order
# counts in the cash, exposure and equity the cards show: ``risk.account_view``); its amounts are the executor's.
ORDER_PLACED_KEYS = ("client_order_id", "symbol", "side", "timestamp")


Event = dict[str, Any]


class InvalidEvent(ValueError):
    """An event that does not satisfy EVENT_SCHEMA.json; the message says why."""


@lru_cache(maxsize=1)
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


@lru_cache(maxsize=1)
def _validator() -> Draft202012Validator:
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(schema())
    return Draft202012Validator(schema())


@lru_cache(maxsize=1)
def _validators_by_type() -> dict[str, Draft202012Validator]:
    """For each event type, the schema as it applies to that type: the envelope plus the type's own ``then``.

    Same verdict as the whole schema for an event of that type (its ``if`` is the only one that matches, the
    consts differ), in half the time; the whole schema still words the errors.
    """
    from jsonschema import Draft202012Validator

    whole = schema()
    envelope = {key: value for key, value in whole.items() if key not in ("allOf", "$defs")}
    validators = {}
    for branch in whole["allOf"]:
        event_type = branch["if"]["properties"]["type"]["const"]
        validators[event_type] = Draft202012Validator({**envelope, "allOf": [_resolved(branch["then"], whole)]})
    return validators


@lru_cache(maxsize=1)
def _compiled_by_type() -> dict[str, Any]:
    """``_validators_by_type``'s schemas compiled by jsonschema-rs (Rust): the fast acceptance of ``validate``,
    about a microsecond for a market_data event where jsonschema takes a thousand times that and ~640 Python calls
    (a worker validates every event it takes; docs/performance.md). It only ever accepts: an event it refuses goes
    on to jsonschema, whose verdict stands and which words the errors — so where the two differ (Python's ``$``
    also matches before a final newline, NaN passes jsonschema's range checks), jsonschema decides, and what it
    accepts jsonschema-rs must accept only if jsonschema does (``tests/unit/test_event_schema.py``)."""
    import jsonschema_rs

    return {
        event_type: jsonschema_rs.Draft202012Validator(typed.schema)
        for event_type, typed in _validators_by_type().items()
    }


def _accepted_fast(event_type: str, payload: dict) -> bool:
    """jsonschema-rs accepts the event (``_compiled_by_type``): valid, and its numbers finite. False for an event
    with values of other types than JSON's (a Decimal: jsonschema-rs reads it as a float, jsonschema as a number
    that is never an integer) or a key that is not a string: jsonschema judges it."""
    compiled = _compiled_by_type().get(event_type)
    if compiled is None or not _json_values(payload):
        return False
    try:
        return compiled.is_valid(payload) and not _non_finite(payload)
    except (TypeError, ValueError, OverflowError):
        return False


_JSON_SCALARS = frozenset({str, int, float, bool, type(None)})


def _json_values(value: Any) -> bool:
    """Only what JSON text decodes to: dicts with string keys, lists, strings, ints, floats, booleans, None (or
    subclasses of str, int, float: an enum's member). Written for the common case, a scalar, to cost no call."""
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            if (type(key) is not str and not isinstance(key, str)) or (
                type(item) not in _JSON_SCALARS and not _json_values(item)
            ):
                return False
        return True
    if kind is list:
        return all(type(item) in _JSON_SCALARS or _json_values(item) for item in value)
    return kind in _JSON_SCALARS or isinstance(value, (str, int, float))


def _resolved(subschema: dict, whole: dict) -> dict:
    """A bare ``{"$ref": "#/$defs/…"}`` replaced by what it points to (following a reference costs jsonschema more
    than checking what it points to); anything else as it is — a ``$ref`` with sibling keywords applies both, which
    merging the two dicts would not."""
    ref = subschema.get("$ref", "")
    if len(subschema) != 1 or not ref.startswith("#/$defs/"):
        return subschema
    return whole["$defs"][ref.removeprefix("#/$defs/")]


def _describe(error) -> str:
    path = ".".join(str(part) for part in error.absolute_path)
    return f"{path or 'event'}: {error.message}"


def validate(payload: Any) -> Event:
    """Return the event as a dict if it is valid; raise InvalidEvent naming every problem otherwise."""
    if isinstance(payload, (bytes, bytearray)):
        payload = payload.decode("utf-8", errors="replace")
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError as error:
            raise InvalidEvent(f"not JSON: {error}") from None
    if not isinstance(payload, dict):
        raise InvalidEvent(f"an event must be a JSON object, got {type(payload).__name__}")
    event_type = payload.get("type")
    if isinstance(event_type, str):
        if _accepted_fast(event_type, payload):
            return payload
        typed = _validators_by_type().get(event_type)
        if typed is not None and typed.is_valid(payload) and not _non_finite(payload):
            return payload
    errors = sorted(_validator().iter_errors(payload), key=lambda e: [str(p) for p in e.absolute_path])
    problems = [_describe(error) for error in errors] + _non_finite(payload)
    if problems:
        raise InvalidEvent("; ".join(problems))
    return payload


def _non_finite(event: dict) -> list[str]:
    """JSON Schema lets NaN and Infinity through range checks (every comparison is false); refuse them here."""
    return [
        f"{key}: {value!r} is not a finite number"
        for key, value in event.items()
        if isinstance(value, float) and not math.isfinite(value)
    ]


def _verbatim(payload: Any) -> str:
    if isinstance(payload, (bytes, bytearray)):
        text = payload.decode("utf-8", errors="replace")
    elif isinstance(payload, str):
        text = payload
    else:
        try:
            text = json.dumps(payload, default=str)
        except (TypeError, ValueError):
            text = repr(payload)
    return _storable(text)


def _storable(text: str) -> str:
    """PostgreSQL text cannot hold NUL characters: keep them visible as an escape instead."""
    return text.replace("\x00", "\\x00")


def reject(payload: Any, reason: str, *, stage: str, consumer: str = "") -> None:
    """Log and store a refused event. Never raises: losing the record must not stop the caller."""
    from ground.models import RejectedEvent

    topic = ""
    if isinstance(payload, dict) and isinstance(payload.get("type"), str):
        topic = TOPIC_BY_TYPE.get(payload["type"], payload["type"])[:32]
    logger.warning("event rejected at %s%s: %s", stage, f" by {consumer}" if consumer else "", reason)
    try:
        RejectedEvent.objects.create(
            topic=_storable(topic), stage=stage, consumer=consumer, reason=_storable(reason), payload=_verbatim(payload)
        )
    except Exception:  # the store itself is down: the log line above is all we can keep
        logger.exception("could not store the rejected event")


def publish(event: Event, *, consumed: bool = False) -> Event:
    """Validate, persist, then (after commit) PUBLISH on Redis, enqueue consumers and notify the dashboard.

    ``consumed``: what the event's consumers do was done in the transaction that publishes it, or is not theirs to
    do (a paper order waits for its symbol's next candle, not for the executor), so they are not sent it."""
    event = _validated_for_publish(event)
    persister = _persisters().get(event["type"])
    if persister is not None:
        persister(event)
    topic = TOPIC_BY_TYPE[event["type"]]
    if consumed or not _consumers().get(topic):
        publish_after_commit(topic, event)
    else:
        transaction.on_commit(partial(_dispatch, topic, event))
    return event


def publish_after_commit(topic: str, event: Event) -> None:
    """Announce ``event`` on ``topic`` (PUBLISH on Redis, the dashboard, the observers) once the transaction around
    the call commits; never if it rolls back, nor if the savepoint it was published in does; at once outside a
    transaction. Django's ``transaction.on_commit``, one hook per event: hooks run in the order they were
    registered, so announcements keep their places among the transaction's other hooks (its dispatches). Inside a
    consumer the Redis PUBLISHes are held and sent together, in order (``announcements_batched``)."""
    transaction.on_commit(partial(_announce, topic, event))


def publish_batch(events: list[Event], *, stored: bool = False) -> list[Event]:
    """``publish`` for several events of one type at once (a feed's backlog): each is validated (and persisted
    unless ``stored``), then after commit their consumers get them in one task per ``EVENT_BATCH_CONSUMERS``
    entry (or one task each for a topic without one), with a PUBLISH and a dashboard push per event.

    An invalid event is stored as a RejectedEvent and raises InvalidEvent before anything is sent."""
    checked = [_validated_for_publish(event) for event in events]
    if not checked:
        return checked
    types = {event["type"] for event in checked}
    if len(types) != 1:
        raise InvalidEvent(f"a batch holds events of one type, got {sorted(types)}")
    persister = None if stored else _persisters().get(checked[0]["type"])
    if persister is not None:
        for event in checked:
            persister(event)
    transaction.on_commit(partial(_dispatch_batch, TOPIC_BY_TYPE[checked[0]["type"]], checked))
    return checked


def _validated_for_publish(event: Any) -> Event:
    """The valid event; an invalid one is stored as a RejectedEvent (stage ``publish``) and InvalidEvent raised."""
    try:
        return validate(event)
    except InvalidEvent as error:
        reject(event, str(error), stage="publish")
        raise


# Options of every consumer task: a database connection error (PostgreSQL down or restarted, a deadlock) makes the
# task retry itself with exponential backoff — 1 s, 2 s, 4 s, … at most 60 s apart, jittered — for about an hour
# and a half, instead of failing and being acknowledged with its work undone (a killed worker's task is
# redelivered by the broker instead). Every consumer is idempotent, so running a task again is always safe.
RETRY_ON_DATABASE_ERRORS: dict[str, Any] = {
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": 1,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 100,
}


def _count_retry(sender=None, headers=None, routing_key=None, **kwargs) -> None:
    """A retried task is a new message, sent by the task itself: in flight as much as one ``_enqueue`` sends (the
    failed run counted itself down as it ended). Tasks of other queues (notify) are not the pipeline's."""
    if headers and headers.get("retries") and routing_key in (None, "", _pipeline_queue()):
        _count_in_flight(1)


FAILURES_KEY = "cdb:consumer_failures"
_failures_in_process = 0


def _count_failure(sender=None, **kwargs) -> None:
    """A consumer task that failed for good (no retry left): counted here and, with Redis, for every process, so a
    feed can say how many of its events' consumers failed (``consumer_failures``). Other tasks are not counted."""
    global _failures_in_process
    if getattr(sender, "name", None) not in _consumer_task_names():
        return
    _failures_in_process += 1
    if settings.REDIS_URL:
        import redis

        try:
            redis_client().incr(FAILURES_KEY)
        except redis.RedisError:
            logger.warning("could not count a failed task in Redis", exc_info=True)


def _consumer_task_names() -> set[str]:
    return {task.name for tasks in (*_consumers().values(), *_batch_consumers().values()) for task in tasks}


def consumer_failures() -> int:
    """Tasks failed for good so far: this process's own, and with Redis every worker's (a feed compares the count
    before and after its run)."""
    if not settings.REDIS_URL:
        return _failures_in_process
    return int(redis_client().get(FAILURES_KEY) or 0)


def _pipeline_queue() -> str:
    from celery import current_app as app

    return app.conf.task_default_queue


def _log_retry(sender=None, request=None, reason=None, **kwargs) -> None:
    """Celery logs a retry at INFO on a logger kept at WARNING (a line per task): an operator should see this one."""
    attempt = (getattr(request, "retries", 0) or 0) + 1
    logger.warning("task %s failed (%s); retry %d of %d scheduled", sender.name, reason, attempt, sender.max_retries)


def connect_celery_signals() -> None:
    """Retried tasks counted in flight, failures counted, retries logged: connected by the Celery app as it is
    created (``cdb_project/celery.py``), in the processes that load Celery."""
    from celery.signals import before_task_publish, task_failure, task_retry

    before_task_publish.connect(_count_retry, weak=False, dispatch_uid="cdb_bus_count_retries")
    task_failure.connect(_count_failure, weak=False, dispatch_uid="cdb_bus_count_failures")
    task_retry.connect(_log_retry, weak=False, dispatch_uid="cdb_bus_log_retries")


def consumer(event_type: str) -> Callable[[Callable[[Event], Any]], Callable[[Any], Any]]:
    """Validate what a task receives; store malformed payloads as RejectedEvent and return None."""

    def wrap(func: Callable[[Event], Any]) -> Callable[[Any], Any]:
        name = f"{func.__module__}.{func.__name__}"

        @wraps(func)
        def run(payload: Any) -> Any:
            with _counted_task(), announcements_batched():
                event = _received(payload, event_type, name)
                if event is None:
                    return None
                with _handling(), event_log_context(event):
                    return func(event)

        return run

    return wrap


def batch_consumer(event_type: str) -> Callable[[Callable[[list[Event]], Any]], Callable[[Any], Any]]:
    """``consumer`` for a task that receives a list of events: each malformed one is stored as a RejectedEvent and
    left out; the rest go to the task in the order they came."""

    def wrap(func: Callable[[list[Event]], Any]) -> Callable[[Any], Any]:
        name = f"{func.__module__}.{func.__name__}"

        @wraps(func)
        def run(payload: Any) -> Any:
            with _counted_task(), announcements_batched():
                if not isinstance(payload, list):
                    reason = f"a batch must be a JSON array, got {type(payload).__name__}"
                    reject(payload, reason, stage="consume", consumer=name)
                    return None
                events = [event for item in payload if (event := _received(item, event_type, name)) is not None]
                if not events:
                    return None
                with _handling():
                    return func(events)

        return run

    return wrap


def _received(payload: Any, event_type: str, consumer_name: str) -> Event | None:
    """The valid event of ``event_type`` in ``payload``, or None after storing it as a RejectedEvent."""
    try:
        # An event handed on in this process (see _run_inline) was validated when it was published: not again.
        handed_on = _handed_on.get()
        event = payload if handed_on is not None and payload is handed_on else validate(payload)
        if event["type"] != event_type:
            raise InvalidEvent(f"type: expected a {event_type} event, got {event['type']}")
    except InvalidEvent as error:
        reject(payload, str(error), stage="consume", consumer=consumer_name)
        return None
    return event


@contextlib.contextmanager
def _handling():
    """While a consumer runs, what it publishes is handed on in this process (see ``_dispatch``)."""
    token = _inside_consumer.set(True)
    try:
        yield
    finally:
        _inside_consumer.reset(token)


@contextlib.contextmanager
def event_log_context(event: Event):
    """Log lines written while handling ``event`` carry its symbol and client_order_id (ground.logging)."""
    context = {key: event[key] for key in ("symbol", "client_order_id") if isinstance(event.get(key), str)}
    token = log_context.set(context)
    try:
        yield
    finally:
        log_context.reset(token)


def notify_dashboard(kind: str, data: Any) -> None:
    """Push a message to every connected dashboard (best effort: the page resynchronises on reconnect)."""
    from channels.layers import InMemoryChannelLayer, get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": "dashboard.push", "kind": kind, "data": data}
    if not isinstance(layer, InMemoryChannelLayer):  # Redis: sent by this process's push thread, nobody waits
        background_pusher(layer, settings.DASHBOARD_GROUP).push(message)
        return
    try:
        async_to_sync(layer.group_send)(settings.DASHBOARD_GROUP, message)
    except Exception:
        logger.warning("dashboard push of %s failed", kind, exc_info=True)


# What this process enqueued since a lockstep waiter last saw the pipeline idle: sent again if the broker is lost
# meanwhile (a restarted Redis may come back without its queue). Bounded: a worker never waits, never clears it.
_sent_since_idle: deque[Event] = deque(maxlen=1000)


# The event _run_inline is handing to the next consumer in this process: published (so validated) a moment ago.
_handed_on: contextvars.ContextVar[Event | None] = contextvars.ContextVar("cdb_handed_on", default=None)

# True while a consumer runs: the events it publishes are handed on in this process (see ``_dispatch``).
_inside_consumer: contextvars.ContextVar[bool] = contextvars.ContextVar("cdb_inside_consumer", default=False)


def _dispatch(topic: str, event: Event) -> None:
    consumers = _consumers().get(topic, ())
    if consumers and _inside_consumer.get() and settings.BUS_INLINE_CONSUMERS and not _eager():
        # In process: announce the event first, so subscribers see signal → order → order_result in that order.
        _announce(topic, event)
        _send_held_publishes()
        _run_inline(consumers, event)
        return
    # Through the broker: enqueue first, it is what must not be lost; the PUBLISH and the dashboard push are best
    # effort.
    for task in consumers:
        _enqueue(task, event)  # retried with backoff while the broker is down (CELERY_TASK_PUBLISH_RETRY_*)
    if consumers:
        _sent_since_idle.append(event)
    _announce(topic, event)
    if consumers:  # they run elsewhere from now on: what they announce must come after what is held here
        _send_held_publishes()


def _for_dashboard(topic: str, event: Event) -> Event:
    return {key: event.get(key) for key in ORDER_PLACED_KEYS} if topic == "orders" else event


def _announce(topic: str, event: Event) -> None:
    """PUBLISH the event on the topic's Redis channel and push it to the dashboard (both best effort), then hand
    it to the topic's observers."""
    if settings.REDIS_URL:
        _publish_on_redis([(topic, json.dumps(event, separators=(",", ":")))])
    if topic in DASHBOARD_TOPICS:
        notify_dashboard(topic, _for_dashboard(topic, event))
    for observer in _observers().get(topic, ()):
        _observe(observer, topic, event)


def _observe(observer: Callable[[str, Event], Any], topic: str, event: Event) -> None:
    """An ``EVENT_OBSERVERS`` hook (notifications): best effort, after the commit; it never stops the publisher."""
    try:
        observer(topic, event)
    except Exception:
        logger.warning("event observer %s failed", getattr(observer, "__name__", observer), exc_info=True)


def _dispatch_batch(topic: str, events: list[Event]) -> None:
    batch_tasks = _batch_consumers().get(topic)
    if batch_tasks is None:
        for event in events:
            _dispatch(topic, event)
        return
    for task in batch_tasks:
        _enqueue(task, events)
    _sent_since_idle.extend(events)
    _announce_batch(topic, events)
    _send_held_publishes()  # as in ``_dispatch``: before the consumers' own announcements


def _announce_batch(topic: str, events: list[Event]) -> None:
    """``_announce`` for a batch: every event PUBLISHed (one pipelined round trip), and the dashboards get the last
    event of each symbol and interval only — a backlog replays far faster than a browser draws, and the page
    reloads stored candles for its chart anyway."""
    if settings.REDIS_URL:
        _publish_on_redis([(topic, json.dumps(event, separators=(",", ":"))) for event in events])
    if topic in DASHBOARD_TOPICS:
        latest = {(event.get("symbol"), event.get("interval")): event for event in events}
        for event in latest.values():
            notify_dashboard(topic, _for_dashboard(topic, event))


# The PUBLISHes held back while a consumer runs (``announcements_batched``), in the order they were announced; None
# outside one: each goes at once.
_held_publishes: contextvars.ContextVar[list[tuple[str, str]] | None] = contextvars.ContextVar(
    "cdb_held_publishes", default=None
)


@contextlib.contextmanager
def announcements_batched() -> Iterator[None]:
    """Hold the Redis PUBLISHes announced in the block (after the commits of its transactions) and send them, in
    order, in one pipelined round trip when it ends — however it ends: what was committed is announced. A consumer
    task runs in one (``consumer``, ``batch_consumer``), so a decision's signal, risk events, order and alerts cost
    one round trip, not one each. Nested blocks send with the outermost; an event handed on in process sends what
    is held first (``_run_inline``), so subscribers still see signal → order → order_result in that order."""
    if _held_publishes.get() is not None:
        yield
        return
    held: list[tuple[str, str]] = []
    token = _held_publishes.set(held)
    try:
        yield
    finally:
        _held_publishes.reset(token)
        if held:
            _redis_publish_many(held)


def _publish_on_redis(messages: list[tuple[str, str]]) -> None:
    """PUBLISH now, or hold the messages for the end of the ``announcements_batched`` block around the call."""
    held = _held_publishes.get()
    if held is None:
        _redis_publish_many(messages)
    else:
        held.extend(messages)


def _send_held_publishes() -> None:
    """Send what the ``announcements_batched`` block around the call holds so far (and keep holding after)."""
    held = _held_publishes.get()
    if held:
        messages = held[:]
        held.clear()
        _redis_publish_many(messages)


def _run_inline(consumers, event: Event) -> None:
    """An event published by a consumer goes straight on to the next consumer in this process, after the commit
    that stored it (a live order, committed PENDING, to its execution): no broker round trip. Nothing is lost by
    skipping the broker: the event's record is committed, a crash before the next step commits leaves it PENDING
    for the redelivered task or the recovery jobs to finish, and every consumer is idempotent. A consumer that
    fails here is enqueued instead, to be retried by a worker."""
    token = _handed_on.set(event)
    try:
        for task in consumers:
            try:
                task(event)
            except Exception:
                logger.warning("%s failed in process; enqueued for a retry", task.name, exc_info=True)
                _enqueue(task, event)
    finally:
        _handed_on.reset(token)


def _eager() -> bool:
    from celery import current_app as app

    return bool(app.conf.task_always_eager)


def redeliver(event: Event) -> None:
    """Enqueue an already published (and stored) event to its consumers again — nothing else: no store, no
    PUBLISH, no dashboard push. Consumers are idempotent, so this is always safe."""
    event = validate(event)
    for task in _consumers().get(TOPIC_BY_TYPE[event["type"]], ()):
        _enqueue(task, event)


# Tasks enqueued and not yet finished, counted in Redis: the broker alone cannot tell, because a worker takes a
# message off the queue (BRPOP) a moment before it files it as unacknowledged, and a waiter looking in between
# would see an idle pipeline. A task killed mid-way is not counted down; its redelivery is.
IN_FLIGHT_KEY = "cdb:tasks_in_flight"


def _enqueue(task, payload: Any) -> None:
    _count_in_flight(1)
    # A short description for the message headers (what monitoring shows): Celery's own repr of the payload cost
    # a quarter of an enqueue.
    task.apply_async((payload,), argsrepr=_describe_payload(payload), kwargsrepr="{}")


def _describe_payload(payload: Any) -> str:
    if isinstance(payload, list):
        kinds = sorted({event.get("type", "?") for event in payload if isinstance(event, dict)})
        return f"[{len(payload)} {'/'.join(kinds)} events]"
    if isinstance(payload, dict):
        subject = payload.get("client_order_id") or payload.get("signal_id") or payload.get("symbol", "")
        return f"({payload.get('type', '?')} {subject} @{payload.get('timestamp', '?')})"
    return type(payload).__name__


def _count_in_flight(delta: int) -> None:
    if _eager() or not settings.REDIS_URL:
        return
    import redis

    try:
        redis_client().incrby(IN_FLIGHT_KEY, delta)
    except redis.RedisError:  # best effort: the queue and unacked checks of wait_until_idle still stand
        logger.warning("could not count a task in flight", exc_info=True)


@contextlib.contextmanager
def _counted_task():
    """Around a consumer: a task a worker took from the broker (not one handed on in process) counts down."""
    counted = not _inside_consumer.get()
    try:
        yield
    finally:
        if counted:
            _count_in_flight(-1)


def _redis_publish_many(messages: list[tuple[str, str]], attempts: int = 4) -> None:
    """PUBLISH (channel, message) pairs in one pipelined round trip, with exponential backoff. The events are
    already stored, so a final failure is logged, not raised (and a retry may PUBLISH some twice: pub/sub is the
    live view, the store is the record)."""
    import redis

    delay = 0.1
    for attempt in range(1, attempts + 1):
        try:
            pipe = redis_client().pipeline(transaction=False)
            for channel, message in messages:
                pipe.publish(channel, message)
            pipe.execute()
            return
        except redis.RedisError:
            if attempt == attempts:
                channels = sorted({channel for channel, _ in messages})
                logger.error("PUBLISH on %s failed %d times; kept in the store", channels, attempts, exc_info=True)
                return
            time.sleep(delay)
            delay *= 2


@lru_cache(maxsize=1)
def _consumers() -> dict[str, list]:
    return {topic: [import_string(path) for path in paths] for topic, paths in settings.EVENT_CONSUMERS.items()}


@lru_cache(maxsize=1)
def _batch_consumers() -> dict[str, list]:
    return {topic: [import_string(path) for path in paths] for topic, paths in settings.EVENT_BATCH_CONSUMERS.items()}


@lru_cache(maxsize=1)
def _observers() -> dict[str, list]:
    observers = getattr(settings, "EVENT_OBSERVERS", {})
    return {topic: [import_string(path) for path in paths] for topic, paths in observers.items()}


@lru_cache(maxsize=1)
def _persisters() -> dict[str, Callable[[Event], Any]]:
    return {event_type: import_string(path) for event_type, path in settings.EVENT_PERSISTERS.items()}


def wait_until_idle(timeout: float = 60.0, poll: float = 0.005) -> None:
    """Block until no consumer task is queued or running (a lockstep replay waits here between candles).

    With acks_late a running task stays in the broker's ``unacked`` hash until it returns, and the tasks it
    enqueues are in the queue before that. A task just taken off the queue is in neither for a moment, so the
    count of tasks in flight (``IN_FLIGHT_KEY``) must be zero too: then the pipeline is quiet.
    Eager mode (no Redis) is always idle: tasks ran inside ``publish``.

    If the broker goes away meanwhile, wait for it with backoff (up to ``BROKER_RETRY_SECONDS``), then re-drive
    what it may have lost (``_recover``) and wait again: a restarted Redis can come back without its queue.
    """
    from celery import current_app as app

    if app.conf.task_always_eager or not settings.REDIS_URL:
        return
    queue = app.conf.task_default_queue
    while True:
        deadline = time.monotonic() + timeout
        try:
            with app.connection_for_write() as connection:
                client = connection.default_channel.client
                while client.llen(queue) or _unacked(client, queue) or int(client.get(IN_FLIGHT_KEY) or 0) > 0:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"the pipeline is still busy after {timeout}s")
                    time.sleep(poll)
                if int(client.get(IN_FLIGHT_KEY) or 0) < 0:  # tasks sent around the bus (tests) counted down only
                    client.set(IN_FLIGHT_KEY, 0)
        except TimeoutError:
            raise  # busy, not unreachable (TimeoutError is an OSError)
        except _broker_errors() as error:
            logger.warning("broker unreachable while waiting for the pipeline (%s); backing off", error)
            _await_broker()
            _recover()
            continue
        _sent_since_idle.clear()
        return


def _unacked(client, queue: str) -> int:
    """Messages of ``queue`` delivered and not yet acknowledged. The broker's ``unacked`` hash holds every queue's
    (kombu keeps each as JSON ``[message, exchange, routing_key]``): a notification waiting out its countdown on
    the ``notify`` queue is not the pipeline's work and must not hold a lockstep replay."""
    if not client.hlen("unacked"):
        return 0
    tail = f'"{queue}"]'.encode()
    return sum(1 for raw in client.hvals("unacked") if raw.rstrip().endswith(tail))


def _broker_errors() -> tuple[type[BaseException], ...]:
    import kombu.exceptions
    import redis

    return (redis.RedisError, kombu.exceptions.OperationalError, ConnectionError, OSError)


def _await_broker() -> None:
    """Ping the broker with exponential backoff (0.1 s doubling to 5 s) until it answers or the budget is spent."""
    import redis

    client = redis_client()
    deadline = time.monotonic() + settings.BROKER_RETRY_SECONDS
    delay = 0.1
    while True:
        try:
            client.ping()
            logger.warning("broker reachable again")
            return
        except redis.RedisError:
            if time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 5.0)


_recovery_jobs: list[Callable[[], Any]] = []


def on_broker_recovered(job: Callable[[], Any]) -> None:
    """Register what finishes the stored work a restarted broker may have lost (the roof registers
    ``cdb_project.recovery.redrive`` from ``OpsConfig.ready``: the bus knows no domain module)."""
    if job not in _recovery_jobs:
        _recovery_jobs.append(job)


def _recover() -> None:
    """After a broker outage: finish stored work Redis may have lost, then send again what we sent since idle."""
    redis_client().set(IN_FLIGHT_KEY, 0)  # what the lost broker held is sent again below, and counted again
    for job in _recovery_jobs:
        job()
    pending = list(_sent_since_idle)
    for event in pending:
        redeliver(event)
    logger.warning("re-sent %d event(s) enqueued before the broker outage", len(pending))

"""Events a transaction only announces (``bus.publish(..., consumed=True)``, or a topic without consumers) are
PUBLISHed by ``bus.publish_after_commit``: after its commit, in the order they were published — also around an event
that goes to its consumers — nothing of a transaction or savepoint that is rolled back, and at once outside a
transaction."""

import json
import time
import uuid

import pytest
from django.conf import settings
from django.db import transaction

from ground import bus
from tests.test_event_schema import SPEC_EXAMPLES

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]
EXAMPLE = {example["type"]: example for example in SPEC_EXAMPLES}
# Redis pub/sub channels are the same for every database index: other runs' events on them are not this test's.
RUN = f"{uuid.uuid4().hex[:12]}:"


def _event(event_type: str, marker: str) -> dict:
    """The spec's example of ``event_type``, told apart by its reason (signal) or client_order_id (``RUN`` first)."""
    event = dict(EXAMPLE[event_type])
    event["reason" if event_type == "signal" else "client_order_id"] = RUN + marker
    return event


@pytest.fixture
def announced():
    """Everything this run PUBLISHed on the three order-flow channels, as (channel, marker) in arrival order."""
    import redis

    subscriber = redis.Redis.from_url(settings.REDIS_URL).pubsub(ignore_subscribe_messages=True)
    subscriber.subscribe("signals", "orders", "order_results")

    def ours(message) -> tuple[str, str] | None:
        data = json.loads(message["data"])
        marker = data.get("reason") or data.get("client_order_id") or ""
        return (message["channel"].decode(), marker.removeprefix(RUN)) if marker.startswith(RUN) else None

    def read(count: int) -> list[tuple[str, str]]:
        out, deadline = [], time.monotonic() + 10
        while len(out) < count and time.monotonic() < deadline:
            message = subscriber.get_message(timeout=0.2)
            if message is not None and (mine := ours(message)) is not None:
                out.append(mine)
        quiet = time.monotonic() + 0.3
        while time.monotonic() < quiet:  # nothing more of ours may come
            late = subscriber.get_message(timeout=0.1)
            if late is not None and ours(late) is not None:
                out.append((late["channel"].decode(), "unexpected"))
        return out

    yield read
    subscriber.close()


@pytest.fixture
def round_trips(monkeypatch):
    """The size of every PUBLISH round trip the bus makes, as it makes them."""
    sizes = []
    real = bus._redis_publish_many
    monkeypatch.setattr(bus, "_redis_publish_many", lambda messages: (sizes.append(len(messages)), real(messages)))
    return sizes


def test_one_transactions_announcements_are_published_after_its_commit_in_order(announced, round_trips):
    with transaction.atomic():
        bus.publish(_event("signal", "s1"), consumed=True)
        bus.publish(_event("order", "o1"), consumed=True)
        bus.publish(_event("order_result", "o1"))  # no consumers: announced only
        assert round_trips == []  # nothing before the commit
    assert announced(3) == [("signals", "s1"), ("orders", "o1"), ("order_results", "o1")]
    assert round_trips == [1, 1, 1]


def test_a_rolled_back_transaction_announces_nothing(announced, round_trips):
    with pytest.raises(RuntimeError), transaction.atomic():
        bus.publish(_event("signal", "rolled back"), consumed=True)
        bus.publish(_event("order_result", "rolled back"))
        raise RuntimeError("the transaction is rolled back")
    assert announced(0) == [] and round_trips == []


def test_outside_a_transaction_an_announcement_goes_at_once(announced, round_trips):
    bus.publish(_event("order", "at once"), consumed=True)
    assert round_trips == [1]  # before publish returned
    assert announced(1) == [("orders", "at once")]


def test_a_rolled_back_savepoint_takes_its_announcements_with_it(announced):
    with transaction.atomic():
        bus.publish(_event("signal", "kept"), consumed=True)
        with pytest.raises(RuntimeError), transaction.atomic():
            bus.publish(_event("order", "rolled back"), consumed=True)
            raise RuntimeError("the savepoint is rolled back")
        bus.publish(_event("order_result", "after"))
    assert announced(2) == [("signals", "kept"), ("order_results", "after")]


def test_an_event_for_its_consumers_keeps_its_place_among_announcements(announced, monkeypatch):
    sent = []
    monkeypatch.setattr(bus, "_enqueue", lambda task, payload: sent.append((task.name, payload["client_order_id"])))
    with transaction.atomic():
        bus.publish(_event("signal", "s1"), consumed=True)
        bus.publish(_event("order", "o1"))  # to its consumer (execution.on_order) after the commit
        bus.publish(_event("order_result", "o1"))
    assert announced(3) == [("signals", "s1"), ("orders", "o1"), ("order_results", "o1")]
    assert sent == [("execution.on_order", RUN + "o1")]

"""Events a transaction only announces (``bus.publish(..., consumed=True)``, or a topic without consumers) are
PUBLISHed by ``bus.publish_after_commit``: after its commit, in the order they were published — also around an event
that goes to its consumers — nothing of a transaction or savepoint that is rolled back, and at once outside a
transaction. While a consumer runs (``bus.announcements_batched``) a transaction's PUBLISHes go in one pipelined round
trip, in the same order, also when the consumer fails after its commit."""

import json
import time
import uuid

import pytest
from django.conf import settings
from django.db import transaction

from ground import bus
from tests.unit.test_event_schema import SPEC_EXAMPLES

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]
EXAMPLE = {example["type"]: example for example in SPEC_EXAMPLES}
RUN = f"{uuid.uuid4().hex[:8]}-"  # the channels are global: other test runs on this Redis publish there too


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

    def read() -> list[tuple[str, str]]:
        """What came before a marker published now: Redis delivers one subscriber's messages in the order they were
        published, so once the marker is in, everything the transaction announced (or announced twice) is too."""
        marker = f"{RUN}marker-{uuid.uuid4().hex}"
        redis.Redis.from_url(settings.REDIS_URL).publish("order_results", json.dumps({"client_order_id": marker}))
        out, deadline = [], time.monotonic() + 10
        while time.monotonic() < deadline:
            message = subscriber.get_message(timeout=1)
            if message is None:
                continue
            data = json.loads(message["data"])
            said = data.get("reason") or data.get("client_order_id") or ""
            if said == marker:
                return out
            if said.startswith(RUN):  # this test's
                out.append((message["channel"].decode(), said.removeprefix(RUN)))
        raise AssertionError(f"the marker did not arrive within 10 s; before it: {out}")

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
    assert announced() == [("signals", "s1"), ("orders", "o1"), ("order_results", "o1")]
    assert round_trips == [1, 1, 1]


def test_a_rolled_back_transaction_announces_nothing(announced, round_trips):
    with pytest.raises(RuntimeError), transaction.atomic():
        bus.publish(_event("signal", "rolled back"), consumed=True)
        bus.publish(_event("order_result", "rolled back"))
        raise RuntimeError("the transaction is rolled back")
    assert announced() == [] and round_trips == []


def test_outside_a_transaction_an_announcement_goes_at_once(announced, round_trips):
    bus.publish(_event("order", "at once"), consumed=True)
    assert round_trips == [1]  # before publish returned
    assert announced() == [("orders", "at once")]


def test_a_rolled_back_savepoint_takes_its_announcements_with_it(announced):
    with transaction.atomic():
        bus.publish(_event("signal", "kept"), consumed=True)
        with pytest.raises(RuntimeError), transaction.atomic():
            bus.publish(_event("order", "rolled back"), consumed=True)
            raise RuntimeError("the savepoint is rolled back")
        bus.publish(_event("order_result", "after"))
    assert announced() == [("signals", "kept"), ("order_results", "after")]


def test_an_event_for_its_consumers_keeps_its_place_among_announcements(announced, monkeypatch):
    sent = []
    monkeypatch.setattr(bus, "_enqueue", lambda task, payload: sent.append((task.name, payload["client_order_id"])))
    with transaction.atomic():
        bus.publish(_event("signal", "s1"), consumed=True)
        bus.publish(_event("order", "o1"))  # to its consumer (execution.on_order) after the commit
        bus.publish(_event("order_result", "o1"))
    assert announced() == [("signals", "s1"), ("orders", "o1"), ("order_results", "o1")]
    assert sent == [("execution.on_order", RUN + "o1")]


def test_a_consumers_transaction_announces_in_one_round_trip_in_order(announced, round_trips):
    @bus.consumer("signal")
    def decide(event: dict) -> None:
        with transaction.atomic():
            bus.publish(_event("signal", "s1"), consumed=True)
            bus.publish(_event("order", "o1"), consumed=True)
            bus.publish(_event("order_result", "o1"))
            bus.publish(_event("order_result", "o2"))
        assert round_trips == []  # committed, held until the consumer returns

    decide(_event("signal", "received"))
    assert round_trips == [4]
    assert announced() == [("signals", "s1"), ("orders", "o1"), ("order_results", "o1"), ("order_results", "o2")]


def test_a_consumer_that_fails_after_its_commit_still_announces_what_it_committed(announced, round_trips):
    @bus.consumer("signal")
    def decide(event: dict) -> None:
        with transaction.atomic():
            bus.publish(_event("order", "committed"), consumed=True)
        with transaction.atomic():
            bus.publish(_event("order", "rolled back"), consumed=True)
            raise RuntimeError("the second transaction fails")

    with pytest.raises(RuntimeError):
        decide(_event("signal", "received"))
    assert round_trips == [1]
    assert announced() == [("orders", "committed")]


def test_held_announcements_go_before_an_event_handed_on_in_process(announced, round_trips, settings):
    """A consumer's event handed to the next consumer in this process: what the first held is PUBLISHed before the
    next one's announcements (signal before order before order_result)."""
    settings.BUS_INLINE_CONSUMERS = True
    from cdb_project.celery import app

    app.conf.task_always_eager = False  # in process, not eagerly through the broker

    @bus.consumer("order")
    def execute(event: dict) -> None:
        with transaction.atomic():
            bus.publish(_event("order_result", "o1"))

    @bus.consumer("signal")
    def decide(event: dict) -> None:
        with transaction.atomic():
            bus.publish(_event("signal", "s1"), consumed=True)
            bus.publish(_event("order_result", "before"))
            bus.publish(_event("order", "o1"))
            bus.publish(_event("order_result", "after"))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bus, "_consumers", lambda: {"orders": [execute]})
        try:
            decide(_event("signal", "received"))
        finally:
            app.conf.task_always_eager = True
    assert announced() == [
        ("signals", "s1"),
        ("order_results", "before"),
        ("orders", "o1"),
        ("order_results", "o1"),
        ("order_results", "after"),
    ]
    assert round_trips == [3, 2]  # what was held before the hand-on, then the rest


def test_held_announcements_go_when_an_event_goes_to_its_consumers_through_the_broker(
    announced, round_trips, monkeypatch
):
    """Its consumers run in other processes from then on: what they announce must come after what was held."""
    sent = []
    monkeypatch.setattr(bus, "_enqueue", lambda task, payload: sent.append(payload["client_order_id"]))

    @bus.consumer("signal")
    def decide(event: dict) -> None:
        with transaction.atomic():
            bus.publish(_event("signal", "s1"), consumed=True)
            bus.publish(_event("order", "o1"))  # to its consumer, through the broker (tasks are eager here)
            bus.publish(_event("order_result", "after"))

    decide(_event("signal", "received"))
    assert sent == [RUN + "o1"]
    assert round_trips == [2, 1]
    assert announced() == [("signals", "s1"), ("orders", "o1"), ("order_results", "after")]

"""Dashboard pushes from a process's background loop: in order, never blocking the caller, bounded."""

from __future__ import annotations

import asyncio
import threading

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from ground import dashboard_push
from ground.dashboard_push import BackgroundPusher


@pytest.mark.redis
def test_pushes_reach_a_dashboard_in_the_order_they_were_made_gathered_into_few_messages():
    layer = get_channel_layer()
    if type(layer).__name__ == "InMemoryChannelLayer":
        pytest.skip("the background pusher serves the Redis channel layer")
    group = "cdb-test-push"
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(group, channel)
    pusher = BackgroundPusher(layer, group)
    for n in range(50):
        pusher.push({"type": "dashboard.push", "kind": "market_data", "data": {"n": n}})
    assert pusher.flush(10)

    async def receive_all():
        messages, numbers = 0, []
        while len(numbers) < 50:
            message = await layer.receive(channel)
            messages += 1
            pushes = message["messages"] if message["type"] == "dashboard.push_many" else [message]
            numbers += [push["data"]["n"] for push in pushes]
        return messages, numbers

    messages, numbers = async_to_sync(receive_all)()
    assert numbers == list(range(50))
    assert messages < 5  # pushed within the gathering pause: sent together
    async_to_sync(layer.group_discard)(group, channel)


class FailingLayer:
    """Redis down for the first send."""

    def __init__(self):
        self.sent = []
        self.calls = 0

    async def group_send(self, group, message):
        self.calls += 1
        if self.calls == 1:
            raise ConnectionError("Redis is down")
        self.sent += [push["data"] for push in message.get("messages", [message])]


def test_a_failing_push_is_counted_and_later_pushes_still_go_out(caplog):
    layer = FailingLayer()
    pusher = BackgroundPusher(layer, "g")
    for n in range(5):
        pusher.push({"type": "dashboard.push", "kind": "signals", "data": n})
    assert pusher.flush(5)
    assert pusher.failed == 5 and layer.sent == []
    assert "dashboard push of 5 message(s) failed (5 so far)" in caplog.text
    for n in range(5, 8):
        pusher.push({"type": "dashboard.push", "kind": "signals", "data": n})
    assert pusher.flush(5)
    assert layer.sent == [5, 6, 7] and pusher.failed == 5


class StuckLayer:
    """Redis hanging: the first send never returns."""

    def __init__(self):
        self.started = threading.Event()

    async def group_send(self, group, message):
        self.started.set()
        await asyncio.sleep(3600)


def test_a_full_queue_drops_the_oldest_push_and_the_caller_never_waits(monkeypatch):
    monkeypatch.setattr(dashboard_push, "QUEUE_LIMIT", 3)
    layer = StuckLayer()
    pusher = BackgroundPusher(layer, "g")
    pusher.push({"kind": "signals", "data": "stuck"})
    assert layer.started.wait(5)
    for n in (0, 2, 4, 6, 8):
        pusher.push({"kind": "signals", "data": n})
    assert [m["data"] for m in pusher.pending] == [4, 6, 8] and pusher.dropped == 2
    assert not pusher.flush(0.1)

"""Dashboard pushes that never hold up the pipeline.

A push is best effort (the page resynchronises from a snapshot on every reconnect), yet a synchronous
``group_send`` through channels-redis costs a worker or the feed several milliseconds per event: an
``async_to_sync`` round trip plus the Redis calls. With a Redis channel layer each process therefore hands its
pushes to one event-loop thread of its own, which sends them in order: what is queued after a short gathering
pause (``GATHER_SECONDS``, far below what a reader of the page notices) goes out as one ``dashboard.push_many``
message — one send per batch instead of one per event (0.6–0.9 ms of CPU each on the 2-core bench machine, with
a hundred events a second a tenth of a core in every process). The queue is bounded: if Redis stalls, the oldest
pushes are dropped (and counted in the log) rather than memory growing or the caller waiting. At exit the thread
gets a moment to send what is queued.

The in-memory layer of embedded mode belongs to the web server's own event loop in the same process, so there
the push stays a direct ``async_to_sync`` call (``notify_dashboard`` decides which).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
import time
from collections import deque

logger = logging.getLogger("cdb.bus")

QUEUE_LIMIT = 10_000
EXIT_FLUSH_SECONDS = 2.0
GATHER_SECONDS = 0.05  # after a wake-up, wait this long for more pushes to send with it
BATCH_LIMIT = 500  # pushes in one message at most


class BackgroundPusher:
    """Sends ``group_send`` messages from a daemon thread's event loop, in the order they were handed in."""

    def __init__(self, layer, group: str) -> None:
        self.layer, self.group = layer, group
        self.pending: deque[dict] = deque()
        self.dropped = 0
        self.failed = 0
        self.busy = False
        self.woken = False  # a wake-up is scheduled on the loop and not yet taken
        self.loop = asyncio.new_event_loop()
        self.wakeup = asyncio.Event()
        self.thread = threading.Thread(target=self._run, name="cdb-dashboard-push", daemon=True)
        self.thread.start()

    def push(self, message: dict) -> None:
        if len(self.pending) >= QUEUE_LIMIT:
            self.pending.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                logger.warning("dashboard push queue full: %d push(es) dropped so far", self.dropped)
        self.pending.append(message)
        if not self.woken:
            self.woken = True
            self.loop.call_soon_threadsafe(self.wakeup.set)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._drain_forever())

    async def _drain_forever(self) -> None:
        while True:
            await self.wakeup.wait()
            self.busy = True
            await asyncio.sleep(GATHER_SECONDS)
            self.wakeup.clear()
            self.woken = False
            while self.pending:
                batch = [self.pending.popleft() for _ in range(min(len(self.pending), BATCH_LIMIT))]
                message = batch[0] if len(batch) == 1 else {"type": "dashboard.push_many", "messages": batch}
                try:
                    await self.layer.group_send(self.group, message)
                except Exception:
                    before, self.failed = self.failed, self.failed + len(batch)
                    if before == 0 or before // 1000 != self.failed // 1000:  # Redis down: a line now and then
                        logger.warning(
                            "dashboard push of %d message(s) failed (%d so far)", len(batch), self.failed, exc_info=True
                        )
            self.busy = False

    def flush(self, timeout: float) -> bool:
        """Wait until everything handed in has been sent (or ``timeout`` passes); True if it all went out."""
        deadline = time.monotonic() + timeout
        while self.pending or self.busy or self.woken:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True


_pusher: BackgroundPusher | None = None
_pusher_pid = 0
_lock = threading.Lock()


def background_pusher(layer, group: str) -> BackgroundPusher:
    """This process's pusher (a forked worker child starts its own: threads do not survive a fork)."""
    global _pusher, _pusher_pid
    if _pusher is None or _pusher_pid != os.getpid() or _pusher.layer is not layer:
        with _lock:
            if _pusher is None or _pusher_pid != os.getpid() or _pusher.layer is not layer:
                _pusher, _pusher_pid = BackgroundPusher(layer, group), os.getpid()
    return _pusher


@atexit.register
def _flush_at_exit() -> None:
    if _pusher is not None and _pusher_pid == os.getpid():
        _pusher.flush(EXIT_FLUSH_SECONDS)

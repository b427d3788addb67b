"""Handing a notify task on: to the ``notify`` queue (workers), or — embedded, where Celery runs tasks eagerly in
the caller — to one background thread of this process, so a slow or dead destination never holds up the trading
code that raised the alert. The thread honours countdowns (retry backoff, digest windows)."""

from __future__ import annotations

import atexit
import heapq
import itertools
import logging
import threading
import time

from django.db import connections

logger = logging.getLogger("cdb.notify")

QUEUE = "notify"


# Enqueueing gives up after about a second when Redis is down (the bus waits minutes for its own tasks): the caller
# may be a halt request or a trading worker, and a notification is not worth holding them. The stored alert stays.
PUBLISH_RETRY = {"max_retries": 3, "interval_start": 0.1, "interval_step": 0.2, "interval_max": 0.5}


def submit(task, *args, countdown: float = 0.0) -> None:
    from celery import current_app as app

    if app.conf.task_always_eager:
        _runner.put(task, args, countdown)
        return
    try:
        task.apply_async(args, queue=QUEUE, countdown=countdown or None, retry=True, retry_policy=PUBLISH_RETRY)
    except Exception as error:  # the broker is unreachable: log, never raise into the caller
        logger.error("could not queue %s%s: %s", task.name, _describe(args), error)


def _describe(args: tuple) -> str:
    first = args[0] if args else None
    if isinstance(first, dict):
        return f" for {first.get('type')} {first.get('code') or first.get('client_order_id') or ''}".rstrip()
    return f" {first}" if first is not None else ""


def wait_idle(timeout: float = 30.0) -> bool:
    """Embedded: wait until the background thread has nothing due (tests, the management command)."""
    return _runner.wait_idle(timeout)


class _Runner:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, object, tuple]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._busy = False
        self._exiting = False
        self._flush_registered = False
        self._thread: threading.Thread | None = None

    def put(self, task, args: tuple, countdown: float) -> None:
        with self._cond:
            due = time.monotonic() + (0.0 if self._exiting else max(0.0, countdown))
            heapq.heappush(self._heap, (due, next(self._order), task, args))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="cdb-notify", daemon=True)
                self._thread.start()
                if not self._flush_registered:
                    atexit.register(self.flush_at_exit)
                    self._flush_registered = True
            self._cond.notify_all()

    def flush_at_exit(self) -> None:
        """A short-lived process (``manage.py halt``, a replay) would take its pending messages with it: at exit
        everything queued — digests and retries included — is made due now and given NOTIFY_EXIT_FLUSH_SEC."""
        from django.conf import settings

        with self._cond:
            self._exiting = True
            self._heap = [(0.0, order, task, args) for _, order, task, args in self._heap]
            heapq.heapify(self._heap)
            self._cond.notify_all()
        if not self.wait_idle(float(settings.NOTIFY_EXIT_FLUSH_SEC)):
            logger.error("notifications still pending at exit after %ss: not sent", settings.NOTIFY_EXIT_FLUSH_SEC)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    wait = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(wait)
                _, _, task, args = heapq.heappop(self._heap)
                self._busy = True
            try:
                result = task.apply(args)
                if result.failed():
                    logger.error("notify task %s failed: %s", task.name, result.result)
            except Exception:
                logger.exception("notify task %s failed", task.name)
            finally:
                connections.close_all()  # this thread's own connections
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """True once nothing is running or due within the timeout (a later countdown does not count)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._busy or (self._heap and self._heap[0][0] <= deadline):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.05))
            return True


_runner = _Runner()

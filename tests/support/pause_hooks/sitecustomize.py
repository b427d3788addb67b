"""Loaded at start-up by the worker processes of tests/e2e/test_execution_crash.py (this directory is put first on their
PYTHONPATH): once Django is set up, the first order to reach a pause point writes its process id to a file and
sleeps, so the test can SIGKILL the worker right there. Test code only; production code has no hook for it.

* ``CDB_TEST_PAUSE_BEFORE_SEND=path:seconds`` — before a paper order meets the paper exchange, or before a live
  order is sent to (or looked up on) the exchange;
* ``CDB_TEST_PAUSE_BEFORE_BOOKING=path:seconds`` — after the exchange filled a live order, before it is booked.
"""

import functools
import os
import time

import django

_setup = django.setup


def _pause(variable: str) -> None:
    spec = os.environ.get(variable)
    if not spec:
        return
    path, seconds = spec.rsplit(":", 1)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:  # only the first order to get here pauses
        return
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    time.sleep(float(seconds))


def _pausing(function, before: str, after: str | None = None):
    @functools.wraps(function)
    def paused(*args, **kwargs):
        _pause(before)
        result = function(*args, **kwargs)
        if after:
            _pause(after)
        return result

    return paused


def _setup_with_pauses(*args, **kwargs):
    _setup(*args, **kwargs)
    from execution import paper
    from risk import live_order_service

    paper.PaperExchange.fill = _pausing(paper.PaperExchange.fill, "CDB_TEST_PAUSE_BEFORE_SEND")
    for name in ("_send", "_outcome_of_sent"):
        setattr(
            live_order_service,
            name,
            _pausing(getattr(live_order_service, name), "CDB_TEST_PAUSE_BEFORE_SEND", "CDB_TEST_PAUSE_BEFORE_BOOKING"),
        )


django.setup = _setup_with_pauses

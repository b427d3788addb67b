"""Worker processes and the feed put their start-up objects out of the garbage collector's reach, so a full
collection does not pause a task for the 50–100 ms it takes to scan Django, Celery and ccxt."""

import gc

import pytest
from celery import signals


@pytest.fixture
def unfrozen():
    gc.unfreeze()
    yield
    gc.unfreeze()


@pytest.mark.parametrize("signal", [signals.worker_process_init, signals.worker_ready])
def test_a_starting_worker_freezes_what_it_has_loaded(unfrozen, signal):
    assert gc.get_freeze_count() == 0
    signal.send(sender=None)
    assert gc.get_freeze_count() > 10_000  # Django and Celery, at least

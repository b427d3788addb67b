from celery import shared_task

from .recovery import redrive_stale_signals


@shared_task(name="cdb_project.redrive_signals")
def redrive_signals() -> int:
    """Signals stored but never decided (their task lost with a broker outage) get their candle evaluated again."""
    return redrive_stale_signals()

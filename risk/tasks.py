from celery import shared_task

from ground.bus import RETRY_ON_DATABASE_ERRORS, consumer

from .decision_service import decide_signal


@shared_task(name="risk.on_signal", **RETRY_ON_DATABASE_ERRORS)
@consumer("signal")
def on_signal(event: dict) -> None:
    decide_signal(event)

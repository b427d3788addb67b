from celery import shared_task

from ground.bus import RETRY_ON_DATABASE_ERRORS, consumer

from .decision_service import decide_signal


@shared_task(name="marketdata.check_data_stale")  # the beat schedule's name, from when the watch lived there
def check_data_stale() -> list[str]:
    """The data-stale watch, every DATA_STALE_CHECK_SECONDS: the watched symbols that are stale now."""
    from .data_stale import StaleWatch

    return list(StaleWatch().check().stale)


@shared_task(name="risk.on_signal", **RETRY_ON_DATABASE_ERRORS)
@consumer("signal")
def on_signal(event: dict) -> None:
    decide_signal(event)

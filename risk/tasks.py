from celery import shared_task

from ground.bus import RETRY_ON_DATABASE_ERRORS, consumer

from .decision_service import decide_signal, expire_waiting_orders


@shared_task(name="marketdata.check_data_stale")  # the beat schedule's name, from when the watch lived there
def check_data_stale() -> list[str]:
    """The data-stale watch, every DATA_STALE_CHECK_SECONDS: the watched symbols that are stale now. As in a replay
    and the backtest, the paper orders waiting for a price of a stale symbol expire (``expire_waiting_orders``)."""
    from .data_stale import StaleWatch

    return list(StaleWatch(on_without_data=expire_waiting_orders).check().stale)


@shared_task(name="risk.on_signal", **RETRY_ON_DATABASE_ERRORS)
@consumer("signal")
def on_signal(event: dict) -> None:
    decide_signal(event)

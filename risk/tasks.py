import logging

from celery import shared_task
from celery.signals import worker_ready

from ground.bus import RETRY_ON_DATABASE_ERRORS, consumer

from .decision_service import expire_waiting_orders
from .order_executor import execute_order
from .reconcile import reconcile_balances, reconcile_pending

logger = logging.getLogger("cdb.execution")


@shared_task(name="marketdata.check_data_stale")  # the beat schedule's name, from when the watch lived there
def check_data_stale() -> list[str]:
    """The data-stale watch, every DATA_STALE_CHECK_SECONDS: the watched symbols that are stale now. As in a replay
    and the backtest, the paper orders waiting for a price of a stale symbol expire (``expire_waiting_orders``)."""
    from .data_stale import StaleWatch

    return list(StaleWatch(on_without_data=expire_waiting_orders).check().stale)


# The order tasks keep the names they had in execution/tasks.py (beat schedules, queues and workers know them).
@shared_task(name="execution.on_order", **RETRY_ON_DATABASE_ERRORS)
@consumer("order")
def on_order(event: dict) -> None:
    execute_order(event)


@shared_task(name="execution.reconcile_pending")
def reconcile_pending_orders() -> int:
    return len(reconcile_pending())


@shared_task(name="execution.reconcile_balances")
def reconcile_balances_task() -> str:
    """The beat job: the book against the exchange's balances (live trading only; paper: nothing to do)."""
    return reconcile_balances().detail


@worker_ready.connect
def _reconcile_on_start(**_kwargs) -> None:
    """A worker that starts after a crash settles what the crash left PENDING."""
    try:
        reconcile_pending()
    except Exception:  # the worker must come up even if the store is briefly unreachable
        logger.exception("start-up reconciliation failed; the periodic task will retry")

from celery import shared_task

from cdb_project.bus import consumer
from risk.decision_service import watch_market

from .signal_service import process_market_data


@shared_task(name="trading.on_market_data")
@consumer("market_data")
def on_market_data(event: dict) -> None:
    """The market_data consumer: the risk manager's watch first (drawdown halt, stop-loss exits settle before
    any new decision), then the signal engine. One task, so every worker sees the same order of effects."""
    watch_market(event)
    process_market_data(event)

"""Periodic market-data jobs (Celery beat): the screener every minute, the data-stale watch every few seconds."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="marketdata.screen_symbols")
def screen_symbols() -> list[str]:
    from .watchlist import run_screener

    return run_screener().symbols()


@shared_task(name="marketdata.check_data_stale")
def check_data_stale() -> list[str]:
    from .stale import StaleWatch

    return list(StaleWatch().check().stale)

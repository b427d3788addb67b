"""Periodic market-data jobs (Celery beat): the screener every minute (the data-stale watch: risk.tasks)."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="marketdata.screen_symbols")
def screen_symbols() -> list[str]:
    from .watchlist import run_screener

    return run_screener().symbols()

"""Trading-state changes made by another process, pushed at once to the dashboards this web server holds.

In embedded mode (``make run``) the Channels layer lives in the web server's memory: ``manage.py halt`` or
``release`` in a shell is another process, and its push reaches nobody — an open dashboard used to learn of the
change only at its next refresh, 6–8 s later. The embedded server therefore reads the stored state every
``POLL_SECONDS`` and pushes a change as ``trading_state``, as the admin, the API and the dashboard's own buttons do
(a change made in this process is pushed by them too; the page takes the second push as the same state). With
Redis every process pushes through the shared layer, and no watch runs.
"""

from __future__ import annotations

import asyncio
import logging

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from .models import TradingState
from .state import state_snapshot

logger = logging.getLogger("cdb.risk")

POLL_SECONDS = 0.5  # a read of one row: far below what a reader of the page notices, and cheap


def stored_state() -> dict:
    """The trading state as the dashboard's ``trading_state`` push carries it."""
    return state_snapshot(TradingState.load())


async def watch_trading_state(poll_seconds: float = POLL_SECONDS) -> None:
    """Push every change of the stored trading state to this process's dashboards until cancelled."""
    layer = get_channel_layer()
    read = sync_to_async(stored_state)
    last: dict | None = None
    while True:
        try:
            current = await read()
            if last is not None and current != last:
                message = {"type": "dashboard.push", "kind": "trading_state", "data": current}
                await layer.group_send(settings.DASHBOARD_GROUP, message)
            last = current
        except asyncio.CancelledError:
            raise
        except Exception:  # the database briefly unavailable: the next read tries again
            logger.warning("trading-state watch: reading or pushing the state failed", exc_info=True)
        await asyncio.sleep(poll_seconds)

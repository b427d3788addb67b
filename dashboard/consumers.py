"""The dashboard websocket: logged-in users only. Joins the dashboard group, sends a snapshot, relays bus pushes.

Messages from the page:
- ``{"action": "snapshot"}``: a fresh snapshot (also sent unasked on every (re)connect: how the page resynchronises);
- ``{"action": "refresh"}``: the same, as kind ``refresh`` (the page merges it into its live tables);
- ``{"action": "halt" | "release", "reason": "…"[, "close_positions": true]}``: changes the trading state through
  ``risk.state``, only for users with the ``risk.halt_trading`` permission; everyone else gets an error 403. The
  user, the session and the permission are checked again at every such action (``session_guard``): a session
  that ended gets 401 and the socket is closed, as it is at once when the user is logged out or deactivated.
"""

import json

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from risk import state as trading_state
from risk.state import outcome_snapshot

from .session_guard import may_change_state, user_group
from .snapshot import build_snapshot

CLOSE_UNAUTHENTICATED = 4401


class DashboardConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)  # before accept: the handshake is refused (HTTP 403)
            return
        await self.channel_layer.group_add(settings.DASHBOARD_GROUP, self.channel_name)
        await self.channel_layer.group_add(user_group(user.pk), self.channel_name)
        await self.accept()
        await self.send_snapshot()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(settings.DASHBOARD_GROUP, self.channel_name)
        user = self.scope.get("user")
        if user is not None and user.is_authenticated:
            await self.channel_layer.group_discard(user_group(user.pk), self.channel_name)

    async def session_check(self, message: dict) -> None:
        """The user was logged out, deactivated or changed password somewhere: close if this socket's session
        ended with it."""
        standing = await database_sync_to_async(may_change_state)(self.scope)
        if not standing.session_valid:
            await self.close(code=CLOSE_UNAUTHENTICATED)

    async def send_snapshot(self, kind: str = "snapshot") -> None:
        await self.send_json({"kind": kind, "data": await database_sync_to_async(build_snapshot)()})

    async def receive(self, text_data=None, bytes_data=None, **kwargs) -> None:
        """A frame that is not a JSON text gets an error answer; the socket stays open (it used to close 1011)."""
        try:
            content = json.loads(text_data) if text_data is not None else None
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the decoder follows
            content = None
        if content is None:
            detail = 'send JSON text frames, e.g. {"action": "snapshot"}'
            await self.send_json({"kind": "error", "data": {"status": 400, "detail": detail}})
            return
        await self.receive_json(content)

    async def receive_json(self, content, **kwargs) -> None:
        action = content.get("action") if isinstance(content, dict) else None
        if action in ("snapshot", "refresh"):
            await self.send_snapshot(action)
        elif action in ("halt", "release"):
            await self.change_state(action, content.get("reason"), content.get("close_positions") is True)
        else:
            await self.send_json({"kind": "error", "data": {"status": 400, "detail": f"unknown action {action!r}"}})

    async def change_state(self, action: str, reason, close_positions: bool = False) -> None:
        user = self.scope["user"]
        standing = await database_sync_to_async(may_change_state)(self.scope)  # again at every action
        if not standing.may_act:
            status = 403 if standing.session_valid else 401
            detail = f"{action}: {standing.detail}"
            await self.send_json({"kind": "error", "data": {"status": status, "action": action, "detail": detail}})
            if not standing.session_valid:
                await self.close(code=CLOSE_UNAUTHENTICATED)
            return

        def service(reason: str, actor: str):
            if action == "halt":
                return trading_state.halt(reason, actor, close_positions=close_positions)
            return trading_state.release(reason, actor)

        try:
            new = await database_sync_to_async(service)(reason, user.get_username())
        except ValueError as error:
            await self.send_json({"kind": "error", "data": {"status": 400, "action": action, "detail": str(error)}})
            return
        await self.send_json({"kind": "ack", "data": {"action": action, "trading_state": outcome_snapshot(new)}})

    async def dashboard_push(self, message: dict) -> None:
        await self.send_json({"kind": message["kind"], "data": message["data"]})

    async def dashboard_push_many(self, message: dict) -> None:
        """Pushes a process gathered into one message (``ground.dashboard_push``): one frame each, in order."""
        for push in message["messages"]:
            await self.dashboard_push(push)

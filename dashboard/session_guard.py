"""Who may still act on an open dashboard websocket.

A socket is authenticated once, at connect; an operator's rights may end later. So every action that changes
the trading state asks again (``may_change_state``): the user still exists and is active, the socket's session
still exists and still belongs to that user with the same password (a logout deletes the session; a password
change alters the hash the session was signed with), and the user still has the permission. And when a user is
logged out, deactivated or changes password, every socket of that user is told (``announce_session_change``) and
checks its own session at once, closing if it ended — a socket does not wait for its next action to notice.
"""

from __future__ import annotations

import logging
from importlib import import_module
from typing import NamedTuple

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db.models.signals import post_save, pre_save
from django.utils.crypto import constant_time_compare

from risk.models import HALT_PERMISSION

logger = logging.getLogger("cdb.dashboard")


class Standing(NamedTuple):
    session_valid: bool  # False: the socket's session has ended (close it)
    may_act: bool
    detail: str


def user_group(user_id) -> str:
    """The channel group of every dashboard socket of one user."""
    return f"cdb.user.{user_id}"


def session_standing(session, user_id) -> Standing:
    """Whether the socket's ``session`` (its SessionStore) still stands for the active user ``user_id``."""
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    if user is None:
        return Standing(False, False, "the user is no longer active")
    key = getattr(session, "session_key", None)
    store = import_module(settings.SESSION_ENGINE).SessionStore
    if not key or not store().exists(key):
        return Standing(False, False, "the session has ended (logged out)")
    stored = store(session_key=key).load()
    if str(stored.get(SESSION_KEY)) != str(user.pk) or not constant_time_compare(
        stored.get(HASH_SESSION_KEY, ""), user.get_session_auth_hash()
    ):
        return Standing(False, False, "the session has ended (password changed or another user)")
    if not user.has_perm(HALT_PERMISSION):
        return Standing(True, False, f"needs the {HALT_PERMISSION} permission")
    return Standing(True, True, "")


def may_change_state(scope) -> Standing:
    return session_standing(scope.get("session"), scope["user"].pk)


def announce_session_change(user_id) -> None:
    """Tell every dashboard socket of the user to check its session now (best effort: each action checks too)."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(user_group(user_id), {"type": "session.check"})
    except Exception:  # the channel layer is down: the socket still re-checks at its next action
        logger.warning("could not tell the dashboard sockets of user %s to check their session", user_id, exc_info=True)


def _logged_out(sender, request, user, **kwargs) -> None:
    if user is not None:
        announce_session_change(user.pk)


def _remember_credentials(sender, instance, **kwargs) -> None:
    if instance.pk is None:
        return
    before = sender.objects.filter(pk=instance.pk).values_list("password", "is_active").first()
    instance._cdb_credentials_before = before


def _credentials_changed(sender, instance, created, **kwargs) -> None:
    before = getattr(instance, "_cdb_credentials_before", None)
    if not created and before is not None and before != (instance.password, instance.is_active):
        announce_session_change(instance.pk)


def connect_signals() -> None:
    user_model = get_user_model()
    user_logged_out.connect(_logged_out, weak=False, dispatch_uid="cdb_ws_logged_out")
    pre_save.connect(_remember_credentials, sender=user_model, weak=False, dispatch_uid="cdb_ws_user_pre")
    post_save.connect(_credentials_changed, sender=user_model, weak=False, dispatch_uid="cdb_ws_user_post")

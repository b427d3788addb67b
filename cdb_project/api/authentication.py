"""API tokens that expire: ``Authorization: Token <key>`` is refused (401) once the key is older than TOKEN_TTL_HOURS.

``POST /api/token/`` hands out a new key in place of an expired one. 0 hours: keys never expire.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed


def expired(token: Token) -> bool:
    ttl = settings.TOKEN_TTL_HOURS
    return bool(ttl) and token.created < timezone.now() - timedelta(hours=ttl)


def current_token(user) -> Token:
    """The user's key, a new one when there is none or it expired."""
    token, created = Token.objects.get_or_create(user=user)
    if not created and expired(token):
        token.delete()
        token = Token.objects.create(user=user)
    return token


class ExpiringTokenAuthentication(TokenAuthentication):
    def authenticate_credentials(self, key):
        user, token = super().authenticate_credentials(key)
        if expired(token):
            raise AuthenticationFailed("Token has expired: ask POST /api/token/ for a new one.")
        return user, token

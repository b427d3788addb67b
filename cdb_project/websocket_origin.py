"""Websocket handshakes from the dashboard's own origin only.

A logged-in operator's browser sends the session cookie with any page's websocket: a page on another port of the
same host (Grafana on :3000, Prometheus on :9090) could otherwise drive halt and release through it. Channels'
``AllowedHostsOriginValidator`` compares the host alone; this compares the scheme, the host and the port of the
``Origin`` with the server's own (the request's ``Host``, which must be in ALLOWED_HOSTS, and its scheme — the
proxy's ``X-Forwarded-Proto`` when SECURE_PROXY_SSL_HEADER says to trust it), or with an origin listed in
CSRF_TRUSTED_ORIGINS, as Django's CSRF check does for forms.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(scheme: str, host: str, port: int | None) -> tuple[str, str, int]:
    return scheme, host.lower(), port or DEFAULT_PORTS.get(scheme, 0)


def _parse(origin: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(origin)
        return _origin(parts.scheme, parts.hostname or "", parts.port)
    except ValueError:
        return None


def _trusted(origin: tuple[str, str, int]) -> bool:
    for entry in settings.CSRF_TRUSTED_ORIGINS:
        trusted = _parse(entry)
        if trusted is None:
            continue
        scheme, host, port = trusted
        if host.startswith("*."):
            if origin[0] == scheme and origin[2] == port and origin[1].endswith(host[1:]):
                return True
        elif origin == trusted:
            return True
    return False


def allowed(scope) -> bool:
    headers = {name.decode("latin1").lower(): value.decode("latin1") for name, value in scope.get("headers", [])}
    raw_origin, host_header = headers.get("origin"), headers.get("host", "")
    origin = _parse(raw_origin) if raw_origin else None
    if origin is None:
        return False
    domain, port = split_domain_port(host_header)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return False
    scheme = "https" if scope.get("scheme") in ("wss", "https") else "http"
    proxy = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy:
        header, secure_value = proxy
        forwarded = headers.get(header.removeprefix("HTTP_").replace("_", "-").lower())
        if forwarded is not None:
            scheme = "https" if forwarded.split(",")[0].strip() == secure_value else "http"
    own = _origin(scheme, domain.strip("[]"), int(port) if port.isdigit() else None)
    return origin == own or _trusted(origin)


class SameOriginValidator:
    """ASGI middleware: a websocket whose ``Origin`` is not the server's own (or trusted) is refused (HTTP 403)."""

    def __init__(self, application) -> None:
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not allowed(scope):
            return await WebsocketDenier.as_asgi()(scope, receive, send)
        return await self.application(scope, receive, send)

"""The one place that talks to Apprise: load a URL, mask it, send one message with short timeouts.

Apprise is imported on first use (about a second with its plugins): processes that never send, the trading
workers, do not pay for it."""

from __future__ import annotations

from dataclasses import dataclass

from .rules import mask_parameters, secret_pieces

NOTIFY_TYPES = {"INFO": "INFO", "WARNING": "WARNING", "CRITICAL": "FAILURE"}  # our level → apprise.NotifyType


@dataclass(frozen=True)
class Described:
    masked: str  # Apprise's privacy form of the URL (tokens and passwords shortened or starred)
    service: str
    secrets: frozenset[str]


def _load(url: str):
    import apprise

    return apprise.Apprise.instantiate(url, suppress_exceptions=True)


def describe(url: str) -> Described:
    """Mask ``url``; ValueError (which never quotes the URL) when Apprise cannot load it."""
    plugin = _load(url)
    if plugin is None:
        raise ValueError("Apprise cannot load this URL (unknown scheme or missing/invalid parts)")
    masked = mask_parameters(plugin.url(privacy=True))
    return Described(masked=masked, service=str(plugin.service_name), secrets=frozenset(secret_pieces(url, masked)))


def send(url: str, title: str, body: str, level: str, timeout: float) -> tuple[bool, str]:
    """Send one message; (delivered, what Apprise logged at WARNING and above). Connect and read timeouts are at
    most ``timeout`` seconds each, so a hanging server costs a delivery task seconds, never trading."""
    import apprise

    plugin = _load(url)
    if plugin is None:
        return False, "Apprise cannot load this URL"
    plugin.socket_connect_timeout = min(float(plugin.socket_connect_timeout), timeout)
    plugin.socket_read_timeout = min(float(plugin.socket_read_timeout), timeout)
    with apprise.LogCapture(level=apprise.logging.WARNING, fmt="%(message)s") as output:
        try:
            ok = bool(
                plugin.notify(body=body, title=title, notify_type=apprise.NotifyType[NOTIFY_TYPES.get(level, "INFO")])
            )
        except Exception as error:  # a plugin bug must end as a failed delivery, not a crashed task
            ok = False
            apprise.logging.getLogger("apprise").warning("%s: %s", type(error).__name__, error)
        log = output.getvalue()
    return ok, ("" if ok else (log.strip() or "delivery failed"))

"""The functional core of notifications: destination URLs, who gets what, message texts, bursts, backoff.

No ORM, no network, no clock: every function here takes what it needs and returns a value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from ground import amounts

LEVELS = ("INFO", "WARNING", "CRITICAL")
TOPICS = ("alerts", "fills", "daily")
DEFAULT_TOPICS = ("alerts", "daily")
DEFAULT_LEVEL = "INFO"
# Our own query parameters on an Apprise URL; everything else is Apprise's.
OWN_PARAMETERS = ("level", "topics")
# Where NOTIFY_URLS is cut: a comma followed by the next URL's scheme (a comma inside one URL — topics=a,b or
# to=x@a.com,y@b.com — stays).
_NEXT_URL = re.compile(r",\s*(?=[A-Za-z][A-Za-z0-9+.-]*://)")
MAX_DIGEST_LINES = 60


@dataclass(frozen=True)
class DestinationSpec:
    """A destination as configured: the Apprise URL (without our parameters), minimum alert level, topics."""

    url: str
    level: str = DEFAULT_LEVEL
    topics: tuple[str, ...] = DEFAULT_TOPICS


def split_urls(text: str) -> list[str]:
    """NOTIFY_URLS → the URLs, in order, blanks dropped."""
    return [part.strip() for part in _NEXT_URL.split(text or "") if part.strip()]


def parse_topics(text: str) -> tuple[str, ...]:
    topics = tuple(dict.fromkeys(t.strip().lower() for t in re.split(r"[,;\s]+", text or "") if t.strip()))
    unknown = [t for t in topics if t not in TOPICS]
    if unknown:
        raise ValueError(f"unknown topic(s) {', '.join(unknown)}; known: {', '.join(TOPICS)}")
    if not topics:
        raise ValueError(f"no topic; known: {', '.join(TOPICS)}")
    return topics


def parse_level(text: str) -> str:
    level = (text or "").strip().upper()
    if level not in LEVELS:
        raise ValueError(f"unknown level {text!r}; known: {', '.join(LEVELS)}")
    return level


def own_parameters(raw: str) -> dict[str, str]:
    """Our parameters (level, topics) given in a URL's query, as written."""
    query = parse_qsl(urlsplit((raw or "").strip()).query, keep_blank_values=True)
    return {key.lower(): value for key, value in query if key.lower() in OWN_PARAMETERS}


def parse_destination(raw: str) -> DestinationSpec:
    """``tgram://TOKEN/CHAT?level=WARNING&topics=alerts,fills`` → the Apprise URL, the level and the topics.

    Raises ValueError (naming the problem, never the secret) for a URL without a scheme or a bad level/topic."""
    raw = (raw or "").strip()
    parts = urlsplit(raw)
    if not parts.scheme or "://" not in raw:
        raise ValueError("not a URL (expected scheme://…)")
    query = parse_qsl(parts.query, keep_blank_values=True)
    own = {key.lower(): value for key, value in query if key.lower() in OWN_PARAMETERS}
    rest = [(key, value) for key, value in query if key.lower() not in OWN_PARAMETERS]
    # quote_via=quote: a space stays %20 (Apprise reads "+" literally, so "Bearer+Tok" is not "Bearer Tok")
    query = urlencode(rest, safe=",@:/", quote_via=quote)
    url = urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
    return DestinationSpec(
        url=url,
        level=parse_level(own["level"]) if "level" in own else DEFAULT_LEVEL,
        topics=parse_topics(own["topics"]) if "topics" in own else DEFAULT_TOPICS,
    )


SECRET_PARAMETER = re.compile(r"key|token|secret|pass|auth|sig|cred|session", re.IGNORECASE)


def mask_parameters(masked: str) -> str:
    """Apprise's privacy form leaves query values as they are: a header (``+Authorization=…``), a payload field
    (``-apikey=…``, ``:token=…``) or a parameter named like a secret is starred here too."""
    parts = urlsplit(masked)
    if not parts.query:
        return masked
    query = [
        (key, "***" if key[:1] in "+-:" or SECRET_PARAMETER.search(key) else value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit(parts._replace(query=urlencode(query, safe=",@:/*", quote_via=quote)))


def secret_pieces(url: str, masked: str, minimum: int = 4) -> set[str]:
    """The parts of ``url`` that its privacy form ``masked`` hides (tokens, passwords, keys): what a log line must
    never show. Over-inclusive on purpose: masking a harmless word costs nothing."""
    pieces = set()
    for piece in re.split(r"[/:@?&=,#;+\s]+", url):
        if len(piece) >= minimum and piece not in masked:
            pieces.add(piece)
            if "%" in piece:
                pieces.add(unquote(piece))
    return pieces


def admits(spec_level: str, spec_topics: tuple[str, ...] | list[str], topic: str, level: str = "INFO") -> bool:
    """Whether a destination takes a message of ``topic`` (alerts at or above its level; fills and daily
    reports when it has their topic)."""
    if topic not in spec_topics:
        return False
    if topic == "alerts":
        return LEVELS.index(level) >= LEVELS.index(spec_level)
    return True


def event_topic(event: dict) -> tuple[str, str] | None:
    """(topic, level) of an event worth a notification: every alert; a fill (FILLED or PARTIALLY_FILLED with a
    quantity). None for the rest."""
    if event.get("type") == "alert":
        return "alerts", event["level"]
    if (
        event.get("type") == "order_result"
        and event.get("status") in ("FILLED", "PARTIALLY_FILLED")
        and Decimal(str(event.get("filled_quantity") or 0)) > 0
        and event.get("price")
    ):
        return "fills", "INFO"
    return None


def coalesce(messages_in_window: int, limit: int) -> bool:
    """More than ``limit`` messages a window to one destination: the rest wait for one digest."""
    return messages_in_window >= limit


def retry_delay(retries: int, base: float, cap: float) -> float:
    """Exponential backoff: base, 2·base, 4·base, … at most cap seconds."""
    return min(cap, base * (2**retries))


# --- texts -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    title: str
    body: str
    level: str = "INFO"


def alert_message(event: dict) -> Message:
    symbol = f" {event['symbol']}" if event.get("symbol") else ""
    return Message(
        title=f"[{event['level']}] {event['code']}{symbol}",
        body=f"{event['message']}\n{amounts.iso_utc(event['timestamp'])}",
        level=event["level"],
    )


def fill_message(event: dict, profit_loss=None, profit_loss_fraction=None) -> Message:
    """symbol, side, quantity, price, fee, and the realized P&L when the fill closed trades (``profit_loss_fraction``:
    of the closed lots' cost, 0.0125 = 1.25 %)."""
    side, symbol = event.get("side", "?"), event.get("symbol", "?")
    lines = [
        f"{side} {amounts.quantity(event['filled_quantity'], amounts.base_of(symbol))}"
        f" @ {amounts.price(event['price'], amounts.quote_of(symbol))}",
        f"fee {amounts.money(event['fees'], amounts.quote_of(symbol), unit=True)}",
    ]
    if profit_loss is not None:
        pct = f" ({amounts.percent(profit_loss_fraction)})" if profit_loss_fraction is not None else ""
        lines.append(f"P&L {amounts.money(profit_loss, amounts.quote_of(symbol), unit=True, sign=True)}{pct}")
    partial = " (partial)" if event["status"] == "PARTIALLY_FILLED" else ""
    lines.append(f"{event['client_order_id']} · {amounts.iso_utc(event['timestamp'])}")
    return Message(title=f"Fill{partial}: {side} {symbol}", body="\n".join(lines))


def daily_message(report: dict) -> Message:
    """The daily report's text from ``report`` (see notify.report.daily_report)."""
    quote = report.get("quote", amounts.DEFAULT_QUOTE)
    lines = [
        f"Trading state: {report['trading_state']}" + (f" ({report['reason']})" if report.get("reason") else ""),
        f"Equity: {amounts.money(report['equity'], quote, unit=True)}",
        f"Day's P&L: {amounts.money(report['daily_pnl'], quote, unit=True, sign=True)}"
        f" ({amounts.percent(report['daily_pnl_pct'])})",
        f"Drawdown: {amounts.percent(report['drawdown_pct'])} (limit {amounts.percent(report['drawdown_limit_pct'])})",
        f"Trades closed: {report['trades']}, win rate {amounts.percent(report['win_rate'])}",
        f"Open positions: {report['open_positions']}",
    ]
    return Message(title=f"Daily report {report['day']} ({report['mode']})", body="\n".join(lines))


def digest_message(items: list[tuple[str, str]], window_seconds: float) -> Message:
    """One message listing ``items`` ((title, first line of the body) each), newest last."""
    lines = [f"• {title}: {first}" if first else f"• {title}" for title, first in items[:MAX_DIGEST_LINES]]
    if len(items) > MAX_DIGEST_LINES:
        lines.append(f"… and {len(items) - MAX_DIGEST_LINES} more (admin: Notifications)")
    worst = max((t for t, _ in items if t.startswith("[")), key=_severity, default="")
    level = worst[1 : worst.index("]")] if worst else "INFO"
    return Message(
        title=f"{len(items)} notifications within {window_seconds:g} s (coalesced)", body="\n".join(lines), level=level
    )


def _severity(title: str) -> int:
    for index, level in enumerate(LEVELS):
        if title.startswith(f"[{level}]"):
            return index
    return -1

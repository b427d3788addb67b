"""JSON-lines log formatter that never writes a secret.

Every record becomes one JSON object: ``timestamp`` (UTC, ISO 8601), ``level``, ``logger``, ``message``,
``symbol`` and ``client_order_id`` when known (from ``extra=`` or from the event the current Celery task
handles), plus ``exc_info`` as text. Before it is written the whole line is redacted:

* the values of environment variables whose names look secret (``*KEY*``, ``*SECRET*``, ``*PASSWORD*``,
  ``*TOKEN*``, ``*PASS*``) and the passwords inside any ``scheme://user:password@host`` URL in the environment
  (``DATABASE_URL``, ``REDIS_URL``) are replaced by ``***``, and so are the secrets code registers at run time
  (``register_secrets``: the tokens and passwords of notification URLs, which may come from the database);
* any ``user:password@`` in a URL, ``password=…``, ``secret=…``, ``api_key=…``, ``signature=…``,
  ``Authorization: Token …`` / ``Bearer …`` and MEXC's ``X-MEXC-APIKEY`` header values are masked by pattern.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit

from .timeutil import iso_z

SECRET_NAME = re.compile(r"KEY|SECRET|PASSWORD|PASSWD|TOKEN|PASS\b|_PASS|CREDENTIAL", re.IGNORECASE)
NOT_SECRET_NAMES = frozenset({"PYTHONHASHSEED", "KEYBOARD", "KEYTIMEOUT"})
MIN_SECRET_LENGTH = 4
MASK = "***"

# The symbol / client_order_id of the event being handled (set by the bus's consumers and by ops around each task).
log_context: contextvars.ContextVar[dict | None] = contextvars.ContextVar("cdb_log_context", default=None)

PATTERNS = [
    (re.compile(r"(?P<keep>[a-z][a-z0-9+.-]*://[^/\s:@'\"]*:)[^@\s'\"/]+(?=@)", re.IGNORECASE), r"\g<keep>" + MASK),
    (
        re.compile(
            r"(?P<keep>\b(?:password|passwd|pwd|secret|api[_-]?key|apikey|api[_-]?secret|token|signature|access[_-]?key)"
            r"[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,;}]+",
            re.IGNORECASE,
        ),
        r"\g<keep>" + MASK,
    ),
    (re.compile(r"(?P<keep>\b(?:Token|Bearer|Basic)\s+)[A-Za-z0-9._~+/=-]{8,}"), r"\g<keep>" + MASK),
    (re.compile(r"(?P<keep>X-MEXC-APIKEY[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+", re.IGNORECASE), r"\g<keep>" + MASK),
]


# Settings that hold a secret, perhaps read from a file (NAME_FILE) and so never in the environment.
SETTINGS_SECRETS = ("SECRET_KEY", "MEXC_API_KEY", "MEXC_API_SECRET", "METRICS_TOKEN", "EMAIL_HOST_PASSWORD")
_registered: list[str] = []  # register_secrets: longest first


def register_secrets(values) -> None:
    """Mask these strings in every log line from now on (thread-safe enough: the list is replaced, not mutated)."""
    global _registered
    new = {v for v in values if isinstance(v, str) and len(v) >= MIN_SECRET_LENGTH} - set(_registered)
    if new:
        _registered = sorted(set(_registered) | new, key=len, reverse=True)


def secret_values(environ: dict[str, str] | None = None) -> list[str]:
    """The secret strings found in the environment, longest first (so a secret containing another goes first)."""
    environ = os.environ if environ is None else environ
    found: set[str] = set()
    for name, value in environ.items():
        if not value:
            continue
        if SECRET_NAME.search(name) and name.upper() not in NOT_SECRET_NAMES and len(value) >= MIN_SECRET_LENGTH:
            found.add(value)
        if "://" in value:
            try:
                password = urlsplit(value).password
            except ValueError:
                password = None
            if password and len(password) >= MIN_SECRET_LENGTH:
                found.add(password)
                found.add(unquote(password))
    return sorted(found, key=len, reverse=True)


def redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
        escaped = json.dumps(secret)[1:-1]
        if escaped != secret and escaped in text:
            text = text.replace(escaped, MASK)
    for pattern, replacement in PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line; secrets masked (see the module docstring)."""

    CONTEXT_FIELDS = ("symbol", "client_order_id")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._secrets: list[str] | None = None
        logging.captureWarnings(True)  # warnings.warn(...) becomes a JSON line too (logger "py.warnings")

    def secrets(self) -> list[str]:
        if self._secrets is None:
            values = set(secret_values())
            try:  # settings hold secrets that never were in the environment (.secret_key, NAME_FILE secrets)
                from django.conf import settings

                if settings.configured:
                    candidates = [getattr(settings, name, "") for name in SETTINGS_SECRETS]
                    candidates.append(settings.DATABASES["default"].get("PASSWORD"))
                    try:
                        candidates.append(urlsplit(getattr(settings, "REDIS_URL", "")).password)
                    except ValueError:
                        pass
                    for value in candidates:
                        if isinstance(value, str) and len(value) >= MIN_SECRET_LENGTH:
                            values.add(value)
            except Exception:
                return sorted(values, key=len, reverse=True)  # settings not ready yet: try again next record
            self._secrets = sorted(values, key=len, reverse=True)
        return self._secrets

    def format(self, record: logging.LogRecord) -> str:
        try:
            message = record.getMessage()
        except Exception as error:  # a bad format string must not lose the line
            message = f"{record.msg!r} % {record.args!r} ({error})"
        entry = {
            "timestamp": iso_z(datetime.fromtimestamp(record.created, UTC)),  # as every JSON time
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        context = _context()
        for field in self.CONTEXT_FIELDS:
            value = getattr(record, field, None) or context.get(field)
            if value:
                entry[field] = str(value)
        if record.processName not in ("MainProcess", None):
            entry["process"] = record.processName
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return redact(json.dumps(entry, ensure_ascii=False, default=str), self.secrets() + _registered)


def _context() -> dict:
    return log_context.get() or {}

"""One server per SQLite file, and one feed per database.

Two locks, each held by a process as long as it lives and let go by the kernel or the database server when it ends
(a crash or ``kill -9`` included), so a lock left behind never blocks a later start:

* the **server lock** (SQLite only): ``manage.py serve`` holds a ``flock`` on the database file itself, so every name
  of the file (a symbolic link, a hard link, a relative path) is the same lock and ``$TMPDIR`` plays no part (SQLite
  locks with ``fcntl`` byte ranges, which ``flock`` does not touch on Linux). Its holder's process id is read from
  ``/proc/locks``. A server database (PostgreSQL) has none: several web processes are its normal case.
* the **feed lock**: the process that writes the market — ``run_feed`` (every source) or a ``serve`` running the
  simulated market (``serve --feed none`` does not take it). A second feed took over the first one's feed symbols
  (the data-stale watch, the page's freshness), its market clock and its trading day. On SQLite it is
  ``<database>.feed.lock`` beside the file (by its resolved path); on PostgreSQL a session-level advisory lock on a
  fixed key, held by a connection of its own whose ``application_name`` says who holds it.

The feed lock file, or the holding connection's name, says the holder's process id and its command.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FEED_LOCK_KEY = 0x43444246  # "CDBF": the advisory lock of the one feed of a PostgreSQL database
_PG_NAME = "cdb-feed"


@dataclass(frozen=True)
class Holder:
    """The process holding a lock: its process id (``?`` where it cannot be known) and its command, e.g. ``serve``,
    ``serve --feed none`` or ``run_feed --source replay``."""

    pid: str
    command: str


class Held:
    """A lock this process holds: ``release()`` lets it go (the end of the process does too)."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def release(self) -> None:
        self._handle.close()


def _database_file(database: dict) -> Path | None:
    """The SQLite file of ``database``, by its resolved path (None: another engine, in memory, or a directory that is
    not there, which SQLite says itself at the first query)."""
    if database["ENGINE"] != "django.db.backends.sqlite3" or str(database["NAME"]).startswith(("file:", ":memory:")):
        return None
    database_file = Path(database["NAME"]).resolve()
    return database_file if database_file.parent.is_dir() else None


def _hold_file(path: Path, command: str) -> Held | Holder:
    lock = path.open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        pid, _, held_by = lock.read().strip().partition(" ")
        lock.close()
        return Holder(pid or "?", held_by or "?")
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()} {command}\n")
    lock.flush()
    return Held(lock)


def hold_server(database: dict) -> Held | Holder | None:
    """The server lock of ``database`` for this ``serve``: held, the ``Holder`` of it already, or None (a server
    database)."""
    database_file = _database_file(database)
    if database_file is None:
        return None
    database_file.touch()  # an empty file is an empty SQLite database; it must exist to be locked
    lock = database_file.open("rb")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        identity = os.fstat(lock.fileno())
        lock.close()
        return Holder(_flock_holder(identity), "serve")
    return Held(lock)


def _flock_holder(identity: os.stat_result) -> str:
    """The process id holding a ``flock`` on the file of ``identity`` (``?`` when /proc/locks does not say)."""
    device = f"{os.major(identity.st_dev):02x}:{os.minor(identity.st_dev):02x}:{identity.st_ino}"
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return "?"
    for line in lines:
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == device:
            return fields[4]
    return "?"


def hold_feed(database: dict, command: str) -> Held | Holder | None:
    """The feed lock of ``database`` for this process running ``command``: held, the ``Holder`` of it already, or
    None (a database of another engine, or in memory)."""
    if database["ENGINE"] == "django.db.backends.postgresql":
        return _hold_advisory(database, command)
    database_file = _database_file(database)
    if database_file is None:
        return None
    return _hold_file(database_file.with_name(f"{database_file.name}.feed.lock"), command)


def _hold_advisory(database: dict, command: str) -> Held | Holder:
    """A connection of its own, outside Django's handler (the server closes those before it serves; a feed's tasks
    close old ones), holding the session-level advisory lock as long as it is open."""
    from django.db import connections

    wrapper = type(connections["default"])(dict(database), alias="feed_lock")
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [FEED_LOCK_KEY])
        if cursor.fetchone()[0]:
            cursor.execute("SELECT set_config('application_name', %s, false)", [f"{_PG_NAME} {os.getpid()} {command}"])
            return Held(wrapper)
        cursor.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 AND l.objid = %s AND l.objsubid = 1 "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            [FEED_LOCK_KEY],
        )
        row = cursor.fetchone()
    wrapper.close()
    name = (row[0] if row else "").split(" ", 2)
    if len(name) == 3 and name[0] == _PG_NAME:
        return Holder(name[1], name[2])
    return Holder("?", "?")

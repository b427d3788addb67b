"""One server per SQLite file, and no second feed into the market it serves.

``manage.py serve`` holds an exclusive lock on a file named by its database file's identity (device and inode, in
the temporary directory) as long as its process lives: the kernel lets go of it when the process ends, a crash or
``kill -9`` included, so a lock left behind never blocks a later start. Two names for one file (a symbolic link, a
relative path, a hard link) share one lock. The lock file says the server's process id and its feed (``sim``: the
simulated market runs inside it; ``none``: it only serves).

``serving`` is what another process reads of it: ``run_feed`` refuses to feed a database whose server runs its own
market (a replay or a second simulation took over its feed symbols, its clock and its trading day until restart).
A server database (PostgreSQL) has no such lock: several web processes are its normal case.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO


@dataclass(frozen=True)
class Server:
    """The ``serve`` process holding a database: its process id and its feed (``sim`` or ``none``)."""

    pid: str
    feed: str


def _lock_path(database: dict, create: bool) -> Path | None:
    if database["ENGINE"] != "django.db.backends.sqlite3" or str(database["NAME"]).startswith(":memory:"):
        return None
    database_file = Path(database["NAME"])
    if create:
        database_file.touch()  # an empty file is an empty SQLite database; it must exist to have an identity
    elif not database_file.exists():
        return None
    identity = database_file.stat()
    return Path(tempfile.gettempdir()) / f"cdb-serve-{identity.st_dev}-{identity.st_ino}.lock"


def _holder(lock: TextIO) -> Server:
    lock.seek(0)
    pid, _, feed = lock.read().strip().partition(" ")
    return Server(pid or "?", feed or "sim")


def hold_database(database: dict, feed: str) -> TextIO | Server | None:
    """Lock ``database`` for this server: the open lock file (keep it open as long as the process serves), the
    ``Server`` holding it already, or None for a server database."""
    path = _lock_path(database, create=True)
    if path is None:
        return None
    lock = path.open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(lock)
        lock.close()
        return holder
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()} {feed}\n")
    lock.flush()
    return lock


def serving(database: dict) -> Server | None:
    """The ``serve`` process holding ``database`` now (None: none, or a server database)."""
    path = _lock_path(database, create=False)
    if path is None or not path.exists():
        return None
    with path.open("r") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder(lock)
        fcntl.flock(lock, fcntl.LOCK_UN)
    return None

"""One command per study at a time: a lock keyed by the study name, held for the command's life. PostgreSQL: a
session advisory lock on a connection of its own; SQLite: an flock on a file beside the database. Both end with
the process, however it ends (a killed command's lock never blocks the next one)."""

from __future__ import annotations

import fcntl
import hashlib
from contextlib import contextmanager
from pathlib import Path


class StudyBusy(Exception):
    """Another command runs the study."""


def _key(study: str) -> int:
    """A signed 64-bit key for ``pg_try_advisory_lock`` (the namespace keeps it apart from other advisory locks)."""
    digest = hashlib.sha256(f"optimize-study:{study}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def study_lock(storage, study: str):
    """Hold the study's lock until the block ends; StudyBusy at once if another command holds it."""
    engine = storage.engine
    if engine.dialect.name == "postgresql":
        from sqlalchemy import text

        with engine.connect() as connection:
            if not connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": _key(study)}).scalar():
                raise StudyBusy(study)
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _key(study)})
        return
    name = hashlib.sha256(study.encode()).hexdigest()[:16]
    path = Path(engine.url.database).with_name(f"{Path(engine.url.database).name}.optimize-{name}.lock")
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StudyBusy(study) from None
        yield  # (closing the file releases the lock)

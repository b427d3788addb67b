"""Writes nobody waits for, sent in front of the transaction's next statement: one round trip instead of several.

A paper decision writes its signal, its risk event, the portfolio and the position before the statement that
needs an answer (the order's INSERT returns the order's id, which its trades refer to). Inside ``deferring()``
(PostgreSQL, in a transaction) ``insert``, ``update`` and ``upsert`` queue their statement; the next statement
the connection runs through Django's cursor (psycopg2's COPY bypasses it) carries the queue in front of it
(``"q1; q2; next"`` in one ``execute``: psycopg2 returns the last statement's result), and leaving the block
sends what is left. The statements run in the same order and the same transaction as they would one by one, so
what is committed is the same; only a failing write (a duplicate signal id, say) raises at the next statement
instead of at its own. Outside such a block, and on SQLite (which runs one statement per ``execute``), each runs
at once.

The instance of an ``insert`` does not get its id back: use it for what it holds, not for its primary key.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, models
from django.db.models.constants import OnConflict
from django.db.models.signals import post_save, pre_save
from django.db.models.sql import InsertQuery, UpdateQuery

_queue: contextvars.ContextVar[list[tuple[str, list]] | None] = contextvars.ContextVar("cdb_deferred", default=None)


@contextlib.contextmanager
def deferring() -> Iterator[None]:
    """Queue the writes of this block (see the module docstring); call it inside ``transaction.atomic()``."""
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor != "postgresql" or not connection.in_atomic_block or _queue.get() is not None:
        yield
        return
    queue: list[tuple[str, list]] = []
    token = _queue.set(queue)
    try:
        with connection.execute_wrapper(partial(_in_front, queue)):
            yield
            if queue:
                with connection.cursor() as cursor:  # the wrapper puts the queue in front of this empty statement
                    cursor.execute("SELECT 1", [])
    finally:
        _queue.reset(token)


def _in_front(queue: list[tuple[str, list]], execute, sql: str, params, many: bool, context: dict[str, Any]):
    if not queue:
        return execute(sql, params, many, context)
    statements, values = [text for text, _ in queue], [value for _, part in queue for value in part]
    queue.clear()
    if many or isinstance(params, dict):  # cannot share one parameter list: send the queue on its own first
        execute("; ".join(statements), values, False, context)
        return execute(sql, params, many, context)
    if params is None:  # without parameters the driver leaves "%" alone; with them it must be "%%"
        sql, params = sql.replace("%", "%%"), ()
    return execute("; ".join([*statements, sql]), [*values, *params], False, context)


def _write(sql: str, params: Sequence[Any]) -> None:
    queue = _queue.get()
    if queue is not None:
        queue.append((sql, list(params)))
        return
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute(sql, params)


def insert(instance: models.Model) -> None:
    """INSERT a new instance (auto fields such as ``created_at`` are set on it; its id is not read back), with
    the ``pre_save`` / ``post_save`` signals ``save()`` sends."""
    pre_save.send(type(instance), instance=instance, raw=False, using=DEFAULT_DB_ALIAS, update_fields=None)
    _insert(instance, InsertQuery(type(instance)))
    instance._state.adding, instance._state.db = False, DEFAULT_DB_ALIAS
    post_save.send(
        type(instance), instance=instance, created=True, update_fields=None, raw=False, using=DEFAULT_DB_ALIAS
    )


def update(instance: models.Model, field_names: Sequence[str]) -> None:
    """``instance.save(update_fields=field_names)`` of a stored instance (``auto_now`` fields named are set), with
    the signals ``save()`` sends."""
    fields = frozenset(field_names)
    pre_save.send(type(instance), instance=instance, raw=False, using=DEFAULT_DB_ALIAS, update_fields=fields)
    meta = instance._meta
    values = [(field, None, field.pre_save(instance, False)) for field in map(meta.get_field, field_names)]
    query = UpdateQuery(type(instance))
    query.add_update_fields(values)
    query.add_filter("pk", instance.pk)
    sql, params = query.get_compiler(using=DEFAULT_DB_ALIAS).as_sql()
    _write(sql, params)
    post_save.send(
        type(instance), instance=instance, created=False, update_fields=fields, raw=False, using=DEFAULT_DB_ALIAS
    )


def upsert(instance: models.Model, unique: str, field_names: Sequence[str]) -> None:
    """INSERT ``instance``, or where a row with the same ``unique`` field is stored, UPDATE its ``field_names``
    to the instance's values (``INSERT … ON CONFLICT … DO UPDATE``). No model signals: whether it inserted or
    updated is not known here."""
    meta = instance._meta
    query = InsertQuery(
        type(instance),
        on_conflict=OnConflict.UPDATE,
        update_fields=[meta.get_field(name) for name in field_names],
        unique_fields=[meta.get_field(unique)],
    )
    _insert(instance, query)


def _insert(instance: models.Model, query: InsertQuery) -> None:
    meta = instance._meta
    fields = [field for field in meta.local_concrete_fields if field is not meta.auto_field and not field.generated]
    query.insert_values(fields, [instance])
    [(sql, params)] = query.get_compiler(using=DEFAULT_DB_ALIAS).as_sql()
    _write(sql, params)

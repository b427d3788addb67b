"""Rows read on every decision and execution (the one-row tables, open positions, PENDING orders, the order
being executed), as model instances from one raw query.

The ORM's queryset machinery costs about three times what such a query itself does (0.3 ms against 0.1 ms on
the bench machine); ``Model.objects.raw`` skips it and still applies the fields' converters, so values are the
ORM's own on every backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from django.db import connection, models

M = TypeVar("M", bound=models.Model)


def fetch_rows(
    model: type[M], where: str, params: Sequence[Any] = (), *, for_update: bool = False, order_by: str = ""
) -> list[M]:
    """``SELECT * FROM <model's table> WHERE <where> [ORDER BY <order_by>] [FOR UPDATE]`` as instances; the row
    lock only where the database has row locks (SQLite has none: a write locks the whole file)."""
    table = connection.ops.quote_name(model._meta.db_table)
    sql = f"SELECT * FROM {table} WHERE {where}"  # noqa: S608 (a table name and the caller's own clauses)
    if order_by:
        sql += f" ORDER BY {order_by}"
    if for_update and connection.features.has_select_for_update:
        sql += " FOR UPDATE"
    return list(model.objects.raw(sql, params))


def fetch_singleton(model: type[M], *, for_update: bool = False) -> M | None:
    """The row with id 1 of ``model``'s table, None if it is not there yet."""
    rows = fetch_rows(model, "id = 1", for_update=for_update)
    return rows[0] if rows else None

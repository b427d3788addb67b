"""Rows read on every decision and execution (the one-row tables, open positions, PENDING orders, the order
being executed, the last candles of a symbol) from one plain query each.

The ORM's queryset machinery costs about three times what such a query itself does (0.3 ms against 0.1 ms on
the bench machine), and ``Model.objects.raw`` still twice (it works out the column mapping and the converters
again for every query). Here the column list and the converters are worked out once per model, columns and
connection — the converters the ORM applies (``SQLCompiler.get_converters``), so the values are the ORM's own on
every backend — and instances are built with ``Model.from_db``, as the ORM builds them.

Callers write their ``where`` / ``order_by`` clauses with double-quoted column names (both PostgreSQL and SQLite
read them; ``interval`` is a reserved word in PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any, NamedTuple, TypeVar

from django.db import DEFAULT_DB_ALIAS, connections, models

M = TypeVar("M", bound=models.Model)
N = TypeVar("N", bound=models.Model)


class _Shape(NamedTuple):
    columns: str  # the SELECT list
    table: str
    attnames: list[str]
    converters: list[tuple[int, list, Any]]  # (position, converter functions, the column expression)


def fetch_rows(
    model: type[M], where: str, params: Sequence[Any] = (), *, for_update: bool = False, order_by: str = ""
) -> list[M]:
    """``SELECT <every column> FROM <model's table> WHERE <where> [ORDER BY <order_by>] [FOR UPDATE]`` as
    instances; the row lock only where the database has row locks (SQLite has none: a write locks the file)."""
    return [
        instance
        for instance, _ in fetch_rows_with(model, None, where, params, for_update=for_update, order_by=order_by)
    ]


def fetch_rows_with(
    model: type[M],
    extra: tuple[str, Sequence[Any]] | None,
    where: str,
    params: Sequence[Any] = (),
    *,
    for_update: bool = False,
    order_by: str = "",
) -> list[tuple[M, Any]]:
    """``fetch_rows`` with ``extra``, an SQL expression and its parameters (a scalar subquery, say), selected as
    one more (unconverted) column: (instance, value) pairs."""
    connection = connections[DEFAULT_DB_ALIAS]  # this thread's connection (the proxy is not hashable)
    shape = _shape(model, None, connection)
    rows = _select(connection, shape, where, params, order_by=order_by, for_update=for_update, extra=extra)
    width = len(shape.attnames)
    return [
        (model.from_db(connection.alias, shape.attnames, row[:width]), row[width] if extra is not None else None)
        for row in rows
    ]


def fetch_values(
    model: type[models.Model],
    fields: tuple[str, ...],
    where: str,
    params: Sequence[Any] = (),
    *,
    order_by: str = "",
    limit: int | None = None,
    extra: tuple[str, Sequence[Any]] | None = None,
) -> list[tuple]:
    """``values_list(*fields)`` of the rows ``where`` selects, in ``order_by``, at most ``limit``; ``extra``, an
    SQL expression and its parameters, is selected as one more (unconverted) column after ``fields``."""
    connection = connections[DEFAULT_DB_ALIAS]
    shape = _shape(model, fields, connection)
    return [
        tuple(row) for row in _select(connection, shape, where, params, order_by=order_by, limit=limit, extra=extra)
    ]


def converted(model: type[models.Model], fields: tuple[str, ...], rows: Iterable[Sequence]) -> list[list]:
    """Rows of ``fields`` a caller selected itself, with the ORM's converters applied."""
    connection = connections[DEFAULT_DB_ALIAS]
    return [_convert(list(row), _shape(model, fields, connection).converters, connection) for row in rows]


def fetch_singleton(model: type[M], *, for_update: bool = False) -> M | None:
    """The row with id 1 of ``model``'s table, None if it is not there yet."""
    rows = fetch_rows(model, '"id" = 1', for_update=for_update)
    return rows[0] if rows else None


def fetch_singletons(first: type[M], second: type[N], *, lock_first: bool = False) -> tuple[M, N] | None:
    """The rows with id 1 of two one-row tables, in one statement (None if either is not there yet).

    ``lock_first``: the first row ``FOR UPDATE`` (where the database has row locks). The second is read as the
    statement began: if it waited for that lock, as it was before the wait."""
    connection = connections[DEFAULT_DB_ALIAS]
    shapes = [_shape(model, None, connection) for model in (first, second)]
    columns = ", ".join(
        f"t{n}.{connection.ops.quote_name(field.column)}"
        for n, model in enumerate((first, second))
        for field in model._meta.concrete_fields
    )
    sql = f"SELECT {columns} FROM {shapes[0].table} t0, {shapes[1].table} t1 WHERE t0.id = 1 AND t1.id = 1"  # noqa: S608
    if lock_first and connection.features.has_select_for_update:
        sql += " FOR UPDATE OF t0"
    with connection.cursor() as cursor:
        cursor.execute(sql)
        row = cursor.fetchone()
    if row is None:
        return None
    width = len(shapes[0].attnames)
    parts = (list(row[:width]), list(row[width:]))
    return tuple(  # type: ignore[return-value]
        model.from_db(connection.alias, shape.attnames, _convert(values, shape.converters, connection))
        for model, shape, values in zip((first, second), shapes, parts, strict=True)
    )


def _select(
    connection, shape: _Shape, where, params, *, order_by="", limit=None, for_update=False, extra=None
) -> list[list]:
    columns = shape.columns
    if extra is not None:
        columns, params = f"{columns}, {extra[0]}", [*extra[1], *params]
    sql = f"SELECT {columns} FROM {shape.table} WHERE {where}"  # noqa: S608 (model names, caller's clauses)
    if order_by:
        sql += f" ORDER BY {order_by}"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    if for_update and connection.features.has_select_for_update:
        sql += " FOR UPDATE"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return [_convert(list(row), shape.converters, connection) for row in rows]


def _convert(values: list, converters: list[tuple[int, list, Any]], connection) -> list:
    for index, functions, expression in converters:
        for function in functions:
            values[index] = function(values[index], expression, connection)
    return values


@lru_cache(maxsize=256)
def _shape(model: type[models.Model], names: tuple[str, ...] | None, connection) -> _Shape:
    """The SELECT list, table, attribute names and converters for ``names`` (None: every concrete field)."""
    table = model._meta.db_table
    fields = model._meta.concrete_fields if names is None else [model._meta.get_field(name) for name in names]
    converters = []
    for index, field in enumerate(fields):
        column = field.get_col(table)
        functions = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
        if functions:
            converters.append((index, functions, column))
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    return _Shape(columns, connection.ops.quote_name(table), [field.attname for field in fields], converters)

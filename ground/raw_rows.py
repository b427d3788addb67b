"""The one-row tables (the trading state, the risk parameters, the portfolio, the account's version…) read on every
decision, fill and watched candle, several in one plain statement (``fetch_singleton_rows``). Every other read is
a queryset.

The ORM's queryset machinery costs about three times what such a query itself does (0.3 ms against 0.1 ms on
the bench machine), and ``Model.objects.raw`` still twice (it works out the column mapping and the converters
again for every query). Here the column list and the converters are worked out once per model and connection —
the converters the ORM applies (``SQLCompiler.get_converters``), so the values are the ORM's own on every
backend — and instances are built with ``Model.from_db``, as the ORM builds them. ``converted`` applies those
converters to values a caller selected itself (a scalar subquery's).
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


def converted(model: type[models.Model], fields: tuple[str, ...], rows: Iterable[Sequence]) -> list[list]:
    """Rows of ``fields`` a caller selected itself, with the ORM's converters applied."""
    connection = connections[DEFAULT_DB_ALIAS]
    return [_convert(list(row), _shape(model, fields, connection).converters, connection) for row in rows]


def fetch_singleton(model: type[M], *, for_update: bool = False) -> M | None:
    """The row with id 1 of ``model``'s table, None if it is not there yet."""
    found = fetch_singleton_rows((model,), locked=(model,) if for_update else ())
    return found[0] if found else None


def fetch_singletons(first: type[M], second: type[N], *, lock_first: bool = False) -> tuple[M, N] | None:
    """The rows with id 1 of two one-row tables, in one statement (None if either is not there yet).

    ``lock_first``: the first row ``FOR UPDATE`` (where the database has row locks). The second is read as the
    statement began: if it waited for that lock, as it was before the wait."""
    return fetch_singleton_rows((first, second), locked=(first,) if lock_first else ())  # type: ignore[return-value]


def fetch_singleton_rows(
    models_: Sequence[type[models.Model]],
    *,
    locked: Sequence[type[models.Model]] = (),
    extra: Sequence[tuple[str, Sequence[Any]]] = (),
) -> tuple | None:
    """The rows with id 1 of one-row tables and the values of ``extra`` SQL expressions with their parameters
    (scalar subqueries, unconverted), in one statement: (instance, …, value, …), None if a row is not there yet.

    ``locked``: those rows ``FOR UPDATE`` (where the database has row locks): a locked row is read as it is once
    its lock is had; the others and ``extra`` as the statement began, before any wait for a lock."""
    connection = connections[DEFAULT_DB_ALIAS]
    sql, shapes = _singletons_sql(tuple(models_), tuple(locked), tuple(sql for sql, _ in extra), connection)
    with connection.cursor() as cursor:
        cursor.execute(sql, [value for _, params in extra for value in params])
        row = cursor.fetchone()
    if row is None:
        return None
    found, start = [], 0
    for model, shape in zip(models_, shapes, strict=True):
        values = list(row[start : start + len(shape.attnames)])
        start += len(shape.attnames)
        found.append(model.from_db(connection.alias, shape.attnames, _convert(values, shape.converters, connection)))
    return (*found, *row[start:])


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


@lru_cache(maxsize=64)
def _singletons_sql(models_: tuple, locked: tuple, extra: tuple[str, ...], connection) -> tuple[str, list[_Shape]]:
    """``fetch_singleton_rows``' statement and the models' shapes, worked out once."""
    shapes = [_shape(model, None, connection) for model in models_]
    columns = ", ".join(
        [
            *(
                f"t{n}.{connection.ops.quote_name(field.column)}"
                for n, model in enumerate(models_)
                for field in model._meta.concrete_fields
            ),
            *extra,
        ]
    )
    tables = ", ".join(f"{shape.table} t{n}" for n, shape in enumerate(shapes))
    where = " AND ".join(f"t{n}.id = 1" for n in range(len(shapes)))
    sql = f"SELECT {columns} FROM {tables} WHERE {where}"  # noqa: S608
    lock = [f"t{n}" for n, model in enumerate(models_) if model in locked]
    if lock and connection.features.has_select_for_update:
        sql += f" FOR UPDATE OF {', '.join(lock)}"
    return sql, shapes

"""Querysets compiled once and run again with other values: the pipeline's reads made for every candle, decision
and fill (``prepared``).

Such a read is a queryset like any other, written with the ORM's lookups; what it saves is the compilation. The
ORM turns a queryset into SQL, its columns and their converters on every evaluation: about 1,500 Python calls for
a one-table read, more than the round trip to PostgreSQL costs this process (bench/replay_statements.py with the
hot reads as plain querysets: +47 % function calls per run, docs/performance.md). A ``Prepared`` read compiles its
queryset once per database vendor with placeholder values, then sends the SQL with the call's values and applies the
ORM's converters; it builds model instances with ``Model.from_db`` (annotations set as attributes) or values_list
tuples, as the queryset would.

Limits, checked when compiling: the values are ``str`` or ``int`` and sent as given (not through the field's
``get_prep_value``; each must appear in the SQL's parameters, compared by value and type, and no other parameter may
equal a placeholder); the queryset returns model instances without ``select_related``, or ``values_list`` rows
(flat or not). Its slice, ordering and locks are part of the SQL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import QuerySet
from django.db.models.query import FlatValuesListIterable, ModelIterable, ValuesListIterable

_PLACEHOLDER_INT = -7_319_240_000_000  # far from any id, time or count the reads are given
_PLACEHOLDER_STR = "\u2063cdb-placeholder-{}"


class _Compiled:
    __slots__ = ("sql", "params", "slots", "converters", "shape", "model", "attnames", "annotations")

    def __init__(self, queryset: QuerySet, placeholders: list[Any], connection) -> None:
        compiler = queryset.query.get_compiler(connection=connection)
        self.sql, params = compiler.as_sql()
        self.params = list(params)
        self.slots = []
        for placeholder in placeholders:
            found = [n for n, value in enumerate(params) if type(value) is type(placeholder) and value == placeholder]
            if not found:
                raise ValueError(f"prepared: the value {placeholder!r} is not among the query's parameters")
            self.slots.append(found)
        iterable = queryset._iterable_class
        if iterable is ModelIterable:
            if queryset.query.select_related:
                raise ValueError("prepared: select_related is not supported")
            start, end = compiler.klass_info["select_fields"][0], compiler.klass_info["select_fields"][-1] + 1
            self.model = compiler.klass_info["model"]
            self.attnames = [column[0].target.attname for column in compiler.select[start:end]]
            self.annotations = list(compiler.annotation_col_map.items())
            self.shape = "model"
        elif iterable in (ValuesListIterable, FlatValuesListIterable):
            self.shape = "flat" if iterable is FlatValuesListIterable else "tuple"
        else:
            raise ValueError(f"prepared: {iterable.__name__} querysets are not supported")
        self.converters = [
            (index, functions, expression)
            for index, (functions, expression) in compiler.get_converters(
                [column[0] for column in compiler.select]
            ).items()
        ]


class Prepared:
    """A read ``build(*values) -> QuerySet`` compiled once (per database vendor) and run with each call's values:
    ``Prepared(lambda symbol, at: Candle.objects.filter(symbol=symbol, known_at__lte=at)..., str, int)``; calling it
    returns the list the queryset would."""

    def __init__(self, build: Callable[..., QuerySet], *kinds: type) -> None:
        if any(kind not in (str, int) for kind in kinds):
            raise TypeError("prepared: values are str or int")
        self.build, self.kinds = build, kinds
        self._compiled: dict[str, _Compiled] = {}

    def compiled(self, connection) -> _Compiled:
        compiled = self._compiled.get(connection.vendor)
        if compiled is None:
            placeholders = [
                _PLACEHOLDER_INT - n if kind is int else _PLACEHOLDER_STR.format(n) for n, kind in enumerate(self.kinds)
            ]
            compiled = _Compiled(self.build(*placeholders), placeholders, connection)
            self._compiled[connection.vendor] = compiled
        return compiled

    def __call__(self, *values: Any) -> list:
        connection = connections[DEFAULT_DB_ALIAS]  # this thread's
        compiled = self.compiled(connection)
        params = list(compiled.params)
        for slots, value in zip(compiled.slots, values, strict=True):
            for slot in slots:
                params[slot] = value
        with connection.cursor() as cursor:
            cursor.execute(compiled.sql, params)
            rows = cursor.fetchall()
        if compiled.converters:
            rows = [_convert(list(row), compiled.converters, connection) for row in rows]
        if compiled.shape == "tuple":
            return [tuple(row) for row in rows]
        if compiled.shape == "flat":
            return [row[0] for row in rows]
        width, alias = len(compiled.attnames), connection.alias
        instances = []
        for row in rows:
            instance = compiled.model.from_db(alias, compiled.attnames, row[:width])
            for name, position in compiled.annotations:
                setattr(instance, name, row[position])
            instances.append(instance)
        return instances


def _convert(values: list, converters: list, connection) -> list:
    for index, functions, expression in converters:
        value = values[index]
        for function in functions:
            value = function(value, expression, connection)
        values[index] = value
    return values

"""Querysets compiled once and run again with other values: the pipeline's reads made for every candle, decision
and fill (``Prepared``); and the one write of the kind, a stored instance's fields saved by one UPDATE built once
(``PreparedUpdate``).

Such a read is a queryset like any other, written with the ORM's lookups; what it saves is the compilation. The
ORM turns a queryset into SQL, its columns and their converters on every evaluation: about 1,500 Python calls for
a one-table read, more than the round trip to PostgreSQL costs this process (bench/replay_statements.py with the
hot reads as plain querysets: +47 % function calls per run, docs/performance.md). A ``Prepared`` read compiles its
queryset once per database vendor with placeholder values, then sends the SQL with the call's values and applies the
ORM's converters; it builds model instances with ``Model.from_db`` (annotations set as attributes) or values_list
tuples, as the queryset would.

Limits, checked when compiling (twice, with two sets of placeholders): the values are ``str`` or ``int`` and sent
as given (not through the field's ``get_prep_value`` nor a lookup's own preparation: each must appear in the SQL's
parameters as given, compared by value and type); the SQL and every other parameter must not depend on the values
(none derived from one, no branch on one); the queryset returns model instances without ``select_related``, or
``values_list`` rows (flat or not). Its slice, ordering and locks are part of the SQL; a locking read outside a
transaction is refused on every call, as the queryset refuses it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.models import Model, QuerySet
from django.db.models.query import FlatValuesListIterable, ModelIterable, ValuesListIterable
from django.db.transaction import TransactionManagementError

# Two sets of placeholders, far from any id, time or count the reads are given; the strings hold the characters a
# lookup escapes (LIKE's % and _, its escape \), so a lookup that prepares its value does not find it as given.
_PLACEHOLDERS_INT = (-7_319_240_000_000, -8_427_350_000_000)
_PLACEHOLDERS_STR = ("\u2063cdb_%placeholder\\a-{}", "\u2063cdb_%placeholder\\b-{}")


def _slots(params: list, placeholders: list[Any]) -> list[list[int]]:
    """Where each placeholder is among the compiled query's parameters (compared by value and type)."""
    slots = []
    for placeholder in placeholders:
        found = [n for n, value in enumerate(params) if type(value) is type(placeholder) and value == placeholder]
        if not found:
            raise ValueError(
                f"prepared: the value {placeholder!r} is not among the query's parameters as given (a lookup that "
                "prepares or transforms its value is not supported)"
            )
        slots.append(found)
    return slots


class _Compiled:
    __slots__ = ("sql", "params", "slots", "converters", "shape", "model", "attnames", "annotations", "locks")

    def __init__(self, build: Callable[..., QuerySet], placeholder_sets: list[list[Any]], connection) -> None:
        """Compiles ``build`` with two sets of placeholders: the SQL, the placeholders' positions and every other
        parameter must come out the same, so no parameter is derived from a value (``at - 120_000``), no branch
        depends on one and no constant equals a placeholder."""
        compilations = []
        for placeholders in placeholder_sets:
            queryset = build(*placeholders)
            compiler = queryset.query.get_compiler(connection=connection)
            sql, params = compiler.as_sql()
            compilations.append((queryset, compiler, sql, list(params), _slots(list(params), placeholders)))
        (queryset, compiler, self.sql, self.params, self.slots), (_, _, other_sql, other_params, other_slots) = (
            compilations
        )
        taken = {slot for slots in self.slots for slot in slots}
        if (
            other_sql != self.sql
            or other_slots != self.slots
            or len(other_params) != len(self.params)
            or any(a != b for n, (a, b) in enumerate(zip(self.params, other_params, strict=True)) if n not in taken)
        ):
            raise ValueError(
                "prepared: the query depends on its values beyond taking them as parameters (a value derived from "
                "one, a branch on one, or a constant equal to a placeholder): write it as a plain queryset"
            )
        self.locks = bool(queryset.query.select_for_update)
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
            placeholder_sets = [
                [ints - n if kind is int else strs.format(n) for n, kind in enumerate(self.kinds)]
                for ints, strs in zip(_PLACEHOLDERS_INT, _PLACEHOLDERS_STR, strict=True)
            ]
            compiled = _Compiled(self.build, placeholder_sets, connection)
            self._compiled[connection.vendor] = compiled
        return compiled

    def __call__(self, *values: Any) -> list:
        connection = connections[DEFAULT_DB_ALIAS]  # this thread's
        compiled = self.compiled(connection)
        if compiled.locks and connection.get_autocommit():  # as the queryset's compiler refuses it, on every call
            raise TransactionManagementError("select_for_update cannot be used outside of a transaction.")
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


class PreparedUpdate:
    """``instance.save(update_fields=fields)`` of an instance that is stored (``fields``: None, every column but the
    primary key, as ``save()`` writes them) in one ``UPDATE … WHERE pk = %s`` built once per database vendor: each
    field's value as ``save()`` gives it (``pre_save``: ``auto_now`` sets the time) and prepares it
    (``get_db_prep_save``). ``save()`` compiles the statement anew on every call: ~1,100 Python calls for an order,
    ~500 for three fields, against ~100 here (docs/performance.md). Sends no ``pre_save``/``post_save`` signal: for
    models without receivers (``tests/integration/test_prepared.py`` checks the ones used). A row that is not there
    raises ``DatabaseError`` (``save()`` would insert it)."""

    def __init__(self, model: type[Model], fields: Sequence[str] | None = None) -> None:
        opts = model._meta
        if fields is None:
            self.fields = [field for field in opts.concrete_fields if not field.primary_key]
        else:
            self.fields = [opts.get_field(name) for name in fields]
        if any(field.primary_key or not field.concrete or hasattr(field, "get_placeholder") for field in self.fields):
            raise ValueError("prepared: an update writes concrete fields other than the key, with plain placeholders")
        self.model = model
        self._sql: dict[str, str] = {}

    def sql(self, connection) -> str:
        sql = self._sql.get(connection.vendor)
        if sql is None:
            quote, opts = connection.ops.quote_name, self.model._meta
            columns = ", ".join(f"{quote(field.column)} = %s" for field in self.fields)
            sql = f"UPDATE {quote(opts.db_table)} SET {columns} WHERE {quote(opts.pk.column)} = %s"  # noqa: S608
            self._sql[connection.vendor] = sql
        return sql

    def __call__(self, instance: Model) -> None:
        connection = connections[DEFAULT_DB_ALIAS]
        params = [field.get_db_prep_save(field.pre_save(instance, False), connection) for field in self.fields]
        params.append(instance.pk)
        with connection.cursor() as cursor:
            cursor.execute(self.sql(connection), params)
            if cursor.rowcount != 1:
                raise DatabaseError(f"{self.model.__name__} {instance.pk}: no stored row to update")

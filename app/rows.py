"""Rows fetched with hand-written SQL (the runner's hot path), read as the ORM would read them.

Claiming and recording outcomes use ``UPDATE ... RETURNING`` and ``INSERT ... RETURNING`` directly: the
values come back as the driver gives them (on SQLite datetimes and JSON as text, booleans as integers),
and ``Rows`` applies the backend's own converters, then builds instances without the cost of
``Model.__init__``.
"""

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db.models import CharField, DateTimeField, FloatField, IntegerField, TextField
from django.db.models.base import ModelState


class Rows:
    """Reads a model's rows, fetched by hand, into instances, with the backend's own value converters."""

    def __init__(self, model: Any, connection: Any) -> None:
        self.model = model
        self.connection = connection
        self.fields = list(model._meta.concrete_fields)
        self.table = connection.ops.quote_name(model._meta.db_table)
        self.attnames = [field.attname for field in self.fields]
        self._by_name = {field.attname: field for field in self.fields}
        self._defaults = {field.attname: field.get_default() for field in self.fields}
        # Only the columns whose values need converting (datetimes, JSON, booleans on SQLite, floats).
        self._converting = [
            (index, *converters)
            for index, field in enumerate(self.fields)
            if (converters := _converters(field, connection))[1]
        ]

    def select_list(self, table: str | None = None) -> str:
        """Every column, in field order (qualified by ``table`` where a join makes names ambiguous)."""
        quote = self.connection.ops.quote_name
        prefix = f"{table}." if table else ""
        return ", ".join(prefix + quote(field.column) for field in self.fields)

    def converted(self, row: Sequence[Any]) -> list[Any]:
        """A row of every column (in field order) as the ORM would give its values."""
        values = list(row)
        for index, column, functions in self._converting:
            value = values[index]
            if value is not None:  # NULL is None for every field
                for function in functions:
                    value = function(value, column, self.connection)
                values[index] = value
        return values

    def instance(self, row: Sequence[Any]) -> Any:
        return self.saved(dict(zip(self.attnames, self.converted(row), strict=True)))

    def saved(self, values: dict[str, Any], related: dict[str, Any] | None = None) -> Any:
        """An instance of a saved row: ``values`` by attname (the rest their defaults), ``related``
        objects by field name. Built without ``Model.__init__``, which costs more than the rest of a
        claim per row; what it would set, this sets."""
        instance = self.model.__new__(self.model)
        instance.__dict__.update(self._defaults)
        instance.__dict__.update(values)
        instance._state = ModelState()
        instance._state.adding, instance._state.db = False, self.connection.alias
        if related:
            instance._state.fields_cache.update(related)
        return instance

    def convert(self, attname: str, value: Any) -> Any:
        field = self._by_name[attname]
        column, functions = _converters(field, self.connection)
        for function in functions:
            value = function(value, column, self.connection)
        return value

    def prep(self, attname: str, value: Any) -> Any:
        return self._by_name[attname].get_db_prep_save(value, self.connection)

    def insert_columns(self, given: dict[str, str]) -> tuple[str, list[Any]]:
        """Columns of an INSERT: ``given`` first, then every other NOT NULL one with its default."""
        quote = self.connection.ops.quote_name
        names = list(given) + [field.attname for field in self._defaulted(given)]
        defaults = [self.prep(field.attname, field.get_default()) for field in self._defaulted(given)]
        return ", ".join(quote(self._by_name[name].column) for name in names), defaults

    def default_types(self, given: dict[str, str]) -> list[str]:
        return [field.db_type(self.connection) for field in self._defaulted(given)]

    def _defaulted(self, given: dict[str, str]) -> list[Any]:
        return [f for f in self.fields if not f.primary_key and not f.null and f.attname not in given]


def preparer(field: Any, connection: Any) -> Callable[[Any], Any]:
    """A function that gives a value as the database takes it for ``field``, as ``get_db_prep_save`` would.

    The shortcuts skip the field's layers where they would return the value unchanged (a str for a text
    column, a float for a float one...) or only adapt an aware datetime; anything else goes through them.
    """
    if isinstance(field, DateTimeField):
        adapt = _sqlite_utc_text if _naive_utc_text(connection) else connection.ops.adapt_datetimefield_value
        return lambda value: None if value is None else adapt(value)
    for kind, python_type in ((CharField, str), (TextField, str), (FloatField, float), (IntegerField, int)):
        if isinstance(field, kind):
            return lambda value: (
                value
                if value is None or isinstance(value, python_type)
                else field.get_db_prep_save(value, connection)
            )
    return lambda value: None if value is None else field.get_db_prep_save(value, connection)


def _converters(field: Any, connection: Any) -> tuple[Any, list[Any]]:
    """The column expression and the converters the ORM itself would apply to this field's values."""
    column = field.cached_col
    converters = connection.ops.get_db_converters(column) + field.get_db_converters(connection)
    if _naive_utc_text(connection):
        sqlite_datetime = connection.ops.convert_datetimefield_value
        converters = [_sqlite_utc_datetime if c == sqlite_datetime else c for c in converters]
    if isinstance(field, FloatField):
        converters.append(_real_float)
    return column, converters


def _naive_utc_text(connection: Any) -> bool:
    """Whether datetimes are stored as naive UTC text (SQLite, ``USE_TZ``, the database in UTC).

    Then the two functions below read and write them as Django's SQLite backend does, without its
    per-value settings lookups: at a few datetimes per run they were the drain's costliest conversions.
    """
    return connection.vendor == "sqlite" and settings.USE_TZ and connection.timezone_name == "UTC"


def _sqlite_utc_text(value: datetime) -> str:
    """``adapt_datetimefield_value`` of Django's SQLite backend, for a database in UTC."""
    if value.utcoffset() is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return str(value)


def _sqlite_utc_datetime(value: Any, expression: Any, connection: Any) -> datetime | None:
    """``convert_datetimefield_value`` of Django's SQLite backend, for a database in UTC."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        value = datetime.fromisoformat(value)
    return value if value.utcoffset() is not None else value.replace(tzinfo=connection.timezone)


def _real_float(value: Any, expression: Any, connection: Any) -> Any:
    """SQLite's RETURNING gives a REAL column's whole number as an int (before column affinity)."""
    return float(value) if isinstance(value, int) else value


def row_of(instance: Any) -> dict[str, Any]:
    """A model instance's field values, by attname: plain data an event can carry across layers."""
    return {field.attname: instance.__dict__[field.attname] for field in instance._meta.concrete_fields}

"""What differs between SQLite and PostgreSQL in the event store's statements, in one place."""

from __future__ import annotations

from typing import Any

from sqlalchemy import any_, bindparam, cast
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement


class Dialect:
    """Statement pieces for *engine*'s database."""

    def __init__(self, engine: Engine) -> None:
        self.pg = engine.dialect.name == "postgresql"

    def among(self, column: Any, values: list) -> ColumnElement[bool]:
        """``column = ANY(:array)`` on PostgreSQL: one parameter, so the statement text is the same
        for any number of values (psycopg caches it, the server can reuse its plan); SQLite has no
        arrays, so an ``IN`` list there (its driver does no query rewriting to be slow at)."""
        if self.pg:
            return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
        return column.in_(values)

    def value(self, value: Any, type_: Any) -> ColumnElement:
        """A typed parameter in a select list (PostgreSQL needs the type when the value is None)."""
        param = bindparam(None, value, type_=type_)
        return cast(param, type_) if self.pg else param

    def upsert(self, table: Any) -> Any:
        """An ``INSERT`` that can take ``on_conflict_do_nothing``."""
        return pg_insert(table) if self.pg else sqlite_insert(table)

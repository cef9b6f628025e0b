"""The project's SQL, kept in `.sql` files and read from the package that ships them.

The product's are under `sql/`: `postgres/` (source queries), `clickhouse/ddl/` (tables),
`clickhouse/build/` (the INSERT ... SELECT steps of a run)."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

import sqlparse


@cache
def sql(name: str, package: str = __package__) -> str:
    """The text of `sql/<name>.sql` in `package` (a path like `postgres/telemetry_partials`)."""
    return files(package).joinpath("sql", f"{name}.sql").read_text(encoding="utf-8")


def statements(name: str, package: str = __package__) -> tuple[str, ...]:
    """The statements of a multi-statement file, for clients that take one at a time."""
    return split(sql(name, package))


@cache
def split(text: str) -> tuple[str, ...]:
    """The statements of a piece of SQL, each without its `;` (comments alone are none).
    Cached: every run applies the store's DDL, and parsing it costs more than running it."""
    return tuple(
        s.strip().rstrip(";")
        for s in sqlparse.split(text)
        if sqlparse.format(s, strip_comments=True).strip()
    )

"""The project's SQL, kept in `.sql` files beside this module and read from the package."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

import sqlparse


@cache
def sql(name: str) -> str:
    """The text of `sql/<name>.sql`."""
    return files(__package__).joinpath("sql", f"{name}.sql").read_text(encoding="utf-8")


def statements(name: str) -> list[str]:
    """The statements of a multi-statement file, for clients that take one at a time."""
    return [s.strip().rstrip(";") for s in sqlparse.split(sql(name)) if s.strip()]

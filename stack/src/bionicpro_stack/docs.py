"""`make docs`: the tables of the docs that code describes, written from it, so that a page and
the code never disagree (tests/test_docs.py checks it): docs/mart.md's columns, from the mart's
DDL (its COMMENTs); docs/operations.md's settings, from `bionicpro_etl.config.Settings`."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bionicpro_etl import schema
from bionicpro_etl.config import Settings, variable


def columns() -> list[str]:
    """The mart's columns: name, type, meaning."""
    rows = [f"| `{c.name}` | {c.type} | {c.comment} |" for c in schema.mart_columns()]
    return ["| column | type | meaning |", "|---|---|---|", *rows]


def settings() -> list[str]:
    """The settings: variable, default, meaning."""
    rows = [
        f"| `{variable(s.name)}` | {_default(s.default)} | {s.metadata['meaning']} |"
        for s in fields(Settings)
    ]
    return ["| variable | default | meaning |", "|---|---|---|", *rows]


def _default(value: Any) -> str:
    if isinstance(value, ZoneInfo):
        value = value.key
    return f"`{value}`" if value not in ("", ()) else "empty"


@dataclass(frozen=True)
class Block:
    """A table of a page, between two markers, written by `render`."""

    page: Path
    name: str
    source: str
    render: Callable[[], list[str]]

    @property
    def begin(self) -> str:
        return f"<!-- {self.name}: written by `make docs` from {self.source}; do not edit -->"

    @property
    def end(self) -> str:
        return f"<!-- /{self.name} -->"

    def table(self) -> str:
        return "\n".join([self.begin, *self.render(), self.end])

    def written(self, page: str) -> str:
        """`page` with this block replaced by what the code says now."""
        block = re.compile(rf"{re.escape(self.begin)}\n.*?{re.escape(self.end)}", re.S)
        if not block.search(page):
            raise ValueError(f"{self.page} has no block {self.begin} ... {self.end}")
        return block.sub(lambda _: self.table(), page, count=1)


BLOCKS = (
    Block(Path("docs/mart.md"), "columns", "the COMMENTs of the mart's DDL", columns),
    Block(Path("docs/operations.md"), "settings", "bionicpro_etl/config.py", settings),
)


def main() -> None:
    for block in BLOCKS:
        block.page.write_text(
            block.written(block.page.read_text(encoding="utf-8")), encoding="utf-8"
        )
        print(f"written {block.page} ({block.name})")


if __name__ == "__main__":
    main()

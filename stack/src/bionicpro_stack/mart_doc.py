"""`make docs`: docs/mart.md's table of the mart's columns, written from the mart's DDL (its
COMMENTs), so that the page and the store never disagree (tests/test_docs.py checks it)."""

from __future__ import annotations

import re
from pathlib import Path

from bionicpro_etl import schema

PAGE = Path("docs/mart.md")
BEGIN = "<!-- columns: written by `make docs` from the COMMENTs of the mart's DDL; do not edit -->"
END = "<!-- /columns -->"
_BLOCK = re.compile(rf"{re.escape(BEGIN)}\n.*?{re.escape(END)}", re.S)


def table() -> str:
    """The columns as a Markdown table: name, type, meaning."""
    rows = [f"| `{c.name}` | {c.type} | {c.comment} |" for c in schema.mart_columns()]
    return "\n".join([BEGIN, "| column | type | meaning |", "|---|---|---|", *rows, END])


def written(page: str) -> str:
    """`page` with its table of columns replaced by the DDL's."""
    if not _BLOCK.search(page):
        raise ValueError(f"{PAGE} has no block {BEGIN} ... {END}")
    return _BLOCK.sub(lambda _: table(), page, count=1)


def main() -> None:
    PAGE.write_text(written(PAGE.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"written {PAGE}")


if __name__ == "__main__":
    main()

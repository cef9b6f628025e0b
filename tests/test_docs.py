"""One description of the mart's columns: the DDL's COMMENTs, which the store keeps and from
which docs/mart.md's table is written (`make docs`)."""

from __future__ import annotations

from pathlib import Path

from bionicpro_stack import mart_doc
from clickhouse_connect.driver.client import Client

from bionicpro_etl import schema

ROOT = Path(__file__).parent.parent


def test_docs_mart_md_shows_the_columns_of_the_ddl() -> None:
    page = (ROOT / mart_doc.PAGE).read_text(encoding="utf-8")
    assert mart_doc.table() in page, "docs/mart.md drifted from the mart's DDL: run `make docs`"


def test_the_store_holds_the_columns_as_the_ddl_describes_them(ch: Client) -> None:
    schema.create(ch)
    stored = ch.query(
        "SELECT name, type, comment FROM system.columns"
        " WHERE database = 'bionicpro_reports' AND table = 'reports_data_mart' ORDER BY position"
    ).result_rows
    assert [(c.name, c.type, c.comment) for c in schema.mart_columns()] == stored
    assert all(comment for _, _, comment in stored)

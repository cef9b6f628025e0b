"""The docs' tables that code describes are written from it (`make docs`): the mart's columns
from the DDL's COMMENTs, which the store keeps too; the settings from config.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from bionicpro_stack import docs
from clickhouse_connect.driver.client import Client

from bionicpro_etl import schema

ROOT = Path(__file__).parent.parent


@pytest.mark.parametrize("block", docs.BLOCKS, ids=lambda b: b.name)
def test_the_docs_tables_are_what_the_code_says(block: docs.Block) -> None:
    page = (ROOT / block.page).read_text(encoding="utf-8")
    assert block.table() in page, f"{block.page} drifted from {block.source}: run `make docs`"
    assert len(block.render()) > 10


def test_the_store_holds_the_columns_as_the_ddl_describes_them(ch: Client) -> None:
    schema.create(ch)
    stored = ch.query(
        "SELECT name, type, comment FROM system.columns"
        " WHERE database = 'bionicpro_reports' AND table = 'reports_data_mart' ORDER BY position"
    ).result_rows
    assert [(c.name, c.type, c.comment) for c in schema.mart_columns()] == stored
    assert all(comment for _, _, comment in stored)

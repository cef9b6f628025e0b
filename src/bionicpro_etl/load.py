"""Load: create the mart, and publish rebuilt days into it atomically.

The mart is partitioned by month. To publish days, the next version of each affected month is
built beside it (its other days unchanged, the rebuilt days new) and swapped in with one
`REPLACE PARTITION`, which ClickHouse applies atomically: a plain SELECT sees the old month or
the new one, never a mix, and a failure before the swap leaves the mart as it was.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from itertools import groupby

from clickhouse_connect.driver.binding import quote_identifier
from clickhouse_connect.driver.client import Client

from bionicpro_etl import staging
from bionicpro_etl.queries import sql, statements
from bionicpro_etl.staging import Staging


def create_mart(client: Client) -> None:
    """The same DDL as scripts/create_data_mart.sql, plus the pipeline's own tables."""
    for name in ("create_data_mart", "create_crm_rejects", "create_staging_database"):
        for statement in statements(name):
            client.command(statement)


def publish_days(client: Client, stage: Staging, days: Iterable[date]) -> int:
    """Replace `days` in the mart with the run's report rows; returns the rows published."""
    for month, month_days in groupby(sorted(set(days)), key=lambda d: d.year * 100 + d.month):
        table = stage.mart_month(month)
        stage.recreate_like_mart(client, table)
        client.command(
            sql("mart_month_next"),
            parameters={
                "month_table": table,
                "report_rows": stage.report_rows,
                "month": month,
                "days": list(month_days),
            },
        )
        if staging.count(client, table):
            # ALTER takes no identifier parameter; the name is ours (a hex run key), quoted.
            client.command(
                "ALTER TABLE bionicpro_reports.reports_data_mart REPLACE PARTITION {month:UInt32}"
                f" FROM bionicpro_staging.{quote_identifier(table)}",
                parameters={"month": month},
            )
        else:
            # REPLACE refuses an empty source; a month left with no rows is dropped instead.
            client.command(
                "ALTER TABLE bionicpro_reports.reports_data_mart DROP PARTITION {month:UInt32}",
                parameters={"month": month},
            )
        staging.drop(client, table)
    return staging.count(client, stage.report_rows)

"""Transform: join a run's telemetry aggregates with the CRM and derive the metrics.

It runs inside ClickHouse over the run's staging tables (`sql/report_rows.sql`): the join and the
arithmetic are set operations the engine does in one pass, and no data leaves the store.
"""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

from bionicpro_etl import staging
from bionicpro_etl.queries import sql
from bionicpro_etl.staging import Staging


def build_report_rows(client: Client, stage: Staging, run_id: str) -> int:
    """Fill the run's report rows table; returns its row count."""
    stage.recreate_like_mart(client, stage.report_rows)
    client.command(
        sql("report_rows"),
        parameters={
            "report_rows": stage.report_rows,
            "telemetry": stage.telemetry,
            "crm_items": stage.crm_items,
            "run_id": run_id,
        },
    )
    return staging.count(client, stage.report_rows)

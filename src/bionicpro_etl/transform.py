"""Transform: the run's report rows, built inside ClickHouse over its staging tables.

The join and the arithmetic are set operations the engine does in one pass; no data leaves the
store. Steps, each one file in sql/clickhouse/build/: the CRM dimension's next version, the users whose CRM data
changed, the CRM fields of every row the run writes, then the rows: fresh ones for the rebuilt
days, and the look-back's rows of changed users with their new CRM fields.
"""

from __future__ import annotations

from typing import Any

from clickhouse_connect.driver.client import Client

from bionicpro_etl import staging
from bionicpro_etl.queries import sql
from bionicpro_etl.run import Plan
from bionicpro_etl.staging import Staging

MART = "bionicpro_reports.reports_data_mart"
CRM_ORDERS = "bionicpro_reports.crm_orders"


def build_report_rows(
    client: Client, stage: Staging, run_id: str, plan: Plan, *, full_crm: bool
) -> dict[str, int]:
    params: dict[str, Any] = {
        **stage.tables(),
        "run_id": run_id,
        "full": full_crm,
        "days": list(plan.days),
        "lookback_start": plan.lookback_start,
    }
    stage.recreate_like(client, stage.crm_orders_next, CRM_ORDERS)
    stage.recreate(client, stage.changed_users, "staging_changed_users")
    stage.recreate(client, stage.crm_fields, "staging_crm_fields")
    stage.recreate_like(client, stage.report_rows, MART)
    for step in ("crm_orders_next", "crm_changed_users", "crm_fields", "report_rows"):
        client.command(sql(f"clickhouse/build/{step}"), parameters=params)
    fresh = staging.count(client, stage.report_rows)
    client.command(sql("clickhouse/build/report_rows_crm_refresh"), parameters=params)
    return {
        "report_rows": fresh,
        "refreshed_rows": staging.count(client, stage.report_rows) - fresh,
        "crm_changed_users": staging.count(client, stage.changed_users),
    }

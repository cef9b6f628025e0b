"""The run log, `bionicpro_reports.etl_runs`: what each run rebuilt, read and wrote, its
watermarks and durations. The telemetry watermark and the CRM refresh cadence are read from it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the DAG file imports this module: keep it light
    from clickhouse_connect.driver.client import Client

TABLE = "bionicpro_reports.etl_runs"


def record(client: Client, row: Mapping[str, Any]) -> None:
    columns = list(row)
    client.insert(TABLE, [[row[c] for c in columns]], column_names=columns)


def last_full_crm_refresh(client: Client) -> date | None:
    """The report day of the latest published run that read the whole CRM."""
    (day,) = client.query(
        f"SELECT maxOrNull(report_day) FROM {TABLE} WHERE status = 'success' AND crm_full_refresh"
    ).result_rows[0]
    return day


def last_runs(client: Client, limit: int = 10) -> tuple[list[str], list[tuple]]:
    """The latest runs, for people: the demo and `python -m bionicpro_etl.stack runs` print them."""
    result = client.query(
        "SELECT report_day, status, arrayStringConcat(arrayMap(d -> toString(d), days_rebuilt), ' ')"
        " AS days_rebuilt, telemetry_rows AS aggregates, crm_items, crm_rejects,"
        " published_rows AS published, events_beyond_lookback AS too_late,"
        " round(arraySum(mapValues(stage_seconds)), 1) AS seconds, left(error, 60) AS error"
        f" FROM {TABLE} ORDER BY finished_at DESC LIMIT {{limit:UInt32}}",
        parameters={"limit": limit},
    )
    return list(result.column_names), list(result.result_rows)


def on_failure(context: Mapping[str, Any]) -> None:
    """Airflow's failure callback: a task failed for good, so the run log says so (the row
    carries no watermark, so nothing advances)."""
    from bionicpro_etl import clients, pipeline

    with clients.clickhouse() as client:
        pipeline.record_failure(
            client, pipeline.Run.of(context), context["ti"].task_id, context.get("exception")
        )

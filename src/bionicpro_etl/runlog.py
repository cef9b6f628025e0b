"""The run log, `bionicpro_reports.etl_runs`: what each run rebuilt, read and wrote, its
watermarks and durations. The telemetry watermark and the CRM refresh cadence are read from it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

    from bionicpro_etl.run import Run

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


def last_runs(client: Client, limit: int = 10) -> list[dict[str, Any]]:
    """The latest runs, newest first, for people (`python -m bionicpro_stack runs`, the demo):
    what each built (`days_rebuilt`; `first_run` when no run had published before it), the
    rows it published, its seconds and error."""
    return list(
        client.query(
            "SELECT run_id, report_day, status, days_rebuilt, watermark_before IS NULL AS first_run,"
            " published_rows, arraySum(mapValues(stage_seconds)) AS seconds, error"
            f" FROM {TABLE} ORDER BY finished_at DESC LIMIT {{limit:UInt32}}",
            parameters={"limit": limit},
        ).named_results()
    )


def record_failure(
    client: Client, run: Run, task_id: str, error: BaseException | str | None
) -> None:
    """A failed run in the run log, for people; it carries no watermark, so nothing advances.
    The error text is scrubbed of credentials as the notifications are."""
    from bionicpro_etl.notify import scrub

    record(
        client,
        {
            "run_id": run.run_id,
            "logical_date": run.logical_date,
            "report_day": run.day,
            "status": "failed",
            "error": f"{task_id}: {scrub(str(error))}"[:2000],
        },
    )

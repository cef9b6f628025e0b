"""The five stages of `reports_etl_dag`, each callable with plain clients and no Airflow.

The DAG's tasks are thin wrappers around these; tests and the benchmark call them directly.
Stages hand data to each other through the run's staging tables; they return only counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import requests
from clickhouse_connect.driver.client import Client

from bionicpro_etl import extract, load, staging, transform
from bionicpro_etl.config import Settings, settings
from bionicpro_etl.extract import CrmError
from bionicpro_etl.report_day import report_day_of
from bionicpro_etl.staging import Staging


@dataclass(frozen=True)
class Run:
    """What one pipeline run builds: its id (names its staging tables) and its report days."""

    run_id: str
    days: tuple[date, ...]

    @classmethod
    def of(cls, context: Mapping[str, Any], config: Settings | None = None) -> Run:
        """The run an Airflow task context describes. A manual trigger without a logical date
        builds the day before the one it was triggered on, as if it were that night's run."""
        tz = (config or settings()).report_tz
        logical_date: datetime | None = context.get("logical_date")
        if logical_date is not None:
            day = report_day_of(logical_date, tz)
        else:
            day = report_day_of(context["dag_run"].run_after, tz) - timedelta(days=1)
        return cls(run_id=context["run_id"], days=(day,))

    @property
    def stage(self) -> Staging:
        return Staging.for_run(self.run_id)


def create_data_mart_table(client: Client) -> None:
    load.create_mart(client)


def extract_telemetry(
    dsn: str, client: Client, run: Run, config: Settings | None = None
) -> dict[str, int]:
    config = config or settings()
    stage = run.stage
    stage.recreate(client, stage.telemetry, "staging_telemetry")
    batches = extract.telemetry_batches(dsn, min(run.days), max(run.days), config.report_tz)
    return {"telemetry_rows": staging.append(client, stage.telemetry, batches)}


def extract_crm_data(
    session: requests.Session,
    base_url: str,
    client: Client,
    run: Run,
    config: Settings | None = None,
) -> dict[str, int]:
    """Stage the CRM's valid items; keep the rejects with their reason; fail on too many, or
    on an empty listing (a CRM with no customers is an outage, not a fact to report)."""
    config = config or settings()
    stage = run.stage
    stage.recreate(client, stage.crm_items, "staging_crm_items")
    client.command(
        "DELETE FROM bionicpro_reports.crm_rejects WHERE run_id = {run_id:String}",
        parameters={"run_id": run.run_id},
    )
    items = rejected = 0
    for page in extract.crm_pages(session, base_url, page_size=config.crm_page_size):
        items += staging.append(client, stage.crm_items, [page.items])
        if page.rejects:
            client.insert(
                "bionicpro_reports.crm_rejects",
                [(run.run_id, reason, item) for reason, item in page.rejects],
                column_names=["run_id", "reason", "item"],
            )
            rejected += len(page.rejects)
    listed = items + rejected
    if listed == 0:
        raise CrmError(f"CRM {base_url} listed no customers; refusing to report without them")
    if rejected / listed > config.crm_max_reject_share:
        raise CrmError(
            f"CRM rejects {rejected} of {listed} items ({rejected / listed:.2%}) exceed the"
            f" allowed {config.crm_max_reject_share:.2%}; see bionicpro_reports.crm_rejects"
            f" where run_id = {run.run_id!r}"
        )
    return {"crm_items": items, "crm_rejects": rejected}


def transform_data(client: Client, run: Run) -> dict[str, int]:
    return {"report_rows": transform.build_report_rows(client, run.stage, run.run_id)}


def load_to_clickhouse(client: Client, run: Run) -> dict[str, int]:
    published = load.publish_days(client, run.stage, run.days)
    run.stage.drop_all(client)
    return {"published_rows": published, "days": len(run.days)}


def run_all(
    dsn: str,
    session: requests.Session,
    base_url: str,
    client: Client,
    run: Run,
    config: Settings | None = None,
) -> dict[str, int]:
    """Every stage in the DAG's order, in this process, without Airflow (tests, benchmarks)."""
    create_data_mart_table(client)
    return {
        **extract_telemetry(dsn, client, run, config),
        **extract_crm_data(session, base_url, client, run, config),
        **transform_data(client, run),
        **load_to_clickhouse(client, run),
    }

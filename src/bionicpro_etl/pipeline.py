"""The stages of `reports_etl_dag`, each callable with plain clients and no Airflow.

The DAG's tasks are thin wrappers around these; tests and the benchmark call them directly.
Stages hand data to each other through the run's staging tables; between them travels only
small metadata (the plan's days, counts, watermarks), as XCom would carry it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import pyarrow as pa
import requests
from clickhouse_connect.driver.client import Client

from bionicpro_etl import extract, incremental, load, quality, runlog, staging, transform
from bionicpro_etl.config import Settings, settings
from bionicpro_etl.extract import CrmError
from bionicpro_etl.incremental import Plan, as_utc, from_iso, iso
from bionicpro_etl.report_day import report_day_of
from bionicpro_etl.staging import Staging

Meta = dict[str, Any]


@dataclass(frozen=True)
class Run:
    """One pipeline run: its id (names its staging tables), its own report day, and what its
    trigger asked for: a full CRM refresh, a rebuild of its day even if nothing arrived."""

    run_id: str
    day: date
    logical_date: datetime | None = None
    crm_full_refresh: bool = False
    force_rebuild: bool = False

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
        params = context.get("params") or {}
        return cls(
            run_id=context["run_id"],
            day=day,
            logical_date=logical_date,
            crm_full_refresh=bool(params.get("crm_full_refresh", False)),
            force_rebuild=bool(params.get("force_rebuild", False)),
        )

    @property
    def stage(self) -> Staging:
        return Staging.for_run(self.run_id)


def create_data_mart_table(client: Client) -> None:
    load.create_mart(client)


def plan_report_days(dsn: str, client: Client, run: Run, config: Settings | None = None) -> Meta:
    """Decide the run's days once (own day + late arrivals), for every shard of the extract."""
    config = config or settings()
    started = time.monotonic()
    plan = incremental.plan_days(dsn, client, run.day, config, force=run.force_rebuild)
    run.stage.recreate_telemetry_union(client)
    return {**plan.to_xcom(), "seconds": time.monotonic() - started}


def extract_telemetry(
    dsn: str,
    client: Client,
    run: Run,
    plan: Meta,
    *,
    shard: int = 0,
    shards: int = 1,
    config: Settings | None = None,
) -> Meta:
    """Stage the telemetry aggregates of the planned days, for one shard of the users."""
    config = config or settings()
    started = time.monotonic()
    stage = run.stage
    table = stage.telemetry_shard(shard)
    stage.recreate(client, table, "staging_telemetry")
    days = Plan.from_xcom(plan).days
    batches = extract.telemetry_batches(dsn, days, config.report_tz, shard=shard, shards=shards)
    return {
        "telemetry_rows": staging.append(client, table, batches),
        "seconds": time.monotonic() - started,
    }


def extract_crm_data(
    session: requests.Session,
    base_url: str,
    client: Client,
    run: Run,
    config: Settings | None = None,
) -> Meta:
    """Stage the CRM items changed since the dimension's latest `updated_at` (all of them on a
    full refresh); keep the rejects with their reason; fail on too many rejects, or on an empty
    full listing (a CRM with no customers is an outage, not a fact to report)."""
    config = config or settings()
    started = time.monotonic()
    stage = run.stage
    since = None if _full_refresh_due(client, run, config) else _crm_watermark(client)
    stage.recreate(client, stage.crm_items, "staging_crm_items")
    client.command(
        "DELETE FROM bionicpro_reports.crm_rejects WHERE run_id = {run_id:String}",
        parameters={"run_id": run.run_id},
    )
    rejected = 0

    def valid_items() -> Iterator[pa.RecordBatch]:
        """Each page's valid items, its rejects stored on the way."""
        nonlocal rejected
        pages = extract.crm_pages(
            session, base_url, page_size=config.crm_page_size, updated_since=since
        )
        for page in pages:
            if page.rejects:
                client.insert(
                    "bionicpro_reports.crm_rejects",
                    [(run.run_id, reason, item) for reason, item in page.rejects],
                    column_names=["run_id", "reason", "item"],
                )
                rejected += len(page.rejects)
            yield page.items

    items = staging.append(client, stage.crm_items, valid_items())
    listed = items + rejected
    if listed == 0 and since is None:
        raise CrmError(f"CRM {base_url} listed no customers; refusing to report without them")
    # The share of the CRM that is invalid: an incremental listing is measured against the
    # orders already known, so a few bad items among today's changes do not stop the reports.
    known = max(listed, _crm_orders_known(client) if rejected and since is not None else 0)
    if rejected and rejected / known > config.crm_max_reject_share:
        raise CrmError(
            f"CRM rejects {rejected} of {known} items ({rejected / known:.2%}) exceed the"
            f" allowed {config.crm_max_reject_share:.2%}; see bionicpro_reports.crm_rejects"
            f" where run_id = {run.run_id!r}"
        )
    return {
        "crm_items": items,
        "crm_rejects": rejected,
        "crm_reject_share": rejected / known if rejected else 0.0,
        "crm_full_refresh": since is None,
        "crm_watermark_before": iso(since),
        "seconds": time.monotonic() - started,
    }


def _full_refresh_due(client: Client, run: Run, config: Settings) -> bool:
    last = runlog.last_full_crm_refresh(client)
    return (
        run.crm_full_refresh
        or last is None
        or (run.day - last).days >= config.crm_full_refresh_days
    )


def _crm_watermark(client: Client) -> datetime | None:
    """The latest `updated_at` the CRM dimension holds (None when it is empty)."""
    return as_utc(
        client.query("SELECT maxOrNull(updated_at) FROM bionicpro_reports.crm_orders").result_rows[
            0
        ][0]
    )


def _crm_orders_known(client: Client) -> int:
    return client.query("SELECT count() FROM bionicpro_reports.crm_orders").result_rows[0][0]


def transform_data(client: Client, run: Run, plan: Meta, crm: Meta) -> Meta:
    started = time.monotonic()
    counts = transform.build_report_rows(
        client, run.stage, run.run_id, Plan.from_xcom(plan), full_crm=crm["crm_full_refresh"]
    )
    return {**counts, "seconds": time.monotonic() - started}


def check_data_quality(client: Client, run: Run, plan: Meta, crm: Meta) -> Meta:
    """Judge the run's rows before they are published; store every result; stop on errors.
    Returns the warn-level results, for the notifiers."""
    results = quality.run_checks(
        client, run.stage, Plan.from_xcom(plan), crm_reject_share=crm["crm_reject_share"]
    )
    quality.record(client, run.run_id, run.day, results)
    return {"checks": len(results), "warnings": quality.gate(results)}


def load_to_clickhouse(
    client: Client, run: Run, plan: Meta, extracted: Sequence[Meta], crm: Meta, rows: Meta
) -> Meta:
    """Publish the run, then log it: the log row carries the new watermark, so the watermark
    advances only after everything is published."""
    started = time.monotonic()
    planned = Plan.from_xcom(plan)
    published = load.publish(client, run.stage, planned)
    seconds = {
        "plan_report_days": plan["seconds"],
        "extract_telemetry": sum(e["seconds"] for e in extracted),
        "extract_crm_data": crm["seconds"],
        "transform_data": rows["seconds"],
        "load_to_clickhouse": time.monotonic() - started,
    }
    runlog.record(
        client,
        {
            "run_id": run.run_id,
            "logical_date": run.logical_date,
            "report_day": run.day,
            "status": "success",
            "days_rebuilt": list(planned.days),
            "telemetry_rows": sum(e["telemetry_rows"] for e in extracted),
            "events_beyond_lookback": planned.events_beyond_lookback,
            "crm_full_refresh": crm["crm_full_refresh"],
            "crm_items": crm["crm_items"],
            "crm_rejects": crm["crm_rejects"],
            "crm_changed_users": rows["crm_changed_users"],
            "report_rows": rows["report_rows"],
            "refreshed_rows": rows["refreshed_rows"],
            "published_rows": published,
            "watermark_before": planned.watermark_before,
            "watermark_after": planned.watermark_after,
            "crm_watermark_before": from_iso(crm["crm_watermark_before"]),
            "crm_watermark_after": _crm_watermark(client),
            "stage_seconds": seconds,
        },
    )
    run.stage.drop_all(client)
    return {"published_rows": published, "days": len(planned.days)}


def record_failure(
    client: Client, run: Run, task_id: str, error: BaseException | str | None
) -> None:
    """A failed run in the run log, for people; it carries no watermark, so nothing advances."""
    runlog.record(
        client,
        {
            "run_id": run.run_id,
            "logical_date": run.logical_date,
            "report_day": run.day,
            "status": "failed",
            "error": f"{task_id}: {error}"[:2000],
        },
    )


def run_all(
    dsn: str,
    session: requests.Session,
    base_url: str,
    client: Client,
    run: Run,
    config: Settings | None = None,
) -> Meta:
    """Every stage in the DAG's order, in this process, without Airflow (tests, benchmarks)."""
    config = config or settings()
    create_data_mart_table(client)
    plan = plan_report_days(dsn, client, run, config)
    extracted = [
        extract_telemetry(
            dsn, client, run, plan, shard=shard, shards=config.telemetry_shards, config=config
        )
        for shard in range(config.telemetry_shards)
    ]
    crm = extract_crm_data(session, base_url, client, run, config)
    rows = transform_data(client, run, plan, crm)
    checks = check_data_quality(client, run, plan, crm)
    loaded = load_to_clickhouse(client, run, plan, extracted, crm, rows)
    telemetry_rows = sum(e["telemetry_rows"] for e in extracted)
    return {**plan, **crm, **rows, **checks, **loaded, "telemetry_rows": telemetry_rows}

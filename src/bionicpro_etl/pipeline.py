"""The stages of `reports_etl_dag`, each callable with plain clients and no Airflow.

The DAG's tasks are thin wrappers around these; tests and the benchmark call them directly.
Stages hand data to each other through the run's staging tables; between them travels only
small metadata (the plan's days, counts, watermarks), as XCom would carry it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import psycopg
import pyarrow as pa
import requests
from clickhouse_connect.driver.client import Client

from bionicpro_etl import (
    extract,
    fence,
    load,
    plan,
    postgres,
    quality,
    runlog,
    schema,
    staging,
    transform,
)
from bionicpro_etl.config import Settings, settings
from bionicpro_etl.extract import CrmError
from bionicpro_etl.run import (
    Checked,
    CrmExtract,
    Loaded,
    Plan,
    Prepared,
    Run,
    RunResult,
    StoreReady,
    TelemetryExtract,
    Transformed,
    as_utc,
)
from bionicpro_etl.schema import STATE

log = logging.getLogger(__name__)


def create_data_mart_table(client: Client, config: Settings | None = None) -> StoreReady:
    """The store's tables; and, as a run starts, the staging tables that failed runs left."""
    started = time.monotonic()
    applied = schema.create(client)
    staging.sweep(client, (config or settings()).staging_max_age_hours)
    return StoreReady(migrations=applied, seconds=time.monotonic() - started)


def require_day_ended(dsn: str, run: Run, config: Settings | None = None) -> None:
    """Fail a run whose own day has not ended (on a sub-daily schedule: not begun) before it
    reads anything: `plan.DayNotEnded`."""
    config = config or settings()
    with psycopg.connect(postgres.bounded(dsn, config), autocommit=True) as conn:
        plan.require_ended(conn, run.day, config)


def plan_report_days(dsn: str, client: Client, run: Run, config: Settings | None = None) -> Plan:
    """Decide once what the run reads (the arrivals since the last run, the days it reads
    whole), and how many shards extract it."""
    config = config or settings()
    started = time.monotonic()
    planned = plan.plan_days(dsn, client, run.day, config, force=run.force_rebuild)
    run.stage.recreate_partials_union(client, STATE)
    return planned.model_copy(
        update={"shards": config.telemetry_shards, "seconds": time.monotonic() - started}
    )


def extract_telemetry(
    dsn: str,
    client: Client,
    run: Run,
    planned: Plan,
    *,
    shard: int = 0,
    config: Settings | None = None,
) -> TelemetryExtract:
    """Stage the partial aggregates of what the plan reads, for one of the plan's shards of the
    users (its modulus is the plan's, never this process's setting)."""
    if not 0 <= shard < planned.shards:
        raise ValueError(f"shard {shard} is not one of the plan's {planned.shards}")
    config = config or settings()
    started = time.monotonic()
    stage = run.stage
    table = stage.partials_shard(shard)
    stage.recreate_like(client, table, STATE)
    batches = extract.telemetry_batches(dsn, planned, config, shard=shard)
    return TelemetryExtract(
        telemetry_rows=staging.append(client, table, batches),
        seconds=time.monotonic() - started,
    )


def extract_crm_data(
    session: requests.Session,
    base_url: str,
    client: Client,
    run: Run,
    config: Settings | None = None,
) -> CrmExtract:
    """Stage the CRM items changed since the dimension's latest `updated_at` (all of them on a
    full refresh); keep the rejects with their reason; fail on too many rejects, or on an empty
    full listing (a CRM with no customers is an outage, not a fact to report)."""
    config = config or settings()
    started = time.monotonic()
    stage = run.stage
    since = None if _full_refresh_due(client, run, config) else _crm_since(client, config)
    stage.recreate(client, stage.crm_items, "staging_crm_items")
    _forget_rejects(client, run.run_id)
    rejected = 0

    def valid_items() -> Iterator[pa.RecordBatch]:
        """Each page's valid items, its rejects stored on the way."""
        nonlocal rejected
        pages = extract.crm_pages(
            session, base_url, page_size=config.crm_page_size, updated_since=since, config=config
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
    if since is None:
        _check_full_listing(client, base_url, listed, config)
    # The share of the CRM that is invalid: an incremental listing is measured against the
    # orders already known, so a few bad items among today's changes do not stop the reports.
    known = max(listed, _crm_orders_known(client) if rejected and since is not None else 0)
    if rejected and rejected / known > config.crm_max_reject_share:
        raise CrmError(
            f"CRM rejects {rejected} of {known} items ({rejected / known:.2%}) exceed the"
            f" allowed {config.crm_max_reject_share:.2%}; see bionicpro_reports.crm_rejects"
            f" where run_id = {run.run_id!r}"
        )
    return CrmExtract(
        crm_items=items,
        crm_rejects=rejected,
        crm_reject_share=rejected / known if rejected else 0.0,
        crm_full_refresh=since is None,
        crm_watermark_before=since,
        seconds=time.monotonic() - started,
    )


def _forget_rejects(client: Client, run_id: str) -> None:
    """An earlier attempt's rejects, which this attempt lists again. A DELETE is a mutation even
    when nothing matches, so it runs only on a retry that has some."""
    where = {"run_id": run_id}
    table = "bionicpro_reports.crm_rejects"
    if client.query(
        f"SELECT count() FROM {table} WHERE run_id = {{run_id:String}}", parameters=where
    ).result_rows[0][0]:
        client.command(f"DELETE FROM {table} WHERE run_id = {{run_id:String}}", parameters=where)


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


def _check_full_listing(client: Client, base_url: str, listed: int, config: Settings) -> None:
    """A full listing replaces the CRM dimension, so one that is far short of the orders already
    known is an outage (a CRM half restored, a broken filter), not a fact: publishing it would
    blank the names and statuses of every missing order across the look-back."""
    if listed == 0:
        raise CrmError(f"CRM {base_url} listed no customers; refusing to report without them")
    known = _crm_orders_known(client)
    if listed < config.crm_min_full_listing_share * known:
        raise CrmError(
            f"CRM {base_url} listed {listed} items in a full listing, under"
            f" {config.crm_min_full_listing_share:.0%} of the {known} orders already known;"
            " refusing to blank the missing ones (BIONICPRO_CRM_MIN_FULL_LISTING_SHARE)"
        )


def _crm_since(client: Client, config: Settings) -> datetime | None:
    """Where an incremental listing starts: the tolerance before the dimension's latest
    `updated_at`. An item may be that far ahead of our clock (a CRM clock running ahead), so
    items changed after the last listing began all have a later `updated_at` than this, and one
    item from the future never hides them. Items read again change nothing."""
    watermark = _crm_watermark(client)
    return (
        None
        if watermark is None
        else watermark - timedelta(seconds=config.future_tolerance_seconds)
    )


def _crm_orders_known(client: Client) -> int:
    return client.query("SELECT count() FROM bionicpro_reports.crm_orders").result_rows[0][0]


def transform_data(
    client: Client, run: Run, planned: Plan, crm: CrmExtract, config: Settings | None = None
) -> Transformed:
    config = config or settings()
    started = time.monotonic()
    merged = transform.merge_state(client, run.stage, planned, run.day)
    complete = transform.next_published_days(
        client, run.stage, run.run_id, planned, merged.days, config.report_tz
    )
    counts = transform.build_report_rows(
        client,
        run.stage,
        run.run_id,
        merged.days,
        planned.lookback_start,
        full_crm=crm.crm_full_refresh,
    )
    return Transformed(
        **asdict(merged), **asdict(counts), complete=complete, seconds=time.monotonic() - started
    )


def check_data_quality(
    client: Client, run: Run, rows: Transformed, crm: CrmExtract, config: Settings | None = None
) -> Checked:
    """Judge the run's rows before they are published; store every result; stop on errors.
    Returns the warn-level results, for the notifiers."""
    started = time.monotonic()
    results = quality.run_checks(
        client,
        run.stage,
        rows.days,
        rows.complete,
        crm_reject_share=crm.crm_reject_share,
        config=config,
    )
    quality.record(client, run.run_id, run.day, results)
    warnings = quality.gate(results)
    return Checked(checks=len(results), warnings=warnings, seconds=time.monotonic() - started)


@dataclass(frozen=True)
class Sources:
    """Where a run reads: the telemetry database (a libpq conninfo) and the CRM (an HTTP session
    with its auth, and the base URL)."""

    dsn: str
    crm: requests.Session
    crm_url: str


def prepare(sources: Sources, client: Client, run: Run, config: Settings) -> Prepared:
    """Plan, extract, transform and check, in this process: what a load publishes."""
    planned = plan_report_days(sources.dsn, client, run, config)
    extracted = [
        extract_telemetry(sources.dsn, client, run, planned, shard=shard, config=config)
        for shard in range(planned.shards)
    ]
    crm = extract_crm_data(sources.crm, sources.crm_url, client, run, config)
    rows = transform_data(client, run, planned, crm, config)
    checks = check_data_quality(client, run, rows, crm, config)
    return Prepared(plan=planned, extracted=extracted, crm=crm, rows=rows, checks=checks)


def load_to_clickhouse(
    sources: Sources,
    client: Client,
    run: Run,
    planned: Plan,
    extracted: Sequence[TelemetryExtract],
    crm: CrmExtract,
    rows: Transformed,
    config: Settings | None = None,
) -> Loaded:
    """Publish the run, then log it: the log row carries the new watermark, so the watermark
    advances only after everything is published. One load at a time, under the publication
    fence (fence.py): when another run has published since this one planned, it plans, extracts
    and transforms again first, so that nothing older than the mart is published."""
    config = config or settings()
    started = time.monotonic()
    with fence.publishing(sources.dsn, config) as lock:
        if fence.latest(client) != planned.publication:
            log.warning("another run published since run %s planned: planning it again", run.run_id)
            again = prepare(sources, client, run, config)
            planned, extracted, crm, rows = again.plan, again.extracted, again.crm, again.rows
        published, changed = load.publish(client, run, planned, rows)
        seconds = time.monotonic() - started
        lock.check()
        runlog.record(
            client,
            {
                "run_id": run.run_id,
                "logical_date": run.logical_date,
                "report_day": run.day,
                "status": "success",
                "publication": planned.publication + 1,
                "days_rebuilt": list(rows.days),
                "telemetry_rows": sum(e.telemetry_rows for e in extracted),
                "events_read": rows.events_read,
                "events_beyond_lookback": rows.events_beyond_lookback,
                "events_bad_time": rows.events_bad_time,
                "crm_full_refresh": crm.crm_full_refresh,
                "crm_items": crm.crm_items,
                "crm_rejects": crm.crm_rejects,
                "crm_changed_users": rows.crm_changed_users,
                "report_rows": rows.report_rows,
                "refreshed_rows": rows.refreshed_rows,
                "published_rows": published,
                "watermark_before": planned.watermark_before,
                "watermark_after": planned.watermark_after,
                "overlap_from": planned.reread_next,
                "crm_watermark_before": crm.crm_watermark_before,
                "crm_watermark_after": _crm_watermark(client),
                "stage_seconds": {
                    "plan_report_days": planned.seconds,
                    "extract_telemetry": sum(e.seconds for e in extracted),
                    "extract_crm_data": crm.seconds,
                    "transform_data": rows.seconds,
                    "load_to_clickhouse": seconds,
                },
            },
        )
    run.stage.drop_all(client)
    return Loaded(
        published_rows=published,
        days=len(rows.days),
        seconds=seconds,
        changed_days=tuple(changed),
        complete=load.completeness(client, changed),
    )


def run_all(
    dsn: str,
    session: requests.Session,
    base_url: str,
    client: Client,
    run: Run,
    config: Settings | None = None,
) -> RunResult:
    """Every stage in the DAG's order, in this process, without Airflow (tests, benchmarks)."""
    config = config or settings()
    sources = Sources(dsn, session, base_url)
    store = create_data_mart_table(client, config)
    ready = prepare(sources, client, run, config)
    loaded = load_to_clickhouse(
        sources, client, run, ready.plan, ready.extracted, ready.crm, ready.rows, config
    )
    return RunResult(**dict(ready), store=store, loaded=loaded)

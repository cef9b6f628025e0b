"""Transform: the run's report rows, built inside ClickHouse over its staging tables.

The join and the arithmetic are set operations the engine does in one pass; no data leaves the
store. Steps, each one file in sql/clickhouse/build/: the next telemetry state of the days the
run publishes (what it read merged into what the state kept) and their telemetry per (user,
prosthesis, day) merged from it; the CRM dimension's next version, the users whose CRM data
changed, the CRM fields of every row the run writes, then the rows: fresh ones for the run's
days, and the look-back's rows of changed users with their new CRM fields; and the next list of
published days, which says which are complete.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from clickhouse_connect.driver.client import Client

from bionicpro_etl import staging
from bionicpro_etl.queries import sql
from bionicpro_etl.run import Plan
from bionicpro_etl.schema import STATE
from bionicpro_etl.staging import Staging

MART = "bionicpro_reports.reports_data_mart"
CRM_ORDERS = "bionicpro_reports.crm_orders"


@dataclass(frozen=True)
class ReportRows:
    """The report rows built: fresh ones of the run's days, those re-joined for CRM changes."""

    report_rows: int
    refreshed_rows: int
    crm_changed_users: int


@dataclass(frozen=True)
class MergedState:
    """The days the run publishes and those whose state it changed (`Transformed` says what each
    is), and the events it read, with those it could not apply."""

    days: tuple[date, ...]
    state_changed: tuple[date, ...]
    events_read: int
    events_beyond_lookback: int
    events_bad_time: int


def build_report_rows(
    client: Client,
    stage: Staging,
    run_id: str,
    days: Sequence[date],
    lookback_start: date,
    *,
    full_crm: bool,
) -> ReportRows:
    """The report rows of `days` from their telemetry (`merge_state`), and the look-back's rows
    of users whose CRM data changed."""
    params: dict[str, Any] = {
        **stage.tables(),
        "run_id": run_id,
        "full": full_crm,
        "days": list(days),
        "lookback_start": lookback_start,
    }
    stage.recreate_like(client, stage.crm_orders_next, CRM_ORDERS)
    stage.recreate(client, stage.changed_users, "staging_changed_users")
    stage.recreate(client, stage.crm_fields, "staging_crm_fields")
    stage.recreate_like(client, stage.report_rows, MART)
    for step in ("crm_orders_next", "crm_changed_users"):
        client.command(sql(f"clickhouse/build/{step}"), parameters=params)
    changed_users = staging.count(client, stage.changed_users)
    if not days and not changed_users:  # a run with nothing new: no row to write
        return ReportRows(report_rows=0, refreshed_rows=0, crm_changed_users=0)
    for step in ("crm_fields", "report_rows"):
        client.command(sql(f"clickhouse/build/{step}"), parameters=params)
    fresh = staging.count(client, stage.report_rows)
    client.command(sql("clickhouse/build/report_rows_crm_refresh"), parameters=params)
    return ReportRows(
        report_rows=fresh,
        refreshed_rows=staging.count(client, stage.report_rows) - fresh,
        crm_changed_users=changed_users,
    )


def merge_state(client: Client, stage: Staging, plan: Plan, own_day: date) -> MergedState:
    """The next state of the days the run changes (those it read whole and those that received
    arrivals, among the days whose state is complete; with its bound where the last run left it,
    only those that received new ones), and the telemetry of the days it
    publishes: the days the plan names and those that received new arrivals, but a later day
    than the own one only if it was published before. Arrivals for any other day are counted, not
    applied: beyond the look-back, or (after the last day, events_arrived.sql) from a broken
    clock."""
    state_days = list(plan.state_days)
    events_read, beyond, bad_time, arrived = client.query(
        "SELECT sum(total_actions),"
        " sumIf(total_actions, report_date NOT IN {state_days:Array(Date)} AND report_date <= {end:Date}),"
        " sumIf(total_actions, report_date > {end:Date}),"
        " groupUniqArrayIf(report_date, report_date IN {state_days:Array(Date)})"
        " FROM bionicpro_staging.{partials:Identifier}",
        parameters={"partials": stage.partials, "state_days": state_days, "end": plan.state_end},
    ).result_rows[0]
    grown = _grown(client, stage, plan, arrived)
    # A day that received nothing new holds what the run read again, in the same slots while
    # the bound stays put (docs/design.md, "Why merging stays exact"): its state stays as it is.
    moved = plan.reread_next != plan.reread_from
    changed = tuple(sorted({*plan.days, *plan.read_whole, *(arrived if moved else grown)}))
    days = tuple(
        d for d in sorted({*plan.days, *grown}) if d <= own_day or d in plan.published_after
    )
    for table in (stage.state_next, stage.telemetry):
        stage.recreate_like(client, table, STATE)
    kept = [d for d in changed if d not in plan.read_whole]
    for target, sources, by_slot, of, kept_of in (
        (stage.state_next, stage.pattern(staging.PARTIALS_SHARD), True, changed, kept),
        (stage.telemetry, stage.pattern("state_next"), False, days, []),
    ):
        if not of:  # no day to merge: the table stays empty
            continue
        client.command(
            sql("clickhouse/build/state_merge"),
            parameters={
                "target": target,
                "sources": sources,
                "by_slot": by_slot,
                "days": list(of),
                "kept": kept_of,
                "reread_from": plan.reread_from,
            },
        )
    return MergedState(
        days=days,
        state_changed=changed,
        events_read=events_read,
        events_beyond_lookback=beyond,
        events_bad_time=bad_time,
    )


def next_published_days(
    client: Client, stage: Staging, run_id: str, plan: Plan, days: Sequence[date], tz: ZoneInfo
) -> tuple[date, ...]:
    """The next version of `published_days` with this run's days and watermark
    (sql/clickhouse/build/published_days.sql, which says when a day is complete); the load swaps
    it in. Returns those of `days` it says are complete, for the quality checks."""
    stage.recreate_like(client, stage.published_days_next, "bionicpro_reports.published_days")
    client.command(
        sql("clickhouse/build/published_days"),
        parameters={
            "published_days_next": stage.published_days_next,
            "days": list(days),
            "lookback_start": plan.lookback_start,
            "watermark": plan.watermark_after,
            "run_id": run_id,
            "tz": tz.key,
        },
    )
    rows = client.query(
        "SELECT report_date FROM bionicpro_staging.{table:Identifier}"
        " WHERE complete AND report_date IN {days:Array(Date)} ORDER BY report_date",
        parameters={"table": stage.published_days_next, "days": list(days)},
    ).result_rows
    return tuple(day for (day,) in rows)


def _grown(client: Client, stage: Staging, plan: Plan, arrived: Sequence[date]) -> set[date]:
    """The days among `arrived` that received events the last run had not read: more arrivals
    after the re-read point than the state held there (none for a day read whole: it had no
    state). The overlap re-read alone changes no day; telemetry is append-only, so a count only
    grows."""
    if not arrived:
        return set()
    rows = client.query(
        "SELECT report_date FROM ("
        " SELECT report_date, slot, total_actions AS read, 0 AS held"
        " FROM bionicpro_staging.{partials:Identifier}"
        " UNION ALL SELECT report_date, slot, 0, total_actions FROM ("
        # each key once, from the newest part, as state_merge.sql reads the state
        f" SELECT * FROM {STATE} WHERE report_date IN {{days:Array(Date)}}"
        " ORDER BY report_date, user_id, prosthesis_id, slot, _part_data_version DESC"
        " LIMIT 1 BY report_date, user_id, prosthesis_id, slot)"
        ") WHERE report_date IN {days:Array(Date)}"
        " AND slot >= {reread_from:Nullable(DateTime64(6, 'UTC'))}"
        " GROUP BY report_date HAVING sum(read) > sum(held)",
        parameters={
            "partials": stage.partials,
            "days": sorted(arrived),
            "reread_from": plan.reread_from,
        },
    ).result_rows
    return {day for (day,) in rows}

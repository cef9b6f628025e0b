"""Load: publish a run into the mart atomically.

The mart is partitioned by month. To publish, the next version of each affected month is built
beside it (the rows the run does not replace, unchanged; the run's rows, new) and swapped in with
one `REPLACE PARTITION`, which ClickHouse applies atomically: a plain SELECT sees the old month or
the new one, never a mix, and a failure before the swap leaves the month as it was. The CRM
dimension (one partition) is swapped the same way after the mart, so a run that fails in between
re-applies its CRM changes; then the list of published days, which readers trust only once the
mart holds them. `REPLACE PARTITION` is also what a replicated table applies on every
replica, so the publish is the same on a cluster (see `schema`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from clickhouse_connect.driver.binding import quote_identifier
from clickhouse_connect.driver.client import Client

from bionicpro_etl import staging
from bionicpro_etl.queries import sql
from bionicpro_etl.run import Plan, Run, Transformed
from bionicpro_etl.schema import STATE
from bionicpro_etl.staging import Staging

# An unpartitioned table's one partition, as `REPLACE PARTITION` names it.
WHOLE_TABLE = "ID 'all'"


def publish(client: Client, run: Run, plan: Plan, rows: Transformed) -> tuple[int, list[date]]:
    """Swap in every month the run touches (and any other month of the look-back that holds a
    key twice), then the telemetry state of the days it changed,
    then the CRM dimension, then the list of published days. Returns the rows published and the
    report days they rewrote: the days the run rebuilt, and those of the rows it re-joined with
    new CRM data. Each swap replaces, never adds: a load that fails in between and is retried,
    or a run planned again from the same watermark, counts nothing twice, whatever was swapped
    in already."""
    stage = run.stage
    written = client.query(
        "SELECT DISTINCT report_date FROM bionicpro_staging.{report_rows:Identifier}",
        parameters={"report_rows": stage.report_rows},
    ).result_rows
    days = sorted({day for (day,) in written} | set(rows.days))
    months = {d.year * 100 + d.month for d in days}
    for month in sorted(months | _holding_a_key_twice(client, plan, months)):
        _publish_month(client, stage, plan, rows.days, month)
    _publish_state(client, stage, plan, rows.state_changed)
    _replace(client, "crm_orders", WHOLE_TABLE, {}, stage.crm_orders_next)
    publish_days(client, stage)
    return staging.count(client, stage.report_rows), days


def completeness(client: Client, days: list[date]) -> dict[date, bool]:
    """Whether each of `days` is complete, as `published_days` says once a run has published."""
    found = dict(
        client.query(
            "SELECT report_date, complete FROM bionicpro_reports.published_days"
            " WHERE has({days:Array(Date)}, report_date)",
            parameters={"days": days},
        ).result_rows
    )
    return {day: bool(found.get(day, False)) for day in days}


def publish_days(client: Client, stage: Staging) -> None:
    """Swap in the run's next version of `published_days` (`transform.next_published_days`)."""
    _replace(client, "published_days", WHOLE_TABLE, {}, stage.published_days_next)


def _holding_a_key_twice(client: Client, plan: Plan, published: set[int]) -> set[int]:
    """The look-back's other months that hold a key twice, in the mart or in its summary: a part
    that a hard kill of the embedded engine brought back (docs/operations.md). They are published
    again with the run's, which keeps each key once, so readers see the repair now, not whenever
    late events next touch the month. A run can only have published months in its look-back.
    A month's keys are counted by their 64-bit hashes, twice as fast as the keys: two keys with
    one hash would only publish a month again for nothing."""
    params = {"lookback_start": plan.lookback_start, "published": sorted(published)}
    rows = client.query(
        "SELECT toYYYYMM(report_date) AS yyyymm FROM bionicpro_reports.reports_data_mart"
        " WHERE report_date >= {lookback_start:Date} AND yyyymm NOT IN {published:Array(UInt32)}"
        " GROUP BY yyyymm HAVING count() > uniqExact(cityHash64(user_id, report_date, prosthesis_id))"
        " UNION DISTINCT"
        " SELECT toYYYYMM(month) AS yyyymm FROM bionicpro_reports.user_monthly_summary"
        " WHERE month >= toStartOfMonth({lookback_start:Date})"
        " AND yyyymm NOT IN {published:Array(UInt32)}"
        " GROUP BY yyyymm HAVING count() > uniqExact(user_id)",
        parameters=params,
    ).result_rows
    return {month for (month,) in rows}


def _publish_month(
    client: Client, stage: Staging, plan: Plan, days: Sequence[date], month: int
) -> None:
    params = {
        **stage.tables(),
        "month": month,
        "days": list(days),
        "lookback_start": plan.lookback_start,
    }
    _swap_month(client, stage, "reports_data_mart", "mart_month_next", "month_table", month, params)
    # The summary follows the month it summarises, from the mart as just published.
    _swap_month(
        client,
        stage,
        "user_monthly_summary",
        "user_monthly_summary",
        "summary_table",
        month,
        params,
    )


def _publish_state(client: Client, stage: Staging, plan: Plan, days: Sequence[date]) -> None:
    """Each changed day's next state replaces its partition (a day left with no events loses
    it); the days the state no longer keeps lose theirs: arrivals for them are not applied, so
    a state kept for them would fall behind."""
    present = {
        day
        for (day,) in client.query(
            "SELECT DISTINCT report_date FROM bionicpro_staging.{state_next:Identifier}",
            parameters={"state_next": stage.state_next},
        ).result_rows
    }
    state = STATE.split(".")[1]
    for day in days:
        _replace(
            client, state, "{day:Date}", {"day": day}, stage.state_next, has_rows=day in present
        )
    outside = client.query(
        f"SELECT DISTINCT report_date FROM {STATE} WHERE report_date NOT IN {{days:Array(Date)}}",
        parameters={"days": list(plan.state_days)},
    ).result_rows
    for (day,) in outside:
        _replace(client, state, "{day:Date}", {"day": day}, stage.state_next, has_rows=False)


def _swap_month(
    client: Client,
    stage: Staging,
    table: str,
    query: str,
    table_param: str,
    month: int,
    params: dict[str, Any],
) -> None:
    """Build the next version of `table`'s month with `sql/clickhouse/build/<query>.sql` beside it, and swap it in."""
    next_version = stage.next_month(table, month)
    stage.recreate_like(client, next_version, f"bionicpro_reports.{table}")
    client.command(
        sql(f"clickhouse/build/{query}"), parameters={**params, table_param: next_version}
    )
    _replace(client, table, "{month:UInt32}", {"month": month}, next_version)


def _replace(
    client: Client,
    table: str,
    partition: str,
    params: dict[str, Any],
    next_version: str,
    *,
    has_rows: bool | None = None,
) -> None:
    """Swap one partition of `table` for the staging table `next_version`'s, in one step
    (`has_rows`: whether `next_version` has rows in it; by default, whether it has any)."""
    # ALTER takes no identifier parameter; both names are ours, quoted.
    target = f"ALTER TABLE bionicpro_reports.{quote_identifier(table)}"
    if staging.count(client, next_version) if has_rows is None else has_rows:
        client.command(
            f"{target} REPLACE PARTITION {partition}"
            f" FROM bionicpro_staging.{quote_identifier(next_version)}",
            parameters=params,
        )
    else:
        # REPLACE refuses an empty source; a partition left with no rows is dropped instead.
        client.command(f"{target} DROP PARTITION {partition}", parameters=params)

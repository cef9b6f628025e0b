"""What a run reads: the arrivals since the last published run, and the days it reads whole.

A run reads from PostgreSQL only the events that arrived since the last run (the watermark on
`received_at`), aggregated per report day, and merges them into the days' partial aggregates
kept in ClickHouse (`bionicpro_reports.telemetry_state`; docs/design.md, "Each event read
once"). A day is read whole only when its state is missing: on a first run, for a day that
enters the state's window, or when forced (a correction made in place at the source).

The watermark lives in the run log (`bionicpro_reports.etl_runs`): the latest publication's
`watermark_after`, and `overlap_from`, after which the next run reads arrivals (the watermark less
`BIONICPRO_ARRIVAL_OVERLAP_SECONDS`: rows that commit late reach their day). Both are written only when a run has published everything, so a failed or half-done
run loses nothing: the next one reads the same arrivals again, and replaces what they became.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import psycopg
from clickhouse_connect.driver.client import Client

from bionicpro_etl import fence, postgres
from bionicpro_etl.config import Settings
from bionicpro_etl.queries import sql, statements
from bionicpro_etl.report_day import day_bounds, report_day_of
from bionicpro_etl.run import Plan, as_utc
from bionicpro_etl.schema import STATE


def last_published(client: Client) -> tuple[datetime | None, datetime | None]:
    """How far the latest publication read arrivals, and where the next run reads them after
    (`overlap_from`); (None, None) before the first one."""
    rows = client.query(
        "SELECT watermark_after, overlap_from FROM bionicpro_reports.etl_runs"
        " WHERE status = 'success' AND watermark_after IS NOT NULL"
        " ORDER BY publication DESC, watermark_after DESC LIMIT 1"
    ).result_rows
    return (as_utc(rows[0][0]), as_utc(rows[0][1])) if rows else (None, None)


class DayNotEnded(ValueError):
    """The run's own day has not ended (daily schedule) or not begun (sub-daily schedule)."""


def require_ended(conn: psycopg.Connection[Any], day: date, config: Settings) -> None:
    """Refuse a run whose own day has not ended in the report zone (on a sub-daily schedule: has
    not begun), by the source's clock: the one that stamps `received_at`. The day itself is never
    picked by a clock; this only checks that it is over."""
    tz = config.report_tz
    start, end = day_bounds(day, tz)
    (now,) = conn.execute("SELECT now()").fetchone()
    limit, what = (start, "begun") if config.sub_daily else (end, "ended")
    if now < limit:
        raise DayNotEnded(
            f"report day {day} has not {what} in {tz.key}: it ends at"
            f" {end.astimezone(tz).isoformat()}, the telemetry database's clock says"
            f" {now.astimezone(tz).isoformat()}. On the daily schedule ({config.schedule!r}) a run"
            " publishes only days that have ended; nothing was read, published or moved."
        )


def published_after(client: Client, day: date) -> set[date]:
    """The days after `day` that a successful run has built."""
    rows = client.query(
        "SELECT DISTINCT arrayJoin(days_rebuilt) AS day FROM bionicpro_reports.etl_runs"
        " WHERE status = 'success' AND day > {day:Date}",
        parameters={"day": day},
    ).result_rows
    return {d for (d,) in rows}


def published(client: Client, day: date) -> bool:
    """Whether a successful run has built `day` (the run log says so)."""
    return bool(
        client.query(
            "SELECT count() FROM bionicpro_reports.etl_runs"
            " WHERE status = 'success' AND has(days_rebuilt, {day:Date})",
            parameters={"day": day},
        ).result_rows[0][0]
    )


def stated_days(client: Client, first: date) -> set[date]:
    """The days from `first` on whose state is complete (they have a partition)."""
    rows = client.query(
        f"SELECT DISTINCT report_date FROM {STATE} WHERE report_date >= {{first:Date}}",
        parameters={"first": first},
    ).result_rows
    return {day for (day,) in rows}


def plan_days(
    dsn: str, client: Client, own_day: date, config: Settings, *, force: bool = False
) -> Plan:
    """The state keeps the days of the own day's look-back and of the newest arrival's (the
    same days on a scheduled run; a backfill's own day is older), and any later day that has a
    state. A day of the look-backs without a state is read whole if it holds events received by
    the re-read point; otherwise its state is empty and the arrivals bring all of it (a day that
    just began, on the run after midnight).
    The own day is also read whole when forced. It is published when it has never been (or when
    forced), and so are the days a first run reads whole; once published, a day changes only
    through arrivals.
    So a run with nothing new reads nothing but its bound. A day after the own one is published
    only if it was before (`published_after`): one never published is left to its own run (on
    the daily schedule it may not even have ended), though its state takes the arrivals."""
    tz = config.report_tz
    lookback = timedelta(days=config.lookback_days)
    day = timedelta(days=1)
    fenced = fence.latest(client)  # before the watermark: a publication in between re-plans
    watermark, reread_from = last_published(client)
    with psycopg.connect(postgres.bounded(dsn, config), autocommit=True) as conn:
        require_ended(conn, own_day, config)
        bound = arrival_bound(conn, watermark, config.arrival_lag_seconds)
        newest = report_day_of(bound, tz) if bound else own_day
        window = sorted(
            {
                *_days(own_day - lookback, own_day + day),
                *_days(newest - lookback - day, newest + day),
            }
        )
        # Without a re-read point (a first run) the state is not trusted: it is read anew.
        # A day with a state keeps it until it leaves both look-backs; its arrivals are merged
        # wherever it lies (a backfill's days, between the two).
        stated = stated_days(client, window[0]) if reread_from else set()
        missing = [d for d in window if d not in stated]
        until = reread_from or bound
        read_whole = days_with_events(conn, missing, config, until=until) if until else set()
        if force:
            read_whole.add(own_day)
    state_days = sorted({*window, *stated})
    # A first run publishes the days it reads whole (and its own); later, a day read whole only
    # to give it a state is published if arrivals reach it (or it is the own day).
    own = {own_day} if force or not published(client, own_day) else set()
    return Plan(
        days=tuple(sorted(own | (read_whole if reread_from is None else set()))),
        read_whole=tuple(sorted(read_whole)),
        kept=tuple(d for d in state_days if d not in read_whole),
        lookback_start=own_day - lookback,
        state_start=state_days[0],
        state_end=state_days[-1],
        watermark_before=watermark,
        watermark_after=bound,
        reread_from=reread_from,
        reread_next=bound - timedelta(seconds=config.arrival_overlap_seconds) if bound else None,
        publication=fenced,
        published_after=tuple(sorted(published_after(client, own_day))),
    )


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


# Where the bound is looked for: among the arrivals of these last seconds before the lag (a
# steady stream has some), else among the rows of the table's last pages, a few first.
RECENT_SECONDS = 10
FLOOR_PAGES = (64, 4096)


def arrival_bound(
    conn: psycopg.Connection[Any], watermark: datetime | None, lag: int
) -> datetime | None:
    """How far a run reads arrivals: the latest received_at outside the arrival lag (the
    watermark when nothing newer arrived; None when nothing ever did). Found reading little: a
    quarter-hour run must not read more to find it than it reads arrivals."""
    (now,) = conn.execute("SELECT now()").fetchone()
    recent = now - timedelta(seconds=lag + RECENT_SECONDS)
    start = recent if watermark is None else max(watermark, recent)
    (bound,) = conn.execute(sql("postgres/arrival_bound"), {"lag": lag, "start": start}).fetchone()
    if bound is not None:
        return bound
    for pages in FLOOR_PAGES:
        (floor,) = conn.execute(
            sql("postgres/arrival_floor"), {"lag": lag, "watermark": watermark, "pages": pages}
        ).fetchone()
        if floor is not None:
            break
    (bound,) = conn.execute(
        sql("postgres/arrival_bound"), {"lag": lag, "start": floor or watermark}
    ).fetchone()
    return bound or floor or watermark


def days_with_events(
    conn: psycopg.Connection[Any], days: list[date], config: Settings, *, until: datetime
) -> set[date]:
    """Which of the report days hold events received by `until`: one cheap probe a day,
    rather than reading them all."""
    if not days:
        return set()
    bounds = [day_bounds(day, config.report_tz) for day in days]
    setting, probe = statements("postgres/arrival_days")
    with conn.transaction():
        conn.execute(setting)
        rows = conn.execute(
            probe,
            {
                "days": days,
                "starts": [start for start, _ in bounds],
                "ends": [end for _, end in bounds],
                "until": until,
                "tolerance": config.future_tolerance_seconds,
            },
        ).fetchall()
    return {day for (day,) in rows}

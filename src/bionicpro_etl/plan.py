"""Which days a run rebuilds: its own day (unless already published), and every day within the
look-back that received events since the last published run (the watermark on `received_at`).
A day after the run's own one is rebuilt only if it was published before: one never published is
left to its own run (on the daily schedule it may not even have ended).

The watermark lives in the run log (`bionicpro_reports.etl_runs`): the latest successful run's
`watermark_after`. It is written only when a run has published everything, so a failed or
half-done run loses nothing: the next one reads the same arrivals again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import psycopg
from clickhouse_connect.driver.client import Client

from bionicpro_etl import fence, postgres
from bionicpro_etl.config import Settings
from bionicpro_etl.queries import sql, statements
from bionicpro_etl.report_day import day_bounds, storable_bounds
from bionicpro_etl.run import Plan, as_utc


@dataclass(frozen=True)
class Published:
    """How far the latest publication read arrivals, and what it counted in the window below."""

    watermark: datetime | None = None
    overlap_from: datetime | None = None
    overlap_counts: Mapping[date, int] = field(default_factory=dict)


def last_published(client: Client) -> Published:
    """The latest publication's watermark and overlap window; empty before the first one."""
    rows = client.query(
        "SELECT watermark_after, overlap_from, overlap_counts FROM bionicpro_reports.etl_runs"
        " WHERE status = 'success' AND watermark_after IS NOT NULL"
        " ORDER BY publication DESC, watermark_after DESC LIMIT 1"
    ).result_rows
    if not rows:
        return Published()
    watermark, overlap_from, counts = rows[0]
    return Published(as_utc(watermark), as_utc(overlap_from), counts)


def published_watermark(client: Client) -> datetime | None:
    """How far the published runs have read arrivals; None before the first one."""
    return last_published(client).watermark


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


def plan_days(
    dsn: str, client: Client, own_day: date, config: Settings, *, force: bool = False
) -> Plan:
    """The own day is rebuilt when it has never been published (or when forced); once it has,
    it changes only through arrivals, which the watermark finds. So a run with nothing new
    rebuilds nothing. Arrivals for later days count only for those already published."""
    fenced = fence.latest(client)  # before the watermark: a publication in between re-plans
    last = last_published(client)
    with psycopg.connect(postgres.bounded(dsn, config), autocommit=True) as conn:
        require_ended(conn, own_day, config)
        found = arrivals(conn, last, own_day, config)
    own = {own_day} if force or not published(client, own_day) else set()
    later = published_after(client, own_day)
    return Plan(
        days=tuple(sorted({d for d in found.days if d <= own_day or d in later} | own)),
        lookback_start=found.lookback_start,
        watermark_before=last.watermark,
        watermark_after=found.until,
        overlap_from=found.overlap_from,
        overlap_counts=found.overlap_counts,
        publication=fenced,
        events_beyond_lookback=found.beyond,
        events_bad_time=found.bad_time,
    )


@dataclass(frozen=True)
class Arrivals:
    """What arrived after a watermark: how far it was read, the look-back days (and any later
    ones) that received events, how many events were older than the look-back, and how many
    carried a time no report day can have (a broken clock)."""

    lookback_start: date
    until: datetime | None
    days: frozenset[date]
    beyond: int
    bad_time: int = 0
    overlap_from: datetime | None = None
    overlap_counts: Mapping[date, int] = field(default_factory=dict)


def arrivals(
    conn: psycopg.Connection[Any], last: Published, own_day: date, config: Settings
) -> Arrivals:
    """The arrivals in (watermark, bound], the bound being the latest received_at outside the
    arrival lag, and the rows that committed late below the watermark: those of the days whose
    count in the last publication's overlap window grew. A first run (no watermark) takes every
    look-back day with events received by the bound, and none older: it probes its look-back
    days, and groups only later ones."""
    tz = config.report_tz
    watermark = last.watermark
    lookback_start = own_day - timedelta(days=config.lookback_days)
    lag = config.arrival_lag_seconds
    (floor,) = conn.execute(
        sql("postgres/arrival_floor"), {"lag": lag, "watermark": watermark}
    ).fetchone()
    (bound,) = conn.execute(
        sql("postgres/arrival_bound"), {"lag": lag, "start": floor or watermark}
    ).fetchone()
    until = bound or floor or watermark
    probed = (
        _days_with_events(conn, lookback_start, own_day, config, until=until)
        if watermark is None and until is not None
        else set()
    )
    earliest, latest = storable_bounds(tz)
    own_from = until - timedelta(seconds=config.arrival_overlap_seconds) if until else None
    counted = conn.execute(
        sql("postgres/arrivals"),
        {
            "tz": tz.key,
            "until": until,
            "watermark": watermark,
            "since": day_bounds(own_day, tz)[1],
            "earliest": earliest,
            "latest": latest,
            "tolerance": config.future_tolerance_seconds,
            "previous_from": last.overlap_from,
            "own_from": own_from,
        },
    ).fetchall()
    # Events that arrived, and events that committed late: the growth of a day's count in the
    # last publication's window (a day it did not count had none then).
    found = [(day, events) for day, events, _, _ in counted if events]
    found += [
        (day, previous - last.overlap_counts.get(day, 0))
        for day, _, previous, _ in counted
        if previous > last.overlap_counts.get(day, 0)
    ]
    dated = [(day, events) for day, events in found if day is not None]
    return Arrivals(
        lookback_start=lookback_start,
        until=until,
        days=frozenset(probed | {day for day, _ in dated if day >= lookback_start}),
        beyond=sum(events for day, events in dated if day < lookback_start),
        bad_time=sum(events for day, events in found if day is None),
        overlap_from=own_from,
        overlap_counts={day: own for day, _, _, own in counted if day is not None and own},
    )


def _days_with_events(
    conn: psycopg.Connection[Any], first: date, last: date, config: Settings, *, until: datetime
) -> set[date]:
    """The report days first..last that hold events received by `until`: one cheap probe a day,
    rather than reading them all."""
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
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

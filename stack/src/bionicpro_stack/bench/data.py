"""The benchmark's data: one report day at an exact size, made by the stack's generator
(`bionicpro_stack.generate` with its exact-size options), and the next night's arrivals."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from time import perf_counter
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bionicpro_etl.config import settings
from bionicpro_etl.extract import partials_sql
from bionicpro_etl.queries import sql
from bionicpro_etl.report_day import day_bounds, storable_bounds
from bionicpro_stack import generate
from bionicpro_stack.bench.job import DAY, SEED, Job, Measured, Scale

# The table also holds older days of the same size, so that the report day is a range of it (as
# in production, where it holds months) and the index on event_time has work to do. They lie just
# before the pipeline's look-back window, so that every run builds the one report day only.
HISTORY_DAYS = 2
# A bound after every arrival, for the day's query on its own.
EVER = datetime(9999, 12, 31, tzinfo=UTC)
# The realistic night (r): the report day whose nightly run is measured. Its arrivals are what
# the generator's profile brings in the 24 hours before that run (02:00 after NIGHT): NIGHT's
# events, the next day's first two hours, and the late uploads (3 % of a day's events, 1 to 5
# days late) of the five days before. Far after DAY's days, in a table of its own making.
NIGHT = DAY + timedelta(days=14)
NIGHT_DAYS = [NIGHT + timedelta(days=k) for k in range(-5, 2)]
# (a_r): the realistic table's day read whole, the first: all its late uploads are in by then.
WHOLE_DAY = NIGHT_DAYS[0]


def fleet(scale: Scale) -> generate.Fleet:
    """Prostheses 1..P and their owners: one each for users 1..U, the rest to random users."""
    return generate.Fleet(users=scale.users, seed=SEED, prostheses=scale.prostheses)


def telemetry_day(scale: Scale, day: date, tz: ZoneInfo, events: int | None = None) -> pa.Table:
    """Exactly `events` (default: the scale's) events of one report day."""
    return generate.telemetry_day(fleet(scale), day, tz, events=events or scale.events)


def next_night(scale: Scale, tz: ZoneInfo, watermark: datetime) -> pa.Table:
    """What the next night's run finds: the following day's events and `late_uploads` of the
    report day, in arrival order. The table already holds the report day's late tail, which
    reaches days past the following one; so the batch's arrivals are moved to begin just after
    `watermark`, keeping their order and spacing."""
    following = telemetry_day(scale, DAY + timedelta(days=1), tz)
    late = telemetry_day(scale, DAY, tz, late_uploads(scale.events))
    arrived = following["received_at"].to_numpy().astype(np.int64)
    first, last = int(arrived.min()), int(arrived.max())
    rng = np.random.default_rng([SEED, 4])
    late = late.set_column(
        late.schema.get_field_index("received_at"),
        "received_at",
        pa.array(rng.integers(first, last, late.num_rows), pa.timestamp("us", tz="UTC")),
    )
    batch = pa.concat_tables([following, late])
    shift = max(0, int(watermark.timestamp() * 1_000_000) + 1_000_000 - first)
    batch = batch.set_column(
        batch.schema.get_field_index("received_at"),
        "received_at",
        pc.add(batch["received_at"], pa.scalar(shift, pa.duration("us"))),
    )
    return batch.take(pc.sort_indices(batch["received_at"]))


def late_uploads(events: int) -> int:
    """How many late events of the report day the next night brings: 3 % of a day."""
    return events * 3 // 100


def named_aggregate_sql(events: str = "events_of_day") -> str:
    """The aggregate query (of a day read whole, or of `events_arrived`) with named placeholders
    (`%(p1)s`) for psycopg and pandas."""
    return re.sub(r"\$(\d+)", r"%(p\1)s", partials_sql(events).replace("%", "%%"))


def aggregate_params(day: date, tz: ZoneInfo) -> dict[str, Any]:
    """The query's parameters $1.. as `extract.telemetry_batches` binds them for a day read
    whole: its bounds and itself; every event received (no arrival bound, no re-read point, one
    slot); all users (shard 0 of 1); the clock tolerance and the days the mart can hold."""
    start, end = day_bounds(day, tz)
    earliest, latest = storable_bounds(tz)
    tolerance = settings().future_tolerance_seconds
    return {"p1": start, "p2": end, "p3": day, "p4": EVER, "p5": None, "p6": EVER, "p7": 1,
            "p8": 0, "p9": tolerance, "p10": earliest, "p11": latest}  # fmt: skip


def arrival_params(tz: ZoneInfo) -> dict[str, Any]:
    """The arrival query's parameters $1.. as (r)'s nightly run binds them: the look-back's days
    up to NIGHT, the night's arrivals (night_window) with the overlap below it read again, the
    next re-read point the overlap below the bound; all users; the clock tolerance and the days
    the mart can hold."""
    config = settings()
    start, end = night_window(tz)
    overlap = timedelta(seconds=config.arrival_overlap_seconds)
    earliest, latest = storable_bounds(tz)
    first = NIGHT - timedelta(days=config.lookback_days)
    return {"p1": first, "p2": NIGHT, "p3": tz.key, "p4": end, "p5": start - overlap,
            "p6": end - overlap, "p7": 1, "p8": 0, "p9": config.future_tolerance_seconds,
            "p10": earliest, "p11": latest}  # fmt: skip


def history_days() -> list[date]:
    """The older days the table holds: the last ones before the pipeline's look-back window."""
    lookback_start = DAY - timedelta(days=settings().lookback_days)
    return [lookback_start - timedelta(days=k) for k in range(HISTORY_DAYS, 0, -1)]


def generate_sources(job: Job) -> Measured:
    """Fill PostgreSQL and the CRM store with the benchmark day (not part of any measurement).

    Rows are written in arrival order, as they land in production. The secondary indexes are
    dropped for the bulk load and rebuilt from the shipped DDL afterwards; then VACUUM ANALYZE,
    a checkpoint and one untimed read of the day leave the source warm and settled."""
    import adbc_driver_postgresql.dbapi as adbc_pg
    import psycopg
    from psycopg.sql import SQL, Identifier

    started = perf_counter()
    stack, tz, scale = job.stack, settings().report_tz, job.scale
    days = [*history_days(), DAY]
    events = pa.concat_tables(telemetry_day(scale, d, tz) for d in days)
    events = events.take(pc.sort_indices(events["received_at"]))
    dsn = stack.dsn("bionicpro")
    with psycopg.connect(dsn, autocommit=True) as conn:
        secondary = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'"
            " AND tablename = 'telemetry_events'"
            " AND indexname NOT IN (SELECT conname FROM pg_constraint)"
        ).fetchall()
        for (name,) in secondary:
            conn.execute(SQL("DROP INDEX public.{}").format(Identifier(name)))
    crm = generate.crm_items(fleet(scale), DAY, items=scale.crm_orders)
    for database, table, data in (
        ("bionicpro", "telemetry_events", events),
        ("crm", "crm_orders", crm),
    ):
        with adbc_pg.connect(stack.dsn(database)) as conn:
            with conn.cursor() as cur:
                cur.execute(f"TRUNCATE public.{table} RESTART IDENTITY")
                cur.adbc_ingest(table, data, mode="append")
            conn.commit()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql("telemetry_events", "bionicpro_stack"))
        conn.execute("VACUUM ANALYZE public.telemetry_events")
        conn.execute("CHECKPOINT")
        conn.execute(named_aggregate_sql(), aggregate_params(DAY, tz)).fetchall()
    return Measured(seconds=perf_counter() - started, rows=events.num_rows)


def append_next_night(job: Job) -> Measured:
    """Append `next_night`'s arrivals to the telemetry table, after everything it holds, and
    settle the table as `generate_sources` does (not part of any measurement). Reports the
    events of the report day and of the following one, for the check of (n)."""
    import adbc_driver_postgresql.dbapi as adbc_pg
    import psycopg

    started = perf_counter()
    dsn, tz = job.stack.dsn("bionicpro"), settings().report_tz
    with psycopg.connect(dsn) as conn:
        (watermark,) = conn.execute(
            "SELECT max(received_at) FROM public.telemetry_events"
        ).fetchone()
    batch = next_night(job.scale, tz, watermark)
    with adbc_pg.connect(dsn) as conn:
        with conn.cursor() as cur:
            cur.adbc_ingest("telemetry_events", batch, mode="append")
        conn.commit()
    events = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE public.telemetry_events")
        conn.execute("CHECKPOINT")
        for day in (DAY, DAY + timedelta(days=1)):
            (events[day.isoformat()],) = conn.execute(
                "SELECT count(*) FROM public.telemetry_events"
                " WHERE event_time >= %s AND event_time < %s",
                day_bounds(day, tz),
            ).fetchone()
    return Measured(seconds=perf_counter() - started, rows=batch.num_rows, events=events)


def night_window(tz: ZoneInfo) -> tuple[datetime, datetime]:
    """(r)'s arrivals: received after the nightly run before it (02:00 on NIGHT), up to its own
    (02:00 on the day after)."""
    start = day_bounds(NIGHT, tz)[0] + timedelta(hours=2)
    return start, start + timedelta(days=1)


def night_arrivals_path(job: Job) -> Path:
    return job.stack.root / "results" / "night_arrivals.parquet"


def realistic_sources(job: Job) -> Measured:
    """The realistic night's table, in place of the benchmark's: the days NIGHT_DAYS as the
    generator makes them (each with its late uploads), the rows received before the night in
    the table, in arrival order; the night's arrivals kept aside (Parquet) to be appended at
    once or a quarter of an hour at a time. Reports the night's arrivals."""
    import adbc_driver_postgresql.dbapi as adbc_pg
    import psycopg
    import pyarrow.parquet as pq

    started = perf_counter()
    stack, tz, scale = job.stack, settings().report_tz, job.scale
    before, until = night_window(tz)
    days = pa.concat_tables(
        generate.telemetry_day(fleet(scale), d, tz, as_of=until, events=scale.events)
        for d in NIGHT_DAYS
    )
    days = days.take(pc.sort_indices(days["received_at"]))
    earlier = pc.less_equal(days["received_at"], pa.scalar(before, pa.timestamp("us", tz="UTC")))
    arrivals = days.filter(pc.invert(earlier))
    pq.write_table(arrivals, night_arrivals_path(job))
    dsn = stack.dsn("bionicpro")
    with adbc_pg.connect(dsn) as conn:
        with conn.cursor() as cur:
            cur.execute("TRUNCATE public.telemetry_events RESTART IDENTITY")
            cur.adbc_ingest("telemetry_events", days.filter(earlier), mode="append")
        conn.commit()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE public.telemetry_events")
        conn.execute("CHECKPOINT")
    return Measured(seconds=perf_counter() - started, rows=arrivals.num_rows)


def night_arrivals(job: Job) -> pa.Table:
    import pyarrow.parquet as pq

    return pq.read_table(night_arrivals_path(job))


def night_slice(job: Job, arrivals: pa.Table, after: datetime, until: datetime) -> int:
    """Append the night's arrivals received in (after, until]; returns how many. Then the BRIN
    indexes summarize the new pages, as autovacuum does (autosummarize) in the minutes between
    two runs that the benchmark leaves out."""
    import adbc_driver_postgresql.dbapi as adbc_pg
    import psycopg

    stamp = pa.timestamp("us", tz="UTC")
    received = arrivals["received_at"]
    batch = arrivals.filter(
        pc.and_(
            pc.greater(received, pa.scalar(after, stamp)),
            pc.less_equal(received, pa.scalar(until, stamp)),
        )
    )
    with adbc_pg.connect(job.stack.dsn("bionicpro")) as conn:
        with conn.cursor() as cur:
            cur.adbc_ingest("telemetry_events", batch, mode="append")
        conn.commit()
    with psycopg.connect(job.stack.dsn("bionicpro"), autocommit=True) as conn:
        for index in ("received_at", "event_time"):
            conn.execute(f"SELECT brin_summarize_new_values('telemetry_events_{index}_brin')")
    return batch.num_rows


def withdraw_night(job: Job) -> None:
    """Take the night's arrivals out of the table, so that night_slice can append them again: the
    table as it was before the night (VACUUM gives their pages back, so they land where they
    were)."""
    import psycopg

    start, _ = night_window(settings().report_tz)
    with psycopg.connect(job.stack.dsn("bionicpro"), autocommit=True) as conn:
        conn.execute("DELETE FROM public.telemetry_events WHERE received_at > %s", (start,))
        conn.execute("VACUUM public.telemetry_events")


def restore_night(job: Job) -> int:
    """Append all of the night's arrivals at once, in place of those appended before (by (q) a
    quarter of an hour at a time, or none: the table's last pages, which VACUUM gives back), and
    analyze the table; returns how many."""
    import psycopg

    start, end = night_window(settings().report_tz)
    withdraw_night(job)
    rows = night_slice(job, night_arrivals(job), start, end)
    with psycopg.connect(job.stack.dsn("bionicpro"), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE public.telemetry_events")
    return rows


def append_night(job: Job) -> Measured:
    """All of the night's arrivals at once (`restore_night`, not part of any measurement);
    reports the events of each day the nightly run publishes (all but the next day, left to its
    own run), for the check of (r)."""
    import psycopg

    started = perf_counter()
    tz = settings().report_tz
    rows = restore_night(job)
    with psycopg.connect(job.stack.dsn("bionicpro"), autocommit=True) as conn:
        events = {
            day.isoformat(): conn.execute(
                "SELECT count(*) FROM public.telemetry_events"
                " WHERE event_time >= %s AND event_time < %s",
                day_bounds(day, tz),
            ).fetchone()[0]
            for day in NIGHT_DAYS[:-1]
        }
    return Measured(seconds=perf_counter() - started, rows=rows, events=events)

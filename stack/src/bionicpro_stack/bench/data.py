"""The benchmark's data: one report day at an exact size, made by the stack's generator
(`bionicpro_stack.generate` with its exact-size options), and the next night's arrivals."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from time import perf_counter
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bionicpro_etl.config import settings
from bionicpro_etl.queries import sql
from bionicpro_etl.report_day import day_bounds
from bionicpro_stack import generate
from bionicpro_stack.bench.job import DAY, SEED, Job, Measured, Scale

# The table also holds older days of the same size, so that the report day is a range of it (as
# in production, where it holds months) and the index on event_time has work to do. They lie just
# before the pipeline's look-back window, so that every run builds the one report day only.
HISTORY_DAYS = 2


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


def named_aggregate_sql() -> str:
    """The day's aggregate query with named placeholders (`%(p1)s`) for psycopg and pandas."""
    return re.sub(r"\$(\d+)", r"%(p\1)s", sql("postgres/telemetry_daily").replace("%", "%%"))


def aggregate_params(day: date, tz: ZoneInfo) -> dict[str, Any]:
    """The query's parameters $1.. as `extract.telemetry_batches` binds them for one day: its
    bounds, the report zone, all users (shard 0 of 1) and the clock tolerance."""
    start, end = day_bounds(day, tz)
    tolerance = settings().future_tolerance_seconds
    return {"p1": start, "p2": end, "p3": tz.key, "p4": 1, "p5": 0, "p6": tolerance}


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

"""`python -m bionicpro_stack.bench.overlap`: what finding late commits costs the plan.

The plan's `arrivals.sql` also counts, per report day, the events received in the window of
`BIONICPRO_ARRIVAL_OVERLAP_SECONDS` below its bound, and again below the last watermark (plan.py).
This times that query on the benchmark's data (`make bench`'s stack, `.stack/bench`, generated
first when it is not there: 10 M events on the report day), with both windows at the busiest hour
of arrivals, for a quiet run (nothing arrived after the watermark) and a next night (a day of
arrivals after it), for several window sizes, each size in turn, seven times; medians. One
connection that plans every statement anew, as a run's plan does (psycopg would otherwise switch
to a generic plan after five runs of the same query)."""

from __future__ import annotations

import statistics
from datetime import timedelta
from time import perf_counter

import psycopg

from bionicpro_etl.config import settings
from bionicpro_etl.queries import sql
from bionicpro_etl.report_day import day_bounds, storable_bounds
from bionicpro_stack.bench.data import generate_sources
from bionicpro_stack.bench.job import DAY, FULL, ROOT, Job
from bionicpro_stack.services import Stack

WINDOWS = (0, 3600, 6 * 3600, 24 * 3600)
ROUNDS = 7


def main() -> None:
    stack = Stack(ROOT.absolute(), crm_port=Stack.from_env().crm_port)  # BIONICPRO_CRM_PORT
    stack.up()
    dsn = stack.dsn("bionicpro")
    with psycopg.connect(dsn) as conn:
        (rows,) = conn.execute("SELECT count(*) FROM public.telemetry_events").fetchone()
    if rows < FULL.events:
        print(f"generating the benchmark's data into {ROOT}")
        generate_sources(Job(root=str(stack.root), crm_port=stack.crm_port, scale=FULL))
    config = settings()
    tz = config.report_tz
    earliest, latest = storable_bounds(tz)
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
        (rows,) = conn.execute("SELECT count(*) FROM public.telemetry_events").fetchone()
        (busiest,) = conn.execute(
            "SELECT date_trunc('hour', received_at) + interval '1 hour'"
            " FROM public.telemetry_events GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
        ).fetchone()
        print(f"{rows:,} rows; the busiest hour of arrivals ends at {busiest}")
        for case, arrived in (("quiet run", timedelta(0)), ("next night", timedelta(hours=24))):
            watermark = busiest - arrived
            times: dict[int, list[float]] = {window: [] for window in WINDOWS}
            for _ in range(ROUNDS):
                for window in WINDOWS:
                    below = timedelta(seconds=window)
                    params = {
                        "tz": tz.key,
                        "until": busiest,
                        "watermark": watermark,
                        "since": day_bounds(DAY, tz)[1],
                        "earliest": earliest,
                        "latest": latest,
                        "tolerance": config.future_tolerance_seconds,
                        "previous_from": watermark - below if window else None,
                        "own_from": busiest - below if window else None,
                    }
                    started = perf_counter()
                    conn.execute(sql("postgres/arrivals"), params).fetchall()
                    times[window].append(perf_counter() - started)
            base = statistics.median(times[0])
            for window in WINDOWS:
                below = timedelta(seconds=window)
                (more,) = conn.execute(
                    "SELECT count(*) FROM public.telemetry_events"
                    " WHERE received_at > %s AND received_at <= %s",
                    (watermark - below, watermark),
                ).fetchone()
                median = statistics.median(times[window])
                print(
                    f"{case:>10}, window {window:>6} s: {more:>10,} more rows read,"
                    f" arrivals.sql {median * 1000:6.0f} ms (+{(median - base) * 1000:.0f} ms)"
                )


if __name__ == "__main__":
    main()

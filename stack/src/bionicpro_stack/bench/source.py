"""The source side: EXPLAIN (ANALYZE, BUFFERS) of the day's query on the benchmark's table with
only a B-tree index on event_time, then with only a BRIN index; and the realistic night's
arrival query by the table's statistics, session and work_mem."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from bionicpro_etl import postgres
from bionicpro_etl.config import settings
from bionicpro_etl.queries import sql
from bionicpro_stack.bench.data import (
    aggregate_params,
    arrival_params,
    named_aggregate_sql,
    night_arrivals,
    night_slice,
    night_window,
)
from bionicpro_stack.bench.job import DAY, Job
from bionicpro_stack.services import Stack


@dataclass(frozen=True)
class IndexPlan:
    """The day's query plan under one kind of index on event_time."""

    method: str  # btree or brin
    shipped: bool
    index: str
    index_mb: float
    execution_ms: float
    hit: int
    read: int
    tree: str


def source_side(stack: Stack) -> tuple[IndexPlan, IndexPlan]:
    """EXPLAIN (ANALYZE, BUFFERS) of the day's query with a B-tree on event_time, then with a
    BRIN index, each alone (in the benchmark's database only); the shipped indexes are restored
    from the DDL afterwards."""
    with psycopg.connect(stack.dsn("bionicpro"), autocommit=True) as conn:
        shipped = dict(
            conn.execute(
                "SELECT indexname, lower(substring(indexdef FROM 'USING (\\w+)'))"
                " FROM pg_indexes WHERE tablename = 'telemetry_events'"
                " AND indexdef LIKE '%(event_time)'"
            ).fetchall()
        )
        try:
            for name in shipped:
                conn.execute(f'DROP INDEX public."{name}"')
            btree, brin = (
                _explain_with(conn, method, shipped=method in shipped.values())
                for method in ("btree", "brin")
            )
        finally:
            for method in ("btree", "brin"):
                conn.execute(f"DROP INDEX IF EXISTS public.bench_event_time_{method}")
            conn.execute(sql("telemetry_events", "bionicpro_stack"))
            conn.execute("ANALYZE public.telemetry_events")
    return btree, brin


@dataclass(frozen=True)
class SessionPlan:
    """The night's arrival query in one kind of session: how it aggregated, and its time."""

    statistics: str  # the table's, when it was planned
    server_work_mem: str
    session: str
    strategy: str  # the final aggregate's: Sorted or Hashed
    workers: int  # parallel workers launched
    execution_ms: float


# Servers' work_mem larger than the default (4MB), as servers are often given.
LARGER_WORK_MEM = ("64MB", "256MB")


def arrival_plans(job: Job) -> tuple[SessionPlan, ...]:
    """EXPLAIN (ANALYZE) of the realistic night's arrival query as its nightly run binds it,
    after one run to warm the cache, in the pipeline's session (`postgres.aggregating`): with
    the table's statistics from before the night (`_statistics_before_the_night`), then
    analyzed, on the server's default work_mem; then, the benchmark's database given a larger
    one, in a plain session and in the pipeline's."""
    config = settings()
    dsn = job.stack.dsn("bionicpro")
    params = arrival_params(config.report_tz)
    sessions = {"a plain one": dsn, "the pipeline's": postgres.aggregating(dsn, config)}

    def explain(conninfo: str) -> dict[str, Any]:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            return conn.execute(ARRIVAL_PLAN, params).fetchone()[0][0]

    with psycopg.connect(dsn, autocommit=True) as admin:
        (default,) = admin.execute("SHOW work_mem").fetchone()
        default = f"{default} (default)"
        with _statistics_before_the_night(job, read_from=params["p5"]):
            explain(sessions["the pipeline's"])  # warms the cache, sets the new rows' hint bits
            stale = explain(sessions["the pipeline's"])
        plans = [_session_plan(STALE, default, "the pipeline's", stale)]
        try:
            for work_mem in (None, *LARGER_WORK_MEM):
                if work_mem:
                    admin.execute(f"ALTER DATABASE bionicpro SET work_mem = '{work_mem}'")
                for session, conninfo in sessions.items():
                    if work_mem is None and session == "a plain one":
                        continue  # the same session as the pipeline's on the default
                    plan = explain(conninfo)
                    plans.append(_session_plan(FRESH, work_mem or default, session, plan))
        finally:
            admin.execute("ALTER DATABASE bionicpro RESET work_mem")
    return tuple(plans)


ARRIVAL_PLAN = "EXPLAIN (ANALYZE, FORMAT JSON) " + named_aggregate_sql("events_arrived")
STALE = "from before the night"
FRESH = "analyzed"


@contextmanager
def _statistics_before_the_night(job: Job, *, read_from: datetime) -> Iterator[None]:
    """The table analyzed as it was before the rows the nightly run reads (those received
    after `read_from`: its arrivals, and the overlap below them it reads again), which then come
    back in arrival order: the statistics of a server whose autovacuum has not analyzed the
    table since the last night, as by default it waits for a tenth of the table to change (three
    nights or more at a month's history; docs/scaling.md). Autovacuum is held off on the table
    meanwhile; the table is analyzed after, as the night left it."""
    start, end = night_window(settings().report_tz)
    arrivals = night_arrivals(job)
    columns = ", ".join(arrivals.column_names)
    with psycopg.connect(job.stack.dsn("bionicpro"), autocommit=True) as conn:
        conn.execute("ALTER TABLE public.telemetry_events SET (autovacuum_enabled = off)")
        try:
            conn.execute(
                f"CREATE TEMPORARY TABLE overlap AS SELECT {columns} FROM public.telemetry_events"
                " WHERE received_at > %s AND received_at <= %s",
                (read_from, start),
            )
            conn.execute("DELETE FROM public.telemetry_events WHERE received_at > %s", (read_from,))
            conn.execute("VACUUM ANALYZE public.telemetry_events")
            conn.execute(
                f"INSERT INTO public.telemetry_events ({columns})"
                f" SELECT {columns} FROM overlap ORDER BY received_at"
            )
            night_slice(job, arrivals, start, end)
            yield
        finally:
            conn.execute("ALTER TABLE public.telemetry_events RESET (autovacuum_enabled)")
            conn.execute("VACUUM ANALYZE public.telemetry_events")


def _session_plan(
    statistics: str, work_mem: str, session: str, plan: dict[str, Any]
) -> SessionPlan:
    nodes = list(_nodes(plan["Plan"]))
    return SessionPlan(
        statistics=statistics,
        server_work_mem=work_mem,
        session=session,
        strategy=nodes[0]["Strategy"],  # the final aggregate
        workers=sum(node.get("Workers Launched", 0) for node in nodes),
        execution_ms=plan["Execution Time"],
    )


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for sub in node.get("Plans", []):
        yield from _nodes(sub)


def rows_read(stack: Stack) -> tuple[int, int, float]:
    """What PostgreSQL has read of the telemetry table so far, by its own statistics: rows
    (those sequential scans returned and those index and bitmap scans fetched, before any
    recheck) and blocks (from its cache or the disk); and the seconds its sessions have spent
    executing statements in the database (`active_time`). Read until two reads agree: a backend
    reports its counts as it ends, a moment after its client has gone."""
    query = (
        "SELECT s.seq_tup_read + coalesce(s.idx_tup_fetch, 0),"
        " io.heap_blks_read + io.heap_blks_hit"
        " FROM pg_stat_user_tables AS s JOIN pg_statio_user_tables AS io USING (relid)"
        " WHERE s.relname = 'telemetry_events'"
    )
    active = "SELECT active_time FROM pg_stat_database WHERE datname = current_database()"
    last = None
    for _ in range(50):
        with psycopg.connect(stack.dsn("bionicpro"), autocommit=True) as conn:
            rows, blocks = conn.execute(query).fetchone()
            (milliseconds,) = conn.execute(active).fetchone()
        now = (rows, blocks, milliseconds / 1000)
        if last is not None and now[:2] == last[:2]:
            return now
        last = now
        time.sleep(0.2)
    return last


def postgres_version(stack: Stack) -> str:
    """The server's version and the settings that matter for the day's query."""
    with psycopg.connect(stack.dsn("bionicpro")) as conn:
        version, buffers, workers = (
            conn.execute(f"SHOW {name}").fetchone()[0]
            for name in ("server_version", "shared_buffers", "max_parallel_workers_per_gather")
        )
    return f"{version} (pgserver; shared_buffers {buffers}, parallel workers {workers})"


def _explain_with(conn: psycopg.Connection[Any], method: str, *, shipped: bool) -> IndexPlan:
    """The plan with only a `method` index on event_time: the second of two runs (the first
    warms the cache), its numbers from the JSON plan."""
    index = f"bench_event_time_{method}"
    conn.execute(f"CREATE INDEX {index} ON public.telemetry_events USING {method} (event_time)")
    conn.execute("ANALYZE public.telemetry_events")
    query = "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + named_aggregate_sql()
    params = aggregate_params(DAY, settings().report_tz)
    conn.execute(query, params)
    plan = conn.execute(query, params).fetchone()[0][0]
    size = conn.execute("SELECT pg_relation_size(%s::regclass)", (f"public.{index}",)).fetchone()[0]
    conn.execute(f"DROP INDEX public.{index}")
    top = plan["Plan"]
    return IndexPlan(
        method=method,
        shipped=shipped,
        index=index,
        index_mb=size / 2**20,
        execution_ms=plan["Execution Time"],
        hit=top["Shared Hit Blocks"],
        read=top["Shared Read Blocks"],
        tree="\n".join(_plan_lines(top)),
    )


def _plan_lines(node: dict[str, Any], depth: int = 0) -> Iterator[str]:
    """A compact plan tree: node, index, time, rows and buffers of each step."""
    on = f" using {node['Index Name']}" if "Index Name" in node else ""
    extras = "".join(
        f", {key.lower()} {node[key]:,}"
        for key in ("Rows Removed by Index Recheck", "Rows Removed by Filter", "Workers Launched")
        if node.get(key)
    )
    yield (
        f"{'  ' * depth}-> {node['Node Type']}{on}  (actual {node['Actual Total Time']:,.0f} ms,"
        f" rows {node['Actual Rows']:,}, loops {node['Actual Loops']}, shared hit"
        f" {node['Shared Hit Blocks']:,} read {node['Shared Read Blocks']:,}{extras})"
    )
    for sub in node.get("Plans", []):
        yield from _plan_lines(sub, depth + 1)

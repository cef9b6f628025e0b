"""The measurements, each in a fresh subprocess (`run_child`), so that its peak RSS is its own.

A pipeline run reports its stages' times itself (`RunResult.stage_seconds`); nothing here wraps
or replaces the package's functions."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from bionicpro_etl.config import settings
from bionicpro_etl.extract import partials_sql
from bionicpro_etl.report_day import day_bounds, report_day_of
from bionicpro_etl.run import RunResult
from bionicpro_stack.bench.check import COLUMNS, snapshot_path
from bionicpro_stack.bench.data import (
    aggregate_params,
    append_next_night,
    append_night,
    generate_sources,
    night_arrivals,
    night_slice,
    night_window,
    realistic_sources,
)
from bionicpro_stack.bench.job import DAY, MART, Job, Measured
from bionicpro_stack.bench.source import rows_read
from bionicpro_stack.services import CRM_USER, EMBEDDED_ENGINE_ENV, Stack

if TYPE_CHECKING:  # imported where used, so that the measured processes load only what they need
    import requests
    from clickhouse_connect.driver.client import Client

# A failing task of (c) would wait out its retries (2 x 5 minutes); the benchmark fails instead.
AIRFLOW_TIMEOUT_S = 300


def measure_aggregate(job: Job) -> Measured:
    """(a) The aggregate query of the job's day read whole, alone, every batch read, through
    ADBC: the benchmark's day, or (a_r) one of the realistic table's."""
    import adbc_driver_postgresql.dbapi as adbc_pg

    day = date.fromisoformat(job.day)
    params = tuple(aggregate_params(day, settings().report_tz).values())
    started = perf_counter()
    rows = 0
    with adbc_pg.connect(job.stack.dsn("bionicpro")) as conn, conn.cursor() as cur:
        cur.execute(partials_sql("events_of_day"), parameters=params)
        for batch in cur.fetch_record_batch():
            rows += batch.num_rows
    return Measured(seconds=perf_counter() - started, rows=rows)


def measure_scan_floor(job: Job) -> Measured:
    """The scan floor beside (a): the day's rows counted through the same index, no values read
    out. Any design that reads the day from PostgreSQL pays at least this."""
    return _read_day(job, "count(*)")


def measure_copy_floor(job: Job) -> Measured:
    """The copy floor beside (a): the day's raw rows streamed out as Arrow (ADBC), as a design
    that aggregates outside PostgreSQL would have to."""
    return _read_day(job, COPIED)


# The columns an aggregate elsewhere would need.
COPIED = (
    "user_id, prosthesis_id, event_time, received_at, action_type, response_time_ms,"
    " battery_level, duration_seconds"
)


def _read_day(job: Job, columns: str) -> Measured:
    import adbc_driver_postgresql.dbapi as adbc_pg

    start, end = day_bounds(DAY, settings().report_tz)
    query = (
        f"SELECT {columns} FROM public.telemetry_events WHERE event_time >= $1 AND event_time < $2"
    )
    started = perf_counter()
    rows = 0
    with adbc_pg.connect(job.stack.dsn("bionicpro")) as conn, conn.cursor() as cur:
        cur.execute(query, parameters=(start, end))
        for batch in cur.fetch_record_batch():
            rows += batch.num_rows if columns == COPIED else batch.column(0)[0].as_py()
    return Measured(seconds=perf_counter() - started, rows=rows)


def _crm_session(stack: Stack) -> requests.Session:
    import requests

    from bionicpro_etl import extract

    session = extract.with_retries(requests.Session())
    session.auth = (CRM_USER, stack.crm_password())
    return session


def measure_pipeline(job: Job) -> Measured:
    """(b) `pipeline.run_all` for the day, clients opened and closed inside the timing; the
    stages' own times come back in its result."""
    started = perf_counter()
    result = run_day(job.stack, job.arg, date.fromisoformat(job.day))
    return Measured(
        seconds=perf_counter() - started, rows=result.loaded.published_rows, run=result.to_xcom()
    )


def run_day(
    stack: Stack, run_id: str, day: date, open_client: Callable[[], Client] | None = None
) -> RunResult:
    """`pipeline.run_all` for `day`, its clients opened and closed around it (the ClickHouse
    client by `open_client`, the stack's by default)."""
    from bionicpro_etl import pipeline
    from bionicpro_etl.run import Run

    client = (open_client or stack.clickhouse)()
    session = _crm_session(stack)
    try:
        return pipeline.run_all(
            dsn=stack.dsn("bionicpro"),
            session=session,
            base_url=stack.crm_url,
            client=client,
            run=Run(run_id=run_id, day=day),
        )
    finally:
        session.close()
        client.close()


def measure_quarter_hours(job: Job) -> Measured:
    """(q) The realistic night's arrivals a quarter of an hour at a time, each followed by the
    run of a `*/15` schedule (its own day: the one it runs in) with the overlap narrowed to five
    minutes, as docs/operations.md advises for it, timed one by one; the appends are not, and
    what PostgreSQL read is counted around each run only (the appends' BRIN summaries, which
    autovacuum makes between two runs, read the new pages once more). Returns the runs' total, each run's time, and the last run's result."""
    os.environ.update(QUARTER_HOUR_ENV)
    tz = settings().report_tz
    arrivals = night_arrivals(job)
    times, result, read = [], None, [0, 0, 0.0]
    for k in range(QUARTERS):
        after, until = quarter(k, tz)
        night_slice(job, arrivals, after, until)
        before = rows_read(job.stack)
        started = perf_counter()
        result = run_day(job.stack, f"{job.arg}_{k}", report_day_of(after, tz))
        times.append(perf_counter() - started)
        read = [
            total + a - b for total, a, b in zip(read, rows_read(job.stack), before, strict=True)
        ]
    return Measured(
        seconds=sum(times),
        rows=result.loaded.published_rows,
        run=result.to_xcom(),
        times=times,
        rows_read=read[0],
        blocks_read=read[1],
        postgres_seconds=read[2],
    )


QUARTER = timedelta(minutes=15)
QUARTERS = 96
QUARTER_OVERLAP_SECONDS = 300
# A `*/15` schedule, each run reading this window below the last bound again (docs/operations.md).
QUARTER_HOUR_ENV = {
    "BIONICPRO_SCHEDULE": "*/15 * * * *",
    "BIONICPRO_ARRIVAL_OVERLAP_SECONDS": str(QUARTER_OVERLAP_SECONDS),
}


def quarter(k: int, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The realistic night's k-th quarter of an hour of arrivals, (after, until]."""
    start, end = night_window(tz)
    return start + k * QUARTER, min(start + (k + 1) * QUARTER, end)


def measure_crm_read(job: Job) -> Measured:
    """The CRM alone: every page through `extract.crm_pages`, validated, nothing stored."""
    from bionicpro_etl import extract

    session = _crm_session(job.stack)
    started = perf_counter()
    items = 0
    with session:
        for page in extract.crm_pages(
            session, job.stack.crm_url, page_size=settings().crm_page_size
        ):
            items += page.items.num_rows + len(page.rejects)
    return Measured(seconds=perf_counter() - started, rows=items)


def measure_airflow(job: Job) -> Measured:
    """(c) `airflow dags test reports_etl_dag <day>`, the whole command (Airflow's start
    included: that is what a run costs); its peak RSS is that of the largest process it ran."""
    stack = job.stack
    log = stack.root / "logs" / f"dags-test-{DAY}.log"
    started = perf_counter()
    airflow(stack, ["dags", "test", "reports_etl_dag", DAY.isoformat()], log)
    return Measured(seconds=perf_counter() - started, rows=-1)


def airflow(stack: Stack, args: list[str], log: Path) -> None:
    """`airflow <args>` on the bench stack, its output to `log`; fails the benchmark if it
    fails or outlasts AIRFLOW_TIMEOUT_S."""
    executable = str(Path(sys.executable).with_name("airflow"))
    command = f"`airflow {' '.join(args)}`"
    with log.open("w") as out:
        try:
            done = subprocess.run(
                [executable, *args],
                env={**os.environ, **stack.airflow_env()},
                stdout=out,
                stderr=out,
                timeout=AIRFLOW_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            raise SystemExit(f"{command} took over {AIRFLOW_TIMEOUT_S} s; see {log}") from None
    if done.returncode:
        raise SystemExit(f"{command} failed; see {log}")


def measure_idle(job: Job) -> Measured:
    """(0) The floor of (b)'s memory: the pipeline imported, the chDB engine opened, no work."""
    from bionicpro_etl import pipeline  # noqa: F401 (imported for its memory, as (b) does)

    started = perf_counter()
    client = job.stack.clickhouse()
    client.command("SELECT 1")
    client.close()
    return Measured(seconds=perf_counter() - started, rows=0)


def measure_naive(job: Job) -> Measured:
    """(d) The anti-pattern reference of `bench.naive`, into `bench_naive.mart`."""
    from bionicpro_stack.bench import naive

    stack = job.stack
    started = perf_counter()
    rows = naive.run(
        pg_url=f"postgresql+psycopg://postgres@/bionicpro?host={stack.pg_dir}",
        crm_url=stack.crm_url,
        auth=(CRM_USER, stack.crm_password()),
        chdb_path=str(stack.clickhouse_dir),
        day=DAY,
        tz=settings().report_tz,
        run_id="bench_naive",
    )
    return Measured(seconds=perf_counter() - started, rows=rows)


def snapshot(job: Job) -> Measured:
    """The rows of `job.table` from `job.first_day` to `job.day` (the report columns it has), saved as Parquet
    for the comparison; also reports the engine's version."""
    import pyarrow.parquet as pq

    client = job.stack.clickhouse()
    try:
        has = set(client.query(f"SELECT * FROM {job.table} LIMIT 0").column_names)
        rows = client.query_arrow(
            f"SELECT {', '.join(c.name for c in COLUMNS if c.name in has)} FROM {job.table}"
            " WHERE report_date BETWEEN {first:Date} AND {last:Date}"
            " ORDER BY report_date, user_id, prosthesis_id",
            parameters={
                "first": date.fromisoformat(job.first_day),
                "last": date.fromisoformat(job.day),
            },
        )
        version = client.server_version
    finally:
        client.close()
    pq.write_table(rows, snapshot_path(job.stack, job.arg))
    return Measured(seconds=0.0, rows=rows.num_rows, version=version)


CHILDREN: dict[str, Callable[[Job], Measured]] = {
    "generate": generate_sources,
    "next_night": append_next_night,
    "realistic_sources": realistic_sources,
    "night": append_night,
    "aggregate": measure_aggregate,
    "scan_floor": measure_scan_floor,
    "copy_floor": measure_copy_floor,
    "quarter_hours": measure_quarter_hours,
    "pipeline": measure_pipeline,
    "crm_read": measure_crm_read,
    "airflow": measure_airflow,
    "naive": measure_naive,
    "idle": measure_idle,
    "snapshot": snapshot,
}


def child(name: str, job: Job) -> None:
    """Run one measurement in this (fresh) process and write its result, peak RSS included."""
    measured = CHILDREN[name](job)
    peak_kb = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    )
    measured.peak_rss_mb = peak_kb / 1024
    Path(job.result).write_text(measured.to_json())


def run_child(name: str, job: Job, arg: str = "", table: str = MART) -> Measured:
    """`name` in a fresh interpreter, in the environment the stack gives Airflow's workers;
    no chDB client is open here while it runs."""
    result = Path(job.root) / "results" / f"{name}-{arg or 'run'}.json"
    result.unlink(missing_ok=True)
    job = replace(job, arg=arg, table=table, result=str(result))
    subprocess.run(
        [sys.executable, "-m", "bionicpro_stack.bench", "--child", name, "--job", job.to_json()],
        check=True,
        env={**os.environ, **EMBEDDED_ENGINE_ENV},
    )
    return Measured.from_json(result.read_text())

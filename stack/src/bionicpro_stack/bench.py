"""`make bench`: one report day at production scale, built four ways on the same data.

(a) the lower bound: the day's aggregate query (`sql/telemetry_daily.sql`) on PostgreSQL alone,
    read through ADBC as the pipeline reads it;
(b) the pipeline without Airflow (`pipeline.run_all`), then again with no new data;
(c) the same day through `airflow dags test reports_etl_dag <day>`;
(d) the naive reference of `bench_naive` (pandas, JSON hand-overs, row-wise apply);
(n) after those, the next night: the following day arrives with late events of the report day,
    and the pipeline runs for it from the first night's watermark (a nightly run's cost).

Each is measured in a fresh subprocess, so that its peak RSS is its own, and repeated (`--repeat`,
rounds interleaved) so that one noisy moment of a shared machine does not make the verdict; the
median is reported. The mart rows of (b), (c) and (d) of every round must agree with each other
and with (a)'s row count, or the run exits non-zero: a fast wrong answer does not pass.

The results go to docs/benchmarks.md (docs/benchmarks-small.md with SMALL=1; `--out` elsewhere),
with EXPLAIN (ANALYZE, BUFFERS) of the day's query under a B-tree index on event_time and under a
BRIN index, whichever of the two the project ships.

The stack is its own (`.stack/bench`), so the benchmark never touches the demo's data.
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import json
import os
import platform
import re
import resource
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bionicpro_etl.config import settings
from bionicpro_etl.queries import sql
from bionicpro_etl.report_day import day_bounds
from bionicpro_stack import generate
from bionicpro_stack.services import CRM_USER, EMBEDDED_ENGINE_ENV, Stack

if TYPE_CHECKING:  # imported where used, so that the measured processes load only what they need
    import pandas as pd
    import psycopg
    import requests

ROOT = Path(".stack/bench")
DAY = date(2024, 3, 14)
SEED = 42
# The table also holds older days of the same size, so that the report day is a range of it (as
# in production, where it holds months) and the index on event_time has work to do. They lie just
# before the pipeline's look-back window, so that every run builds the one report day only.
HISTORY_DAYS = 2
MART = "bionicpro_reports.reports_data_mart"
NAIVE_TABLE = "bench_naive.mart"
RUN_ID = "bench_pipeline"
FLOAT_COLUMNS = (
    "avg_response_time",
    "max_response_time",
    "min_response_time",
    "avg_battery_level",
    "min_battery_level",
    "usage_hours",
    "actions_per_hour",
    "efficiency_score",
)
CONTRACT_COLUMNS = (
    "user_id",
    "email",
    "first_name",
    "last_name",
    "prosthesis_id",
    "report_date",
    "total_actions",
    "avg_response_time",
    "max_response_time",
    "min_response_time",
    "grasp_count",
    "release_count",
    "flex_count",
    "avg_battery_level",
    "min_battery_level",
    "total_usage_seconds",
    "usage_hours",
    "actions_per_hour",
    "efficiency_score",
    "order_date",
    "status",
)
# The pipeline's stages, timed one by one inside run (b) to show where its time goes (those that
# `pipeline` does not have are skipped).
STAGES = (
    "create_data_mart_table",
    "plan_report_days",
    "extract_telemetry",
    "extract_crm_data",
    "transform_data",
    "check_data_quality",
    "load_to_clickhouse",
)
# A failing task of (c) would wait out its retries (2 x 5 minutes); the benchmark fails instead.
AIRFLOW_TIMEOUT_S = 300
TARGETS = {"b/a": 1.3, "peak RSS (b), MB": 500.0, "CRM read, s": 3.0, "no new data / (b)": 0.10}


@dataclass(frozen=True)
class Scale:
    events: int
    prostheses: int
    users: int
    crm_orders: int
    repeat: int


FULL = Scale(events=10_000_000, prostheses=50_000, users=40_000, crm_orders=40_000, repeat=3)
SMALL = Scale(events=500_000, prostheses=5_000, users=4_000, crm_orders=4_000, repeat=1)


@dataclass(frozen=True)
class Job:
    """What a measuring subprocess needs to know, passed to it as JSON."""

    root: str
    crm_port: int
    scale: Scale
    arg: str = ""  # the run id of a pipeline run, the label of a snapshot
    table: str = MART  # the table a snapshot reads
    result: str = ""
    day: str = DAY.isoformat()  # a pipeline run's own day; a snapshot reads DAY to this one

    @property
    def stack(self) -> Stack:
        return Stack(Path(self.root), self.crm_port)

    @classmethod
    def from_json(cls, text: str) -> Job:
        raw = json.loads(text)
        return cls(**{**raw, "scale": Scale(**raw["scale"])})


@dataclass
class Measured:
    seconds: float
    rows: int
    peak_rss_mb: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)  # what a pipeline run says it did
    version: str = ""


# --- the data: one report day at an exact scale ---------------------------------------------


def fleet(scale: Scale, seed: int = SEED) -> pa.Table:
    """Prostheses 1..P and their owners: one each for users 1..U, the rest to random users."""
    rng = np.random.default_rng([seed, 10])
    extra = scale.prostheses - scale.users
    owners = np.concatenate(
        [
            np.arange(1, scale.users + 1),
            rng.choice(scale.users, extra, replace=extra > scale.users) + 1,
        ]
    )
    numbers = np.arange(1, scale.prostheses + 1)
    order = np.argsort(owners, kind="stable")
    return pa.table({"user_id": owners[order], "prosthesis_id": _ids("PROT-", numbers[order])})


def _ids(prefix: str, numbers: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(
        prefix, pc.utf8_lpad(pc.cast(pa.array(numbers), pa.string()), 6, "0"), ""
    )


def telemetry_day(devices: pa.Table, day: date, tz: ZoneInfo, events: int) -> pa.Table:
    """Exactly `events` events of one report day, the way `generate.telemetry_day` makes them
    (daily rhythm, every action kind, missing and invalid measurements, late uploads), but with
    the total fixed and spread over the fleet by a per-device rate."""
    from bionicpro_stack.generate import ACTION_WEIGHTS, ACTIONS, HOUR_WEIGHTS, _spoil

    rng = np.random.default_rng([SEED, 1, day.toordinal()])
    rate = np.random.default_rng([SEED, 2]).lognormal(0.0, 0.45, devices.num_rows)
    device = np.repeat(np.arange(devices.num_rows), rng.multinomial(events, rate / rate.sum()))
    n = events

    start, end = day_bounds(day, tz)
    day_seconds = (end - start).total_seconds()
    hour = rng.choice(24, size=n, p=HOUR_WEIGHTS / HOUR_WEIGHTS.sum())
    offset = np.minimum(hour * 3600 + rng.random(n) * 3600, day_seconds - 1e-3)
    event_us = int(start.timestamp() * 1_000_000) + (offset * 1_000_000).astype(np.int64)
    late = rng.random(n) < 0.03
    delay = rng.exponential(30, n) + late * rng.uniform(86_400, 5 * 86_400, n)
    battery = np.clip(
        100 - offset / day_seconds * rng.uniform(40, 80, n) + rng.normal(0, 2, n), 0, 100
    )
    return pa.table(
        {
            "user_id": devices["user_id"].take(device),
            "prosthesis_id": devices["prosthesis_id"].take(device),
            "event_time": pa.array(event_us, pa.timestamp("us", tz="UTC")),
            "received_at": pa.array(
                event_us + (delay * 1_000_000).astype(np.int64), pa.timestamp("us", tz="UTC")
            ),
            "action_type": pa.array(ACTIONS).take(
                rng.choice(len(ACTIONS), size=n, p=ACTION_WEIGHTS)
            ),
            "response_time_ms": _spoil(
                rng, rng.lognormal(np.log(120), 0.5, n), missing=0.02, invalid=0.005, bad=-1.0
            ),
            "battery_level": _spoil(rng, battery, missing=0.02, invalid=0.003, bad=103.5),
            "duration_seconds": _spoil(
                rng, rng.exponential(240.0, n), missing=0.01, invalid=0.003, bad=-2.0
            ),
        }
    )


def next_night(devices: pa.Table, tz: ZoneInfo, events: int, watermark: datetime) -> pa.Table:
    """What the next night's run finds: the following day's `events` (made as `telemetry_day`
    makes them) and `late_uploads` of the report day, in arrival order. The table
    already holds the report day's late tail, which reaches days past the following one; so the
    batch's arrivals are moved to begin just after `watermark`, keeping their order and spacing."""
    following = telemetry_day(devices, DAY + timedelta(days=1), tz, events)
    late = telemetry_day(devices, DAY, tz, late_uploads(events))
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


def crm_items(devices: pa.Table, scale: Scale, day: date) -> pa.Table:
    """Exactly `crm_orders` CRM items as a real CRM holds them: orders for most prostheses (a few
    naming another prosthesis), customers without telemetry, older versions of 5 % of the
    orders, and three items that do not validate."""
    from bionicpro_stack.generate import FIRST_NAMES, LAST_NAMES, STATUSES

    rng = np.random.default_rng([SEED, 3])
    strangers = max(1, scale.crm_orders // 50)
    older = scale.crm_orders // 20
    current = scale.crm_orders - strangers - older - 3
    if not 0 < current <= devices.num_rows:
        raise SystemExit(
            f"--crm-orders {scale.crm_orders} does not fit {devices.num_rows} prostheses"
        )
    ordered = np.sort(rng.choice(devices.num_rows, current, replace=False))
    other = rng.random(current) < 0.03
    users = np.concatenate(
        [
            devices["user_id"].to_numpy()[ordered],
            np.arange(scale.users + 1, scale.users + 1 + strangers),
        ]
    )
    ids = pa.concat_arrays(
        [
            pc.if_else(
                pa.array(other),
                _ids("PROT-9", ordered + 1),
                devices["prosthesis_id"].combine_chunks().take(pa.array(ordered)),
            ),
            _ids("PROT-8", np.arange(1, strangers + 1)),
        ]
    )
    k = len(users)
    base = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    base_us = int(base.timestamp() * 1e6)
    age_s = rng.integers(1, 300, k) * 86_400 + rng.integers(0, 86_400, k)
    order_day = (day - date(1970, 1, 1)).days - rng.integers(30, 900, k)
    items = pa.table(
        {
            "user_id": users,
            "email": pc.binary_join_element_wise(
                "user", pc.cast(pa.array(users), pa.string()), "@example.com", ""
            ),
            "first_name": pa.array(FIRST_NAMES).take(users % len(FIRST_NAMES)),
            "last_name": pa.array(LAST_NAMES).take(users % len(LAST_NAMES)),
            "prosthesis_id": ids,
            "order_date": pa.array(
                order_day.astype(np.int32), pa.date32(), mask=rng.random(k) < 0.02
            ).cast(pa.string()),
            "status": pa.array(STATUSES).take(rng.integers(0, len(STATUSES), k)),
            "updated_at": pa.array(base_us - age_s * 1_000_000, pa.timestamp("us", tz="UTC")),
        }
    )
    # Superseded versions, listed after the current ones: a pending order with an old e-mail.
    superseded = items.take(rng.choice(k, older, replace=older > k))
    superseded = (
        superseded.set_column(
            1,
            "email",
            pc.binary_join_element_wise("old.", superseded["email"], ""),
        )
        .set_column(6, "status", pa.array(["pending"] * older))
        .set_column(
            7,
            "updated_at",
            pc.subtract(superseded["updated_at"], pa.scalar(timedelta(days=10), pa.duration("us"))),
        )
    )
    nobody = scale.users + strangers + 1
    bad = generate.invalid_crm_items(nobody, base)
    return pa.concat_tables([items, superseded, bad.cast(items.schema)])


def named_aggregate_sql() -> str:
    """The day's aggregate query with named placeholders (`%(p1)s`) for psycopg and pandas."""
    return re.sub(r"\$(\d+)", r"%(p\1)s", sql("postgres/telemetry_daily").replace("%", "%%"))


def aggregate_params(day: date, tz: ZoneInfo) -> dict[str, Any]:
    """The query's parameters $1.. as `extract.telemetry_batches` binds them for one day: its
    bounds, the report zone, and all users (shard 0 of 1)."""
    start, end = day_bounds(day, tz)
    return {"p1": start, "p2": end, "p3": tz.key, "p4": 1, "p5": 0}


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
    stack, tz = job.stack, settings().report_tz
    devices = fleet(job.scale)
    days = [*history_days(), DAY]
    events = pa.concat_tables(telemetry_day(devices, d, tz, job.scale.events) for d in days)
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
    for database, table, data in (
        ("bionicpro", "telemetry_events", events),
        ("crm", "crm_orders", crm_items(devices, job.scale, DAY)),
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
    batch = next_night(fleet(job.scale), tz, job.scale.events, watermark)
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
    return Measured(seconds=perf_counter() - started, rows=batch.num_rows, meta={"events": events})


# --- the measurements, each in its own subprocess ------------------------------------------


def measure_aggregate(job: Job) -> Measured:
    """(a) The day's aggregate query alone, every batch read, through ADBC."""
    import adbc_driver_postgresql.dbapi as adbc_pg

    params = tuple(aggregate_params(DAY, settings().report_tz).values())
    started = perf_counter()
    rows = 0
    with adbc_pg.connect(job.stack.dsn("bionicpro")) as conn, conn.cursor() as cur:
        cur.execute(sql("postgres/telemetry_daily"), parameters=params)
        for batch in cur.fetch_record_batch():
            rows += batch.num_rows
    return Measured(seconds=perf_counter() - started, rows=rows)


def _crm_session(stack: Stack) -> requests.Session:
    import requests

    from bionicpro_etl import extract

    session = extract.with_retries(requests.Session())
    session.auth = (CRM_USER, stack.crm_password())
    return session


def measure_pipeline(job: Job) -> Measured:
    """(b) `pipeline.run_all` for the day, clients opened and closed inside the timing; each
    stage is timed too (wrapped where run_all looks it up)."""
    import clickhouse_connect

    from bionicpro_etl import pipeline

    stages: dict[str, float] = {}
    for name in STAGES:
        if hasattr(pipeline, name):
            setattr(pipeline, name, _timed(getattr(pipeline, name), name, stages))
    stack = job.stack
    started = perf_counter()
    client = clickhouse_connect.get_client(interface="chdb", path=str(stack.clickhouse_dir))
    session = _crm_session(stack)
    try:
        counts = pipeline.run_all(
            dsn=stack.dsn("bionicpro"),
            session=session,
            base_url=stack.crm_url,
            client=client,
            run=pipeline.Run(run_id=job.arg, day=date.fromisoformat(job.day)),
        )
    finally:
        session.close()
        client.close()
    return Measured(
        seconds=perf_counter() - started,
        rows=counts.loaded.published_rows,
        stages=stages,
        meta={
            **counts.crm.to_xcom(),
            **counts.loaded.to_xcom(),
            "telemetry_rows": counts.telemetry_rows,
        },
    )


def _timed(stage: Callable[..., Any], name: str, into: dict[str, float]) -> Callable[..., Any]:
    @functools.wraps(stage)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = perf_counter()
        try:
            return stage(*args, **kwargs)
        finally:
            into[name] = into.get(name, 0.0) + perf_counter() - started

    return timed


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
    _airflow(stack, ["dags", "test", "reports_etl_dag", DAY.isoformat()], log)
    return Measured(seconds=perf_counter() - started, rows=-1)


def _airflow(stack: Stack, args: list[str], log: Path) -> None:
    airflow = str(Path(sys.executable).with_name("airflow"))
    command = f"`airflow {' '.join(args)}`"
    with log.open("w") as out:
        try:
            done = subprocess.run(
                [airflow, *args],
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
    import clickhouse_connect

    from bionicpro_etl import pipeline  # noqa: F401 (imported for its memory, as (b) does)

    started = perf_counter()
    client = clickhouse_connect.get_client(interface="chdb", path=str(job.stack.clickhouse_dir))
    client.command("SELECT 1")
    client.close()
    return Measured(seconds=perf_counter() - started, rows=0)


def measure_naive(job: Job) -> Measured:
    """(d) The anti-pattern reference of `bench_naive`, into `bench_naive.mart`."""
    from bionicpro_stack import bench_naive

    stack = job.stack
    started = perf_counter()
    rows = bench_naive.run(
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
    """The rows (contract columns) of `job.table` from DAY to `job.day`, saved as Parquet for the
    comparison; also reports the engine's version."""
    import clickhouse_connect

    client = clickhouse_connect.get_client(interface="chdb", path=str(job.stack.clickhouse_dir))
    try:
        rows = client.query_arrow(
            f"SELECT {', '.join(CONTRACT_COLUMNS)} FROM {job.table}"
            " WHERE report_date BETWEEN {first:Date} AND {last:Date}"
            " ORDER BY report_date, user_id, prosthesis_id",
            parameters={"first": DAY, "last": date.fromisoformat(job.day)},
        )
        version = client.server_version
    finally:
        client.close()
    pq.write_table(rows, _snapshot_path(job.stack, job.arg))
    return Measured(seconds=0.0, rows=rows.num_rows, version=version)


def _snapshot_path(stack: Stack, label: str) -> Path:
    return stack.root / "results" / f"{label}.parquet"


CHILDREN: dict[str, Callable[[Job], Measured]] = {
    "generate": generate_sources,
    "next_night": append_next_night,
    "aggregate": measure_aggregate,
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
    Path(job.result).write_text(json.dumps(asdict(measured)))


def run_child(name: str, job: Job, arg: str = "", table: str = MART) -> Measured:
    """`name` in a fresh interpreter, in the environment the stack gives Airflow's workers;
    no chDB client is open here while it runs."""
    result = Path(job.root) / "results" / f"{name}-{arg or 'run'}.json"
    result.unlink(missing_ok=True)
    job = replace(job, arg=arg, table=table, result=str(result))
    subprocess.run(
        [sys.executable, "-m", "bionicpro_stack.bench", "--child", name, "--job", _json(job)],
        check=True,
        env={**os.environ, **EMBEDDED_ENGINE_ENV},
    )
    return Measured(**json.loads(result.read_text()))


def _env() -> str:
    return ", ".join(f"`{key}={value}`" for key, value in EMBEDDED_ENGINE_ENV.items())


def _json(job: Job) -> str:
    return json.dumps(asdict(job))


# --- the source side: B-tree or BRIN on event_time -----------------------------------------


@dataclass(frozen=True)
class Plan:
    method: str  # btree or brin
    shipped: bool
    index: str
    index_mb: float
    execution_ms: float
    hit: int
    read: int
    tree: str


def source_side(stack: Stack) -> tuple[Plan, Plan]:
    """EXPLAIN (ANALYZE, BUFFERS) of the day's query with a B-tree on event_time, then with a
    BRIN index, each alone (in the benchmark's database only); the shipped indexes are restored
    from the DDL afterwards."""
    import psycopg

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


def _explain_with(conn: psycopg.Connection[Any], method: str, *, shipped: bool) -> Plan:
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
    return Plan(
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


# --- checks ---------------------------------------------------------------------------------


def differences(expected: pd.DataFrame, actual: pd.DataFrame) -> list[str]:
    """Where two sets of the day's mart rows (same order) differ: exact for every column but the
    floats, which agree to 1e-4 relative (all are stored as Float32, so the naive reference's
    float64 arithmetic is compared after the same rounding)."""
    if len(expected) != len(actual):
        return [f"{len(expected)} rows against {len(actual)}"]
    problems = []
    for column in CONTRACT_COLUMNS:
        a, b = expected[column], actual[column]
        if column in FLOAT_COLUMNS:
            x, y = a.to_numpy(dtype=float), b.to_numpy(dtype=float)
            same = (np.isnan(x) & np.isnan(y)) | np.isclose(x, y, rtol=1e-4, atol=1e-6)
        else:
            a, b = a.astype(object), b.astype(object)
            same = ((a.isna() & b.isna()) | (a == b)).to_numpy()
        if not same.all():
            i = int(np.flatnonzero(~same)[0])
            problems.append(
                f"{column}: {int((~same).sum())} rows differ, first at {expected['user_id'][i]}"
                f"/{expected['prosthesis_id'][i]}: {a[i]!r} against {b[i]!r}"
            )
    return problems


# --- the report -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """One measurement over the rounds: the median round is the one reported."""

    runs: list[Measured]

    @property
    def median(self) -> Measured:
        return sorted(self.runs, key=lambda m: m.seconds)[(len(self.runs) - 1) // 2]

    @property
    def seconds(self) -> float:
        return self.median.seconds

    @property
    def peak_rss_mb(self) -> float:
        return max(m.peak_rss_mb for m in self.runs)

    def spread(self) -> str:
        times = [m.seconds for m in self.runs]
        return f" ({min(times):,.2f} to {max(times):,.2f})" if len(times) > 1 else ""


@dataclass
class Results:
    scale: Scale
    small: bool
    load_before: tuple[float, float, float]
    table_rows: int
    runs: dict[str, Series]  # by label: a, b, b', crm, c, d, n, idle
    engine: str
    postgres: str
    plans: tuple[Plan, Plan]
    night_events: int  # the events of the days (n) rebuilt

    def __getitem__(self, label: str) -> Series:
        return self.runs[label]

    def ratios(self) -> dict[str, float]:
        seconds = {label: series.seconds for label, series in self.runs.items()}
        return {
            "b/a": seconds["b"] / seconds["a"],
            "c/a": seconds["c"] / seconds["a"],
            "d/b": seconds["d"] / seconds["b"],
            "no new data / (b)": seconds["b'"] / seconds["b"],
        }

    def against_targets(self) -> list[tuple[str, float, float]]:
        values = {
            **self.ratios(),
            "peak RSS (b), MB": self["b"].peak_rss_mb,
            "CRM read, s": self["crm"].seconds,
        }
        return [(name, values[name], limit) for name, limit in TARGETS.items()]


ROWS = (
    ("a", "(a) aggregate query alone (PostgreSQL, ADBC): the lower bound"),
    ("b", "(b) `pipeline.run_all`, no Airflow"),
    ("b'", "(b') the same again at once, no new data"),
    ("c", "(c) `airflow dags test reports_etl_dag`"),
    ("d", "(d) naive reference (`bench_naive`: pandas, JSON, row-wise apply)"),
    ("n", "(n) the next night: the following day, late events of the report day, a watermark"),
    ("crm", "CRM read alone (`extract.crm_pages`, all pages, validated)"),
    ("idle", "(0) pipeline imported, chDB opened and closed, no work"),
)


def table(r: Results) -> str:
    def line(label: str, title: str) -> str:
        series = r[label]
        if label == "crm":
            rate = f"{series.median.rows / series.seconds:,.0f} items/s"
        elif label == "idle" or (label == "b'" and not series.median.meta.get("telemetry_rows")):
            rate = "no events read"
        elif label == "n":
            rate = f"{r.night_events / series.seconds:,.0f} events/s"
        else:
            rate = f"{r.scale.events / series.seconds:,.0f} events/s"
        return (
            f"| {title} | {series.seconds:,.2f}{series.spread()} | {rate}"
            f" | {series.peak_rss_mb:,.0f} |"
        )

    ratios = ", ".join(f"{name} = {value:.2f}" for name, value in r.ratios().items())
    return "\n".join(
        [
            "| run | wall time, s | rows/s | peak RSS, MB |",
            "|---|---:|---:|---:|",
            *(line(label, title) for label, title in ROWS),
            "",
            f"Ratios (medians): {ratios}.",
        ]
    )


def _stage_times(m: Measured) -> dict[str, float]:
    """A pipeline run's stages in their order, and "the rest" of its time."""
    times = {name: m.stages[name] for name in STAGES if name in m.stages}
    return {**times, "the rest": m.seconds - sum(times.values())}


def _stage(name: str) -> str:
    return f"`{name}`" if name in STAGES else name


def stages(r: Results, label: str) -> str:
    m = r[label].median
    lines = [
        f"| {_stage(name)} | {s:,.2f} | {s / m.seconds:.0%} |"
        for name, s in _stage_times(m).items()
    ]
    return "\n".join([f"| stage | s | share of ({label}) |", "|---|---:|---:|", *lines])


def targets(r: Results) -> str:
    return "\n".join(
        [
            "| target | value | limit | |",
            "|---|---:|---:|---|",
            *(
                f"| {name} | {value:,.2f} | <= {limit:g} | {'met' if value <= limit else '**missed**'} |"
                for name, value, limit in r.against_targets()
            ),
        ]
    )


def markdown(r: Results, command: str) -> str:
    s = r.scale
    btree, brin = r.plans
    small = "\nSmall run (`SMALL=1`): a smoke test of the benchmark, not the numbers to quote.\n"
    return f"""# Benchmark: one report day
{small if r.small else ""}
- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC
- Command: {command}
- Machine: {_machine()}; load average before the run {", ".join(f"{x:.2f}" for x in r.load_before)}
- Software: Python {platform.python_version()}; PostgreSQL {r.postgres};
  chDB {importlib.metadata.version("chdb")} (ClickHouse {r.engine});
  Airflow {importlib.metadata.version("apache-airflow")}; pandas {importlib.metadata.version("pandas")}
- Data: report day {DAY} ({settings().report_tz.key}): {s.events:,} telemetry events from
  {s.prostheses:,} prostheses of {s.users:,} users, and {r["crm"].median.rows:,} CRM items. The
  table also holds {HISTORY_DAYS} older days of the same size ({", ".join(map(str, history_days()))}:
  just before the pipeline's look-back window, so that every run builds the one day):
  {r.table_rows:,} rows in `telemetry_events`, written in arrival order. The day has
  {r["a"].median.rows:,} mart rows.

Every measurement is a fresh process, so its peak RSS is its own ((c): the largest process
Airflow ran), on the same data with PostgreSQL's cache warm, in the environment the stack gives
Airflow's workers ({_env()}: chDB's allocator gives freed memory back at once). There were {s.repeat} round(s), the
measurements interleaved; times are the median round (min to max in brackets), peak RSS the largest.
(b) and (c) each start from an empty ClickHouse store, so both are a first run of the day: no
watermark, the whole CRM listing. (b) {_did(r["b"].median)}; (b'), right after it with nothing changed,
{_did(r["b'"].median)}.

## Results

{table(r)}

Rows/s is the day's telemetry events per second of wall time. The mart rows of the day from (b),
(b'), (c) and (d), in every round, are equal (contract columns; floats to 1e-4 relative, all
stored as Float32), and their count equals the row count of (a).

## Targets

{targets(r)}

{_misses(r)}

## Where (b) spends its time (its median round)

{stages(r, "b")}

"The rest" is opening and closing the chDB engine and the CRM session. `extract_telemetry` is
the day's aggregate query and its staging; compare it with (a), the query alone:
{r["a"].seconds:,.2f} s.

## The next night (n)

After the rounds, the nightly run of the steady state. The first night, (b) on an empty store,
publishes {DAY} (not measured). Then the next night's arrivals land after its watermark, in
arrival order: the following day's {s.events:,} events, made the same way, and
{late_uploads(s.events):,} late events of {DAY}. The run for {DAY + timedelta(days=1)} reads them
from the watermark and {_did(r["n"].median)}: {r.night_events:,} events, since a day that received
late events is rebuilt whole. Each of the {s.repeat} round(s) starts from a copy of the first
night's store; every round built the same rows, and each day's actions in the mart add up to its
events in PostgreSQL, the late ones included.

Median round {r["n"].seconds:,.2f} s, peak RSS {r["n"].peak_rss_mb:,.0f} MB; (a), one day's
aggregate query alone, takes {r["a"].seconds:,.2f} s.

{stages(r, "n")}

`plan_report_days` here reads the arrivals since the watermark (15-minute buckets, then report
days); on a first run it probes the look-back's days instead (`sql/arrival_days.sql`).

## Source side

`EXPLAIN (ANALYZE, BUFFERS)` of the day's query (`sql/telemetry_daily.sql`) on the benchmark
table, the second of two runs each: with only a B-tree index on `event_time`, then with only a
BRIN index (made in the benchmark's database in place of the shipped index on `event_time`,
which is restored after).

| index on event_time | size, MB | execution, ms | shared hit | shared read |
|---|---:|---:|---:|---:|
{_plan_row("B-tree", btree)}
{_plan_row("BRIN", brin)}

{_verdict(btree, brin)}

B-tree plan:

```
{btree.tree}
```

BRIN plan:

```
{brin.tree}
```
"""


def _misses(r: Results) -> str:
    """Why each missed target missed, in the run's own numbers."""
    b, again, idle = r["b"].median, r["b'"].median, r["idle"].median
    why = {
        "b/a": f"(b) takes {b.seconds - r['a'].seconds:,.2f} s more than (a). Its"
        f" `extract_telemetry` took {b.stages.get('extract_telemetry', 0.0):,.2f} s against (a)'s"
        f" {r['a'].seconds:,.2f} s; the other stages: {_by_time(b, 'extract_telemetry')}.",
        "peak RSS (b), MB": f"{idle.peak_rss_mb:,.0f} MB of it is the floor of (0): the"
        " pipeline's imports and the chDB engine, opened with no work.",
        "CRM read, s": f"{r['crm'].median.rows:,} items in {r['crm'].seconds:,.2f} s.",
        "no new data / (b)": f"(b') {_did(again)} in {again.seconds:,.2f} s: {_by_time(again)}.",
    }
    lines = [
        f"- {name}: {why[name]}" for name, value, limit in r.against_targets() if value > limit
    ]
    return "Why the misses:\n\n" + "\n".join(lines) if lines else "Every target is met."


def _by_time(m: Measured, *leave_out: str) -> str:
    """A run's stages, the slowest first."""
    times = sorted(
        ((s, name) for name, s in _stage_times(m).items() if name not in leave_out), reverse=True
    )
    return ", ".join(f"{_stage(name)} {s:,.2f} s" for s, name in times)


def _did(m: Measured) -> str:
    """What a pipeline run reports it did, from its returned metadata."""
    crm = "the whole CRM" if m.meta.get("crm_full_refresh") else "only the CRM's changes"
    return (
        f"built {m.meta.get('days', '?')} day(s) from {m.meta.get('telemetry_rows', 0):,}"
        f" aggregate rows and read {crm} (items: {m.meta.get('crm_items', 0):,})"
    )


def _plan_row(title: str, p: Plan) -> str:
    shipped = ", the shipped kind" if p.shipped else ""
    return (
        f"| {title}{shipped} | {p.index_mb:,.2f} | {p.execution_ms:,.0f} | {p.hit:,} | {p.read:,} |"
    )


def _verdict(btree: Plan, brin: Plan) -> str:
    faster, slower = sorted((brin, btree), key=lambda p: p.execution_ms)
    ratio = slower.execution_ms / faster.execution_ms
    buffers = (
        f"{brin.hit + brin.read:,} buffer accesses against the B-tree's {btree.hit + btree.read:,}"
    )
    smaller = f"{btree.index_mb / brin.index_mb:,.0f} times smaller"
    if brin.execution_ms <= 1.1 * btree.execution_ms:
        shipped = "the kind the project ships" if brin.shipped else "not the kind shipped"
        return (
            f"The data supports BRIN ({shipped}): the day's query is as fast or faster with it"
            f" ({'BRIN' if faster is brin else 'the B-tree'} {ratio:.2f}x faster; {buffers}), from"
            f" an index {smaller}, which also costs far less on every insert. Rows land in"
            " arrival order, which is nearly event_time order, so the day is a compact run of"
            " blocks that a bitmap scan reads once each, where the B-tree visits a heap block per"
            " row; the late uploads only make a few block ranges lossy."
        )
    shipped = "the kind the project ships" if btree.shipped else "not the kind shipped"
    return (
        f"The data supports the B-tree ({shipped}): BRIN is {ratio:.2f}x slower for the day"
        f" ({buffers}), though its index is {smaller}."
    )


def _machine() -> str:
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    mem_kb = int(next(line.split()[1] for line in meminfo if line.startswith("MemTotal")))
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    return (
        f"{os.cpu_count()} CPUs (nproc), {mem_kb / 2**20:.1f} GiB memory, {cpu},"
        f" {platform.system()} {platform.release()}"
    )


# --- the whole run --------------------------------------------------------------------------


def fresh_clickhouse(stack: Stack) -> None:
    """An empty chDB folder, so that (b) and (c) do the same work: a first run of the day (no
    watermark, the whole CRM), not a re-run that the incremental pipeline can shorten."""
    shutil.rmtree(stack.clickhouse_dir, ignore_errors=True)
    stack.clickhouse_dir.mkdir()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench(scale: Scale, small: bool) -> Results | list[str]:
    """Generate, measure, check; returns the results, or what did not match."""
    import psycopg

    load_before = os.getloadavg()
    stack = Stack(root=ROOT.absolute(), crm_port=free_port())
    stack.stop_crm()  # one left by an interrupted run, by the pid it recorded
    stack.up()
    for folder in ("results", "logs"):
        (stack.root / folder).mkdir(exist_ok=True)
    job = Job(root=str(stack.root), crm_port=stack.crm_port, scale=scale)
    runs: dict[str, list[Measured]] = {label: [] for label, _ in ROWS}
    snapshots: list[str] = []

    def snap(label: str, table: str = MART) -> Measured:
        snapshots.append(label)
        return run_child("snapshot", job, label, table)

    try:
        say(f"generating {scale.events:,} events of {DAY}, and {HISTORY_DAYS} older days")
        generated = run_child("generate", job)
        say(f"  {generated.rows:,} rows in {generated.seconds:.0f} s (not measured)")
        say("(0) idle: the pipeline imported, chDB opened")
        fresh_clickhouse(stack)
        runs["idle"].append(run_child("idle", job))
        _airflow(stack, ["db", "migrate"], stack.root / "logs" / "airflow-db-migrate.log")
        for i in range(scale.repeat):
            say(f"round {i + 1}/{scale.repeat}: (a) the aggregate query alone")
            runs["a"].append(run_child("aggregate", job))
            say("  (b) pipeline.run_all, on an empty store")
            fresh_clickhouse(stack)
            runs["b"].append(run_child("pipeline", job, f"{RUN_ID}_{i}"))
            snap(f"pipeline-{i}")
            say("  (b') pipeline.run_all again, no new data")
            runs["b'"].append(run_child("pipeline", job, f"{RUN_ID}_{i}_again"))
            snap(f"pipeline_again-{i}")
            say("  the CRM read alone")
            runs["crm"].append(run_child("crm_read", job))
            say("  (c) airflow dags test, on an empty store")
            fresh_clickhouse(stack)
            runs["c"].append(run_child("airflow", job))
            snap(f"airflow-{i}")
            say("  (d) the naive reference")
            runs["d"].append(run_child("naive", job))
            engine = snap(f"naive-{i}", NAIVE_TABLE).version
        say("source side: EXPLAIN with the B-tree, then with BRIN")
        plans = source_side(stack)
        with psycopg.connect(stack.dsn("bionicpro")) as conn:
            version, buffers, workers = (
                conn.execute(f"SHOW {name}").fetchone()[0]
                for name in ("server_version", "shared_buffers", "max_parallel_workers_per_gather")
            )
        postgres = f"{version} (pgserver; shared_buffers {buffers}, parallel workers {workers})"
        say("(n) the next night: the following day arrives, with late events of the report day")
        arrived, nights = next_nights(stack, job, runs["n"])
    finally:
        stack.down()

    problems = check(stack, snapshots, {m.rows for m in runs["a"]})
    problems += check_nights(stack, nights, arrived.meta["events"], runs["n"])
    if problems:
        return problems
    return Results(
        scale=scale,
        small=small,
        load_before=load_before,
        table_rows=generated.rows,
        runs={label: Series(measured) for label, measured in runs.items()},
        engine=engine,
        postgres=postgres,
        plans=plans,
        night_events=sum(arrived.meta["events"].values()),
    )


def next_nights(stack: Stack, job: Job, into: list[Measured]) -> tuple[Measured, list[str]]:
    """(n): the first night (b) publishes the report day (not measured); then the next night's
    arrivals are appended, and the run for the following day is measured, each round from the
    same copy of the first night's store. Returns the arrivals and the snapshots of the rounds;
    the arrivals stay in the table (the benchmark's next run generates it anew)."""
    fresh_clickhouse(stack)
    run_child("pipeline", job, f"{RUN_ID}_night_1")
    first_night = stack.root / "clickhouse-night-1"
    shutil.rmtree(first_night, ignore_errors=True)
    shutil.copytree(stack.clickhouse_dir, first_night, symlinks=True)
    arrived = run_child("next_night", job)
    say(f"  {arrived.rows:,} arrivals appended in {arrived.seconds:.0f} s (not measured)")
    night = replace(job, day=(DAY + timedelta(days=1)).isoformat())
    snapshots = []
    for i in range(job.scale.repeat):
        say(f"  round {i + 1}/{job.scale.repeat}: pipeline.run_all for {night.day}")
        shutil.rmtree(stack.clickhouse_dir)
        shutil.copytree(first_night, stack.clickhouse_dir, symlinks=True)
        into.append(run_child("pipeline", night, f"{RUN_ID}_night_2_{i}"))
        run_child("snapshot", night, f"next_night-{i}")
        snapshots.append(f"next_night-{i}")
    return arrived, snapshots


def check_nights(
    stack: Stack, snapshots: Sequence[str], events: dict[str, int], runs: Sequence[Measured]
) -> list[str]:
    """Every round of (n) rebuilt both days, built the same rows, and every event of each day,
    the late ones included, is counted in the day's rows exactly once."""
    reference, *others = snapshots
    expected = _read(stack, reference)
    problems = [
        f"{label}: {p}" for label in others for p in differences(expected, _read(stack, label))
    ]
    problems += [
        f"(n) rebuilt {m.meta.get('days')} day(s), not 2" for m in runs if m.meta.get("days") != 2
    ]
    actions = expected.groupby(expected["report_date"].astype(str))["total_actions"].sum()
    problems += [
        f"(n): {day} has {int(actions.get(day, 0)):,} actions in the mart, {n:,} events in PostgreSQL"
        for day, n in events.items()
        if actions.get(day, 0) != n
    ]
    return problems


def _read(stack: Stack, label: str) -> pd.DataFrame:
    return pq.read_table(_snapshot_path(stack, label)).to_pandas()


def check(stack: Stack, snapshots: Sequence[str], aggregate_rows: set[int]) -> list[str]:
    """Every snapshot against the first, and the row count against (a)'s."""
    reference, *others = snapshots
    expected = _read(stack, reference)
    problems = [
        f"{reference} has {len(expected):,} rows, (a) {rows:,}"
        for rows in aggregate_rows
        if rows != len(expected)
    ]
    for label in others:
        problems += [f"{label}: {p}" for p in differences(expected, _read(stack, label))]
    return problems


def say(message: str) -> None:
    print(f"[bench {datetime.now():%H:%M:%S}] {message}", flush=True)


def main(argv: list[str] | None = None) -> None:
    small = os.environ.get("SMALL", "") not in ("", "0")
    default = SMALL if small else FULL
    parser = argparse.ArgumentParser(prog="python -m bionicpro_stack.bench", description=__doc__)
    parser.add_argument("--events", type=int, default=default.events)
    parser.add_argument("--prostheses", type=int, default=default.prostheses)
    parser.add_argument("--users", type=int, default=default.users)
    parser.add_argument("--crm-orders", type=int, default=default.crm_orders)
    parser.add_argument("--repeat", type=int, default=default.repeat, help="rounds to measure")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("docs") / ("benchmarks-small.md" if small else "benchmarks.md"),
        help="where the results go",
    )
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, Job.from_json(args.job))
        return
    scale = Scale(args.events, args.prostheses, args.users, args.crm_orders, args.repeat)
    if scale.prostheses < scale.users:
        parser.error("--prostheses must be at least --users (every user has a prosthesis)")
    if scale.repeat < 1:
        parser.error("--repeat must be at least 1")

    flags = (
        f"--events {scale.events} --prostheses {scale.prostheses} --users {scale.users}"
        f" --crm-orders {scale.crm_orders} --repeat {scale.repeat} --out {args.out}"
    )
    command = f"`python -m bionicpro_stack.bench {flags}`"
    if os.environ.get("MAKELEVEL"):
        command = f"`{'SMALL=1 ' if small else ''}make bench`, that is {command}"
    outcome = bench(scale, small)
    if isinstance(outcome, list):
        print("MISMATCH: the runs do not build the same day:", *outcome, sep="\n  ")
        raise SystemExit(1)

    parts = (table(outcome), targets(outcome), stages(outcome, "b"), stages(outcome, "n"))
    print("", *(f"{part}\n" for part in parts), sep="\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown(outcome, command))
    say(f"written {args.out}")


if __name__ == "__main__":
    main()

"""Incremental runs on the real stack: late telemetry, failed runs, backfills, CRM changes, and
runs with nothing new, all checked through the mart and the run log."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from bionicpro_stack.bench.data import named_aggregate_sql
from conftest import FIRST_DAY, LAST_DAY, MOSCOW, add_late_events, build_day, change_crm_user
from expected import expected_mart
from test_pipeline import assert_same, mart_rows

from bionicpro_etl import pipeline, postgres
from bionicpro_etl.config import settings
from bionicpro_etl.plan import FLOOR_PAGES, arrival_bound, days_with_events
from bionicpro_etl.queries import sql
from bionicpro_etl.report_day import storable_bounds


def last_run(ch) -> dict:
    result = ch.query(
        "SELECT * FROM bionicpro_reports.etl_runs WHERE status = 'success'"
        " ORDER BY finished_at DESC LIMIT 1"
    )
    return dict(zip(result.column_names, result.result_rows[0], strict=True))


def assert_day_matches_sources(stack, ch, day: date) -> None:
    expected = expected_mart(stack.dsn("bionicpro"), stack.dsn("crm"), day, MOSCOW)
    actual = mart_rows(ch, day)
    assert actual.keys() == expected.keys()
    for key, row in expected.items():
        assert_same(actual[key], row)


def state_blocks(ch) -> dict[str, int]:
    """The newest block number of each partition of the telemetry state: a partition replaced
    gets new blocks, where a background merge only joins the parts it has (and renames them)."""
    rows = ch.query(
        "SELECT partition, max(max_block_number) FROM system.parts WHERE active"
        " AND database = 'bionicpro_reports' AND table = 'telemetry_state' GROUP BY partition"
    ).result_rows
    return dict(rows)


def test_late_events_reach_an_already_built_day(stack, ch, crm):
    build_day(stack, ch, crm, FIRST_DAY, "late_a")
    build_day(stack, ch, crm, LAST_DAY, "late_a_night")  # each day is built by its own run
    add_late_events(stack, FIRST_DAY, "PROT-LATE-1", 4)
    assert (5, "PROT-LATE-1", FIRST_DAY) not in mart_rows(ch, FIRST_DAY)

    build_day(stack, ch, crm, LAST_DAY, "late_b")  # a later night: its own day is another one
    run = last_run(ch)
    assert run["days_rebuilt"] == [FIRST_DAY]  # its own day was built already, nothing new
    assert mart_rows(ch, FIRST_DAY)[5, "PROT-LATE-1", FIRST_DAY]["total_actions"] == 4
    assert_day_matches_sources(stack, ch, FIRST_DAY)


def test_a_run_that_fails_after_extracting_loses_nothing(stack, ch, crm):
    build_day(stack, ch, crm, LAST_DAY, "settle")
    before = last_run(ch)["watermark_after"]
    add_late_events(stack, FIRST_DAY, "PROT-LATE-2", 3)

    run = pipeline.Run("dies_after_transform", LAST_DAY)
    plan = pipeline.plan_report_days(stack.dsn("bionicpro"), ch, run)
    pipeline.extract_telemetry(stack.dsn("bionicpro"), ch, run, plan)
    crm_meta = pipeline.extract_crm_data(crm, stack.crm_url, ch, run)
    rows = pipeline.transform_data(ch, run, plan, crm_meta)
    assert FIRST_DAY in rows.days
    # ... and the worker dies here: no load.
    assert last_run(ch)["watermark_after"] == before
    assert (5, "PROT-LATE-2", FIRST_DAY) not in mart_rows(ch, FIRST_DAY)

    build_day(stack, ch, crm, LAST_DAY, "next_night")
    assert FIRST_DAY in last_run(ch)["days_rebuilt"]
    assert mart_rows(ch, FIRST_DAY)[5, "PROT-LATE-2", FIRST_DAY]["total_actions"] == 3
    assert last_run(ch)["watermark_after"] > before


def test_a_run_with_no_new_data_does_almost_nothing(stack, ch, crm):
    build_day(stack, ch, crm, LAST_DAY, "quiet_a")
    before = mart_rows(ch, LAST_DAY)
    blocks = state_blocks(ch)
    build_day(stack, ch, crm, LAST_DAY, "quiet_b")
    run = last_run(ch)
    assert run["run_id"] == "quiet_b"
    assert run["days_rebuilt"] == []  # its day is published and nothing arrived since
    assert run["report_rows"] == run["published_rows"] == 0
    # it read only the arrivals of the overlap window below the last bound, again
    with psycopg.connect(stack.dsn("bionicpro")) as conn:
        (window,) = conn.execute(
            "SELECT count(*) FROM telemetry_events WHERE received_at > %s AND received_at <= %s",
            (run["watermark_before"] - timedelta(seconds=settings().arrival_overlap_seconds),
             run["watermark_after"]),
        ).fetchone()  # fmt: skip
    assert run["events_read"] == window > 0
    # what it read again is what the state holds, in the same slots: no day's state rewritten
    assert state_blocks(ch) == blocks
    assert run["crm_full_refresh"] is False
    assert run["crm_changed_users"] == 0 and run["refreshed_rows"] == 0
    # the items of the last day before the CRM watermark, read again (the clock tolerance)
    with psycopg.connect(stack.dsn("crm")) as conn:
        (overlap,) = conn.execute(
            "SELECT count(*) FROM crm_orders WHERE updated_at >= %s - interval '1 day'",
            (run["crm_watermark_after"],),
        ).fetchone()
    assert 0 < run["crm_items"] + run["crm_rejects"] <= overlap
    assert mart_rows(ch, LAST_DAY) == before


def test_a_forced_run_rebuilds_its_day_though_nothing_arrived(stack, ch, crm):
    """`--conf '{"force_rebuild": true}'`: after a fix made in place at the source."""
    build_day(stack, ch, crm, LAST_DAY, "forced", force=True)
    run = last_run(ch)
    assert run["days_rebuilt"] == [LAST_DAY]
    assert run["published_rows"] == len(mart_rows(ch, LAST_DAY)) > 0


def test_events_older_than_the_look_back_are_counted_not_dropped_silently(stack, ch, crm):
    build_day(stack, ch, crm, LAST_DAY, "before_ancient")
    ancient = LAST_DAY - timedelta(days=45)
    add_late_events(stack, ancient, "PROT-ANCIENT", 2)
    build_day(stack, ch, crm, LAST_DAY, "after_ancient")
    run = last_run(ch)
    assert run["events_beyond_lookback"] == 2
    assert ancient not in run["days_rebuilt"]
    assert mart_rows(ch, ancient) == {}


def test_a_crm_change_reaches_every_row_in_the_look_back(stack, ch, crm):
    for day in (FIRST_DAY, FIRST_DAY + timedelta(days=1), LAST_DAY):
        build_day(stack, ch, crm, day, f"crm_before_{day}")
    with psycopg.connect(stack.dsn("crm")) as conn:
        (user,) = conn.execute(
            "SELECT min(user_id) FROM crm_orders WHERE user_id BETWEEN 1 AND 1000 AND status <> 'suspended'"
        ).fetchone()
    change_crm_user(
        stack, user, email="renamed@example.com", first_name="Renamed", status="suspended"
    )
    rows_of_user = ch.query(
        "SELECT count() FROM bionicpro_reports.reports_data_mart WHERE user_id = {u:UInt64}",
        parameters={"u": user},
    ).result_rows[0][0]
    assert rows_of_user >= 3

    build_day(stack, ch, crm, LAST_DAY, "crm_after")
    run = last_run(ch)
    assert run["crm_changed_users"] == 1
    assert run["refreshed_rows"] > 0
    emails = ch.query(
        "SELECT DISTINCT email, status FROM bionicpro_reports.reports_data_mart"
        " WHERE user_id = {u:UInt64}",
        parameters={"u": user},
    ).result_rows
    assert emails == [("renamed@example.com", "suspended")]
    for day in (FIRST_DAY, LAST_DAY):
        assert_day_matches_sources(stack, ch, day)


def test_a_full_crm_refresh_catches_deleted_orders(stack, ch, crm):
    with psycopg.connect(stack.dsn("crm")) as conn:
        (user,) = conn.execute(
            "SELECT max(user_id) FROM crm_orders WHERE user_id <= 1000"
        ).fetchone()
        saved = conn.execute(
            "DELETE FROM crm_orders WHERE user_id = %s RETURNING user_id, email, first_name,"
            " last_name, prosthesis_id, order_date, status, updated_at",
            (user,),
        ).fetchall()
    assert saved
    try:
        build_day(stack, ch, crm, LAST_DAY, "incremental_misses_deletes")
        statuses = {r["status"] for r in mart_rows(ch, LAST_DAY).values() if r["user_id"] == user}
        assert "unknown" not in statuses  # an incremental read cannot see a deletion

        run = pipeline.Run("full_refresh", LAST_DAY, crm_full_refresh=True)
        pipeline.run_all(stack.dsn("bionicpro"), crm, stack.crm_url, ch, run)
        assert last_run(ch)["crm_full_refresh"] is True
        rows = [r for r in mart_rows(ch, LAST_DAY).values() if r["user_id"] == user]
        assert rows and {(r["status"], r["email"]) for r in rows} == {("unknown", "")}
    finally:
        with psycopg.connect(stack.dsn("crm")) as conn, conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO crm_orders (user_id, email, first_name, last_name, prosthesis_id,"
                " order_date, status, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                saved,
            )
        build_day(stack, ch, crm, LAST_DAY, "restored")


def reset_mart(ch) -> None:
    for database in ("bionicpro_reports", "bionicpro_staging"):
        ch.command(f"DROP DATABASE IF EXISTS {database} SYNC")


def snapshot(ch, days) -> dict:
    return {day: mart_rows(ch, day) for day in days}


def test_a_backfill_equals_each_day_run_alone(stack, ch, crm):
    days = [FIRST_DAY + timedelta(days=n) for n in range(7)]
    assert days[-1] == LAST_DAY
    alone = {}
    for day in days:
        reset_mart(ch)
        build_day(stack, ch, crm, day, f"alone_{day}")
        alone[day] = mart_rows(ch, day)

    reset_mart(ch)
    for day in days:  # what `airflow backfill create` and `make backfill` do: one run per day
        build_day(stack, ch, crm, day, f"backfill__{day}")
    assert snapshot(ch, days) == alone
    assert all(alone.values())


@pytest.mark.parametrize("hour", [6, 12])
def test_a_sub_daily_run_builds_today_so_far(stack, ch, crm, monkeypatch, hour):
    """With BIONICPRO_SCHEDULE="0 */6 * * *", the run for the interval starting at `hour` builds
    that day so far; later arrivals in the day are completed by the next runs."""
    monkeypatch.setenv("BIONICPRO_SCHEDULE", "0 */6 * * *")
    logical = datetime(LAST_DAY.year, LAST_DAY.month, LAST_DAY.day, hour, tzinfo=MOSCOW)
    context = {"run_id": f"scheduled__{hour}", "logical_date": logical}
    run = pipeline.Run.of(context)
    assert run.day == LAST_DAY
    add_late_events(stack, LAST_DAY, f"PROT-NOON-{hour}", 2, user_id=9)
    pipeline.run_all(stack.dsn("bionicpro"), crm, stack.crm_url, ch, run)
    assert mart_rows(ch, LAST_DAY)[9, f"PROT-NOON-{hour}", LAST_DAY]["total_actions"] == 2
    assert_day_matches_sources(stack, ch, LAST_DAY)


def test_a_task_that_fails_for_good_is_logged_and_moves_nothing(stack, ch, monkeypatch):
    """The DAG's failure callback, through the real ClickHouse connection."""
    from types import SimpleNamespace

    from bionicpro_etl import callbacks, schema
    from bionicpro_etl.plan import last_published

    conn = stack.connections()["AIRFLOW_CONN_CLICKHOUSE_DEFAULT"]
    monkeypatch.setenv("AIRFLOW_CONN_CLICKHOUSE_DEFAULT", conn)
    schema.create(ch)
    watermark, _ = last_published(ch)
    context = {
        "run_id": "failed_for_good",
        "logical_date": datetime(2024, 1, 7, 2, tzinfo=MOSCOW),
        "ti": SimpleNamespace(task_id="extract_crm_data"),
        "exception": RuntimeError("CRM http://crm/api/v1/customers failed (HTTP 503)"),
    }
    callbacks.log_failure(context)
    rows = ch.query(
        "SELECT status, report_day, error, watermark_after FROM bionicpro_reports.etl_runs"
        " WHERE run_id = 'failed_for_good'"
    ).result_rows
    assert rows == [
        (
            "failed",
            LAST_DAY,
            "extract_crm_data: CRM http://crm/api/v1/customers failed (HTTP 503)",
            None,
        )
    ]
    assert last_published(ch)[0] == watermark


# The planning and the arrival read as first written: every arrival read row by row, its day
# found by a zone conversion. The cheap forms (a bound found from the table's last pages, a probe
# a day, days found by a binary search of their starts) must find exactly what these find.
REFERENCE_BOUND = """
SELECT max(received_at) FROM public.telemetry_events
WHERE received_at > coalesce(%(watermark)s::timestamptz, '-infinity')
  AND received_at <= now() - make_interval(secs => %(lag)s)
"""
REFERENCE_DAYS = """
SELECT (event_time AT TIME ZONE %(tz)s)::date AS report_date, count(*) AS events
FROM public.telemetry_events
WHERE received_at <= %(until)s
  AND received_at > coalesce(%(after)s::timestamptz, '-infinity')
GROUP BY report_date
"""


def arrived_days(conn, first: date, last: date, tz: ZoneInfo, after, until) -> dict[date, int]:
    """The events per report day of the product's arrival read (its ADBC $n placeholders as
    psycopg's, to run in this transaction)."""
    query = named_aggregate_sql("events_arrived")
    earliest, latest = storable_bounds(tz)
    params = {"p1": first, "p2": last, "p3": tz.key, "p4": until, "p5": after, "p6": until}
    rows = conn.execute(
        f"SELECT report_date, sum(total_actions) FROM ({query}) AS p GROUP BY report_date",
        {**params, "p7": 1, "p8": 0, "p9": 86400, "p10": earliest, "p11": latest},
    ).fetchall()
    return dict(rows)


@pytest.mark.parametrize("zone", ["Europe/Moscow", "Asia/Kathmandu", "America/St_Johns"])
def test_planning_and_arrivals_find_what_reading_every_arrival_finds(stack, zone):
    """Zones with 45- and 30-minute offsets and daylight saving; events a moment either side of
    midnight and of the look-back's start, after the last day, in flight (inside the arrival
    lag), and a newest arrival that is not in the table's last pages. Inside a transaction that
    is rolled back, so the stack's data stays as it was."""
    tz = ZoneInfo(zone)
    config = replace(settings(), report_tz=tz)
    lookback_start = LAST_DAY - timedelta(days=config.lookback_days)
    lag = config.arrival_lag_seconds

    def local(day: date, hour: int, minute: int = 0, second: float = 0) -> datetime:
        return datetime.combine(day, time(hour, minute), tzinfo=tz) + timedelta(seconds=second)

    with psycopg.connect(stack.dsn("bionicpro")) as conn:
        (now,) = conn.execute("SELECT now()").fetchone()
        earlier, later = now - timedelta(hours=3), now - timedelta(hours=1)
        events = [
            (local(LAST_DAY - timedelta(days=9), 23, 59, 59.999), earlier),  # an empty day
            (local(LAST_DAY - timedelta(days=8), 0), later),  # the next one
            (local(lookback_start, 0), later),  # the look-back's first instant
            (local(lookback_start - timedelta(days=1), 23, 59, 59.5), later),  # just before it
            (local(LAST_DAY - timedelta(days=12), 12), now),  # in flight: not yet
            (local(LAST_DAY + timedelta(days=3), 0, 10), later),  # after the last day
            (local(date(2023, 6, 1), 8), later),  # long ago
        ]
        # The newest arrival first, then 4,096+ pages of rows that arrived long before it.
        events.append((local(LAST_DAY - timedelta(days=5), 10), now - timedelta(minutes=10)))
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO telemetry_events (user_id, prosthesis_id, event_time, received_at,"
                " action_type) VALUES (7, 'PROT-PLAN', %s, %s, 'grasp')",
                events,
            )
        conn.execute(
            "INSERT INTO telemetry_events (user_id, prosthesis_id, event_time, received_at,"
            " action_type) SELECT 7, 'PROT-FILLER', '2020-01-01', '2020-01-02', 'grasp'"
            " FROM generate_series(1, 400000)"
        )
        for watermark in (None, earlier - timedelta(minutes=1), later - timedelta(minutes=1)):
            params = {"watermark": watermark, "lag": lag}
            (expected,) = conn.execute(REFERENCE_BOUND, params).fetchone()
            assert arrival_bound(conn, watermark, lag) == (expected or watermark)
        bound = arrival_bound(conn, None, lag)

        first, last = lookback_start, LAST_DAY + timedelta(days=1)
        for after in (earlier - timedelta(minutes=1), later - timedelta(minutes=1)):
            counted = conn.execute(
                REFERENCE_DAYS, {"tz": zone, "until": bound, "after": after}
            ).fetchall()
            expected = {}
            for day, events in counted:  # days outside first..last: the days either side
                day = min(max(day, first - timedelta(days=1)), last + timedelta(days=1))
                expected[day] = expected.get(day, 0) + events
            assert arrived_days(conn, first, last, tz, after, bound) == expected
        assert {first - timedelta(days=1), first, last + timedelta(days=1)} <= expected.keys()

        days = [LAST_DAY + timedelta(days=n) for n in range(-45, 5)]
        counted = conn.execute(REFERENCE_DAYS, {"tz": zone, "until": bound, "after": None})
        with_events = {day for day, _ in counted} & set(days)
        assert days_with_events(conn, days, config, until=bound) == with_events
        assert lookback_start - timedelta(days=1) in with_events
        assert LAST_DAY - timedelta(days=12) not in with_events  # in flight
        conn.rollback()


def test_the_bound_after_a_watermark_reads_the_last_pages_not_every_arrival(stack):
    """When nothing arrived in the last seconds (a quiet source, or a replay), the bound is
    found from the table's last pages (arrival_floor.sql): not by reading every arrival since
    the watermark again. PostgreSQL's own count of the rows this transaction read (rolled back:
    the stack's data stays as it was), after the BRIN summaries autovacuum would make."""
    arrivals = 100_000
    with psycopg.connect(stack.dsn("bionicpro")) as conn:
        (watermark,) = conn.execute("SELECT max(received_at) FROM telemetry_events").fetchone()
        conn.execute(
            "INSERT INTO telemetry_events (user_id, prosthesis_id, event_time, received_at,"
            " action_type) SELECT 7, 'PROT-QUIET', %(at)s, %(at)s + n * interval '1 ms', 'grasp'"
            " FROM generate_series(1, %(n)s) AS n",
            {"at": watermark, "n": arrivals},
        )
        conn.execute("SELECT brin_summarize_new_values('telemetry_events_received_at_brin')")
        lag = settings().arrival_lag_seconds
        assert arrival_bound(conn, watermark, lag) == watermark + timedelta(milliseconds=arrivals)

        floor = sql("postgres/arrival_floor")
        params = {"lag": lag, "watermark": watermark, "pages": FLOOR_PAGES[0]}
        read = (
            "SELECT pg_stat_get_xact_tuples_returned('telemetry_events'::regclass)"
            " + pg_stat_get_xact_tuples_fetched('telemetry_events'::regclass)"
        )
        (before,) = conn.execute(read).fetchone()
        conn.execute(floor, params)
        (after,) = conn.execute(read).fetchone()
        assert after - before < arrivals / 4
        # However the planner prices the TID range: on a table of tens of millions of rows (the
        # benchmark's) it cannot bound one at plan time, takes it for a third of the table, and
        # took the index on received_at instead, reading every arrival since the watermark.
        conn.execute("SET LOCAL enable_tidscan = off")
        plan = conn.execute("EXPLAIN " + floor, params).fetchall()
        assert "received_at_brin" not in str(plan)
        conn.rollback()


def test_the_aggregate_keeps_the_default_work_mem_on_a_server_given_more(stack):
    """On a server given more work_mem than the default, PostgreSQL sorted the aggregate's rows
    more slowly, or hashed the arrivals' groups in one process once they looked small enough to,
    slower still (docs/benchmarks.md, "Source side"). The extract's sessions keep the default;
    a plain session takes the server's."""
    dsn = stack.dsn("bionicpro")
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("ALTER DATABASE bionicpro SET work_mem = '256MB'")
        try:
            work_mem = {}
            for session, conninfo in (
                ("plain", dsn),
                ("extract", postgres.aggregating(dsn, settings())),
            ):
                with psycopg.connect(conninfo) as conn:
                    (work_mem[session],) = conn.execute("SHOW work_mem").fetchone()
        finally:
            admin.execute("ALTER DATABASE bionicpro RESET work_mem")
    assert work_mem == {"plain": "256MB", "extract": "4MB"}

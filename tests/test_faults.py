"""Faults and bad input, injected for real: a CRM server that misbehaves, a PostgreSQL server
that is stopped or whose backend is killed mid-query, a load process killed mid-way, hostile
CRM strings and broken telemetry. After each, every day is either as it was or fully right."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from conftest import FIRST_DAY, LAST_DAY, MOSCOW, add_late_events, build_day, change_crm_user
from conftest import crm_fault as fault
from conftest import crm_served as served
from expected import expected_mart
from test_incremental import assert_day_matches_sources
from test_pipeline import assert_same, mart_rows

from bionicpro_etl import pipeline
from bionicpro_etl.extract import CrmError, crm_pages
from bionicpro_etl.report_day import day_bounds


def read_all(stack, crm, **kwargs) -> int:
    return sum(p.items.num_rows for p in crm_pages(crm, stack.crm_url, page_size=1000, **kwargs))


# --- the CRM ---------------------------------------------------------------------------------


def test_429_waits_for_retry_after_then_succeeds(stack, crm, crm_faults):
    expected = read_all(stack, crm)
    fault(stack, kind="status", status=429, retry_after=1, times=1)
    before, started = served(stack), time.monotonic()
    assert read_all(stack, crm) == expected
    assert time.monotonic() - started >= 1.0  # it waited as told
    assert served(stack) - before == 3  # 429, then the two pages


def test_a_timeout_is_retried(stack, crm, crm_faults):
    expected = read_all(stack, crm)
    fault(stack, kind="delay", seconds=3, times=1)
    assert read_all(stack, crm, timeout=(2.0, 1.0)) == expected


def test_a_connection_dropped_mid_body_is_retried(stack, crm, crm_faults):
    expected = read_all(stack, crm)
    fault(stack, kind="drop", times=2)
    before = served(stack)
    assert read_all(stack, crm) == expected
    assert served(stack) - before == 4  # two dropped bodies, then the two pages


def test_a_crm_that_keeps_failing_fails_the_read_naming_url_status_and_body(stack, crm, crm_faults):
    fault(stack, kind="status", status=503, times=50)
    with pytest.raises(CrmError, match=r"/api/v1/customers.*HTTP 503.*'") as error:
        read_all(stack, crm)
    assert crm.auth[1] not in str(error.value)


def test_credentials_never_show_in_errors(stack, crm, crm_faults):
    password = "s3cret-Pa55"
    crm.auth = ("bionicpro", password)
    with pytest.raises(CrmError, match="HTTP 401") as error:
        read_all(stack, crm)
    assert password not in str(error.value) and password not in repr(error.value.__cause__)


def test_an_empty_full_listing_fails_but_an_empty_increment_is_fine(stack, ch, crm, crm_faults):
    run = pipeline.Run("empty_crm", LAST_DAY, crm_full_refresh=True)
    build_day(stack, ch, crm, LAST_DAY, "before_empty_crm")
    before = mart_rows(ch, LAST_DAY)
    with psycopg.connect(stack.dsn("crm")) as conn:
        conn.execute("ALTER TABLE crm_orders RENAME TO crm_orders_away")
        conn.execute("CREATE TABLE crm_orders (LIKE crm_orders_away INCLUDING ALL)")
    try:
        with pytest.raises(CrmError, match="listed no customers"):
            pipeline.run_all(stack.dsn("bionicpro"), crm, stack.crm_url, ch, run)
        assert mart_rows(ch, LAST_DAY) == before
        # an incremental read of nothing new is not an outage
        result = pipeline.run_all(
            stack.dsn("bionicpro"), crm, stack.crm_url, ch, pipeline.Run("quiet_crm", LAST_DAY)
        )
        assert result.crm.crm_items == 0 and result.crm.crm_full_refresh is False
        assert mart_rows(ch, LAST_DAY) == before
    finally:
        with psycopg.connect(stack.dsn("crm")) as conn:
            conn.execute("DROP TABLE crm_orders")
            conn.execute("ALTER TABLE crm_orders_away RENAME TO crm_orders")


def test_hostile_crm_strings_land_byte_for_byte(stack, ch, crm):
    hostile = {
        "email": "x'); DROP TABLE bionicpro_reports.reports_data_mart; --@example.com",
        "first_name": "Robert'); DROP TABLE students;-- {user_id:UInt64}",
        "last_name": 'O\'Brien "🦾" \\ Ωμέγα \u202e末尾 \t tab',
    }
    with psycopg.connect(stack.dsn("crm")) as conn:
        user, prosthesis = conn.execute(
            "SELECT user_id, prosthesis_id FROM crm_orders WHERE user_id BETWEEN 1 AND 1000"
            " AND prosthesis_id LIKE 'PROT-0%%' ORDER BY user_id LIMIT 1"
        ).fetchone()
        conn.execute(
            "INSERT INTO crm_orders (user_id, email, first_name, last_name, prosthesis_id,"
            " order_date, status, updated_at) VALUES (%s, %s, %s, %s, %s, '2023-01-01',"
            " 'active', now())",
            (user, hostile["email"], hostile["first_name"], hostile["last_name"], prosthesis),
        )
    build_day(stack, ch, crm, LAST_DAY, "hostile")
    rows = [r for r in mart_rows(ch, LAST_DAY).values() if r["user_id"] == user]
    assert rows
    for row in rows:
        if row["prosthesis_id"] == prosthesis:
            assert {k: row[k] for k in hostile} == hostile
    assert ch.query("EXISTS TABLE bionicpro_reports.reports_data_mart").result_rows == [(1,)]


# --- PostgreSQL ------------------------------------------------------------------------------


def test_postgres_down_fails_the_run_and_leaves_everything(stack, ch, crm):
    build_day(stack, ch, crm, LAST_DAY, "before_pg_down")
    before = mart_rows(ch, LAST_DAY)
    watermark = latest_watermark(ch)
    stack.stop_postgres()
    try:
        with pytest.raises(Exception, match=r"(?i)connect|connection|socket|server"):
            build_day(stack, ch, crm, LAST_DAY, "pg_down")
    finally:
        stack.start_postgres()
    assert mart_rows(ch, LAST_DAY) == before
    assert latest_watermark(ch) == watermark


def test_a_backend_killed_mid_query_fails_the_extract(stack, ch, crm):
    """The telemetry read waits on a lock, and its backend is terminated while it waits."""
    run = pipeline.Run("killed_backend", LAST_DAY)
    with psycopg.connect(stack.dsn("bionicpro")) as locker:
        locker.execute("LOCK TABLE telemetry_events IN ACCESS EXCLUSIVE MODE")
        errors: list[BaseException] = []

        def extract() -> None:
            try:
                plan = pipeline.plan_report_days(stack.dsn("bionicpro"), ch, run)
                pipeline.extract_telemetry(stack.dsn("bionicpro"), ch, run, plan)
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=extract)
        thread.start()
        with psycopg.connect(stack.dsn("bionicpro"), autocommit=True) as killer:
            deadline = time.monotonic() + 20
            killed = 0
            while not killed and time.monotonic() < deadline:
                time.sleep(0.2)
                killed = killer.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND query ILIKE '%%FROM public.telemetry_events%%'"
                ).fetchone()[0]
        locker.rollback()
        thread.join(30)
    assert killed == 1
    assert errors and "terminat" in str(errors[0]).lower()


def latest_watermark(ch):
    rows = ch.query(
        "SELECT watermark_after FROM bionicpro_reports.etl_runs WHERE status = 'success'"
        " ORDER BY finished_at DESC LIMIT 1"
    ).result_rows
    return rows[0][0] if rows else None


# --- the store: a load killed mid-way --------------------------------------------------------

KILLABLE_RUN = """
import sys, requests
from bionicpro_etl import extract, pipeline
from bionicpro_stack.services import CRM_USER, Stack
stack = Stack(__import__("pathlib").Path(sys.argv[1]), int(sys.argv[2]))
client = stack.clickhouse()
session = extract.with_retries(requests.Session()); session.auth = (CRM_USER, stack.crm_password())
print("started", flush=True)
pipeline.run_all(stack.dsn("bionicpro"), session, stack.crm_url, client,
                 pipeline.Run(sys.argv[3], __import__("datetime").date.fromisoformat(sys.argv[4])))
print("finished", flush=True)
"""


@pytest.mark.parametrize("kill_after", [0.5, 1.5, 3.0, 6.0])
def test_a_load_killed_at_any_moment_leaves_each_day_old_or_new(stack, crm, kill_after):
    """Late events for two months' days; the run is killed (SIGKILL) at some moment; each day
    is then exactly as before or exactly the recomputation, never a mix. Rarely, the engine
    brings back a replaced part on its next start (a ClickHouse bug, docs/operations.md) and a
    day holds keys twice: the next run must repair it, and the round is reported as xfailed."""
    december = date(2023, 12, 31)  # within the look-back of LAST_DAY, in another month
    client = stack.clickhouse()
    try:
        build_day(stack, client, crm, LAST_DAY, f"settle_{kill_after}")
        days = (december, FIRST_DAY, LAST_DAY)
        before = {day: mart_rows(client, day) for day in days}
    finally:
        client.close()
    add_late_events(stack, december, f"PROT-DEC-{kill_after}", 3, user_id=3)
    add_late_events(stack, FIRST_DAY, f"PROT-JAN-{kill_after}", 3, user_id=3)
    after = {
        day: expected_mart(stack.dsn("bionicpro"), stack.dsn("crm"), day, MOSCOW) for day in days
    }

    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    process = subprocess.Popen(
        [sys.executable, "-c", KILLABLE_RUN, str(stack.root), str(stack.crm_port),
         f"killed_{kill_after}", LAST_DAY.isoformat()],
        stdout=subprocess.PIPE, env=env, text=True,
    )  # fmt: skip
    assert process.stdout.readline().strip() == "started"
    time.sleep(kill_after)
    process.send_signal(signal.SIGKILL)
    process.wait(30)

    client = stack.clickhouse()
    try:
        doubled = [day for day in days if holds_a_key_twice(client, day)]
        for day in set(days) - set(doubled):
            now = mart_rows(client, day)
            if now != before[day]:
                assert now.keys() == after[day].keys(), f"{day} is neither old nor new"
                for key, row in after[day].items():
                    assert_same(now[key], row)
        build_day(stack, client, crm, LAST_DAY, f"after_kill_{kill_after}")
        for day in days:  # and the next run brings every day up to date
            assert mart_rows(client, day).keys() == after[day].keys()
    finally:
        client.close()
    if doubled:  # visible in the summary, not hidden: the engine's bug, repaired by the next run
        pytest.xfail(
            f"the engine brought back a replaced part of {doubled} on its start after the kill"
            " (docs/operations.md, ClickHouse pull request 120980); the next run repaired it"
        )


def holds_a_key_twice(client, day: date) -> bool:
    """Whether the mart holds one of `day`'s keys twice, as a part brought back leaves it."""
    return client.query(
        "SELECT count() > uniqExact(user_id, prosthesis_id) FROM bionicpro_reports.reports_data_mart"
        " WHERE report_date = {day:Date}",
        parameters={"day": day},
    ).result_rows[0][0]


def test_a_month_holding_a_key_twice_has_it_once_after_its_next_publish(stack, ch, crm):
    """The embedded engine killed hard mid-publish can bring back a month's replaced part on its
    next start (a ClickHouse bug: docs/operations.md): the month then holds its keys twice. The
    month's next publish keeps each key once, the row built last."""
    day = date(2024, 1, 3)  # a day the run below does not rebuild, in the month it publishes
    build_day(stack, ch, crm, LAST_DAY, "before_the_stale_copy")
    current = mart_rows(ch, day)
    add_stale_copy(ch, "reports_data_mart", "report_date = {day:Date}", day=day)
    with pytest.raises(AssertionError, match="duplicate"):
        mart_rows(ch, day)
    add_late_events(stack, FIRST_DAY, "PROT-STALE", 2, user_id=4)  # the month is published again
    build_day(stack, ch, crm, LAST_DAY, "after_the_stale_copy")
    assert mart_rows(ch, day) == current


def add_stale_copy(ch, table: str, where: str, **parameters: object) -> None:
    """An older version of the rows of `table` that `where` selects, as a part that a hard kill
    of the embedded engine brought back would hold them: one action more each, and in the mart
    built a day earlier."""
    older = ", loaded_at - INTERVAL 1 DAY AS loaded_at" if table == "reports_data_mart" else ""
    ch.command(
        f"INSERT INTO bionicpro_reports.{table}"
        f" SELECT * REPLACE (total_actions + 1 AS total_actions{older})"
        f" FROM bionicpro_reports.{table} WHERE {where}",
        parameters=parameters,
    )


# December's rows, in the mart or in its users' summary
STALE_COPIES = {
    "mart": ("reports_data_mart", "toYYYYMM(report_date) = 202312"),
    "summary": ("user_monthly_summary", "month = '2023-12-01'"),
}


@pytest.mark.parametrize("stale", list(STALE_COPIES))
def test_a_month_the_run_does_not_publish_has_each_key_once_after_it(stack, ch, crm, stale):
    """The part brought back can be of another month of the look-back, one that no late event
    touches, in the mart or in its users' summary: the next run publishes that month again too,
    so both hold each key once, the rows built last, without waiting for late events."""
    december = date(2023, 12, 31)  # within the look-back of LAST_DAY, in another month
    add_late_events(stack, december, f"PROT-STALE-DEC-{stale}", 2, user_id=4)
    # and a day of many orders, so that the run's rows are not all without one (a quality gate)
    add_late_events(stack, FIRST_DAY, f"PROT-STALE-JAN-{stale}", 2, user_id=4)
    build_day(stack, ch, crm, LAST_DAY, f"before_the_stale_{stale}")
    current, summary = mart_rows(ch, december), summary_rows(ch, december)
    add_stale_copy(ch, *STALE_COPIES[stale])
    with pytest.raises(AssertionError, match="duplicate"):
        (mart_rows if stale == "mart" else summary_rows)(ch, december)
    build_day(stack, ch, crm, LAST_DAY, f"after_the_stale_{stale}")  # nothing new for December
    assert mart_rows(ch, december) == current
    assert summary_rows(ch, december) == summary


def summary_rows(ch, day: date) -> dict[int, tuple]:
    """The users' summary of `day`'s month, each user's row once."""
    rows = ch.query(
        "SELECT * FROM bionicpro_reports.user_monthly_summary"
        " WHERE month = toStartOfMonth({day:Date})",
        parameters={"day": day},
    ).result_rows
    keyed = {row[1]: row for row in rows}
    assert len(keyed) == len(rows), "duplicate (month, user_id) rows"
    return keyed


def test_a_crm_change_of_a_user_whose_rows_are_held_twice_publishes_them_once(stack, ch, crm):
    """A user whose CRM data changes has the look-back's rows re-joined from the mart; where a
    part brought back holds them twice, the run still writes each once (two would stop it at
    the duplicate-keys gate, run after run) and the month is left with each key once."""
    build_day(stack, ch, crm, LAST_DAY, "before_the_stale_user")
    with psycopg.connect(stack.dsn("crm")) as conn:
        (user,) = conn.execute(
            "SELECT min(user_id) FROM crm_orders WHERE user_id BETWEEN 1 AND 1000"
        ).fetchone()
    change_crm_user(stack, user, email="stale-copy@example.com")
    add_stale_copy(
        ch,
        "reports_data_mart",
        "user_id = {user:UInt64} AND report_date = {day:Date}",
        user=user,
        day=FIRST_DAY,
    )
    build_day(stack, ch, crm, LAST_DAY, "after_the_stale_user")
    rows = mart_rows(ch, FIRST_DAY)
    assert {r["email"] for r in rows.values() if r["user_id"] == user} == {"stale-copy@example.com"}
    assert_day_matches_sources(stack, ch, FIRST_DAY)


def test_a_published_day_held_twice_is_listed_once_after_the_next_run(stack, ch, crm):
    """`published_days` can get a replaced part back the same way; a day older than the
    look-back, which no run lists anew, is kept once."""
    build_day(stack, ch, crm, LAST_DAY, "before_the_stale_list")
    old = date(2023, 6, 1)  # long before the look-back
    for _ in range(2):
        ch.command(
            "INSERT INTO bionicpro_reports.published_days"
            " VALUES ({day:Date}, true, '2023-06-05 00:00:00', 'old')",
            parameters={"day": old},
        )
    build_day(stack, ch, crm, LAST_DAY, "after_the_stale_list")
    listed = ch.query(
        "SELECT report_date, count() FROM bionicpro_reports.published_days"
        " GROUP BY report_date HAVING count() > 1"
    ).result_rows
    assert listed == []
    assert ch.query(
        "SELECT complete, run_id FROM bionicpro_reports.published_days WHERE report_date = {day:Date}",
        parameters={"day": old},
    ).result_rows == [(True, "old")]


def test_a_day_whose_state_holds_a_key_twice_counts_it_once(stack, ch, crm):
    """The same bug can bring back a replaced part of the telemetry state: the day then holds
    its partial aggregates twice, and merging new arrivals into it would count its events twice.
    The merge keeps each key once, from the newest part."""
    build_day(stack, ch, crm, LAST_DAY, "before_the_state_copy")
    ch.command(
        "INSERT INTO bionicpro_reports.telemetry_state"
        " SELECT * FROM bionicpro_reports.telemetry_state WHERE report_date = {day:Date}",
        parameters={"day": FIRST_DAY},
    )
    add_late_events(stack, FIRST_DAY, "PROT-STATE-COPY", 2, user_id=4)
    build_day(stack, ch, crm, LAST_DAY, "after_the_state_copy")
    assert_day_matches_sources(stack, ch, FIRST_DAY)


# --- broken telemetry ------------------------------------------------------------------------


def test_broken_measurements_count_as_not_measured_and_are_counted(stack, ch, crm):
    start, _ = day_bounds(LAST_DAY, MOSCOW)
    arrived = datetime.now(UTC) - timedelta(minutes=30)
    broken = [
        ("grasp", -5.0, 150.0, -1.0),
        ("Grasp ", math.nan, math.nan, math.inf),
        ("ROTATE", math.inf, -0.1, None),
        ("  flex", None, None, 1e12),  # an absurd duration: not measured, and counted
        ("teleport", 120.0, 55.0, 10.0),
    ]
    with psycopg.connect(stack.dsn("bionicpro")) as conn:
        for i, (action, response, battery, duration) in enumerate(broken):
            conn.execute(
                "INSERT INTO telemetry_events (user_id, prosthesis_id, event_time, received_at,"
                " action_type, response_time_ms, battery_level, duration_seconds)"
                " VALUES (4, 'PROT-BROKEN', %s, %s, %s, %s, %s, %s)",
                (
                    start + timedelta(hours=9, minutes=i),
                    arrived,
                    action,
                    response,
                    battery,
                    duration,
                ),
            )
    build_day(stack, ch, crm, LAST_DAY, "broken_telemetry")
    row = mart_rows(ch, LAST_DAY)[4, "PROT-BROKEN", LAST_DAY]
    assert row["total_actions"] == 5  # an invalid value never drops the event
    # trimmed, any case
    assert (row["grasp_count"], row["flex_count"], row["release_count"]) == (2, 1, 0)
    assert row["avg_response_time"] == pytest.approx(120.0) and row["min_battery_level"] == 55.0
    assert row["total_usage_seconds"] == 10  # the one valid duration
    assert_same(row, expected_mart(stack.dsn("bionicpro"), stack.dsn("crm"), LAST_DAY, MOSCOW)[
        4, "PROT-BROKEN", LAST_DAY
    ])  # fmt: skip
    figures = dict(ch.query(
        "SELECT check, figure FROM bionicpro_reports.quality_checks"
        " WHERE run_id = 'broken_telemetry'"
    ).result_rows)  # fmt: skip
    assert figures["absurd_duration_share"] > 0 and figures["invalid_measurement_share"] > 0

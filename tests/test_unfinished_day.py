"""No unfinished day (issue 9, point 1): on the daily schedule a run never publishes a report
day that has not ended in the report zone, and one whose own day has not ended fails at once and
moves nothing; on a sub-daily schedule it publishes the day so far, and
`bionicpro_reports.published_days` tells readers which days are complete."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import psycopg
import pytest
from conftest import MOSCOW, airflow, build_day
from test_pipeline import mart_rows

from bionicpro_etl import load, pipeline, runlog, transform
from bionicpro_etl.plan import DayNotEnded, last_published
from bionicpro_etl.report_day import day_bounds, report_day_of
from bionicpro_etl.run import Plan, Run, as_utc


def events_of_the_current_day(stack, n: int) -> tuple[date, str, int]:
    """Events of user 5's prosthesis that happened a second ago (by the telemetry database's
    clock) and arrived now. Returns their report day (the one in progress), the prosthesis, and
    how many events it has that day by now."""
    with psycopg.connect(stack.dsn("crm")) as crm_db:
        (prosthesis_id,) = crm_db.execute(
            "SELECT min(prosthesis_id) FROM crm_orders WHERE user_id = 5"
        ).fetchone()
    with psycopg.connect(stack.dsn("bionicpro")) as conn:
        for _ in range(n):
            conn.execute(
                "INSERT INTO telemetry_events (user_id, prosthesis_id, event_time, action_type,"
                " response_time_ms, battery_level, duration_seconds)"
                " VALUES (5, %s, now() - interval '1 second', 'grasp', 100, 50, 60)",
                (prosthesis_id,),
            )
        (now,) = conn.execute("SELECT now()").fetchone()
        day = report_day_of(now - timedelta(seconds=1), MOSCOW)
        start, end = day_bounds(day, MOSCOW)
        (events,) = conn.execute(
            "SELECT count(*) FROM telemetry_events WHERE user_id = 5 AND prosthesis_id = %s"
            " AND event_time >= %s AND event_time < %s",
            (prosthesis_id, start, end),
        ).fetchone()
    return day, prosthesis_id, events


def published_days(ch) -> dict[date, tuple[bool, datetime | None, str]]:
    result = ch.query(
        "SELECT report_date, complete, watermark, run_id FROM bionicpro_reports.published_days"
    )
    return {
        day: (complete, as_utc(mark), run_id) for day, complete, mark, run_id in result.result_rows
    }


def test_the_nightly_run_leaves_the_day_in_progress_to_its_own_run(stack, ch, crm, no_lag):
    """At 02:00 the day that began two hours ago has events; the run for the day that ended
    must not publish them as if they were a whole day."""
    today, _, _ = events_of_the_current_day(stack, 3)
    result = build_day(stack, ch, crm, today - timedelta(days=1), "nightly_beside_today")
    assert today not in result.rows.days
    assert mart_rows(ch, today) == {}
    assert today not in published_days(ch)
    assert published_days(ch)[today - timedelta(days=1)][0] is True  # its own day is complete


def test_a_run_whose_day_has_not_ended_fails_at_once_and_moves_nothing(stack, ch, crm, no_lag):
    """Today's run, or a future logical date: a clear failure before anything is read; the
    watermark and the CRM refresh cadence stay where they were."""
    today, _, _ = events_of_the_current_day(stack, 1)
    before = (last_published(ch), runlog.last_full_crm_refresh(ch), published_days(ch))
    for day in (today, date(2099, 1, 1)):
        run = pipeline.Run(f"too_early_{day}", day, crm_full_refresh=True)
        with pytest.raises(DayNotEnded, match=f"report day {day} has not ended in Europe/Moscow"):
            pipeline.run_all(stack.dsn("bionicpro"), crm, stack.crm_url, ch, run)
    assert (last_published(ch), runlog.last_full_crm_refresh(ch), published_days(ch)) == before
    assert mart_rows(ch, today) == {}


def test_a_future_logical_date_fails_the_airflow_run_without_retries(stack, airflow_db):
    """`airflow tasks test reports_etl_dag create_data_mart_table 2099-01-01`: the first task
    fails for good (AirflowFailException: Airflow does not retry it), naming the day."""
    done = airflow(
        stack, "tasks", "test", "reports_etl_dag", "create_data_mart_table", "2099-01-01"
    )
    message = "report day 2099-01-01 has not ended in Europe/Moscow"
    assert f"AirflowFailException: {message}" in done.stdout + done.stderr
    client = stack.clickhouse()
    try:
        logged = client.query(
            "SELECT status, error FROM bionicpro_reports.etl_runs WHERE report_day = '2099-01-01'"
        ).result_rows
    finally:
        client.close()
    assert [status for status, _ in logged] == ["failed"]  # the failure callback's row
    assert message in logged[0][1]


def test_a_sub_daily_schedule_publishes_the_day_so_far_marked_incomplete(
    stack, ch, crm, no_lag, monkeypatch
):
    monkeypatch.setenv("BIONICPRO_SCHEDULE", "0 * * * *")
    today, prosthesis_id, events = events_of_the_current_day(stack, 2)
    build_day(stack, ch, crm, today - timedelta(days=1), "hourly_yesterday")
    result = build_day(stack, ch, crm, today, "hourly")
    assert mart_rows(ch, today)[5, prosthesis_id, today]["total_actions"] == events
    complete, watermark, run_id = published_days(ch)[today]
    assert (complete, run_id) == (False, "hourly")
    assert watermark == result.plan.watermark_after < day_bounds(today, MOSCOW)[1]
    # Every published day of the look-back reflects the same watermark; those over are complete.
    yesterday = published_days(ch)[today - timedelta(days=1)]
    assert yesterday == (True, watermark, "hourly")


def test_a_day_published_so_far_becomes_complete_once_the_watermark_passes_its_end(ch):
    """The list of published days, from the publishes of two runs: the first read arrivals up
    to 20:00 of the day, the second past its midnight without rebuilding it."""
    day = date(2031, 6, 15)
    start, end = day_bounds(day, MOSCOW)
    first = Plan(
        days=(day,),
        read_whole=(),
        kept=(day,),
        lookback_start=day - timedelta(days=30),
        state_start=day,
        state_end=day,
        watermark_before=None,
        watermark_after=start + timedelta(hours=20),
        reread_from=None,
        reread_next=None,
    )
    second = first.model_copy(update={"days": (), "watermark_after": end + timedelta(hours=1)})

    def publish(run: Run, plan: Plan) -> tuple[date, ...]:
        complete = transform.next_published_days(ch, run.stage, run.run_id, plan, plan.days, MOSCOW)
        load.publish_days(ch, run.stage)
        return complete

    try:
        assert publish(Run("so_far", day), first) == ()
        assert published_days(ch)[day] == (False, first.watermark_after, "so_far")
        assert publish(Run("over", day + timedelta(days=1)), second) == ()
        assert published_days(ch)[day] == (True, second.watermark_after, "over")
        third = second.model_copy(update={"days": (day,)})  # the day rebuilt once complete
        assert publish(Run("rebuilt", day + timedelta(days=1)), third) == (day,)
    finally:
        ch.command(
            "DELETE FROM bionicpro_reports.published_days WHERE report_date = {day:Date}",
            parameters={"day": day},
        )

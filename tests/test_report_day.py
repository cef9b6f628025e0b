"""Which day a run builds (contract section 6), without Airflow."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pendulum
import pytest
from airflow.timetables.base import TimeRestriction
from airflow.timetables.interval import CronDataIntervalTimetable

from bionicpro_etl.config import settings
from bionicpro_etl.report_day import day_bounds, report_day_of
from bionicpro_etl.run import Run

MOSCOW = ZoneInfo("Europe/Moscow")


def test_dags_test_date_is_the_report_day():
    # `airflow dags test reports_etl_dag 2024-01-01`: midnight UTC, 03:00 in Moscow.
    assert report_day_of(datetime(2024, 1, 1, tzinfo=UTC), MOSCOW) == date(2024, 1, 1)


def test_scheduled_run_builds_the_day_that_just_ended():
    """The DAG's own timetable: the run firing at 02:00 on Jan 2 has the logical date Jan 1."""
    timetable = CronDataIntervalTimetable("0 2 * * *", timezone=pendulum.timezone("Europe/Moscow"))
    after_midnight = pendulum.datetime(2024, 1, 1, 0, 30, tz="Europe/Moscow")
    run = timetable.next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(earliest=after_midnight, latest=None, catchup=True),
    )
    assert run.run_after == pendulum.datetime(2024, 1, 2, 2, 0, tz="Europe/Moscow")
    assert report_day_of(run.logical_date, MOSCOW) == date(2024, 1, 1)


@pytest.mark.parametrize(
    ("utc_instant", "day"),
    [
        (datetime(2023, 12, 31, 20, 59, 59, tzinfo=UTC), date(2023, 12, 31)),  # 23:59:59 MSK
        (datetime(2023, 12, 31, 21, 0, 0, tzinfo=UTC), date(2024, 1, 1)),  # 00:00 MSK
    ],
)
def test_midnight_in_the_report_zone(utc_instant, day):
    assert report_day_of(utc_instant, MOSCOW) == day
    start, end = day_bounds(day, MOSCOW)
    assert start <= utc_instant < end


def test_day_bounds_follow_daylight_saving():
    berlin = ZoneInfo("Europe/Berlin")
    start, end = day_bounds(date(2024, 3, 31), berlin)  # clocks go forward: a 23-hour day
    assert end - start == timedelta(hours=23)
    start, end = day_bounds(date(2024, 10, 27), berlin)
    assert end - start == timedelta(hours=25)


def test_non_default_zone_from_the_environment(monkeypatch):
    monkeypatch.setenv("BIONICPRO_REPORT_TZ", "America/New_York")
    tz = settings().report_tz
    assert tz.key == "America/New_York"
    # 02:00 New York on Jan 2 is 07:00 UTC: still Jan 2 there, Jan 1 is the day it built.
    logical = datetime(2024, 1, 1, 7, 0, tzinfo=UTC)  # 02:00 New York, Jan 1: interval start
    assert report_day_of(logical, tz) == date(2024, 1, 1)
    start, _ = day_bounds(date(2024, 1, 1), tz)
    assert start == datetime(2024, 1, 1, 5, 0, tzinfo=UTC)


def test_a_manual_run_without_logical_date_builds_the_day_before_its_trigger():
    """`airflow dags trigger reports_etl_dag` (Airflow 3 gives it no logical date)."""
    context = {
        "run_id": "manual__x",
        "logical_date": None,
        "dag_run": SimpleNamespace(run_after=datetime(2024, 5, 9, 22, 30, tzinfo=UTC)),  # 01:30 MSK
    }
    assert Run.of(context).day == date(2024, 5, 9)


def test_a_naive_logical_date_is_refused():
    with pytest.raises(ValueError, match="time zone"):
        report_day_of(datetime(2024, 1, 1), MOSCOW)

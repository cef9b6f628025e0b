"""What the demo and `python -m bionicpro_stack runs|backfill` tell people: each run in words
that fit 80 columns; and the nightly uploads the demo plays, which add up to the whole data."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from itertools import pairwise

import psycopg
import pytest
from bionicpro_stack import generate, story
from bionicpro_stack.services import Stack
from conftest import FLEET, MOSCOW

from bionicpro_etl.queries import sql

DAY = date(2026, 11, 24)


def run(days: list[date], *, first_run: bool = False, **more: object) -> dict:
    return {
        "report_day": DAY,
        "status": "success",
        "days_rebuilt": days,
        "first_run": first_run,
        "published_rows": 13_776,
        "seconds": 4.9,
        "error": "",
        **more,
    }


def before(n: int) -> date:
    return DAY - timedelta(days=n)


@pytest.mark.parametrize(
    ("row", "told"),
    [
        (run([before(n) for n in range(10)], first_run=True),
         "first run, the whole look-back: 11-15..11-24 (10 days)"),
        (run([DAY]), "own day"),
        (run([before(2), before(1), DAY]), "own day + late arrivals for 11-22, 11-23"),
        (run([before(n) for n in range(6)]), "own day + late arrivals for 11-19..11-23 (5 days)"),
        (run([before(9), before(5), before(3), before(2)]), "late arrivals for 4 days in 11-15..11-22"),
        (run([DAY, DAY + timedelta(days=1)]), "own day + 11-25 so far"),
        (run([]), "nothing new"),
        (run([], status="failed", error="extract_crm_data: CrmError: CRM rejects 3 of 224"),
         "failed: extract_crm_data: CrmError: CRM rejects 3 of 224"),
    ],
)  # fmt: skip
def test_a_run_says_what_it_built_and_why(row, told):
    assert story.what_it_built(row) == told


def test_a_run_line_fits_80_columns_and_wraps_under_its_why():
    line = story.run_line(run([before(n) for n in range(10)], first_run=True), seconds=55.49)
    assert line == "11-24     13,776   55.5  first run, the whole look-back: 11-15..11-24 (10 days)"
    assert story.RUN_HEADER.index("what it built") == line.index("first run")

    failed = run([], status="failed", error="load_to_clickhouse: " + "a long reason " * 12)
    lines = story.run_line(failed).splitlines()
    assert len(lines) > 1 and all(len(line) <= 80 for line in lines)
    assert all(line.startswith(" " * 25) for line in lines[1:])


def test_tables_fit_80_columns_without_cutting_a_value():
    names = (
        "user_id",
        "email",
        "total_actions",
        "avg_response_time",
        "total_hours",
        "avg_efficiency",
    )
    rows = [(176, "user176@example.com", 3884, 134.47, 254.95, 86.55)]
    story.console.begin_capture()
    story.console.print(story.fit_table("", names, rows))
    shown = story.console.end_capture()
    assert all(len(line) <= 80 for line in shown.splitlines())
    assert all(v in shown for v in ("user176@example.com", "3884", "134.47", "254.95", "86.55"))
    assert "efficiency" in shown  # the headers wrap at spaces instead


@pytest.fixture
def scratch_db(stack: Stack):
    """An empty telemetry table in a database of its own, so the test's rows are its own."""
    with psycopg.connect(stack.dsn("postgres"), autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS uploads_test")
        conn.execute("CREATE DATABASE uploads_test")
    with psycopg.connect(stack.dsn("uploads_test"), autocommit=True) as conn:
        conn.execute(sql("telemetry_events", "bionicpro_stack"))
    yield stack.dsn("uploads_test")
    with psycopg.connect(stack.dsn("postgres"), autocommit=True) as conn:
        conn.execute("DROP DATABASE uploads_test WITH (FORCE)")


def test_nightly_uploads_add_up_to_the_data_as_of_the_last_night(scratch_db):
    """The demo's nights: the history as of the first night, then each night's uploads; the
    table ends as one load as of the last night, each event once."""
    first, last = date(2024, 1, 1), date(2024, 1, 7)
    nights = [datetime(2024, 1, d, 2, tzinfo=MOSCOW) for d in (5, 6, 7, 8)]
    loaded = generate.load_telemetry(scratch_db, FLEET, first, last, MOSCOW, as_of=nights[0])
    for after, until in pairwise(nights):
        loaded += generate.upload_arrivals(
            scratch_db, FLEET, first, last, MOSCOW, after=after, until=until
        )
    with psycopg.connect(scratch_db) as conn:
        count, newest = conn.execute(
            "SELECT count(*), max(received_at) FROM telemetry_events"
        ).fetchone()
    whole = sum(generate.telemetry_day(FLEET, d, MOSCOW, nights[-1]).num_rows for d in
                generate.days_between(first, last))  # fmt: skip
    assert count == loaded == whole  # no event twice, none missing
    assert newest <= nights[-1]

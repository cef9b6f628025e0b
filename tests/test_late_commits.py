"""Arrivals that commit late (issue 9, point 7): `received_at` defaults to the start of the
inserting transaction, so a transaction held open longer than the arrival lag commits rows below
a watermark that has already moved past them. The next run counts the window below the watermark
again, finds the day whose count grew, and rebuilds it."""

from __future__ import annotations

from datetime import timedelta

import psycopg
from conftest import FIRST_DAY, LAST_DAY, add_late_events, build_day
from test_incremental import assert_day_matches_sources, last_run
from test_pipeline import mart_rows

from bionicpro_etl.plan import last_published


def test_rows_of_a_transaction_held_open_longer_than_the_lag_reach_their_day(
    stack, ch, crm, no_lag
):
    """A backlog uploaded in one transaction (no lag: any open transaction outlasts it). While
    it is open another device's upload commits, and a run reads past the backlog's start. Once
    the backlog commits, the next run still rebuilds its day."""
    build_day(stack, ch, crm, LAST_DAY, "late_commit_settle")
    meanwhile = FIRST_DAY + timedelta(days=1)
    with psycopg.connect(stack.dsn("bionicpro")) as backlog:
        for minute in range(4):
            backlog.execute(
                "INSERT INTO telemetry_events (user_id, prosthesis_id, event_time, action_type)"
                " VALUES (5, 'PROT-BACKLOG', %s, 'grasp')",
                (f"{FIRST_DAY} 12:0{minute}+03",),
            )
        (started,) = backlog.execute("SELECT now()").fetchone()  # the rows' received_at
        add_late_events(stack, meanwhile, "PROT-MEANWHILE", 1, ago=timedelta(0))
        build_day(stack, ch, crm, LAST_DAY, "late_commit_while_open")
        assert last_published(ch)[0] > started  # read past the open transaction's start
        assert (5, "PROT-BACKLOG", FIRST_DAY) not in mart_rows(ch, FIRST_DAY)
        assert FIRST_DAY not in last_run(ch)["days_rebuilt"]
        backlog.commit()

    build_day(stack, ch, crm, LAST_DAY, "late_commit_after")
    assert FIRST_DAY in last_run(ch)["days_rebuilt"]
    assert mart_rows(ch, FIRST_DAY)[5, "PROT-BACKLOG", FIRST_DAY]["total_actions"] == 4
    assert_day_matches_sources(stack, ch, FIRST_DAY)

    build_day(stack, ch, crm, LAST_DAY, "late_commit_quiet")  # counted once: no rebuild again
    assert last_run(ch)["days_rebuilt"] == []

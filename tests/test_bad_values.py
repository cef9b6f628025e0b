"""No single value stops the reports (issue 9, points 3 and 4): values the source columns allow
but no sensor produces, event times from broken clocks, and CRM items a lax parser would accept,
all against the real stack. Each is counted or rejected with its reason, never guessed, and the
run publishes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import psycopg
from conftest import LAST_DAY, MOSCOW, build_day, crm_fault
from expected import expected_mart
from test_incremental import last_run
from test_pipeline import assert_same, mart_rows

from bionicpro_etl import pipeline
from bionicpro_etl.report_day import day_bounds

BIGGEST_USER = 2**63 - 1  # the largest bigint
LONG_PROSTHESIS = "🦾" + "PROT-" + "ж" * 9993 + "🦿"  # 10,000 characters, emoji at both ends
assert len(LONG_PROSTHESIS) == 10_000


def insert_events(stack, rows) -> None:
    with psycopg.connect(stack.dsn("bionicpro")) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO telemetry_events (user_id, prosthesis_id, event_time, received_at,"
            " action_type, response_time_ms, battery_level, duration_seconds)"
            " VALUES (%s, %s, %s, %s, 'grasp', %s, %s, %s)",
            rows,
        )


def test_no_value_the_columns_allow_stops_the_reports(stack, ch, crm):
    """Measurements at and past their valid ranges (1e308 twice: a PostgreSQL avg or sum of
    them overflows), the largest bigint user with a 10,000-character prosthesis id, and event
    times of broken clocks (2200, 1960, ±infinity, two days ahead of their arrival)."""
    build_day(stack, ch, crm, LAST_DAY, "before_bad_values")  # a watermark to read from
    start, _ = day_bounds(LAST_DAY, MOSCOW)
    arrived = datetime.now(UTC) - timedelta(minutes=30)  # older than the arrival lag
    user, prosthesis = BIGGEST_USER, LONG_PROSTHESIS

    def at(minute: int) -> datetime:
        return start + timedelta(hours=9, minutes=minute)

    insert_events(stack, [
        # user, prosthesis, event_time, received_at, response_time_ms, battery_level, duration_seconds
        (user, prosthesis, at(0), arrived, 1e308, 100.0, 1e308),
        (user, prosthesis, at(1), arrived, 1e308, 100.01, 86400.0),
        (user, prosthesis, at(2), arrived, 1e200, -0.5, 86400.5),
        (user, prosthesis, at(3), arrived, 60000.0, 0.0, 1e200),
        (user, prosthesis, at(4), arrived, 60000.5, 50.0, 0.0),
    ])  # fmt: skip
    broken_clocks = ["2200-01-01 12:00+00", "1960-01-01 12:00+00", "infinity", "-infinity",
                     arrived + timedelta(days=2)]  # fmt: skip
    insert_events(
        stack, [(8, "PROT-CLOCK", when, arrived, 100.0, 50.0, 1.0) for when in broken_clocks]
    )
    with psycopg.connect(stack.dsn("crm")) as conn:
        conn.execute(
            "INSERT INTO crm_orders (user_id, email, first_name, last_name, prosthesis_id,"
            " order_date, status, updated_at) VALUES (%s, 'max@example.com', 'Макс', 'Bigint',"
            " %s, '2149-06-06', 'active', now())",
            (user, prosthesis),
        )
    try:
        result = build_day(stack, ch, crm, LAST_DAY, "bad_values")
    finally:  # the stack is shared: what no reference query can group goes, once counted
        with psycopg.connect(stack.dsn("bionicpro")) as conn:
            conn.execute("DELETE FROM telemetry_events WHERE prosthesis_id = 'PROT-CLOCK'")

    assert all(result.plan.lookback_start <= day <= LAST_DAY for day in result.rows.days)
    assert last_run(ch)["events_bad_time"] == len(broken_clocks)
    assert ch.query(
        "SELECT count() FROM bionicpro_reports.reports_data_mart"
        " WHERE prosthesis_id = 'PROT-CLOCK' OR report_date NOT BETWEEN '2000-01-01' AND '2100-01-01'"
    ).result_rows == [(0,)]

    row = mart_rows(ch, LAST_DAY)[user, prosthesis, LAST_DAY]
    assert row["user_id"] == BIGGEST_USER and row["prosthesis_id"] == LONG_PROSTHESIS
    assert (row["first_name"], row["order_date"]) == ("Макс", date(2149, 6, 6))
    assert row["total_actions"] == 5  # an invalid value never drops the event
    assert (row["min_response_time"], row["max_response_time"]) == (60000.0, 60000.0)
    assert (row["min_battery_level"], row["avg_battery_level"]) == (0.0, 50.0)
    assert row["total_usage_seconds"] == 86400
    expected = expected_mart(stack.dsn("bionicpro"), stack.dsn("crm"), LAST_DAY, MOSCOW)
    assert_same(row, expected[user, prosthesis, LAST_DAY])
    figures = dict(ch.query(
        "SELECT check, figure FROM bionicpro_reports.quality_checks WHERE run_id = 'bad_values'"
    ).result_rows)  # fmt: skip
    assert figures["invalid_measurement_share"] > 0 and figures["absurd_duration_share"] > 0


def test_crm_items_a_lax_parser_accepts_are_rejects_with_their_reason(stack, ch, crm, crm_faults):
    """Served over HTTP beside the real items: each one would change a published order if it
    were read leniently (a user beyond UInt64 would even fail the Arrow batch)."""
    build_day(stack, ch, crm, LAST_DAY, "before_lax_items")
    before = mart_rows(ch, LAST_DAY)
    user, prosthesis = next(
        (u, p) for u, p, _ in before if before[u, p, LAST_DAY]["status"] != "unknown"
    )
    order = {
        "user_id": user, "email": "lax@example.com", "first_name": "Lax", "last_name": "Parser",
        "prosthesis_id": prosthesis, "order_date": "2024-01-15", "status": "guessed",
        "updated_at": datetime.now(UTC).isoformat(),
    }  # fmt: skip
    soon = datetime.now(UTC) + timedelta(days=2)
    lax = {
        "user_id": {"user_id": 2**64},
        "order_date": {"order_date": "1969-12-31"},
        "order_date.": {"order_date": "2149-06-07"},
        "order_date..": {"order_date": 0},
        "updated_at": {"updated_at": soon.isoformat()},
        "updated_at.": {"updated_at": "1705744800"},
        "updated_at..": {"updated_at": 1705744800},
        "last_name": {"last_name": "Half an emoji \ud83e"},
    }
    items = [{**order, **change} for change in lax.values()]
    crm_fault(stack, kind="items", items=items)

    run = pipeline.Run("lax_items", LAST_DAY, crm_full_refresh=True)
    result = pipeline.run_all(stack.dsn("bionicpro"), crm, stack.crm_url, ch, run)

    rejects = ch.query(
        "SELECT reason, item FROM bionicpro_reports.crm_rejects WHERE run_id = 'lax_items'"
        " AND item LIKE '%lax@example.com%' ORDER BY reason"
    ).result_rows
    assert sorted(field.rstrip(".") for field in lax) == sorted(
        reason.split(":")[0] for reason, _ in rejects
    )
    assert result.crm.crm_rejects >= len(lax)
    assert mart_rows(ch, LAST_DAY)[user, prosthesis, LAST_DAY]["status"] != "guessed"
    (watermark,) = ch.query("SELECT max(updated_at) FROM bionicpro_reports.crm_orders").result_rows[
        0
    ]
    assert watermark.replace(tzinfo=UTC) < soon  # no item moved the CRM watermark that far


def test_one_item_from_the_future_never_hides_later_changes(stack, ch, crm):
    """A valid item from a CRM clock 12 hours ahead (within the tolerance); then an order
    changes: the next incremental run still reads the change."""
    build_day(stack, ch, crm, LAST_DAY, "before_future_item")
    rows = mart_rows(ch, LAST_DAY)
    user, prosthesis = next(
        (u, p) for u, p, _ in rows if rows[u, p, LAST_DAY]["status"] != "unknown"
    )
    with psycopg.connect(stack.dsn("crm")) as conn:
        conn.execute(
            "INSERT INTO crm_orders (user_id, email, first_name, last_name, prosthesis_id,"
            " order_date, status, updated_at) VALUES (999999, 'ahead@example.com', 'Clock',"
            " 'Ahead', 'PROT-AHEAD', '2024-01-01', 'active', now() + interval '12 hours')"
        )
    build_day(stack, ch, crm, LAST_DAY, "future_item")
    with psycopg.connect(stack.dsn("crm")) as conn:
        conn.execute(
            "INSERT INTO crm_orders (user_id, email, first_name, last_name, prosthesis_id,"
            " order_date, status, updated_at) SELECT user_id, email, first_name, last_name,"
            " prosthesis_id, order_date, 'returned', now() FROM crm_orders"
            " WHERE user_id = %s AND prosthesis_id = %s ORDER BY updated_at DESC LIMIT 1",
            (user, prosthesis),
        )
    build_day(stack, ch, crm, LAST_DAY, "after_future_item")
    assert last_run(ch)["crm_full_refresh"] is False
    assert mart_rows(ch, LAST_DAY)[user, prosthesis, LAST_DAY]["status"] == "returned"

"""The metric formulas of contract section 5, run by the real transform SQL in chDB over
hand-made staging rows that hit each edge."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pytest

from bionicpro_etl import schema, transform
from bionicpro_etl.schema import STATE
from bionicpro_etl.staging import Staging

# Far from the generated data's days, so that no mart row of another test is in its look-back.
DAY = date(2030, 1, 1)


def aggregates(**overrides):
    """A day's telemetry of one prosthesis as the state holds it (sums and counts), given its
    averages: an average of None means no valid value."""
    row = {
        "user_id": 1, "prosthesis_id": "P-1", "report_date": DAY, "total_actions": 10,
        "avg_response_time": 100.0, "max_response_time": 150.0, "min_response_time": 50.0,
        "grasp_count": 4, "release_count": 3, "flex_count": 2,
        "avg_battery_level": 80.0, "min_battery_level": 60.0, "usage_seconds": 3600.0,
        "invalid_duration_count": 0, "absurd_duration_count": 0, **overrides,
    }  # fmt: skip
    actions = row["total_actions"]
    for average, total, invalid in (
        ("avg_response_time", "response_sum", "invalid_response_count"),
        ("avg_battery_level", "battery_sum", "invalid_battery_count"),
    ):
        mean = row.pop(average)
        row[total], row[invalid] = (0.0, actions) if mean is None else (mean * actions, 0)
    return {**row, "slot": datetime(1970, 1, 1, tzinfo=UTC)}


def crm_item(seq, user_id, prosthesis_id, email, status="active", updated="2024-01-01T00:00:00",
             order_date=date(2023, 5, 1)):  # fmt: skip
    return {
        "seq": seq, "user_id": user_id, "email": email, "first_name": f"F{seq}",
        "last_name": f"L{seq}", "prosthesis_id": prosthesis_id, "order_date": order_date,
        "status": status, "updated_at": datetime.fromisoformat(updated).replace(tzinfo=UTC),
    }  # fmt: skip


def transform_rows(ch, telemetry: list[dict], crm: list[dict]) -> dict[tuple, dict]:
    from bionicpro_etl.extract import CRM_ITEMS_SCHEMA

    stage = Staging("formulas")
    schema.create(ch)
    stage.recreate_like(ch, stage.telemetry, STATE)
    stage.recreate(ch, stage.crm_items, "staging_crm_items")
    ch.insert_arrow(f"bionicpro_staging.{stage.telemetry}", pa.Table.from_pylist(telemetry))
    if crm:
        ch.insert_arrow(
            f"bionicpro_staging.{stage.crm_items}",
            pa.Table.from_pylist(crm, schema=CRM_ITEMS_SCHEMA),
        )
    transform.build_report_rows(
        ch, stage, "formulas", [DAY], DAY - timedelta(days=30), full_crm=True
    )
    result = ch.query(f"SELECT * FROM bionicpro_staging.{stage.report_rows}")
    stage.drop_all(ch)
    rows = [dict(zip(result.column_names, r, strict=True)) for r in result.result_rows]
    return {(r["user_id"], r["prosthesis_id"]): r for r in rows}


def one(ch, **overrides) -> dict:
    (row,) = transform_rows(ch, [aggregates(**overrides)], []).values()
    return row


def test_usage_hours_and_actions_per_hour(ch):
    row = one(ch, usage_seconds=5400.4, total_actions=30)
    assert row["total_usage_seconds"] == 5400
    assert row["usage_hours"] == pytest.approx(1.5)
    assert row["actions_per_hour"] == pytest.approx(20.0)


def test_no_usage_means_no_actions_per_hour(ch):
    row = one(ch, usage_seconds=0.4)
    assert row["total_usage_seconds"] == 0 and row["usage_hours"] == 0
    assert row["actions_per_hour"] is None


@pytest.mark.parametrize(("seconds", "rounded"), [(0.5, 0), (1.5, 2), (2.5, 2), (2.51, 3)])
def test_usage_seconds_round_half_to_even(ch, seconds, rounded):
    assert one(ch, usage_seconds=seconds)["total_usage_seconds"] == rounded


@pytest.mark.parametrize(
    ("avg_response", "score"),
    [(100.0, 90.0), (0.0, 100.0), (1000.0, 0.0), (2500.0, 0.0), (None, None)],
)
def test_efficiency_score_is_clamped(ch, avg_response, score):
    row = one(ch, avg_response_time=avg_response)
    assert row["efficiency_score"] == (None if score is None else pytest.approx(score))


def test_unmeasured_metrics_stay_null(ch):
    row = one(ch, avg_response_time=None, max_response_time=None, min_response_time=None,
              avg_battery_level=None, min_battery_level=None)  # fmt: skip
    assert [row[c] for c in ("avg_response_time", "max_response_time", "min_response_time",
                             "avg_battery_level", "min_battery_level")] == [None] * 5  # fmt: skip
    assert row["total_actions"] == 10


def test_crm_join_order_fallback_and_unknown(ch):
    telemetry = [
        aggregates(user_id=1, prosthesis_id="P-1"),  # has an order, updated twice
        aggregates(user_id=2, prosthesis_id="P-2"),  # user known, order for another prosthesis
        aggregates(user_id=3, prosthesis_id="P-3"),  # unknown to the CRM
    ]
    crm = [
        crm_item(0, 1, "P-1", "new@x", "active", "2024-01-05T00:00:00"),
        crm_item(1, 1, "P-1", "old@x", "pending", "2024-01-01T00:00:00"),
        crm_item(2, 2, "P-9", "two-old@x", "active", "2023-01-01T00:00:00"),
        crm_item(3, 2, "P-8", "two@x", "cancelled", "2023-06-01T00:00:00", order_date=None),
    ]
    rows = transform_rows(ch, telemetry, crm)
    assert (rows[1, "P-1"]["email"], rows[1, "P-1"]["status"]) == ("new@x", "active")
    assert rows[1, "P-1"]["order_date"] == date(2023, 5, 1)
    assert rows[2, "P-2"]["email"] == "two@x"  # the user's most recently updated item
    assert (rows[2, "P-2"]["status"], rows[2, "P-2"]["order_date"]) == ("unknown", None)
    assert (rows[3, "P-3"]["email"], rows[3, "P-3"]["first_name"]) == ("", "")
    assert rows[3, "P-3"]["status"] == "unknown"


def test_latest_order_wins_even_when_its_order_date_is_null(ch):
    crm = [
        crm_item(0, 1, "P-1", "a@x", updated="2024-01-01T00:00:00"),
        crm_item(1, 1, "P-1", "b@x", updated="2024-01-02T00:00:00", order_date=None),
    ]
    row = transform_rows(ch, [aggregates()], crm)[1, "P-1"]
    assert (row["email"], row["order_date"]) == ("b@x", None)


def test_equal_updated_at_the_later_listed_item_wins(ch):
    crm = [crm_item(0, 1, "P-1", "first@x"), crm_item(1, 1, "P-1", "second@x")]
    assert transform_rows(ch, [aggregates()], crm)[1, "P-1"]["email"] == "second@x"


def test_staging_tables_are_per_run():
    a, b = Staging.for_run("scheduled__2024-01-01"), Staging.for_run("manual__2024-01-01")
    assert a.telemetry != b.telemetry and a == Staging.for_run("scheduled__2024-01-01")

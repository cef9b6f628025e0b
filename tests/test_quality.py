"""The quality gates between transform and publish, on the real stack."""

from __future__ import annotations

import psycopg
import pytest
from conftest import LAST_DAY, MOSCOW, build_day
from test_pipeline import mart_rows

from bionicpro_etl import pipeline, quality
from bionicpro_etl.quality import QualityError, judge
from bionicpro_etl.report_day import day_bounds


def test_levels_judge_figures(monkeypatch):
    assert judge("duplicate_keys", 0).level == "ok"
    assert judge("duplicate_keys", 1).level == "error"
    assert judge("no_order_share", 0.3).level == "warn"
    monkeypatch.setenv("BIONICPRO_QUALITY_LEVELS", '{"no_order_share": {"warn": 0.4}}')
    assert judge("no_order_share", 0.3).level == "ok"
    assert judge("no_order_share", 0.99).level == "warn"  # its error level is now off
    monkeypatch.setenv("BIONICPRO_QUALITY_LEVELS", '{"no_such_check": {"warn": 1}}')
    with pytest.raises(ValueError, match="no_such_check"):
        judge("no_order_share", 0.3)


def test_the_gate_names_the_failing_check_and_its_figures():
    results = [
        judge("duplicate_keys", 2),
        judge("no_order_share", 0.3),
        judge("out_of_range_rows", 0),
    ]
    with pytest.raises(QualityError, match=r"duplicate_keys = 2, above the error level 0"):
        quality.gate(results)
    assert quality.gate(results[1:]) == ["no_order_share = 0.3, above the warn level 0.2"]


def test_every_check_of_every_run_is_stored(stack, ch, crm):
    result = build_day(stack, ch, crm, LAST_DAY, "stored_checks", force=True)
    stored = ch.query(
        "SELECT check, level FROM bionicpro_reports.quality_checks WHERE run_id = 'stored_checks'"
    ).result_rows
    assert len(stored) == result.checks.checks >= 8
    assert {"duplicate_keys", "no_order_share", "day_volume_drop"} <= {c for c, _ in stored}


def test_a_sudden_drop_stops_the_publish_and_keeps_the_old_day(stack, ch, crm):
    build_day(stack, ch, crm, LAST_DAY, "volume_before")
    before = mart_rows(ch, LAST_DAY)
    start, end = day_bounds(LAST_DAY, MOSCOW)
    with psycopg.connect(stack.dsn("bionicpro")) as conn:  # most of the day goes missing
        conn.execute(
            "CREATE TABLE lost_events AS SELECT * FROM telemetry_events"
            " WHERE event_time >= %s AND event_time < %s AND user_id %% 10 <> 0",
            (start, end),
        )
        conn.execute("DELETE FROM telemetry_events WHERE id IN (SELECT id FROM lost_events)")
    try:
        with pytest.raises(QualityError, match=r"day_volume_drop = 0\.\d+ \(" + str(LAST_DAY)):
            build_day(stack, ch, crm, LAST_DAY, "volume_drop", force=True)  # deleted in place
        assert mart_rows(ch, LAST_DAY) == before
        (level,) = ch.query(
            "SELECT level FROM bionicpro_reports.quality_checks"
            " WHERE run_id = 'volume_drop' AND check = 'day_volume_drop'"
        ).result_rows[0]
        assert level == "error"
    finally:
        with psycopg.connect(stack.dsn("bionicpro")) as conn:
            conn.execute(
                "INSERT INTO telemetry_events OVERRIDING SYSTEM VALUE SELECT * FROM lost_events"
            )
            conn.execute("DROP TABLE lost_events")
    build_day(stack, ch, crm, LAST_DAY, "volume_after", force=True)
    assert mart_rows(ch, LAST_DAY) == before


def test_warnings_publish_and_are_returned_for_the_notifiers(stack, ch, crm, monkeypatch):
    monkeypatch.setenv("BIONICPRO_QUALITY_LEVELS", '{"no_order_share": {"warn": 0.01}}')
    run = pipeline.Run("warned", LAST_DAY, force_rebuild=True)
    result = pipeline.run_all(stack.dsn("bionicpro"), crm, stack.crm_url, ch, run)
    assert any(w.startswith("no_order_share") for w in result.checks.warnings)
    assert result.loaded.published_rows > 0

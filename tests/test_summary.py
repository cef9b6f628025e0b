"""The monthly per-user summary: equal to a direct query of the mart, also after a day of the
month is replaced (a summary fed by inserts would count the replaced day twice)."""

from __future__ import annotations

import math
from datetime import date, timedelta

from conftest import FIRST_DAY, LAST_DAY, add_late_events, build_day

DIRECT = """
SELECT
    user_id,
    uniqExact(report_date), sum(total_actions), sum(total_usage_seconds),
    sum(total_actions) / nullIf(sum(total_usage_seconds) / 3600, 0),
    sumIf(toFloat64(avg_response_time) * total_actions, avg_response_time IS NOT NULL)
        / nullIf(sumIf(total_actions, avg_response_time IS NOT NULL), 0),
    avg(efficiency_score), max(max_response_time), min(min_battery_level)
FROM bionicpro_reports.reports_data_mart
WHERE toStartOfMonth(report_date) = {month:Date}
GROUP BY user_id
ORDER BY user_id
"""
SUMMARY = """
SELECT
    user_id, days_active, total_actions, total_usage_seconds, actions_per_hour,
    avg_response_time, avg_efficiency, max_response_time, min_battery_level
FROM bionicpro_reports.user_monthly_summary
WHERE month = {month:Date}
ORDER BY user_id
"""


def same(a: tuple, b: tuple) -> bool:
    return all(
        (x is None and y is None) or x == y or math.isclose(x, y, rel_tol=1e-9)
        for x, y in zip(a, b, strict=True)
    )


def assert_summary_matches_mart(ch, month: date) -> None:
    direct = ch.query(DIRECT, parameters={"month": month}).result_rows
    summary = ch.query(SUMMARY, parameters={"month": month}).result_rows
    assert direct and len(summary) == len(direct)
    assert all(same(s, d) for s, d in zip(summary, direct, strict=True))


def user_5_actions(ch, month: date) -> int:
    return ch.query(
        "SELECT total_actions FROM bionicpro_reports.user_monthly_summary"
        " WHERE month = {month:Date} AND user_id = 5",
        parameters={"month": month},
    ).result_rows[0][0]


def test_summary_equals_the_mart_and_follows_a_replaced_day(stack, ch, crm, no_lag):
    month = date(2024, 1, 1)
    build_day(stack, ch, crm, LAST_DAY, "summary_a")
    assert_summary_matches_mart(ch, month)
    before = user_5_actions(ch, month)

    add_late_events(stack, FIRST_DAY, "PROT-SUMMARY", 6, ago=timedelta(0))  # past any watermark
    build_day(stack, ch, crm, LAST_DAY, "summary_b")  # replaces FIRST_DAY in the mart
    assert_summary_matches_mart(ch, month)
    after = user_5_actions(ch, month)
    assert after == before + 6

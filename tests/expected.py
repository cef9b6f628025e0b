"""An independent recomputation of the mart from the source rows, in plain Python.

It shares no code with the pipeline: it reads the raw telemetry and the CRM's stored items and
applies contract section 5 literally, so the pipeline's SQL is checked against the contract.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg

ACTIONS = ("grasp", "release", "flex")


def _valid(value: float | None, high: float) -> bool:
    """Contract section 5: a measurement in [0, high]; anything else is not measured."""
    return value is not None and math.isfinite(value) and 0 <= value <= high


def _crm(crm_dsn: str) -> tuple[dict, dict]:
    """Latest valid item per order and per user (ties: the later item in the listing)."""
    with psycopg.connect(crm_dsn) as conn:
        items = conn.execute(
            "SELECT id, user_id, email, first_name, last_name, prosthesis_id, order_date, status,"
            " updated_at FROM crm_orders ORDER BY id"
        ).fetchall()
    orders: dict = {}
    people: dict = {}
    for id_, user, email, first, last, prosthesis, order_date, status, updated in items:
        if user < 1 or not prosthesis.strip():
            continue
        try:
            ordered = date.fromisoformat(order_date) if order_date is not None else None
        except ValueError:
            continue
        if order_date is not None and not (
            len(order_date) == 10 and date(1970, 1, 1) <= ordered <= date(2149, 6, 6)
        ):
            continue  # an ISO date (YYYY-MM-DD) that the mart's Date can hold
        rank = (updated, id_)
        order = {"email": email, "first_name": first, "last_name": last,
                 "order_date": ordered, "status": status, "rank": rank}  # fmt: skip
        if (user, prosthesis) not in orders or orders[(user, prosthesis)]["rank"] < rank:
            orders[(user, prosthesis)] = order
        if user not in people or people[user]["rank"] < rank:
            people[user] = order
    return orders, people


def expected_mart(
    pg_dsn: str, crm_dsn: str, day: date, tz: ZoneInfo, *, received_by: datetime | None = None
) -> dict[tuple, dict]:
    """The mart rows of `day`, keyed by (user_id, prosthesis_id, report_date), of the events
    received by `received_by` (all of them by default)."""
    around = datetime(day.year, day.month, day.day, tzinfo=tz)
    with psycopg.connect(pg_dsn) as conn:
        events = conn.execute(
            "SELECT user_id, prosthesis_id, event_time, received_at, action_type,"
            " response_time_ms, battery_level, duration_seconds FROM telemetry_events"
            " WHERE event_time BETWEEN %s AND %s AND received_at <= %s",
            (around - timedelta(days=1), around + timedelta(days=2), received_by or "infinity"),
        ).fetchall()
    groups: dict[tuple, list] = {}
    for user, prosthesis, when, received, *rest in events:
        # an event time more than a day ahead of its arrival is a broken clock: no event of its day
        if when.astimezone(tz).date() == day and when <= received + timedelta(days=1):
            groups.setdefault((user, prosthesis, day), []).append(rest)

    orders, people = _crm(crm_dsn)
    mart = {}
    for (user, prosthesis, report_date), rows in groups.items():
        response = [r[1] for r in rows if _valid(r[1], 60000)]
        battery = [r[2] for r in rows if _valid(r[2], 100)]
        # The mart's UInt32 saturates rather than wraps: the project's decision.
        usage = min(round(sum(r[3] for r in rows if _valid(r[3], 86400))), 2**32 - 1)
        avg_response = sum(response) / len(response) if response else None
        hours = usage / 3600
        order = orders.get((user, prosthesis))
        person = order or people.get(user) or {"email": "", "first_name": "", "last_name": ""}
        row = {
            "user_id": user,
            "email": person["email"],
            "first_name": person["first_name"],
            "last_name": person["last_name"],
            "prosthesis_id": prosthesis,
            "report_date": report_date,
            "total_actions": len(rows),
            "avg_response_time": avg_response,
            "max_response_time": max(response) if response else None,
            "min_response_time": min(response) if response else None,
            "avg_battery_level": sum(battery) / len(battery) if battery else None,
            "min_battery_level": min(battery) if battery else None,
            "total_usage_seconds": usage,
            "usage_hours": hours,
            "actions_per_hour": len(rows) / hours if usage else None,
            "efficiency_score": None
            if avg_response is None
            else min(100, max(0, 100 - avg_response / 10)),
            "order_date": order["order_date"] if order else None,
            "status": order["status"] if order else "unknown",
        }
        for action in ACTIONS:
            row[f"{action}_count"] = sum(1 for r in rows if r[0].strip().lower() == action)
        mart[(user, prosthesis, report_date)] = row
    return mart

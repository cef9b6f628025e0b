"""The anti-pattern reference of `make bench` (run (d)): how NOT to build the mart.

This is the brief's original shape, kept only so that the benchmark can show what the project's
design saves and check that both give the same answer. Nothing in the pipeline imports it.

- the day's aggregate (the project's own query, so that the answers compare) is read with
  `pandas.read_sql` (psycopg through SQLAlchemy);
- every hand-over between "tasks" is `DataFrame.to_dict("records")` serialised to JSON and parsed
  back, as XCom would do;
- the CRM is read page by page into one list of dicts, then a DataFrame;
- the join is a pandas `merge`, the metrics a row-by-row `DataFrame.apply`;
- the load is `client.insert` of a Python list of row tuples.

Each step holds the whole day as Python objects, several times over. It writes to its own table,
`bench_naive.mart` (its columns typed like the mart's), never to the mart itself.
"""

from __future__ import annotations

import json
import math
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

import clickhouse_connect
import pandas as pd
import requests
import sqlalchemy

from bionicpro_stack.bench.data import aggregate_params, named_aggregate_sql
from bionicpro_stack.bench.job import MART, NAIVE_TABLE


def extract_telemetry(pg_url: str, day: date, tz: ZoneInfo) -> str:
    """The day's aggregate as JSON records (the XCom)."""
    engine = sqlalchemy.create_engine(pg_url)
    try:
        frame = pd.read_sql(named_aggregate_sql(), engine, params=aggregate_params(day, tz))
    finally:
        engine.dispose()
    return json.dumps(frame.to_dict("records"), default=str)


def extract_crm(base_url: str, auth: tuple[str, str]) -> str:
    """Every CRM item, all pages in one list, as JSON (the XCom)."""
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 1000}
    while True:
        response = requests.get(
            f"{base_url}/api/v1/customers", params=params, auth=auth, timeout=60
        )
        response.raise_for_status()
        page = response.json()
        items.extend(page["items"])
        if page["next_cursor"] is None:
            return json.dumps(items)
        params["cursor"] = page["next_cursor"]


def transform(telemetry_json: str, crm_json: str, run_id: str) -> str:
    """Join and metrics in pandas, row by row; the report rows as JSON records (the XCom)."""
    telemetry = pd.DataFrame(json.loads(telemetry_json))
    crm = pd.DataFrame(json.loads(crm_json))
    crm["updated_at"] = pd.to_datetime(crm["updated_at"], utc=True, format="ISO8601")
    crm = crm.sort_values("updated_at", kind="stable")  # the latest version of an item wins
    orders = crm.drop_duplicates(["user_id", "prosthesis_id"], keep="last").assign(has_order=True)
    people = crm.drop_duplicates("user_id", keep="last")[
        ["user_id", "email", "first_name", "last_name"]
    ]
    frame = telemetry.merge(
        orders.drop(columns=["updated_at"]), how="left", on=["user_id", "prosthesis_id"]
    )
    frame = frame.merge(people, how="left", on="user_id", suffixes=("", "_latest"))
    rows = frame.apply(_report_row, axis=1, run_id=run_id).tolist()
    return json.dumps(rows)


def _report_row(row: pd.Series, run_id: str) -> dict[str, Any]:
    has_order = pd.notna(row["has_order"])
    if has_order:
        names = (row["email"], row["first_name"], row["last_name"])
    elif isinstance(row["email_latest"], str):
        names = (row["email_latest"], row["first_name_latest"], row["last_name_latest"])
    else:
        names = ("", "", "")
    seconds = round(float(row["usage_seconds"]))
    hours = seconds / 3600
    avg_response = _mean(row["response_sum"], row["total_actions"] - row["invalid_response_count"])
    return {
        "user_id": int(row["user_id"]),
        "email": names[0],
        "first_name": names[1],
        "last_name": names[2],
        "prosthesis_id": row["prosthesis_id"],
        "report_date": row["report_date"],
        "total_actions": int(row["total_actions"]),
        "avg_response_time": avg_response,
        "max_response_time": _number(row["max_response_time"]),
        "min_response_time": _number(row["min_response_time"]),
        "grasp_count": int(row["grasp_count"]),
        "release_count": int(row["release_count"]),
        "flex_count": int(row["flex_count"]),
        "avg_battery_level": _mean(
            row["battery_sum"], row["total_actions"] - row["invalid_battery_count"]
        ),
        "min_battery_level": _number(row["min_battery_level"]),
        "total_usage_seconds": seconds,
        "usage_hours": hours,
        "actions_per_hour": None if seconds == 0 else int(row["total_actions"]) / hours,
        "efficiency_score": None
        if avg_response is None
        else min(100.0, max(0.0, 100 - avg_response / 10)),
        "order_date": row["order_date"]
        if has_order and isinstance(row["order_date"], str)
        else None,
        "status": row["status"] if has_order else "unknown",
        "run_id": run_id,
    }


def _number(value: Any) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def _mean(total: Any, count: Any) -> float | None:
    return float(total) / int(count) if count else None


def load(rows_json: str, chdb_path: str) -> int:
    """Recreate `bench_naive.mart` with the rows' columns, typed as the mart's, and insert the
    rows as a list of tuples."""
    records = json.loads(rows_json)
    columns = list(records[0]) if records else ["user_id", "report_date", "prosthesis_id"]
    rows = [
        tuple(
            date.fromisoformat(row[c]) if c in ("report_date", "order_date") and row[c] else row[c]
            for c in columns
        )
        for row in records
    ]
    client = clickhouse_connect.get_client(interface="chdb", path=chdb_path)
    try:
        client.command("CREATE DATABASE IF NOT EXISTS bench_naive")
        client.command(f"DROP TABLE IF EXISTS {NAIVE_TABLE}")
        client.command(
            f"CREATE TABLE {NAIVE_TABLE} ENGINE = MergeTree"
            " ORDER BY (user_id, report_date, prosthesis_id)"
            f" AS SELECT {', '.join(columns)} FROM {MART} LIMIT 0"
        )
        client.insert(NAIVE_TABLE, rows, column_names=columns)
    finally:
        client.close()
    return len(rows)


def run(
    pg_url: str,
    crm_url: str,
    auth: tuple[str, str],
    chdb_path: str,
    day: date,
    tz: ZoneInfo,
    run_id: str,
) -> int:
    """The whole naive day, task after task, each hand-over through JSON; returns rows loaded."""
    telemetry = extract_telemetry(pg_url, day, tz)
    crm = extract_crm(crm_url, auth)
    return load(transform(telemetry, crm, run_id), chdb_path)

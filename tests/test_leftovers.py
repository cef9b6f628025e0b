"""What a run leaves behind (issue 9, point 9), on the real stack: the staging tables of a run
that failed (they hold the CRM's personal data) are swept by a later run; the rejected CRM items
and the quality results expire; the run log's error text carries no credentials."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest
from bionicpro_stack.services import Stack
from conftest import LAST_DAY, MOSCOW

from bionicpro_etl import callbacks, pipeline, schema
from bionicpro_etl.config import settings


def staged(ch, run: pipeline.Run) -> list[str]:
    return [
        name
        for (name,) in ch.query(
            "SELECT name FROM system.tables WHERE database = 'bionicpro_staging'"
            " AND endsWith(name, {key:String})",
            parameters={"key": f"_{run.stage.key}"},
        ).result_rows
    ]


def test_the_staging_tables_of_a_failed_run_are_swept_by_a_later_one(stack, ch, crm):
    failed = pipeline.Run("failed_after_extracting", LAST_DAY, force_rebuild=True)
    pipeline.create_data_mart_table(ch)
    pipeline.plan_report_days(stack.dsn("bionicpro"), ch, failed)
    pipeline.extract_crm_data(crm, stack.crm_url, ch, failed)  # names and e-mails, staged
    assert "crm_items_" + failed.stage.key in staged(ch, failed)

    pipeline.create_data_mart_table(ch)  # a run starting now: a young run may be running still
    assert staged(ch, failed)
    aged = replace(settings(), staging_max_age_hours=0.0)  # as if a day had passed
    later = pipeline.Run("a_later_run", LAST_DAY)
    pipeline.run_all(stack.dsn("bionicpro"), crm, stack.crm_url, ch, later, aged)
    assert staged(ch, failed) == []


@pytest.mark.parametrize(
    ("table", "column", "row"),
    [
        ("crm_rejects", "rejected_at", {"run_id": "ttl", "reason": "user_id", "item": "{}"}),
        ("quality_checks", "checked_at", {"run_id": "ttl", "report_day": LAST_DAY, "check": "c",
                                          "level": "ok", "figure": 0.0, "detail": ""}),
    ],
)  # fmt: skip
def test_rejects_and_quality_results_expire_after_90_days(ch, table, column, row):
    schema.create(ch)
    now = ch.query("SELECT now()").result_rows[0][0]
    days = [0, 89, 91, 400]
    rows = [{**row, column: now - timedelta(days=d)} for d in days]
    columns = list(rows[0])
    ch.insert(f"bionicpro_reports.{table}", [list(r.values()) for r in rows], column_names=columns)
    ch.command(f"OPTIMIZE TABLE bionicpro_reports.{table} FINAL")
    (kept,) = ch.query(
        f"SELECT count() FROM bionicpro_reports.{table} WHERE run_id = 'ttl'"
    ).result_rows[0]
    assert kept == 2


def test_the_run_log_keeps_no_credentials(stack, ch, monkeypatch):
    """The DAG's failure callback through the real ClickHouse connection, for an error that
    names a connection's password and a URL with credentials in it."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLICKHOUSE_DEFAULT", stack.connections()["AIRFLOW_CONN_CLICKHOUSE_DEFAULT"]
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_CRM_HTTP",
        json.dumps({"conn_type": "http", "host": "crm.local", "password": "crm-pass-3x9k"}),
    )
    from airflow.sdk import BaseHook

    BaseHook.get_connection("crm_http")  # the task had read it, so Airflow knows its password
    schema.create(ch)
    context = {
        "run_id": "failed_with_secrets",
        "logical_date": datetime(2024, 1, 7, 2, tzinfo=MOSCOW),
        "ti": SimpleNamespace(task_id="extract_crm_data"),
        "exception": RuntimeError(
            "GET https://crm_user:url-pass-8h2j@crm.local/api/v1/customers refused"
            " (auth crm-pass-3x9k)"
        ),
    }
    callbacks.log_failure(context)
    ((error,),) = ch.query(
        "SELECT error FROM bionicpro_reports.etl_runs WHERE run_id = 'failed_with_secrets'"
    ).result_rows
    assert error.startswith("extract_crm_data: GET https://crm_user:***@crm.local/api/v1/customers")
    assert "url-pass-8h2j" not in error and "crm-pass-3x9k" not in error


def test_a_run_leaves_no_dropped_table_waiting(stack, ch, crm):
    """The staging tables a run replaces and drops are gone at once, not kept for minutes in
    the engine's list of dropped tables, which the embedded engine loads again at every open
    (docs/scaling.md: a day of quarter-hour runs left some 1,150, 2 s of each open)."""
    run = pipeline.Run("leaves_nothing_dropped", LAST_DAY, force_rebuild=True)
    pipeline.create_data_mart_table(ch)
    pipeline.plan_report_days(stack.dsn("bionicpro"), ch, run)
    pipeline.plan_report_days(stack.dsn("bionicpro"), ch, run)  # a retry replaces its tables
    pipeline.run_all(stack.dsn("bionicpro"), crm, stack.crm_url, ch, run)
    assert staged(ch, run) == []
    waiting = ch.query(
        "SELECT count() FROM system.dropped_tables WHERE database = 'bionicpro_staging'"
    ).result_rows[0][0]
    assert waiting == 0


# A task of the stack's Airflow: opens the store through the `clickhouse_default` connection,
# publishes (argv[1] == "publish": a month replaced 20 times), or waits up to 8 s for what
# argv[1] names of the month's replaced parts ("rows": those holding rows; "parts": all) to be
# gone and prints how many parts and rows of them are still there; closes.
TASK = """
import sys, time
from airflow.providers.clickhousedb.hooks.clickhouse import ClickHouseHook

client = ClickHouseHook(clickhouse_conn_id="clickhouse_default").get_client()
if sys.argv[1] == "publish":
    for table in ("mart", "next"):
        client.command(f"CREATE TABLE {table} (m UInt32, a UInt64) ENGINE = MergeTree PARTITION BY m ORDER BY a")
    for n in range(20):
        client.command("TRUNCATE TABLE next")
        client.command(f"INSERT INTO next SELECT 1, number FROM numbers({n + 1})")
        client.command("ALTER TABLE mart REPLACE PARTITION 1 FROM next")
else:
    client.command("SYSTEM WAIT LOADING PARTS mart")
    deadline = time.monotonic() + 8
    while True:
        parts, rows = client.query(
            "SELECT count(), sum(rows) FROM system.parts WHERE table = 'mart' AND NOT active"
        ).result_rows[0]
        if not (rows if sys.argv[1] == "rows" else parts) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    print(parts, rows)
client.close()
"""


def test_a_task_of_a_few_seconds_removes_the_parts_a_publish_replaced(tmp_path):
    """On the embedded engine, the parts that publishes replaced are removed by the next tasks,
    which hold the store for seconds: the engine's background cleanup first runs 30 to 40 s
    after it opens, and used never to run, so the store kept every replaced month for good
    (stack/src/bionicpro_stack/chdb.xml)."""
    stack = Stack(tmp_path)
    env = {**os.environ, **stack.connections()}

    def task(arg: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", TASK, arg], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    def left(what: str) -> tuple[int, ...]:
        """The replaced parts and their rows still there after a task that waited for `what`."""
        return tuple(int(n) for n in task(what).split()[-2:])

    task("publish")
    assert left("rows")[1] == 0  # the month's replaced versions, within a task's seconds
    # The empty parts that marked the replaced range go with the task after.
    assert left("parts") == (0, 0)

"""The real DAG through the real Airflow CLI on the real stack: the seed's commands."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from conftest import MOSCOW, airflow
from expected import expected_mart

ROOT = Path(__file__).resolve().parents[1]
FROM, TO = date(2024, 1, 2), date(2024, 1, 3)


@pytest.fixture(scope="module")
def backfill(stack) -> subprocess.CompletedProcess:
    """`make backfill FROM=2024-01-02 TO=2024-01-03`'s command: one `airflow dags test
    reports_etl_dag <day>` per day, in turn. Run once; the tests below check what it did."""
    env = {
        **os.environ,
        "BIONICPRO_STACK_DIR": str(stack.root),
        "BIONICPRO_CRM_PORT": str(stack.crm_port),
        "BIONICPRO_DAGS_FOLDER": str(ROOT / "dags"),
    }
    env.pop("BIONICPRO_REPORT_TZ", None)
    command = [sys.executable, "-m", "bionicpro_stack", "backfill", str(FROM), str(TO)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done


def test_backfill_builds_every_day_of_the_range(backfill, stack):
    """`make backfill FROM=... TO=...`: one real Airflow run per day, all in the run log."""
    # A line per run, under the header: the day, rows, seconds, and what it built and why.
    assert "what it built, and why" in backfill.stdout
    # (Earlier tests of the session may have published these days: then it says nothing new.)
    line = r"^01-03 +[\d,]+ +[\d.]+  (first run|own day|late arrivals|nothing new)"
    assert re.search(line, backfill.stdout, re.M), backfill.stdout

    client = stack.clickhouse()
    try:
        runs = client.query(
            "SELECT report_day, run_id FROM bionicpro_reports.etl_runs"
            " WHERE status = 'success' ORDER BY finished_at DESC LIMIT 2"
        ).result_rows
    finally:
        client.close()
    assert sorted(day for day, _ in runs) == [FROM, TO]
    assert all(run_id.startswith("manual__") for _, run_id in runs)
    for day in (FROM, TO):
        assert mart_keys(stack, day) == expected_keys(stack, day)


def test_dags_test_builds_the_named_day(backfill, stack):
    """`airflow dags test reports_etl_dag 2024-01-02` (the backfill's first run) builds report
    day 2024-01-02, and the mart equals the recomputation from the sources."""
    day = FROM
    result = mart_day(
        stack, day, "user_id, prosthesis_id, report_date, total_actions, status, run_id"
    )
    rows = {(r[0], r[1], r[2]): r for r in result}
    expected = expected_mart(stack.dsn("bionicpro"), stack.dsn("crm"), day, MOSCOW)
    assert rows.keys() == expected.keys()
    assert all(rows[k][3] == expected[k]["total_actions"] for k in expected)
    assert all(rows[k][4] == expected[k]["status"] for k in expected)
    assert len({r[5] for r in rows.values()}) == 1  # one run built the whole day


def test_tasks_test_runs_one_task(stack, airflow_db):
    done = airflow(
        stack, "tasks", "test", "reports_etl_dag", "create_data_mart_table", "2024-01-01"
    )
    assert "create_data_mart_table" in done.stdout + done.stderr


def mart_day(stack, day: date, columns: str) -> list[tuple]:
    """`columns` of the mart's rows of `day` (read once Airflow's process has ended: chDB admits
    one process)."""
    client = stack.clickhouse()
    try:
        return client.query(
            f"SELECT {columns} FROM bionicpro_reports.reports_data_mart"
            " WHERE report_date = {day:Date}",
            parameters={"day": day},
        ).result_rows
    finally:
        client.close()


def mart_keys(stack, day: date) -> set[tuple[int, str]]:
    return {
        (user, prosthesis) for user, prosthesis in mart_day(stack, day, "user_id, prosthesis_id")
    }


def expected_keys(stack, day: date) -> set[tuple[int, str]]:
    expected = expected_mart(stack.dsn("bionicpro"), stack.dsn("crm"), day, MOSCOW)
    return {(user, prosthesis) for user, prosthesis, _ in expected}


WORKERS_DIFFER = """
import os, sys
import pendulum
from airflow.dag_processing.dagbag import DagBag
from bionicpro_etl.config import settings

# The scheduler parses the DAG file with 2 shards...
dag = DagBag(dag_folder=sys.argv[1]).dags["reports_etl_dag"]
# ...and the workers' environment says 3 (so would the DAG file as a worker parses it).
os.environ["BIONICPRO_TELEMETRY_SHARDS"] = "3"
module = next(m for m in list(sys.modules.values()) if getattr(m, "__file__", None) == dag.fileloc)
module.CONFIG = settings()
day = pendulum.parse(sys.argv[2], tz="Europe/Moscow")
dag.test(logical_date=day, run_conf={"force_rebuild": True})
"""


def test_shards_are_decided_once_whatever_the_workers_environment(stack, airflow_db):
    """The telemetry shards' modulus is the plan's, and the DAG expands over the plan's shards:
    a worker whose BIONICPRO_TELEMETRY_SHARDS differs from the scheduler's drops no user."""
    day = date(2024, 1, 5)
    env = {**os.environ, **stack.airflow_env(), "BIONICPRO_TELEMETRY_SHARDS": "2"}
    # DAG.test() of Airflow 3.3 cannot finish a DAG with a deadline (see the DAG file)
    env["BIONICPRO_FRESHNESS_DEADLINE_SECONDS"] = "0"
    env.pop("BIONICPRO_REPORT_TZ", None)
    done = subprocess.run(
        [sys.executable, "-c", WORKERS_DIFFER, str(ROOT / "dags"), day.isoformat()],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert mart_keys(stack, day) == expected_keys(stack, day)

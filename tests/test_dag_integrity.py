"""The DAG file in a clean Airflow: it imports, has the brief's ids and the contract's schedule
and retries, and does no I/O and no heavy imports when parsed."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[1] / "dags"
TASKS = {
    "create_data_mart_table", "plan_report_days", "extract_telemetry", "extract_crm_data",
    "transform_data", "check_data_quality", "load_to_clickhouse", "telemetry_shards",
}  # fmt: skip


@pytest.fixture(scope="module")
def dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    return bag.dags["reports_etl_dag"]


def test_ids_and_dependencies(dag):
    assert dag.dag_id == "reports_etl_dag"
    assert set(dag.task_ids) == TASKS
    upstream = {t.task_id: set(t.upstream_task_ids) for t in dag.tasks}
    assert upstream == {
        "create_data_mart_table": set(),
        "plan_report_days": {"create_data_mart_table"},
        "telemetry_shards": {"plan_report_days"},
        # as many mapped tasks as the plan's shards, each told the plan's modulus
        "extract_telemetry": {"plan_report_days", "telemetry_shards"},
        "extract_crm_data": {"create_data_mart_table"},
        "transform_data": {"plan_report_days", "extract_telemetry", "extract_crm_data"},
        "check_data_quality": {"transform_data", "extract_crm_data"},
        # the load also takes the metadata of each step (the plan's days, counts, watermarks)
        "load_to_clickhouse": {
            "plan_report_days",
            "extract_telemetry",
            "extract_crm_data",
            "transform_data",
            "check_data_quality",
        },
    }


def test_schedule_retries_and_catchup(dag):
    from airflow.serialization.encoders import coerce_to_core_timetable
    from airflow.timetables.interval import CronDataIntervalTimetable

    timetable = coerce_to_core_timetable(dag.timetable)  # what the scheduler will run
    assert isinstance(timetable, CronDataIntervalTimetable)
    assert timetable.summary == "0 2 * * *"
    assert timetable._timezone.name == "Europe/Moscow"
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert dag.get_task("load_to_clickhouse").max_active_tis_per_dag == 1  # one month writer
    for task in dag.tasks:
        assert task.retries == 2
        assert task.retry_delay == timedelta(minutes=5)
        assert task.execution_timeout == timedelta(hours=2)  # a hang fails and is retried


PARSE_PROBE = """
import json, socket, sys
def refuse(*args, **kwargs):
    raise AssertionError("the DAG file opened a network connection while being parsed")
socket.socket.connect = refuse
socket.create_connection = refuse
import importlib.util
spec = importlib.util.spec_from_file_location("reports_etl_dag", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
heavy = ["bionicpro_etl.pipeline", "clickhouse_connect", "adbc_driver_postgresql", "pyarrow", "requests"]
print(json.dumps([name for name in heavy if name in sys.modules]))
"""


def test_parsing_does_no_io_and_no_heavy_imports(tmp_path):
    env = {"AIRFLOW_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}  # and no connections at all
    done = subprocess.run(
        [sys.executable, "-c", PARSE_PROBE, str(DAGS / "reports_etl_dag.py")],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


SCHEDULE_PROBE = """
import sys
from airflow.dag_processing.dagbag import DagBag
from airflow.serialization.encoders import coerce_to_core_timetable
dag = DagBag(dag_folder=sys.argv[1]).dags["reports_etl_dag"]
timetable = coerce_to_core_timetable(dag.timetable)
print(timetable.summary, timetable._timezone.name)
"""


def test_schedule_and_zone_come_from_the_environment(tmp_path):
    env = {
        "AIRFLOW_HOME": str(tmp_path), "PATH": "/usr/bin:/bin",
        "BIONICPRO_SCHEDULE": "0 */6 * * *", "BIONICPRO_REPORT_TZ": "Asia/Yekaterinburg",
    }  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", SCHEDULE_PROBE, str(DAGS / "reports_etl_dag.py")],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "0 */6 * * * Asia/Yekaterinburg"

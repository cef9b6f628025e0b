"""The real embedded stack for the tests: PostgreSQL (pgserver), the reference CRM over HTTP,
and the chDB engine, in a temporary folder, with a small generated data set."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile

# A clean Airflow for the whole session (set before anything imports airflow): its own home,
# no examples, nothing from the machine's ~/airflow. The home goes with the session
# (pytest_unconfigure).
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="airflow_home_")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
import requests
import smtp_inbox
from airflow_services import DAGS, AirflowServices, cli, wait_for
from bionicpro_stack import generate
from bionicpro_stack.services import CRM_USER, Stack, free_port
from clickhouse_connect.driver.client import Client
from xdist.scheduler import LoadScopeScheduling

from bionicpro_etl import extract, pipeline
from bionicpro_etl.report_day import day_bounds

MOSCOW = ZoneInfo("Europe/Moscow")
FIRST_DAY = date(2024, 1, 1)
LAST_DAY = date(2024, 1, 7)
FLEET = generate.Fleet(users=1000, seed=7)


# The modules that use the running Airflow (`airflow_services`): one worker runs them all.
RUNNING_AIRFLOW = {"test_alert_deadline.py", "test_assets.py", "test_lineage.py"}


def pytest_unconfigure(config: pytest.Config) -> None:
    """This process's Airflow home (each xdist worker made its own)."""
    shutil.rmtree(os.environ["AIRFLOW_HOME"], ignore_errors=True)


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> LoadScopeScheduling:
    """`make test` runs the suite on pytest-xdist workers, each with its own stack. A module's
    tests stay together, in order, on one worker (later tests of a module build on what earlier
    ones published), and the modules of RUNNING_AIRFLOW share one, so only one Airflow starts.
    Modules go out in file order (not the biggest first), so the slow Airflow ones start first.
    (`--dist loadgroup` would say the same with marks, but does not group on pytest 9.2:
    pytest-xdist issue 1386.)"""
    config.option.loadscopereorder = False
    return ByModule(config, log)


# The modules that use the running Airflow among those collected (test_layout.py holds
# RUNNING_AIRFLOW to them).
AIRFLOW_USERS = pytest.StashKey[set[str]]()


@pytest.hookimpl(tryfirst=True)  # before -k and -m deselect any
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    users = {item.path.name for item in items if "airflow_services" in item.fixturenames}
    config.stash[AIRFLOW_USERS] = users


class ByModule(LoadScopeScheduling):
    def _split_scope(self, nodeid: str) -> str:
        module = nodeid.split("::", 1)[0]
        return "running Airflow" if module.rsplit("/", 1)[-1] in RUNNING_AIRFLOW else module


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(tmp_path_factory.mktemp("stack"), crm_port=free_port())
    stack.up(crm_faults=True)
    generate.load_telemetry(stack.dsn("bionicpro"), FLEET, FIRST_DAY, LAST_DAY, MOSCOW)
    generate.load_crm(stack.dsn("crm"), FLEET, FIRST_DAY)
    yield stack
    stack.down()


@pytest.fixture(autouse=True)
def report_tz(monkeypatch: pytest.MonkeyPatch) -> None:
    """The contract's default zone, whatever the machine's environment says."""
    monkeypatch.delenv("BIONICPRO_REPORT_TZ", raising=False)


@pytest.fixture
def ch(stack: Stack) -> Iterator[Client]:
    """A client of the stack's chDB engine, closed after the test (one process at a time)."""
    client = stack.clickhouse()
    yield client
    client.close()


@pytest.fixture
def crm(stack: Stack) -> Iterator[requests.Session]:
    with extract.with_retries(requests.Session(), backoff=0.05) as session:
        session.auth = (CRM_USER, stack.crm_password())
        yield session


def build_day(
    stack: Stack, ch: Client, crm: requests.Session, day: date, run_id: str, *, force: bool = False
) -> dict:
    """A run for one report day with the package's stages, in this process (it also rebuilds
    the days that received events since the last run)."""
    run = pipeline.Run(run_id, day, force_rebuild=force)
    return pipeline.run_all(stack.dsn("bionicpro"), crm, stack.crm_url, ch, run)


CRM_ORDER_FIELDS = ("email", "first_name", "last_name", "prosthesis_id", "order_date", "status")


def change_crm_user(stack, user_id: int, **changes: str) -> None:
    """A new version, updated now, of each of the user's CRM orders with `changes` made."""
    values = ", ".join("%s" if field in changes else field for field in CRM_ORDER_FIELDS)
    with psycopg.connect(stack.dsn("crm")) as conn:
        conn.execute(
            f"INSERT INTO crm_orders (user_id, {', '.join(CRM_ORDER_FIELDS)}, updated_at)"
            f" SELECT user_id, {values}, now() FROM crm_orders WHERE user_id = %s",
            (*(changes[field] for field in CRM_ORDER_FIELDS if field in changes), user_id),
        )


def add_late_events(
    stack,
    day: date,
    prosthesis_id: str,
    n: int,
    user_id: int = 5,
    ago: timedelta = timedelta(minutes=30),  # older than the arrival lag
) -> None:
    """Events of `day` uploaded `ago` (by the database's clock), as from a prosthesis that was
    offline."""
    start, _ = day_bounds(day, MOSCOW)
    with psycopg.connect(stack.dsn("bionicpro")) as conn:
        for i in range(n):
            conn.execute(
                "INSERT INTO telemetry_events (user_id, prosthesis_id, event_time, received_at,"
                " action_type, response_time_ms, battery_level, duration_seconds)"
                " VALUES (%s, %s, %s, now() - %s, 'grasp', 100, 50, 60)",
                (user_id, prosthesis_id, start + timedelta(hours=10, minutes=i), ago),
            )


@pytest.fixture
def no_lag(monkeypatch: pytest.MonkeyPatch) -> None:
    """Arrivals count as soon as they commit (BIONICPRO_ARRIVAL_LAG_SECONDS=0): a test's own
    arrivals are then always past the watermark, whatever earlier tests left."""
    monkeypatch.setenv("BIONICPRO_ARRIVAL_LAG_SECONDS", "0")


def crm_fault(stack: Stack, **spec) -> None:
    """Queue a fault in the stack's CRM service (its `/_faults` switch)."""
    requests.post(f"{stack.crm_url}/_faults", json=spec, timeout=5).raise_for_status()


def crm_served(stack: Stack) -> int:
    """Requests the CRM service has served since it started."""
    return requests.get(f"{stack.crm_url}/_faults/requests", timeout=5).json()["requests"]


@contextmanager
def no_crm_faults_left(stack: Stack) -> Iterator[None]:
    """CRM faults queued inside are cleared on the way out, even on a failure (and any queued
    before, on the way in)."""
    requests.delete(f"{stack.crm_url}/_faults", timeout=5)
    try:
        yield
    finally:
        requests.delete(f"{stack.crm_url}/_faults", timeout=5)


@pytest.fixture
def crm_faults(stack: Stack) -> Iterator[None]:
    """A test that queues CRM faults leaves none behind, even when it fails midway."""
    with no_crm_faults_left(stack):
        yield


def airflow(stack: Stack, *args: str) -> subprocess.CompletedProcess:
    """The `airflow` CLI on the stack (its own home and SQLite database, the project's DAGs),
    which must succeed."""
    env = {**os.environ, **stack.airflow_env(), "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS)}
    env.pop("BIONICPRO_REPORT_TZ", None)
    return cli(env, *args)


@pytest.fixture(scope="session")
def airflow_db(stack: Stack) -> None:
    """The stack's Airflow database, migrated once for the tests that run the `airflow` CLI."""
    airflow(stack, "db", "migrate")


# A running Airflow's freshness deadline in the tests: far shorter than any run.
TEST_DEADLINE_SECONDS = 2
NOTIFY_TO = "oncall@bionicpro.test"


@pytest.fixture(scope="session")
def airflow_services(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AirflowServices]:
    """A running Airflow on the stack (API server, scheduler, triggerer), which mails its
    notifications to a real SMTP server (`airflow_services.inbox`), with a freshness deadline
    of TEST_DEADLINE_SECONDS, and OpenLineage's file transport on (`.home/openlineage.jsonl`).
    Started once, for the tests that need one."""
    smtp_port = free_port()
    inbox, controller = smtp_inbox.start(smtp_port)
    home = tmp_path_factory.mktemp("airflow_services")
    lineage_file = home / "openlineage.jsonl"
    services = AirflowServices(
        stack,
        home,
        free_port(),
        {
            "AIRFLOW_CONN_SMTP_DEFAULT": smtp_inbox.smtp_conn(smtp_port),
            "BIONICPRO_NOTIFY_EMAIL": NOTIFY_TO,
            "BIONICPRO_FRESHNESS_DEADLINE_SECONDS": str(TEST_DEADLINE_SECONDS),
            # OpenLineage on: every event a line of this file
            "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
                {"type": "file", "log_file_path": str(lineage_file), "append": True}
            ),
        },
    )
    services.inbox = inbox
    try:
        services.start()
        yield services
    finally:
        services.stop()
        controller.stop()


@pytest.fixture(scope="session")
def nightly_run(airflow_services: AirflowServices, stack: Stack) -> dict:
    """The latest nightly run of `reports_etl_dag`, which the running Airflow's scheduler makes
    once the DAG is unpaused, finished (its dagRun as the REST API gives it). The CRM answers it
    slowly (20 s, shorter than its read timeout), so the run is surely still going when the
    tests' deadline passes. Made once: the tests check different things of the same run (its
    deadline mail, its lineage events)."""
    services = airflow_services
    # The DAG as Airflow parses it: an earlier test's `airflow dags test` stored it without the
    # deadline (see the DAG file).
    services.cli("dags", "reserialize")

    def finished() -> list[dict]:
        # the scheduled runs (`dags test` runs of earlier tests may come after them by run_after)
        runs = [r for r in services.runs("reports_etl_dag") if r["run_type"] == "scheduled"]
        done = runs and all(r["state"] in ("success", "failed") for r in runs)
        return runs if done else []

    with no_crm_faults_left(stack):
        crm_fault(stack, kind="delay", seconds=20)
        services.patch("dags/reports_etl_dag", {"is_paused": False})
        try:
            runs = wait_for(finished, 600, f"the nightly run to finish\n{services.log_tail()}")
        finally:
            services.patch("dags/reports_etl_dag", {"is_paused": True})
    (run,) = runs
    return run

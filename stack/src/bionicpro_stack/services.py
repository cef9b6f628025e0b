"""The embedded stack: a real PostgreSQL (pgserver), the reference CRM service (uvicorn), the
chDB engine's data folder and an Airflow home, all under one project-local folder.

`up()` is safe to repeat and to run after a crash: pgserver reuses or restarts its server, the
CRM is started only when its health check does not answer, and every DDL is IF NOT EXISTS.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import clickhouse_connect
import psycopg
import requests
from clickhouse_connect.driver.client import Client

from bionicpro_etl.config import settings
from bionicpro_etl.queries import sql

DEFAULT_ROOT = Path(".stack")
CRM_USER = "bionicpro"
# For processes that run chDB inside them: its allocator (jemalloc) keeps freed pages for 5 s by
# default, longer than a task's queries are apart, so a worker's memory only grows; with this it
# gives them back at once: (b) peaks some 25 to 65 MB lower, but ClickHouse's own work takes about
# twice as long, since every allocation is paged in anew (docs/operations.md, "Memory or speed").
# Read when chDB loads, so it is set in the environment the process starts with; a value in the
# environment the stack starts from wins (`JE_MALLOC_CONF=dirty_decay_ms:5000 make bench`).
EMBEDDED_ENGINE_ENV = {"JE_MALLOC_CONF": os.environ.get("JE_MALLOC_CONF", "dirty_decay_ms:0")}
# The embedded engine's configuration for the processes Airflow runs: they remove the parts that
# a publish replaced (see the file).
EMBEDDED_ENGINE_CONFIG = Path(__file__).with_name("chdb.xml")
# How every process of the stack opens the embedded engine (chDB's connection options), Airflow's
# tasks and the stack's own tools alike: with its configuration, and compiling no expressions.
# ClickHouse compiles an expression once it has seen it three times; chDB counts the sightings for
# the whole process, but a new connection compiles them again, so a process that ran more than
# two runs (a connection each) compiled the same expressions anew in every run after, for inputs
# far too small to pay it back (docs/operations.md).
EMBEDDED_ENGINE_OPTIONS = {
    "config-file": str(EMBEDDED_ENGINE_CONFIG),
    "compile_expressions": "0",
    "compile_aggregate_expressions": "0",
    "compile_sort_description": "0",
}


@dataclass(frozen=True)
class Stack:
    root: Path
    crm_port: int = 8765

    @classmethod
    def from_env(cls) -> Stack:
        root = Path(os.environ.get("BIONICPRO_STACK_DIR") or DEFAULT_ROOT).absolute()
        return cls(root, int(os.environ.get("BIONICPRO_CRM_PORT", "8765")))

    @property
    def pg_dir(self) -> Path:
        return self.root / "postgres"

    @property
    def clickhouse_dir(self) -> Path:
        return self.root / "clickhouse"

    def clickhouse(self) -> Client:
        """A client of the stack's embedded engine, opened as Airflow's tasks open it."""
        return clickhouse_connect.get_client(
            interface="chdb", path=str(self.clickhouse_dir), chdb_options=EMBEDDED_ENGINE_OPTIONS
        )

    @property
    def airflow_home(self) -> Path:
        return self.root / "airflow"

    @property
    def crm_url(self) -> str:
        return f"http://127.0.0.1:{self.crm_port}"

    def dsn(self, database: str) -> str:
        return f"host={self.pg_dir} user=postgres dbname={database}"

    def crm_password(self) -> str:
        """Made once per stack, so the demo's credentials are real but never committed."""
        path = self.root / "crm_password"
        if not path.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(16))
            path.chmod(0o600)
        return path.read_text().strip()

    # --- PostgreSQL -------------------------------------------------------------------------

    def start_postgres(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        server = _pgserver(self.pg_dir)
        for database, ddl in (("bionicpro", "telemetry_events"), ("crm", "crm_orders")):
            exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
            if "(1 row)" not in exists:
                server.psql(f"CREATE DATABASE {database};")
            with psycopg.connect(self.dsn(database), autocommit=True) as conn:
                conn.execute(sql(ddl, "bionicpro_stack"))

    def stop_postgres(self) -> None:
        if (self.pg_dir / "postmaster.pid").exists():
            import pgserver

            server = _pgserver(self.pg_dir)
            pgserver.pg_ctl(
                ["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user
            )

    # --- the CRM service --------------------------------------------------------------------

    def crm_healthy(self) -> bool:
        try:
            return requests.get(f"{self.crm_url}/health", timeout=1).ok
        except requests.ConnectionError:
            return False

    def start_crm(self, *, faults: bool = False) -> None:
        if self.crm_healthy():
            return
        env = {
            **os.environ,
            "CRM_DSN": self.dsn("crm"),
            "CRM_USERNAME": CRM_USER,
            "CRM_PASSWORD": self.crm_password(),
            "CRM_FAULTS": "1" if faults else "0",
        }
        log = (self.root / "crm.log").open("ab")
        process = subprocess.Popen(
            [
                sys.executable, "-m", "uvicorn", "--factory",
                "bionicpro_stack.crm_service:app_from_env",
                "--host", "127.0.0.1", "--port", str(self.crm_port), "--log-level", "warning",
            ],
            env=env, stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
        (self.root / "crm.pid").write_text(str(process.pid))
        deadline = time.monotonic() + 30
        while not self.crm_healthy():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the CRM service did not start; see {self.root / 'crm.log'}")
            time.sleep(0.2)

    def stop_crm(self) -> None:
        pid_file = self.root / "crm.pid"
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(pid_file.read_text()), signal.SIGTERM)
            pid_file.unlink()

    # --- the whole stack --------------------------------------------------------------------

    def up(self, *, crm_faults: bool = False) -> None:
        self.start_postgres()
        self.start_crm(faults=crm_faults)
        self.clickhouse_dir.mkdir(parents=True, exist_ok=True)

    def down(self) -> None:
        self.stop_crm()
        self.stop_postgres()

    def connections(self) -> dict[str, str]:
        """The contract's three Airflow connections, pointing at this stack (JSON form)."""
        return {
            "AIRFLOW_CONN_POSTGRES_DEFAULT": json.dumps(
                {"conn_type": "postgres", "host": str(self.pg_dir), "login": "postgres",
                 "schema": "bionicpro"}
            ),
            "AIRFLOW_CONN_CRM_HTTP": json.dumps(
                {"conn_type": "http", "host": "127.0.0.1", "port": self.crm_port, "schema": "http",
                 "login": CRM_USER, "password": self.crm_password()}
            ),
            "AIRFLOW_CONN_CLICKHOUSE_DEFAULT": json.dumps(
                {"conn_type": "clickhouse",
                 "extra": {"client_kwargs": {"interface": "chdb", "path": str(self.clickhouse_dir),
                                             "chdb_options": EMBEDDED_ENGINE_OPTIONS}}}
            ),
        }  # fmt: skip

    def airflow_env(self) -> dict[str, str]:
        """Environment for the `airflow` CLI on this stack: its own home and SQLite metadata DB,
        the project's dags/ folder, one task at a time (chDB admits one process), chDB's memory
        given back as soon as it is freed, and the report zone as Airflow's default zone."""
        dags = Path(os.environ.get("BIONICPRO_DAGS_FOLDER") or "dags").absolute()
        return {
            **self.connections(),
            **EMBEDDED_ENGINE_ENV,
            "AIRFLOW_HOME": str(self.airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": "1",
            # A bare date on the CLI (dags test, backfill) means midnight in the report zone.
            "AIRFLOW__CORE__DEFAULT_TIMEZONE": settings().report_tz.key,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.airflow_home / 'airflow.db'}",
        }


def free_port() -> int:
    """A TCP port on localhost that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pgserver(pg_dir: Path) -> Any:
    """pgserver's handle of the server in `pg_dir`, which it starts if it is not running (it also
    clears a stale pid file). Made anew each time: pgserver caches handles and would not notice a
    server stopped since; the server outlives this process (no cleanup mode)."""
    with warnings.catch_warnings():
        # pgserver asks platformdirs for a runtime dir it does not need; that warns on CI.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        import pgserver

        # Its info lines (also from its exit hook, after test runners close their streams) are noise.
        logging.getLogger("pgserver").setLevel(logging.WARNING)
        pg_dir.mkdir(parents=True, exist_ok=True)
        return pgserver.PostgresServer(pg_dir.resolve(), cleanup_mode=None)

"""A running Airflow on the test stack: the API server, the scheduler (LocalExecutor) and the
triggerer, as separate processes with their own home and SQLite database, for the tests of what
only a running Airflow does: a DAG scheduled on an asset, a deadline alert."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import requests
from bionicpro_stack.services import Stack

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
DAGS = Path(__file__).resolve().parents[1] / "dags"
COMPONENTS = ("scheduler", "triggerer")


class AirflowServices:
    def __init__(self, stack: Stack, home: Path, port: int, env: Mapping[str, str]) -> None:
        self.home, self.port = home, port
        self.api = f"http://127.0.0.1:{port}"
        self.env = {
            **os.environ,
            **stack.airflow_env(),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",  # the REST API, open
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),  # one for every process
            "AIRFLOW__API__PORT": str(port),
            # `dags reserialize` stores the DAG as parsed at once, also right after an `airflow
            # dags test` stored its own copy (without the deadline, see the DAG file); Airflow
            # would otherwise skip a write within 30 s of the last one.
            "AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL": "0",
            **env,
        }
        self.env.pop("BIONICPRO_REPORT_TZ", None)
        self.processes: list[subprocess.Popen] = []
        self.inbox: Any = None  # the SMTP server its notifications reach, when there is one

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return cli(self.env, *args, timeout=timeout)

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.cli("db", "migrate")
        self.cli("dags", "reserialize")  # the scheduler reads DAGs from the database
        for command in (["api-server", "--port", str(self.port)], *([c] for c in COMPONENTS)):
            log = (self.home / f"{command[0]}.log").open("ab")
            self.processes.append(
                subprocess.Popen(
                    [AIRFLOW, *command],
                    env=self.env,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                )
            )
        wait_for(self._healthy, 180, "the Airflow services to report healthy")

    def _healthy(self) -> bool:
        try:
            health = requests.get(f"{self.api}/api/v2/monitor/health", timeout=5).json()
        except (requests.ConnectionError, requests.Timeout, ValueError):
            return False
        return all(health.get(c, {}).get("status") == "healthy" for c in COMPONENTS)

    def stop(self) -> None:
        for process in self.processes:
            os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)

    def get(self, path: str, **params: Any) -> Any:
        response = requests.get(f"{self.api}/api/v2/{path}", params=params, timeout=30)
        response.raise_for_status()
        return response.json()

    def patch(self, path: str, body: dict[str, Any]) -> Any:
        response = requests.patch(f"{self.api}/api/v2/{path}", json=body, timeout=30)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        response = requests.post(f"{self.api}/api/v2/{path}", json=body, timeout=30)
        assert response.ok, response.text
        return response.json()

    @property
    def lineage_file(self) -> Path:
        """Where OpenLineage's file transport writes its events, a line each."""
        return self.home / "openlineage.jsonl"

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self.get(f"dags/{dag_id}/dagRuns", order_by="run_after")["dag_runs"]

    def log_tail(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(self.home.glob("*.log"))
        )


def cli(env: Mapping[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """The `airflow` CLI in `env`, which must succeed."""
    done = subprocess.run(
        [AIRFLOW, *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done


def wait_for(condition: Callable[[], Any], seconds: float, what: str) -> Any:
    """Poll until `condition()` is truthy, at most `seconds`; a bound, not a timing: a test
    fails here only when the thing never happens."""
    deadline = time.monotonic() + seconds
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(1)
    return result

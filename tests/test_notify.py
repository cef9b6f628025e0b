"""Notifications through real servers: an SMTP server (aiosmtpd) and a Slack webhook endpoint
(a local HTTP server), reached through the providers' notifiers and Airflow connections."""

from __future__ import annotations

import html
import json
import os
import re
import threading
from collections.abc import Iterator
from datetime import datetime
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import smtp_inbox
from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier
from airflow.providers.smtp.notifications.smtp import SmtpNotifier
from airflow.sdk import DAG, BaseHook
from bionicpro_stack.services import free_port
from smtp_inbox import SMTP_LOGIN, SMTP_PASSWORD, Inbox, smtp_conn

from bionicpro_etl import notify

MOSCOW = ZoneInfo("Europe/Moscow")
CRM_PASSWORD = "crm-conn-pass-7q1w"
# The run of 02:00 on 2 January, Moscow: its id is in UTC (31 December), it builds 1 January.
RUN_ID = "scheduled__2023-12-31T23:00:00+00:00"
LOGICAL_DATE = datetime(2024, 1, 1, 2, 0, tzinfo=MOSCOW)
LOG_URL = "http://airflow.local/dags/reports_etl_dag/runs/x/tasks/extract_crm_data?try_number=2"


@pytest.fixture(autouse=True)
def quiet_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No channel unless a test configures one; no proxy between us and the local servers."""
    for name in (
        "BIONICPRO_NOTIFY_EMAIL",
        "BIONICPRO_NOTIFY_SMTP_CONN",
        "BIONICPRO_NOTIFY_FROM",
        "BIONICPRO_NOTIFY_SLACK_CONN",
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def inbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Inbox]:
    """A real SMTP server offering login, behind the connection `smtp_default`."""
    port = free_port()
    handler, controller = smtp_inbox.start(port)
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_conn(port))
    yield handler
    controller.stop()


class Webhook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.posts.append((self.path, json.loads(body)))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def slack(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, dict]]]:
    """A local Slack webhook endpoint behind the slackwebhook connection `test_slack`; yields
    the (path, JSON body) of every POST it receives."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Webhook)
    server.posts = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    conn = {
        "conn_type": "slackwebhook",
        "host": f"http://127.0.0.1:{server.server_port}/services",
        "password": "T000/B000/slack-token",
    }
    monkeypatch.setenv("AIRFLOW_CONN_TEST_SLACK", json.dumps(conn))
    monkeypatch.setenv("BIONICPRO_NOTIFY_SLACK_CONN", "test_slack")
    yield server.posts  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()
    thread.join()


def task_context(exception: BaseException | None = None) -> dict[str, Any]:
    """What a task's failure callback receives, as far as the notifiers and Run.of read it."""
    ti = SimpleNamespace(
        dag_id="reports_etl_dag",
        task_id="extract_crm_data",
        run_id=RUN_ID,
        try_number=2,
        log_url=LOG_URL,
    )
    return {
        "dag": DAG(dag_id="reports_etl_dag", schedule=None),
        "ti": ti,
        "task_instance": ti,
        "run_id": RUN_ID,
        "logical_date": LOGICAL_DATE,
        "dag_run": SimpleNamespace(run_id=RUN_ID, run_after=LOGICAL_DATE),
        "params": {"crm_full_refresh": False},
        "exception": exception,
    }


def html_source(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("html",)).get_content()


def html_body(message: EmailMessage) -> str:
    """The mail's text as a reader sees it."""
    return html.unescape(re.sub(r"<[^>]+>", "", html_source(message)))


def test_nothing_configured_sends_nothing(inbox: Inbox) -> None:
    assert notify.notifiers() == []
    notify.on_failure(task_context(RuntimeError("boom")))
    notify.quality_warnings(task_context(), ["no_order_share = 0.3"])
    assert inbox.envelopes == []


def test_the_configuration_chooses_the_notifiers(
    monkeypatch: pytest.MonkeyPatch, slack: list
) -> None:
    monkeypatch.setenv("BIONICPRO_NOTIFY_EMAIL", " ops@bionicpro.test, , oncall@bionicpro.test ")
    first, second = notify.notifiers()
    assert isinstance(first, SmtpNotifier) and isinstance(second, SlackWebhookNotifier)
    assert first.to == ["ops@bionicpro.test", "oncall@bionicpro.test"]
    assert (first.smtp_conn_id, first.from_email) == ("smtp_default", "bionicpro-etl@localhost")
    assert second.slack_webhook_conn_id == "test_slack"
    assert notify.notifiers()[0] is not first  # new each time: notifiers render in place


def test_a_failure_is_mailed_without_credentials(
    monkeypatch: pytest.MonkeyPatch, inbox: Inbox
) -> None:
    monkeypatch.setenv("BIONICPRO_NOTIFY_EMAIL", "ops@bionicpro.test,oncall@bionicpro.test")
    # The failed task had read the CRM connection (so Airflow masks its password) and its
    # error names that password, a URL with credentials, and something that looks like Jinja.
    monkeypatch.setenv(
        "AIRFLOW_CONN_CRM_HTTP",
        json.dumps({"conn_type": "http", "host": "crm.local", "password": CRM_PASSWORD}),
    )
    BaseHook.get_connection("crm_http")
    error = RuntimeError(
        "CRM unreachable: GET https://crm_user:url-pass-5e6r@crm.local/api/v1/customers "
        f"refused (auth {CRM_PASSWORD}) <html> {{{{ conn.smtp_default.password }}}}"
    )

    notify.on_failure(task_context(error))

    (envelope,), (message,) = inbox.envelopes, inbox.messages()
    assert envelope.mail_from == "bionicpro-etl@localhost"
    assert envelope.rcpt_tos == ["ops@bionicpro.test", "oncall@bionicpro.test"]
    assert inbox.logins == [SMTP_LOGIN]
    assert message["Subject"] == (
        "[bionicpro] reports_etl_dag failed: extract_crm_data for report day 2024-01-01"
    )
    body = html_body(message)
    for line in (
        "DAG: reports_etl_dag",
        f"Run: {RUN_ID}",
        "Task: extract_crm_data",
        "Try: 2",
        "Report day: 2024-01-01",
        f"Log: {LOG_URL}",
        "RuntimeError: CRM unreachable: GET https://crm_user:***@crm.local/api/v1/customers",
        "<html> {{ conn.smtp_default.password }}",  # escaped in the mail, never rendered
    ):
        assert line in body
    everything = f"{envelope.content.decode()}\n{message['Subject']}\n{body}"  # body: decoded
    for secret in (SMTP_PASSWORD, CRM_PASSWORD, "url-pass-5e6r"):
        assert secret not in everything
    assert "&lt;html&gt;" in html_source(message)


def test_a_long_error_is_cut(monkeypatch: pytest.MonkeyPatch, inbox: Inbox) -> None:
    monkeypatch.setenv("BIONICPRO_NOTIFY_EMAIL", "ops@bionicpro.test")
    notify.on_failure(task_context(ValueError("x" * 5000)))
    (message,) = inbox.messages()
    assert html_body(message).endswith("Error:\n" + ("ValueError: " + "x" * 5000)[:2000])


def test_a_failure_is_posted_to_slack(slack: list[tuple[str, dict]]) -> None:
    notify.on_failure(task_context(RuntimeError("ClickHouse: partition 202401 is locked & <busy>")))

    ((path, body),) = slack
    assert path == "/services/T000/B000/slack-token"
    text = body["text"]
    assert text.startswith(
        "*[bionicpro] reports_etl_dag failed: extract_crm_data for report day 2024-01-01*\n"
    )
    for line in ("DAG: reports_etl_dag", f"Run: {RUN_ID}", "Task: extract_crm_data"):
        assert line in text
    assert "RuntimeError: ClickHouse: partition 202401 is locked &amp; &lt;busy&gt;" in text


def test_a_broken_channel_neither_raises_nor_stops_the_others(
    monkeypatch: pytest.MonkeyPatch, slack: list[tuple[str, dict]], caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_conn(free_port()))  # nothing listens
    monkeypatch.setenv("BIONICPRO_NOTIFY_EMAIL", "ops@bionicpro.test")

    notify.on_failure(task_context(RuntimeError("boom")))

    ((_, body),) = slack
    assert "RuntimeError: boom" in body["text"]
    assert "through SmtpNotifier" in caplog.text  # logged, with its traceback


def test_quality_warnings_are_one_message(monkeypatch: pytest.MonkeyPatch, inbox: Inbox) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_OPS_MAIL", os.environ["AIRFLOW_CONN_SMTP_DEFAULT"])
    monkeypatch.setenv("BIONICPRO_NOTIFY_SMTP_CONN", "ops_mail")
    monkeypatch.delenv("AIRFLOW_CONN_SMTP_DEFAULT")  # so only the named connection can work
    monkeypatch.setenv("BIONICPRO_NOTIFY_FROM", "etl@bionicpro.test")
    monkeypatch.setenv("BIONICPRO_NOTIFY_EMAIL", "analysts@bionicpro.test")
    warnings = [
        "no_order_share = 0.31, above the warn level 0.2",
        "day_volume_drop = 0.55 (1,200 rows against 2,700), above the warn level 0.5",
    ]

    notify.quality_warnings(task_context(), [])
    assert inbox.envelopes == []
    notify.quality_warnings(task_context(), warnings)

    (envelope,), (message,) = inbox.envelopes, inbox.messages()
    assert envelope.mail_from == "etl@bionicpro.test"
    assert envelope.rcpt_tos == ["analysts@bionicpro.test"]
    assert message["Subject"] == "[bionicpro] reports_etl_dag 2024-01-01: 2 data-quality warnings"
    body = html_body(message)
    assert "Report day: 2024-01-01" in body
    assert "Warnings:\n" + "\n".join(f"- {w}" for w in warnings) in body

"""The freshness deadline, on a running Airflow with a deadline of a few seconds: the night's run
(`nightly_run`, conftest.py) is still going when it passes, and the notifiers are told which
run, which day and what is still running, through a real SMTP server."""

from __future__ import annotations

import html
import re
from datetime import datetime, timedelta

from airflow.sdk import DeadlineReference
from airflow_services import DAGS, wait_for
from conftest import MOSCOW, NOTIFY_TO, TEST_DEADLINE_SECONDS

from bionicpro_etl.report_day import report_day_of

TASKS = {
    "create_data_mart_table", "plan_report_days", "telemetry_shards", "extract_telemetry",
    "extract_crm_data", "transform_data", "check_data_quality", "load_to_clickhouse",
}  # fmt: skip


def deadline_mail(services, run_id: str) -> list:
    """The deadline mails of the run `run_id` (an earlier test's run may have missed the tests'
    short deadline too)."""
    return [
        m
        for m in services.inbox.messages()
        if "by its deadline" in m["Subject"] and f"Run: {run_id}" in text(m)
    ]


def text(message) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", message.get_body().get_content()))


def test_a_run_past_its_deadline_is_reported_with_what_is_still_running(
    airflow_services, nightly_run
):
    services, run = airflow_services, nightly_run
    # The nightly run ran past the deadline (the CRM answered it slowly) and has ended by itself.
    assert run["state"] in ("success", "failed")
    wait_for(
        lambda: deadline_mail(services, run["dag_run_id"]),
        180,
        f"the mail\n{services.log_tail()}",
    )

    # one for the run, whatever else it sent (quality warnings)
    (message,) = deadline_mail(services, run["dag_run_id"])
    assert message["To"] == NOTIFY_TO
    day = report_day_of(datetime.fromisoformat(run["logical_date"]), MOSCOW).isoformat()
    assert message["Subject"] == (
        f"[bionicpro] reports_etl_dag has not finished report day {day} by its deadline"
    )
    body = text(message)
    assert f"Run: {run['dag_run_id']}" in body
    assert f"Report day: {day}" in body
    assert f"Queued at: {run['queued_at'][:19]}" in body
    still_running = body.split("Still running:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    named = {line[2:].split(":", 1)[0] for line in still_running}
    # The tasks not finished, each with its state; on a busy machine the deadline (two seconds)
    # can pass before the scheduler has started any, and the alert says that instead.
    assert still_running
    assert named <= TASKS or still_running == ["- no task (the run waits to start)"]


def test_the_dag_has_a_deadline_of_four_hours_after_it_is_queued_by_default():
    from airflow.dag_processing.dagbag import DagBag

    (alert,) = DagBag(dag_folder=str(DAGS)).dags["reports_etl_dag"].deadline
    assert alert.reference == DeadlineReference.DAGRUN_QUEUED_AT
    assert alert.interval == timedelta(hours=4) != timedelta(seconds=TEST_DEADLINE_SECONDS)
    assert alert.callback.path == "bionicpro_etl.callbacks.deadline_missed"

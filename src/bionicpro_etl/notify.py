"""Telling people: a task that failed, data-quality checks at warn level, or a run that has not
finished by its deadline, through Airflow's
notifiers (the smtp provider's `SmtpNotifier`, the slack provider's `SlackWebhookNotifier`).

Off by default; the settings choose the channels (config.py: `notify_email` with `notify_from`
and `notify_smtp_conn`, `notify_slack_conn`), read at each call.

The DAG file imports this module when parsed, so Airflow's providers and the pipeline are
imported only when a message is sent.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bionicpro_etl.config import Settings, settings

if TYPE_CHECKING:
    from airflow.sdk import BaseNotifier

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 2000

# The notifiers' template fields only name these context keys: the message itself is a value
# substituted into the template, never a template, so an error text holding `{{ conn... }}`
# cannot make Jinja read a secret.
SUBJECT, HTML, TEXT = "bionicpro_subject", "bionicpro_html", "bionicpro_text"
# Credentials written into a URL (`scheme://user:password@host`), which no connection registers.
URL_PASSWORD = re.compile(r"(?P<keep>[a-z][a-z0-9+.-]*://[^/\s:@]*):[^/\s@]+@", re.IGNORECASE)


@dataclass(frozen=True)
class Message:
    subject: str
    body: str

    @property
    def html(self) -> str:
        """The SMTP hook sends HTML only; a pre-wrapped block keeps the text's layout."""
        return f'<pre style="white-space: pre-wrap">{html.escape(self.body)}</pre>'

    @property
    def text(self) -> str:
        """Slack reads `&`, `<` and `>` as control characters, so they are escaped."""
        return html.escape(f"*{self.subject}*\n{self.body}", quote=False)


def notifiers(config: Settings | None = None) -> list[BaseNotifier]:
    """The configured channels, as new notifiers: a notifier renders its template fields in
    place, so each instance sends one message."""
    config = config or settings()
    found: list[BaseNotifier] = []
    if recipients := list(config.notify_email):
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        found.append(
            SmtpNotifier(
                to=recipients,
                from_email=config.notify_from,
                subject=f"{{{{ {SUBJECT} }}}}",
                html_content=f"{{{{ {HTML} }}}}",
                smtp_conn_id=config.notify_smtp_conn,
            )
        )
    if slack_conn := config.notify_slack_conn:
        from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

        found.append(
            SlackWebhookNotifier(slack_webhook_conn_id=slack_conn, text=f"{{{{ {TEXT} }}}}")
        )
    return found


def on_failure(context: Mapping[str, Any]) -> None:
    """Task-failure callback: which DAG, run, task and report day failed, and why."""
    if not (channels := notifiers()):
        return
    day, facts = _facts(context)
    dag_id, task_id = context["dag"].dag_id, context["ti"].task_id
    error = scrub(_error_text(context.get("exception")))[:MAX_ERROR_CHARS]
    message = Message(
        subject=f"[bionicpro] {dag_id} failed: {task_id} for report day {day}",
        body=f"{facts}\n\nError:\n{error}",
    )
    _send(channels, context, message)


def quality_warnings(context: Mapping[str, Any], warnings: list[str]) -> None:
    """Warn-level quality results: the run publishes, but people should look at these."""
    if not warnings or not (channels := notifiers()):
        return
    day, facts = _facts(context)
    count = f"{len(warnings)} data-quality warning{'s' if len(warnings) > 1 else ''}"
    listed = "\n".join(f"- {w}" for w in warnings)
    message = Message(
        subject=f"[bionicpro] {context['dag'].dag_id} {day}: {count}",
        body=f"{facts}\n\nWarnings:\n{listed}",
    )
    _send(channels, context, message)


# Task states of a run that has not finished, as a person would say them.
STILL_RUNNING = {"running": "running", "queued": "queued", "deferred": "deferred",
                 "up_for_retry": "failed, waiting to retry", "restarting": "restarting",
                 "up_for_reschedule": "waiting to run again"}  # fmt: skip
NOT_STARTED = {None, "none", "scheduled"}


def deadline_missed(context: Mapping[str, Any], task_states: Mapping[str, str | None]) -> None:
    """The Deadline Alert (see callbacks.deadline_missed): the run has not finished by its
    deadline. Which run, which report day, its state, and what is still running, what has not
    started and what is done. `context` is what Airflow gives a deadline callback: the run (as
    the REST API shows it) and the deadline."""
    if not (channels := notifiers()):
        return
    from bionicpro_etl.run import Run

    dag_run, deadline = context["dag_run"], context.get("deadline") or {}
    logical_date = _instant(dag_run.get("logical_date"))
    day = Run.day_of(logical_date, _instant(dag_run["run_after"])).isoformat()
    running = sorted((t, STILL_RUNNING[s]) for t, s in task_states.items() if s in STILL_RUNNING)
    waiting = sorted(t for t, s in task_states.items() if s in NOT_STARTED)
    done = sorted(
        (t, s) for t, s in task_states.items() if s not in STILL_RUNNING and s not in NOT_STARTED
    )
    lines = [
        f"DAG: {dag_run['dag_id']}",
        f"Run: {dag_run['dag_run_id']} ({dag_run.get('state')})",
        f"Report day: {day}",
        f"Queued at: {dag_run.get('queued_at')}",
        f"Deadline: {deadline.get('deadline_time')}",
        "",
        "Still running:",
        *(
            [f"- {task}: {state}" for task, state in running]
            or ["- no task (the run waits to start)"]
        ),
    ]
    if waiting:
        lines += ["", f"Not started yet: {', '.join(waiting)}"]
    if done:
        lines += ["", f"Done: {', '.join(f'{task} ({state})' for task, state in done)}"]
    message = Message(
        subject=f"[bionicpro] {dag_run['dag_id']} has not finished report day {day} by its"
        " deadline",
        body="\n".join(lines),
    )
    _send(channels, context, message)


def _instant(value: Any) -> Any:
    """A datetime as the deadline context carries it (an ISO string in its JSON form)."""
    from datetime import datetime

    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _facts(context: Mapping[str, Any]) -> tuple[str, str]:
    """The report day (as the run computes it) and the lines that place a message."""
    from bionicpro_etl.run import Run

    day = Run.of(context).day.isoformat()
    ti = context["ti"]
    lines = [
        f"DAG: {context['dag'].dag_id}",
        f"Run: {context['run_id']}",
        f"Task: {ti.task_id}",
    ]
    if getattr(ti, "try_number", None) is not None:
        lines.append(f"Try: {ti.try_number}")
    lines.append(f"Report day: {day}")
    if log_url := getattr(ti, "log_url", None):
        lines.append(f"Log: {log_url}")
    return day, "\n".join(lines)


def _error_text(error: BaseException | str | None) -> str:
    """The exception's type and text; Airflow may hand over a plain string instead."""
    if error is None:
        return "(no exception in the context)"
    if isinstance(error, BaseException):
        return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return str(error)


def scrub(text: str) -> str:
    """Without the secrets Airflow knows (the passwords of the connections this process has
    read) and passwords inside URLs. Done before truncating, so no half secret survives."""
    from airflow.sdk._shared.secrets_masker import redact  # where Airflow's own masker lives

    return URL_PASSWORD.sub(r"\g<keep>:***@", redact(text))


def _send(channels: list[BaseNotifier], context: Mapping[str, Any], message: Message) -> None:
    """Through every channel; one that fails is logged and the others still send, and nothing
    raises: a broken mail server must not hide the task's own failure."""
    values = {SUBJECT: message.subject, HTML: message.html, TEXT: message.text}
    for notifier in channels:
        try:
            notifier({**context, **values})  # a copy: notifiers add their fields to the context
        except Exception:
            log.exception("Could not send %r through %s", message.subject, type(notifier).__name__)

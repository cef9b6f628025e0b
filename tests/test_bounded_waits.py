"""A source that misbehaves for good fails clearly and in bounded time (issue 9, points 5 and
6): a CRM that pages forever, answers far fewer orders than are known, asks to wait an hour,
sends a body too large to hold or is too slow overall; a PostgreSQL that holds a lock, runs a
statement too long, or never answers a connection. Each becomes a failure Airflow retries."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import replace

import psycopg
import pytest
import requests
from bionicpro_stack.services import CRM_USER
from conftest import LAST_DAY, build_day
from conftest import crm_fault as fault
from conftest import crm_served as served
from test_pipeline import mart_rows

from bionicpro_etl import extract, pipeline
from bionicpro_etl.config import settings
from bionicpro_etl.extract import CrmError, crm_pages
from bionicpro_etl.run import Plan


def within(seconds: float, work: Callable[[], object]) -> BaseException | None:
    """Run `work` in a thread; the error it raised (None if it returned), or fail the test if it
    is still waiting after `seconds` (a bound far above what the test expects, never measured)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {seconds} s"
    return errors[0] if errors else None


# --- the CRM ---------------------------------------------------------------------------------


def test_a_crm_that_pages_forever_fails_clearly(stack, crm, crm_faults):
    fault(stack, kind="endless", times=10_000)  # empty pages, each with a new cursor
    before = served(stack)
    with pytest.raises(CrmError, match=r"10 empty pages in a row, each with a new cursor"):
        list(crm_pages(crm, stack.crm_url, page_size=1000))
    assert served(stack) - before == 10


def test_a_full_listing_far_short_of_the_known_orders_fails(stack, ch, crm):
    """A CRM that lists only four in five of its orders (half restored, a broken filter): the
    full refresh fails instead of blanking the names and statuses of the rest."""
    build_day(stack, ch, crm, LAST_DAY, "before_short_listing")
    before = mart_rows(ch, LAST_DAY)
    with psycopg.connect(stack.dsn("crm")) as conn:
        conn.execute("ALTER TABLE crm_orders RENAME TO crm_orders_whole")
        conn.execute("CREATE TABLE crm_orders (LIKE crm_orders_whole INCLUDING ALL)")
        conn.execute(
            "INSERT INTO crm_orders OVERRIDING SYSTEM VALUE SELECT * FROM crm_orders_whole"
            " WHERE id % 5 <> 0"
        )
    try:
        run = pipeline.Run("short_listing", LAST_DAY, crm_full_refresh=True)
        with pytest.raises(CrmError, match=r"under 90% of the \d+ orders already known"):
            pipeline.run_all(stack.dsn("bionicpro"), crm, stack.crm_url, ch, run)
    finally:
        with psycopg.connect(stack.dsn("crm")) as conn:
            conn.execute("DROP TABLE crm_orders")
            conn.execute("ALTER TABLE crm_orders_whole RENAME TO crm_orders")
    assert mart_rows(ch, LAST_DAY) == before


def test_a_retry_after_of_an_hour_is_capped(stack, crm_faults):
    fault(stack, kind="status", status=429, retry_after=3600, times=1)
    with extract.with_retries(requests.Session(), max_retry_after=0.5) as session:
        session.auth = (CRM_USER, stack.crm_password())
        before = served(stack)
        assert within(120, lambda: list(crm_pages(session, stack.crm_url, page_size=1000))) is None
    assert served(stack) - before == 3  # the 429, then both pages


def test_a_body_too_large_to_hold_fails(stack, crm, crm_faults):
    fault(stack, kind="oversized", bytes=5_000_000, times=1)
    config = replace(settings(), crm_max_page_bytes=1_000_000)
    with pytest.raises(CrmError, match=r"body over 1000000 bytes"):
        list(crm_pages(crm, stack.crm_url, page_size=1000, config=config))


def test_a_listing_that_outlasts_its_budget_fails(stack, crm, crm_faults):
    fault(stack, kind="delay", seconds=0.4, times=1000)  # every page slow, none too slow alone
    config = replace(settings(), crm_listing_budget_seconds=1.0)
    with pytest.raises(CrmError, match=r"ran out of its budget of 1 s after \d+ pages"):
        list(crm_pages(crm, stack.crm_url, page_size=50, config=config))


# --- PostgreSQL ------------------------------------------------------------------------------


def stage_work(stage: str, dsn: str, ch, run: pipeline.Run, config) -> Callable[[], object]:
    """The plan (a psycopg session) or the extract (an ADBC session) of `run` against `dsn`."""
    if stage == "plan":
        return lambda: pipeline.plan_report_days(dsn, ch, run, config)
    planned = Plan(
        days=(LAST_DAY,), read_whole=(LAST_DAY,), kept=(), lookback_start=LAST_DAY,
        state_start=LAST_DAY, state_end=LAST_DAY, watermark_before=None, watermark_after=None,
        reread_from=None, reread_next=None,
    )  # fmt: skip
    return lambda: pipeline.extract_telemetry(dsn, ch, run, planned, config=config)


@pytest.mark.parametrize("stage", ["plan", "extract"])
@pytest.mark.parametrize(
    ("timeout", "message"),
    [
        ("pg_lock_timeout_seconds", "lock timeout"),
        ("pg_statement_timeout_seconds", "statement timeout"),
    ],
)
def test_a_source_that_holds_a_lock_fails_within_the_timeout(stack, ch, stage, timeout, message):
    """The telemetry table locked by another session: the stage's query waits for the lock
    until the bound under test stops it (the other one set high)."""
    dsn = stack.dsn("bionicpro")
    high = {"pg_lock_timeout_seconds": 600, "pg_statement_timeout_seconds": 600}
    config = replace(settings(), **{**high, timeout: 1})
    work = stage_work(stage, dsn, ch, pipeline.Run(f"locked_{stage}", LAST_DAY), config)
    with psycopg.connect(dsn) as locker:
        locker.execute("LOCK TABLE telemetry_events IN ACCESS EXCLUSIVE MODE")
        error = within(120, work)
        locker.rollback()
    assert error is not None and message in str(error)


@pytest.mark.parametrize("stage", ["plan", "extract"])
def test_a_server_that_never_answers_fails_within_the_connect_timeout(ch, stage):
    """A port that accepts connections and says nothing (a half-dead server, a black hole)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        host, port = silent.getsockname()
        dsn = f"host={host} port={port} user=postgres dbname=bionicpro"
        config = replace(settings(), pg_connect_timeout_seconds=2)
        error = within(120, stage_work(stage, dsn, ch, pipeline.Run("silent", LAST_DAY), config))
    assert error is not None and "timeout" in str(error).lower()

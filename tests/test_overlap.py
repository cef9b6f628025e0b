"""Runs that overlap (issue 9, point 2): a nightly run and a backfill interleave their stages
(plan P, extract E, transform and check T, load L) in the orders that matter, on the real stack,
and end as if they had run one after the other: no older snapshot overwrites a newer
publication, no watermark passes arrivals that were not published, no full CRM refresh is
undone, and a load waits while another run publishes."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import psycopg
import pytest
from conftest import FIRST_DAY, LAST_DAY, add_late_events, build_day
from test_incremental import assert_day_matches_sources
from test_pipeline import mart_rows

from bionicpro_etl import fence, pipeline
from bionicpro_etl.config import settings
from bionicpro_etl.plan import last_published
from bionicpro_etl.run import Run


class Staged:
    """One run driven stage by stage, as Airflow's tasks would drive it, in this process."""

    def __init__(self, stack, ch, crm, run: Run) -> None:
        self.sources = pipeline.Sources(stack.dsn("bionicpro"), crm, stack.crm_url)
        self.ch, self.run = ch, run

    def P(self) -> None:
        self.plan = pipeline.plan_report_days(self.sources.dsn, self.ch, self.run)

    def E(self) -> None:
        self.extracted = [
            pipeline.extract_telemetry(self.sources.dsn, self.ch, self.run, self.plan, shard=s)
            for s in range(self.plan.shards)
        ]
        self.crm = pipeline.extract_crm_data(
            self.sources.crm, self.sources.crm_url, self.ch, self.run
        )

    def T(self) -> None:
        self.rows = pipeline.transform_data(self.ch, self.run, self.plan, self.crm)
        pipeline.check_data_quality(self.ch, self.run, self.rows, self.crm)

    def L(self) -> None:
        pipeline.load_to_clickhouse(
            self.sources, self.ch, self.run, self.plan, self.extracted, self.crm, self.rows
        )


ORDERS = {
    "one_after_the_other": "PA EA TA LA PB EB TB LB",
    "in_step": "PA PB EA EB TA TB LA LB",  # B planned before A published
    "overtaken": "PA EA TA PB EB TB LB LA",  # A's snapshot is the older one, and loads last
    "published_between_extract_and_transform": "PA EA PB EB TB LB TA LA",
    "planned_first_published_last": "PB PA EA EB TB TA LA LB",
    "newer_extract_loads_last": "PA PB EB EA TA TB LB LA",
}


def publications(ch, run_ids: list[str]) -> list[int]:
    return sorted(
        n
        for (n,) in ch.query(
            "SELECT publication FROM bionicpro_reports.etl_runs"
            " WHERE status = 'success' AND has({ids:Array(String)}, run_id)",
            parameters={"ids": run_ids},
        ).result_rows
    )


@pytest.mark.parametrize("name", ORDERS)
def test_overlapping_runs_end_as_if_one_ran_after_the_other(stack, ch, crm, no_lag, name):
    """The nightly run (A) and a backfill (B) rebuild the same day, which receives late events
    before either plans and more after the first extract. Whatever the order, every arrival the
    final watermark has passed is in the mart, and a later run leaves the day equal to its
    sources."""
    key = f"PROT-OVERLAP-{list(ORDERS).index(name)}"
    build_day(stack, ch, crm, LAST_DAY, f"{name}_settle")
    before = fence.latest(ch)
    add_late_events(stack, FIRST_DAY, key, 2, ago=timedelta(0))
    runs = {
        "A": Staged(stack, ch, crm, Run(f"{name}_A", LAST_DAY)),
        "B": Staged(stack, ch, crm, Run(f"{name}_B", FIRST_DAY + timedelta(days=2))),
    }
    more = True
    for step in ORDERS[name].split():
        getattr(runs[step[1]], step[0])()
        if step[0] == "E" and more:
            add_late_events(stack, FIRST_DAY, key, 3, ago=timedelta(0))
            more = False

    watermark, _ = last_published(ch)
    with psycopg.connect(stack.dsn("bionicpro")) as conn:
        received = [
            at
            for (at,) in conn.execute(
                "SELECT received_at FROM telemetry_events WHERE prosthesis_id = %s", (key,)
            )
        ]
    published = mart_rows(ch, FIRST_DAY)[5, key, FIRST_DAY]["total_actions"]
    assert sum(at <= watermark for at in received) <= published <= len(received) == 5
    assert publications(ch, [f"{name}_A", f"{name}_B"]) == [before + 1, before + 2]

    build_day(stack, ch, crm, LAST_DAY, f"{name}_next")
    assert mart_rows(ch, FIRST_DAY)[5, key, FIRST_DAY]["total_actions"] == 5
    assert_day_matches_sources(stack, ch, FIRST_DAY)


def crm_orders_of(ch, user_id: int) -> list[tuple]:
    return ch.query(
        "SELECT prosthesis_id, status FROM bionicpro_reports.crm_orders WHERE user_id = {u:UInt64}",
        parameters={"u": user_id},
    ).result_rows


def test_a_full_crm_refresh_is_never_undone_by_a_run_that_read_before_it(stack, ch, crm, no_lag):
    """A reads the CRM incrementally and builds its next CRM dimension; the CRM then deletes an
    order, and a backfill (B) with a full refresh publishes without it. A loads last: the
    deleted order must not come back."""
    user = 990_001
    with psycopg.connect(stack.dsn("crm")) as conn:
        conn.execute(
            "INSERT INTO crm_orders (user_id, email, first_name, last_name, prosthesis_id,"
            " order_date, status, updated_at)"
            " VALUES (%s, 'gone@example.com', 'Gone', 'Soon', 'PROT-GONE', '2023-05-01',"
            " 'active', now())",
            (user,),
        )
    build_day(stack, ch, crm, LAST_DAY, "crm_gone_settle")
    assert crm_orders_of(ch, user) == [("PROT-GONE", "active")]

    a = Staged(stack, ch, crm, Run("crm_gone_A", LAST_DAY))
    a.P(), a.E(), a.T()
    with psycopg.connect(stack.dsn("crm")) as conn:
        conn.execute("DELETE FROM crm_orders WHERE user_id = %s", (user,))
    b = Staged(
        stack, ch, crm, Run("crm_gone_B", FIRST_DAY + timedelta(days=3), crm_full_refresh=True)
    )
    b.P(), b.E(), b.T(), b.L()
    assert crm_orders_of(ch, user) == []
    a.L()
    assert crm_orders_of(ch, user) == []


def test_a_load_waits_while_another_run_publishes(stack, ch, crm):
    """Another run's load holds the publication lock: this load waits for it (it publishes
    nothing meanwhile), and publishes as soon as the lock is free."""
    run = Staged(stack, ch, crm, Run("waits_for_the_lock", LAST_DAY, force_rebuild=True))
    run.P(), run.E(), run.T()
    before = fence.latest(ch)
    failures: list[BaseException] = []

    def load() -> None:
        try:
            run.L()
        except BaseException as error:  # reported by the main thread
            failures.append(error)

    with psycopg.connect(stack.dsn("bionicpro"), autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (fence.LOCK_KEY,))
        loading = threading.Thread(target=load)
        loading.start()
        with psycopg.connect(stack.dsn("bionicpro"), autocommit=True) as probe:
            while not probe.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            ).fetchone()[0]:
                assert loading.is_alive(), failures
                time.sleep(0.05)
        assert fence.latest(ch) == before  # waiting, not publishing
    loading.join()
    assert failures == []
    assert fence.latest(ch) == before + 1


def test_a_load_that_cannot_get_the_lock_fails_clearly_and_publishes_nothing(
    stack, ch, crm, monkeypatch
):
    run = Staged(stack, ch, crm, Run("lock_timeout", LAST_DAY, force_rebuild=True))
    run.P(), run.E(), run.T()
    before = (fence.latest(ch), last_published(ch))
    monkeypatch.setenv("BIONICPRO_PUBLISH_LOCK_TIMEOUT_SECONDS", "1")
    assert settings().publish_lock_timeout_seconds == 1
    with psycopg.connect(stack.dsn("bionicpro"), autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (fence.LOCK_KEY,))
        with pytest.raises(fence.PublishLockTimeout, match="another run has been publishing"):
            run.L()
    assert (fence.latest(ch), last_published(ch)) == before

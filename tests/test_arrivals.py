"""Each event read once: a run reads the arrivals since the last one and merges them into the
days' partial aggregates (`bionicpro_reports.telemetry_state`). On its own PostgreSQL database
with a clock of its own, so the arrivals are the test's to choose; the mart is compared column by
column with the independent recomputation (tests/expected.py) after random interleavings of
arrivals, runs, retries, overlap re-reads, overlapping runs and forced rebuilds."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from bionicpro_stack.services import Stack
from conftest import MOSCOW
from expected import expected_mart
from test_pipeline import assert_same, mart_rows

from bionicpro_etl import load, pipeline
from bionicpro_etl.config import Settings, settings
from bionicpro_etl.queries import sql
from bionicpro_etl.run import CrmExtract, Plan, Run, TelemetryExtract, Transformed, as_utc

DATABASE = "arrivals"
START = datetime(2025, 3, 3, 5, 0, tzinfo=UTC)
OVERLAP = timedelta(hours=1)
ACTIONS = ("grasp", "release", "flex", "rotate", " FLEX ", "Grasp")
# Tiny random days would trip the volume and share gates; this test is about the numbers.
NO_SOFT_GATES = (
    '{"no_order_share": {}, "invalid_measurement_share": {}, "absurd_duration_share": {},'
    ' "day_volume_drop": {}, "day_volume_spike": {}}'
)


# The store's databases: set aside while a test runs on a store of its own.
STORE = ("bionicpro_reports", "bionicpro_staging")


@dataclass
class Sim:
    """Arrivals on a clock of their own (in the past, so never inside the arrival lag) into the
    database `arrivals`, and runs of the pipeline over it."""

    stack: Stack
    ch: object
    crm: object
    config: Settings
    clock: datetime = START
    bounds: list[datetime] = field(default_factory=list)  # each published run's bound
    runs: int = 0

    @property
    def dsn(self) -> str:
        return self.stack.dsn(DATABASE)

    def insert(self, rows: list[tuple]) -> None:
        with psycopg.connect(self.dsn) as conn, conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO telemetry_events (user_id, prosthesis_id, event_time, received_at,"
                " action_type, response_time_ms, battery_level, duration_seconds)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                rows,
            )

    def run(self, day: date, *, force: bool = False, shards: int = 1) -> Plan:
        run, config = self.next_run(day, force), replace(self.config, telemetry_shards=shards)
        result = pipeline.run_all(self.dsn, self.crm, self.stack.crm_url, self.ch, run, config)
        self.bounds.append(result.plan.watermark_after)
        return result.plan

    def next_run(self, day: date, force: bool = False) -> Run:
        self.runs += 1
        return Run(f"arrivals_{self.runs}", day, force_rebuild=force)

    def read(self, run: Run) -> tuple[Plan, list[TelemetryExtract]]:
        """A run's plan and extract: what it reads from PostgreSQL."""
        planned = pipeline.plan_report_days(self.dsn, self.ch, run, self.config)
        return planned, [pipeline.extract_telemetry(self.dsn, self.ch, run, planned)]

    def transform(self, run: Run, planned: Plan) -> tuple[CrmExtract, Transformed]:
        """The run's CRM read, transform and checks."""
        crm = pipeline.extract_crm_data(self.crm, self.stack.crm_url, self.ch, run, self.config)
        rows = pipeline.transform_data(self.ch, run, planned, crm)
        pipeline.check_data_quality(self.ch, run, rows, crm)
        return crm, rows

    def load(
        self,
        run: Run,
        planned: Plan,
        extracted: list[TelemetryExtract],
        crm: CrmExtract,
        rows: Transformed,
    ) -> None:
        sources = pipeline.Sources(self.dsn, self.crm, self.stack.crm_url)
        pipeline.load_to_clickhouse(
            sources, self.ch, run, planned, extracted, crm, rows, self.config
        )
        self.bounds.append(planned.watermark_after)

    def assert_mart_is_exact(self, received_by: datetime | None = None) -> int:
        """Every published day (a day after a run's own one waits for its own run): the mart
        equals the recomputation of the events received by `received_by` (all of them by
        default). Returns the events compared."""
        published = sorted(
            day
            for (day,) in self.ch.query(
                "SELECT DISTINCT arrayJoin(days_rebuilt) FROM bionicpro_reports.etl_runs"
                " WHERE status = 'success'"
            ).result_rows
        )
        compared = 0
        for day in published:
            expected = expected_mart(
                self.dsn, self.stack.dsn("crm"), day, MOSCOW, received_by=received_by
            )
            actual = mart_rows(self.ch, day)
            assert actual.keys() == expected.keys(), day
            for key, row in expected.items():
                assert_same(actual[key], row)
                compared += row["total_actions"]
        return compared

    def publish_every_day(self) -> None:
        """A run for each day with events, as the nightly runs would make: every day published."""
        day = START.astimezone(MOSCOW).date() - timedelta(days=6)
        while day <= self.clock.astimezone(MOSCOW).date():
            self.run(day)
            day += timedelta(days=1)


@pytest.fixture
def sim(stack, ch, crm, monkeypatch) -> Iterator[Sim]:
    """A database of its own in the stack's PostgreSQL; the store the other tests built is set
    aside meanwhile (renamed), and put back after."""
    monkeypatch.setenv("BIONICPRO_QUALITY_LEVELS", NO_SOFT_GATES)
    with psycopg.connect(stack.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        conn.execute(f"CREATE DATABASE {DATABASE}")
    with psycopg.connect(stack.dsn(DATABASE), autocommit=True) as conn:
        conn.execute(sql("telemetry_events", "bionicpro_stack"))
    existing = {name for (name,) in ch.query("SELECT name FROM system.databases").result_rows}
    aside = [db for db in STORE if db in existing]
    for db in aside:
        ch.command(f"RENAME DATABASE {db} TO {db}_aside")
    config = replace(settings(), arrival_overlap_seconds=int(OVERLAP.total_seconds()))
    try:
        yield Sim(stack, ch, crm, config)
    finally:
        for db in STORE:
            ch.command(f"DROP DATABASE IF EXISTS {db} SYNC")
        for db in aside:
            ch.command(f"RENAME DATABASE {db}_aside TO {db}")


def events(rng: random.Random, received: datetime, n: int, *, late: float = 0.1) -> list[tuple]:
    """`n` events received at `received`: most of them made just before, some of the days
    before it (late uploads), with every kind of measurement: valid, missing, out of range."""
    rows = []
    for _ in range(n):
        user = rng.randint(1, 12)
        if rng.random() < late:
            made = received - timedelta(days=rng.uniform(1, 5))
        else:
            made = received - timedelta(minutes=rng.uniform(0, 20))
        rows.append(
            (
                user,
                f"PROT-{user:06d}" if rng.random() < 0.8 else f"PROT-{500_000 + user:06d}",
                made,
                received,
                rng.choice(ACTIONS),
                rng.choice([None, -1.0, float("nan"), rng.uniform(20, 900), rng.uniform(20, 900)]),
                rng.choice([None, 103.5, rng.uniform(0, 100), rng.uniform(0, 100)]),
                rng.choice([None, -2.0, rng.uniform(0, 600), rng.uniform(0, 600)]),
            )
        )
    return rows


def test_a_night_reads_what_arrived_and_merges_it_into_its_days(sim):
    rng = random.Random(1)
    for days_back in range(6):  # the first night has six days of events
        sim.insert(events(rng, sim.clock - timedelta(days=days_back), 10, late=0))
    first = sim.run(START.date())
    assert first.reread_from is None and first.read_whole  # a first run reads its days whole

    sim.clock += timedelta(hours=20)
    arrived = events(rng, sim.clock, 30, late=0.5)  # its own day and five days before it
    sim.insert(arrived)
    night = sim.run(sim.clock.date())
    assert night.reread_from == first.reread_next
    assert night.read_whole == ()  # every day it touches has a state: none is read whole
    (read,) = sim.ch.query(
        "SELECT events_read FROM bionicpro_reports.etl_runs ORDER BY finished_at DESC LIMIT 1"
    ).result_rows[0]
    # what arrived, and the 10 events of the first night's last hour again (the overlap)
    assert read == len(arrived) + 10
    assert sim.assert_mart_is_exact() == 90


def test_an_overlap_re_read_replaces_what_it_read_before(sim):
    """A transaction that commits after the run read past its rows' received_at: the next run
    reads the overlap again, and counts the rows read twice once."""
    rng = random.Random(2)
    sim.insert(events(rng, sim.clock, 20, late=0))
    bound = sim.run(START.date()).watermark_after
    sim.insert(events(rng, bound - OVERLAP / 2, 5, late=0))  # committed late, below the bound
    sim.clock += timedelta(hours=1)
    sim.insert(events(rng, sim.clock, 5, late=0))
    again = sim.run(START.date())
    assert again.reread_from == bound - OVERLAP
    assert sim.assert_mart_is_exact() == 30
    for _ in range(2):  # and again, with nothing new: the overlap is read and replaced once more
        sim.run(START.date())
        assert sim.assert_mart_is_exact() == 30


def test_a_day_read_again_with_nothing_new_counts_its_events_once_as_the_bound_moves(sim):
    """Runs ten minutes apart, within the one-hour overlap: each reads the late uploads of the
    days before again, with nothing new for them. Their state is left as it is only while the
    bound stays put; here it moves, so their re-read arrivals change slot, and the next run
    still finds them read already, not new."""
    rng = random.Random(7)
    sim.insert(events(rng, sim.clock, 20, late=0))
    sim.run(START.date())
    sim.clock += timedelta(minutes=10)
    late = events(rng, sim.clock, 10, late=1)  # all of them for the days before
    sim.insert(late)
    sim.run(START.date())
    late_days = {made.astimezone(MOSCOW).date() for (_, _, made, *_) in late}
    for runs in range(1, 4):
        sim.clock += timedelta(minutes=10)
        sim.insert(events(rng, sim.clock, 5, late=0))
        sim.run(START.date())
        (rebuilt,) = sim.ch.query(
            "SELECT days_rebuilt FROM bionicpro_reports.etl_runs ORDER BY finished_at DESC LIMIT 1"
        ).result_rows[0]
        assert not late_days & set(rebuilt)  # read again, nothing new: not rebuilt
        assert sim.assert_mart_is_exact() == 20 + 10 + 5 * runs


def test_a_load_killed_midway_then_retried_or_planned_again_counts_nothing_twice(sim, monkeypatch):
    rng = random.Random(3)
    sim.insert(events(rng, sim.clock, 30))
    sim.run(START.date())
    for swaps in range(1, 8):  # killed after 1, 2, ... partition swaps
        sim.clock += timedelta(hours=2)
        sim.insert(events(rng, sim.clock, 15, late=0.4))
        run = sim.next_run(sim.clock.date())
        planned, extracted = sim.read(run)
        crm, rows = sim.transform(run, planned)
        with monkeypatch.context() as patch:
            patch.setattr(load, "_replace", dies_after(swaps))
            with pytest.raises(RuntimeError, match="killed"):
                sim.load(run, planned, extracted, crm, rows)
        if swaps % 2:  # Airflow retries the load task, on the same staging tables
            sim.load(run, planned, extracted, crm, rows)
            sim.assert_mart_is_exact()
        # else the run is given up, half published: the next one plans from the same watermark
    sim.run(sim.clock.date())
    assert sim.assert_mart_is_exact() == 30 + 7 * 15


def dies_after(swaps: int):
    """load._replace that swaps `swaps` partitions, then dies as a killed worker would."""
    real = load._replace
    done = 0

    def replace_or_die(*args, **kwargs):
        nonlocal done
        if done == swaps:
            raise RuntimeError("killed")
        done += 1
        return real(*args, **kwargs)

    return replace_or_die


@pytest.mark.parametrize("seed", [11, 13])
def test_any_interleaving_of_arrivals_and_runs_leaves_the_mart_exact(sim, monkeypatch, seed):
    """A seeded random walk: arrivals (on time and late), rows that commit late below the last
    run's bound (within the overlap), nightly and sub-daily runs on one or two shards, loads
    killed midway then retried or given up, two runs that read the same arrivals and publish one
    after the other (the second's load re-plans, fence.py, and its merge still counts nothing
    twice), and corrections made in place followed by a forced rebuild. After every
    run that published with nothing left behind, the mart equals the recomputation of what had
    arrived by its bound; at the end, of everything."""
    rng = random.Random(seed)

    def arrive(n: int) -> None:
        sim.clock += timedelta(minutes=rng.uniform(5, 9 * 60))
        sim.insert(events(rng, sim.clock, n))

    def run_day() -> date:
        return (sim.clock - timedelta(days=rng.choice([0, 1]))).astimezone(MOSCOW).date()

    arrive(30)
    sim.run(run_day())
    for _ in range(25):
        step = rng.choices(
            ["arrive", "commit late", "run", "killed", "two runs", "correct"],
            weights=[35, 10, 25, 10, 10, 10],
        )[0]
        if step == "arrive":
            arrive(rng.randint(1, 25))
            continue
        if step == "commit late":
            behind = timedelta(seconds=rng.uniform(1, OVERLAP.total_seconds() - 1))
            sim.insert(events(rng, sim.bounds[-1] - behind, rng.randint(1, 4)))
            continue
        if step == "run":
            sim.run(run_day(), shards=rng.choice([1, 2]))
        elif step == "killed":
            run = sim.next_run(run_day())
            planned, extracted = sim.read(run)
            crm, rows = sim.transform(run, planned)
            with monkeypatch.context() as patch:
                patch.setattr(load, "_replace", dies_after(rng.randint(0, 6)))
                try:
                    sim.load(run, planned, extracted, crm, rows)
                    killed = False  # it had fewer swaps than that to make: it published
                except RuntimeError:
                    killed = True
            if killed and rng.random() < 0.5:
                continue  # given up: the next run plans from the same watermark
            if killed:
                sim.load(run, planned, extracted, crm, rows)  # the load task's retry
        elif step == "two runs":  # the second's load finds the first's publication: re-plans
            first = sim.next_run(run_day())
            first_read = sim.read(first)
            arrive(rng.randint(1, 10))
            second = sim.next_run(run_day())
            second_read = sim.read(second)
            sim.load(first, *first_read, *sim.transform(first, first_read[0]))
            sim.load(second, *second_read, *sim.transform(second, second_read[0]))
        elif step == "correct":
            day = run_day() - timedelta(days=rng.randint(0, 3))
            start = datetime.combine(day, datetime.min.time(), tzinfo=MOSCOW)
            with psycopg.connect(sim.dsn) as conn:
                conn.execute(
                    "UPDATE telemetry_events SET response_time_ms = 42, battery_level = 7"
                    " WHERE event_time >= %s AND event_time < %s AND user_id %% 3 = 0",
                    (start, start + timedelta(days=1)),
                )
            sim.run(day, force=True)
        sim.assert_mart_is_exact(sim.bounds[-1])
    sim.clock += OVERLAP
    sim.publish_every_day()
    assert sim.assert_mart_is_exact() > 0


def test_a_quarter_hour_schedule_reads_each_quarter_once_and_shows_today_incomplete(sim):
    """BIONICPRO_SCHEDULE="*/15 * * * *": each run reads the quarter of an hour that arrived
    (each event once), publishes today so far (equal to the recomputation of what had arrived
    by its bound), and `published_days` marks today not complete until a run reads past its end."""
    sim.config = replace(sim.config, schedule="*/15 * * * *", arrival_overlap_seconds=0)
    rng = random.Random(5)
    today = START.astimezone(MOSCOW).date()
    sim.clock = datetime.combine(today, datetime.min.time(), tzinfo=MOSCOW) + timedelta(hours=9)
    sim.insert(events(rng, sim.clock, 20, late=0))
    sim.run(today)
    for quarter in range(4):
        sim.clock += timedelta(minutes=15)
        arrived = events(rng, sim.clock - timedelta(minutes=rng.uniform(0, 14)), 10, late=0.2)
        sim.insert(arrived)
        bound = sim.run(today).watermark_after
        (read,) = sim.ch.query(
            "SELECT events_read FROM bionicpro_reports.etl_runs ORDER BY finished_at DESC LIMIT 1"
        ).result_rows[0]
        assert read == len(arrived), quarter  # that quarter's arrivals, nothing else
        sim.assert_mart_is_exact(bound)
        assert completeness(sim.ch, today) == (False, bound)
    sim.clock = datetime.combine(today, datetime.min.time(), tzinfo=MOSCOW) + timedelta(days=1)
    sim.insert(events(rng, sim.clock + timedelta(minutes=5), 3, late=0))
    tomorrow = today + timedelta(days=1)
    bound = sim.run(tomorrow).watermark_after
    assert completeness(sim.ch, today) == (True, bound)
    assert sim.assert_mart_is_exact() == 20 + 4 * 10 + 3


def completeness(ch, day: date) -> tuple[bool, datetime]:
    complete, watermark = ch.query(
        "SELECT complete, watermark FROM bionicpro_reports.published_days"
        " WHERE report_date = {day:Date}",
        parameters={"day": day},
    ).result_rows[0]
    return complete, as_utc(watermark)


def test_today_so_far_is_not_judged_by_a_whole_day_volume(sim, monkeypatch):
    """A quarter-hour run in the morning publishes today's first rows: a fraction of a whole
    day's, which the volume gate would take for a drop. A day is judged on its volume once it is
    complete; the same drop on a complete day still stops the publish (test_quality.py)."""
    volume_gates_on = NO_SOFT_GATES.replace(', "day_volume_drop": {}, "day_volume_spike": {}', "")
    monkeypatch.setenv("BIONICPRO_QUALITY_LEVELS", volume_gates_on)
    sim.config = replace(settings(), schedule="*/15 * * * *", arrival_overlap_seconds=0)
    rng = random.Random(7)
    today = START.astimezone(MOSCOW).date()
    for days_back in range(4, 0, -1):  # four whole days of history, every user every day
        made = datetime.combine(today - timedelta(days=days_back), datetime.min.time(), MOSCOW)
        sim.insert(events(rng, made + timedelta(hours=12), 200, late=0))
    sim.clock = datetime.combine(today, datetime.min.time(), tzinfo=MOSCOW) + timedelta(hours=1)
    sim.insert(events(rng, sim.clock, 200, late=0))
    sim.run(today - timedelta(days=1))  # the history published, and judged
    sim.clock += timedelta(minutes=15)
    sim.insert(events(rng, sim.clock, 2, late=0))  # today's first rows: one or two of ~24
    sim.run(today)
    assert completeness(sim.ch, today)[0] is False
    judged = sim.ch.query(
        "SELECT DISTINCT run_id FROM bionicpro_reports.quality_checks"
        " WHERE check = 'day_volume_drop' AND detail LIKE {day:String}",
        parameters={"day": f"{today}:%"},
    ).result_rows
    assert judged == []
    sim.assert_mart_is_exact()

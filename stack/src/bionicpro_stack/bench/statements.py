"""Where a run's ClickHouse time goes, statement by statement.

    python -m bionicpro_stack.bench.statements [--rounds 2] [--top 30]
    python -m bionicpro_stack.bench.statements --quarters 8 [--from-quarter 40] [--own-day-only]

On the stack a full `make bench` left in `.stack/bench/`, with the ClickHouse client timed call by
call. By default it runs the nightly run (r) again, each round from the store as it was before the
night, as (r)'s rounds do; PostgreSQL already holds the night's arrivals.

With `--quarters N` it runs N of (q)'s quarter-hour runs instead, from quarter K of the night on
(`--from-quarter`, 40 by default: 12:00, the night's quarters starting at 02:00). It starts from
the store before the night, with the night's arrivals taken out of PostgreSQL; those before
quarter K are appended at once and read by one run (not timed), then each quarter is appended and
run. In the end all of the night's arrivals are appended again, so the table is as the benchmark
left it. `--own-day-only` leaves out the late uploads of the days before the night: what runs
that touch only their own day would cost.

A statement is named by the SQL file it comes from, or by its first words; a run's staging table
names lose their run key, so that the runs add up. The runs are not `make bench`'s measurements
(each of those is a fresh process, this one process runs every run), so compare statements with
each other, not with the benchmark's page.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
from collections import defaultdict
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from time import perf_counter
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc
from clickhouse_connect.driver.client import Client

from bionicpro_etl.config import settings
from bionicpro_etl.queries import sql
from bionicpro_etl.report_day import day_bounds, report_day_of
from bionicpro_etl.run import RunResult
from bionicpro_stack.bench.data import (
    NIGHT,
    night_arrivals,
    night_slice,
    night_window,
    restore_night,
    withdraw_night,
)
from bionicpro_stack.bench.job import FULL, ROOT, Job
from bionicpro_stack.bench.measure import QUARTER_HOUR_ENV, QUARTERS, quarter, run_day
from bionicpro_stack.services import Stack, free_port

TIMED = ("command", "query", "insert", "insert_arrow")
# A run's staging tables end in its key (staging.Staging.for_run).
RUN_KEY = re.compile(r"_[0-9a-f]{16}\b")


def sql_files() -> dict[str, str]:
    """Each of the product's SQL texts, by the name `queries.sql` reads it under."""
    root = Path(str(files("bionicpro_etl").joinpath("sql")))
    names = (path.relative_to(root).with_suffix("").as_posix() for path in root.rglob("*.sql"))
    return {sql(name): name for name in names}


class Timings:
    """Each call's seconds, by statement."""

    def __init__(self) -> None:
        self.calls: dict[str, list[float]] = defaultdict(list)
        self._names = sql_files()

    def name(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        first = args[0] if args else next(iter(kwargs.values()), "")
        text = str(first)
        if text in self._names:
            return f"{self._names[text]}.sql"
        words = " ".join(text.split())
        prefix = "" if method in ("command", "query") else f"{method} "
        return RUN_KEY.sub("_<run>", prefix + words)[:110]

    def total(self) -> float:
        return sum(sum(times) for times in self.calls.values())


class TimedClient:
    """A ClickHouse client that passes every call on and times those that run a statement."""

    def __init__(self, client: Client, timings: Timings) -> None:
        self._client = client
        self._timings = timings

    def __getattr__(self, attr: str) -> Any:
        method = getattr(self._client, attr)
        if attr not in TIMED:
            return method

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                name = self._timings.name(attr, args, kwargs)
                self._timings.calls[name].append(perf_counter() - started)

        return timed


def profile(stack: Stack, rounds: int, say: Callable[[str], None] = print) -> Timings:
    """`rounds` nightly runs of the realistic night, each from the store before it."""
    timings = Timings()
    for i in range(rounds):
        _store_before_night(stack)
        started, spent = perf_counter(), timings.total()
        result = run_day(stack, f"statements_{i}", NIGHT, open_client=_timed(stack, timings))
        say(_ran(f"round {i + 1}/{rounds}", started, timings.total() - spent, result))
    return timings


def profile_quarters(
    stack: Stack,
    first: int,
    count: int,
    say: Callable[[str], None] = print,
    *,
    own_day_only: bool = False,
) -> Timings:
    """`count` of (q)'s quarter-hour runs from the night's quarter `first` on, after one run
    (not timed) over the arrivals before it; the store before the night, PostgreSQL without the
    night's arrivals at first and with all of them in the end (`restore_night`). With
    `own_day_only`, the late uploads of the days before the night are left out: what runs that
    touch only their own day would cost."""
    job = Job(root=str(stack.root), crm_port=stack.crm_port, scale=FULL)
    os.environ.update(QUARTER_HOUR_ENV)
    tz = settings().report_tz
    arrivals = night_arrivals(job)
    if own_day_only:
        arrivals = without_late_uploads(arrivals, tz)
    _store_before_night(stack)
    withdraw_night(job)
    timings = Timings()
    try:
        if first:
            after, until = quarter(first - 1, tz)
            night_slice(job, arrivals, night_window(tz)[0], until)
            run_day(stack, "statements_catch_up", report_day_of(after, tz))
        for k in range(first, first + count):
            after, until = quarter(k, tz)
            night_slice(job, arrivals, after, until)
            started, spent = perf_counter(), timings.total()
            result = run_day(
                stack, f"statements_q{k}", report_day_of(after, tz), _timed(stack, timings)
            )
            what = f"quarter {k} (from {after.astimezone(tz):%H:%M %Z})"
            say(_ran(what, started, timings.total() - spent, result))
    finally:
        restore_night(job)
    return timings


def without_late_uploads(arrivals: pa.Table, tz: ZoneInfo) -> pa.Table:
    """The night's arrivals but the late uploads of the days before it: the events of NIGHT and
    the day after."""
    start = pa.scalar(day_bounds(NIGHT, tz)[0], pa.timestamp("us", tz="UTC"))
    return arrivals.filter(pc.greater_equal(arrivals["event_time"], start))


def _store_before_night(stack: Stack) -> None:
    before = stack.root / "clickhouse-before-night"
    if not before.is_dir():
        raise SystemExit(f"no {before}: run a full `make bench` first")
    shutil.rmtree(stack.clickhouse_dir, ignore_errors=True)
    shutil.copytree(before, stack.clickhouse_dir, symlinks=True)


def _timed(stack: Stack, timings: Timings) -> Callable[[], Client]:
    return lambda: TimedClient(stack.clickhouse(), timings)  # type: ignore[return-value]


def _ran(what: str, started: float, spent: float, result: RunResult) -> str:
    return (
        f"{what}: {perf_counter() - started:.2f} s, of it ClickHouse calls {spent:.2f} s;"
        " stages: " + ", ".join(f"{k} {v:.2f} s" for k, v in result.stage_seconds().items())
    )


def table(timings: Timings, runs: int, top: int) -> str:
    """The `top` statements by their time, per run, as a Markdown table."""
    lines = [
        f"ClickHouse calls: {timings.total() / runs:.2f} s a run",
        "",
        "| statement | calls a run | s a run | median call, ms |",
        "|---|---:|---:|---:|",
    ]
    ranked = sorted(timings.calls.items(), key=lambda kv: -sum(kv[1]))
    for name, times in ranked[:top]:
        lines.append(
            f"| `{name}` | {len(times) / runs:g} | {sum(times) / runs:.2f}"
            f" | {statistics.median(times) * 1000:.1f} |"
        )
    rest = ranked[top:]
    if rest:
        seconds = sum(sum(times) for _, times in rest) / runs
        calls = sum(len(times) for _, times in rest) / runs
        lines.append(f"| {len(rest)} others | {calls:g} | {seconds:.2f} | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bionicpro_stack.bench.statements")
    parser.add_argument("--rounds", type=int, default=2, help="nightly runs (r)")
    parser.add_argument("--quarters", type=int, default=0, help="quarter-hour runs of (q) instead")
    parser.add_argument("--from-quarter", type=int, default=40, help="the night's first one")
    parser.add_argument(
        "--own-day-only", action="store_true", help="(q) without the earlier days' late uploads"
    )
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)
    if args.quarters and not 0 <= args.from_quarter <= QUARTERS - args.quarters:
        parser.error(f"the night has {QUARTERS} quarters (0 to {QUARTERS - 1})")
    stack = Stack(root=Path(ROOT).absolute(), crm_port=free_port())
    stack.up()
    try:
        if args.quarters:
            timings = profile_quarters(
                stack, args.from_quarter, args.quarters, own_day_only=args.own_day_only
            )
        else:
            timings = profile(stack, args.rounds)
    finally:
        stack.down()
    print(table(timings, args.quarters or args.rounds, args.top))


if __name__ == "__main__":
    main()

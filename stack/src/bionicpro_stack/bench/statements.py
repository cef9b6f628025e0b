"""Where the realistic night's ClickHouse time goes, statement by statement.

    python -m bionicpro_stack.bench.statements [--rounds 2] [--top 30]

It runs the nightly run (r) again on the stack a full `make bench` left in `.stack/bench/`, each
round from the store as it was before the night, as (r)'s rounds do, with the ClickHouse client
timed call by call; PostgreSQL already holds the night's arrivals. A statement is named by the
SQL file it comes from, or by its first words; a run's staging table names lose their run key, so
that the rounds add up. The runs are not `make bench`'s measurements (each of those is a fresh
process, this one process runs every round), so compare statements with each other, not with
the benchmark's page.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
from collections import defaultdict
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from time import perf_counter
from typing import Any

from clickhouse_connect.driver.client import Client

from bionicpro_etl.queries import sql
from bionicpro_stack.bench.data import NIGHT
from bionicpro_stack.bench.job import ROOT
from bionicpro_stack.bench.measure import run_day
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
    before = stack.root / "clickhouse-before-night"
    if not before.is_dir():
        raise SystemExit(f"no {before}: run a full `make bench` first")
    timings = Timings()
    for i in range(rounds):
        shutil.rmtree(stack.clickhouse_dir, ignore_errors=True)
        shutil.copytree(before, stack.clickhouse_dir, symlinks=True)
        started, spent = perf_counter(), timings.total()
        result = run_day(
            stack,
            f"statements_{i}",
            NIGHT,
            open_client=lambda: TimedClient(stack.clickhouse(), timings),  # type: ignore[return-value]
        )
        say(
            f"round {i + 1}/{rounds}: {perf_counter() - started:.2f} s, of it ClickHouse calls"
            f" {timings.total() - spent:.2f} s; stages: "
            + ", ".join(f"{k} {v:.2f} s" for k, v in result.stage_seconds().items())
        )
    return timings


def table(timings: Timings, rounds: int, top: int) -> str:
    """The `top` statements by their time, per round, as a Markdown table."""
    lines = [
        f"ClickHouse calls: {timings.total() / rounds:.2f} s a round",
        "",
        "| statement | calls a round | s a round | median call, ms |",
        "|---|---:|---:|---:|",
    ]
    ranked = sorted(timings.calls.items(), key=lambda kv: -sum(kv[1]))
    for name, times in ranked[:top]:
        lines.append(
            f"| `{name}` | {len(times) / rounds:g} | {sum(times) / rounds:.2f}"
            f" | {statistics.median(times) * 1000:.1f} |"
        )
    rest = ranked[top:]
    if rest:
        seconds = sum(sum(times) for _, times in rest) / rounds
        calls = sum(len(times) for _, times in rest) / rounds
        lines.append(f"| {len(rest)} others | {calls:g} | {seconds:.2f} | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bionicpro_stack.bench.statements")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)
    stack = Stack(root=Path(ROOT).absolute(), crm_port=free_port())
    stack.up()
    try:
        timings = profile(stack, args.rounds)
    finally:
        stack.down()
    print(table(timings, args.rounds, args.top))


if __name__ == "__main__":
    main()

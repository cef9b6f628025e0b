"""`python -m bionicpro_stack.bench` (`make bench`): generate, measure, check, report."""

from __future__ import annotations

import argparse
import os
import shutil
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

from bionicpro_stack import bench
from bionicpro_stack.bench.check import check, check_nights
from bionicpro_stack.bench.data import HISTORY_DAYS, NIGHT, NIGHT_DAYS, WHOLE_DAY
from bionicpro_stack.bench.job import (
    DAY,
    FULL,
    MART,
    NAIVE_TABLE,
    ROOT,
    SMALL,
    Job,
    Measured,
    Scale,
)
from bionicpro_stack.bench.measure import CHILDREN, airflow, child, run_child
from bionicpro_stack.bench.report import ROWS, Results, Series, markdown, stages, table, targets
from bionicpro_stack.bench.source import arrival_plans, postgres_version, rows_read, source_side
from bionicpro_stack.services import Stack, free_port

RUN_ID = "bench_pipeline"


def fresh_clickhouse(stack: Stack) -> None:
    """An empty chDB folder, so that (b) and (c) do the same work: a first run of the day (no
    watermark, the whole CRM), not a re-run that the incremental pipeline can shorten."""
    shutil.rmtree(stack.clickhouse_dir, ignore_errors=True)
    stack.clickhouse_dir.mkdir()


def run_bench(scale: Scale, small: bool) -> Results | list[str]:
    """Generate, measure, check; returns the results, or what did not match."""
    load_before = os.getloadavg()
    stack = Stack(root=ROOT.absolute(), crm_port=free_port())
    stack.stop_crm()  # one left by an interrupted run, by the pid it recorded
    stack.up()
    for folder in ("results", "logs"):
        (stack.root / folder).mkdir(exist_ok=True)
    job = Job(root=str(stack.root), crm_port=stack.crm_port, scale=scale)
    runs: dict[str, list[Measured]] = {label: [] for label, _ in ROWS}
    snapshots: list[str] = []

    def snap(label: str, table: str = MART) -> Measured:
        snapshots.append(label)
        return run_child("snapshot", job, label, table)

    try:
        say(f"generating {scale.events:,} events of {DAY}, and {HISTORY_DAYS} older days")
        generated = run_child("generate", job)
        say(f"  {generated.rows:,} rows in {generated.seconds:.0f} s (not measured)")
        airflow(stack, ["db", "migrate"], stack.root / "logs" / "airflow-db-migrate.log")
        for i in range(scale.repeat):
            # in every round, not once: right after the data is written, the machine is still
            # busy with it (2.26 s once, against 0.21 to 0.42 s at rest)
            say(f"round {i + 1}/{scale.repeat}: (0) idle: the pipeline imported, chDB opened")
            fresh_clickhouse(stack)
            runs["idle"].append(run_child("idle", job))
            say("  (a) the aggregate query alone")
            runs["a"].append(counted(stack, "aggregate", job))
            say("  the scan floor and the copy floor of the day")
            runs["scan"].append(counted(stack, "scan_floor", job))
            runs["copy"].append(counted(stack, "copy_floor", job))
            say("  (b) pipeline.run_all, on an empty store")
            fresh_clickhouse(stack)
            runs["b"].append(run_child("pipeline", job, f"{RUN_ID}_{i}"))
            snap(f"pipeline-{i}")
            say("  (b') pipeline.run_all again, no new data")
            runs["b'"].append(run_child("pipeline", job, f"{RUN_ID}_{i}_again"))
            snap(f"pipeline_again-{i}")
            say("  the CRM read alone")
            runs["crm"].append(run_child("crm_read", job))
            say("  (c) airflow dags test, on an empty store")
            fresh_clickhouse(stack)
            runs["c"].append(run_child("airflow", job))
            snap(f"airflow-{i}")
            say("  (d) the naive reference")
            runs["d"].append(run_child("naive", job))
            engine = snap(f"naive-{i}", NAIVE_TABLE).version
        say("source side: EXPLAIN with the B-tree, then with BRIN")
        plans = source_side(stack)
        postgres = postgres_version(stack)
        say("(n) the next night: the following day arrives, with late events of the report day")
        arrived, nights = next_nights(stack, job, runs["n"])
        say("(r) the realistic night and (q) its arrivals in 96 quarter-hour runs")
        realistic, night_snapshots = realistic_night(stack, job, runs)
        say("source side: the night's arrival query by statistics, session and work_mem")
        sessions = arrival_plans(job)
    finally:
        stack.down()

    problems = check(stack, snapshots, {m.rows for m in runs["a"]})
    problems += check_nights(stack, nights, arrived.events, runs["n"])
    problems += check_nights(stack, night_snapshots, realistic.events, runs["r"])
    if problems:
        return problems
    return Results(
        scale=scale,
        small=small,
        load_before=load_before,
        table_rows=generated.rows,
        runs={label: Series(measured) for label, measured in runs.items()},
        engine=engine,
        postgres=postgres,
        plans=plans,
        sessions=sessions,
        night_events=sum(arrived.events.values()),
        night_arrivals=realistic.rows,
    )


def next_nights(stack: Stack, job: Job, into: list[Measured]) -> tuple[Measured, list[str]]:
    """(n): the first night (b) publishes the report day (not measured); then the next night's
    arrivals are appended, and the run for the following day is measured, each round from the
    same copy of the first night's store. Returns the arrivals and the snapshots of the rounds;
    the arrivals stay in the table (the benchmark's next run generates it anew)."""
    fresh_clickhouse(stack)
    run_child("pipeline", job, f"{RUN_ID}_night_1")
    first_night = stack.root / "clickhouse-night-1"
    shutil.rmtree(first_night, ignore_errors=True)
    shutil.copytree(stack.clickhouse_dir, first_night, symlinks=True)
    arrived = run_child("next_night", job)
    say(f"  {arrived.rows:,} arrivals appended in {arrived.seconds:.0f} s (not measured)")
    night = replace(job, day=(DAY + timedelta(days=1)).isoformat())
    snapshots = []
    for i in range(job.scale.repeat):
        say(f"  round {i + 1}/{job.scale.repeat}: pipeline.run_all for {night.day}")
        shutil.rmtree(stack.clickhouse_dir)
        shutil.copytree(first_night, stack.clickhouse_dir, symlinks=True)
        into.append(run_child("pipeline", night, f"{RUN_ID}_night_2_{i}"))
        run_child("snapshot", night, f"next_night-{i}")
        snapshots.append(f"next_night-{i}")
    return arrived, snapshots


def counted(stack: Stack, name: str, job: Job, arg: str = "") -> Measured:
    """`run_child`, with the rows and blocks PostgreSQL read of the telemetry meanwhile."""
    rows, blocks, active = rows_read(stack)
    measured = run_child(name, job, arg)
    rows_after, blocks_after, active_after = rows_read(stack)
    return replace(
        measured,
        rows_read=rows_after - rows,
        blocks_read=blocks_after - blocks,
        postgres_seconds=active_after - active,
    )


def realistic_night(
    stack: Stack, job: Job, runs: dict[str, list[Measured]]
) -> tuple[Measured, list[str]]:
    """(r) and (q), in a table of their own (the benchmark's is replaced): the days before the
    night are published by a first run (not measured); then, from a copy of that store, (q)
    appends the night's arrivals a quarter of an hour at a time, each followed by a run, and each
    round of (r) runs the nightly run over all of them at once, after (a_r), (a)'s query over a
    day of this table. Returns the night's arrivals (with each day's events) and the snapshots:
    (q)'s last, then each round of (r)'s."""
    prepared = run_child("realistic_sources", job)
    say(
        f"  {prepared.rows:,} arrivals of the night made in {prepared.seconds:.0f} s (not measured)"
    )
    fresh_clickhouse(stack)
    before = replace(job, day=(NIGHT - timedelta(days=1)).isoformat())
    run_child("pipeline", before, f"{RUN_ID}_before_night")
    store = stack.root / "clickhouse-before-night"
    shutil.rmtree(store, ignore_errors=True)
    shutil.copytree(stack.clickhouse_dir, store, symlinks=True)
    # the days the nightly run publishes: the next one is left to its own run
    days = replace(job, first_day=NIGHT_DAYS[0].isoformat(), day=NIGHT.isoformat())
    say("  (q) 96 quarter-hour runs")
    runs["q"].append(run_child("quarter_hours", job, f"{RUN_ID}_quarter"))  # counts its own reads
    run_child("snapshot", days, "quarter_hours")
    snapshots = ["quarter_hours"]
    arrived = run_child("night", job)
    whole, nightly = (replace(job, day=day.isoformat()) for day in (WHOLE_DAY, NIGHT))
    for i in range(job.scale.repeat):
        say(f"  (a_r) round {i + 1}/{job.scale.repeat}: (a)'s query over {WHOLE_DAY}, read whole")
        runs["a_r"].append(counted(stack, "aggregate", whole))
        say(f"  (r) round {i + 1}/{job.scale.repeat}: pipeline.run_all for {NIGHT}")
        shutil.rmtree(stack.clickhouse_dir)
        shutil.copytree(store, stack.clickhouse_dir, symlinks=True)
        runs["r"].append(counted(stack, "pipeline", nightly, f"{RUN_ID}_night_{i}"))
        run_child("snapshot", days, f"night-{i}")
        snapshots.append(f"night-{i}")
    return replace(arrived, rows=prepared.rows), snapshots


def say(message: str) -> None:
    print(f"[bench {datetime.now():%H:%M:%S}] {message}", flush=True)


def main(argv: list[str] | None = None) -> None:
    small = os.environ.get("SMALL", "") not in ("", "0")
    default = SMALL if small else FULL
    parser = argparse.ArgumentParser(
        prog="python -m bionicpro_stack.bench", description=bench.__doc__
    )
    parser.add_argument("--events", type=int, default=default.events)
    parser.add_argument("--prostheses", type=int, default=default.prostheses)
    parser.add_argument("--users", type=int, default=default.users)
    parser.add_argument("--crm-orders", type=int, default=default.crm_orders)
    parser.add_argument("--repeat", type=int, default=default.repeat, help="rounds to measure")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("docs") / ("benchmarks-small.md" if small else "benchmarks.md"),
        help="where the results go",
    )
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, Job.from_json(args.job))
        return
    scale = Scale(args.events, args.prostheses, args.users, args.crm_orders, args.repeat)
    if scale.prostheses < scale.users:
        parser.error("--prostheses must be at least --users (every user has a prosthesis)")
    if scale.repeat < 1:
        parser.error("--repeat must be at least 1")

    flags = (
        f"--events {scale.events} --prostheses {scale.prostheses} --users {scale.users}"
        f" --crm-orders {scale.crm_orders} --repeat {scale.repeat} --out {args.out}"
    )
    command = f"`python -m bionicpro_stack.bench {flags}`"
    if os.environ.get("MAKELEVEL"):
        command = f"`{'SMALL=1 ' if small else ''}make bench`, that is {command}"
    outcome = run_bench(scale, small)
    if isinstance(outcome, list):
        print("MISMATCH: the runs do not build the same day:", *outcome, sep="\n  ")
        raise SystemExit(1)

    parts = (table(outcome), targets(outcome), stages(outcome, "b"), stages(outcome, "n"))
    print("", *(f"{part}\n" for part in parts), sep="\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown(outcome, command))
    say(f"written {args.out}")


if __name__ == "__main__":
    main()

"""Command line of the embedded stack:
`python -m bionicpro_stack up|down|env|generate|backfill|runs|report|airflow`."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from bionicpro_etl import runlog
from bionicpro_etl.config import settings
from bionicpro_stack import generate, report, story
from bionicpro_stack.services import Stack

# What `airflow dags test` logs as it starts each task.
DAG_TEST_TASK = re.compile(r"\[DAG TEST\] starting task_id=(\w+)")


def yesterday() -> date:
    return datetime.now(settings().report_tz).date() - timedelta(days=1)


def generate_data(
    stack: Stack, *, users: int, days: int, last_day: date, seed: int
) -> tuple[int, int]:
    """Fill both sources with `days` days ending `last_day`; rows not yet uploaded are left out."""
    fleet = generate.Fleet(users=users, seed=seed)
    first_day = last_day - timedelta(days=days - 1)
    events = generate.load_telemetry(
        stack.dsn("bionicpro"), fleet, first_day, last_day, settings().report_tz,
        as_of=datetime.now(settings().report_tz),
    )  # fmt: skip
    items = generate.load_crm(stack.dsn("crm"), fleet, first_day)
    return events, items


def airflow_cli(
    stack: Stack, *args: str, log: Path | None = None, progress: Callable[[str], None] | None = None
) -> None:
    """Run the airflow CLI on the stack; with `log`, its chatter goes there, `progress` hears of
    each task `airflow dags test` starts, and a failure shows the log's end."""
    command = [str(Path(sys.executable).with_name("airflow")), *args]
    env = {**os.environ, **stack.airflow_env()}
    if log is None:
        subprocess.run(command, env=env, check=True)
        return
    with log.open("w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=out)
        seen = 0
        while process.poll() is None:
            time.sleep(0.5)
            if progress is not None:
                started = DAG_TEST_TASK.findall(log.read_text(errors="replace"))
                if len(started) > seen:
                    seen = len(started)
                    progress(started[-1])
    if process.returncode:
        print(log.read_text()[-3000:], file=sys.stderr)
        raise SystemExit(f"`airflow {' '.join(args)}` failed; the whole log is {log}")


def migrate_airflow_db(stack: Stack) -> None:
    airflow_cli(stack, "db", "migrate", log=stack_logs(stack) / "airflow-db-migrate.log")


def stack_logs(stack: Stack) -> Path:
    logs = stack.root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    return logs


def run_day(
    stack: Stack, day: date, progress: Callable[[str], None] | None = None
) -> tuple[dict[str, Any], float]:
    """The real DAG through Airflow for one report day (`airflow dags test`); its row of the
    run log, and the seconds it took, Airflow's start included."""
    started = time.monotonic()
    log = stack_logs(stack) / f"dags-test-{day}.log"
    airflow_cli(
        stack, "dags", "test", "reports_etl_dag", day.isoformat(), log=log, progress=progress
    )
    seconds = time.monotonic() - started
    client = stack.clickhouse()
    try:
        (run,) = runlog.last_runs(client, 1)
    finally:
        client.close()
    return run, seconds


def run_days(stack: Stack, days: Iterable[date]) -> None:
    """Each day in turn through Airflow: what a backfill does, without needing a scheduler;
    a line for each run says what it built and why."""
    migrate_airflow_db(stack)
    days = list(days)
    story.console.print(story.RUN_HEADER)
    for n, day in enumerate(days, 1):
        play_day(stack, day, f"[{n}/{len(days)}]")


def play_day(stack: Stack, day: date, counter: str) -> None:
    """One day through Airflow, with progress while it runs, then its line under RUN_HEADER."""
    with story.step(f"{counter} reports_etl_dag for {day}", summary=False) as told:
        run, seconds = run_day(stack, day, told)
    story.console.print(story.run_line(run, seconds))


def print_runs(stack: Stack, limit: int = 10) -> None:
    client = stack.clickhouse()
    try:
        runs = runlog.last_runs(client, limit)
    finally:
        client.close()
    story.console.print(f"The run log's latest {len(runs)} runs, oldest first\n{story.RUN_HEADER}")
    for run in reversed(runs):
        story.console.print(story.run_line(run))


def write_report(stack: Stack, user_id: int, month: report.Month | None = None) -> Path:
    """The page of one user's month (default: their latest) under the stack's reports/."""
    client = stack.clickhouse()
    try:
        return report.write(client, user_id, month, stack.root / "reports")
    except report.NoData as missing:
        raise SystemExit(str(missing)) from None
    finally:
        client.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bionicpro_stack", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="start PostgreSQL and the CRM service (idempotent)")
    commands.add_parser("down", help="stop them")
    commands.add_parser("env", help="print the Airflow environment as shell exports")
    gen = commands.add_parser("generate", help="replace both sources with generated data")
    gen.add_argument("--users", type=int, default=2000)
    gen.add_argument("--days", type=int, default=14)
    gen.add_argument("--last-day", type=date.fromisoformat, default=None)
    gen.add_argument("--seed", type=int, default=42)
    backfill = commands.add_parser(
        "backfill", help="build every report day FROM..TO, one `airflow dags test` run per day"
    )
    backfill.add_argument("first_day", type=date.fromisoformat)
    backfill.add_argument("last_day", type=date.fromisoformat)
    commands.add_parser("runs", help="print the run log's latest runs")
    page = commands.add_parser("report", help="one user's month as an HTML page of charts")
    page.add_argument("user_id", type=int)
    page.add_argument("month", nargs="?", type=report.Month.parse, help="YYYY-MM (default: latest)")
    run = commands.add_parser("airflow", help="run the airflow CLI on the stack")
    run.add_argument("args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)

    stack = Stack.from_env()
    if args.command == "up":
        stack.up()
        print(
            f"PostgreSQL in {stack.pg_dir}, CRM at {stack.crm_url}, ClickHouse in {stack.clickhouse_dir}"
        )
    elif args.command == "down":
        stack.down()
    elif args.command == "env":
        for key, value in stack.airflow_env().items():
            print(f"export {key}={shlex.quote(value)}")
    elif args.command == "generate":
        stack.up()
        events, items = generate_data(
            stack,
            users=args.users,
            days=args.days,
            last_day=args.last_day or yesterday(),
            seed=args.seed,
        )
        print(f"generated {events} telemetry events and {items} CRM items")
    elif args.command == "backfill":
        stack.up()
        run_days(stack, generate.days_between(args.first_day, args.last_day))
    elif args.command == "runs":
        print_runs(stack)
    elif args.command == "report":
        print(write_report(stack, args.user_id, args.month))
    elif args.command == "airflow":
        stack.up()
        os.environ.update(stack.airflow_env())
        if args.args[:1] == ["standalone"]:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", 8080)) == 0:
                    raise SystemExit(
                        "port 8080 is taken (an Airflow started before?); stop it, then retry"
                    )
            passwords = stack.airflow_home / "simple_auth_manager_passwords.json.generated"
            print(
                "Airflow UI: http://localhost:8080  user: admin  password: printed below as"
                f" \"Password for user 'admin'\", and kept in {passwords}",
                flush=True,
            )
        airflow = str(Path(sys.executable).with_name("airflow"))  # the one beside this Python
        os.execv(airflow, [airflow, *args.args])


if __name__ == "__main__":
    sys.exit(main())

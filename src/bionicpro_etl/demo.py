"""`make demo`: the whole job on the embedded stack, as a user would run it.

Starts PostgreSQL, the CRM service and the chDB engine, generates two weeks of data ending
yesterday, runs the real DAG through Airflow (`airflow dags test`) for each day, prints the
brief's example queries, and says how to open the Airflow UI on the same stack.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import clickhouse_connect
from rich.console import Console
from rich.table import Table

from bionicpro_etl.queries import sql
from bionicpro_etl.stack.__main__ import generate_data, yesterday
from bionicpro_etl.stack.services import Stack

DAYS = int(os.environ.get("DEMO_DAYS", "14"))
USERS = int(os.environ.get("DEMO_USERS", "2000"))
console = Console()


def airflow(stack: Stack, *args: str, log: Path) -> None:
    """Run the airflow CLI on the stack; its chatter goes to `log`, its failure to the screen."""
    command = [str(Path(sys.executable).with_name("airflow")), *args]
    with log.open("w") as out:
        done = subprocess.run(
            command, env={**os.environ, **stack.airflow_env()}, stdout=out, stderr=out
        )
    if done.returncode:
        console.print(log.read_text()[-3000:])
        raise SystemExit(f"`airflow {' '.join(args)}` failed; the whole log is {log}")


def show(
    client: clickhouse_connect.driver.client.Client, title: str, query: str, **params: object
) -> None:
    result = client.query(query, parameters=params)
    table = Table(title=title, title_justify="left")
    for name in result.column_names:
        table.add_column(name, overflow="fold")
    for row in result.result_rows[:10]:
        table.add_row(
            *("" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v) for v in row)
        )
    console.print(table)
    if result.row_count > 10:
        console.print(f"[dim]... {result.row_count - 10} more rows[/dim]")


def main() -> None:
    stack = Stack.from_env()
    logs = stack.root / "logs"
    with console.status("Starting PostgreSQL and the CRM service..."):
        stack.up()
        logs.mkdir(exist_ok=True)
    console.print(f"[green]✓[/green] stack up under {stack.root}")

    last_day = yesterday()
    first_day = last_day - timedelta(days=DAYS - 1)
    with console.status(f"Generating {DAYS} days of telemetry for {USERS} users..."):
        events, items = generate_data(stack, users=USERS, days=DAYS, last_day=last_day, seed=42)
    console.print(f"[green]✓[/green] {events:,} telemetry events, {items:,} CRM items")

    with console.status("Preparing Airflow's metadata database..."):
        airflow(stack, "db", "migrate", log=logs / "airflow-db-migrate.log")

    for n in range(DAYS):
        day = first_day + timedelta(days=n)
        started = time.monotonic()
        with console.status(f"[{n + 1}/{DAYS}] airflow dags test reports_etl_dag {day}"):
            airflow(
                stack,
                "dags",
                "test",
                "reports_etl_dag",
                day.isoformat(),
                log=logs / f"dags-test-{day}.log",
            )
        console.print(
            f"[green]✓[/green] [{n + 1}/{DAYS}] report day {day} built in {time.monotonic() - started:.1f} s"
        )

    client = clickhouse_connect.get_client(interface="chdb", path=str(stack.clickhouse_dir))
    try:
        report_examples(client, first_day, last_day)
    finally:
        client.close()
    console.print(
        "\n[bold]Next[/bold]\n"
        f"  Airflow UI on this stack:  make airflow   (http://localhost:8080; the admin password is printed there)\n"
        f"  The data:                  {stack.root} (postgres/, clickhouse/, airflow/, logs/)\n"
        "  Run it all again:          make demo"
    )


def report_examples(
    client: clickhouse_connect.driver.client.Client, first_day: date, last_day: date
) -> None:
    rows, days = client.query(
        "SELECT count(), uniqExact(report_date) FROM bionicpro_reports.reports_data_mart"
    ).result_rows[0]
    console.print(
        f"\n[bold]bionicpro_reports.reports_data_mart[/bold]: {rows:,} rows over {days} report days\n"
    )
    # Example 1 names January 2024; the demo's data is the last two weeks, so only its period moves.
    user_report = sql("examples/user_report").replace(
        "'2024-01-01' AND '2024-01-31'", "{first_day:Date} AND {last_day:Date}"
    )
    show(
        client,
        f"1. The report of user 123, {first_day} .. {last_day}",
        user_report,
        first_day=first_day,
        last_day=last_day,
    )
    show(client, "2. Usage by user, last 30 days", sql("examples/usage_by_user"))
    show(client, "3. Top users by efficiency, last 7 days", sql("examples/top_efficiency"))


if __name__ == "__main__":
    main()

"""`make demo`: the whole job on the embedded stack, as a user would run it.

Starts PostgreSQL, the CRM service and the chDB engine, generates two weeks of data ending
yesterday, runs the real DAG through Airflow (`airflow dags test`) for each day, prints the
brief's example queries, and says how to open the Airflow UI on the same stack.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import date, timedelta

import clickhouse_connect
from rich.console import Console
from rich.table import Table

from bionicpro_etl.queries import sql
from bionicpro_stack.__main__ import generate_data, print_runs, run_days, yesterday
from bionicpro_stack.generate import days_between
from bionicpro_stack.services import Stack

DAYS = int(os.environ.get("DEMO_DAYS", "14"))
USERS = int(os.environ.get("DEMO_USERS", "2000"))
console = Console()


def show(
    client: clickhouse_connect.driver.client.Client, title: str, query: str, **params: object
) -> None:
    """A query's answer as a table; a wide one (SELECT *) record by record, as
    clickhouse-client's Vertical format does."""
    result = client.query(query, parameters=params)
    names, rows = result.column_names, result.result_rows
    shown = 3 if len(names) > 8 else 10
    if len(names) > 8:
        tables = [_table(f"{title}: row {n + 1}", ("column", "value"), zip(names, row, strict=True))
                  for n, row in enumerate(rows[:shown])]  # fmt: skip
    else:
        tables = [_table(title, names, rows[:shown])]
    for table in tables or [_table(title, names, [])]:
        console.print(table)
    if len(rows) > shown:
        console.print(f"[dim]... {len(rows) - shown} more rows[/dim]")


def _table(title: str, header: Iterable[str], rows: Iterable[Iterable[object]]) -> Table:
    table = Table(title=title, title_justify="left")
    for name in header:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(
            *("" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v) for v in row)
        )
    return table


def main() -> None:
    stack = Stack.from_env()
    with console.status("Starting PostgreSQL and the CRM service..."):
        stack.up()
    console.print(f"[green]✓[/green] stack up under {stack.root}")

    last_day = yesterday()
    first_day = last_day - timedelta(days=DAYS - 1)
    with console.status(f"Generating {DAYS} days of telemetry for {USERS} users..."):
        events, items = generate_data(stack, users=USERS, days=DAYS, last_day=last_day, seed=42)
    console.print(f"[green]✓[/green] {events:,} telemetry events, {items:,} CRM items")

    with console.status(f"Running reports_etl_dag for {DAYS} days through Airflow..."):
        run_days(stack, days_between(first_day, last_day), progress=console.print)

    client = clickhouse_connect.get_client(interface="chdb", path=str(stack.clickhouse_dir))
    try:
        report_examples(client, first_day, last_day)
    finally:
        client.close()
    print_runs(stack, limit=5)
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
    user_report = sql("examples/user_report", "bionicpro_stack").replace(
        "'2024-01-01' AND '2024-01-31'", "{first_day:Date} AND {last_day:Date}"
    )
    show(
        client,
        f"1. The report of user 123, {first_day} .. {last_day}",
        user_report,
        first_day=first_day,
        last_day=last_day,
    )
    show(client, "2. Usage by user, last 30 days", sql("examples/usage_by_user", "bionicpro_stack"))
    show(
        client,
        "3. Top users by efficiency, last 7 days",
        sql("examples/top_efficiency", "bionicpro_stack"),
    )


if __name__ == "__main__":
    main()

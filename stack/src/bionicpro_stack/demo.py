"""`make demo`: the whole job on the embedded stack, told as it happens.

It starts PostgreSQL, the CRM service and the chDB engine, and plays a few nights of the
pipeline, each the real DAG through Airflow (`airflow dags test`). The first night finds ten
days of telemetry already there and builds its whole look-back. Before each later night the
prostheses upload that day's events and some late ones of the days before, as they do (3 % of
events come one to five days late), and the run builds its own day and those late days. A last
run, with nothing uploaded since, builds nothing. Each run's line says what it built and why,
the rows it published and the seconds it took. Then the brief's example queries, for a user the
CRM knows and for one it does not, and a page of charts of the first one's month.

Everything it prints fits 80 columns and reads the same in a log file (`make demo > demo.log`).
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import psycopg
from clickhouse_connect.driver.client import Client

from bionicpro_etl.config import settings
from bionicpro_etl.queries import sql
from bionicpro_stack import generate, report
from bionicpro_stack.__main__ import migrate_airflow_db, play_day, write_report, yesterday
from bionicpro_stack.services import Stack
from bionicpro_stack.story import RUN_HEADER, console, fit_table, step

DAYS = int(os.environ.get("DEMO_DAYS", "14"))  # days of telemetry, ending yesterday
NIGHTS = int(os.environ.get("DEMO_NIGHTS", "4"))  # nightly runs after the first one
USERS = int(os.environ.get("DEMO_USERS", "2000"))
SEED = 42
NIGHTLY_RUN = time(2)  # the schedule's 02:00, report time
# Of example 1's rows, the columns shown as a table after its first row in full.
REPORT_COLUMNS = (
    "report_date",
    "prosthesis_id",
    "total_actions",
    "usage_hours",
    "efficiency_score",
)


def main() -> None:
    tz = settings().report_tz
    stack = Stack.from_env()
    with step("Starting PostgreSQL and the CRM service"):
        stack.up()
    # The story starts from an empty store: an earlier demo's runs would make the first night's
    # run find nothing new.
    if stack.clickhouse_dir.exists():
        shutil.rmtree(stack.clickhouse_dir)
        console.print("  the reports store of an earlier demo is emptied, to start over")
    stack.clickhouse_dir.mkdir(parents=True)
    console.print(f"  the stack lives in {stack.root}")

    last_day = yesterday()
    first_day = last_day - timedelta(days=DAYS - 1)
    nights = [last_day - timedelta(days=NIGHTS - n) for n in range(NIGHTS + 1)]
    fleet = generate.Fleet(users=USERS, seed=SEED)
    dsn = stack.dsn("bionicpro")
    history = list(generate.days_between(first_day, nights[0]))
    with step(
        f"Generating {len(history)} days of telemetry for {USERS:,} users, and the CRM"
    ) as told:
        events = generate.load_telemetry(
            dsn, fleet, first_day, nights[0], tz, as_of=night_of(nights[0], tz),
            on_day=lambda day: told(f"day {(day - first_day).days + 1} of {len(history)}"),
        )  # fmt: skip
        items = generate.load_crm(stack.dsn("crm"), fleet, first_day)
    console.print(f"  {events:,} telemetry events as of the first night, {items:,} CRM items")
    with step("Preparing Airflow's database (airflow db migrate)"):
        migrate_airflow_db(stack)

    console.print(
        "\n[bold]The nights[/bold]: for each run, its report day, the rows it published, the"
        " seconds it took (Airflow's start included), what it built and why.\n"
        f"{RUN_HEADER}"
    )
    total = len(nights) + 1
    for n, day in enumerate(nights):
        if n:
            upload(stack, fleet, first_day, day, after=night_of(nights[n - 1], tz), tz=tz)
        play_day(stack, day, f"[{n + 1}/{total}]")
    console.print(f"{'':7}the night of {nights[-1]} once more, with nothing uploaded since:")
    play_day(stack, nights[-1], f"[{total}/{total}]")

    client = stack.clickhouse()
    try:
        known, unknown = example_users(client)
        report_examples(client, first_day, last_day, known, unknown)
    finally:
        client.close()
    # The month with most of the demo's days.
    months = Counter(d.replace(day=1) for d in generate.days_between(first_day, last_day))
    month = report.Month(months.most_common(1)[0][0])
    page = write_report(stack, known, month)
    console.print(
        f"\n[bold]A picture[/bold]: user {known}'s {month.title}, per prosthesis, is the page\n"
        f"  {page}\n  (open it in a browser; `make report USER={known} MONTH={month}` makes it"
        " again)"
    )
    console.print(
        "\n[bold]Next[/bold]\n"
        "  The Airflow UI on this stack:  make airflow  (http://localhost:8080; the admin\n"
        "                                 password is printed there)\n"
        "  The run log:                   make runs\n"
        f"  The data:                      {stack.root}\n"
        "  All of it again:               make demo"
    )


def night_of(day: date, tz: ZoneInfo) -> datetime:
    """When the scheduled run of report day `day` starts (02:00 the next day), or now if that
    is still to come."""
    scheduled = datetime.combine(day + timedelta(days=1), NIGHTLY_RUN, tzinfo=tz)
    return min(scheduled, datetime.now(tz))


def upload(
    stack: Stack,
    fleet: generate.Fleet,
    first_day: date,
    day: date,
    *,
    after: datetime,
    tz: ZoneInfo,
) -> None:
    """What the prostheses upload between the night before and the night of `day`."""
    until = night_of(day, tz)
    dsn = stack.dsn("bionicpro")
    events = generate.upload_arrivals(dsn, fleet, first_day, day, tz, after=after, until=until)
    with psycopg.connect(dsn) as conn:
        (late,) = conn.execute(
            "SELECT count(*) FROM telemetry_events"
            " WHERE received_at > %s AND received_at <= %s AND event_time < %s",
            (after, until, datetime.combine(day, time(), tzinfo=tz)),
        ).fetchone()
    console.print(
        f"{'':7}uploaded since: {events:,} events, {late:,} of them late (of days before)"
    )


def example_users(client: Client) -> tuple[int, int]:
    """A user the CRM knows, with two prostheses if there is one (the most active such user);
    and a user with telemetry whom the CRM does not know."""
    (known,) = client.query(
        "SELECT user_id FROM bionicpro_reports.reports_data_mart WHERE email != ''"
        " GROUP BY user_id ORDER BY uniqExact(prosthesis_id) DESC, sum(total_actions) DESC"
        " LIMIT 1"
    ).result_rows[0]
    (unknown,) = client.query(
        "SELECT user_id FROM bionicpro_reports.reports_data_mart GROUP BY user_id"
        " HAVING max(email) = '' ORDER BY user_id LIMIT 1"
    ).result_rows[0]
    return known, unknown


def report_examples(
    client: Client, first_day: date, last_day: date, known: int, unknown: int
) -> None:
    (rows, days) = client.query(
        "SELECT count(), uniqExact(report_date) FROM bionicpro_reports.reports_data_mart"
    ).result_rows[0]
    console.print(
        f"\n[bold]bionicpro_reports.reports_data_mart[/bold]: {rows:,} rows over {days} report"
        " days. The brief's three example queries:"
    )
    # Example 1 names user 123 and January 2024; here its user and period are the demo's.
    user_report = (
        sql("examples/user_report", "bionicpro_stack")
        .replace("user_id = 123", "user_id = {user_id:UInt64}")
        .replace("'2024-01-01' AND '2024-01-31'", "{first_day:Date} AND {last_day:Date}")
    )
    period = {"first_day": first_day, "last_day": last_day}
    result = client.query(user_report, parameters={"user_id": known, **period})
    names, records = result.column_names, list(result.named_results())
    latest = records[0]
    console.print(
        f"\n1. The report of user {known}, {first_day} .. {last_day}: a user the CRM knows, as"
        f" {latest['first_name']} {latest['last_name']} <{latest['email']}>. Their latest"
        " row in full, then every row in short:"
    )
    console.print(fit_table("", ("column", "value"), [(n, latest[n]) for n in names]), "")
    console.print(fit_table("", REPORT_COLUMNS, [[r[c] for c in REPORT_COLUMNS] for r in records]))

    result = client.query(user_report, parameters={"user_id": unknown, **period})
    console.print(
        f"\n   The same query for user {unknown}, whom the CRM does not know: their prostheses"
        " send telemetry, so the mart has their rows, with an empty e-mail and names and the"
        " status 'unknown' (no order to take them from); the first run after the CRM lists"
        " them fills those in.\n"
    )
    shown = ("report_date", "prosthesis_id", "email", "first_name", "status", "total_actions")
    rows_of_unknown = [[r[c] for c in shown] for r in result.named_results()]
    console.print(
        fit_table("", shown, [[v if v != "" else "''" for v in r] for r in rows_of_unknown[:3]])
    )

    _show(
        client,
        "2. Usage by user, last 30 days (top 10)",
        sql("examples/usage_by_user", "bionicpro_stack"),
    )
    _show(
        client,
        "3. Top users by efficiency, last 7 days",
        sql("examples/top_efficiency", "bionicpro_stack"),
    )


def _show(client: Client, title: str, query: str, limit: int = 10) -> None:
    result = client.query(query)
    console.print(f"\n{title}")
    console.print(fit_table("", result.column_names, result.result_rows[:limit]))


if __name__ == "__main__":
    main()

"""One user's month as a picture: a self-contained HTML page with, per prosthesis, the daily
usage hours, the actions by type, the response time and efficiency, and the battery. A day the
mart holds only so far (`published_days.complete` false) is shaded and named, so its low numbers
are not read as a quiet day.

`make report USER=123 MONTH=2026-11` (`python -m bionicpro_stack report 123 2026-11`) reads the
mart of the embedded stack through clickhouse-connect, the pipeline's client, and writes the page
under `.stack/reports/`; `make demo` ends with one. The charts are plotly's, with plotly.js
inside the page, so it opens anywhere, offline, and downloads nothing.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import groupby
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from clickhouse_connect.driver.client import Client
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from bionicpro_etl.queries import sql

# One colour per kind of action, the same in every chart.
ACTION_COLOURS = {"grasp": "#1f77b4", "release": "#2ca02c", "flex": "#ff7f0e", "other": "#9467bd"}
CHART_TITLES = (
    "Usage, hours a day",
    "Actions by type",
    "Response time (ms) and efficiency (0-100)",
    "Battery, %",
)


class NoData(LookupError):
    """The mart has no rows for what was asked; the message says what it does have."""


@dataclass(frozen=True)
class Month:
    first: date

    @classmethod
    def parse(cls, text: str) -> Month:
        """`2026-11` (a day in it, `2026-11-17`, is taken as its month too)."""
        try:
            year, month = (int(part) for part in text.split("-")[:2])
            return cls(date(year, month, 1))
        except ValueError:
            raise ValueError(f"not a month: {text!r} (expected YYYY-MM, e.g. 2026-11)") from None

    @property
    def last(self) -> date:
        return (self.first + timedelta(days=32)).replace(day=1) - timedelta(days=1)

    def __str__(self) -> str:
        return self.first.strftime("%Y-%m")

    @property
    def title(self) -> str:
        return self.first.strftime("%B %Y")


def latest_month(client: Client, user_id: int) -> Month:
    """The last month with rows for `user_id`."""
    (last,) = client.query(
        "SELECT maxOrNull(report_date) FROM bionicpro_reports.reports_data_mart"
        " WHERE user_id = {user_id:UInt64}",
        parameters={"user_id": user_id},
    ).result_rows[0]
    if last is None:
        raise NoData(f"user {user_id} has no rows in bionicpro_reports.reports_data_mart")
    return Month(last.replace(day=1))


def month_rows(client: Client, user_id: int, month: Month) -> list[dict[str, Any]]:
    rows = list(
        client.query(
            sql("report/user_month", "bionicpro_stack"),
            parameters={"user_id": user_id, "first_day": month.first, "last_day": month.last},
        ).named_results()
    )
    if not rows:
        months = client.query(
            "SELECT DISTINCT toStartOfMonth(report_date) AS m"
            " FROM bionicpro_reports.reports_data_mart WHERE user_id = {user_id:UInt64} ORDER BY m",
            parameters={"user_id": user_id},
        ).result_rows
        having = ", ".join(str(Month(m)) for (m,) in months) or "none"
        raise NoData(
            f"user {user_id} has no rows in bionicpro_reports.reports_data_mart for {month}"
            f" (months with rows: {having})"
        )
    return rows


def partial_days(client: Client, month: Month) -> list[date]:
    """The month's days that are not complete: the pipeline has not read past their end yet
    (a sub-daily schedule publishes today while it runs), so the mart holds the day so far."""
    return [
        day
        for (day,) in client.query(
            "SELECT report_date FROM bionicpro_reports.published_days WHERE NOT complete"
            " AND report_date BETWEEN {first_day:Date} AND {last_day:Date} ORDER BY report_date",
            parameters={"first_day": month.first, "last_day": month.last},
        ).result_rows
    ]


def write(client: Client, user_id: int, month: Month | None, out_dir: Path) -> Path:
    """The page of `user_id`'s `month` (default: their latest) in `out_dir`; returns its path."""
    if not client.command("EXISTS TABLE bionicpro_reports.reports_data_mart"):
        raise NoData("there is no bionicpro_reports.reports_data_mart yet: `make demo` builds one")
    month = month or latest_month(client, user_id)
    page = render(user_id, month, month_rows(client, user_id, month), partial_days(client, month))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"user-{user_id}-{month}.html"
    path.write_text(page, encoding="utf-8")
    return path


def render(
    user_id: int, month: Month, rows: Sequence[dict[str, Any]], partial: Sequence[date] = ()
) -> str:
    """The whole page: who the user is (or that the CRM does not know them), which days are not
    complete, then one figure per prosthesis. plotly.js is included once, in the head."""
    sections = []
    for n, (prosthesis_id, days) in enumerate(groupby(rows, key=lambda r: r["prosthesis_id"])):
        days = list(days)
        chart = figure(days, month, partial).to_html(
            full_html=False,
            include_plotlyjs=False,
            div_id=f"prosthesis-{n}",
            config={"displaylogo": False, "responsive": True},
        )
        sections.append(f"<section>{_prosthesis_heading(prosthesis_id, days)}{chart}</section>")
    title = f"BionicPRO usage report: user {user_id}, {month.title}"
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }}
h1 {{ font-size: 1.6rem; margin-bottom: .2rem; }}
h2 {{ font-size: 1.2rem; margin: 2rem 0 .2rem; }}
p.who, p.facts {{ margin: .2rem 0; }}
p.unknown, p.partial {{ background: #fff4e5; border-left: 4px solid #f0a030; padding: .5rem .8rem; }}
footer {{ color: #777; font-size: .85rem; margin-top: 2rem; }}
</style>
<script>{get_plotlyjs()}</script>
</head>
<body>
<h1>{html.escape(title)}</h1>
{_who(user_id, rows)}
{_partial(partial)}
{"".join(sections)}
<footer>From bionicpro_reports.reports_data_mart, {month.first} to {month.last}; made
{generated}. Days without a bar had no telemetry.</footer>
</body>
</html>
"""


def _who(user_id: int, rows: Sequence[dict[str, Any]]) -> str:
    known = next((r for r in rows if r["email"]), None)
    if known is None:
        return (
            '<p class="who unknown"><strong>Not known to the CRM.</strong> The prostheses of user'
            f" {user_id} send telemetry, but the CRM has no customer record for this user, so the"
            " report has no name or e-mail and every order status is <em>unknown</em>. The"
            " report fills them in by itself once the CRM lists the user.</p>"
        )
    name = html.escape(f"{known['first_name']} {known['last_name']}".strip())
    return (
        f'<p class="who">{name} &lt;{html.escape(known["email"])}&gt;, as the CRM knows this'
        " user.</p>"
    )


def _partial(partial: Sequence[date]) -> str:
    if not partial:
        return ""
    days = ", ".join(day.isoformat() for day in partial)
    return (
        f'<p class="partial"><strong>Not complete: {days}</strong> (shaded). The pipeline has not'
        " yet read past the end of the day, so its charts show the day so far, not a day of low"
        " use; they fill in with the next runs.</p>"
    )


def _prosthesis_heading(prosthesis_id: str, days: Sequence[dict[str, Any]]) -> str:
    latest = days[-1]
    if latest["status"] == "unknown":
        order = "no CRM order for this prosthesis"
    else:
        placed = f" of {latest['order_date']}" if latest["order_date"] else ""
        order = f"CRM order{placed}, status {html.escape(latest['status'])}"
    hours = sum(d["usage_hours"] for d in days)
    actions = sum(d["total_actions"] for d in days)
    return (
        f"<h2>{html.escape(prosthesis_id)}</h2>"
        f'<p class="facts">{order}; {len(days)} days in use, {hours:,.1f} hours,'
        f" {actions:,} actions</p>"
    )


def figure(days: Sequence[dict[str, Any]], month: Month, partial: Sequence[date] = ()) -> go.Figure:
    """Four charts over the month, one above the other, sharing the days axis; the days that
    are not complete shaded across all four."""
    x = [d["report_date"] for d in days]
    fig = make_subplots(
        rows=4,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.07,
        subplot_titles=CHART_TITLES,
        specs=[[{}], [{}], [{"secondary_y": True}], [{}]],
    )
    fig.add_bar(x=x, y=_values(days, "usage_hours"), name="usage hours", row=1, col=1)
    for kind, values in _actions(days).items():
        fig.add_bar(x=x, y=values, name=kind, marker_color=ACTION_COLOURS[kind], row=2, col=1)
    # The day's fastest and slowest responses as a band around the average.
    fig.add_scatter(
        x=x, y=_values(days, "max_response_time"), name="slowest response",
        mode="lines", line={"width": 0}, showlegend=False, row=3, col=1,
    )  # fmt: skip
    fig.add_scatter(
        x=x, y=_values(days, "min_response_time"), name="fastest .. slowest",
        mode="lines", line={"width": 0}, fill="tonexty", fillcolor="rgba(31,119,180,0.15)",
        row=3, col=1,
    )  # fmt: skip
    # Daily values as lines: (column, legend name, colour, row, dotted, on the second axis).
    lines = (
        ("avg_response_time", "average response", "#1f77b4", 3, False, False),
        ("efficiency_score", "efficiency", "#d62728", 3, True, True),
        ("avg_battery_level", "average battery", "#2ca02c", 4, False, False),
        ("min_battery_level", "lowest battery", "#8c564b", 4, True, False),
    )
    for column, name, colour, row, dotted, secondary in lines:
        fig.add_scatter(
            x=x, y=_values(days, column), name=name, mode="lines+markers",
            line={"color": colour, "dash": "dot" if dotted else "solid"},
            row=row, col=1, secondary_y=secondary,
        )  # fmt: skip
    fig.update_layout(
        barmode="stack",
        height=1050,
        margin={"t": 40, "b": 40, "l": 60, "r": 60},
        legend={"orientation": "h", "y": -0.06},
        hovermode="x unified",
    )
    for day in partial:
        centre = datetime.combine(day, time())  # a day's bar stands on its date
        fig.add_vrect(
            x0=centre - timedelta(hours=12), x1=centre + timedelta(hours=12), row="all", col=1,
            fillcolor="#f0a030", opacity=0.2, line_width=0, layer="below",
        )  # fmt: skip
    # The whole month on the days axis, so a quiet week shows as a gap.
    first, last = (datetime.combine(day, time()) for day in (month.first, month.last))
    fig.update_xaxes(range=[first - timedelta(hours=15), last + timedelta(hours=15)])
    fig.update_yaxes(title_text="hours", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="actions", row=2, col=1)
    fig.update_yaxes(title_text="ms", rangemode="tozero", row=3, col=1, secondary_y=False)
    fig.update_yaxes(
        title_text="efficiency", range=[0, 100], tickvals=[0, 25, 50, 75, 100], showgrid=False,
        row=3, col=1, secondary_y=True,
    )  # fmt: skip
    fig.update_yaxes(title_text="%", range=[0, 100], row=4, col=1)
    return fig


def _values(days: Iterable[dict[str, Any]], column: str) -> list[float | None]:
    return [d[column] for d in days]


def _actions(days: Sequence[dict[str, Any]]) -> dict[str, list[int]]:
    """The day's actions split into the mart's three kinds and the rest."""
    counted = {kind: [d[f"{kind}_count"] for d in days] for kind in ("grasp", "release", "flex")}
    counted["other"] = [
        d["total_actions"] - d["grasp_count"] - d["release_count"] - d["flex_count"] for d in days
    ]
    return counted

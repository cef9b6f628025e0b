"""How the stack's commands talk to people: each run of the pipeline in words, tables that fit an
80-column terminal, and progress for the steps that take a while. What they print reads the
same on a terminal and in a log file (rich draws 80 columns when it is not writing to a
terminal; live displays are drawn only on a terminal, and replaced in a log by plain lines).
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, timedelta
from typing import Any

from rich import box
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console(highlight=False)
# In a log file, a long step's progress is one line at most this often.
LOG_PROGRESS_SECONDS = 5.0


def what_it_built(run: Mapping[str, Any]) -> str:
    """A run-log row's days in words: which days the run built and why (first run: the whole
    look-back; its own day; late arrivals, for which days; nothing new), or why it failed."""
    if run["status"] != "success":
        return f"{run['status']}: {run['error']}"
    days: list[date] = sorted(run["days_rebuilt"])
    if not days:
        return "nothing new"
    if run["first_run"]:
        return f"first run, the whole look-back: {_days(days)}"
    own_day = run["report_day"]
    late, later = [d for d in days if d < own_day], [d for d in days if d > own_day]
    parts = ["own day"] if own_day in days else []
    if late:
        parts.append(f"late arrivals for {_days(late)}")
    if later:  # a sub-daily schedule's next days, as far as they have gone
        parts.append(f"{_days(later)} so far")
    return " + ".join(parts)


def _days(days: Sequence[date]) -> str:
    """`11-22`, `11-22, 11-24`, `11-15..11-24 (10 days)`: short enough for one line."""
    if len(days) <= 3:
        return ", ".join(_short(d) for d in days)
    span = f"{_short(days[0])}..{_short(days[-1])}"
    if days[-1] - days[0] == timedelta(days=len(days) - 1):
        return f"{span} ({len(days)} days)"
    return f"{len(days)} days in {span}"


def _short(day: date) -> str:
    return day.strftime("%m-%d")


# The header of `run_line`'s columns.
RUN_HEADER = f"{'day':<5}  {'published':>9}  {'secs':>5}  what it built, and why"


def run_line(run: Mapping[str, Any], seconds: float | None = None) -> str:
    """One run under RUN_HEADER: its report day, the rows it published, the seconds it took
    (the pipeline's own, or `seconds` when the caller timed the run), what it built and why;
    a long why goes on under itself."""
    took = run["seconds"] if seconds is None else seconds
    head = f"{_short(run['report_day'])}  {run['published_rows']:>9,}  {took:>5.1f}  "
    return textwrap.fill(
        what_it_built(run),
        width=max(console.width, len(head) + 20),
        initial_indent=head,
        subsequent_indent=" " * len(head),
    )


def fit_table(
    title: str,
    names: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    wrap: Sequence[str] = (),
) -> Table:
    """A table that fits the console: values are never cut or folded (only those of the
    columns named in `wrap` wrap), and when the table is too wide its headers wrap at spaces
    (`avg_response_time` is shown as `avg response time`)."""
    cells = [[_cell(v) for v in row] for row in rows]
    headers = [name.replace("_", " ") for name in names]
    widest = [max((len(row[n]) for row in cells), default=0) for n in range(len(names))]
    natural = sum(max(w, len(h)) + 2 for w, h in zip(widest, headers, strict=True))
    squeeze = natural > console.width
    table = Table(
        title=title or None,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        show_edge=False,
    )
    for n, (name, header) in enumerate(zip(names, headers, strict=True)):
        wraps = name in wrap
        longest_word = max(len(word) for word in header.split())
        numeric = bool(cells) and all(_numeric(row[n]) for row in cells if row[n])
        table.add_column(
            header,
            justify="right" if numeric else "left",
            min_width=None if wraps else widest[n],
            max_width=max(widest[n], longest_word) if squeeze and not wraps else None,
            overflow="fold",
        )
    for row in cells:
        table.add_row(*row)
    return table


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}" if value >= 10_000 else str(value)
    return str(value)


def _numeric(text: str) -> bool:
    return text.replace(",", "").replace(".", "", 1).lstrip("-").isdigit()


@contextmanager
def step(title: str, *, summary: bool = True) -> Iterator[Callable[[str], None]]:
    """A step that takes a while: on a terminal a spinner with the time so far and what it is
    doing now (the caller reports that through the function it gets); in a log file a line
    when it starts and a line of progress at most every LOG_PROGRESS_SECONDS. Then a line that
    it is done, unless the caller prints its own (`summary=False`)."""
    started = time.monotonic()
    if console.is_terminal:
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task(title)
            yield lambda detail: progress.update(task, description=f"{title}: {detail}")
    else:
        console.print(f"{title} ...")
        last = started

        def report(detail: str) -> None:
            nonlocal last
            if time.monotonic() - last >= LOG_PROGRESS_SECONDS:
                console.print(f"  ... {detail} ({time.monotonic() - started:.0f} s)")
                last = time.monotonic()

        yield report
    if summary:
        console.print(f"[green]✓[/green] {title} ({time.monotonic() - started:.0f} s)")

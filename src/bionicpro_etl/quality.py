"""Quality gates between transform and publish.

Each check turns a figure of the run's report rows (or its telemetry, or its CRM read) into a
level: `ok`, `warn` (published, and people are told) or `error` (not published: the mart keeps
the old days, and the task fails naming the check and its figures). Every result of every run is
stored in `bionicpro_reports.quality_checks`. The levels are settings (config.QUALITY_LEVELS,
overridden through `BIONICPRO_QUALITY_LEVELS`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from clickhouse_connect.driver.client import Client

from bionicpro_etl.config import Settings, settings
from bionicpro_etl.queries import sql
from bionicpro_etl.staging import Staging

# A day's volume is judged only against this many days of history, at least.
MIN_TRAILING_DAYS = 3


class QualityError(RuntimeError):
    """An error-level quality result: the run must not publish."""


@dataclass(frozen=True)
class Result:
    check: str
    figure: float
    level: str
    warn_at: float | None
    error_at: float | None
    detail: str = ""

    def __str__(self) -> str:
        limit = self.error_at if self.level == "error" else self.warn_at
        where = f" ({self.detail})" if self.detail else ""
        return f"{self.check} = {self.figure:.4g}{where}, above the {self.level} level {limit:g}"


def judge(check: str, figure: float, detail: str = "", config: Settings | None = None) -> Result:
    """The level of one figure, by the check's levels (config.QUALITY_LEVELS, as configured)."""
    warn_at, error_at = (config or settings()).check_levels()[check]
    level = "ok"
    if error_at is not None and figure > error_at:
        level = "error"
    elif warn_at is not None and figure > warn_at:
        level = "warn"
    return Result(check, figure, level, warn_at, error_at, detail)


def run_checks(
    client: Client,
    stage: Staging,
    days: Sequence[date],
    complete: Sequence[date],
    crm_reject_share: float,
    config: Settings | None = None,
) -> list[Result]:
    """The figures of the rows of `days`; a day's volume only for those `complete`: a day so
    far (a sub-daily schedule's today) has only part of its rows, and is judged once complete."""
    config = config or settings()
    result = client.query(
        sql("clickhouse/build/quality_figures"),
        parameters={**stage.tables(), "days": list(days)},
    )
    figures: dict[str, Any] = dict(zip(result.column_names, result.result_rows[0], strict=True))
    results = [judge(check, float(figure), config=config) for check, figure in figures.items()]
    results.append(judge("crm_reject_share", crm_reject_share, config=config))
    results.extend(_day_volumes(client, stage, days, set(complete), config))
    return results


def _day_volumes(
    client: Client, stage: Staging, days: Sequence[date], complete: set[date], config: Settings
) -> list[Result]:
    rows = client.query(
        sql("clickhouse/build/quality_day_volumes"),
        parameters={**stage.tables(), "days": list(days)},
    ).result_rows
    results = []
    for day, day_rows, trailing_avg, trailing_days in rows:
        if day not in complete or trailing_days < MIN_TRAILING_DAYS or not trailing_avg:
            continue
        ratio = day_rows / trailing_avg
        detail = f"{day}: {day_rows} rows, trailing average {trailing_avg:.0f}"
        results.append(judge("day_volume_drop", max(0.0, 1 - ratio), detail, config))
        results.append(judge("day_volume_spike", max(0.0, ratio - 1), detail, config))
    return results


def record(client: Client, run_id: str, report_day: date, results: list[Result]) -> None:
    columns = ["run_id", "report_day", "check", "level", "figure", "warn_at", "error_at", "detail"]
    client.insert(
        "bionicpro_reports.quality_checks",
        [
            [run_id, report_day, r.check, r.level, r.figure, r.warn_at, r.error_at, r.detail]
            for r in results
        ],
        column_names=columns,
    )


def gate(results: list[Result]) -> list[str]:
    """Raise on error-level results; return the warn-level ones, for the notifiers."""
    errors = [str(r) for r in results if r.level == "error"]
    if errors:
        raise QualityError("data quality gate failed, nothing published: " + "; ".join(errors))
    return [str(r) for r in results if r.level == "warn"]

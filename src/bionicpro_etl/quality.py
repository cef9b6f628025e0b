"""Quality gates between transform and publish.

Each check turns a figure of the run's report rows (or its telemetry, or its CRM read) into a
level: `ok`, `warn` (published, and people are told) or `error` (not published: the mart keeps
the old days, and the task fails naming the check and its figures). Every result of every run is
stored in `bionicpro_reports.quality_checks`. Levels are configurable through
`BIONICPRO_QUALITY_LEVELS`, e.g. '{"no_order_share": {"warn": 0.3, "error": 0.6}}'.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import date
from typing import Any

from clickhouse_connect.driver.client import Client

from bionicpro_etl.queries import sql
from bionicpro_etl.run import Plan
from bionicpro_etl.staging import Staging

# check: (warn above, error above); a figure above `error` stops the publish.
DEFAULT_LEVELS: dict[str, tuple[float | None, float | None]] = {
    "duplicate_keys": (None, 0),
    "out_of_range_rows": (None, 0),
    "no_order_share": (0.2, 0.5),
    "invalid_measurement_share": (0.05, 0.25),
    "absurd_duration_share": (0.001, 0.05),
    "crm_reject_share": (0.001, None),  # above 1 % the CRM extract has failed already
    "day_volume_drop": (0.5, 0.8),  # 1 - day rows / trailing average
    "day_volume_spike": (1.0, 4.0),  # day rows / trailing average - 1
}
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


def levels() -> dict[str, tuple[float | None, float | None]]:
    overrides = json.loads(os.environ.get("BIONICPRO_QUALITY_LEVELS") or "{}")
    merged = dict(DEFAULT_LEVELS)
    for check, level in overrides.items():
        if check not in merged:
            raise ValueError(f"BIONICPRO_QUALITY_LEVELS names an unknown check {check!r}")
        merged[check] = (level.get("warn"), level.get("error"))
    return merged


def judge(check: str, figure: float, detail: str = "") -> Result:
    warn_at, error_at = levels()[check]
    level = "ok"
    if error_at is not None and figure > error_at:
        level = "error"
    elif warn_at is not None and figure > warn_at:
        level = "warn"
    return Result(check, figure, level, warn_at, error_at, detail)


def run_checks(client: Client, stage: Staging, plan: Plan, crm_reject_share: float) -> list[Result]:
    result = client.query(
        sql("clickhouse/build/quality_figures"),
        parameters={**stage.tables(), "days": list(plan.days)},
    )
    figures: dict[str, Any] = dict(zip(result.column_names, result.result_rows[0], strict=True))
    results = [judge(check, float(figure)) for check, figure in figures.items()]
    results.append(judge("crm_reject_share", crm_reject_share))
    results.extend(_day_volumes(client, stage, plan))
    return results


def _day_volumes(client: Client, stage: Staging, plan: Plan) -> list[Result]:
    rows = client.query(
        sql("clickhouse/build/quality_day_volumes"),
        parameters={**stage.tables(), "days": list(plan.days)},
    ).result_rows
    results = []
    for day, day_rows, trailing_avg, trailing_days in rows:
        if trailing_days < MIN_TRAILING_DAYS or not trailing_avg:
            continue
        ratio = day_rows / trailing_avg
        detail = f"{day}: {day_rows} rows, trailing average {trailing_avg:.0f}"
        results.append(judge("day_volume_drop", max(0.0, 1 - ratio), detail))
        results.append(judge("day_volume_spike", max(0.0, ratio - 1), detail))
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

"""Typed settings of the pipeline, read from one place: the environment of the Airflow workers.

Every setting is a field of `Settings`: `BIONICPRO_<NAME>` in the environment (`crm_page_size`
is `BIONICPRO_CRM_PAGE_SIZE`), its default written once, as the field's, and its meaning
(docs/operations.md's table of settings is written from them by `make docs`). Only this module
reads the environment; the stages, the quality gates and the notifiers take a `Settings`.

Connections (PostgreSQL, CRM, ClickHouse, SMTP, Slack) are not here: they are Airflow
connections, so a deployment changes them without touching code.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

# The quality checks' levels: (warn above, error above); a figure above `error` stops the publish,
# None is no level. BIONICPRO_QUALITY_LEVELS overrides them check by check.
QUALITY_LEVELS: dict[str, tuple[float | None, float | None]] = {
    "duplicate_keys": (None, 0),
    "out_of_range_rows": (None, 0),
    "no_order_share": (0.2, 0.5),
    "invalid_measurement_share": (0.05, 0.25),
    "absurd_duration_share": (0.001, 0.05),
    "crm_reject_share": (0.001, None),  # above 1 % the CRM extract has failed already
    "day_volume_drop": (0.5, 0.8),  # 1 - day rows / trailing average
    "day_volume_spike": (1.0, 4.0),  # day rows / trailing average - 1
}


def _setting(default: Any, meaning: str, parse: Callable[[str], Any] | None = None) -> Any:
    """A setting: its default, what it means, and how its variable's text is read (by default,
    as the default's type). A variable set to the empty string counts as unset."""
    return field(default=default, metadata={"meaning": meaning, "parse": parse or type(default)})


def _addresses(value: str) -> tuple[str, ...]:
    return tuple(a.strip() for a in value.split(",") if a.strip())


@dataclass(frozen=True)
class Settings:
    report_tz: ZoneInfo = _setting(  # noqa: RUF009 (a ZoneInfo is immutable)
        ZoneInfo("Europe/Moscow"), "the report time zone (IANA name)", ZoneInfo
    )
    crm_max_reject_share: float = _setting(
        0.01, "the largest share of invalid CRM items a run accepts (contract section 4)"
    )
    crm_page_size: int = _setting(1000, "CRM page size (1..1000)")
    crm_full_refresh_days: int = _setting(
        7,
        "a full CRM listing (which also catches deleted orders) at least this often (report days)",
    )
    lookback_days: int = _setting(
        30, "how many days before its own day a run still rebuilds for late events"
    )
    arrival_lag_seconds: int = _setting(
        300, "arrivals this recent wait for the next run (their transactions may be in flight)"
    )
    arrival_overlap_seconds: int = _setting(
        3600,
        "rows that commit late (their `received_at` is their transaction's start, or a replica"
        " shows them late) are found up to this far below the watermark: each run reads the"
        " arrivals of this window below the last run's bound again and replaces what they became"
        " in the telemetry state (never counts them twice); a day whose events grew is rebuilt",
    )
    schedule: str = _setting("0 2 * * *", "the DAG's schedule (cron, in the report zone)")
    telemetry_shards: int = _setting(
        1, "how many mapped tasks share the telemetry extract (by a hash of user_id)"
    )
    clickhouse_cluster: str = _setting(
        "",
        "a ClickHouse cluster (of the servers' remote_servers) to create the shared tables on,"
        " replicated; empty: one server or chDB",
    )
    future_tolerance_seconds: int = _setting(
        86400,
        "how far a timestamp may be ahead of the clock that receives it: an event time further"
        " ahead of its `received_at`, a CRM `updated_at` further ahead of the run's clock, is a"
        " broken clock (counted, rejected); incremental CRM listings start this much before the"
        " CRM watermark",
    )
    crm_min_full_listing_share: float = _setting(
        0.9,
        "a full CRM listing with fewer items than this share of the orders already known fails"
        " the run (it would blank names and statuses)",
    )
    crm_listing_budget_seconds: float = _setting(
        3600.0, "the most one CRM listing may take, retries and waits included"
    )
    crm_max_retry_after_seconds: float = _setting(
        120.0, "the longest `Retry-After` the CRM client waits"
    )
    crm_max_empty_pages: int = _setting(
        10, "empty CRM pages in a row (each with a cursor) before the listing fails"
    )
    crm_max_page_bytes: int = _setting(64 * 2**20, "the largest CRM page body read (64 MiB)")
    pg_connect_timeout_seconds: int = _setting(
        30,
        "PostgreSQL `connect_timeout` of the pipeline's sessions (a connection's own"
        " `connect_timeout` extra wins)",
    )
    pg_statement_timeout_seconds: int = _setting(
        1800,
        "their `statement_timeout` (a `-c statement_timeout=...` in the connection's `options`"
        " wins)",
    )
    pg_lock_timeout_seconds: int = _setting(300, "their `lock_timeout` (likewise)")
    task_timeout_seconds: int = _setting(
        7200, "every task's `execution_timeout`: a hang fails the task and Airflow retries it"
    )
    publish_lock_timeout_seconds: int = _setting(
        3600,
        "how long a load waits for another run's load to finish (one publication at a time: an"
        " advisory lock on the telemetry database) before it fails",
    )
    freshness_deadline_seconds: int = _setting(
        4 * 3600,
        "the Deadline Alert: when a run has not finished this long after it was queued (4 h: the"
        " night's run by 06:00 report time), the notifiers are told which run, which day and"
        " what is still running; 0: no deadline",
    )
    staging_max_age_hours: float = _setting(
        24.0,
        "staging tables (a run's scratch space, holding CRM personal data) older than this are a"
        " failed run's and are dropped when a run starts",
    )
    quality_levels: str = _setting(
        "",
        'quality levels that differ from the defaults, a JSON object, e.g. `{"no_order_share":'
        ' {"warn": 0.3, "error": 0.6}}` (a level left out is off)',
    )
    notify_email: tuple[str, ...] = _setting(
        (),
        "comma-separated recipients of failure and quality-warning mail; empty: no mail",
        _addresses,
    )
    notify_from: str = _setting("bionicpro-etl@localhost", "the sender of that mail")
    notify_smtp_conn: str = _setting("smtp_default", "the Airflow connection the mail goes through")
    notify_slack_conn: str = _setting(
        "",
        "an Airflow connection (type `slackwebhook`) to post the same messages to; empty: none",
    )

    def check_levels(self) -> dict[str, tuple[float | None, float | None]]:
        """Every quality check's (warn, error) levels: QUALITY_LEVELS with `quality_levels`
        applied. An unknown check there is an error (raised when the checks run, so that a typo
        stops the publish, not the DAG's parsing or the failure notifications)."""
        merged = dict(QUALITY_LEVELS)
        for check, level in json.loads(self.quality_levels or "{}").items():
            if check not in merged:
                raise ValueError(f"BIONICPRO_QUALITY_LEVELS names an unknown check {check!r}")
            merged[check] = (level.get("warn"), level.get("error"))
        return merged

    @property
    def sub_daily(self) -> bool:
        """Whether the schedule fires more than once on some report day: then a run publishes
        its day so far, and `bionicpro_reports.published_days` says it is not complete yet."""
        from croniter import croniter

        fires = croniter(self.schedule, datetime(2024, 1, 1, tzinfo=self.report_tz))
        days = [fires.get_next(datetime).date() for _ in range(15)]
        return len(set(days)) < len(days)


def variable(name: str) -> str:
    """The environment variable of the setting `name`."""
    return f"BIONICPRO_{name.upper()}"


def settings() -> Settings:
    """The settings of this process; cheap, so callers read them when they need them."""
    given = {}
    for setting in fields(Settings):
        if raw := os.environ.get(variable(setting.name)):
            given[setting.name] = setting.metadata["parse"](raw)
    return Settings(**given)

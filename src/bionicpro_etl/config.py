"""Typed settings of the pipeline, read from one place: the environment.

Connections (PostgreSQL, CRM, ClickHouse) are not here: they are Airflow connections, so a
deployment changes them without touching code. These are the knobs of the reports themselves.
Each one is `BIONICPRO_<NAME>` in the environment (`BIONICPRO_CRM_PAGE_SIZE`, ...); its default is
the field's below, and nowhere else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from zoneinfo import ZoneInfo

DEFAULT_REPORT_TZ = "Europe/Moscow"
DEFAULT_SCHEDULE = "0 2 * * *"


@dataclass(frozen=True)
class Settings:
    report_tz: ZoneInfo
    # Largest share of invalid CRM items a run tolerates before it fails (contract section 4).
    crm_max_reject_share: float = 0.01
    crm_page_size: int = 1000
    # A full CRM listing (which also catches deleted orders) at least this often, in days.
    crm_full_refresh_days: int = 7
    # Days before a run's own day that late events still rebuild.
    lookback_days: int = 30
    # Arrivals this recent are left to the next run: their transactions may still be in flight.
    arrival_lag_seconds: int = 300
    schedule: str = DEFAULT_SCHEDULE
    # Telemetry extraction split by a hash of user_id into this many mapped tasks.
    telemetry_shards: int = 1
    # A ClickHouse cluster (a name from the server's remote_servers) to create the shared tables
    # on, replicated; empty for a single server or chDB.
    clickhouse_cluster: str = ""
    # How far ahead of the clock that receives it a timestamp may be (clocks drift): an event
    # time further ahead of its received_at is a broken clock, a CRM updated_at further ahead of
    # the run's clock a reject. Incremental CRM listings re-read this much before the newest
    # updated_at, so an item from a clock running ahead never hides later changes.
    future_tolerance_seconds: int = 86400
    # A full CRM listing shorter than this share of the orders already known is an outage (it
    # would blank names and statuses), not a fact: the run fails.
    crm_min_full_listing_share: float = 0.9
    # A CRM listing's total budget: its wall time, a Retry-After it is willing to wait, empty
    # pages in a row (a cursor that never ends), and the size of one page's body.
    crm_listing_budget_seconds: float = 3600.0
    crm_max_retry_after_seconds: float = 120.0
    crm_max_empty_pages: int = 10
    crm_max_page_bytes: int = 64 * 2**20
    # Every PostgreSQL session of the pipeline: how long to connect, to run one statement, and
    # to wait for a lock, before the task fails (and Airflow retries it).
    pg_connect_timeout_seconds: int = 30
    pg_statement_timeout_seconds: int = 1800
    pg_lock_timeout_seconds: int = 300
    # Every task's execution_timeout: a hang becomes a failure that Airflow retries.
    task_timeout_seconds: int = 7200
    # Staging tables (a run's scratch space, holding CRM personal data) older than this belong
    # to a run that failed; each run drops them when it starts.
    staging_max_age_hours: float = 24.0


def settings() -> Settings:
    """The settings of this process; cheap, so callers read them when they need them."""
    env = os.environ
    values: dict[str, object] = {}
    for field in fields(Settings):
        raw = env.get(f"BIONICPRO_{field.name.upper()}")
        if field.name == "report_tz":
            values["report_tz"] = ZoneInfo(raw or DEFAULT_REPORT_TZ)
        elif raw:
            values[field.name] = type(field.default)(raw)
    return Settings(**values)

"""Typed settings of the pipeline, read from one place: the environment.

Connections (PostgreSQL, CRM, ClickHouse) are not here: they are Airflow connections, so a
deployment changes them without touching code. These are the knobs of the reports themselves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
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


def settings() -> Settings:
    """The settings of this process; cheap, so callers read them when they need them."""
    env = os.environ
    return Settings(
        report_tz=ZoneInfo(env.get("BIONICPRO_REPORT_TZ") or DEFAULT_REPORT_TZ),
        crm_max_reject_share=float(env.get("BIONICPRO_CRM_MAX_REJECT_SHARE", "0.01")),
        crm_page_size=int(env.get("BIONICPRO_CRM_PAGE_SIZE", "1000")),
        crm_full_refresh_days=int(env.get("BIONICPRO_CRM_FULL_REFRESH_DAYS", "7")),
        lookback_days=int(env.get("BIONICPRO_LOOKBACK_DAYS", "30")),
        arrival_lag_seconds=int(env.get("BIONICPRO_ARRIVAL_LAG_SECONDS", "300")),
        schedule=env.get("BIONICPRO_SCHEDULE") or DEFAULT_SCHEDULE,
        telemetry_shards=int(env.get("BIONICPRO_TELEMETRY_SHARDS", "1")),
        clickhouse_cluster=env.get("BIONICPRO_CLICKHOUSE_CLUSTER", ""),
    )

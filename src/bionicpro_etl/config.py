"""Typed settings of the pipeline, read from one place: the environment.

Connections (PostgreSQL, CRM, ClickHouse) are not here: they are Airflow connections, so a
deployment changes them without touching code. These are the knobs of the reports themselves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from zoneinfo import ZoneInfo

DEFAULT_REPORT_TZ = "Europe/Moscow"


@dataclass(frozen=True)
class Settings:
    report_tz: ZoneInfo
    # Largest share of invalid CRM items a run tolerates before it fails (contract section 4).
    crm_max_reject_share: float = 0.01
    crm_page_size: int = 1000
    mart_database: str = "bionicpro_reports"
    staging_database: str = "bionicpro_staging"


def settings() -> Settings:
    """The settings of this process; cheap, so callers read them when they need them."""
    env = os.environ
    return Settings(
        report_tz=ZoneInfo(env.get("BIONICPRO_REPORT_TZ") or DEFAULT_REPORT_TZ),
        crm_max_reject_share=float(env.get("BIONICPRO_CRM_MAX_REJECT_SHARE", "0.01")),
        crm_page_size=int(env.get("BIONICPRO_CRM_PAGE_SIZE", "1000")),
    )
